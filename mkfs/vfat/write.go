package vfat

import (
	"encoding/binary"
	"fmt"
	"github.com/piboot/piboot/internal/iszero"
	"io"
	"io/fs"
	"sync"
)

// target bounds every write to [0, size) of the underlying WriterAt.
type target struct {
	w      io.WriterAt
	size   int64
	zeroed bool
}

func (t *target) writeAt(p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > t.size {
		return fmt.Errorf("%w: %d bytes at offset %d, size %d", errOutside, len(p), off, t.size)
	}
	if _, err := t.w.WriteAt(p, off); err != nil {
		return fmt.Errorf("writing %d bytes at offset %d: %w", len(p), off, err)
	}
	return nil
}

// zeros is allocated on first use: every piboot subcommand links this package, and most
// never write a FAT, so a 1 MiB allocation at init would cost each of them.
var zeros = sync.OnceValue(func() []byte { return make([]byte, 1<<20) })

// zero writes n zero bytes at off, unless the target is known to be zeroed already.
func (t *target) zero(off, n int64) error {
	if t.zeroed {
		if off < 0 || off+n > t.size {
			return fmt.Errorf("%w: %d bytes at offset %d, size %d", errOutside, n, off, t.size)
		}
		return nil
	}
	for n > 0 {
		z := zeros()
		k := min(n, int64(len(z)))
		if err := t.writeAt(z[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

// writeSparse writes p at off, skipping whole zero chunks if the target is zeroed.
func (t *target) writeSparse(p []byte, off int64) error {
	if !t.zeroed {
		return t.writeAt(p, off)
	}
	const chunk = 4096
	for len(p) > 0 {
		k := min(len(p), chunk)
		if !iszero.Bytes(p[:k]) {
			if err := t.writeAt(p[:k], off); err != nil {
				return err
			}
		}
		p, off = p[k:], off+int64(k)
	}
	return nil
}

// write puts the planned filesystem onto t. Sector 0 is cleared first and written last, so
// an interrupted run leaves no boot sector that points at half-written tables.
func (p *fsPlan) write(t *target, fsys fs.FS) error {
	g := p.g
	ss := int64(g.sectorSize)
	if err := t.zero(0, ss); err != nil {
		return err
	}

	// Reserved region except the boot sector.
	res := make([]byte, int64(g.reserved)*ss)
	boot := p.bootSector()
	if g.fatType == 32 {
		info := p.fsInfo()
		copy(res[fat32FSInfo*ss:], info)
		copy(res[fat32BackupBoot*ss:], boot)
		copy(res[(fat32BackupBoot+fat32FSInfo)*ss:], info)
	}
	if err := t.writeSparse(res[ss:], ss); err != nil {
		return err
	}

	// Both FATs: the used part from memory, the free rest as zeros.
	fat := p.fatBytes()
	fatBytes := int64(g.fatLength) * ss
	for i := 0; i < numFATs; i++ {
		off := g.fatStart(i)
		if err := t.writeAt(fat, off); err != nil {
			return err
		}
		if err := t.zero(off+int64(len(fat)), fatBytes-int64(len(fat))); err != nil {
			return err
		}
	}

	// FAT16's fixed root directory.
	if g.fatType == 16 {
		buf := make([]byte, int64(g.rootSectors)*ss)
		p.fillDir(buf, p.root, nil)
		if err := t.writeSparse(buf, g.rootStart()); err != nil {
			return err
		}
	}

	// Directory clusters and file data, in cluster order.
	cb := g.clusterBytes()
	parents := map[*node]*node{}
	_ = walk(p.root, func(n *node) error {
		for _, c := range n.children {
			parents[c] = n
		}
		return nil
	})
	var copyBuf []byte
	for _, n := range p.byOrder {
		off := g.clusterOffset(n.first)
		span := int64(n.nclust) * cb
		if n.dir {
			buf := make([]byte, span)
			p.fillDir(buf, n, parents[n])
			if err := t.writeSparse(buf, off); err != nil {
				return err
			}
			continue
		}
		if copyBuf == nil {
			copyBuf = make([]byte, 1<<20)
		}
		if err := p.copyFile(t, fsys, n, off, copyBuf); err != nil {
			return err
		}
		if err := t.zero(off+n.size, span-n.size); err != nil {
			return err
		}
	}

	return t.writeAt(boot, 0)
}

// copyFile streams one file into its clusters and checks it still has the size it had when
// the tree was read.
func (p *fsPlan) copyFile(t *target, fsys fs.FS, n *node, off int64, buf []byte) error {
	f, err := fsys.Open(n.path)
	if err != nil {
		return fmt.Errorf("%s: %w", n.path, err)
	}
	defer f.Close()
	var done int64
	for {
		k, err := io.ReadFull(f, buf)
		if k > 0 {
			if done+int64(k) > n.size {
				return fmt.Errorf("%s: file grew beyond %d bytes while being copied", n.path, n.size)
			}
			if err := t.writeAt(buf[:k], off+done); err != nil {
				return fmt.Errorf("%s: %w", n.path, err)
			}
			done += int64(k)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", n.path, err)
		}
	}
	if done != n.size {
		return fmt.Errorf("%s: read %d bytes, expected %d (file changed while being copied)", n.path, done, n.size)
	}
	return nil
}

// bootSector is the boot sector (BPB) of the filesystem, one logical sector long.
func (p *fsPlan) bootSector() []byte {
	g := p.g
	b := make([]byte, g.sectorSize)
	le := binary.LittleEndian
	copy(b[3:11], "MSWIN4.1") // the OEM name the FAT specification recommends for compatibility
	le.PutUint16(b[11:], uint16(g.sectorSize))
	b[13] = byte(g.secPerCluster)
	le.PutUint16(b[14:], uint16(g.reserved))
	b[16] = numFATs
	le.PutUint16(b[17:], uint16(g.rootEntries))
	if g.fatType == 16 && g.totalSectors < 1<<16 {
		le.PutUint16(b[19:], uint16(g.totalSectors))
	} else {
		le.PutUint32(b[32:], g.totalSectors)
	}
	b[21] = 0xF8 // fixed disk
	spt, heads := 63, 255
	if int64(g.totalSectors)*int64(g.sectorSize) < 512<<20 {
		spt, heads = 32, 64 // mkfs.fat's less extreme dummy geometry for small filesystems
	}
	le.PutUint16(b[24:], uint16(spt))
	le.PutUint16(b[26:], uint16(heads))
	le.PutUint32(b[28:], p.hidden)

	var vi []byte // extended BPB: drive number, signature, serial, label, type
	var code int
	if g.fatType == 32 {
		le.PutUint32(b[36:], g.fatLength)
		le.PutUint32(b[44:], fat32RootCluster)
		le.PutUint16(b[48:], fat32FSInfo)
		le.PutUint16(b[50:], fat32BackupBoot)
		vi, code = b[64:90], 90
		copy(vi[18:], "FAT32   ")
	} else {
		le.PutUint16(b[22:], uint16(g.fatLength))
		vi, code = b[36:62], 62
		copy(vi[18:], "FAT16   ")
	}
	vi[0] = 0x80
	vi[2] = 0x29
	le.PutUint32(vi[3:], p.volID)
	copy(vi[7:18], p.label[:])
	b[0], b[1], b[2] = 0xEB, byte(code-2), 0x90
	putBootCode(b[code:510], 0x7C00+code)
	b[510], b[511] = 0x55, 0xAA
	return b
}

// putBootCode writes a real-mode stub that prints why this disk does not boot and halts: a
// BIOS that tries it says so instead of hanging silently.
func putBootCode(b []byte, loadAddr int) {
	msg := "This is a UEFI system partition made by piboot; it is not BIOS-bootable.\r\n\x00"
	const msgAt = 21
	code := []byte{
		0x31, 0xDB, // xor bx, bx (page 0)
		0x0E, 0x1F, // push cs; pop ds
		0xBE, 0, 0, // mov si, msg
		0xAC,       // next: lodsb
		0x08, 0xC0, // or al, al
		0x74, 0x06, // jz halt
		0xB4, 0x0E, // mov ah, 0x0e (teletype output)
		0xCD, 0x10, // int 0x10
		0xEB, 0xF5, // jmp next
		0xF4,       // halt: hlt
		0xEB, 0xFD, // jmp halt
	}
	binary.LittleEndian.PutUint16(code[5:], uint16(loadAddr+msgAt))
	copy(b, code)
	copy(b[msgAt:], msg)
}

// fsInfo is FAT32's FSInfo sector: the free-cluster count and the allocation hint.
func (p *fsPlan) fsInfo() []byte {
	b := make([]byte, p.g.sectorSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], 0x41615252)
	le.PutUint32(b[484:], 0x61417272)
	le.PutUint32(b[488:], p.g.clusters-p.used)
	// The last allocated cluster, as mkfs.fat and Linux keep it; Linux starts its search
	// for free clusters right after it.
	le.PutUint32(b[492:], 2+p.used-1)
	le.PutUint32(b[508:], 0xAA550000)
	return b
}

// fatBytes is the used beginning of one FAT: the two reserved entries and every chain.
func (p *fsPlan) fatBytes() []byte {
	g := p.g
	es := g.fatType / 8
	b := make([]byte, int64(2+p.used)*int64(es))
	le := binary.LittleEndian
	put := func(c, v uint32) {
		if es == 4 {
			le.PutUint32(b[c*4:], v)
		} else {
			le.PutUint16(b[c*2:], uint16(v))
		}
	}
	eoc := uint32(0x0FFFFFFF)
	if es == 2 {
		eoc = 0xFFFF
	}
	put(0, eoc&^0xFF|0xF8) // media byte
	put(1, eoc)            // clean-shutdown and no-error bits set
	for _, n := range p.byOrder {
		for i := uint32(0); i < n.nclust; i++ {
			c := n.first + i
			if i == n.nclust-1 {
				put(c, eoc)
			} else {
				put(c, c+1)
			}
		}
	}
	// Round up to a whole sector so the FAT is written in sector units.
	ss := int64(g.sectorSize)
	if r := int64(len(b)) % ss; r != 0 {
		b = append(b, make([]byte, ss-r)...)
	}
	return b
}

// fillDir writes the entries of directory d into buf (zeroed, at least d.dirSlots*32 long).
func (p *fsPlan) fillDir(buf []byte, d, parent *node) {
	i := 0
	put := func(e []byte) { copy(buf[i*direntSize:], e); i++ }
	if d == p.root {
		if p.hasLbl {
			put(p.shortEntry(p.label, attrVolumeID, 0, 0, 0))
		}
	} else {
		up := uint32(0) // ".." of a top-level directory is 0, whatever the root's cluster
		if parent != nil && parent != p.root {
			up = parent.first
		}
		put(p.shortEntry(pack83(".", ""), attrDirectory, 0, d.first, 0))
		put(p.shortEntry(pack83("..", ""), attrDirectory, 0, up, 0))
	}
	for _, c := range d.children {
		if c.long {
			for _, e := range lfnEntries(c.name, c.short) {
				put(e[:])
			}
		}
		attr := byte(attrArchive)
		if c.dir {
			attr = attrDirectory
		}
		put(p.shortEntry(c.short, attr, c.lcase, c.first, uint32(c.size)))
	}
}

func (p *fsPlan) shortEntry(name [11]byte, attr, lcase byte, first, size uint32) []byte {
	e := make([]byte, direntSize)
	le := binary.LittleEndian
	copy(e[0:11], name[:])
	e[11] = attr
	e[12] = lcase
	if attr&attrVolumeID == 0 {
		e[13] = p.stamp.centis
		le.PutUint16(e[14:], p.stamp.time)
		le.PutUint16(e[16:], p.stamp.date)
		le.PutUint16(e[18:], p.stamp.date)
	}
	le.PutUint16(e[20:], uint16(first>>16))
	le.PutUint16(e[22:], p.stamp.time)
	le.PutUint16(e[24:], p.stamp.date)
	le.PutUint16(e[26:], uint16(first))
	le.PutUint32(e[28:], size)
	return e
}
