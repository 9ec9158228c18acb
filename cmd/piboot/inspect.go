//go:build !pibootlite

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/images"
	"github.com/piboot/piboot/internal/iszero"
	"github.com/piboot/piboot/uki"
)

func init() {
	register("inspect", runInspect)
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
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return fail("inspect", fmt.Errorf("%s is a directory; give an image file, a disk or a UKI", name))
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fail("inspect", err)
	}
	head := make([]byte, 4)
	f.ReadAt(head, 0)
	if bytes.HasPrefix(head, []byte("MZ")) {
		return inspectUKI(name, f, size)
	}
	if bytes.Equal(head, zstdMagic) {
		// out/<id>_<v>.raw.zst as built or downloaded: inspect a sparse decompressed copy.
		tmp, err := unzstdTemp(io.NewSectionReader(f, 0, size))
		if err != nil {
			return fail("inspect", fmt.Errorf("%s: %w", name, err))
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		f = tmp
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			return fail("inspect", err)
		}
		name += " (zstd, " + fmt.Sprint(size) + " bytes decompressed)"
	}
	rep, err := images.Inspect(f, size)
	if errors.Is(err, gpt.ErrNoGPT) {
		// A split partition file (<id>_<v>.nix-store.raw) or a whole-disk file system.
		if fsys, detail := images.IdentifyFS(f, size); fsys != "unknown" && fsys != "empty" {
			if detail != "" {
				fsys += " (" + detail + ")"
			}
			fmt.Printf("%s: no partition table; the file system of the whole file is %s\n", name, fsys)
			return 0
		}
	}
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
	if k := images.UKIKernelMachine(r, info); k != "" && k != info.Machine {
		fmt.Printf("problem: the kernel (.linux) is for %s, the stub for %s: it cannot start\n", k, info.Machine)
	}
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

var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// unzstdTemp decompresses r into a new temporary file, leaving holes where the image is
// zeros (the _empty slot of a built image is most of it), and returns it open.
func unzstdTemp(r io.Reader) (*os.File, error) {
	dec, err := zstd.NewReader(r)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	tmp, err := os.CreateTemp("", "piboot-inspect-*.raw")
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, err := fill(dec, buf)
		if n > 0 && !iszero.Bytes(buf[:n]) {
			if _, werr := tmp.WriteAt(buf[:n], off); werr != nil {
				err = werr
			}
		}
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			return nil, fmt.Errorf("zstd: %w", err)
		}
	}
	if err := tmp.Truncate(off); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, err
	}
	return tmp, nil
}

// fill reads into buf until it is full or r ends (io.EOF, also after a partial buffer);
// unlike io.ReadFull it passes a truncated stream's io.ErrUnexpectedEOF on as an error.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
