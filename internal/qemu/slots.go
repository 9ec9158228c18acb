package qemu

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// A TCG virtual CPU keeps one host core busy. `go test ./...` runs the packages as
// parallel processes, and several of them boot VMs: without a limit, six or eight guests
// share two cores, every boot runs at a fraction of its speed and a test's timeouts
// measure the neighbours' load instead of its own guest. Each VM therefore holds a slot
// for as long as QEMU runs: one of NumCPU lock files, taken with flock(2), which the
// kernel releases whatever way the holder ends.

// slotWait bounds the wait for a slot, so that a test holding one VM while it starts
// another can never wait forever; past it the VM starts anyway.
const slotWait = 5 * time.Minute

// slotDir is shared by every test process of this user on the machine.
func slotDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("piboot-qemu-slots-%d", os.Getuid()))
}

// slotCount is how many VMs run at once: PIBOOT_QEMU_VMS, else one per host CPU.
func slotCount() int {
	if n, err := strconv.Atoi(os.Getenv("PIBOOT_QEMU_VMS")); err == nil && n > 0 {
		return n
	}
	return max(1, runtime.NumCPU())
}

// acquireSlot waits for one of n slots in dir and returns the file holding it (close it to
// let the next VM run), how long it waited, and nil when no slot could be taken within
// wait or the lock files cannot be made (the VM then runs without one).
func acquireSlot(dir string, n int, wait time.Duration) (*os.File, time.Duration) {
	t0 := time.Now()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, 0
	}
	files := make([]*os.File, 0, n)
	defer func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}()
	for i := range n {
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(i)), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, 0
		}
		files = append(files, f)
	}
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		for i, f := range files {
			if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
				files[i] = nil // kept open: the lock lives as long as this descriptor
				return f, time.Since(t0)
			}
		}
		if time.Since(t0) > wait {
			return nil, time.Since(t0)
		}
		time.Sleep(delay)
	}
}
