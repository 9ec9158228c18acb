package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/piboot/piboot/internal/testutil"
)

// VM is a running QEMU process and its serial console.
type VM struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	start time.Time

	mu     sync.Mutex
	out    []byte          // everything the console printed, \r removed
	ends   []time.Duration // when each complete line of out arrived, since start
	last   time.Time       // when output last arrived
	cursor int             // WaitFor searches from here; advanced past each match
	exited bool
	err    error // exit status once exited
	change chan struct{}
	done   chan struct{}
}

// Start boots c and ties the VM to t: killed at the end of the test, console log in the
// test output on failure. A missing QEMU or firmware skips (or fails under
// PIBOOT_REQUIRE_ALL) like every other missing tool.
func Start(t testing.TB, c Config) *VM {
	t.Helper()
	testutil.Need(t, Binary(normArch(c.Arch)))
	if c.UEFI {
		code, vars := Firmware(c.Arch)
		testutil.Need(t, code, vars)
	}
	if err := c.check(); err != nil {
		t.Fatal(err)
	}
	vars := c.Vars
	if c.UEFI && vars == "" {
		_, tmpl := Firmware(c.Arch)
		vars = filepath.Join(t.TempDir(), "vars.fd")
		if err := copyFile(vars, tmpl); err != nil {
			t.Fatalf("qemu: copy UEFI variable store: %v", err)
		}
	}
	args, err := c.Args(vars)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := start(t, Binary(normArch(c.Arch)), args)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

func start(t testing.TB, bin string, args []string) (*VM, error) {
	cmd := exec.Command(bin, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = w, w
	// Own process group: killing the VM never hits the test binary's group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	vm := &VM{t: t, cmd: cmd, stdin: stdin, change: make(chan struct{}), done: make(chan struct{})}
	slot, waited := acquireSlot(slotDir(), slotCount(), slotWait)
	switch {
	case slot == nil:
		t.Logf("qemu: starting without one of the %d VM slots in %s (none free after %s, or no lock files)",
			slotCount(), slotDir(), waited.Round(time.Millisecond))
	case waited > time.Second:
		t.Logf("qemu: waited %s for one of the %d VM slots", waited.Round(time.Millisecond), slotCount())
	}
	vm.start = time.Now()
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		if slot != nil {
			slot.Close()
		}
		return nil, fmt.Errorf("qemu: start %s: %w", bin, err)
	}
	w.Close()
	t.Logf("qemu: %s %s", bin, strings.Join(args, " "))
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				vm.append(buf[:n])
			}
			if err != nil {
				r.Close()
				return
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		if slot != nil {
			slot.Close()
		}
		<-readerDone
		vm.mu.Lock()
		vm.exited, vm.err = true, err
		vm.notifyLocked()
		vm.mu.Unlock()
		close(vm.done)
	}()
	t.Cleanup(func() {
		vm.Kill()
		if t.Failed() {
			t.Logf("qemu: console log (%s):\n%s", time.Since(vm.start).Round(time.Millisecond), vm.TimedLog())
		}
	})
	return vm, nil
}

func (vm *VM) append(b []byte) {
	now := time.Since(vm.start)
	vm.mu.Lock()
	b = bytes.ReplaceAll(b, []byte("\r"), nil)
	vm.out = append(vm.out, b...)
	vm.last = time.Now()
	for i := bytes.Count(b, []byte("\n")); i > 0; i-- {
		vm.ends = append(vm.ends, now)
	}
	vm.notifyLocked()
	vm.mu.Unlock()
}

// notifyLocked wakes every waiter; waiters re-check under the lock.
func (vm *VM) notifyLocked() {
	close(vm.change)
	vm.change = make(chan struct{})
}

// Log returns everything the console printed so far.
func (vm *VM) Log() string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return string(vm.out)
}

// TimedLog returns the console output with the host time (since QEMU started) at which
// each line arrived, to see where a boot spends its time.
func (vm *VM) TimedLog() string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	var b strings.Builder
	lines := strings.SplitAfter(string(vm.out), "\n")
	for i, l := range lines {
		if l == "" {
			continue
		}
		if i < len(vm.ends) {
			fmt.Fprintf(&b, "[%8.3fs] %s", vm.ends[i].Seconds(), l)
		} else {
			fmt.Fprintf(&b, "[%9s] %s", "", l)
		}
	}
	return b.String()
}

// Since returns the time since QEMU was started.
func (vm *VM) Since() time.Duration { return time.Since(vm.start) }

// ErrExited is returned by Expect when QEMU ends before the pattern appears.
var ErrExited = errors.New("qemu exited")

// quiet is how long the console must stay silent before an unfinished line (a prompt)
// is matched: a line still being printed must not match a pattern ending in $.
const quiet = 150 * time.Millisecond

