package xfs

import (
	"encoding/binary"
	"hash/crc32"
	"sort"
	"sync"
	"time"

	"github.com/piboot/piboot/internal/uuid"
)

var be = binary.BigEndian

// castagnoli is made on first use, not at start-up of every program that links the package.
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// setCRC stores the CRC-32C of b, computed with the 4-byte CRC field at off zeroed, at off
// (little-endian, as XFS keeps it).
func setCRC(b []byte, off int) {
	clear(b[off : off+4])
	binary.LittleEndian.PutUint32(b[off:], crc32.Checksum(b, castagnoli()))
}

// Feature bits of the lts_6.1 set with reflink and without rmapbt.
const (
	versionNum    = 0xb4a5 // v5 + nlink, align, dirv2, logv2, extflg, morebits
	versionSector = 0x0800 // XFS_SB_VERSION_SECTORBIT: sector size other than 512
	features2     = 0x18a  // lazysbcount, attr2, projid32, crc
	roCompat      = 0xd    // finobt, reflink, inobtcount
	incompat      = 0xb    // ftype, sparse inodes, bigtime

	diflagNewRTBM = 0x4 // XFS_DIFLAG_NEWRTBM, set on the realtime bitmap inode
	diflag2Big    = 0x8 // XFS_DIFLAG2_BIGTIME

	modeDir = 0o040000
	modeReg = 0o100000
)

// piece is a run of bytes to write at an offset of the partition.
type piece struct {
	off  int64
	data []byte
}

// layout is everything Format writes besides zeros: the metadata, the log's first record and
// the primary superblock, kept apart because it must be written last.
type layout struct {
	meta    []piece // AG headers, secondary superblocks, btree roots, inode chunk
	logRec  piece
	primary piece
	logOff  int64 // the internal log, which must read as zero beyond logRec
	logLen  int64
}

type params struct {
	label [12]byte
	uuid  uuid.UUID
	now   time.Time
}

