package ext4

import (
	"fmt"
	"sort"
)

const (
	blockSize      = 4096
	blocksPerGroup = 32768
	inodeSize      = 256
	descSize       = 64
	flexGroups     = 16
	logFlexGroups  = 4
	firstIno       = 11
	addrPerBlock   = blockSize / 4
	maxExtentLen   = 32768
	lpfBlocks      = 4 // lost+found is 16 KiB, like mke2fs makes it
	// MinSize is the smallest filesystem Format makes: below it mkfs.ext4 would not add a
	// journal either.
	MinSize = 8 << 20
	// MaxSize is the largest: the resize inode maps blocks with 32-bit numbers.
	MaxSize = (1<<32 - 1) * blockSize
)

// extent is a run of blocks [start, start+len).
type extent struct{ start, len uint64 }

func (e extent) end() uint64 { return e.start + e.len }

// usedSet is a sorted list of disjoint allocated runs; the filesystem holds a few thousand at
// most (a handful per flex group), so a slice beats a bitmap of up to 2^32 bits.
type usedSet struct {
	runs  []extent
	total uint64
}

func (u *usedSet) add(e extent) {
	if e.len == 0 {
		return
	}
	i := sort.Search(len(u.runs), func(i int) bool { return u.runs[i].start >= e.start })
	u.runs = append(u.runs, extent{})
	copy(u.runs[i+1:], u.runs[i:])
	u.runs[i] = e
	u.total += e.len
	// merge with neighbours so the list stays short
	if i+1 < len(u.runs) && u.runs[i].end() == u.runs[i+1].start {
		u.runs[i].len += u.runs[i+1].len
		u.runs = append(u.runs[:i+1], u.runs[i+2:]...)
	}
	if i > 0 && u.runs[i-1].end() == u.runs[i].start {
		u.runs[i-1].len += u.runs[i].len
		u.runs = append(u.runs[:i], u.runs[i+1:]...)
	}
}

// find returns the first free run of n blocks at or after goal and below limit.
func (u *usedSet) find(goal, n, limit uint64) (uint64, bool) {
	i := sort.Search(len(u.runs), func(i int) bool { return u.runs[i].end() > goal })
	pos := goal
	for ; i < len(u.runs); i++ {
		if u.runs[i].start >= pos+n {
			break
		}
		if u.runs[i].end() > pos {
			pos = u.runs[i].end()
		}
	}
	return pos, pos+n <= limit
}

// nextUsed returns the start of the first used run at or after pos, or limit.
func (u *usedSet) nextUsed(pos, limit uint64) uint64 {
	i := sort.Search(len(u.runs), func(i int) bool { return u.runs[i].end() > pos })
	if i < len(u.runs) && u.runs[i].start < limit {
		return max(u.runs[i].start, pos)
	}
	return limit
}

// count returns how many blocks of [start, end) are used.
func (u *usedSet) count(start, end uint64) uint64 {
	var c uint64
	i := sort.Search(len(u.runs), func(i int) bool { return u.runs[i].end() > start })
	for ; i < len(u.runs) && u.runs[i].start < end; i++ {
		c += min(u.runs[i].end(), end) - max(u.runs[i].start, start)
	}
	return c
}

type group struct {
	start, blocks                        uint64
	backup                               bool // holds a superblock and descriptor backup
	blockBitmap, inodeBitmap, inodeTable uint64
	flags                                uint16
	freeBlocks, freeInodes, usedDirs     uint32
	itableUnused                         uint32
}

const (
	bgInodeUninit  = 0x1
	bgBlockUninit  = 0x2
	bgItableZeroed = 0x4
)

