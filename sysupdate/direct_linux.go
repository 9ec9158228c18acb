package sysupdate

import (
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// memAlign is the alignment of the payload buffers: a page, which satisfies O_DIRECT's
// memory alignment on every block device.
const memAlign = 4096

// alignedBuf returns n bytes starting at a memAlign boundary.
func alignedBuf(n int) []byte {
	b := make([]byte, n+memAlign)
	off := 0
	if r := int(uintptr(unsafe.Pointer(&b[0])) % memAlign); r != 0 {
		off = memAlign - r
	}
	return b[off : off+n : off+n]
}

// diskWriter writes a payload into a block device, bypassing the page cache (O_DIRECT)
// for whole logical blocks from aligned buffers: on a slot written once and read at the
// next boot, the page cache only costs a copy of every byte (measured: the kernel's copy
// into it was most of an update's CPU time). The rest — a payload's last partial block,
// or anything unaligned — goes through the ordinary descriptor, and Sync (fsync of the
// device, which also flushes its write cache) covers both.
type diskWriter struct {
	buffered *os.File
	direct   *os.File // nil: no O_DIRECT here (a regular file, or refused)
	block    int64    // logical block size

	directBytes int64 // written through O_DIRECT (tests)
}

// newDiskWriter wraps f, open read-write on path; O_DIRECT is used for block devices only.
func newDiskWriter(f *os.File, path string) *diskWriter {
	d := &diskWriter{buffered: f}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeDevice == 0 {
		return d
	}
	bs, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
	if err != nil || bs <= 0 || bs > memAlign || memAlign%bs != 0 {
		return d
	}
	direct, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return d
	}
	d.direct, d.block = direct, int64(bs)
	return d
}

func (d *diskWriter) WriteAt(p []byte, off int64) (int, error) {
	done := 0
	if d.direct != nil && len(p) > 0 && off%d.block == 0 && uintptr(unsafe.Pointer(&p[0]))%memAlign == 0 {
		if n := int64(len(p)) / d.block * d.block; n > 0 {
			w, err := d.direct.WriteAt(p[:n], off)
			switch {
			case errors.Is(err, unix.EINVAL) && w == 0:
				// Refused after all (a stacked device with stricter limits): stay buffered.
				d.direct.Close()
				d.direct = nil
			case err != nil:
				return w, err
			default:
				done, p, off = w, p[n:], off+n
				d.directBytes += int64(w)
			}
		}
	}
	if len(p) == 0 {
		return done, nil
	}
	w, err := d.buffered.WriteAt(p, off)
	return done + w, err
}

// Close closes the O_DIRECT descriptor (the caller owns the buffered one).
func (d *diskWriter) Close() error {
	if d.direct != nil {
		return d.direct.Close()
	}
	return nil
}
