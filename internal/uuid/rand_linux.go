package uuid

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// fill reads from getrandom(2) directly: crypto/rand would do the same, but linking it costs
// every piboot run the FIPS DRBG's initialisation. Flags 0 blocks until the kernel's pool is
// seeded once, as crypto/rand does; after that it never blocks.
func fill(b []byte) error {
	for len(b) > 0 {
		n, err := unix.Getrandom(b, 0)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ENOSYS:
			// Kernels before 3.17 have no getrandom.
			return fillFrom("/dev/urandom", b)
		case err != nil:
			return &os.SyscallError{Syscall: "getrandom", Err: err}
		}
		b = b[n:]
	}
	return nil
}

func fillFrom(path string, b []byte) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for len(b) > 0 {
		n, err := f.Read(b)
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New(path + ": no data")
		}
		b = b[n:]
	}
	return nil
}
