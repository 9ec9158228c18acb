package images

import (
	"errors"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// nextData returns the offset of the first byte at or after off that may not be a hole
// (math.MaxInt64 when only holes follow).
func nextData(f *os.File, off int64) (int64, error) {
	d, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		// Only holes up to the end of the file, and zeros past it.
		return math.MaxInt64, nil
	}
	if err != nil {
		// File systems without SEEK_DATA: read everything.
		return off, nil
	}
	return d, nil
}
