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
	"math"
	"os"
	"runtime/debug"
	"time"

	_ "github.com/piboot/piboot/internal/stack" // first: grows main's stack once, see there
	"golang.org/x/sys/unix"
)

// started is when main's package initialization ran and startedUptime the same moment
// as time since boot. The kernel executed PID 1 goStartup earlier (the Go runtime's
// start-up, ~100 ms under TCG): execKnown is closed once fromExec has set goStartup
// (still -1 if the kernel's log did not say). "switch_root: <init> after <N> ms" counts
// from the exec (sinceExec).
var (
	started       = time.Now()
	startedUptime = monotonic()
	goStartup     = time.Duration(-1)
	execKnown     = make(chan struct{})
	tracing       bool // piboot.trace
	// cpu0User and cpu0Sys are PID 1's CPU time when main's package initialization
	// ran: as a kernel thread before the exec, PID 1 ran the kernel's own initialization
	// (~700 ms system time under TCG), which is not piboot-init's.
	cpu0User, cpu0Sys = cpuTime()
)

// cpuTime returns PID 1's user and system CPU time so far.
func cpuTime() (user, sys time.Duration) {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// cpuSince0 is piboot-init's CPU time since main's package initialization.
func cpuSince0() (user, sys time.Duration) {
	u, s := cpuTime()
	return u - cpu0User, s - cpu0Sys
}

// fromExec sets goStartup from the kernel's log (it needs /dev and /proc) and closes
// execKnown; it runs once.
func fromExec() {
	defer close(execKnown)
	if up, ok := execUptime(); ok && up <= startedUptime {
		goStartup = startedUptime - up
	}
}

// sinceExec is the time since the kernel executed PID 1 (since main's initialization if
// the exec's time is unknown).
func sinceExec() time.Duration {
	<-execKnown
	return time.Since(started) + max(goStartup, 0)
}

func logf(step, format string, args ...any) {
	fmt.Fprintf(os.Stdout, "piboot-init: "+step+": "+format+"\n", args...)
}

// tracef prints a "trace:" line under piboot.trace: milliseconds since the exec and
// piboot-init's CPU time so far (user+system), then what happened.
func tracef(format string, args ...any) {
	if !tracing {
		return
	}
	u, sys := cpuSince0()
	fmt.Fprintf(os.Stdout, "piboot-init: trace: %5d ms (cpu %d+%d): "+format+"\n",
		append([]any{sinceExec().Milliseconds(), u.Milliseconds(), sys.Milliseconds()}, args...)...)
}

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "piboot-init: error: must run as PID 1 (the initramfs's /init)")
		os.Exit(1)
	}
	debug.SetTraceback("all")
	for attempt := 1; ; attempt++ {
		collectGarbage(false)
		err := safeBoot(attempt)
		// boot only returns on failure: success execs the new init.
		logf("error", "%v", err)
		safeShell()
	}
}

// collectGarbage switches Go's garbage collector between its usual pacing (on) and
// collecting only when the heap reaches bootHeapLimit (off). A boot attempt allocates a
// few MiB and then execs the new init, which frees everything: collections on the way
// only cost time (under TCG several ms each, on the one CPU the boot has). The limit
// still bounds the heap should an attempt allocate more than expected; the emergency
// shell, where PID 1 lives on, gets the usual collector back.
func collectGarbage(on bool) {
	if on {
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(math.MaxInt64)
		return
	}
	debug.SetMemoryLimit(bootHeapLimit)
	debug.SetGCPercent(-1)
}

const bootHeapLimit = 64 << 20

// safeShell runs the emergency shell; a panic there must not end PID 1 either.
func safeShell() {
	defer func() {
		if r := recover(); r != nil {
			logf("error", "emergency shell: internal error (panic): %v", r)
			time.Sleep(time.Second) // no busy loop if it keeps failing
		}
	}()
	collectGarbage(true)
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
