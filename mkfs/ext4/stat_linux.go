package ext4

import (
	"io/fs"
	"syscall"
)

// statOf returns what fs.FileInfo does not carry portably: owner, the (device, inode) pair
// that identifies hard links, the link count and, for device nodes, the device number.
func statOf(fi fs.FileInfo) (st fileStat, ok bool) {
	s, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStat{}, false
	}
	return fileStat{uid: s.Uid, gid: s.Gid, dev: uint64(s.Dev), ino: s.Ino, nlink: uint64(s.Nlink),
		rdevMajor: uint32((s.Rdev >> 8 & 0xfff) | (s.Rdev >> 32 & ^uint64(0xfff))),
		rdevMinor: uint32((s.Rdev & 0xff) | (s.Rdev >> 12 & ^uint64(0xff)))}, true
}
