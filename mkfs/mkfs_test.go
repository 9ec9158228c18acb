package mkfs

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/piboot/piboot/internal/uuid"

	"github.com/piboot/piboot/internal/testutil"
	"github.com/piboot/piboot/repart"
)

// TestForRepart formats a partition in the middle of a disk image through an offset writer,
// as repart.Apply does, and checks that nothing outside it was touched.
func TestForRepart(t *testing.T) {
	testutil.Need(t, "e2fsck", "dumpe2fs", "fsck.vfat")
	dir := t.TempDir()
	id := uuid.MustParse("4f68bce3-e8cd-4db1-96e7-fbcaf984b709")
	for _, tc := range []struct {
		format, check string
		args          []string
	}{
		{"ext4", "e2fsck", []string{"-fn"}},
		{"vfat", "fsck.vfat", []string{"-n"}},
	} {
		const off, size = 1 << 20, 64 << 20
		disk := filepath.Join(dir, tc.format+".img")
		guard := []byte(strings.Repeat("G", 4096))
		f, err := os.Create(disk)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(off + size + 4096)
		f.WriteAt(guard, off-4096)
		f.WriteAt(guard, off+size)
		req := repart.FormatRequest{Format: tc.format, Label: "root-x86-64", UUID: id, SectorSize: 512, Offset: off, Name: "disk.img partition 2 (root)"}
		if err := ForRepart(f, 0, req); err == nil {
			t.Errorf("%s: size 0 accepted", tc.format)
		}
		w := &offsetWriter{f, off}
		if err := ForRepart(w, size, req); err != nil {
			t.Fatalf("%s: %v", tc.format, err)
		}
		got := make([]byte, 4096)
		for _, at := range []int64{off - 4096, off + size} {
			f.ReadAt(got, at)
			if string(got) != string(guard) {
				t.Errorf("%s: wrote outside the partition near %d", tc.format, at)
			}
		}
		part := filepath.Join(dir, tc.format+".part")
		buf := make([]byte, size)
		f.ReadAt(buf, off)
		f.Close()
		os.WriteFile(part, buf, 0o644)
		if out, err := exec.Command(tc.check, append(tc.args, part)...).CombinedOutput(); err != nil {
			t.Errorf("%s %s: %v\n%s", tc.check, part, err, out)
		}
		// FAT records where its partition starts (BPB hidden sectors, offset 28).
		if hidden := binary.LittleEndian.Uint32(buf[28:32]); tc.format == "vfat" && hidden != off/512 {
			t.Errorf("vfat: hidden sectors %d, want %d", hidden, off/512)
		}
		if tc.format == "ext4" {
			out, _ := exec.Command("dumpe2fs", "-h", part).CombinedOutput()
			if !strings.Contains(string(out), id.String()) || !strings.Contains(string(out), "root-x86-64") {
				t.Errorf("ext4 lacks the requested UUID or label:\n%s", out)
			}
		}
	}
}

type offsetWriter struct {
	f   *os.File
	off int64
}

func (w *offsetWriter) WriteAt(p []byte, off int64) (int, error) { return w.f.WriteAt(p, w.off+off) }

func TestForRepartErrors(t *testing.T) {
	for _, tc := range []struct{ format, want string }{
		{"xfs", "Format=xfs: xfs: no device"},
		{"btrfs", "Format=btrfs is not supported"},
		{"", "Format= is not supported"},
	} {
		err := ForRepart(nil, 1<<30, repart.FormatRequest{Format: tc.format, Name: "/dev/mmcblk0p4 (root)"})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "/dev/mmcblk0p4 (root)") {
			t.Errorf("Format=%s: %v, want %q naming the partition", tc.format, err, tc.want)
		}
	}
}

func TestTruncateLabel(t *testing.T) {
	for in, want := range map[string]string{
		"root":                    "root",
		"root-x86-64-verity-sigs": "root-x86-64-veri",
		"ääääääääää":              "ääääääää",
	} {
		if got := truncateLabel(in, 16); got != want {
			t.Errorf("truncateLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestGrowthReserve: the filesystem repart makes on a card reserves descriptor blocks for
// online growth to 2 TiB instead of mke2fs's 1024-fold, so that first boot writes about 1 MiB
// of them instead of 4; small filesystems, whose 1024-fold reach is less, and large ones keep
// mke2fs's reserve.
func TestGrowthReserve(t *testing.T) {
	for size, want := range map[int64]int64{
		64 << 20: 0, 2 << 30: 0, 2<<30 + 4096: 2 << 40, 32 << 30: 2 << 40, 1 << 40: 2 << 40, 1<<40 + 4096: 0, 4 << 40: 0,
	} {
		if got := Ext4ResizeLimit(size); got != want {
			t.Errorf("Ext4ResizeLimit(%d) = %d, want %d", size, got, want)
		}
	}
	testutil.Need(t, "e2fsck", "dumpe2fs")
	for _, c := range []struct {
		size     int64
		reserved string // dumpe2fs "Reserved GDT blocks"
	}{
		{32 << 30, "252"},  // 2 TiB / 128 MiB per group / 64 descriptors per block, less the 4 in use
		{128 << 30, "240"}, // less the 16 in use
		{1 << 30, "127"},   // mke2fs's: 1024-fold, 1 TiB, 128 blocks, less the 1 in use
	} {
		img := filepath.Join(t.TempDir(), "root.img")
		f, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(c.size)
		err = ForRepart(f, c.size, repart.FormatRequest{Format: "ext4", Label: "root", UUID: uuid.MustParse("4f68bce3-e8cd-4db1-96e7-fbcaf984b709"), SectorSize: 512, Name: "card partition 4 (root)"})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil {
			t.Errorf("%d GiB: e2fsck -fn: %v\n%s", c.size>>30, err, out)
		}
		out, _ := exec.Command("dumpe2fs", "-h", img).CombinedOutput()
		if !strings.Contains(string(out), "Reserved GDT blocks:      "+c.reserved+"\n") {
			t.Errorf("%d GiB: want %s reserved GDT blocks:\n%s", c.size>>30, c.reserved, out)
		}
	}
}
