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

// TestBootAAVMF boots a UKI built here as the ESP's default loader (\EFI\BOOT\BOOTAA64.EFI)
// under AAVMF: the systemd stub must start the kernel with the embedded command line and the
// embedded initrd (the kernel says it runs /init only if that file exists in the initramfs).
func TestBootAAVMF(t *testing.T) {
	if testing.Short() {
		t.Skip("QEMU boot in -short mode")
	}
	testutil.Need(t, "mkfs.vfat", "mmd", "mcopy")
	nonce := make([]byte, 6)
	rand.Read(nonce)
	marker := "uki.test=" + hex.EncodeToString(nonce)
	path, _ := buildReal(t, "arm64", "console=ttyAMA0 panic=-1 "+marker)

	dir := t.TempDir()
	esp := filepath.Join(dir, "esp.img")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run("mkfs.vfat", "-C", esp, "65536")
	run("mmd", "-i", esp, "::EFI", "::EFI/BOOT")
	run("mcopy", "-i", esp, path, "::EFI/BOOT/BOOTAA64.EFI")
	vm := qemu.Start(t, qemu.Config{UEFI: true, Disks: []qemu.Disk{{Path: esp, Bus: qemu.Virtio}}})
	defer vm.Kill()
	vm.WaitFor(regexp.QuoteMeta("Kernel command line: console=ttyAMA0 panic=-1 "+marker), 120*time.Second)
	vm.WaitFor("Run /init as init process", 60*time.Second)
}
