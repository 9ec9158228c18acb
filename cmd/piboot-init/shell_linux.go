package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const shellPath = "/bin/gosh"

// consoleDevice is the terminal behind /dev/console (the last console= of the command
// line), opened directly so it can become the shell's controlling terminal.
func consoleDevice() string {
	if b, err := os.ReadFile("/sys/class/tty/console/active"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			dev := "/dev/" + f[len(f)-1]
			if _, err := os.Stat(dev); err == nil {
				return dev
			}
		}
	}
	return "/dev/console"
}

// emergencyShell runs the u-root shell on the console and returns when it exits.
func emergencyShell(why string) {
	if _, err := os.Stat(shellPath); err != nil {
		logf("shell", "no emergency shell in this initramfs (%s); retrying in 10 s", shellPath)
		time.Sleep(10 * time.Second)
		return
	}
	dev := consoleDevice()
	tty, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		logf("shell", "open %s: %v; using the inherited console", dev, err)
		tty = nil
	}
	logf("shell", "starting %s on %s; %s", shellPath, dev, why)
	cmd := exec.Command(shellPath)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/bin:/bbin", "HOME=/root", "TERM=linux", "PS1=piboot# "}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if tty != nil {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}
	err = cmd.Start()
	if err != nil && tty != nil {
		// Without job control rather than without a shell.
		logf("shell", "%s as controlling terminal: %v", dev, err)
		cmd = exec.Command(shellPath)
		cmd.Dir, cmd.Env = "/", []string{"PATH=/bin:/bbin", "HOME=/root", "TERM=linux"}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		err = cmd.Start()
	}
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		logf("shell", "%s: %v", filepath.Base(shellPath), err)
	}
	if tty != nil {
		tty.Close()
	}
	reapZombies()
	reopenConsole()
}

// reopenConsole gives PID 1 fresh descriptors on /dev/console. The shell was a session
// leader with the serial port as its controlling terminal; when it exits, the kernel
// hangs that terminal up, and depending on how the last closes race, the descriptors
// PID 1 inherited can end up writing nowhere (EIO, or a port that was shut down) — the
// next attempt's lines, and its error, would then never reach the console. init systems
// reopen the console after such a hangup for the same reason.
func reopenConsole() {
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return // keep what we have: still better than nothing
	}
	for _, to := range []int{0, 1, 2} {
		_ = unix.Dup3(fd, to, 0)
	}
	unix.Close(fd)
}

// reapZombies collects orphans the shell left behind: PID 1 inherits them.
func reapZombies() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
