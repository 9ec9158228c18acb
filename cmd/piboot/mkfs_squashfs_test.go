//go:build !pibootlite

package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/piboot/piboot/internal/testutil"
)

func TestMkfsSquashfsFile(t *testing.T) {
	testutil.Need(t, "unsquashfs")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "bin", "hello"), bytes.Repeat([]byte("hello\n"), 50000), 0o755); err != nil {
		t.Fatal(err)
	}
	noise := make([]byte, 100000)
	rand.Read(noise)
	if err := os.WriteFile(filepath.Join(tree, "noise"), noise, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("bin/hello", filepath.Join(tree, "link")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.sqfs")
	t.Setenv("SOURCE_DATE_EPOCH", "1000000000")
	for _, comp := range []string{"zstd", "xz", "gzip", "lz4", "none"} {
		if rc := mkfsSquashfs([]string{"--compression", comp, "--block-size", "64K", "--all-root", tree, out}); rc != 0 {
			t.Fatalf("%s: exit %d", comp, rc)
		}
		s, err := exec.Command("unsquashfs", "-s", out).CombinedOutput()
		if err != nil {
			t.Fatalf("unsquashfs -s: %v\n%s", err, s)
		}
		wantComp := comp
		if comp == "none" {
			wantComp = "gzip" // with every "uncompressed" flag set
		}
		for _, want := range []string{"Compression " + wantComp, "Block size 65536", "Sun Sep  9 01:46:40 2001"} {
			if !strings.Contains(string(s), want) {
				t.Errorf("%s: unsquashfs -s lacks %q:\n%s", comp, want, s)
			}
		}
		l, err := exec.Command("unsquashfs", "-lln", out).CombinedOutput()
		if err != nil || !strings.Contains(string(l), "-rwxr-xr-x 0/0") || !strings.Contains(string(l), "squashfs-root/link -> bin/hello") {
			t.Errorf("%s: unsquashfs -lln: %v\n%s", comp, err, l)
		}
	}

	// Too small: exit 1, and the previous OUT is untouched.
	before, _ := os.ReadFile(out)
	if rc := mkfsSquashfs([]string{"--max-size", "8K", tree, out}); rc != 1 {
		t.Errorf("--max-size 8K: exit %d, want 1", rc)
	}
	if after, _ := os.ReadFile(out); !bytes.Equal(before, after) {
		t.Errorf("a failed run changed %s", out)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".out.sqfs.*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
	for _, args := range [][]string{
		{"--block-size", "3K", tree, out},
		{"--compression", "lzo", tree, out},
		{"--mtime", "yesterday", tree, out},
		{filepath.Join(dir, "missing"), out},
		{tree, "/dev/null"},
	} {
		if rc := mkfsSquashfs(args); rc != 1 {
			t.Errorf("%v: exit %d, want 1", args, rc)
		}
	}
}

// TestMkfsSquashfsBlockDevice writes onto a loop device and mounts the result; a device
// too small is refused without writing past its end.
func TestMkfsSquashfsBlockDevice(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.Need(t, "losetup", "mount", "umount")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB
	if err := os.WriteFile(filepath.Join(tree, "data"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	backing := filepath.Join(dir, "disk")
	if err := os.WriteFile(backing, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	dev := strings.TrimSpace(squashfsRun(t, "losetup", "-f", "--show", backing))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	if rc := mkfsSquashfs([]string{"--compression", "none", tree, dev}); rc != 1 {
		t.Fatalf("8 MiB stored uncompressed onto a 4 MiB device: exit %d, want 1", rc)
	}
	if rc := mkfsSquashfs([]string{tree, dev}); rc != 0 {
		t.Fatalf("exit %d", rc)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	squashfsRun(t, "mount", "-t", "squashfs", "-o", "ro", dev, mnt)
	defer exec.Command("umount", mnt).Run()
	got, err := os.ReadFile(filepath.Join(mnt, "data"))
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("data through the kernel: %d bytes, %v", len(got), err)
	}
}

func squashfsRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}
