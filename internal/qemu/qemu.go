// Package qemu boots virtual machines for piboot's tests: QEMU's aarch64 "virt" machine (or
// x86-64 q35) under TCG, either straight into a kernel and initramfs or through UEFI
// firmware, with SD cards, USB sticks and virtio disks attached, and the serial console
// captured line by line so a test can wait for output and type into the shell.
//
// Everything is tied to a testing.TB: the VM is killed when the test ends, and the whole
// console log is written to the test log when the test fails.
package qemu

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Bus says how a disk is attached to the VM.
type Bus int

const (
	// SD is an SD card behind its own sdhci-pci controller: the Nth card is /dev/mmcblkN.
	// QEMU requires the image size to be a power of two.
	SD Bus = iota
	// USB is a usb-storage stick behind a qemu-xhci controller (/dev/sdX in Linux).
	USB
	// Virtio is a virtio-blk-pci disk (/dev/vdX).
	Virtio
	// NVMe is an NVMe controller with one namespace (/dev/nvmeNn1).
	NVMe
)

func (b Bus) String() string {
	switch b {
	case SD:
		return "sd"
	case USB:
		return "usb"
	case Virtio:
		return "virtio"
	case NVMe:
		return "nvme"
	}
	return "bus(" + strconv.Itoa(int(b)) + ")"
}

// Disk is one raw image file attached to the VM.
type Disk struct {
	Path     string
	Bus      Bus
	ReadOnly bool
}

// Config describes one VM. Either Kernel is set (direct kernel boot) or UEFI is true
// (firmware boots from the disks).
type Config struct {
	// Arch is "arm64" (default) or "amd64".
	Arch string

	// Direct kernel boot.
	Kernel string
	Initrd string
	Append string // kernel command line; the serial console= is added when missing

	// UEFI boots the firmware (AAVMF or OVMF) with a private copy of its variable store.
	UEFI bool
	// Vars, when set, is used as the variable store (and kept); otherwise a fresh copy
	// of the firmware's template is made in a temporary directory.
	Vars string

	MemoryMiB int // default 1024
	CPUs      int // default 1

	Disks []Disk

	// Net adds user-mode networking with a virtio-net card: the guest reaches the host
	// as 10.0.2.2 and gets 10.0.2.15 by DHCP.
	Net bool

	// Extra is appended to QEMU's arguments verbatim.
	Extra []string
}

