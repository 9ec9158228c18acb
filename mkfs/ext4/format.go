package ext4

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"sort"
	"sync"
	"time"

	"github.com/piboot/piboot/internal/uuid"
)

// Options describe the filesystem to make. The zero value gives mkfs.ext4's defaults with
// systemd-repart's 0 % reserved blocks, a random UUID and hash seed, and the current time.
type Options struct {
	Label           string    // volume label, at most 16 bytes
	UUID            uuid.UUID // filesystem UUID; random if zero
	HashSeed        uuid.UUID // directory hash seed; random if zero
	ReservedPercent float64   // blocks reserved for root, 0 .. 50 (systemd-repart uses 0)
	InodeRatio      int       // bytes per inode; 0 picks mke2fs's default for the size
	JournalBlocks   int       // journal size in 4 KiB blocks; 0 sizes it like mkfs.ext4
	// ResizeLimit is the size in bytes up to which the reserved descriptor blocks let the
	// filesystem grow (mke2fs -E resize=, in bytes); 0 reserves like mke2fs: for 1024 times
	// the size, at most 16 TiB, which at 8 GiB and more is 4 MiB of blocks to write (most of
	// what Format writes). Growth past the limit still works: offline, resize2fs makes room
	// (tested); online, the kernel converts the filesystem to meta_bg when the reserve runs
	// out (ext4_convert_meta_bg, Linux 3.7 and later; not exercised by this package's tests).
	ResizeLimit int64
	SectorSize  int       // logical sector size of the device: 0 (512), 512 or 4096
	Time        time.Time // creation time of the filesystem and its two directories; now if zero
	// DeferInodeTableZeroing leaves the inode tables for the kernel to zero in the
	// background after the first mount, as mkfs.ext4 -E lazy_itable_init=1 does (see the
	// package documentation for why the default does not).
	DeferInodeTableZeroing bool
	// Root, if set, is copied into the filesystem: directories, regular files, symlinks,
	// device nodes, FIFOs and sockets with their permissions and modification times, owners
	// and hard links where the fs.FS exposes them (os.DirFS does). A lost+found directory at
	// its top is replaced by the filesystem's own.
	Root fs.FS
}

// Feature bits this writer sets.
const (
	compatHasJournal  = 0x4
	compatExtAttr     = 0x8
	compatResizeInode = 0x10
	compatDirIndex    = 0x20

	incompatFiletype = 0x2
	incompatExtents  = 0x40
	incompat64bit    = 0x80
	incompatFlexBG   = 0x200

	roSparseSuper  = 0x1
	roLargeFile    = 0x2
	roHugeFile     = 0x8
	roDirNlink     = 0x20
	roExtraIsize   = 0x40
	roMetadataCsum = 0x400
)

const (
	rootIno    = 2
	resizeIno  = 7
	journalIno = 8
	lpfIno     = 11

	extentsFl   = 0x80000
	extentMagic = 0xF30A
	jbd2Magic   = 0xC03B3998
	extraIsize  = 32
)

// castagnoli is made on first use: making it costs about 0.3 ms, which every start of the
// piboot command paid, formatting or not.
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// crc is the kernel's crc32c_le: no inversion on the way in or out.
func crc(seed uint32, p []byte) uint32 { return ^crc32.Update(^seed, castagnoli(), p) }

var le = binary.LittleEndian
var be = binary.BigEndian

// Format writes an empty ext4 filesystem of size bytes into w, starting at offset 0. It writes
// only metadata (a few MiB at any size) and never outside [0, size).
func Format(w io.WriterAt, size int64, opts Options) error {
	ss := opts.SectorSize
	if ss == 0 {
		ss = 512
	}
	if ss != 512 && ss != 4096 {
		return fmt.Errorf("ext4: sector size %d not supported (512 or 4096)", ss)
	}
	if size%int64(ss) != 0 {
		return fmt.Errorf("ext4: size %d is not a multiple of the %d-byte sector", size, ss)
	}
	if len(opts.Label) > 16 {
		return fmt.Errorf("ext4: label %q is longer than 16 bytes", opts.Label)
	}
	l, err := planLayout(size, &opts)
	if err != nil {
		return err
	}
	if opts.UUID == uuid.Nil {
		opts.UUID = uuid.New()
	}
	if opts.HashSeed == uuid.Nil {
		opts.HashSeed = uuid.New()
	}
	if opts.Time.IsZero() {
		opts.Time = time.Now()
	}
	var seq [4]byte
	for be.Uint32(seq[:]) == 0 {
		if _, err := uuid.Read(seq[:]); err != nil {
			return fmt.Errorf("ext4: journal sequence: %w", err)
		}
	}
	f := &formatter{l: l, o: &opts, size: size, seed: crc(^uint32(0), opts.UUID[:]), jseq: be.Uint32(seq[:])}
	if err := f.populate(w); err != nil {
		return err
	}
	l.account(&opts, f.groupInodes, f.groupDirs)
	return f.write(w)
}

