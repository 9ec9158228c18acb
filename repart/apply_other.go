//go:build !linux

package repart

import (
	"io"
	"os"
)

func notifyKernel(w io.WriterAt, l *Layout) error { return nil }

// DeviceSize returns the size of a regular file (block devices need Linux).
func DeviceSize(f *os.File) (int64, int, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	return fi.Size(), 0, nil
}

func lock(f *os.File, exclusive bool) error { return nil }
