package xfs

import (
	"fmt"
	"math/bits"
)

// Fixed choices: what mkfs.xfs 6.1 picks for a single, non-striped device with systemd-repart's
// arguments. Only the size and the sector size vary.
const (
	blockLog     = 12
	blockSize    = 1 << blockLog
	inodeLog     = 9
	inodeSize    = 1 << inodeLog
	inopbLog     = blockLog - inodeLog // inodes per block, log2
	inodesPerChk = 64                  // XFS_INODES_PER_CHUNK
	chunkBlocks  = inodesPerChk * inodeSize / blockSize
	agflFill     = 4 // blocks mkfs puts on each AGFL: 2 for the bnobt, 2 for the cntbt

	// MinSize is the smallest partition mkfs.xfs 6.1 formats (300 MiB of data blocks).
	MinSize = 300 << 20
	// MaxSize is the largest partition Format accepts: 16 TiB, the range tested against
	// mkfs.xfs (beyond it mkfs.xfs changes inode and log policies we do not reproduce).
	MaxSize = 16 << 40

	minDataBlocks = MinSize >> blockLog
	agMinBlocks   = (16 << 20) >> blockLog      // XFS_AG_MIN_BYTES: a smaller last AG is dropped
	agMaxBlocks   = ((1 << 40) - 1) >> blockLog // XFS_AG_MAX_BYTES - 1, in blocks
	minLogBlocks  = (64 << 20) >> blockLog      // mkfs' "realistic" minimum log, 64 MiB
	// XFS_MAX_LOG_BYTES: 2 GiB less the kernel's 10 MiB minimum log.
	maxLogBlocks = ((2 << 30) - (10 << 20)) >> blockLog

	nullAgino = 0xffffffff
	nullFSIno = ^uint64(0)
)

// geometry is the layout of one filesystem: everything that depends on the size and the
// sector size, nothing that depends on label, UUID or time. Planning it does no I/O.
type geometry struct {
	sectSize  int
	dblocks   uint64 // data blocks in the filesystem (may be less than the partition)
	agBlocks  uint32 // blocks per AG (the last AG may be shorter)
	agCount   uint32
	agBlkLog  uint8  // ceil(log2(agBlocks)): the AG field width in block and inode numbers
	logAG     uint32 // the AG holding the internal log
	logBlocks uint32
	imaxPct   uint8

	// Per-AG block numbers of the fixed metadata; they depend on the sector size because the
	// four header sectors (SB, AGF, AGI, AGFL) fill one block with 512-byte sectors but four
	// blocks with 4096-byte ones.
	agflBlock uint32 // block holding the AGFL sector
	bnoRoot   uint32
	cntRoot   uint32
	inoRoot   uint32
	finoRoot  uint32
	refcRoot  uint32
	prealloc  uint32 // first block after the fixed metadata (XFS_PREALLOC_BLOCKS)

	rootChunk uint32 // AG 0 block of the first inode chunk (root, rbm, rsum inodes)
}

