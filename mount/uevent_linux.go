package mount

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// UeventConn receives the kernel's uevents (device added, removed, changed, driver
// bound) without udev, so callers wait for devices instead of polling sysfs.
type UeventConn struct {
	fd  int
	buf []byte
}

// ErrUeventOverrun is returned by Read when the kernel dropped events because the
// socket's buffer was full: the caller must rescan sysfs for what it missed.
var ErrUeventOverrun = errors.New("uevents lost (receive buffer overrun)")

// OpenUevents subscribes to the kernel's uevent multicast group. Open it before
// scanning sysfs, so that no device added in between is missed.
func OpenUevents() (*UeventConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, fmt.Errorf("uevent socket: %w", err)
	}
	// Coldplugging a machine sends hundreds of events in a burst; a large buffer keeps
	// them (FORCE works for root beyond rmem_max).
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	// Group 1 is the kernel's own broadcast (udev re-sends on group 2).
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("uevent socket: bind: %w", err)
	}
	return &UeventConn{fd: fd, buf: make([]byte, 64*1024)}, nil
}

// Read blocks until the next kernel uevent. Messages not from the kernel (pid 0) or
// not parseable are skipped.
func (c *UeventConn) Read() (Uevent, error) {
	for {
		n, from, err := unix.Recvfrom(c.fd, c.buf, 0)
		switch {
		case errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN):
			continue
		case errors.Is(err, unix.ENOBUFS):
			return Uevent{}, ErrUeventOverrun
		case err != nil:
			return Uevent{}, os.NewSyscallError("recvfrom", err)
		}
		if nl, ok := from.(*unix.SockaddrNetlink); !ok || nl.Pid != 0 {
			continue
		}
		if e, ok := ParseUevent(c.buf[:n]); ok {
			return e, nil
		}
	}
}

// Close closes the socket; a blocked Read then fails.
func (c *UeventConn) Close() error { return unix.Close(c.fd) }
