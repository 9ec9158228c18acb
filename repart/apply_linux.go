package repart

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const blkpg = 0x1269 // _IO(0x12, 105)

// notifyKernel makes the kernel see new and grown partitions of a block device: BLKPG for
// each (works while other partitions of the disk are in use), else one BLKRRPART.
func notifyKernel(w io.WriterAt, l *Layout) error {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return nil
	}
	if !partscanEnabled(fi) {
		return nil // a loop device without partition scanning has no partition devices to tell
	}
	var blkpgErr error
	for _, p := range l.Partitions {
		var err error
		switch p.Action {
		case Create:
			err = blkpgPartition(f, unix.BLKPG_ADD_PARTITION, p)
			if err == unix.EBUSY { // a stale partition with this number (factory reset): replace it
				if err = blkpgPartition(f, unix.BLKPG_DEL_PARTITION, p); err == nil {
					err = blkpgPartition(f, unix.BLKPG_ADD_PARTITION, p)
				}
			}
		case Grow:
			err = blkpgPartition(f, unix.BLKPG_RESIZE_PARTITION, p)
			if err == unix.ENXIO { // the kernel never had it (no partition parser): add it
				err = blkpgPartition(f, unix.BLKPG_ADD_PARTITION, p)
			}
		default:
			continue
		}
		if err != nil {
			blkpgErr = fmt.Errorf("BLKPG %s partition %d: %w", p.Action, p.Index, err)
			break
		}
	}
	if blkpgErr == nil {
		return nil
	}
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0); err != nil {
		return fmt.Errorf("repart: %w: %v; BLKRRPART: %v", ErrKernelNotTold, blkpgErr, err)
	}
	return nil
}

func blkpgPartition(f *os.File, op int32, p Partition) error {
	part := unix.BlkpgPartition{Start: p.Offset, Length: p.Size, Pno: int32(p.Index)}
	arg := unix.BlkpgIoctlArg{Op: op, Datalen: int32(unsafe.Sizeof(part)), Data: (*byte)(unsafe.Pointer(&part))}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), blkpg, uintptr(unsafe.Pointer(&arg))); e != 0 {
		return e
	}
	return nil
}

// partscanEnabled reads the disk's partscan attribute (kernels since 6.3); without it, assume
// the disk has partitions.
func partscanEnabled(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	path := "/sys/dev/block/" + strconv.FormatUint(uint64(unix.Major(st.Rdev)), 10) + ":" +
		strconv.FormatUint(uint64(unix.Minor(st.Rdev)), 10) + "/partscan"
	// Plain system calls: os.ReadFile would register the sysfs file with the runtime's
	// poller and allocate a page-sized buffer, for two bytes, at the end of every repart run.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return true
	}
	defer unix.Close(fd)
	var b [16]byte
	n, err := unix.Read(fd, b[:])
	return err != nil || strings.TrimSpace(string(b[:max(n, 0)])) != "0"
}

// DeviceSize returns the size of a block device or regular file, and the logical sector
// size of a block device (0 for a file: gpt.Read then probes).
func DeviceSize(f *os.File) (size int64, sectorSize int, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	if fi.Mode()&os.ModeDevice == 0 {
		return fi.Size(), 0, nil
	}
	var sz uint64
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&sz))); e != 0 {
		return 0, 0, fmt.Errorf("%s: BLKGETSIZE64: %w", f.Name(), e)
	}
	ss, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: BLKSSZGET: %w", f.Name(), err)
	}
	return int64(sz), ss, nil
}

func lock(f *os.File, exclusive bool) error {
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	return unix.Flock(int(f.Fd()), how)
}
