package sysupdate

import (
	"archive/tar"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// mknodIn makes a device node or FIFO at name inside root, through its parent's handle so
// nothing outside root is reached.
func mknodIn(root *os.Root, name string, h *tar.Header) error {
	parent, err := root.Open(path.Dir(name))
	if err != nil {
		return err
	}
	defer parent.Close()
	mode := uint32(h.Mode & 0o7777)
	switch h.Typeflag {
	case tar.TypeChar:
		mode |= unix.S_IFCHR
	case tar.TypeBlock:
		mode |= unix.S_IFBLK
	default:
		mode |= unix.S_IFIFO
	}
	dev := unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))
	return unix.Mknodat(int(parent.Fd()), path.Base(name), mode, int(dev))
}

func setXattr(f *os.File, name string, value []byte) error {
	return unix.Fsetxattr(int(f.Fd()), name, value, 0)
}

// listXattrs reads a file's extended attributes without following a symlink.
func listXattrs(p string) (map[string]string, error) {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		if err == unix.ENOTSUP {
			err = nil
		}
		return nil, err
	}
	buf := make([]byte, sz)
	if sz, err = unix.Llistxattr(p, buf); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		vsz, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, err
		}
		v := make([]byte, vsz)
		if vsz, err = unix.Lgetxattr(p, name, v); err != nil {
			return nil, err
		}
		out[name] = string(v[:vsz])
	}
	return out, nil
}

// setImmutable sets or clears the immutable attribute (chattr +i) of a directory: what
// ReadOnly=yes means for directory targets.
const fsImmutableFL = 0x10 // FS_IMMUTABLE_FL, linux/fs.h

func setImmutable(p string, on bool) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		if !on && (err == unix.ENOTTY || err == unix.ENOTSUP || err == unix.EINVAL) {
			return nil // no attributes here, so none to clear
		}
		return err
	}
	n := flags &^ fsImmutableFL
	if on {
		n |= fsImmutableFL
	}
	if n == flags {
		return nil
	}
	return unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(n))
}

// hardLinkID identifies a regular file with more than one name (device, inode).
func hardLinkID(info fs.FileInfo) ([2]uint64, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || !info.Mode().IsRegular() || st.Nlink < 2 {
		return [2]uint64{}, false
	}
	return [2]uint64{uint64(st.Dev), st.Ino}, true
}
