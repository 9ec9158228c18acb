package uki

import (
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/piboot/piboot/internal/qemu"
	"github.com/piboot/piboot/internal/testutil"
)

// TestBootUEFI boots a UKI built here as the ESP's default loader (\EFI\BOOT\BOOT<arch>.EFI)
// under AAVMF (arm64) and OVMF (x86-64): the systemd stub must start the kernel with the
// embedded command line and the embedded initrd (the kernel says it runs /init only if that
// file exists in the initramfs).
func TestBootUEFI(t *testing.T) {
	if testing.Short() {
		t.Skip("QEMU boot in -short mode")
	}
	testutil.Need(t, "mkfs.vfat", "mmd", "mcopy")
	for _, c := range []struct{ arch, loader, console string }{{"arm64", "BOOTAA64.EFI", "ttyAMA0"}, {"amd64", "BOOTX64.EFI", "ttyS0"}} {
		t.Run(c.arch, func(t *testing.T) {
			nonce := make([]byte, 6)
			rand.Read(nonce)
			cmdline := "console=" + c.console + " panic=-1 uki.test=" + hex.EncodeToString(nonce)
			path, _ := buildReal(t, c.arch, cmdline)
			esp := filepath.Join(t.TempDir(), "esp.img")
			for _, args := range [][]string{
				{"mkfs.vfat", "-C", esp, "65536"},
				{"mmd", "-i", esp, "::EFI", "::EFI/BOOT"},
				{"mcopy", "-i", esp, path, "::EFI/BOOT/" + c.loader},
			} {
				if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
					t.Fatalf("%v: %v\n%s", args, err, out)
				}
			}
			vm := qemu.Start(t, qemu.Config{Arch: c.arch, UEFI: true, Disks: []qemu.Disk{{Path: esp, Bus: qemu.Virtio}}})
			defer vm.Kill()
			vm.WaitFor(regexp.QuoteMeta("Kernel command line: "+cmdline), 150*time.Second)
			vm.WaitFor("Run /init as init process", 90*time.Second)
			t.Logf("%s: /init reached after %s", c.arch, vm.Since().Round(time.Millisecond))
		})
	}
}
