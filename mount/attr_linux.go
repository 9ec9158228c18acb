package mount

import (
	"errors"
	"io/fs"

	"golang.org/x/sys/unix"
)

// readAttr reads a small file in three system calls (os.ReadFile takes six: two fstats,
// a read to see the end); sysfs hands out an attribute in one read. Coldplug and disk
// discovery read hundreds of them, and under emulation each call counts.
func readAttr(p string) ([]byte, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	for errors.Is(err, unix.EINTR) {
		fd, err = unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	buf := make([]byte, 4096) // a sysfs attribute is at most a page
	var out []byte
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: p, Err: err}
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, buf[:n]...)
		if n < len(buf) {
			// A short read is the whole attribute (sysfs hands it out at once) or a
			// regular file's end.
			return out, nil
		}
	}
}
