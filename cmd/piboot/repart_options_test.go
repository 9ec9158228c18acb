package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/piboot/piboot/internal/testutil"
)

// The systemd-repart options piboot repart takes: --empty=, --json=pretty|short|off,
// --can-factory-reset, --size=, --discard=, --no-pager; and a read-only device refused
// before anything is printed as if it would happen.

const optSeed = "c0ffee00-1234-4abc-8def-0123456789ab"

func optImage(t *testing.T, dir, name string, size int64, sfdiskScript string) string {
	t.Helper()
	img := filepath.Join(dir, name)
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if sfdiskScript != "" {
		cmd := exec.Command("sfdisk", "-q", img)
		cmd.Stdin = strings.NewReader(sfdiskScript)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sfdisk: %v\n%s", err, out)
		}
	}
	return img
}

func optCopy(t *testing.T, src, dst string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestRepartEmptyLikeSystemdRepart(t *testing.T) {
	testutil.Need(t, "systemd-repart", "sfdisk")
	dir := t.TempDir()
	defs := filepath.Join(dir, "repart.d")
	os.Mkdir(defs, 0o755)
	os.WriteFile(filepath.Join(defs, "10-root.conf"), []byte("[Partition]\nType=root\nLabel=root\n"), 0o644)
	os.WriteFile(filepath.Join(defs, "20-home.conf"), []byte("[Partition]\nType=home\nSizeMaxBytes=24M\n"), 0o644)
	common := []string{"--definitions", defs, "--seed", optSeed, "--architecture", "x86-64", "--machine-id", ""}
	systemd := func(img, empty string) {
		t.Helper()
		out, err := exec.Command("systemd-repart", "--empty="+empty, "--dry-run=no", "--discard=no", "--no-pager", "--json=off",
			"--seed="+optSeed, "--definitions="+defs, img).CombinedOutput()
		if err != nil {
			t.Fatalf("systemd-repart --empty=%s: %v\n%s", empty, err, out)
		}
	}

	blank := optImage(t, dir, "blank.img", 80<<20, "")
	dos := optImage(t, dir, "dos.img", 80<<20, "label: dos\n,16M,c\n,16M,83\n")
	gptImg := optImage(t, dir, "gpt.img", 80<<20, "label: gpt\n,16M,U\n")
	for _, c := range []struct {
		name, src, empty string
	}{
		{"allow on a blank disk", blank, "allow"},
		{"require on a blank disk", blank, "require"},
		{"force over a DOS table", dos, "force"},
		{"force over a GPT", gptImg, "force"},
	} {
		theirs := optCopy(t, c.src, filepath.Join(dir, "theirs.img"))
		ours := optCopy(t, c.src, filepath.Join(dir, "ours.img"))
		systemd(theirs, c.empty)
		before, _ := os.ReadFile(ours)
		rc, out := capture(t, func() int {
			return runRepart(append(append([]string{"--dry-run", "--empty=" + c.empty}, common...), ours))
		})
		if after, _ := os.ReadFile(ours); rc != 0 || !bytes.Equal(before, after) || !strings.Contains(out, "new GPT partition table") {
			t.Fatalf("%s, dry run: exit %d, changed %v\n%s", c.name, rc, !bytes.Equal(before, after), out)
		}
		if rc, out := capture(t, func() int { return runRepart(append(append([]string{"--empty=" + c.empty}, common...), ours)) }); rc != 0 {
			t.Fatalf("%s: exit %d\n%s", c.name, rc, out)
		}
		// The same bytes: protective MBR, both GPT copies, disk GUID, partitions.
		a, _ := os.ReadFile(theirs)
		b, _ := os.ReadFile(ours)
		if !bytes.Equal(a, b) {
			ta, _ := exec.Command("sfdisk", "-d", theirs).Output()
			tb, _ := exec.Command("sfdisk", "-d", ours).Output()
			t.Fatalf("%s: not what systemd-repart --empty=%s writes\nsystemd-repart:\n%s\nours:\n%s", c.name, c.empty, ta, tb)
		}
	}

	// --empty=create: a new image file, as systemd-repart makes it; never over an existing one.
	theirs, ours := filepath.Join(dir, "new-theirs.img"), filepath.Join(dir, "new-ours.img")
	if out, err := exec.Command("systemd-repart", "--empty=create", "--size=48M", "--dry-run=no", "--discard=no", "--no-pager",
		"--seed="+optSeed, "--definitions="+defs, theirs).CombinedOutput(); err != nil {
		t.Fatalf("systemd-repart --empty=create: %v\n%s", err, out)
	}
	if rc, out := capture(t, func() int {
		return runRepart(append(append([]string{"--empty=create", "--size=48M", "--dry-run"}, common...), ours))
	}); rc != 0 || !strings.Contains(out, "create") {
		t.Fatalf("--empty=create --dry-run: exit %d\n%s", rc, out)
	}
	if _, err := os.Stat(ours); !os.IsNotExist(err) {
		t.Fatalf("--empty=create --dry-run left %s: %v", ours, err)
	}
	for i, want := range []int{0, 1} { // the second time, the file exists
		if rc, out := capture(t, func() int {
			return runRepart(append(append([]string{"--empty=create", "--size=48M"}, common...), ours))
		}); rc != want || i == 1 && !strings.Contains(out, "file exists") {
			t.Fatalf("--empty=create #%d: exit %d\n%s", i+1, rc, out)
		}
	}
	if a, b := readAll(t, theirs), readAll(t, ours); !bytes.Equal(a, b) {
		t.Fatal("--empty=create: not the image systemd-repart makes")
	}

	// A whole-disk ext4 (its magic at byte 0x438): systemd-repart 252 --empty=allow writes a
	// table over it; we ask for --empty=force.
	ext4 := optImage(t, dir, "ext4.img", 80<<20, "")
	if f, err := os.OpenFile(ext4, os.O_RDWR, 0); err == nil {
		f.WriteAt([]byte{0x53, 0xEF}, 0x438)
		f.Close()
	}
	for _, c := range []struct{ name, src, empty, want string }{
		{"allow on a whole-disk ext4", ext4, "allow", "holds an ext2/3/4 file system"},
		{"require on a GPT", gptImg, "require", "already has a GPT partition table"},
		{"allow on a DOS table", dos, "allow", "holds a DOS partition table"},
		{"require on a DOS table", dos, "require", "holds a DOS partition table"},
		{"refuse on a blank disk", blank, "refuse", "has no GPT partition table"},
		{"a bad mode", blank, "sometimes", "want refuse, allow, require or force"},
	} {
		before, _ := os.ReadFile(c.src)
		rc, out := capture(t, func() int { return runRepart(append(append([]string{"--empty=" + c.empty}, common...), c.src)) })
		if after, _ := os.ReadFile(c.src); rc != 1 || !strings.Contains(out, c.want) || !bytes.Equal(before, after) {
			t.Errorf("%s: exit %d, changed %v\n%s", c.name, rc, !bytes.Equal(before, after), out)
		}
	}
}

func TestRepartOptions(t *testing.T) {
	testutil.Need(t, "sfdisk")
	dir := t.TempDir()
	defs := filepath.Join(dir, "repart.d")
	os.Mkdir(defs, 0o755)
	os.WriteFile(filepath.Join(defs, "10-root.conf"), []byte("[Partition]\nType=root\nFactoryReset=yes\n"), 0o644)
	common := []string{"--definitions", defs, "--seed", optSeed, "--architecture", "arm64", "--machine-id", "", "--no-pager", "--discard=no"}
	img := optImage(t, dir, "card.img", 64<<20, "label: gpt\n,16M,U\n")

	// --size grows an image, never in a dry run, never shrinks.
	if rc, out := capture(t, func() int { return runRepart(append(append([]string{"--dry-run", "--size=128M"}, common...), img)) }); rc != 1 || !strings.Contains(out, "--dry-run does not") {
		t.Errorf("--size with --dry-run: exit %d\n%s", rc, out)
	}
	if rc, out := capture(t, func() int { return runRepart(append(append([]string{"--size=32M"}, common...), img)) }); rc != 1 || !strings.Contains(out, "never shrunk") {
		t.Errorf("--size smaller: exit %d\n%s", rc, out)
	}
	// --can-factory-reset: no root partition yet.
	if rc, out := capture(t, func() int { return runRepart(append(append([]string{"--can-factory-reset"}, common...), img)) }); rc != 1 {
		t.Errorf("--can-factory-reset before: exit %d\n%s", rc, out)
	}
	// --json=short: one line of JSON.
	rc, out := capture(t, func() int { return runRepart(append(append([]string{"--size=128M", "--json=short"}, common...), img)) })
	var j struct {
		Size       int64
		Partitions []struct{ Type, Activity string }
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	if rc != 0 || json.Unmarshal([]byte(last), &j) != nil || j.Size != 128<<20 || len(j.Partitions) != 2 || j.Partitions[0].Activity != "create" {
		t.Fatalf("--size=128M --json=short: exit %d %+v\n%s", rc, j, out)
	}
	if fi, _ := os.Stat(img); fi.Size() != 128<<20 {
		t.Errorf("--size=128M: %d bytes", fi.Size())
	}
	if rc, out := capture(t, func() int { return runRepart(append(append([]string{"--can-factory-reset"}, common...), img)) }); rc != 0 {
		t.Errorf("--can-factory-reset after: exit %d\n%s", rc, out)
	}
	rc, out = capture(t, func() int { return runRepart(append(append([]string{"--json=pretty", "--dry-run"}, common...), img)) })
	if rc != 0 || !strings.Contains(out, "{\n  \"disk\"") {
		t.Errorf("--json=pretty: exit %d\n%s", rc, out)
	}
	var j2 jsonMode
	if err := j2.Set("yaml"); err == nil || !strings.Contains(err.Error(), "want pretty, short or off") {
		t.Errorf("--json=yaml: %v", err)
	}
}

// TestRepartReadOnlyDevice: a write-protected card opens for writing; the first write fails.
// piboot repart says so before printing a plan it cannot carry out, and a dry run still works.
func TestRepartReadOnlyDevice(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.Need(t, "losetup", "sfdisk")
	dir := t.TempDir()
	defs := filepath.Join(dir, "repart.d")
	os.Mkdir(defs, 0o755)
	os.WriteFile(filepath.Join(defs, "10-root.conf"), []byte("[Partition]\nType=root\n"), 0o644)
	img := optImage(t, dir, "card.img", 64<<20, "label: gpt\n,16M,U\n")
	os.Truncate(img, 128<<20)
	before, _ := os.ReadFile(img)
	b, err := exec.Command("losetup", "-r", "-f", "--show", img).Output()
	if err != nil {
		t.Fatalf("losetup -r: %v", err)
	}
	dev := strings.TrimSpace(string(b))
	defer testutil.DetachLoop(dev, img)
	common := []string{"--definitions", defs, "--seed", optSeed, "--architecture", "arm64", "--machine-id", ""}
	rc, out := capture(t, func() int { return runRepart(append(common, dev)) })
	if rc != 1 || !strings.Contains(out, dev+" is read-only") || strings.Contains(out, "create") {
		t.Errorf("read-only device: exit %d\n%s", rc, out)
	}
	if rc, out := capture(t, func() int { return runRepart(append(append([]string{"--dry-run"}, common...), dev)) }); rc != 0 || !strings.Contains(out, "create") {
		t.Errorf("read-only device, dry run: exit %d\n%s", rc, out)
	}
	exec.Command("losetup", "-d", dev).Run()
	if after, _ := os.ReadFile(img); !bytes.Equal(before, after) {
		t.Error("the image behind the read-only device changed")
	}
}

func readAll(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
