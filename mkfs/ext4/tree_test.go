package ext4

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/piboot/piboot/internal/testutil"
)

// makeTree builds a source tree with every kind of file Format copies.
func makeTree(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string, data []byte, mode os.FileMode) {
		must(os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755))
		must(os.WriteFile(filepath.Join(src, p), data, mode))
		must(os.Chmod(filepath.Join(src, p), mode))
	}
	big := make([]byte, 3<<20+123)
	rand.Read(big)
	write("empty", nil, 0o644)
	write("one", []byte("1"), 0o600)
	write("block", bytes.Repeat([]byte("b"), 4096), 0o644)
	write("block+1", bytes.Repeat([]byte("c"), 4097), 0o644)
	write("bin/big", big, 0o755)
	write("bin/suid", []byte("#!/bin/sh\n"), 0o4755)
	write("etc/deep/er/still/file.conf", []byte("k=v\n"), 0o640)
	for i := 0; i < 1500; i++ { // a directory of many blocks
		write(fmt.Sprintf("many/a-rather-long-file-name-to-fill-blocks-%04d", i), []byte(fmt.Sprint(i)), 0o644)
	}
	must(os.Mkdir(filepath.Join(src, "emptydir"), 0o700))
	must(os.Symlink("bin/big", filepath.Join(src, "short-link")))
	must(os.Symlink(strings.Repeat("long/", 30)+"target", filepath.Join(src, "long-link")))
	must(os.Link(filepath.Join(src, "one"), filepath.Join(src, "etc/hardlink")))
	must(syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644))
	must(syscall.Mknod(filepath.Join(src, "null"), syscall.S_IFCHR|0o666, 1<<8|3))
	must(syscall.Mknod(filepath.Join(src, "bigdev"), syscall.S_IFBLK|0o600, int(259<<8|(300&0xff)|(300&^0xff)<<12)))
	must(os.Lchown(filepath.Join(src, "etc/deep"), 1234, 5678))
	must(os.Mkdir(filepath.Join(src, "lost+found"), 0o700)) // replaced by the filesystem's own
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	must(os.Chtimes(filepath.Join(src, "etc/deep/er/still/file.conf"), old, old))
	return src
}

// TestTree copies a tree into the filesystem and compares what the kernel reads back.
func TestTree(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.Need(t, "e2fsck", "losetup", "mount")
	defer func(n uint64) { dataExtentLen = n }(dataExtentLen)
	dataExtentLen = 8 // 3 MiB in 8-block extents: the file needs extent leaf blocks
	src := makeTree(t)
	dir := t.TempDir()
	path := format(t, dir, 64<<20, Options{Root: os.DirFS(src)})
	fsck(t, path)
	dev := loop(t, path, "-r")
	mnt := t.TempDir()
	run(t, "mount", "-o", "ro", dev, mnt)
	defer exec.Command("umount", mnt).Run()
	compareTrees(t, src, mnt)
	if _, err := os.Stat(filepath.Join(mnt, "lost+found")); err != nil {
		t.Error(err)
	}
	a, _ := os.Stat(filepath.Join(mnt, "one"))
	b, _ := os.Stat(filepath.Join(mnt, "etc/hardlink"))
	if !os.SameFile(a, b) || a.Sys().(*syscall.Stat_t).Nlink != 2 {
		t.Errorf("hard link not kept")
	}
}

func compareTrees(t *testing.T, src, dst string) {
	t.Helper()
	n := 0
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "lost+found" {
			return fs.SkipDir
		}
		n++
		q := filepath.Join(dst, rel)
		si, _ := os.Lstat(p)
		di, err := os.Lstat(q)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		ss, ds := si.Sys().(*syscall.Stat_t), di.Sys().(*syscall.Stat_t)
		if ss.Mode != ds.Mode || ss.Uid != ds.Uid || ss.Gid != ds.Gid || (!si.IsDir() && ss.Size != ds.Size) || ss.Rdev != ds.Rdev {
			t.Errorf("%s: mode %o uid %d gid %d size %d rdev %x, want %o %d %d %d %x", rel, ds.Mode, ds.Uid, ds.Gid, ds.Size, ds.Rdev, ss.Mode, ss.Uid, ss.Gid, ss.Size, ss.Rdev)
		}
		if !si.IsDir() && !si.ModTime().Equal(di.ModTime()) {
			t.Errorf("%s: mtime %v, want %v", rel, di.ModTime(), si.ModTime())
		}
		switch {
		case si.Mode().IsRegular():
			a, _ := os.ReadFile(p)
			b, err := os.ReadFile(q)
			if err != nil || !bytes.Equal(a, b) {
				t.Errorf("%s: content differs (%v)", rel, err)
			}
		case si.Mode()&fs.ModeSymlink != 0:
			a, _ := os.Readlink(p)
			b, _ := os.Readlink(q)
			if a != b {
				t.Errorf("%s: link %q, want %q", rel, b, a)
			}
		}
		return nil
	})
	if n < 1500 {
		t.Errorf("compared only %d entries", n)
	}
}

// TestTreeErrors: a tree that does not fit fails with a message naming the file.
func TestTreeErrors(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "huge"), nil, 0o644)
	os.Truncate(filepath.Join(src, "huge"), 64<<20)
	w := &boundedWriter{size: 16 << 20, sector: 512, t: t}
	err := Format(w, 16<<20, Options{Root: os.DirFS(src)})
	if err == nil || !strings.Contains(err.Error(), "huge") || !strings.Contains(err.Error(), "does not fit") {
		t.Errorf("Format = %v, want a does-not-fit error naming huge", err)
	}
}
