//go:build !linux

package images

import "os"

// nextData returns off: without SEEK_DATA every byte is read.
func nextData(f *os.File, off int64) (int64, error) { return off, nil }