type formatter struct {
	l    *layout
	size int64 // of the partition, which may end after the last block
	o    *Options
	seed uint32 // metadata_csum seed: crc32c of the UUID
	jseq uint32
	leaf []byte // the journal's extent leaf block, if it needs one

	// what populate builds
	nextIno     uint32
	groupInodes []uint32 // inodes used in each group (always a prefix of its table)
	groupDirs   []uint32
	nodes       map[uint32]*node     // inodes from 2 (root) and 12 up
	links       map[[2]uint64]uint32 // (device, inode) of a hard-linked source file -> our inode
	goal        uint64               // where the next data allocation starts looking
	dataBytes   uint64
	writes      []blockWrite
}

type blockWrite struct {
	block uint64
	data  []byte // a whole number of blocks; nil when fill makes them
	// fill, if set, makes n blocks on demand: it writes blocks [from, from+len(dst)/blockSize)
	// of the run into dst, which is zeroed. Large regular runs (the reserved descriptor
	// blocks: 4 MiB at 128 GiB) thus pass through the one write buffer instead of being
	// built in memory of their own, which a fresh process would first have to fault in.
	fill func(dst []byte, from uint64)
	n    uint64
}

func (w *blockWrite) blocks() uint64 {
	if w.fill != nil {
		return w.n
	}
	return uint64(len(w.data) / blockSize)
}

func (f *formatter) put(block uint64, data []byte) {
	f.writes = append(f.writes, blockWrite{block: block, data: data})
}

func (f *formatter) putFill(block, n uint64, fill func(dst []byte, from uint64)) {
	f.writes = append(f.writes, blockWrite{block: block, n: n, fill: fill})
}

// sortWrites orders the queued writes by block.
func (f *formatter) sortWrites() {
	sort.Slice(f.writes, func(i, j int) bool { return f.writes[i].block < f.writes[j].block })
}

// queued says whether block b is in a queued write; f.writes must be sorted.
func (f *formatter) queued(b uint64) bool {
	i := sort.Search(len(f.writes), func(i int) bool { return f.writes[i].block+f.writes[i].blocks() > b })
	return i < len(f.writes) && f.writes[i].block <= b
}