// layout is the pure plan of a filesystem: where every metadata block goes. It does no I/O.
type layout struct {
	blocks        uint64
	reserved      uint64
	inodesPerGrp  uint32
	itableBlocks  uint64
	descBlocks    uint64
	rsvGDT        uint64
	groups        []group
	backups       []int // backup groups other than 0, ascending (the resize inode's order)
	used          usedSet
	resizeDind    uint64
	rootDir       uint64
	lpf           uint64 // lpfBlocks contiguous blocks
	journal       []extent
	journalBlocks uint64
	journalLeaf   uint64 // 0 unless the journal needs an extent leaf block
}

// defaultJournalBlocks is mke2fs's ext2fs_default_journal_size.
func defaultJournalBlocks(blocks uint64) uint64 {
	switch {
	case blocks < 32768:
		return 1024
	case blocks < 256*1024:
		return 4096
	case blocks < 512*1024:
		return 8192
	case blocks < 4096*1024:
		return 16384
	case blocks < 8192*1024:
		return 32768
	case blocks < 16384*1024:
		return 65536
	case blocks < 32768*1024:
		return 131072
	}
	return 262144
}

// defaultInodeRatio follows mke2fs.conf's usage types: "small" below 512 MiB, "default" up
// to 4 TiB, "big" and "huge" above.
func defaultInodeRatio(size int64) int64 {
	switch {
	case size < 512<<20:
		return 4096
	case size < 4<<40:
		return 16384
	case size < 16<<40:
		return 32768
	}
	return 65536
}

// hasBackup says whether group g keeps a superblock backup under sparse_super.
func hasBackup(g uint64) bool {
	if g <= 1 {
		return true
	}
	for _, p := range []uint64{3, 5, 7} {
		n := g
		for n%p == 0 {
			n /= p
		}
		if n == 1 {
			return true
		}
	}
	return false
}

func ceilDiv(a, b uint64) uint64 { return (a + b - 1) / b }

