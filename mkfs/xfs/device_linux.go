package xfs

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// dataRangesFunc returns, for a regular file, a function listing the parts of a range that
// hold data (SEEK_DATA/SEEK_HOLE), so that holes are known to be zero without reading them.
// Block devices and other readers get nil: everything is read.
func dataRangesFunc(r io.ReaderAt) func(off, n int64) ([][2]int64, error) {
	f, ok := r.(*os.File)
	if !ok {
		return nil
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return nil
	}
	fd := int(f.Fd())
	return func(off, n int64) ([][2]int64, error) {
		var out [][2]int64
		end := off + n
		for pos := off; pos < end; {
			data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
			if errors.Is(err, unix.ENXIO) || (err == nil && data >= end) {
				break // only a hole is left
			}
			if err != nil {
				// The filesystem cannot tell: read everything that is left.
				return append(out, [2]int64{pos, end}), nil
			}
			hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
			if err != nil {
				hole = end
			}
			out = append(out, [2]int64{data, min(hole, end)})
			pos = hole
		}
		return out, nil
	}
}

// deviceSectorSize is the sector size mkfs.xfs would choose for w: a block device's physical
// sector size (its logical one if the physical one exceeds the 4 KiB block), else 512.
func deviceSectorSize(w any) int {
	f, ok := w.(*os.File)
	if !ok {
		return 512
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 {
		return 512
	}
	logical, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
	if err != nil || (logical != 512 && logical != 4096) {
		return 512
	}
	physical, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKPBSZGET)
	if err == nil && physical > logical && physical <= blockSize {
		return physical
	}
	return logical
}
