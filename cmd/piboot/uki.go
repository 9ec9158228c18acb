//go:build !pibootlite

package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/piboot/piboot/uki"
)

func init() {
	register("uki", runUKI)
}

func runUKI(args []string) int {
	fs := newFlagSet("uki", "--stub STUB --linux KERNEL -o OUT")
	stub := fs.String("stub", "", "systemd EFI stub (linuxaa64.efi.stub, linuxx64.efi.stub)")
	linux := fs.String("linux", "", "kernel image with an EFI stub (uncompressed arm64 Image, x86 bzImage)")
	initrd := fs.String("initrd", "", "initramfs file")
	cmdline := fs.String("cmdline", "", "kernel command line (or @FILE to read it from FILE)")
	osrel := fs.String("osrel", "", "os-release file")
	uname := fs.String("uname", "", "kernel release for .uname (default: read from the kernel's banner)")
	dtb := fs.String("dtb", "", "device tree blob")
	out := fs.String("o", "", "output file")
	fs.Parse(args)
	if *stub == "" || *linux == "" || *out == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	var in uki.Input
	var err error
	read := func(path string, dst *[]byte) {
		if path == "" || err != nil {
			return
		}
		*dst, err = os.ReadFile(path)
	}
	read(*stub, &in.Stub)
	read(*linux, &in.Linux)
	read(*initrd, &in.Initrd)
	read(*osrel, &in.OSRel)
	read(*dtb, &in.DTB)
	in.Cmdline = *cmdline
	if len(*cmdline) > 1 && (*cmdline)[0] == '@' {
		var b []byte
		read((*cmdline)[1:], &b)
		in.Cmdline = string(b)
	}
	if err != nil {
		return fail("uki", err)
	}
	in.Uname = *uname
	if in.Uname == "" {
		in.Uname = uki.KernelRelease(in.Linux)
	}
	img, err := uki.Build(in)
	if err != nil {
		return fail("uki", fmt.Errorf("%s: %w", *stub, err))
	}
	if err := writeFileAtomic(*out, img, 0o644); err != nil {
		return fail("uki", err)
	}
	return 0
}

// writeFileAtomic writes data to path through a temporary file and a rename, so that a
// failed or interrupted write never leaves a truncated file under the final name.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
