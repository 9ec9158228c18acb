//go:build !pibootlite

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/piboot/piboot/mkfs/squashfs"
)

// mkfsSquashfs is `piboot mkfs squashfs`; the mkfs dispatcher calls it with the arguments
// after "squashfs".
func mkfsSquashfs(args []string) int {
	const name = "mkfs squashfs"
	fs := newFlagSet(name, "TREE OUT")
	comp := fs.String("compression", "zstd", "compressor: zstd, xz, gzip, lz4 or none")
	level := fs.Int("level", 0, "compression level (zstd 1-22, default 15; gzip 1-9, default 9; lz4 0 or 1-9 for high compression)")
	blockSize := fs.String("block-size", "128K", "data block size, a power of two from 4K to 1M")
	allRoot := fs.Bool("all-root", false, "make every file owned by root")
	noFrag := fs.Bool("no-fragments", false, "do not pack file tails into shared fragment blocks")
	noDup := fs.Bool("no-duplicates", false, "do not detect identical files")
	noExport := fs.Bool("no-export", false, "leave out the NFS export table")
	xattrs := fs.Bool("xattrs", false, "store extended attributes (user., trusted., security.)")
	mtime := fs.String("mtime", os.Getenv("SOURCE_DATE_EPOCH"), "set every mtime and the creation time to these seconds since the epoch (default: $SOURCE_DATE_EPOCH)")
	maxSize := fs.String("max-size", "", "fail if the image needs more bytes than this (e.g. 512M); a block device's size is always a limit")
	procs := fs.Int("processors", 0, "compressing goroutines (default: all cores)")
	fs.Parse(args)
	if fs.NArg() != 2 {
		fs.Usage()
		return 2
	}
	tree, out := fs.Arg(0), fs.Arg(1)
	opts := squashfs.Options{
		Compression: squashfs.Compression(*comp), Level: *level, AllRoot: *allRoot,
		NoFragments: *noFrag, NoDuplicates: *noDup, NoExport: *noExport, Workers: *procs,
	}
	bs, err := squashfsParseSize(*blockSize)
	if err != nil {
		return fail(name, fmt.Errorf("--block-size: %v", err))
	}
	opts.BlockSize = int(bs)
	if *mtime != "" {
		t, err := strconv.ParseInt(*mtime, 10, 64)
		if err != nil {
			return fail(name, fmt.Errorf("--mtime (or SOURCE_DATE_EPOCH) %q: not a number of seconds", *mtime))
		}
		opts.Mtime = &t
	}
	if *maxSize != "" {
		if opts.MaxSize, err = squashfsParseSize(*maxSize); err != nil {
			return fail(name, fmt.Errorf("--max-size: %v", err))
		}
	}
	n, err := writeSquashfs(tree, out, opts, squashfs.DirOptions{Xattrs: *xattrs})
	if err != nil {
		return fail(name, err)
	}
	fmt.Printf("%s: %d bytes\n", out, n)
	return 0
}

// writeSquashfs writes to a block device in place (never past its end), or to a regular
// file through a temporary file renamed over OUT only once the image is complete.
func writeSquashfs(tree, out string, opts squashfs.Options, dopts squashfs.DirOptions) (int64, error) {
	if fi, err := os.Stat(out); err == nil && !fi.Mode().IsRegular() {
		if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
			return 0, fmt.Errorf("%s: neither a regular file nor a block device", out)
		}
		f, err := os.OpenFile(out, os.O_WRONLY, 0)
		if err != nil {
			return 0, err
		}
		size, err := f.Seek(0, 2)
		if err != nil {
			f.Close()
			return 0, err
		}
		if opts.MaxSize <= 0 || opts.MaxSize > size {
			opts.MaxSize = size
		}
		n, err := squashfs.WriteDir(f, tree, opts, dopts)
		if err == nil {
			err = f.Sync()
		}
		return n, errors.Join(err, f.Close())
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return 0, err
	}
	n, err := squashfs.WriteDir(tmp, tree, opts, dopts)
	if err == nil {
		err = tmp.Truncate(n)
	}
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), out)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return 0, err
	}
	return n, nil
}

// squashfsParseSize reads a byte count with an optional K, M, G or T suffix (powers of 1024).
func squashfsParseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.TrimSuffix(strings.ToUpper(s), "B")
	t = strings.TrimSuffix(t, "I")
	if t != "" {
		if k := strings.IndexByte("KMGT", t[len(t)-1]); k >= 0 {
			mult = 1 << (10 * (k + 1))
			t = t[:len(t)-1]
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (e.g. 4096, 128K, 1M)", s)
	}
	return v * mult, nil
}
