// Command floor is the least a Go PID 1 does before its main runs: BenchmarkGoFloor boots
// it in place of piboot-init to measure the Go runtime's own start-up under the same
// kernel and QEMU, the floor under piboot-init's "Go start-up" figure.
//
// At main it logs a line to the kernel's log, reads the log back and prints the time
// between the kernel's "Run /init as init process" and that line (both on the log's clock),
// then powers off.
package main

import (
	"os"
	"strconv"
	"syscall"

	"github.com/piboot/piboot/internal/klog"
)

var atMain = []byte("] piboot-floor: main")

func main() {
	// The initramfs has /dev/console only; /dev/kmsg needs devtmpfs.
	kmsg, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		syscall.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
		kmsg, err = os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	}
	if err != nil {
		fail("open /dev/kmsg: " + err.Error())
	}
	kmsg.Write([]byte("<6>" + string(atMain[2:]) + "\n"))
	buf := make([]byte, 1<<20)
	n, err := syscall.Klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf)
	if err != nil {
		fail("read the kernel's log: " + err.Error())
	}
	exec, ok1 := klog.Time(buf[:n], klog.RunInit)
	reached, ok2 := klog.Time(buf[:n], atMain)
	if !ok1 || !ok2 {
		fail("the kernel's log has no timed \"Run /init\" line or no line of ours")
	}
	os.Stdout.WriteString("piboot-floor: exec to main " + strconv.FormatInt((reached-exec).Milliseconds(), 10) + " ms\n")
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}

func fail(msg string) {
	os.Stdout.WriteString("piboot-floor: error: " + msg + "\n")
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	select {} // PID 1 must not exit
}
