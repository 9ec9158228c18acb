package xfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

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

// zeroFunc returns how to zero a range of w without sending zeros, or nil.
func zeroFunc(w io.WriterAt) func(off, n int64) error {
	if z, ok := w.(ZeroRanger); ok {
		return func(off, n int64) error {
			err := z.ZeroRange(off, n)
			if errors.Is(err, errors.ErrUnsupported) {
				return errNoOffload
			}
			return err
		}
	}
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	fd := int(f.Fd())
	switch {
	case st.Mode().IsRegular():
		return func(off, n int64) error {
			err := unix.Fallocate(fd, unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, n)
			if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
				return errNoOffload
			}
			return err
		}
	case st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0:
		// The kernel writes zero pages itself where the device cannot zero (an SD card):
		// never more than we would write, and no copies through user space.
		return func(off, n int64) error {
			r := [2]uint64{uint64(off), uint64(n)}
			_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r[0])))
			if errno == unix.EOPNOTSUPP || errno == unix.ENOTTY {
				return errNoOffload
			}
			if errno != 0 {
				return errno
			}
			return nil
		}
	}
	return nil
}

// flushBuffers writes back and drops a block device's cached pages (BLKFLSBUF), so that
// reads come from the device. Without the privilege for it (it needs CAP_SYS_ADMIN), reads
// go through the cache, which is stale only if something wrote past it while it was open.
func flushBuffers(r io.ReaderAt) error {
	f, ok := r.(*os.File)
	if !ok {
		return nil
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 {
		return nil
	}
	err = unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0)
	if err != nil && !errors.Is(err, unix.ENOTTY) && !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("flushing the buffers of %s: %w", f.Name(), err)
	}
	return nil
}

// directReader reads a block device with O_DIRECT through a second descriptor: no page cache
// to fill and copy from (reads of a zeroed card run at the device's speed), and nothing
// cached to be stale. Reads it cannot serve aligned fall back to r. Returns r itself when
// r is not a block device or O_DIRECT is not available.
func directReader(r io.ReaderAt) (io.ReaderAt, func()) {
	f, ok := r.(*os.File)
	if !ok {
		return r, func() {}
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 {
		return r, func() {}
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return r, func() {}
	}
	d := &direct{fd: fd, fallback: r}
	return d, func() { unix.Close(fd) }
}

type direct struct {
	fd       int
	fallback io.ReaderAt
}

func (d *direct) ReadAt(b []byte, off int64) (int, error) {
	if uintptr(unsafe.Pointer(unsafe.SliceData(b)))%directAlign != 0 || off%directAlign != 0 || len(b)%directAlign != 0 {
		return d.fallback.ReadAt(b, off)
	}
	n := 0
	for n < len(b) {
		m, err := unix.Pread(d.fd, b[n:], off+int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, io.EOF
		}
		n += m
	}
	return n, nil
}
