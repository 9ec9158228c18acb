package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// deviceSectorSize asks the kernel for a block device's logical sector size.
func deviceSectorSize(f *os.File) int {
	n, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
	if err != nil || n <= 0 {
		return 512
	}
	return n
}