// planGeometry reproduces mkfs.xfs 6.1's choices (calc_default_ag_geometry, the last-AG
// trimming, calculate_log_size, the log in the middle AG) for a partition of size bytes.
func planGeometry(size int64, sectSize int) (geometry, error) {
	g := geometry{sectSize: sectSize}
	if sectSize != 512 && sectSize != 4096 {
		return g, fmt.Errorf("sector size %d not supported (512 or 4096)", sectSize)
	}
	if size < MinSize {
		return g, fmt.Errorf("%d bytes (%s) is too small for XFS: mkfs.xfs 6.1 needs at least 300 MiB", size, human(size))
	}
	if size > MaxSize {
		return g, fmt.Errorf("%d bytes (%s) is too large: at most 16 TiB supported", size, human(size))
	}
	g.dblocks = uint64(size) >> blockLog

	// calc_default_ag_geometry for one disk without stripes: 4 AGs from 128 MiB to 4 TiB,
	// the maximum AG size beyond; round the AG size up so no tail is lost.
	var agsize uint64
	if g.dblocks >= (4<<40)>>blockLog {
		agsize = agMaxBlocks
	} else {
		agsize = g.dblocks >> 2
		if g.dblocks&3 != 0 && agsize < agMaxBlocks {
			agsize++
		}
	}
	agcount := (g.dblocks + agsize - 1) / agsize
	if rem := g.dblocks % agsize; rem != 0 && rem < agMinBlocks {
		agcount--
		g.dblocks = agcount * agsize
	}
	g.agBlocks, g.agCount = uint32(agsize), uint32(agcount)
	g.agBlkLog = uint8(bits.Len32(g.agBlocks - 1)) // log2, rounded up

	switch {
	case g.dblocks < (1<<40)>>blockLog:
		g.imaxPct = 25
	default:
		g.imaxPct = 5
	}

	g.agflBlock = uint32(3 * sectSize / blockSize)
	g.bnoRoot = g.agflBlock + 1
	g.cntRoot = g.agflBlock + 2
	g.inoRoot = g.agflBlock + 3
	g.finoRoot = g.agflBlock + 4
	g.refcRoot = g.agflBlock + 5
	g.prealloc = g.agflBlock + 6

	// calculate_log_size: 64 MiB up to 16 GiB... then 1/2048 of the filesystem, at most
	// XFS_MAX_LOG_BYTES. The 64 MiB minimum always exceeds the transaction-derived minimum
	// for 4 KiB blocks with these features.
	logb := uint64(minLogBlocks)
	if g.dblocks >= (16<<30)>>blockLog {
		logb = max(logb, g.dblocks/2048)
	}
	g.logBlocks = uint32(min(logb, maxLogBlocks))
	g.logAG = g.agCount / 2
	if uint64(g.prealloc)+uint64(g.logBlocks)+agflFill >= uint64(g.agLen(g.logAG)) {
		return g, fmt.Errorf("internal error: log of %d blocks does not fit AG %d", g.logBlocks, g.logAG)
	}
	// The first inode chunk is aligned to its own size (sb_inoalignmt) after the AGFL blocks.
	g.rootChunk = alignUp(g.prealloc+agflFill, chunkBlocks)
	return g, nil
}

func alignUp(v, a uint32) uint32 { return (v + a - 1) / a * a }

// agLen is the number of blocks in AG agno.
func (g *geometry) agLen(agno uint32) uint32 {
	if agno == g.agCount-1 {
		return uint32(g.dblocks - uint64(agno)*uint64(g.agBlocks))
	}
	return g.agBlocks
}

// offset is the byte offset of block agbno of AG agno. Disk addresses use the real AG size;
// block and inode numbers (fsb, ino) use the rounded-up power of two: they differ when the AG
// size is not a power of two.
func (g *geometry) offset(agno, agbno uint32) int64 {
	return (int64(agno)*int64(g.agBlocks) + int64(agbno)) << blockLog
}

// daddr is the 512-byte disk address that btree blocks record as their own location.
func (g *geometry) daddr(agno, agbno uint32) uint64 { return uint64(g.offset(agno, agbno)) >> 9 }

// fsb is the filesystem block number (sb_logstart and friends).
func (g *geometry) fsb(agno, agbno uint32) uint64 {
	return uint64(agno)<<g.agBlkLog | uint64(agbno)
}

// rootIno is the inode number of the first inode in the root chunk (always in AG 0).
func (g *geometry) rootIno() uint64 { return uint64(g.rootChunk) << inopbLog }

// extent is a run of free blocks inside one AG.
type extent struct{ start, count uint32 }

// agflBlocks are the blocks mkfs put on AG agno's free list: right after the fixed metadata,
// or after the log in the log AG.
func (g *geometry) agflBlocks(agno uint32) []uint32 {
	first := g.prealloc
	if agno == g.logAG {
		first += g.logBlocks
	}
	b := make([]uint32, agflFill)
	for i := range b {
		b[i] = first + uint32(i)
	}
	return b
}

// freeExtents lists AG agno's free space in block order.
func (g *geometry) freeExtents(agno uint32) []extent {
	fl := g.agflBlocks(agno)
	start := fl[len(fl)-1] + 1
	end := g.agLen(agno)
	if agno != 0 {
		return []extent{{start, end - start}}
	}
	var ex []extent
	if start < g.rootChunk {
		ex = append(ex, extent{start, g.rootChunk - start})
	}
	after := g.rootChunk + chunkBlocks
	return append(ex, extent{after, end - after})
}

func human(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.4g %s", f, units[i])
}
