// Command mkfs-ext4 formats a device in-process, as piboot-init does on first boot, and
// prints how long ext4.Format plus the final fsync took, without the CLI's process start.
//
//	go run ./bench/mkfs-ext4 DEVICE
package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/piboot/piboot/mkfs"
	"github.com/piboot/piboot/mkfs/ext4"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mkfs-ext4 DEVICE")
		os.Exit(2)
	}
	f, err := os.OpenFile(os.Args[1], os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	start := time.Now()
	if err := ext4.Format(f, size, ext4.Options{Label: "root", ResizeLimit: mkfs.Ext4ResizeLimit(size)}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := f.Sync(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(time.Since(start).Milliseconds())
}
