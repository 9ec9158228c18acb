// Command piboot-init is PID 1 of piboot's initramfs. It mounts the kernel filesystems,
// loads the drivers the hardware needs (device modaliases matched against the
// initramfs's modules.alias, at start and from uevents as devices appear) and the
// filesystem modules it mounts, finds the boot disk (LoaderDevicePartUUID,
// then piboot.disk= candidates, then any disk with the store's label), runs repart with
// /etc/repart.d (creating and formatting the root partition on first boot), mounts root,
// store and ESP by partition label and switches root into init=.
//
// Every step is printed as "piboot-init: <step>: <detail>". Any failure prints
// "piboot-init: error: <reason>" and starts the emergency shell on the console; leaving
// the shell retries the boot. PID 1 never exits and never panics.
package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"
)

// started is when PID 1 began, for "switch_root: <init> after <N> ms"; startedUptime
// is the same moment as time since the kernel booted.
var (
	started       = time.Now()
	startedUptime = uptime()
)

func uptime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

func logf(step, format string, args ...any) {
	fmt.Fprintf(os.Stdout, "piboot-init: "+step+": "+format+"\n", args...)
}

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "piboot-init: error: must run as PID 1 (the initramfs's /init)")
		os.Exit(1)
	}
	debug.SetTraceback("all")
	for attempt := 1; ; attempt++ {
		err := safeBoot(attempt)
		// boot only returns on failure: success execs the new init.
		logf("error", "%v", err)
		safeShell()
	}
}

// safeShell runs the emergency shell; a panic there must not end PID 1 either.
func safeShell() {
	defer func() {
		if r := recover(); r != nil {
			logf("error", "emergency shell: internal error (panic): %v", r)
			time.Sleep(time.Second) // no busy loop if it keeps failing
		}
	}()
	if modules != nil {
		modules.loadAll()
	}
	emergencyShell("leave the shell (exit) to retry the boot")
}

// safeBoot runs one boot attempt and turns a panic into an error.
func safeBoot(attempt int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error (panic): %v\n%s", r, debug.Stack())
		}
	}()
	return boot(attempt)
}