func (f *formatter) write(w io.WriterAt) error {
	l := f.l
	gdt := f.descriptors()
	// The superblock is written last within block 0 so that a crash midway leaves no
	// half-made filesystem that blkid would recognise; the rest goes in ascending order.
	for _, g := range l.groups {
		if !g.backup || g.start == 0 {
			continue
		}
		blk := make([]byte, blockSize)
		copy(blk, f.superblock(uint16(g.start/blocksPerGroup)))
		f.put(g.start, blk)
		f.put(g.start+1, gdt)
	}
	f.put(1, gdt)
	f.resizeInode()
	f.bitmaps()
	f.inodeTables()
	f.directories()
	f.journal()
	f.sortWrites()
	tail := f.wipeSignatures()
	f.sortWrites()
	// Neighbouring blocks go out together, in ascending order, through one buffer of 256
	// KiB; pieces of 64 KiB or more are written as they are, without a copy. A fresh process
	// pays for every page of the buffer it first touches: with 1 MiB (a transparent huge page
	// to clear) formatting 128 GiB took 21 ms of CPU in a new process here, with 256 KiB 8 ms;
	// the page cache coalesces the writes anyway.
	const maxWrite = 256 << 10
	buf := make([]byte, 0, maxWrite)
	var bufStart uint64
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		_, err := w.WriteAt(buf, int64(bufStart)*blockSize)
		buf = buf[:0]
		if err != nil {
			return fmt.Errorf("ext4: writing block %d: %w", bufStart, err)
		}
		return nil
	}
	for i := range f.writes {
		wr := &f.writes[i]
		if len(buf) > 0 && bufStart+uint64(len(buf)/blockSize) != wr.block {
			if err := flush(); err != nil {
				return err
			}
		}
		if wr.fill == nil && len(wr.data) >= 64<<10 {
			if err := flush(); err != nil {
				return err
			}
			if _, err := w.WriteAt(wr.data, int64(wr.block)*blockSize); err != nil {
				return fmt.Errorf("ext4: writing block %d: %w", wr.block, err)
			}
			continue
		}
		for done := uint64(0); done < wr.blocks(); {
			if len(buf) == cap(buf) {
				if err := flush(); err != nil {
					return err
				}
			}
			if len(buf) == 0 {
				bufStart = wr.block + done
			}
			n := min(wr.blocks()-done, uint64(cap(buf)-len(buf))/blockSize)
			dst := buf[len(buf) : len(buf)+int(n)*blockSize]
			if wr.fill != nil {
				clear(dst)
				wr.fill(dst, done)
			} else {
				copy(dst, wr.data[done*blockSize:])
			}
			buf = buf[:len(buf)+len(dst)]
			done += n
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if len(tail.data) > 0 {
		if _, err := w.WriteAt(tail.data, int64(tail.block)); err != nil {
			return fmt.Errorf("ext4: wiping the end of the partition: %w", err)
		}
	}
	// Block 0: wipe the boot sector and any old signature in it, then the superblock.
	blk := make([]byte, blockSize)
	copy(blk[1024:], f.superblock(0))
	if _, err := w.WriteAt(blk, 0); err != nil {
		return fmt.Errorf("ext4: writing the superblock: %w", err)
	}
	return nil
}

// wipeSignatures queues zeros over where other filesystems and RAID keep their signatures
// and this filesystem writes nothing, so that blkid does not find an old one next to ours:
// btrfs's superblock at 64 KiB, and like mke2fs the last 128 KiB (MD RAID, and a partial
// last group that the filesystem leaves out). Block 0 is written whole anyway. Writing the
// very end also fails early if the device is smaller than the size we were given. It
// returns the part past the filesystem's last block, as a byte offset and zeros.
func (f *formatter) wipeSignatures() (tail blockWrite) {
	l := f.l
	zero := make([]byte, blockSize)
	if b := uint64(64<<10) / blockSize; b < l.blocks && !f.queued(b) && !f.dataBlock(b) {
		f.put(b, zero)
	}
	end := uint64(f.size)
	start := uint64(0)
	if end > 128<<10 {
		start = end - 128<<10
	}
	fsEnd := l.blocks * blockSize
	for b := (start + blockSize - 1) / blockSize; b < l.blocks; b++ {
		if !f.queued(b) && l.used.count(b, b+1) == 0 {
			f.put(b, zero)
		}
	}
	if end > fsEnd {
		from := max(start, fsEnd)
		return blockWrite{block: from, data: make([]byte, end-from)}
	}
	return blockWrite{}
}

// dataBlock says whether b holds file data or a directory that populate allocated.
func (f *formatter) dataBlock(b uint64) bool {
	return b >= f.l.lpf+lpfBlocks && f.l.used.count(b, b+1) != 0 && !f.isMetadata(b)
}

// isMetadata says whether b belongs to a group's bitmaps or inode table.
func (f *formatter) isMetadata(b uint64) bool {
	for _, g := range f.l.groups {
		if b == g.blockBitmap || b == g.inodeBitmap || (b >= g.inodeTable && b < g.inodeTable+f.l.itableBlocks) {
			return true
		}
	}
	return false
}

func putUUID(dst []byte, u uuid.UUID) { copy(dst, u[:]) }

// superblock returns the 1024-byte superblock as stored in group g (0 for the primary).
func (f *formatter) superblock(g uint16) []byte {
	l, o := f.l, f.o
	sb := make([]byte, 1024)
	t := uint32(o.Time.Unix())
	le.PutUint32(sb[0x0:], uint32(l.inodes()))
	le.PutUint32(sb[0x4:], uint32(l.blocks))
	le.PutUint32(sb[0x8:], uint32(l.reserved))
	free := l.freeBlocks()
	le.PutUint32(sb[0xC:], uint32(free))
	le.PutUint32(sb[0x10:], uint32(l.inodes()-uint64(f.nextIno-1)))
	le.PutUint32(sb[0x14:], 0) // first data block
	le.PutUint32(sb[0x18:], 2) // log2(4096) - 10
	le.PutUint32(sb[0x1C:], 2)
	le.PutUint32(sb[0x20:], blocksPerGroup)
	le.PutUint32(sb[0x24:], blocksPerGroup)
	le.PutUint32(sb[0x28:], l.inodesPerGrp)
	le.PutUint32(sb[0x30:], t)      // wtime
	le.PutUint16(sb[0x36:], 0xFFFF) // max mount count -1: no forced checks
	le.PutUint16(sb[0x38:], 0xEF53)
	le.PutUint16(sb[0x3A:], 1) // clean
	le.PutUint16(sb[0x3C:], 1) // errors=continue
	le.PutUint32(sb[0x40:], t) // lastcheck
	le.PutUint32(sb[0x4C:], 1) // dynamic revision
	le.PutUint32(sb[0x54:], firstIno)
	le.PutUint16(sb[0x58:], inodeSize)
	le.PutUint16(sb[0x5A:], g)
	le.PutUint32(sb[0x5C:], compatHasJournal|compatExtAttr|compatResizeInode|compatDirIndex)
	le.PutUint32(sb[0x60:], incompatFiletype|incompatExtents|incompat64bit|incompatFlexBG)
	le.PutUint32(sb[0x64:], roSparseSuper|roLargeFile|roHugeFile|roDirNlink|roExtraIsize|roMetadataCsum)
	putUUID(sb[0x68:], o.UUID)
	copy(sb[0x78:0x88], o.Label)
	le.PutUint16(sb[0xCE:], uint16(l.rsvGDT))
	le.PutUint32(sb[0xE0:], journalIno)
	copy(sb[0xEC:0xFC], o.HashSeed[:])
	sb[0xFC] = 1 // half_md4
	sb[0xFD] = 1 // s_jnl_blocks holds a copy of the journal inode's block map
	le.PutUint16(sb[0xFE:], descSize)
	le.PutUint32(sb[0x100:], 0x4|0x8) // user_xattr, acl
	le.PutUint32(sb[0x108:], t)       // mkfs time
	ji := f.journalInode()
	copy(sb[0x10C:0x10C+60], ji[0x28:0x28+60])
	le.PutUint32(sb[0x10C+60:], le.Uint32(ji[0x6C:]))
	le.PutUint32(sb[0x10C+64:], le.Uint32(ji[0x4:]))
	le.PutUint32(sb[0x150:], uint32(l.blocks>>32))
	le.PutUint32(sb[0x154:], uint32(l.reserved>>32))
	le.PutUint32(sb[0x158:], uint32(free>>32))
	le.PutUint16(sb[0x15C:], extraIsize)
	le.PutUint16(sb[0x15E:], extraIsize)
	le.PutUint32(sb[0x160:], 0x1) // signed directory hash, as mke2fs on x86 and on the kernel side
	sb[0x174] = logFlexGroups
	sb[0x175] = 1 // crc32c
	hi := byte(o.Time.Unix() >> 32)
	sb[0x274], sb[0x276], sb[0x277] = hi, hi, hi // wtime, mkfs_time, lastcheck: bits 32-39
	le.PutUint32(sb[0x3FC:], crc(^uint32(0), sb[:0x3FC]))
	return sb
}

func (f *formatter) descriptors() []byte {
	l := f.l
	buf := make([]byte, l.descBlocks*blockSize)
	scratch := make([]byte, blockSize)
	for g := range l.groups {
		gr := &l.groups[g]
		d := buf[g*descSize : (g+1)*descSize]
		le.PutUint32(d[0x0:], uint32(gr.blockBitmap))
		le.PutUint32(d[0x4:], uint32(gr.inodeBitmap))
		le.PutUint32(d[0x8:], uint32(gr.inodeTable))
		le.PutUint16(d[0xC:], uint16(gr.freeBlocks))
		le.PutUint16(d[0xE:], uint16(gr.freeInodes))
		le.PutUint16(d[0x10:], uint16(gr.usedDirs))
		le.PutUint16(d[0x12:], gr.flags)
		le.PutUint16(d[0x1C:], uint16(gr.itableUnused))
		le.PutUint32(d[0x20:], uint32(gr.blockBitmap>>32))
		le.PutUint32(d[0x24:], uint32(gr.inodeBitmap>>32))
		le.PutUint32(d[0x28:], uint32(gr.inodeTable>>32))
		le.PutUint16(d[0x2C:], uint16(gr.freeBlocks>>16))
		le.PutUint16(d[0x2E:], uint16(gr.freeInodes>>16))
		le.PutUint16(d[0x30:], uint16(gr.usedDirs>>16))
		le.PutUint16(d[0x32:], uint16(gr.itableUnused>>16))
		if gr.flags&bgBlockUninit == 0 {
			clear(scratch)
			f.blockBitmap(g, scratch)
			c := crc(f.seed, scratch)
			le.PutUint16(d[0x18:], uint16(c))
			le.PutUint16(d[0x38:], uint16(c>>16))
		}
		if gr.flags&bgInodeUninit == 0 {
			c := crc(f.seed, f.inodeBitmap(g)[:l.inodesPerGrp/8])
			le.PutUint16(d[0x1A:], uint16(c))
			le.PutUint16(d[0x3A:], uint16(c>>16))
		}
		var gb [4]byte
		le.PutUint32(gb[:], uint32(g))
		c := crc(f.seed, gb[:])
		c = crc(c, d[:0x1E])
		c = crc(c, []byte{0, 0})
		c = crc(c, d[0x20:])
		le.PutUint16(d[0x1E:], uint16(c))
	}
	return buf
}

// blockBitmap builds group g's block bitmap in bm, a zeroed block, from the layout's used
// runs; bits past the end of a short last group are set, as the kernel expects. It is built
// twice, for the descriptor's checksum and into the write buffer, rather than kept: a fresh
// process pays a page fault for every new page, and at 128 GiB there are about 90 of them.
func (f *formatter) blockBitmap(g int, bm []byte) {
	l := f.l
	gr := &l.groups[g]
	end := gr.start + gr.blocks
	i := sort.Search(len(l.used.runs), func(i int) bool { return l.used.runs[i].end() > gr.start })
	for ; i < len(l.used.runs) && l.used.runs[i].start < end; i++ {
		r := l.used.runs[i]
		setBits(bm, max(r.start, gr.start)-gr.start, min(r.end(), end)-gr.start)
	}
	setBits(bm, gr.blocks, blocksPerGroup)
}

// setBits sets bits [from, to) of bm.
func setBits(bm []byte, from, to uint64) {
	for ; from < to && from%8 != 0; from++ {
		bm[from/8] |= 1 << (from % 8)
	}
	for ; from+8 <= to; from += 8 {
		bm[from/8] = 0xFF
	}
	for ; from < to; from++ {
		bm[from/8] |= 1 << (from % 8)
	}
}

// inodeBitmap builds group g's inode bitmap: its used inodes are a prefix of the group;
// the padding after inodes_per_group is all ones like the kernel writes it.
func (f *formatter) inodeBitmap(g int) []byte {
	bm := make([]byte, blockSize)
	setBits(bm, 0, uint64(f.groupInodes[g]))
	setBits(bm, uint64(f.l.inodesPerGrp), blockSize*8)
	return bm
}

func (f *formatter) bitmaps() {
	l := f.l
	for g := range l.groups {
		gr := &l.groups[g]
		if gr.flags&bgBlockUninit == 0 {
			f.putFill(gr.blockBitmap, 1, func(dst []byte, _ uint64) { f.blockBitmap(g, dst) })
		}
		if gr.flags&bgInodeUninit == 0 {
			f.put(gr.inodeBitmap, f.inodeBitmap(g))
		}
	}
}

// inodeSeed is the per-inode checksum seed of metadata_csum (generation is always 0 here).
func (f *formatter) inodeSeed(ino uint32) uint32 {
	var b [4]byte
	le.PutUint32(b[:], ino)
	c := crc(f.seed, b[:])
	le.PutUint32(b[:], 0)
	return crc(c, b[:])
}

// newInode returns a 256-byte inode with the timestamps set.
func (f *formatter) newInode(mode uint16, links uint16, size uint64, sectors uint64, flags uint32) []byte {
	in := make([]byte, inodeSize)
	t := f.o.Time.Unix()
	le.PutUint16(in[0x0:], mode)
	le.PutUint32(in[0x4:], uint32(size))
	for _, off := range []int{0x8, 0xC, 0x10, 0x90} { // atime ctime mtime crtime
		le.PutUint32(in[off:], uint32(t))
	}
	// The *_extra fields carry bits 32-33 of the seconds and the nanoseconds.
	extra := uint32((t>>32)&3) | uint32(f.o.Time.Nanosecond())<<2
	for _, off := range []int{0x84, 0x88, 0x8C, 0x94} {
		le.PutUint32(in[off:], extra)
	}
	le.PutUint16(in[0x1A:], links)
	le.PutUint32(in[0x1C:], uint32(sectors))
	le.PutUint16(in[0x74:], uint16(sectors>>32))
	le.PutUint32(in[0x20:], flags)
	le.PutUint32(in[0x6C:], uint32(size>>32))
	le.PutUint16(in[0x80:], extraIsize)
	return in
}

func (f *formatter) sealInode(ino uint32, in []byte) {
	in[0x7C], in[0x7D], in[0x82], in[0x83] = 0, 0, 0, 0
	c := crc(f.inodeSeed(ino), in)
	le.PutUint16(in[0x7C:], uint16(c))
	if le.Uint16(in[0x80:]) >= 4 {
		le.PutUint16(in[0x82:], uint16(c>>16))
	}
}

// extentRoot fills i_block with an extent tree over exts (logical blocks from 0), inline for
// up to four extents, else an index pointing at leaf.
func extentRoot(iblock []byte, exts []extent, leaf uint64) []byte {
	le.PutUint16(iblock[0:], extentMagic)
	le.PutUint16(iblock[4:], 4)
	if len(exts) <= 4 {
		le.PutUint16(iblock[2:], uint16(len(exts)))
		putExtents(iblock[12:], exts)
		return nil
	}
	le.PutUint16(iblock[2:], 1)
	le.PutUint16(iblock[6:], 1) // depth
	le.PutUint32(iblock[12:], 0)
	le.PutUint32(iblock[16:], uint32(leaf))
	le.PutUint16(iblock[20:], uint16(leaf>>32))
	blk := make([]byte, blockSize)
	le.PutUint16(blk[0:], extentMagic)
	le.PutUint16(blk[2:], uint16(len(exts)))
	le.PutUint16(blk[4:], (blockSize-12)/12)
	putExtents(blk[12:], exts)
	return blk
}

func putExtents(dst []byte, exts []extent) {
	var logical uint32
	for i, e := range exts {
		x := dst[12*i:]
		le.PutUint32(x[0:], logical)
		le.PutUint16(x[4:], uint16(e.len))
		le.PutUint16(x[6:], uint16(e.start>>32))
		le.PutUint32(x[8:], uint32(e.start))
		logical += uint32(e.len)
	}
}

func (f *formatter) journalInode() []byte {
	l := f.l
	sectors := l.journalBlocks * (blockSize / 512)
	if l.journalLeaf != 0 {
		sectors += blockSize / 512
	}
	in := f.newInode(0o100600, 1, l.journalBlocks*blockSize, sectors, extentsFl)
	if leaf := extentRoot(in[0x28:0x64], l.journal, l.journalLeaf); leaf != nil {
		off := 12 + 12*((blockSize-12)/12)
		le.PutUint32(leaf[off:], crc(f.inodeSeed(journalIno), leaf[:off]))
		f.leaf = leaf
	}
	f.sealInode(journalIno, in)
	return in
}

func (f *formatter) journal() {
	l := f.l
	js := make([]byte, blockSize)
	be.PutUint32(js[0x0:], jbd2Magic)
	be.PutUint32(js[0x4:], 4) // superblock v2
	be.PutUint32(js[0xC:], blockSize)
	be.PutUint32(js[0x10:], uint32(l.journalBlocks))
	be.PutUint32(js[0x14:], 1)        // first log block
	be.PutUint32(js[0x18:], f.jseq)   // random: see the package documentation
	be.PutUint32(js[0x28:], 0x2|0x10) // 64bit, csum v3: what the kernel sets at mount anyway
	putUUID(js[0x30:], f.o.UUID)
	be.PutUint32(js[0x40:], 1) // one user: this filesystem
	js[0x50] = 4               // crc32c
	be.PutUint32(js[0xFC:], crc(^uint32(0), js[:1024]))
	f.put(l.journal[0].start, js)
	if l.journalLeaf != 0 {
		f.put(l.journalLeaf, f.leaf)
	}
}

// resizeInode writes the double-indirect block and the primary reserved descriptor blocks,
// each of which lists its copies in the backup groups, as ext2fs_create_resize_inode does.
func (f *formatter) resizeInode() {
	l := f.l
	if l.rsvGDT == 0 {
		return
	}
	dind := make([]byte, blockSize)
	for i := uint64(0); i < l.rsvGDT; i++ {
		le.PutUint32(dind[4*((l.descBlocks+i)%addrPerBlock):], uint32(1+l.descBlocks+i))
	}
	// The reserved blocks are contiguous and mostly zero: made as they are written.
	f.putFill(1+l.descBlocks, l.rsvGDT, func(dst []byte, from uint64) {
		for i := uint64(0); i < uint64(len(dst))/blockSize; i++ {
			primary := 1 + l.descBlocks + from + i
			ind := dst[i*blockSize : (i+1)*blockSize]
			for k, g := range l.backups {
				le.PutUint32(ind[4*k:], uint32(uint64(g)*blocksPerGroup+primary))
			}
		}
	})
	f.put(l.resizeDind, dind)
}

func (f *formatter) resizeInodeData() []byte {
	l := f.l
	if l.rsvGDT == 0 {
		return make([]byte, inodeSize)
	}
	blocks := 1 + l.rsvGDT*(1+uint64(len(l.backups)))
	size := uint64(addrPerBlock*addrPerBlock+addrPerBlock+12) * blockSize
	in := f.newInode(0o100600, 1, size, blocks*(blockSize/512), 0)
	le.PutUint32(in[0x28+13*4:], uint32(l.resizeDind))
	return in
}

// inode returns the sealed on-disk inode ino, or nil for an unused one.
func (f *formatter) inode(ino uint32) []byte {
	var in []byte
	switch ino {
	case 1: // bad blocks: empty
		in = f.newInode(0, 0, 0, 0, 0)
	case resizeIno:
		in = f.resizeInodeData()
	case journalIno:
		in = f.journalInode()
	case lpfIno:
		in = f.newInode(0o40700, 2, lpfBlocks*blockSize, lpfBlocks*blockSize/512, extentsFl)
		extentRoot(in[0x28:0x64], []extent{{f.l.lpf, lpfBlocks}}, 0)
	default:
		if n := f.nodes[ino]; n != nil {
			in = n.raw
			le.PutUint16(in[0x1A:], uint16(n.links))
		} else if ino < firstIno {
			in = make([]byte, inodeSize) // reserved, unused
		} else {
			return nil
		}
	}
	f.sealInode(ino, in)
	return in
}

// inodeTables queues the inode-table blocks that hold used inodes; the rest of each table is
// never read (see the package documentation).
func (f *formatter) inodeTables() {
	const perBlock = blockSize / inodeSize
	for g, used := range f.groupInodes {
		if used == 0 {
			continue
		}
		first := uint32(g)*f.l.inodesPerGrp + 1
		nblk := (used + perBlock - 1) / perBlock
		tbl := make([]byte, uint64(nblk)*blockSize)
		for i := uint32(0); i < nblk*perBlock; i++ {
			if in := f.inode(first + i); in != nil {
				copy(tbl[i*inodeSize:], in)
			}
		}
		f.put(f.l.groups[g].inodeTable, tbl)
	}
}

func (f *formatter) directories() {
	l := f.l
	f.put(l.lpf, f.dirBlocks(lpfIno, []dirent{{lpfIno, ".", 2}, {rootIno, "..", 2}})[0])
	for i := uint64(1); i < lpfBlocks; i++ {
		f.put(l.lpf+i, f.dirBlocks(lpfIno, []dirent{{0, "", 0}})[0])
	}
}