func buildLayout(g *geometry, p params) layout {
	var l layout
	ss := g.sectSize

	// Free space per AG, for the AGFs and the superblock counters.
	var fdblocks uint64
	for ag := uint32(0); ag < g.agCount; ag++ {
		for _, e := range g.freeExtents(ag) {
			fdblocks += uint64(e.count)
		}
		fdblocks += agflFill
	}

	sb := func(secondary bool, ag uint32) []byte {
		b := make([]byte, ss)
		be.PutUint32(b[0:], 0x58465342) // XFSB
		be.PutUint32(b[4:], blockSize)
		be.PutUint64(b[8:], g.dblocks)
		copy(b[32:48], p.uuid[:])
		be.PutUint64(b[48:], g.fsb(g.logAG, g.prealloc))
		be.PutUint64(b[56:], g.rootIno())
		be.PutUint64(b[64:], g.rootIno()+1)
		be.PutUint64(b[72:], g.rootIno()+2)
		be.PutUint32(b[80:], 1) // rextsize: 1, never 0
		be.PutUint32(b[84:], g.agBlocks)
		be.PutUint32(b[88:], g.agCount)
		be.PutUint32(b[96:], g.logBlocks)
		vn := uint16(versionNum)
		if ss != 512 {
			vn |= versionSector
		}
		be.PutUint16(b[100:], vn)
		be.PutUint16(b[102:], uint16(ss))
		be.PutUint16(b[104:], inodeSize)
		be.PutUint16(b[106:], blockSize/inodeSize)
		copy(b[108:120], p.label[:])
		b[120] = blockLog
		b[121] = uint8(log2(ss))
		b[122] = inodeLog
		b[123] = inopbLog
		b[124] = g.agBlkLog
		b[127] = g.imaxPct
		be.PutUint64(b[128:], inodesPerChk)
		be.PutUint64(b[136:], inodesPerChk-3)
		be.PutUint64(b[144:], fdblocks)
		be.PutUint32(b[180:], chunkBlocks) // inoalignmt
		if ss != 512 {
			b[193] = uint8(log2(ss))          // logsectlog
			be.PutUint16(b[194:], uint16(ss)) // logsectsize
			be.PutUint32(b[196:], uint32(ss)) // logsunit: one log sector
		} else {
			be.PutUint32(b[196:], 1) // logsunit: none (v2 logs record 1)
		}
		be.PutUint32(b[200:], features2)
		be.PutUint32(b[204:], features2)
		be.PutUint32(b[212:], roCompat)
		be.PutUint32(b[216:], incompat)
		be.PutUint32(b[228:], 16384/blockSize) // spino_align: one inode cluster
		if secondary {
			// What mkfs leaves in the copies: the counters and flags of the moment it wrote the
			// AG headers, before the root chunk existed; the root inode number it later
			// patches into the last AG and the one in the middle (for xfs_repair's benefit).
			b[126] = 1 // inprogress
			be.PutUint64(b[128:], 0)
			be.PutUint64(b[136:], 0)
			be.PutUint64(b[144:], g.dblocks-uint64(g.agCount)*uint64(g.prealloc)-uint64(g.logBlocks))
			if ag != g.agCount-1 && (g.agCount <= 2 || ag != (g.agCount-1)/2) {
				be.PutUint64(b[56:], nullFSIno)
			}
			be.PutUint64(b[64:], nullFSIno)
			be.PutUint64(b[72:], nullFSIno)
		}
		setCRC(b, 224)
		return b
	}

	for ag := uint32(0); ag < g.agCount; ag++ {
		agLen := g.agLen(ag)
		free := g.freeExtents(ag)
		var freeblks, longest uint32
		for _, e := range free {
			freeblks += e.count
			longest = max(longest, e.count)
		}
		hdr := make([]byte, 4*ss)
		if ag != 0 {
			copy(hdr, sb(true, ag))
		}

		agf := hdr[ss : 2*ss]
		be.PutUint32(agf[0:], 0x58414746) // XAGF
		be.PutUint32(agf[4:], 1)
		be.PutUint32(agf[8:], ag)
		be.PutUint32(agf[12:], agLen)
		be.PutUint32(agf[16:], g.bnoRoot)
		be.PutUint32(agf[20:], g.cntRoot)
		be.PutUint32(agf[28:], 1) // bnobt levels
		be.PutUint32(agf[32:], 1) // cntbt levels
		be.PutUint32(agf[40:], 1) // flfirst
		be.PutUint32(agf[44:], agflFill)
		be.PutUint32(agf[48:], agflFill)
		be.PutUint32(agf[52:], freeblks)
		be.PutUint32(agf[56:], longest)
		copy(agf[64:80], p.uuid[:])
		be.PutUint32(agf[84:], 1) // refcount btree blocks
		be.PutUint32(agf[88:], g.refcRoot)
		be.PutUint32(agf[92:], 1)
		setCRC(agf, 216)

		agi := hdr[2*ss : 3*ss]
		be.PutUint32(agi[0:], 0x58414749) // XAGI
		be.PutUint32(agi[4:], 1)
		be.PutUint32(agi[8:], ag)
		be.PutUint32(agi[12:], agLen)
		be.PutUint32(agi[20:], g.inoRoot)
		be.PutUint32(agi[24:], 1)
		be.PutUint32(agi[32:], nullAgino) // newino
		be.PutUint32(agi[36:], nullAgino) // dirino
		for i := 0; i < 64; i++ {
			be.PutUint32(agi[40+4*i:], nullAgino) // unlinked buckets
		}
		copy(agi[296:312], p.uuid[:])
		be.PutUint32(agi[328:], g.finoRoot)
		be.PutUint32(agi[332:], 1)
		be.PutUint32(agi[336:], 1) // inobt blocks
		be.PutUint32(agi[340:], 1) // finobt blocks
		if ag == 0 {
			be.PutUint32(agi[16:], inodesPerChk)
			be.PutUint32(agi[28:], inodesPerChk-3)
			be.PutUint32(agi[32:], uint32(g.rootIno()))
		}
		setCRC(agi, 312)

		agfl := hdr[3*ss : 4*ss]
		be.PutUint32(agfl[0:], 0x5841464c) // XAFL
		be.PutUint32(agfl[4:], ag)
		copy(agfl[8:24], p.uuid[:])
		for i := 36; i < ss; i += 4 {
			be.PutUint32(agfl[i:], 0xffffffff)
		}
		for i, bno := range g.agflBlocks(ag) {
			be.PutUint32(agfl[36+4*(1+i):], bno) // mkfs fills from slot 1
		}
		setCRC(agfl, 32)

		if ag == 0 {
			// The primary superblock goes last; its sector stays as the wipe left it.
			l.meta = append(l.meta, piece{g.offset(0, 0) + int64(ss), hdr[ss:]})
		} else {
			l.meta = append(l.meta, piece{g.offset(ag, 0), hdr})
		}

		// Btree roots, each a leaf block.
		byCount := append([]extent(nil), free...)
		sort.SliceStable(byCount, func(i, j int) bool {
			if byCount[i].count != byCount[j].count {
				return byCount[i].count < byCount[j].count
			}
			return byCount[i].start < byCount[j].start
		})
		allocRecs := func(ex []extent) []byte {
			r := make([]byte, 8*len(ex))
			for i, e := range ex {
				be.PutUint32(r[8*i:], e.start)
				be.PutUint32(r[8*i+4:], e.count)
			}
			return r
		}
		var inoRecs []byte
		if ag == 0 {
			inoRecs = make([]byte, 16)
			be.PutUint32(inoRecs[0:], uint32(g.rootIno()))
			// holemask 0 (a full chunk), 64 inodes, 61 free: all but the first three.
			inoRecs[6] = inodesPerChk
			inoRecs[7] = inodesPerChk - 3
			be.PutUint64(inoRecs[8:], ^uint64(7))
		}
		for _, bt := range []struct {
			magic uint32
			bno   uint32
			nrecs int
			recs  []byte
		}{
			{0x41423342, g.bnoRoot, len(free), allocRecs(free)},    // AB3B
			{0x41423343, g.cntRoot, len(free), allocRecs(byCount)}, // AB3C
			{0x49414233, g.inoRoot, len(inoRecs) / 16, inoRecs},    // IAB3
			{0x46494233, g.finoRoot, len(inoRecs) / 16, inoRecs},   // FIB3
			{0x52334643, g.refcRoot, 0, nil},                       // R3FC
		} {
			b := make([]byte, blockSize)
			be.PutUint32(b[0:], bt.magic)
			be.PutUint16(b[6:], uint16(bt.nrecs))
			be.PutUint32(b[8:], 0xffffffff)  // left sibling
			be.PutUint32(b[12:], 0xffffffff) // right sibling
			be.PutUint64(b[16:], g.daddr(ag, bt.bno))
			copy(b[32:48], p.uuid[:])
			be.PutUint32(b[48:], ag) // owner
			copy(b[56:], bt.recs)
			setCRC(b, 52)
			l.meta = append(l.meta, piece{g.offset(ag, bt.bno), b})
		}

		if ag != 0 {
			continue
		}
		l.primary = piece{g.offset(0, 0), sb(false, 0)}
		l.meta = append(l.meta, piece{g.offset(0, g.rootChunk), inodeChunk(g, p)})
	}

	// The log: mkfs's first record, a clean unmount, so the kernel mounts without recovery.
	l.logOff = g.offset(g.logAG, g.prealloc)
	l.logLen = int64(g.logBlocks) << blockLog
	l.logRec = piece{l.logOff, logRecord(g, p)}

	sort.Slice(l.meta, func(i, j int) bool { return l.meta[i].off < l.meta[j].off })
	return l
}

