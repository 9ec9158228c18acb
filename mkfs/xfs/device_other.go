//go:build !linux

package xfs

import (
	"errors"
	"io"
)

func dataRangesFunc(io.ReaderAt) func(off, n int64) ([][2]int64, error) { return nil }

func deviceSectorSize(any) int { return 512 }

func zeroFunc(w io.WriterAt) func(off, n int64) error {
	z, ok := w.(ZeroRanger)
	if !ok {
		return nil
	}
	return func(off, n int64) error {
		err := z.ZeroRange(off, n)
		if errors.Is(err, errors.ErrUnsupported) {
			return errNoOffload
		}
		return err
	}
}

func flushBuffers(io.ReaderAt) error { return nil }

func directReader(r io.ReaderAt) (io.ReaderAt, func()) { return r, func() {} }
