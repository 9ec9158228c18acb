// Command echoinit is a minimal PID 1 for the qemu package's own test: it answers every
// console line with "echo: <line>" and powers off on "poweroff".
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"syscall"
)

func main() {
	fmt.Println("echoinit: ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "poweroff" {
			break
		}
		fmt.Printf("echo: %s\n", line)
	}
	fmt.Println("echoinit: bye")
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}