// bigtime encodes t as XFS_DIFLAG2_BIGTIME stores it: nanoseconds since 1901-12-13.
func bigtime(t time.Time) uint64 {
	return uint64(t.Unix()+1<<31)*1e9 + uint64(t.Nanosecond())
}

// inodeChunk is the first chunk of 64 inodes: the root directory, the realtime bitmap and
// summary inodes (empty, but the kernel reads them at mount) and 61 free inodes.
func inodeChunk(g *geometry, p params) []byte {
	b := make([]byte, inodesPerChk*inodeSize)
	now := bigtime(p.now)
	epoch := bigtime(time.Unix(0, 0)) // mkfs.xfs 6.1 leaves atime at zero
	for i := 0; i < inodesPerChk; i++ {
		d := b[i*inodeSize : (i+1)*inodeSize]
		ino := g.rootIno() + uint64(i)
		be.PutUint16(d[0:], 0x494e) // IN
		d[4] = 3                    // inode version
		be.PutUint32(d[96:], nullAgino)
		be.PutUint64(d[152:], ino)
		copy(d[160:176], p.uuid[:])
		if i < 3 {
			mode, format, nlink, size, flags := uint16(modeReg), uint8(2), uint32(1), uint64(0), uint16(0)
			switch i {
			case 0: // root directory, short form: no entries, parent is itself
				mode, format, nlink, size = modeDir|0o755, 1, 2, 6
				be.PutUint32(d[176+2:], uint32(ino))
			case 1:
				flags = diflagNewRTBM
			}
			be.PutUint16(d[2:], mode)
			d[5] = format
			be.PutUint32(d[16:], nlink)
			be.PutUint64(d[32:], epoch)
			be.PutUint64(d[40:], now) // mtime
			be.PutUint64(d[48:], now) // ctime
			be.PutUint64(d[56:], size)
			d[83] = 2 // attribute fork format: extents (empty)
			be.PutUint16(d[90:], flags)
			be.PutUint64(d[104:], 2) // change count
			be.PutUint64(d[120:], diflag2Big)
			be.PutUint64(d[144:], now) // crtime
		}
		setCRC(d, 100)
	}
	return b
}

