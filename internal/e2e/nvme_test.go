package e2e

import (
	"path/filepath"
	"testing"

	"github.com/piboot/piboot/internal/qemu"
)

// TestNVMe boots a disk on an NVMe controller (a Compute Module's or another UEFI board's
// PCIe SSD): not mmcblk, so the store label finds it; the nvme driver loads by modalias;
// root is partition nvme0n1p4. Once alone, once next to a foreign SD card at mmcblk0 (the
// default candidate), which must stay byte-identical.
func TestNVMe(t *testing.T) {
	a := Build(t)
	for _, withSD := range []bool{false, true} {
		t.Run(map[bool]string{false: "alone", true: "foreign-sd-at-mmcblk0"}[withSD], func(t *testing.T) {
			dir := t.TempDir()
			disk := filepath.Join(dir, "nvme.img")
			MakeCard(t, disk, CardSpec{Size: 2 * gib}, a.Demo)
			before := untouched(t, disk)
			disks := []qemu.Disk{{Path: disk, Bus: qemu.NVMe}}
			var other, sum string
			if withSD {
				other = filepath.Join(dir, "foreign.img")
				sum = foreignCard(t, other, 256*mib)
				disks = append([]qemu.Disk{{Path: other, Bus: qemu.SD}}, disks...)
			}
			vm := qemu.Start(t, qemu.Config{Kernel: a.Kernel, Initrd: a.Initrd, Append: baseAppend, Disks: disks})
			vm.WaitFor(`^piboot-init: disk: /dev/nvme0n1 \(store label\)`, bootWait)
			vm.WaitFor(`^piboot-init: repart: created /dev/nvme0n1p4 \("root", \d+ bytes, ext4\)`, bootWait)
			vm.WaitFor(demoRE("/dev/nvme0n1p4", 1), bootWait)
			clean := waitPowerOff(t, vm)
			sgdiskClean(t, disk)
			root := readTable(t, disk).Partition(4)
			if root == nil || root.Name != "root" {
				t.Fatalf("partition 4: %+v", root)
			}
			if !clean {
				replayLog(t, disk, *root, "ext4")
			}
			e2fsckClean(t, disk, *root)
			if after := untouched(t, disk); after != before {
				t.Errorf("first boot changed partitions 1-3 or the gap before partition 1")
			}
			if withSD && hashRange(t, other, 0, 256*mib) != sum {
				t.Error("the foreign SD card changed")
			}
		})
	}
}
