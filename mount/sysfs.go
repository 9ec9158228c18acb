// Package mount finds and mounts piboot's disks without udev: it scans sysfs for block
// devices, reads their GPTs (with the gpt package) to look partitions up by label and
// PARTUUID, reads systemd-boot's LoaderDevicePartUUID from efivarfs, waits for late
// devices, chooses the boot disk in DESIGN.md's order, creates /dev/disk/by-partlabel
// links, mounts filesystems (probing their type by superblock) and switches root.
//
// The discovery logic works on a sysfs tree given by path and an injected table reader,
// so it is tested with fake trees; the syscalls live in the _linux.go files.
package mount

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// BlockDev is a whole disk as sysfs describes it.
type BlockDev struct {
	Name       string // kernel name, e.g. "mmcblk0"
	Size       int64  // bytes
	SectorSize int    // logical block size
	Removable  bool
	Dev        string // "major:minor"
}

// Path is the device node under devDir ("/dev").
func (b BlockDev) Path(devDir string) string { return filepath.Join(devDir, b.Name) }

// ignoredDisk reports kernel devices that are never a boot disk: loop, RAM and
// compressed-RAM disks, device-mapper, and the boot partitions of eMMC chips.
func ignoredDisk(name string) bool {
	for _, p := range []string{"loop", "ram", "zram", "dm-", "md", "nbd", "sr"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return strings.HasPrefix(name, "mmcblk") && (strings.Contains(name, "boot") || strings.Contains(name, "rpmb"))
}

// readTrim reads a sysfs attribute (a few bytes, at most a page).
func readTrim(p string) (string, error) {
	b, err := readAttr(p)
	return strings.TrimSpace(string(b)), err
}

func readInt(p string) (int64, error) {
	s, err := readTrim(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(s, 10, 64)
}

// ScanDisks lists the whole disks in sysfsDir ("/sys"), sorted by name, skipping
// partitions, empty devices (size 0: a card reader without a card, an unbound loop) and
// devices that are never boot disks.
func ScanDisks(sysfsDir string) ([]BlockDev, error) {
	dir := filepath.Join(sysfsDir, "class", "block")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("scan block devices: %w", err)
	}
	var disks []BlockDev
	for _, e := range ents {
		name := e.Name()
		d := filepath.Join(dir, name)
		if _, err := os.Stat(filepath.Join(d, "partition")); err == nil {
			continue
		}
		if ignoredDisk(name) {
			continue
		}
		sectors, err := readInt(filepath.Join(d, "size"))
		if err != nil || sectors == 0 {
			continue
		}
		bd := BlockDev{Name: name, Size: sectors * 512, SectorSize: 512}
		if ss, err := readInt(filepath.Join(d, "queue", "logical_block_size")); err == nil && ss > 0 {
			bd.SectorSize = int(ss)
		}
		if r, err := readTrim(filepath.Join(d, "removable")); err == nil {
			bd.Removable = r == "1"
		}
		bd.Dev, _ = readTrim(filepath.Join(d, "dev"))
		disks = append(disks, bd)
	}
	sort.Slice(disks, func(i, j int) bool { return disks[i].Name < disks[j].Name })
	return disks, nil
}

// PartitionName returns the kernel name of partition n of disk: looked up in sysfs when
// the kernel knows it already, else by the kernel's naming rule (a "p" after names ending
// in a digit: mmcblk0p4, nvme0n1p2, but sda4, vda2).
func PartitionName(sysfsDir, disk string, n int) string {
	return PartitionNames(sysfsDir, disk).Name(n)
}

// PartNames maps partition numbers to the kernel's names for them, from one look at
// sysfs.
type PartNames struct {
	disk  string
	known map[int]string
}

// PartitionNames reads the names sysfs gives disk's partitions now.
func PartitionNames(sysfsDir, disk string) PartNames {
	pn := PartNames{disk: disk, known: map[int]string{}}
	d := filepath.Join(sysfsDir, "class", "block", disk)
	if ents, err := os.ReadDir(d); err == nil {
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), disk) {
				continue
			}
			if v, err := readInt(filepath.Join(d, e.Name(), "partition")); err == nil {
				pn.known[int(v)] = e.Name()
			}
		}
	}
	return pn
}

// Name returns partition n's kernel name: as sysfs said, or by the naming rule for a
// partition sysfs did not list.
func (pn PartNames) Name(n int) string {
	if name, ok := pn.known[n]; ok {
		return name
	}
	disk := pn.disk
	if last := disk[len(disk)-1]; last >= '0' && last <= '9' {
		return disk + "p" + strconv.Itoa(n)
	}
	return disk + strconv.Itoa(n)
}

// Modaliases lists the modaliases of the devices in sysfsDir ("/sys") that no driver
// has bound yet, from /sys/bus/*/devices/*/modalias: what a coldplug pass needs to load
// drivers for the devices the kernel found before anyone listened for uevents.
func Modaliases(sysfsDir string) ([]string, error) {
	var out []string
	_, err := EachModalias(sysfsDir, func(a string) { out = append(out, a) })
	return out, err
}

// EachModalias calls f with each modalias Modaliases would list, as the scan finds it,
// so that a driver can start loading while the scan goes on. It returns how many
// devices it looked at.
func EachModalias(sysfsDir string, f func(modalias string)) (devices int, err error) {
	return eachModalias(sysfsDir, func(string) bool { return true }, f)
}

// StorageBus reports the buses a disk's controller sits on (a Pi's SD controller is a
// platform device, QEMU's a PCI one, a virtio disk a virtio device): the sooner their
// drivers load, the more of the card's slow initialization overlaps everything else.
func StorageBus(bus string) bool {
	switch bus {
	case "pci", "platform", "amba", "virtio":
		return true
	}
	return false
}

// EachModaliasOn is EachModalias for the buses (names under /sys/bus) that want
// accepts: a caller scans the storage buses first and the rest later.
func EachModaliasOn(sysfsDir string, want func(bus string) bool, f func(modalias string)) (devices int, err error) {
	return eachModalias(sysfsDir, want, f)
}

func eachModalias(sysfsDir string, want func(bus string) bool, f func(modalias string)) (devices int, err error) {
	bus := filepath.Join(sysfsDir, "bus")
	buses, err := os.ReadDir(bus)
	if err != nil {
		return 0, fmt.Errorf("scan devices: %w", err)
	}
	// Storage buses first.
	sort.SliceStable(buses, func(i, j int) bool { return StorageBus(buses[i].Name()) && !StorageBus(buses[j].Name()) })
	for _, b := range buses {
		if !want(b.Name()) {
			continue
		}
		dir := filepath.Join(bus, b.Name(), "devices")
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue // a bus without devices directory
		}
		for _, e := range ents {
			devices++
			d := filepath.Join(dir, e.Name())
			if _, err := os.Lstat(filepath.Join(d, "driver")); err == nil {
				continue
			}
			if a, err := readTrim(filepath.Join(d, "modalias")); err == nil && a != "" {
				f(a)
			}
		}
	}
	return devices, nil
}