// Expect waits until a line printed after the previous match matches re, and returns
// the submatches. The line being printed (not yet ended by a newline, as a shell prompt)
// counts too once the console has been quiet for a moment. It returns an error after
// timeout (scaled by PIBOOT_QEMU_SLOW) or when QEMU exits first.
func (vm *VM) Expect(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	deadline := time.NewTimer(scale(timeout))
	defer deadline.Stop()
	for {
		vm.mu.Lock()
		silent := time.Since(vm.last)
		if m, end := matchLines(re, vm.out, vm.cursor, silent >= quiet || vm.exited); m != nil {
			vm.cursor = end
			vm.mu.Unlock()
			return m, nil
		}
		exited, change := vm.exited, vm.change
		vm.mu.Unlock()
		if exited {
			return nil, fmt.Errorf("waiting for /%s/: %w (%v)", re, ErrExited, vm.err)
		}
		var recheck <-chan time.Time
		if silent < quiet {
			recheck = time.After(quiet - silent)
		}
		select {
		case <-change:
		case <-recheck:
		case <-deadline.C:
			return nil, fmt.Errorf("waiting for /%s/: timeout after %s", re, scale(timeout))
		}
	}
}

// matchLines looks for re in the lines of out starting at from; it returns the
// submatches and the offset just after the matched text. The last line, if not ended by
// a newline, is only looked at when partial is set.
func matchLines(re *regexp.Regexp, out []byte, from int, partial bool) ([]string, int) {
	for from < len(out) {
		line := out[from:]
		next := len(out)
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line, next = line[:i], from+i+1
		} else if !partial {
			break
		}
		if loc := re.FindSubmatchIndex(line); loc != nil {
			m := make([]string, len(loc)/2)
			for i := range m {
				if loc[2*i] >= 0 {
					m[i] = string(line[loc[2*i]:loc[2*i+1]])
				}
			}
			return m, from + loc[1]
		}
		from = next
	}
	return nil, from
}

// WaitFor is Expect that fails the test (with the console log) instead of returning an error.
func (vm *VM) WaitFor(pattern string, timeout time.Duration) []string {
	vm.t.Helper()
	m, err := vm.Expect(regexp.MustCompile(pattern), timeout)
	if err != nil {
		// What QEMU's threads did tells a guest waiting on nothing (vCPU asleep) from one
		// still computing (vCPU time growing) and from QEMU stuck on the host.
		vm.t.Fatalf("qemu: %v after %s (console silent for %s)\n%s", err, vm.Since().Round(time.Millisecond),
			vm.silence().Round(time.Millisecond), procState(vm.cmd.Process.Pid))
	}
	return m
}

// Send types text into the serial console.
func (vm *VM) Send(text string) {
	vm.t.Helper()
	if _, err := io.WriteString(vm.stdin, text); err != nil {
		vm.t.Fatalf("qemu: send %q: %v", text, err)
	}
}

// Wait waits for QEMU to exit on its own (the guest powered off) and fails the test if
// it does not within timeout or exits with an error.
func (vm *VM) Wait(timeout time.Duration) {
	vm.t.Helper()
	if err := vm.WaitExit(timeout); err != nil {
		vm.t.Fatalf("qemu: %v", err)
	}
}

// WaitExit is Wait returning an error instead of failing the test.
func (vm *VM) WaitExit(timeout time.Duration) error {
	select {
	case <-vm.done:
	case <-time.After(scale(timeout)):
		return fmt.Errorf("still running after %s (console silent for %s)\n%s", scale(timeout),
			vm.silence().Round(time.Millisecond), procState(vm.cmd.Process.Pid))
	}
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.err != nil {
		return fmt.Errorf("exited with %v", vm.err)
	}
	return nil
}

// silence is how long the console has printed nothing.
func (vm *VM) silence() time.Duration {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.last.IsZero() {
		return time.Since(vm.start)
	}
	return time.Since(vm.last)
}

// procState describes what each QEMU thread is doing on the host, to tell a guest that
// hangs (threads running or sleeping in poll) from QEMU stuck in the host kernel (state D,
// e.g. flushing the card image at exit).
func procState(pid int) string {
	var b strings.Builder
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	for _, task := range tasks {
		stat, _ := os.ReadFile(filepath.Join(task, "stat"))
		wchan, _ := os.ReadFile(filepath.Join(task, "wchan"))
		// Fields after the command name, which may hold spaces ("CPU 0/TCG"): state first,
		// utime and stime 11 and 12 further on (proc(5)).
		var f []string
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 {
			f = strings.Fields(string(stat[i+1:]))
		}
		state := "?"
		if len(f) > 0 {
			state = f[0]
		}
		comm, _ := os.ReadFile(filepath.Join(task, "comm"))
		fmt.Fprintf(&b, "qemu: host thread %s (%s): state %s, wchan %s", filepath.Base(task),
			strings.TrimSpace(string(comm)), state, strings.TrimSpace(string(wchan)))
		if len(f) > 12 {
			fmt.Fprintf(&b, ", utime %s stime %s ticks", f[11], f[12])
		}
		if state == "D" {
			if stack, err := os.ReadFile(filepath.Join(task, "stack")); err == nil {
				fmt.Fprintf(&b, "\n%s", strings.TrimSpace(string(stack)))
			}
		}
		b.WriteByte('\n')
	}
	return strings.TrimSpace(b.String())
}

// Kill stops QEMU if it still runs and waits until it is gone, so that its disk images
// are closed and complete.
func (vm *VM) Kill() {
	select {
	case <-vm.done:
		return
	default:
	}
	if vm.cmd.Process != nil {
		_ = syscall.Kill(-vm.cmd.Process.Pid, syscall.SIGKILL)
	}
	vm.stdin.Close()
	<-vm.done
}
