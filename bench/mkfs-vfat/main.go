// Command mkfs-vfat is bench/mkfs-vfat.sh's driver for piboot's FAT writer: it formats IMAGE
// (a file, created sparse if needed) with the tree TREE, like `mkfs.vfat -F 32` + `mcopy -s`.
//
//	go run ./bench/mkfs-vfat [-label L] [-size BYTES] [-zeroed] IMAGE TREE
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/piboot/piboot/mkfs/vfat"
)

func main() {
	label := flag.String("label", "ESP", "volume label")
	size := flag.Int64("size", 0, "filesystem size in bytes (default: the image's size)")
	zeroed := flag.Bool("zeroed", false, "the image is new and sparse: skip writing zeros")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: mkfs-vfat [-label L] [-size BYTES] [-zeroed] IMAGE TREE")
		os.Exit(2)
	}
	f, err := os.OpenFile(flag.Arg(0), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *size == 0 {
		fi, err := f.Stat()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		*size = fi.Size()
	}
	err = vfat.Format(f, *size, vfat.Options{Label: *label, Root: os.DirFS(flag.Arg(1)), TargetZeroed: *zeroed})
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkfs-vfat:", err)
		os.Exit(1)
	}
}
