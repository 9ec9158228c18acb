//go:build !linux

package squashfs

import (
	"errors"
	"io/fs"
)

type sysInfo struct {
	uid, gid, nlink uint32
	rdev, dev, ino  uint64
}

// statSys on systems other than Linux knows no owners or hardlinks: files belong to root.
func statSys(p string, fi fs.FileInfo) (sysInfo, error) {
	return sysInfo{nlink: 1}, nil
}

func readXattrs(p string) (map[string][]byte, error) {
	return nil, errors.New("extended attributes are only read on Linux")
}
