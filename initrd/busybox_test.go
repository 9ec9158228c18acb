package initrd

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/piboot/piboot/internal/testutil"
)

// The cache key must stay what it was when gobusybox was linked as a library: the busybox
// binaries already cached under ~/.cache/piboot are byte-identical to what makebb builds
// now and must be found, not rebuilt. This is the name that code gave the emergency shell
// for arm64 with go1.26.8.
func TestBusyboxCacheKeyUnchanged(t *testing.T) {
	cmds := append([]string(nil), ShellCommands...)
	sort.Strings(cmds)
	if got, want := busyboxName("arm64", "go1.26.8", cmds), "busybox-arm64-18ffe17b8449ffb8"; got != want {
		t.Errorf("busyboxName = %s, want %s", got, want)
	}
	if busyboxName("arm64", "go1.26.9", cmds) == busyboxName("arm64", "go1.26.8", cmds) ||
		busyboxName("amd64", "go1.26.8", cmds) == busyboxName("arm64", "go1.26.8", cmds) ||
		busyboxName("arm64", "go1.26.8", cmds[1:]) == busyboxName("arm64", "go1.26.8", cmds) {
		t.Error("the key ignores the toolchain, the architecture or the commands")
	}
}

// TestBusyboxBuild builds a small busybox for this machine through makebb, with a GOOS and
// GOARCH in the environment that must reach neither the makebb build nor the busybox.
// (One build only, to keep the test short: that makebb gives the same bytes as the
// library did is what TestBusyboxCacheKeyUnchanged relies on; it was checked once with
// sha256sum on the arm64 emergency shell.)
func TestBusyboxBuild(t *testing.T) {
	testutil.Need(t, "go")
	if runtime.GOOS != "linux" {
		t.Skip("runs a linux busybox")
	}
	t.Setenv("GOOS", "windows")
	foreign := "arm64"
	if runtime.GOARCH == "arm64" {
		foreign = "amd64"
	}
	t.Setenv("GOARCH", foreign)
	cache := t.TempDir()
	bb, err := Busybox(runtime.GOARCH, []string{"echo", "cat"}, cache)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bb, "echo", "hello", "busybox").CombinedOutput()
	if err != nil || string(out) != "hello busybox\n" {
		t.Fatalf("bb echo: %v: %q", err, out)
	}
	// Invoked by a link's name, as /bin/cat in the initramfs.
	link := filepath.Join(t.TempDir(), "cat")
	if err := os.Symlink(bb, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link)
	cmd.Stdin = strings.NewReader("via stdin\n")
	if out, err := cmd.CombinedOutput(); err != nil || string(out) != "via stdin\n" {
		t.Fatalf("cat link: %v: %q", err, out)
	}
	st, err := os.Stat(bb)
	if err != nil {
		t.Fatal(err)
	}

	// Same inputs, other order: the cached binary, untouched; nothing else left behind
	// (scratch module, generated sources, temporary outputs).
	again, err := Busybox(runtime.GOARCH, []string{"cat", "echo"}, cache)
	if err != nil || again != bb {
		t.Fatalf("second call: %q, %v; want the cached %q", again, err, bb)
	}
	if st2, err := os.Stat(again); err != nil || !st2.ModTime().Equal(st.ModTime()) {
		t.Fatalf("cached busybox rewritten: %v", err)
	}
	ents, err := os.ReadDir(cache)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 2 || !strings.HasPrefix(names[0], "busybox-"+runtime.GOARCH+"-") || !strings.HasPrefix(names[1], "makebb-linux-") {
		t.Errorf("cache holds %v, want the busybox and makebb only", names)
	}
}

func TestBusyboxUnknownCommand(t *testing.T) {
	testutil.Need(t, "go")
	cache := t.TempDir()
	_, err := Busybox("arm64", []string{"echo", "no-such-command"}, cache)
	if err == nil || !strings.Contains(err.Error(), `no core command "no-such-command"`) || !strings.Contains(err.Error(), URootVersion) {
		t.Fatalf("err = %v, want it to name the command and the u-root version", err)
	}
	if ents, _ := os.ReadDir(cache); len(ents) != 0 {
		t.Errorf("a failed build left %d files in the cache", len(ents))
	}
}
