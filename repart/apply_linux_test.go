package repart

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/testutil"
	"golang.org/x/sys/unix"
)

func sysfsInt(t *testing.T, p string) int64 {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// partNode makes a device node for partition n of a disk from sysfs (there may be no udev).
func partNode(t *testing.T, disk string, n int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/sys/block/%s/%sp%d/dev", disk, disk, n))
	if err != nil {
		t.Fatalf("kernel does not see partition %d of %s: %v", n, disk, err)
	}
	var maj, mnr uint32
	fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &maj, &mnr)
	p := filepath.Join(t.TempDir(), fmt.Sprintf("%sp%d", disk, n))
	if err := unix.Mknod(p, unix.S_IFBLK|0o600, int(unix.Mkdev(maj, mnr))); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestApplyBlockDevice runs a first boot on a loop device with partition scanning, as on a
// card: the kernel must see the new partitions (BLKPG) with the planned offsets and sizes,
// while partition 1 stays open the whole time (BLKRRPART alone would fail with EBUSY).
func TestApplyBlockDevice(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.Need(t, "losetup", "sgdisk")
	img := seedImage(t, 32*MiB, 128*MiB)
	out, err := exec.Command("losetup", "-f", "--show", "-P", img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	name := filepath.Base(dev)
	exec.Command("udevadm", "settle").Run()

	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// This host's kernel has no partition parsers; add partition 1 as a booted kernel would
	// have, and keep it open.
	if _, err := os.Stat(fmt.Sprintf("/sys/block/%s/%sp1", name, name)); err != nil {
		if err := blkpgPartition(f, unix.BLKPG_ADD_PARTITION, Partition{Index: 1, Offset: MiB, Size: 8 * MiB}); err != nil {
			t.Fatalf("BLKPG add partition 1: %v", err)
		}
	}
	busy, err := os.Open(partNode(t, name, 1))
	if err != nil {
		t.Fatalf("partition 1 of %s: %v", dev, err)
	}
	defer busy.Close()
	size, ss, err := DeviceSize(f)
	if err != nil || size != 128*MiB || ss != 512 {
		t.Fatalf("DeviceSize: %d %d %v", size, ss, err)
	}
	tab, err := gpt.Read(f, size, ss)
	if err != nil {
		t.Fatal(err)
	}
	defs, err := ParseDir(writeDefs(t, firstBootDefs), "arm64")
	if err != nil {
		t.Fatal(err)
	}
	l, err := Plan(Disk{Size: size, Table: tab}, defs, tab.DiskGUID)
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(f, size, l, fakeFormat); err != nil {
		t.Fatal(err)
	}
	for _, p := range l.Partitions {
		if p.Action == Unchanged {
			continue
		}
		sys := fmt.Sprintf("/sys/block/%s/%sp%d", name, name, p.Index)
		if _, err := os.Stat(sys); err != nil {
			t.Errorf("kernel does not see partition %d: %v", p.Index, err)
			continue
		}
		if start, n := sysfsInt(t, sys+"/start"), sysfsInt(t, sys+"/size"); start*512 != p.Offset || n*512 != p.Size {
			t.Errorf("partition %d: kernel has start %d size %d, planned %d %d", p.Index, start*512, n*512, p.Offset, p.Size)
		}
	}
	f.Sync()
	sgdiskClean(t, img)
}
