//go:build !linux

package ext4

import "io/fs"

func statOf(fs.FileInfo) (fileStat, bool) { return fileStat{}, false }
