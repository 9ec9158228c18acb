package sysupdate

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// RootDisk returns the whole-disk device holding the file system at root (or, when that is
// not on a block device, the one holding root/nix/store): what Path=auto means.
func RootDisk(root string) (string, error) {
	var errs []error
	for _, p := range []string{root, filepath.Join(root, "nix/store")} {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			errs = append(errs, err)
			continue
		}
		maj, min := unix.Major(st.Dev), unix.Minor(st.Dev)
		if maj == 0 {
			errs = append(errs, fmt.Errorf("%s is not on a block device (device %d:%d)", p, maj, min))
			continue
		}
		sys, err := filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", maj, min))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
			sys = filepath.Dir(sys)
		}
		return "/dev/" + filepath.Base(sys), nil
	}
	return "", fmt.Errorf("cannot find the disk holding %s: %v (pass --disk)", root, errs)
}

// IsMountPoint reports whether dir is the root of a mounted file system (its device differs
// from its parent's, or it is "/").
func IsMountPoint(dir string) bool {
	var st, pst unix.Stat_t
	if unix.Stat(dir, &st) != nil || unix.Stat(filepath.Join(dir, ".."), &pst) != nil {
		return false
	}
	return st.Dev != pst.Dev || st.Ino == pst.Ino
}

// renameNoReplace renames without overwriting an existing target; file systems without
// RENAME_NOREPLACE get a check-then-rename.
func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if err == unix.EINVAL || err == unix.ENOSYS {
		if _, serr := os.Lstat(to); serr == nil {
			return fmt.Errorf("rename %s: %s exists", from, to)
		}
		return os.Rename(from, to)
	}
	if err != nil {
		return fmt.Errorf("rename %s to %s: %w", from, to, err)
	}
	return nil
}

// syncFS flushes the whole file system holding path (the ESP after a rename).
func syncFS(path string) error {
	f, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// FindESP returns the first of /efi, /boot/efi and /boot below root that is a mount point:
// where systemd looks for the ESP (or XBOOTLDR).
func FindESP(root string) (string, error) {
	for _, c := range []string{"/efi", "/boot/efi", "/boot"} {
		if p := filepath.Join(root, c); IsMountPoint(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("no ESP mounted at /efi, /boot/efi or /boot below %s", root)
}

// BootedVersion is the running version: IMAGE_VERSION from os-release below root (or below
// root/store), else the suffix of piboot.store=nix-store_<v> on the kernel command line.
func BootedVersion(root, store string) string {
	for _, r := range []string{root, filepath.Join(root, store)} {
		for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
			if b, err := os.ReadFile(filepath.Join(r, p)); err == nil {
				if v := ParseOSRelease(string(b))["IMAGE_VERSION"]; v != "" {
					return v
				}
			}
		}
	}
	b, _ := os.ReadFile("/proc/cmdline")
	for _, w := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(w, "piboot.store=nix-store_"); ok {
			return v
		}
	}
	return ""
}

// makeWritable remounts the file system holding dir read-write if it is mounted read-only
// (piboot-init mounts the ESP read-only, so that a FAT volume is not left dirty by a power
// cut), and returns a function that remounts it read-only again (nil if nothing changed).
func makeWritable(dir string) (restore func() error, err error) {
	var sf unix.Statfs_t
	if err := unix.Statfs(dir, &sf); err != nil {
		return nil, err
	}
	if sf.Flags&unix.ST_RDONLY == 0 {
		return nil, nil
	}
	mp := dir
	for !IsMountPoint(mp) && mp != "/" {
		mp = filepath.Dir(mp)
	}
	// ST_ and MS_ values agree for these, but not for relatime (ST_RELATIME is MS_BIND).
	keep := uintptr(sf.Flags) & (unix.ST_NOSUID | unix.ST_NODEV | unix.ST_NOEXEC | unix.ST_NOATIME | unix.ST_NODIRATIME)
	if sf.Flags&unix.ST_RELATIME != 0 {
		keep |= unix.MS_RELATIME
	}
	if err := unix.Mount("", mp, "", unix.MS_REMOUNT|keep, ""); err != nil {
		return nil, fmt.Errorf("remount %s read-write: %w", mp, err)
	}
	return func() error {
		unix.Sync()
		if err := unix.Mount("", mp, "", unix.MS_REMOUNT|unix.MS_RDONLY|keep, ""); err != nil {
			return fmt.Errorf("remount %s read-only: %w", mp, err)
		}
		return nil
	}, nil
}

// lockDisk takes an exclusive advisory lock on the disk (as systemd-sysupdate does, which
// also keeps udev from probing half-written partitions), so two updates cannot claim the
// same slot. The lock lasts until the returned file is closed.
func lockDisk(disk string) (*os.File, error) {
	f, err := os.Open(disk)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if err == unix.EWOULDBLOCK {
			return nil, fmt.Errorf("%s is locked: another update is running", disk)
		}
		return nil, fmt.Errorf("lock %s: %w", disk, err)
	}
	return f, nil
}
