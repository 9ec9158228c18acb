package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/piboot/piboot/initrd"
	"github.com/piboot/piboot/internal/qemu"
	"github.com/piboot/piboot/internal/testutil"
)

// goBuildFor builds a static command of this module for GOARCH arch.
func goBuildFor(arch, out, pkg string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s: %v\n%s", pkg, arch, err, b)
	}
	return nil
}

// buildAMD64 is Build for x86-64, in the test's temporary directory: Debian's amd64
// kernel and an initramfs with the amd64 module set, as `make initrd ARCH=amd64` makes
// it, and an amd64 piboot-demo for the store.
func buildAMD64(t testing.TB) Artifacts {
	t.Helper()
	testutil.Need(t, "go")
	vmlinuz, modules := testutil.Kernel(t, "amd64")
	dir := t.TempDir()
	a := Artifacts{Kernel: vmlinuz, Initrd: filepath.Join(dir, "initrd.cpio.zst"), Demo: filepath.Join(dir, "piboot-demo")}
	init := filepath.Join(dir, "piboot-init")
	for out, pkg := range map[string]string{init: "github.com/piboot/piboot/cmd/piboot-init", a.Demo: "github.com/piboot/piboot/cmd/piboot-demo"} {
		if err := goBuildFor("amd64", out, pkg); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := initrd.Busybox("amd64", initrd.ShellCommands, filepath.Join(testutil.Cache(), "amd64"))
	if err != nil {
		t.Fatal(err)
	}
	a.InitrdStats, err = initrd.BuildFile(a.Initrd, initrd.Config{
		Init: init, Busybox: bb, BusyboxCommands: initrd.ShellCommands,
		ModuleTree: modules, Modules: initrd.DefaultModules["amd64"],
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestAMD64 boots an x86-64 machine (q35 under TCG, Debian's amd64 kernel) from a
// virtio disk: the first boot creates and formats root to fill the disk, the second
// changes nothing and counts boots=2. Only the drivers for the machine's hardware load
// (virtio and the q35 chipset's AHCI), not the Pi's or USB's.
func TestAMD64(t *testing.T) {
	testutil.Need(t, "sgdisk", "e2fsck", "losetup")
	a := buildAMD64(t)
	const size = 2 * gib
	disk := filepath.Join(t.TempDir(), "disk.img")
	MakeCard(t, disk, CardSpec{Size: size}, a.Demo)
	before := untouched(t, disk)
	start := func() *qemu.VM {
		return qemu.Start(t, qemu.Config{Arch: "amd64", Kernel: a.Kernel, Initrd: a.Initrd,
			Append: baseAppend + " piboot.disk=vda no_timer_check", Disks: []qemu.Disk{{Path: disk, Bus: qemu.Virtio}}})
	}

	vm := start()
	vm.WaitFor(`^piboot-init: disk: /dev/vda \(piboot.disk=vda\) after \d+ ms`, bootWait)
	vm.WaitFor(`^piboot-init: repart: created /dev/vda4 \("root", \d+ bytes, ext4\)`, bootWait)
	vm.WaitFor(`^piboot-init: mount: /dev/vda4 \(root, ext4\) on /$`, bootWait)
	first := atoi(t, vm.WaitFor(switchRE, bootWait)[0], `after (\d+) ms`)
	m := vm.WaitFor(demoRE("/dev/vda4", 1), bootWait)
	vm.Wait(bootWait)
	mods := regexp.MustCompile(`(?m)^piboot-init: modules: loaded \d+ in \d+ ms \(for devices: (.*) in \d+ ms;`).FindStringSubmatch(vm.Log())
	if mods == nil {
		t.Fatal("no modules line on the console")
	}
	for _, want := range []string{"virtio_pci.ko", "virtio_blk.ko"} {
		if !strings.Contains(mods[1], want) {
			t.Errorf("drivers loaded for devices: %s; want %s among them", mods[1], want)
		}
	}
	for _, never := range []string{"sdhci", "xhci", "usb-storage", "nvme"} {
		if strings.Contains(mods[1], never) {
			t.Errorf("drivers loaded for devices: %s; %s has no hardware here", mods[1], never)
		}
	}
	rootsize, _ := strconv.ParseInt(m[1], 10, 64)
	rest := size - (espStart + espSize + 2*partSize)
	if rootsize > rest || rootsize < rest-2*mib {
		t.Errorf("rootsize %d, want about %d (the rest of the disk)", rootsize, rest)
	}
	sgdiskClean(t, disk)
	root := readTable(t, disk).Partition(4)
	if root == nil || root.Name != "root" || root.Size(512) != rootsize {
		t.Fatalf("partition 4 after first boot: %+v (demo saw %d bytes)", root, rootsize)
	}
	e2fsckClean(t, disk, *root)
	if after := untouched(t, disk); after != before {
		t.Fatalf("first boot changed partitions 1-3 or the gap before partition 1:\nbefore %s\nafter  %s", before, after)
	}
	gptBefore := hashRange(t, disk, 0, 34*512)

	vm = start()
	vm.WaitFor(`^piboot-init: repart: no changes`, bootWait)
	second := atoi(t, vm.WaitFor(switchRE, bootWait)[0], `after (\d+) ms`)
	vm.WaitFor(demoRE("/dev/vda4", 2), bootWait)
	vm.Wait(bootWait)
	if hashRange(t, disk, 0, 34*512) != gptBefore {
		t.Error("second boot changed the GPT")
	}
	t.Logf("amd64: switch_root after %d ms (first boot), %d ms (second boot); drivers for devices: %s", first, second, mods[1])
}