// planLayout decides the geometry and places all metadata for a filesystem of size bytes.
func planLayout(size int64, opts *Options) (*layout, error) {
	if size < MinSize {
		return nil, fmt.Errorf("ext4: %d bytes is too small (minimum %d)", size, MinSize)
	}
	if size > MaxSize {
		return nil, fmt.Errorf("ext4: %d bytes is too large (maximum %d)", size, int64(MaxSize))
	}
	if opts.ResizeLimit != 0 && (opts.ResizeLimit < size || opts.ResizeLimit > MaxSize) {
		return nil, fmt.Errorf("ext4: resize limit %d outside [%d, %d] (the size, and the largest filesystem)", opts.ResizeLimit, size, int64(MaxSize))
	}
	ratio := int64(opts.InodeRatio)
	if ratio == 0 {
		ratio = defaultInodeRatio(size)
	}
	if ratio < blockSize || ratio > 64<<20 {
		return nil, fmt.Errorf("ext4: inode ratio %d out of range [%d, %d]", ratio, blockSize, 64<<20)
	}
	l := &layout{blocks: uint64(size) / blockSize}
	for {
		ngroups := ceilDiv(l.blocks, blocksPerGroup)
		inodes := uint64(size) / uint64(ratio)
		ipg := ceilDiv(inodes, ngroups)
		const inodesPerBlock = blockSize / inodeSize
		ipg = ceilDiv(max(ipg, 16), inodesPerBlock) * inodesPerBlock
		ipg = min(ipg, blockSize*8)
		if ipg*ngroups >= 1<<32 {
			ipg = ((1<<32 - 1) / ngroups) / inodesPerBlock * inodesPerBlock
		}
		l.inodesPerGrp = uint32(ipg)
		l.itableBlocks = ipg * inodeSize / blockSize
		l.descBlocks = ceilDiv(ngroups*descSize, blockSize)
		// calc_reserved_gdt_blocks: room to grow 1024-fold, at most to 2^32 blocks.
		maxBlocks := uint64(1<<32 - 1)
		if l.blocks < maxBlocks/1024 {
			maxBlocks = l.blocks * 1024
		}
		if opts.ResizeLimit != 0 {
			maxBlocks = min(uint64(opts.ResizeLimit)/blockSize, 1<<32-1)
		}
		rsvGroups := ceilDiv(maxBlocks, blocksPerGroup)
		rsv := int64(ceilDiv(rsvGroups, blockSize/descSize)) - int64(l.descBlocks)
		rsv = min(max(rsv, 0), addrPerBlock)
		l.rsvGDT = uint64(max(rsv, 0))
		// Like mke2fs, drop a last group too small for its own metadata.
		rem := l.blocks % blocksPerGroup
		overhead := 2 + l.itableBlocks
		if hasBackup(ngroups - 1) {
			overhead += 1 + l.descBlocks + l.rsvGDT
		}
		if rem != 0 && rem < overhead+50 {
			if ngroups == 1 {
				return nil, fmt.Errorf("ext4: %d bytes is too small for one block group", size)
			}
			l.blocks -= rem
			continue
		}
		break
	}
	if opts.ResizeLimit != 0 && l.rsvGDT == 0 {
		return nil, fmt.Errorf("ext4: resize limit %d gives no reserved descriptor block: the %d descriptor blocks already cover %d bytes",
			opts.ResizeLimit, l.descBlocks, int64(l.descBlocks)*blockSize/descSize*blocksPerGroup*blockSize)
	}
	if l.itableBlocks+3+l.descBlocks+l.rsvGDT > blocksPerGroup {
		return nil, fmt.Errorf("ext4: inode ratio %d gives more inodes than a group can hold", ratio)
	}
	ngroups := ceilDiv(l.blocks, blocksPerGroup)
	l.groups = make([]group, ngroups)
	for g := range l.groups {
		gr := &l.groups[g]
		gr.start = uint64(g) * blocksPerGroup
		gr.blocks = min(blocksPerGroup, l.blocks-gr.start)
		gr.backup = hasBackup(uint64(g))
		if gr.backup {
			l.used.add(extent{gr.start, 1 + l.descBlocks + l.rsvGDT})
			if g > 0 {
				l.backups = append(l.backups, g)
			}
		}
	}
	alloc := func(goal, n uint64, what string) (uint64, error) {
		pos, ok := l.used.find(goal, n, l.blocks)
		if !ok {
			pos, ok = l.used.find(0, n, l.blocks)
		}
		if !ok {
			return 0, fmt.Errorf("ext4: no room for %s (%d blocks)", what, n)
		}
		l.used.add(extent{pos, n})
		return pos, nil
	}
	// flex_bg: each flex group's bitmaps and inode tables sit together in its first group.
	for f := 0; f < len(l.groups); f += flexGroups {
		end := min(f+flexGroups, len(l.groups))
		goal := l.groups[f].start
		var err error
		for g := f; g < end; g++ {
			if l.groups[g].blockBitmap, err = alloc(goal, 1, "a block bitmap"); err != nil {
				return nil, err
			}
			goal = l.groups[g].blockBitmap + 1
		}
		for g := f; g < end; g++ {
			if l.groups[g].inodeBitmap, err = alloc(goal, 1, "an inode bitmap"); err != nil {
				return nil, err
			}
			goal = l.groups[g].inodeBitmap + 1
		}
		for g := f; g < end; g++ {
			if l.groups[g].inodeTable, err = alloc(goal, l.itableBlocks, "an inode table"); err != nil {
				return nil, err
			}
			goal = l.groups[g].inodeTable + l.itableBlocks
		}
	}
	var err error
	goal := l.groups[min(flexGroups, len(l.groups))-1].inodeTable + l.itableBlocks
	if l.rsvGDT > 0 {
		if l.resizeDind, err = alloc(goal, 1, "the resize inode"); err != nil {
			return nil, err
		}
	}
	if l.rootDir, err = alloc(goal, 1, "the root directory"); err != nil {
		return nil, err
	}
	if l.lpf, err = alloc(goal, lpfBlocks, "lost+found"); err != nil {
		return nil, err
	}
	// The journal goes to the middle group like mke2fs's; it may be split into extents around
	// backups and metadata.
	l.journalBlocks = uint64(opts.JournalBlocks)
	if l.journalBlocks == 0 {
		l.journalBlocks = defaultJournalBlocks(l.blocks)
	}
	if l.journalBlocks < 1024 || l.journalBlocks > 10240000 || l.journalBlocks > l.blocks/2 {
		return nil, fmt.Errorf("ext4: journal of %d blocks does not fit a filesystem of %d blocks (1024 .. half of it)", l.journalBlocks, l.blocks)
	}
	jgoal := l.groups[(len(l.groups)-1)/2].start
	need := l.journalBlocks
	for need > 0 {
		pos, ok := l.used.find(jgoal, 1, l.blocks)
		if !ok {
			pos, ok = l.used.find(0, 1, l.blocks)
			if !ok {
				return nil, fmt.Errorf("ext4: no room for the journal")
			}
		}
		n := min(need, maxExtentLen, l.used.nextUsed(pos, l.blocks)-pos)
		l.used.add(extent{pos, n})
		if k := len(l.journal); k > 0 && l.journal[k-1].end() == pos && l.journal[k-1].len+n <= maxExtentLen {
			l.journal[k-1].len += n
		} else {
			l.journal = append(l.journal, extent{pos, n})
		}
		need -= n
		jgoal = pos + n
	}
	if len(l.journal) > 4 {
		if len(l.journal) > (blockSize-12)/12 {
			return nil, fmt.Errorf("ext4: journal too fragmented (%d extents)", len(l.journal))
		}
		if l.journalLeaf, err = alloc(goal, 1, "the journal's extent block"); err != nil {
			return nil, err
		}
	}
	l.reserved = uint64(opts.ReservedPercent * float64(l.blocks) / 100)
	if opts.ReservedPercent < 0 || opts.ReservedPercent > 50 {
		return nil, fmt.Errorf("ext4: reserved percentage %g out of range [0, 50]", opts.ReservedPercent)
	}
	used := make([]uint32, len(l.groups))
	dirs := make([]uint32, len(l.groups))
	used[0], dirs[0] = firstIno, 2
	l.account(opts, used, dirs)
	return l, nil
}

