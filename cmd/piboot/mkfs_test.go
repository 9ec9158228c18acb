package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/piboot/piboot/internal/testutil"
)

func TestMkfsParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "512K": 512 << 10, "64M": 64 << 20, "8G": 8 << 30, "2T": 2 << 40, "1g": 1 << 30} {
		if got, err := mkfsParseBytes(in); err != nil || got != want {
			t.Errorf("mkfsParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "1.5G", "-", "99999999999T"} {
		if _, err := mkfsParseBytes(in); err == nil {
			t.Errorf("mkfsParseBytes(%q) accepted", in)
		}
	}
}

func TestMkfsReorderFlags(t *testing.T) {
	got := mkfsReorderFlags([]string{"disk.img", "--size", "1G", "tree", "--force", "--label=x"})
	want := []string{"--size", "1G", "--force", "--label=x", "disk.img", "tree"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestMkfsCommand runs `piboot mkfs` in-process on files: create, refuse to overwrite, force,
// fill from a tree, and the types that are not here yet.
func TestMkfsCommand(t *testing.T) {
	testutil.Need(t, "e2fsck", "fsck.vfat", "mdir")
	dir := t.TempDir()
	img := filepath.Join(dir, "root.img")
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "sub"), 0o755)
	os.WriteFile(filepath.Join(tree, "sub", "hello.txt"), []byte("hello"), 0o644)

	if rc := runMkfs([]string{"ext4", img}); rc != 1 {
		t.Errorf("missing file without --size: exit %d", rc)
	}
	if rc := runMkfs([]string{"ext4", "--label", "root", "--uuid", "0b0e1c52-ffbd-4a8c-9d4f-6a3b09c42d11", "--size", "64M", img, tree}); rc != 0 {
		t.Fatalf("exit %d", rc)
	}
	if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck: %v\n%s", err, out)
	}
	if out, _ := exec.Command("debugfs", "-R", "cat /sub/hello.txt", img).Output(); string(out) != "hello" {
		t.Errorf("debugfs cat: %q", out)
	}
	if rc := runMkfs([]string{"ext4", img}); rc != 1 {
		t.Errorf("overwriting an ext4 without --force: exit %d", rc)
	}
	if rc := runMkfs([]string{"vfat", "--force", "--label", "ESP", img, tree}); rc != 0 {
		t.Errorf("vfat --force: exit %d", rc)
	}
	if out, err := exec.Command("fsck.vfat", "-n", img).CombinedOutput(); err != nil {
		t.Errorf("fsck.vfat: %v\n%s", err, out)
	}
	if out, err := exec.Command("mtype", "-i", img, "::/sub/hello.txt").Output(); err != nil || string(out) != "hello" {
		t.Errorf("mtype: %q %v", out, err)
	}
	if st, _ := os.Stat(img); st.Size() != 64<<20 {
		t.Errorf("size %d after reformatting, want the file's 64 MiB", st.Size())
	}
	// A failed format of a file it created removes the file again.
	bad := filepath.Join(dir, "bad.img")
	if rc := runMkfs([]string{"ext4", "--size", "1M", bad}); rc != 1 {
		t.Errorf("1 MiB ext4: exit %d", rc)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Errorf("failed format left %s behind", bad)
	}
	if rc := runMkfs([]string{"btrfs", img}); rc != 2 {
		t.Errorf("unknown type: exit %d", rc)
	}
	if _, ok := mkfsOther["xfs"]; !ok {
		if rc := runMkfs([]string{"xfs", img}); rc != 1 {
			t.Errorf("xfs before it exists: exit %d", rc)
		}
	}
	if !strings.Contains(mkfsTypes(), "squashfs") {
		t.Errorf("types %q lack squashfs", mkfsTypes())
	}
}

// TestMkfsDevice formats a loop device with 4096-byte sectors, whose size and sector size the
// command finds by itself.
func TestMkfsDevice(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.Need(t, "losetup", "e2fsck")
	img := filepath.Join(t.TempDir(), "dev.img")
	os.WriteFile(img, nil, 0o644)
	os.Truncate(img, 128<<20)
	out, err := exec.Command("losetup", "-f", "--show", "-b", "4096", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	if rc := runMkfs([]string{"ext4", dev}); rc != 0 {
		t.Fatalf("exit %d", rc)
	}
	if out, err := exec.Command("e2fsck", "-fn", dev).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck: %v\n%s", err, out)
	}
	if rc := runMkfs([]string{"ext4", "--size", "1G", dev}); rc != 1 {
		t.Errorf("--size beyond the device: exit %d", rc)
	}
}

// TestMkfsResizeLimit: by default the reserve of descriptor blocks lets a 32 GiB ext4 grow
// online to 2 TiB, as repart's on first boot; --resize-limit sets it like mkfs.ext4 -E resize=;
// bad values are refused before anything is written.
func TestMkfsResizeLimit(t *testing.T) {
	testutil.Need(t, "e2fsck", "dumpe2fs")
	dir := t.TempDir()
	img := filepath.Join(dir, "root.img")
	for _, c := range []struct {
		args     []string
		reserved string
	}{
		{[]string{"--size", "32G"}, "252"},                     // 2 TiB: 16384 groups, 256 blocks, less the 4 in use
		{[]string{"--force", "--resize-limit", "16T"}, "1024"}, // mke2fs's default at 32 GiB: at most 1024
		{[]string{"--force", "--resize-limit", "64G"}, "4"},    // 512 groups: 8 blocks, less 4
	} {
		args := append(append([]string{"ext4"}, c.args...), img)
		if rc, out := capture(t, func() int { return runMkfs(args) }); rc != 0 {
			t.Fatalf("%v: exit %d\n%s", c.args, rc, out)
		}
		if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil {
			t.Fatalf("%v: e2fsck: %v\n%s", c.args, err, out)
		}
		if out, _ := exec.Command("dumpe2fs", "-h", img).Output(); !strings.Contains(string(out), "Reserved GDT blocks:      "+c.reserved+"\n") {
			t.Errorf("%v: want %s reserved GDT blocks:\n%s", c.args, c.reserved, out)
		}
	}
	for _, c := range []struct{ args, want string }{
		{"ext4 --force --resize-limit 16G", "resize limit 17179869184 outside"},
		{"ext4 --force --resize-limit 2X", `--resize-limit "2X": want a positive number`},
		{"vfat --force --resize-limit 2T", "--resize-limit is for ext4 only"},
	} {
		before := head(img)
		rc, out := capture(t, func() int { return runMkfs(append(strings.Fields(c.args), img)) })
		if after := head(img); rc != 1 || !strings.Contains(out, c.want) || string(before) != string(after) {
			t.Errorf("%s: exit %d, changed %v\n%s", c.args, rc, string(before) != string(after), out)
		}
	}
}

// head returns the first MiB of a file (the superblock and descriptors of an ext4).
func head(path string) []byte {
	b := make([]byte, 1<<20)
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	n, _ := f.ReadAt(b, 0)
	return b[:n]
}
