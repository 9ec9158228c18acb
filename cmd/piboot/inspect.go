package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/piboot/piboot/images"
	"github.com/piboot/piboot/uki"
)

func init() {
	register("inspect", "show an image's (or disk's) partitions, filesystems, versions and UKI command lines", runInspect)
}

func runInspect(args []string) int {
	fs := newFlagSet("inspect", "IMAGE|DEVICE|UKI.efi")
	asJSON := fs.Bool("json", false, "print the image's report as JSON")
	fs.Parse(args)
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	name := fs.Arg(0)
	f, err := os.Open(name)
	if err != nil {
		return fail("inspect", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fail("inspect", err)
	}
	head := make([]byte, 2)
	f.ReadAt(head, 0)
	if bytes.Equal(head, []byte("MZ")) {
		return inspectUKI(name, f, size)
	}
	rep, err := images.Inspect(f, size)
	if err != nil {
		return fail("inspect", fmt.Errorf("%s: %w", name, err))
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fail("inspect", err)
		}
		return 0
	}
	fmt.Printf("%s\n", name)
	rep.Format(os.Stdout)
	return 0
}

func inspectUKI(name string, r io.ReaderAt, size int64) int {
	info, err := uki.Read(r, size, false)
	if err != nil {
		return fail("inspect", fmt.Errorf("%s: %w", name, err))
	}
	fmt.Printf("%s: PE image for %s, %d bytes\n", name, info.Machine, size)
	for _, s := range info.Sections {
		fmt.Printf("  %-8s %10d bytes at VA %#x\n", s.Name, s.Size, s.VirtualAddress)
	}
	ck := "ok"
	if info.Checksum != info.Computed {
		ck = fmt.Sprintf("WRONG (stored %#x, computed %#x)", info.Checksum, info.Computed)
	}
	fmt.Printf("checksum: %s\n", ck)
	osr := info.OSRelease()
	if v := osr["IMAGE_VERSION"]; v != "" {
		fmt.Printf("version: %s %s\n", osr["IMAGE_ID"], v)
	}
	if u, ok := info.Section(".uname"); ok {
		fmt.Printf("kernel: %s\n", u)
	}
	if c := info.Cmdline(); c != "" {
		fmt.Printf("cmdline: %s\n", c)
	}
	return 0
}
