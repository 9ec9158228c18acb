package mount

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/piboot/piboot/internal/testutil"
)

// TestRemoveSameDev frees an "initramfs" (a tmpfs) the way SwitchRoot does and checks
// that nothing on other filesystems mounted inside it, above all the new root, is lost.
func TestRemoveSameDev(t *testing.T) {
	testutil.NeedRoot(t)
	root := t.TempDir()
	mnt := func(dir string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatalf("mount tmpfs on %s: %v", dir, err)
		}
		t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	}
	mnt(root)
	write := func(p string) {
		t.Helper()
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "init"))
	write(filepath.Join(root, "lib/modules/6.1/kernel/x.ko"))
	os.Symlink("../bbin/bb", filepath.Join(root, "ls"))
	newRoot := filepath.Join(root, "sysroot")
	mnt(newRoot)
	write(filepath.Join(newRoot, "var/lib/keep"))
	other := filepath.Join(root, "run")
	mnt(other)
	write(filepath.Join(other, "keep"))

	var st unix.Stat_t
	if err := unix.Stat(root, &st); err != nil {
		t.Fatal(err)
	}
	if err := removeSameDev(root, st.Dev, newRoot); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"init", "lib", "ls"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("%s survived: %v", gone, err)
		}
	}
	for _, kept := range []string{"sysroot/var/lib/keep", "run/keep"} {
		if _, err := os.Stat(filepath.Join(root, kept)); err != nil {
			t.Errorf("%s lost: %v", kept, err)
		}
	}
}

// TestUevents has the kernel send a synthetic "change" uevent for /dev/null and reads
// it from the netlink socket.
func TestUevents(t *testing.T) {
	testutil.NeedRoot(t)
	c, err := OpenUevents()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan Uevent, 1)
	go func() {
		for {
			e, err := c.Read()
			if err != nil {
				close(got)
				return
			}
			if e.DevPath == "/devices/virtual/mem/null" && e.Action == "change" {
				got <- e
				return
			}
		}
	}()
	if err := os.WriteFile("/sys/devices/virtual/mem/null/uevent", []byte("change"), 0o200); err != nil {
		c.Close()
		t.Skipf("cannot trigger a uevent here: %v", err)
	}
	select {
	case e, ok := <-got:
		if !ok || e.Subsystem != "mem" || e.Env["DEVNAME"] != "null" {
			t.Fatalf("uevent = %+v, %v", e, ok)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no uevent for /dev/null within 60 s")
	}
	c.Close()
}

// TestWaitDevice: a node made while WaitDevice waits ends the wait (other names in the
// directory do not); one that never comes is an error naming it.
func TestWaitDevice(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "mmcblk0p4")
	done := make(chan error, 1)
	go func() { done <- WaitDevice(p, time.Minute) }()
	// Unrelated entries first: WaitDevice must go on waiting.
	for _, n := range []string{"mmcblk0p1", "mmcblk0p40"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("WaitDevice returned %v before %s existed", err, p)
	case <-time.After(50 * time.Millisecond):
	}
	// Made under another name and renamed into place, as some tools do.
	tmp := filepath.Join(dir, ".tmp")
	if err := os.WriteFile(tmp, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("WaitDevice still waiting a minute after the node appeared")
	}
	// Already there: at once.
	if err := WaitDevice(p, 0); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "sda9")
	if err := WaitDevice(missing, 30*time.Millisecond); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("WaitDevice(%s) = %v, want an error naming it", missing, err)
	}
	if err := WaitDevice(filepath.Join(dir, "nodir", "x"), 30*time.Millisecond); err == nil {
		t.Fatal("WaitDevice in a missing directory: no error")
	}
}
