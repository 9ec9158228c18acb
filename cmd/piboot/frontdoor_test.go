package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/piboot/piboot/internal/testutil"
)

// TestEverySubcommandBuiltIn: the complete build (this test binary) has a subcommand for every
// summary, and a summary for every subcommand, so the front door lists and hands on exactly
// what piboot-full runs.
func TestEverySubcommandBuiltIn(t *testing.T) {
	var missing, names []string
	for _, c := range subcommands {
		if c.run == nil {
			missing = append(missing, c.name)
		}
		names = append(names, c.name)
	}
	if len(missing) > 0 {
		t.Errorf("summaries without a subcommand: %v", missing)
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("subcommands not sorted by name (usage lists them in this order): %v", names)
	}
}

// TestFrontDoor builds the pair `make cli` ships and runs both: the disk tools run in the front
// door and print what the complete build prints, every other subcommand is handed on to
// piboot-full with its arguments, exit status and output, and a missing or wrong piboot-full
// gives an error naming it instead of a loop.
func TestFrontDoor(t *testing.T) {
	testutil.Need(t, "go")
	// The point of the front door: none of the heavy packages is linked into it.
	deps, err := exec.Command("go", "list", "-deps", "-tags", "pibootlite", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	// net (which google/uuid used to pull in) and the standard library's crypto (the FIPS 140
	// module behind crypto/sha256 and crypto/hmac, about 25 packages) cost every run their
	// package initialisation; internal/uuid reads getrandom(2), internal/sha2 hashes.
	for _, heavy := range []string{"net", "crypto", "github.com/ProtonMail/go-crypto", "github.com/piboot/piboot/sysupdate",
		"github.com/piboot/piboot/images", "github.com/ulikunitz/xz", "github.com/klauspost/compress"} {
		for _, d := range strings.Fields(string(deps)) {
			if d == heavy || strings.HasPrefix(d, heavy+"/") {
				t.Errorf("the front door links %s", d)
			}
		}
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	lite, full := filepath.Join(bin, "piboot"), filepath.Join(bin, "piboot-full")
	for _, b := range [][]string{{"-tags", "pibootlite", "-o", lite}, {"-o", full}} {
		cmd := exec.Command("go", append(append([]string{"build"}, b...), ".")...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %v: %v\n%s", b, err, out)
		}
	}
	// An empty $PATH, so that only the piboot-full next to the front door can be found.
	emptyPath := filepath.Join(dir, "nopath")
	os.Mkdir(emptyPath, 0o755)
	run := func(bin string, args ...string) (int, string, string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "PATH="+emptyPath)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if _, exited := err.(*exec.ExitError); err != nil && !exited {
			t.Fatalf("%s %v: %v", bin, args, err)
		}
		return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
	}
	same := func(what string, args ...string) (int, string, string) {
		t.Helper()
		rcL, outL, errL := run(lite, args...)
		rcF, outF, errF := run(full, args...)
		if rcL != rcF || outL != outF || errL != errF {
			t.Errorf("%s: front door and piboot-full differ:\nfront door: exit %d\n%s%s\npiboot-full: exit %d\n%s%s", what, rcL, outL, errL, rcF, outF, errF)
		}
		return rcL, outL, errL
	}

	if rc, _, usage := same("usage", "--help"); rc != 0 || !strings.Contains(usage, "update") || !strings.Contains(usage, "repart") {
		t.Errorf("usage: exit %d\n%s", rc, usage)
	}
	// internal/stack only saves its page faults if it initialises before the first package
	// whose initialisation grows the stack (internal/godebug).
	cmd := exec.Command(lite, "--help")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	trace, _ := cmd.CombinedOutput()
	stackAt, godebugAt := strings.Index(string(trace), "init github.com/piboot/piboot/internal/stack "), strings.Index(string(trace), "init internal/godebug ")
	if stackAt < 0 || godebugAt < 0 || stackAt > godebugAt {
		t.Errorf("internal/stack initialises at %d, internal/godebug at %d, in\n%s", stackAt, godebugAt, trace)
	}
	// A disk tool, run by the front door itself.
	img, defs := flashedCard(dir)
	rc, out, _ := same("repart", "repart", "--dry-run", "--definitions", defs, "--seed", "c0ffee00-1234-4abc-8def-0123456789ab",
		"--architecture", "arm64", "--machine-id", filepath.Join(dir, "none"), img)
	if rc != 0 || !strings.Contains(out, "root-arm64") {
		t.Errorf("repart --dry-run: exit %d\n%s", rc, out)
	}
	// Handed on: a failing inspect (exit status and message come from piboot-full), a squashfs.
	if rc, _, msg := same("inspect", "inspect", filepath.Join(dir, "missing.raw")); rc == 0 || !strings.Contains(msg, "missing.raw") {
		t.Errorf("inspect of a missing file: exit %d\n%s", rc, msg)
	}
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "hello"), []byte("hello\n"), 0o644)
	for _, b := range []string{lite, full} {
		if rc, out, msg := run(b, "mkfs", "squashfs", "--mtime", "0", tree, filepath.Join(dir, filepath.Base(b)+".sqfs")); rc != 0 {
			t.Fatalf("%s mkfs squashfs: exit %d\n%s%s", b, rc, out, msg)
		}
	}
	a, _ := os.ReadFile(filepath.Join(dir, "piboot.sqfs"))
	b, _ := os.ReadFile(filepath.Join(dir, "piboot-full.sqfs"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("mkfs squashfs through the front door: %d bytes, directly: %d bytes, equal=%v", len(a), len(b), bytes.Equal(a, b))
	}

	// No piboot-full: the error names it and says how to get it.
	os.Rename(full, full+".away")
	if rc, _, msg := run(lite, "update", "list"); rc != 2 || !strings.Contains(msg, "update is in piboot-full") || !strings.Contains(msg, bin) {
		t.Errorf("without piboot-full: exit %d\n%s", rc, msg)
	}
	// A front door installed as piboot-full would hand the subcommand to itself forever.
	lb, _ := os.ReadFile(lite)
	os.WriteFile(full, lb, 0o755)
	if rc, _, msg := run(lite, "keygen", "--help"); rc != 2 || !strings.Contains(msg, "does not contain it either") {
		t.Errorf("front door as piboot-full: exit %d\n%s", rc, msg)
	}
	if runtime.GOOS != "linux" {
		return
	}
	// Found in $PATH when not next to the front door (e.g. /usr/local/bin/piboot-full with
	// piboot elsewhere).
	os.Remove(full)
	other := filepath.Join(dir, "other")
	os.Mkdir(other, 0o755)
	os.Rename(full+".away", filepath.Join(other, "piboot-full"))
	cmd = exec.Command(lite, "inspect", filepath.Join(dir, "missing.raw"))
	cmd.Env = append(os.Environ(), "PATH="+other)
	msg, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() == 2 || !strings.Contains(string(msg), "missing.raw") {
		t.Errorf("piboot-full in $PATH: exit %d\n%s", cmd.ProcessState.ExitCode(), msg)
	}
}
