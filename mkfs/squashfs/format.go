package squashfs

import (
	"encoding/binary"
	"io/fs"
)

// On-disk constants of squashfs 4.0 (the kernel's fs/squashfs/squashfs_fs.h).
const (
	magic          = 0x73717368
	superblockSize = 96
	metadataSize   = 8192
	maxNameLen     = 255
	maxSymlink     = 4095 // the kernel refuses symlinks longer than a page
	dirMaxCount    = 256
	invalidFrag    = 0xffffffff
	invalidXattr   = 0xffffffff
	invalidTable   = ^uint64(0)

	metaUncompressed = 1 << 15 // metadata block header: stored uncompressed
	dataUncompressed = 1 << 24 // data block / fragment size: stored uncompressed

	flagNoI        = 1 << 0
	flagNoD        = 1 << 1
	flagNoF        = 1 << 3
	flagNoFrag     = 1 << 4
	flagDuplicates = 1 << 6
	flagExport     = 1 << 7
	flagNoX        = 1 << 8
	flagNoXattrs   = 1 << 9
	flagCompOpt    = 1 << 10
	flagNoID       = 1 << 11
)

// Inode types; directory entries always carry the basic type.
const (
	typeDir = 1 + iota
	typeReg
	typeSymlink
	typeBlk
	typeChr
	typeFifo
	typeSock
	typeLDir
	typeLReg
	typeLSymlink
	typeLBlk
	typeLChr
	typeLFifo
	typeLSock
)

func basicType(m fs.FileMode) uint16 {
	switch m.Type() {
	case fs.ModeDir:
		return typeDir
	case fs.ModeSymlink:
		return typeSymlink
	case fs.ModeDevice:
		return typeBlk
	case fs.ModeDevice | fs.ModeCharDevice:
		return typeChr
	case fs.ModeNamedPipe:
		return typeFifo
	case fs.ModeSocket:
		return typeSock
	}
	return typeReg
}

// unixMode converts Go's mode bits to the 12 permission bits squashfs stores (the kernel
// adds the type bits from the inode type).
func unixMode(m fs.FileMode) uint16 {
	u := uint16(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

// metaStream accumulates a metadata table (inodes, directories, ids, ...): 8 KiB blocks,
// each compressed on its own behind a 2-byte length header.
type metaStream struct {
	comp   compressor
	raw    bool
	buf    []byte   // the open block, always shorter than metadataSize
	out    []byte   // finished blocks as stored
	starts []uint64 // stored offset of each finished block
	tmp    []byte
	err    error
}

// pos returns the reference of the next byte written: stored offset of its block and the
// offset inside the uncompressed block.
func (m *metaStream) pos() (block uint64, offset uint16) {
	return uint64(len(m.out)), uint16(len(m.buf))
}

// ref returns pos as an inode reference.
func (m *metaStream) ref() uint64 {
	b, o := m.pos()
	return b<<16 | uint64(o)
}

// uncompressedLen is the number of bytes written so far.
func (m *metaStream) uncompressedLen() int {
	return len(m.starts)*metadataSize + len(m.buf)
}

// blockAt returns the stored offset of the block holding uncompressed byte u, which must
// be in a finished block or the open one.
func (m *metaStream) blockAt(u int) uint64 {
	if k := u / metadataSize; k < len(m.starts) {
		return m.starts[k]
	}
	return uint64(len(m.out))
}

func (m *metaStream) write(b []byte) {
	for len(b) > 0 {
		n := min(len(b), metadataSize-len(m.buf))
		m.buf = append(m.buf, b[:n]...)
		b = b[n:]
		if len(m.buf) == metadataSize {
			m.flush()
		}
	}
}

func (m *metaStream) flush() {
	if len(m.buf) == 0 {
		return
	}
	m.starts = append(m.starts, uint64(len(m.out)))
	var c []byte
	if !m.raw && m.err == nil {
		c, m.err = m.comp.compress(m.tmp, m.buf)
		m.tmp = c
	}
	if m.raw || m.err != nil || c == nil || len(c) >= len(m.buf) {
		m.out = binary.LittleEndian.AppendUint16(m.out, uint16(len(m.buf))|metaUncompressed)
		m.out = append(m.out, m.buf...)
	} else {
		m.out = binary.LittleEndian.AppendUint16(m.out, uint16(len(c)))
		m.out = append(m.out, c...)
	}
	m.buf = m.buf[:0]
}

// finish closes the open block and returns the stored table.
func (m *metaStream) finish() ([]byte, error) {
	m.flush()
	return m.out, m.err
}

// le is a little-endian appender, for the fixed on-disk structures.
type le []byte

func (b le) u16(v uint16) le { return binary.LittleEndian.AppendUint16(b, v) }
func (b le) u32(v uint32) le { return binary.LittleEndian.AppendUint32(b, v) }
func (b le) u64(v uint64) le { return binary.LittleEndian.AppendUint64(b, v) }
