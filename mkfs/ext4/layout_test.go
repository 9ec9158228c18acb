package ext4

import (
	"testing"
)

// TestPlanLayout checks the pure plan at the sizes the project cares about: geometry as
// mke2fs computes it and metadata that neither overlaps nor leaves the filesystem.
func TestPlanLayout(t *testing.T) {
	for _, tc := range []struct {
		size                  int64
		groups                int
		ipg                   uint32
		rsvGDT, journalBlocks uint64
		backups               int
	}{
		{16 << 20, 1, 4096, 1, 1024, 0},
		// the rest as mkfs.ext4 1.47 makes them (dumpe2fs -h)
		{1 << 30, 8, 8192, 127, 8192, 4},
		{8 << 30, 64, 8192, 1023, 16384, 8},
		{128 << 30, 1024, 8192, 1024, 262144, 14},
		{1 << 40, 8192, 8192, 1024, 262144, 18},
		{2 << 40, 16384, 8192, 1024, 262144, 19},
	} {
		l, err := planLayout(tc.size, &Options{})
		if err != nil {
			t.Fatalf("%d: %v", tc.size, err)
		}
		if len(l.groups) != tc.groups || l.inodesPerGrp != tc.ipg || l.rsvGDT != tc.rsvGDT ||
			l.journalBlocks != tc.journalBlocks || len(l.backups) != tc.backups {
			t.Errorf("%d: groups %d ipg %d rsvGDT %d journal %d backups %d, want %+v",
				tc.size, len(l.groups), l.inodesPerGrp, l.rsvGDT, l.journalBlocks, len(l.backups), tc)
		}
		checkLayout(t, l)
	}
}

// checkLayout verifies that every piece of metadata is inside the filesystem and that the
// pieces add up to exactly the used blocks (so none overlaps another).
func checkLayout(t *testing.T, l *layout) {
	t.Helper()
	var sum uint64
	var pieces []extent
	for _, g := range l.groups {
		if g.backup {
			pieces = append(pieces, extent{g.start, 1 + l.descBlocks + l.rsvGDT})
		}
		pieces = append(pieces, extent{g.blockBitmap, 1}, extent{g.inodeBitmap, 1}, extent{g.inodeTable, l.itableBlocks})
	}
	pieces = append(pieces, extent{l.rootDir, 1}, extent{l.lpf, lpfBlocks})
	if l.rsvGDT > 0 {
		pieces = append(pieces, extent{l.resizeDind, 1})
	}
	if l.journalLeaf != 0 {
		pieces = append(pieces, extent{l.journalLeaf, 1})
	}
	var jsum uint64
	for _, e := range l.journal {
		if e.len > maxExtentLen {
			t.Errorf("journal extent %v longer than %d", e, maxExtentLen)
		}
		jsum += e.len
	}
	pieces = append(pieces, l.journal...)
	if jsum != l.journalBlocks {
		t.Errorf("journal extents hold %d blocks, want %d", jsum, l.journalBlocks)
	}
	var check usedSet
	for _, p := range pieces {
		if p.end() > l.blocks {
			t.Errorf("metadata %v beyond the last block %d", p, l.blocks)
		}
		if check.count(p.start, p.end()) != 0 {
			t.Errorf("metadata %v overlaps other metadata", p)
		}
		check.add(p)
		sum += p.len
	}
	if sum != l.used.total || check.total != l.used.total {
		t.Errorf("pieces add up to %d blocks, allocator has %d", sum, l.used.total)
	}
	var free uint64
	for _, g := range l.groups {
		free += uint64(g.freeBlocks)
	}
	if free != l.freeBlocks() {
		t.Errorf("group free counts add up to %d, superblock says %d", free, l.freeBlocks())
	}
}

// TestPlanOdd covers sizes that end in a partial group, including one too small to keep.
func TestPlanOdd(t *testing.T) {
	for _, size := range []int64{MinSize, 16<<20 + 4096, 129 << 20, 1<<30 + 100<<10, 1<<30 + 300<<20, 5<<40 + 12345<<12, MaxSize} {
		l, err := planLayout(size, &Options{})
		if err != nil {
			t.Fatalf("%d: %v", size, err)
		}
		if l.blocks*blockSize > uint64(size) {
			t.Errorf("%d: %d blocks overflow", size, l.blocks)
		}
		if rem := uint64(size)/blockSize - l.blocks; rem >= blocksPerGroup {
			t.Errorf("%d: dropped %d blocks", size, rem)
		}
		checkLayout(t, l)
	}
}

func TestPlanErrors(t *testing.T) {
	for _, tc := range []struct {
		size int64
		opts Options
	}{
		{MinSize - 4096, Options{}},
		{MaxSize + 4096, Options{}},
		{1 << 30, Options{InodeRatio: 1024}},
		{1 << 30, Options{ReservedPercent: 60}},
		{1 << 30, Options{JournalBlocks: 100}},
		{64 << 20, Options{JournalBlocks: 10000}},
	} {
		if _, err := planLayout(tc.size, &tc.opts); err == nil {
			t.Errorf("size %d %+v: no error", tc.size, tc.opts)
		}
	}
}

func TestUsedSet(t *testing.T) {
	var u usedSet
	u.add(extent{10, 5})
	u.add(extent{20, 5})
	u.add(extent{15, 5}) // bridges both
	if len(u.runs) != 1 || u.runs[0] != (extent{10, 15}) || u.total != 15 {
		t.Fatalf("runs %v total %d", u.runs, u.total)
	}
	if pos, ok := u.find(12, 3, 100); !ok || pos != 25 {
		t.Errorf("find = %d %v", pos, ok)
	}
	if pos, ok := u.find(0, 10, 100); !ok || pos != 0 {
		t.Errorf("find = %d %v", pos, ok)
	}
	if _, ok := u.find(0, 11, 30); ok {
		t.Errorf("found room that is not there")
	}
	if c := u.count(0, 12); c != 2 {
		t.Errorf("count = %d", c)
	}
	if n := u.nextUsed(26, 100); n != 100 {
		t.Errorf("nextUsed = %d", n)
	}
}

func TestSetBits(t *testing.T) {
	for _, r := range [][2]uint64{{0, 0}, {0, 1}, {3, 5}, {7, 17}, {8, 16}, {5, 100}, {0, 32768}} {
		bm := make([]byte, 4096)
		setBits(bm, r[0], r[1])
		for b := uint64(0); b < 32768; b++ {
			if got, want := bm[b/8]&(1<<(b%8)) != 0, b >= r[0] && b < r[1]; got != want {
				t.Fatalf("setBits%v: bit %d = %v", r, b, got)
			}
		}
	}
}
