package main

import (
	"bytes"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/piboot/piboot/internal/klog"
)

// execUptime returns when the kernel executed /init, on the CLOCK_MONOTONIC time line,
// from the timestamp of its "Run /init as init process" message (logged at info level,
// so it is in the kernel's log even under quiet). The log's clock (local_clock) and
// CLOCK_MONOTONIC do not share a zero (in QEMU the log's ran ahead of ours by more than
// Go's start-up), so a probe line written to /dev/kmsg between two clock readings ties
// them together. ok is false when the message
// is not there (the log wrapped, or the kernel prints no times): the caller then counts
// from main's package initialization. /proc/self/stat's starttime does not help: PID 1 is
// forked long before the exec, when the kernel starts its own initialization.
func execUptime() (up time.Duration, ok bool) {
	kmsg, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		return 0, false
	}
	before := monotonic()
	_, err = kmsg.Write([]byte("<7>" + string(probe[2:]) + "\n"))
	after := monotonic()
	kmsg.Close()
	if err != nil {
		return 0, false
	}
	// The two lines are the log's last few: read its end first (the kernel formats only
	// what fits), all of it only if they are not both there.
	size, err := unix.Klogctl(unix.SYSLOG_ACTION_SIZE_BUFFER, nil)
	if err != nil || size <= 0 {
		return 0, false
	}
	for _, n := range []int{min(8<<10, size), size} {
		buf := make([]byte, n)
		n, err = unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
		if err != nil {
			return 0, false
		}
		run, ok1 := klog.Time(buf[:n], klog.RunInit)
		logged, ok2 := klog.Time(buf[:n], probe)
		if ok1 && ok2 && run <= logged {
			return run + (before+after)/2 - logged, true
		}
	}
	return 0, false
}

// probe is the line execUptime writes to the kernel's log (after "] " as it reads back).
var probe = []byte("] piboot-init clock probe")

// monotonic is the clock the kernel's log timestamps follow (no suspend before init).
func monotonic() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// traceModuleInits prints, under piboot.trace, what the kernel's log says about the
// init functions of the modules loaded so far (with initcall_debug on the command line:
// "initcall ext4_init_fs+0x0/0x1000 [ext4] returned 0 after 20418 usecs"): against
// the module's time in finit_module, what loading itself cost (reading, checking the
// signature, relocating).
func traceModuleInits() {
	if !tracing {
		return
	}
	size, err := unix.Klogctl(unix.SYSLOG_ACTION_SIZE_BUFFER, nil)
	if err != nil || size <= 0 {
		return
	}
	buf := make([]byte, size)
	n, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
	if err != nil {
		return
	}
	for _, line := range bytes.Split(buf[:n], []byte("\n")) {
		if i := bytes.Index(line, []byte("] initcall ")); i >= 0 && bytes.Contains(line, []byte("] returned ")) {
			tracef("kernel: %s", line[i+2:])
		}
	}
}
