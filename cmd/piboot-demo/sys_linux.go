package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ensureKernelFS mounts /proc, /sys and /dev when piboot-demo runs as the very first
// init (piboot-init moves them over, so this is normally a no-op).
func ensureKernelFS() error {
	for _, m := range []struct{ dir, fstype string }{{"/proc", "proc"}, {"/sys", "sysfs"}, {"/dev", "devtmpfs"}} {
		if mounted(m.dir) {
			continue
		}
		if os.Getpid() != 1 {
			continue
		}
		_ = os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.fstype, m.dir, m.fstype, 0, ""); err != nil {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
	}
	return nil
}

func mounted(dir string) bool {
	var a, b unix.Stat_t
	if unix.Stat(dir, &a) != nil || unix.Stat(filepath.Dir(dir), &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}

// deviceSize is the size of a block device in bytes, from sysfs (in 512-byte units
// whatever the sector size) or, failing that, from the device itself.
func deviceSize(dev string) (int64, error) {
	name := filepath.Base(dev)
	if b, err := os.ReadFile("/sys/class/block/" + name + "/size"); err == nil {
		var n int64
		if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d", &n); err == nil {
			return n * 512, nil
		}
	}
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n uint64
	if err := ioctlSize(f, &n); err != nil {
		return 0, fmt.Errorf("size of %s: %w", dev, err)
	}
	return int64(n), nil
}

func ioctlSize(f *os.File, n *uint64) error {
	v, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKGETSIZE64)
	*n = uint64(v)
	return err
}

func powerOff() {
	if os.Getpid() != 1 {
		unix.Sync()
		return
	}
	// A clean root filesystem for the next boot: no journal to replay, no fsck. Each step
	// is logged, and a step that does not finish in time is reported and skipped: a demo
	// that was told to power off must do so (the boots counter was already fsynced, so the
	// root stays consistent, only with a journal to replay).
	t0 := time.Now()
	step := func(name string, f func() error) {
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			if err != nil {
				logf("error: power off: %s: %v", name, err)
			}
		case <-time.After(powerOffStepTimeout):
			logf("error: power off: %s still running after %s; powering off without it", name, powerOffStepTimeout)
		}
	}
	step("sync", func() error { unix.Sync(); return nil })
	step("remount / read-only", func() error {
		return unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
	})
	step("sync", func() error { unix.Sync(); return nil })
	logf("power off after %d ms", time.Since(t0).Milliseconds())
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		logf("error: power off: %v", err)
	}
}

// powerOffStepTimeout bounds each step of powerOff; generous, since under QEMU's TCG on a
// loaded host a sync can take seconds.
const powerOffStepTimeout = 30 * time.Second

func reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