func (l *layout) freeBlocks() uint64 { return l.blocks - l.used.total }

func (l *layout) inodes() uint64 { return uint64(l.inodesPerGrp) * uint64(len(l.groups)) }

// account computes every group's free counts and flags from the allocated blocks and from
// how many inodes (allocated from the lowest number up) and directories each group holds.
func (l *layout) account(opts *Options, inodesUsed, dirs []uint32) {
	for g := range l.groups {
		gr := &l.groups[g]
		used := l.used.count(gr.start, gr.start+gr.blocks)
		gr.freeBlocks = uint32(gr.blocks - used)
		// The kernel rebuilds an uninitialised block bitmap from the group's own backup and
		// own metadata only; any other block in use forces a real bitmap. Like mke2fs, the
		// last group always gets one.
		own := uint64(0)
		if gr.backup {
			own += 1 + l.descBlocks + l.rsvGDT
		}
		for _, m := range []extent{{gr.blockBitmap, 1}, {gr.inodeBitmap, 1}, {gr.inodeTable, l.itableBlocks}} {
			if m.start >= gr.start && m.start < gr.start+gr.blocks {
				own += m.len
			}
		}
		gr.flags = 0
		if used == own && g != len(l.groups)-1 {
			gr.flags |= bgBlockUninit
		}
		if !opts.DeferInodeTableZeroing {
			gr.flags |= bgItableZeroed
		}
		gr.freeInodes = l.inodesPerGrp - inodesUsed[g]
		gr.itableUnused = l.inodesPerGrp - inodesUsed[g]
		gr.usedDirs = dirs[g]
		if inodesUsed[g] == 0 {
			gr.flags |= bgInodeUninit
		}
	}
}
