package squashfs

import (
	"bytes"
	"errors"
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

type sysInfo struct {
	uid, gid, nlink uint32
	rdev, dev, ino  uint64
}

func statSys(p string, fi fs.FileInfo) (sysInfo, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return sysInfo{}, errors.New(p + ": no stat information")
	}
	return sysInfo{uid: st.Uid, gid: st.Gid, nlink: uint32(st.Nlink), rdev: st.Rdev, dev: st.Dev, ino: st.Ino}, nil
}

func readXattrs(p string) (map[string][]byte, error) {
	size, err := unix.Llistxattr(p, nil)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, err
	}
	if size == 0 {
		return nil, nil
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, name := range bytes.Split(buf[:size], []byte{0}) {
		if len(name) == 0 {
			continue
		}
		n := string(name)
		vs, err := unix.Lgetxattr(p, n, nil)
		if err != nil {
			return nil, err
		}
		v := make([]byte, vs)
		vs, err = unix.Lgetxattr(p, n, v)
		if err != nil {
			return nil, err
		}
		out[n] = v[:vs]
	}
	return out, nil
}
