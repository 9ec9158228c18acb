//go:build !linux

package mount

import "os"

// readAttr reads a small file (sysfs exists only on Linux; this serves tests' trees).
func readAttr(p string) ([]byte, error) { return os.ReadFile(p) }
