package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Mount mounts source on target (created if missing). An empty fstype is probed from
// the device's superblock.
func Mount(source, target, fstype string, flags uintptr, data string) (string, error) {
	if fstype == "" {
		f, err := os.Open(source)
		if err != nil {
			return "", err
		}
		fstype, err = ProbeFS(f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("%s: %w", source, err)
		}
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fstype, err
	}
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return fstype, fmt.Errorf("mount %s (%s) on %s: %w", source, fstype, target, err)
	}
	return fstype, nil
}

// KernelFS mounts /dev (devtmpfs), /proc, /sys and /run (tmpfs) and reports whether the
// firmware is UEFI. Already mounted filesystems are left alone. efivarfs is not mounted
// here: in Debian's kernels it is a module, so it can only be mounted once the module is
// in (EFIVarFS).
func KernelFS() (efi bool, err error) {
	for _, m := range []struct {
		fstype, dir string
		flags       uintptr
		data        string
	}{
		{"devtmpfs", "/dev", unix.MS_NOSUID, "mode=0755"},
		{"proc", "/proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"tmpfs", "/run", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	} {
		if IsMountPoint(m.dir) {
			continue
		}
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return false, err
		}
		if err := unix.Mount(m.fstype, m.dir, m.fstype, m.flags, m.data); err != nil {
			return false, fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	_, err = os.Stat("/sys/firmware/efi")
	return err == nil, nil
}

// EFIVarsDir is where efivarfs is mounted.
const EFIVarsDir = "/sys/firmware/efi/efivars"

// EFIVarFS mounts efivarfs on EFIVarsDir unless it is mounted already. It fails with
// an error wrapping unix.ENODEV while the kernel does not know efivarfs yet (its module
// is not loaded): callers that load modules concurrently retry until loading ends.
func EFIVarFS() error {
	if IsMountPoint(EFIVarsDir) {
		return nil
	}
	if err := unix.Mount("efivarfs", EFIVarsDir, "efivarfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount efivarfs on %s: %w", EFIVarsDir, err)
	}
	return nil
}

// IsMountPoint reports whether dir is on a different device than its parent (or is /).
func IsMountPoint(dir string) bool {
	var a, b unix.Stat_t
	if unix.Stat(dir, &a) != nil || unix.Stat(filepath.Dir(dir), &b) != nil {
		return false
	}
	return a.Dev != b.Dev || a.Ino == b.Ino
}

// WaitDevice waits until path exists (devtmpfs creates partition nodes as the kernel
// adds them). It sleeps in poll(2) on an inotify watch of path's directory, so it
// returns the moment the node is created, not at the next tick of a polling loop.
func WaitDevice(path string, timeout time.Duration) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	deadline := time.Now().Add(timeout)
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return waitDevicePolling(path, deadline, timeout)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, filepath.Dir(path), unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_ATTRIB); err != nil {
		return waitDevicePolling(path, deadline, timeout)
	}
	buf := make([]byte, 4096)
	for {
		// Looked at after the watch is in place: a node made in between is not missed.
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		rem := time.Until(deadline)
		if rem <= 0 {
			return fmt.Errorf("%s did not appear within %s", path, timeout)
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int((rem+time.Millisecond-1)/time.Millisecond))
		switch {
		case errors.Is(err, unix.EINTR):
		case err != nil:
			return waitDevicePolling(path, deadline, timeout)
		case n > 0:
			for { // drain: what was created is looked up by name above
				if _, err := unix.Read(fd, buf); err != nil {
					break
				}
			}
		}
	}
}

// waitDevicePolling is WaitDevice without inotify (a kernel built without it).
func waitDevicePolling(path string, deadline time.Time, timeout time.Duration) error {
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %s", path, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SwitchRoot makes newRoot the root filesystem and executes init in it, like
// switch_root(8): the kernel filesystems move into newRoot, the initramfs's files are
// deleted (its memory is freed; it cannot be unmounted), newRoot is moved onto / and
// chrooted into. It returns only on failure.
func SwitchRoot(newRoot, init string, args, env []string) error {
	if _, err := os.Lstat(filepath.Join(newRoot, init)); err != nil {
		return fmt.Errorf("init %s not found in the new root: %w", init, err)
	}
	for _, d := range []string{"/dev", "/proc", "/sys", "/run"} {
		target := filepath.Join(newRoot, d)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(d, target, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s to %s: %w", d, target, err)
		}
	}
	var rootSt unix.Stat_t
	if err := unix.Stat("/", &rootSt); err != nil {
		return err
	}
	if err := os.Chdir(newRoot); err != nil {
		return err
	}
	// Freeing the initramfs: delete everything on its device, never crossing into a
	// mount (newRoot and what moved into it live on other devices).
	if err := removeSameDev("/", rootSt.Dev, newRoot); err != nil {
		return fmt.Errorf("free the initramfs: %w", err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s to /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	return unix.Exec(init, args, env)
}

// removeSameDev deletes dir's contents that are on device dev, skipping keep and any
// other mount point.
func removeSameDev(dir string, dev uint64, keep string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if p == keep {
			continue
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			errs = append(errs, err)
			continue
		}
		if st.Dev != dev {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := removeSameDev(p, dev, keep); err != nil {
				errs = append(errs, err)
			}
			if err := unix.Rmdir(p); err != nil && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOTEMPTY) {
				errs = append(errs, err)
			}
			continue
		}
		if err := unix.Unlink(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
