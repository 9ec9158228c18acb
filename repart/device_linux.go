package repart

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// CheckWritable returns an error naming path when it is a read-only block device: a card
// whose write-protect switch is on, a loop device set up with -r. Opening such a device for
// writing succeeds, and only the first write fails, after the plan has been printed.
func CheckWritable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return checkWritable(f, path)
}

// checkWritable is CheckWritable on a file already open (Run's own descriptor: a second
// open and last close of a block device costs more than the ioctl).
func checkWritable(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return err
	}
	ro, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKROGET)
	if err != nil {
		return fmt.Errorf("%s: BLKROGET: %w", path, err)
	}
	if ro != 0 {
		return fmt.Errorf("%s is read-only (write-protected card or read-only device), nothing written", path)
	}
	return nil
}