// firmware paths of Debian's qemu-efi-aarch64 and ovmf packages.
var firmware = map[string][2]string{
	"arm64": {"/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"},
	"amd64": {"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
}

// Binary returns the QEMU system emulator for arch.
func Binary(arch string) string {
	if arch == "amd64" {
		return "qemu-system-x86_64"
	}
	return "qemu-system-aarch64"
}

// Firmware returns the UEFI code and variable-store template for arch.
func Firmware(arch string) (code, vars string) {
	f := firmware[normArch(arch)]
	return f[0], f[1]
}

// Console returns the kernel's console= value for the serial port of arch.
func Console(arch string) string {
	if normArch(arch) == "amd64" {
		return "ttyS0"
	}
	return "ttyAMA0"
}

func normArch(a string) string {
	if a == "" {
		return "arm64"
	}
	return a
}

// Args returns QEMU's command line for c; vars is the writable variable store for UEFI.
// It is pure so that the mapping from Config to devices can be tested without QEMU.
func (c Config) Args(vars string) ([]string, error) {
	arch := normArch(c.Arch)
	if arch != "arm64" && arch != "amd64" {
		return nil, fmt.Errorf("qemu: unknown arch %q (want arm64 or amd64)", c.Arch)
	}
	if (c.Kernel == "") == !c.UEFI {
		return nil, fmt.Errorf("qemu: set exactly one of Kernel (direct boot) and UEFI")
	}
	mem, cpus := c.MemoryMiB, c.CPUs
	if mem == 0 {
		mem = 1024
	}
	if cpus == 0 {
		cpus = 1
	}
	var a []string
	if arch == "arm64" {
		a = append(a, "-M", "virt", "-cpu", "cortex-a72")
	} else {
		a = append(a, "-M", "q35")
	}
	// The serial console is stdio and nothing else: no monitor multiplexed into it, so
	// that every byte the test sends reaches the guest.
	a = append(a, "-accel", "tcg", "-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-nodefaults")
	if c.UEFI {
		code, _ := Firmware(arch)
		a = append(a,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	} else {
		a = append(a, "-kernel", c.Kernel)
		if c.Initrd != "" {
			a = append(a, "-initrd", c.Initrd)
		}
		app := c.Append
		if !strings.Contains(app, "console=") {
			app = strings.TrimSpace("console=" + Console(arch) + " " + app)
		}
		// A task stuck in the kernel (an I/O that never completes) prints its stack on the
		// console after 20 s instead of 120 s, within a test's wait; it changes nothing else.
		if !strings.Contains(app, "hung_task_timeout_secs") {
			app += " sysctl.kernel.hung_task_timeout_secs=20"
		}
		a = append(a, "-append", app)
	}
	var nsd, nusb, nvirt int
	for i, d := range c.Disks {
		if strings.ContainsAny(d.Path, ",") {
			return nil, fmt.Errorf("qemu: disk %d: path %q contains a comma", i, d.Path)
		}
		id := fmt.Sprintf("disk%d", i)
		drive := "if=none,id=" + id + ",format=raw,file=" + d.Path
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		switch d.Bus {
		case SD:
			// One controller per card, each card right after its controller: QEMU puts a
			// card on the newest sd-bus with room, so interleaving pins card N to
			// controller N (and so to /dev/mmcblkN).
			a = append(a, "-device", fmt.Sprintf("sdhci-pci,id=sdhci%d", nsd),
				"-drive", drive, "-device", "sd-card,drive="+id)
			nsd++
		case USB:
			if nusb == 0 {
				a = append(a, "-device", "qemu-xhci,id=xhci")
			}
			a = append(a, "-drive", drive, "-device", fmt.Sprintf("usb-storage,bus=xhci.0,drive=%s,removable=off", id))
			nusb++
		case Virtio:
			a = append(a, "-drive", drive, "-device", "virtio-blk-pci,drive="+id)
			nvirt++
		case NVMe:
			a = append(a, "-drive", drive, "-device", fmt.Sprintf("nvme,drive=%s,serial=piboot%d", id, i))
		default:
			return nil, fmt.Errorf("qemu: disk %d: unknown bus %v", i, d.Bus)
		}
	}
	if c.Net {
		a = append(a, "-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0")
	}
	a = append(a, c.Extra...)
	return a, nil
}

// check validates what Args cannot see: files exist and SD images have sizes QEMU accepts.
func (c Config) check() error {
	for _, p := range []string{c.Kernel, c.Initrd} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("qemu: %w", err)
		}
	}
	if c.UEFI {
		code, vars := Firmware(c.Arch)
		for _, p := range []string{code, vars} {
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("qemu: UEFI firmware: %w", err)
			}
		}
	}
	for i, d := range c.Disks {
		st, err := os.Stat(d.Path)
		if err != nil {
			return fmt.Errorf("qemu: disk %d: %w", i, err)
		}
		if d.Bus == SD {
			if n := st.Size(); n <= 0 || n&(n-1) != 0 {
				return fmt.Errorf("qemu: SD card image %s is %d bytes; QEMU needs a power of two", d.Path, n)
			}
		}
	}
	return nil
}

// TimeoutScale multiplies every timeout of this package; set PIBOOT_QEMU_SLOW=3 on a
// very loaded machine.
func TimeoutScale() float64 {
	if s := os.Getenv("PIBOOT_QEMU_SLOW"); s != "" {
		if f, err := strconv.ParseFloat(s, 64); err == nil && f > 0 {
			return f
		}
	}
	return 1
}

func scale(d time.Duration) time.Duration { return time.Duration(float64(d) * TimeoutScale()) }

func copyFile(dst, src string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
