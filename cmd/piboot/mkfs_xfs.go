package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/piboot/piboot/internal/uuid"
	"github.com/piboot/piboot/mkfs/xfs"
)

// The mkfs dispatcher (mkfs.go) runs the types listed in mkfsOther.
func init() { mkfsOther["xfs"] = mkfsXFS }

// mkfsXFS is `piboot mkfs xfs`; the mkfs dispatcher calls it with the arguments after "xfs".
func mkfsXFS(args []string) int {
	const name = "mkfs xfs"
	fs := newFlagSet(name, "TARGET")
	label := fs.String("label", "", "filesystem label, at most 12 bytes")
	uuidStr := fs.String("uuid", "", "filesystem UUID (default: random)")
	sectorSize := fs.Int("sector-size", 0, "sector size, 512 or 4096 (default: the device's, 512 for a file)")
	sizeStr := fs.String("size", "", "create TARGET as a sparse file of this size or grow it (e.g. 2G, 512M); on a device, use only that much")
	force := fs.Bool("force", false, "overwrite a target that already holds a filesystem or partition table")
	dryRun := fs.Bool("dry-run", false, "print the geometry, write nothing")
	fs.Parse(mkfsReorderFlags(args))
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	target := fs.Arg(0)
	opts := xfs.Options{Label: *label, SectorSize: *sectorSize}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fail(name, fmt.Errorf("SOURCE_DATE_EPOCH %q is not a number of seconds", s))
		}
		opts.Time = time.Unix(n, 0)
	}
	if *uuidStr != "" {
		u, err := uuid.Parse(*uuidStr)
		if err != nil {
			return fail(name, fmt.Errorf("--uuid %q: %v", *uuidStr, err))
		}
		opts.UUID = u
	}
	if opts.UUID == uuid.Nil {
		opts.UUID = uuid.New()
	}
	if *dryRun {
		return mkfsXFSDryRun(name, target, *sizeStr, opts.SectorSize)
	}
	f, size, created, err := openXFSTarget(target, *sizeStr)
	if err != nil {
		return fail(name, err)
	}
	defer f.Close()
	if !*force && !created {
		if what := mkfsExistingSignature(f); what != "" {
			return fail(name, fmt.Errorf("%s already holds %s; use --force to overwrite it", target, what))
		}
	}
	failed := func(err error) int {
		if created { // leave nothing behind that looks like an image
			os.Remove(target)
		}
		return fail(name, fmt.Errorf("%s: %v", target, err))
	}
	if opts.SectorSize == 0 {
		opts.SectorSize = xfs.SectorSize(f)
	}
	g, err := xfs.Plan(size, opts.SectorSize)
	if err != nil {
		return failed(err)
	}
	if g.Blocks*uint64(g.BlockSize) < uint64(size)-uint64(g.BlockSize) {
		fmt.Fprintf(os.Stderr, "piboot %s: %s: the last %d bytes are not used (a last AG under 16 MiB is dropped, as mkfs.xfs does)\n",
			name, target, uint64(size)-g.Blocks*uint64(g.BlockSize))
	}
	var stats xfs.Stats
	opts.Stats = &stats
	start := time.Now()
	if err := xfs.Format(f, size, opts); err != nil {
		return failed(err)
	}
	took := time.Since(start)
	if err := f.Close(); err != nil {
		return failed(err)
	}
	fmt.Printf("%s: XFS, label %q, UUID %s, %d × %d blocks of %d bytes, %d-byte sectors, log %d MiB; read %d, wrote %d, zeroed %d bytes in %d ms\n",
		target, opts.Label, opts.UUID, g.AGCount, g.AGBlocks, g.BlockSize, g.SectorSize,
		int64(g.LogBlocks)*int64(g.BlockSize)>>20, stats.Read, stats.Written, stats.Zeroed, took.Milliseconds())
	return 0
}