// logRecord is what libxfs_log_clear writes at the start of a zeroed log: a record header
// (cycle 1) and one unmount operation, padded to the log stripe unit (one sector). The first
// word of every 512-byte block after the header carries the cycle number; the word it
// replaced lives in the header's cycle data.
func logRecord(g *geometry, p params) []byte {
	bbs := max(2, g.sectSize/512)
	b := make([]byte, bbs*512)
	h := b[:512]
	be.PutUint32(h[0:], 0xfeedbabe)
	be.PutUint32(h[4:], 1) // cycle
	be.PutUint32(h[8:], 2) // log version
	be.PutUint32(h[12:], uint32(bbs-1)*512)
	be.PutUint64(h[16:], 1<<32) // lsn (cycle 1, block 0)
	be.PutUint64(h[24:], 1<<32) // tail lsn
	be.PutUint32(h[36:], 0xffffffff)
	be.PutUint32(h[40:], 1)          // one log operation
	be.PutUint32(h[44:], 0xb0c0d0d0) // the unmount op's transaction id, displaced by the cycle
	be.PutUint32(h[300:], 1)         // XLOG_FMT_LINUX_LE
	copy(h[304:320], p.uuid[:])
	be.PutUint32(h[320:], 32768) // XLOG_BIG_RECORD_BSIZE
	for i := 1; i < bbs; i++ {
		be.PutUint32(b[i*512:], 1)
	}
	op := b[512:]
	be.PutUint32(op[4:], 8)                        // payload length
	op[8] = 0xaa                                   // XFS_LOG
	op[9] = 0x20                                   // XLOG_UNMOUNT_TRANS
	binary.LittleEndian.PutUint16(op[12:], 0x556e) // XLOG_UNMOUNT_TYPE, host order as mkfs writes it
	return b
}

func log2(n int) int {
	l := 0
	for n > 1 {
		n >>= 1
		l++
	}
	return l
}