// openXFSTarget opens a block device exclusively (the kernel refuses if it is mounted or
// otherwise held) or a regular file, creating or growing the file when size is given.
func openXFSTarget(target, sizeStr string) (f *os.File, size int64, created bool, err error) {
	var want int64
	if sizeStr != "" {
		if want, err = parseXFSSize(sizeStr); err != nil {
			return nil, 0, false, fmt.Errorf("--size: %v", err)
		}
	}
	st, statErr := os.Stat(target)
	if statErr == nil && st.Mode()&os.ModeDevice != 0 {
		f, err = os.OpenFile(target, os.O_RDWR|syscall.O_EXCL, 0)
		if errors.Is(err, syscall.EBUSY) {
			return nil, 0, false, fmt.Errorf("%s is in use (mounted, or a partition of it is): refusing to format it", target)
		}
		if err != nil {
			return nil, 0, false, err
		}
		if size, err = f.Seek(0, 2); err != nil {
			f.Close()
			return nil, 0, false, fmt.Errorf("%s: size: %v", target, err)
		}
		if sizeStr != "" {
			if want > size {
				f.Close()
				return nil, 0, false, fmt.Errorf("%s holds %d bytes, less than --size %s", target, size, sizeStr)
			}
			size = want
		}
		return f, size, false, nil
	}
	switch {
	case os.IsNotExist(statErr) && sizeStr == "":
		return nil, 0, false, fmt.Errorf("%s does not exist (give --size to create an image file)", target)
	case statErr != nil && !os.IsNotExist(statErr):
		return nil, 0, false, statErr
	case statErr == nil && !st.Mode().IsRegular():
		return nil, 0, false, fmt.Errorf("%s is neither a block device nor a regular file", target)
	case statErr == nil && sizeStr != "" && want < st.Size():
		return nil, 0, false, fmt.Errorf("%s is %d bytes, larger than --size %s: refusing to shrink it", target, st.Size(), sizeStr)
	}
	created = os.IsNotExist(statErr)
	if f, err = os.OpenFile(target, os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		return nil, 0, false, err
	}
	if size, err = f.Seek(0, 2); err == nil && want > size {
		err, size = f.Truncate(want), want
	}
	if err != nil {
		f.Close()
		if created {
			os.Remove(target)
		}
		return nil, 0, false, fmt.Errorf("%s: %v", target, err)
	}
	return f, size, created, nil
}

// parseXFSSize reads a byte count with an optional K, M, G or T suffix (powers of 1024).
func parseXFSSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "IB"), "B")
	shift := 0
	if n := len(t); n > 0 {
		if i := strings.IndexByte("KMGT", t[n-1]); i >= 0 {
			shift = 10 * (i + 1)
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v <= 0 || v > (1<<62)>>shift {
		return 0, fmt.Errorf("%q is not a size (e.g. 4096, 512M, 2G)", s)
	}
	return v << shift, nil
}

// mkfsXFSDryRun prints what Format would make of target (or of --size bytes).
func mkfsXFSDryRun(name, target, sizeStr string, sectorSize int) int {
	var size int64
	if sizeStr != "" {
		var err error
		if size, err = parseXFSSize(sizeStr); err != nil {
			return fail(name, fmt.Errorf("--size: %v", err))
		}
	}
	if f, err := os.Open(target); err == nil {
		if size == 0 {
			size, _ = f.Seek(0, 2)
		}
		if sectorSize == 0 {
			sectorSize = xfs.SectorSize(f)
		}
		f.Close()
	} else if size == 0 {
		return fail(name, err)
	}
	if sectorSize == 0 {
		sectorSize = 512
	}
	g, err := xfs.Plan(size, sectorSize)
	if err != nil {
		return fail(name, fmt.Errorf("%s: %v", target, err))
	}
	fmt.Printf("%s: would make XFS: %d AGs × %d blocks of %d bytes (%d blocks), %d-byte sectors, internal log of %d blocks (%d MiB)\n",
		target, g.AGCount, g.AGBlocks, g.BlockSize, g.Blocks, g.SectorSize, g.LogBlocks, int64(g.LogBlocks)*int64(g.BlockSize)>>20)
	return 0
}
