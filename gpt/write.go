package gpt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// Syncer is implemented by writers that can flush to stable storage (*os.File).
type Syncer interface{ Sync() error }

// Write writes t onto a device or image of size bytes, with the backup copy at the device's
// last LBA (wherever the old backup was).
//
// Order: backup entries, backup header; sync; protective MBR, primary entries, primary
// header; sync. (The MBR goes first, synced, when the disk has no protective MBR yet: Read
// does not trust a backup without one.) A cut after any write leaves a valid copy: until the
// backup header is complete the old primary is intact; once the primary entries change, the
// old primary header no longer matches them and Read takes the new backup, recognizing it by
// its entry CRC matching the primary's entry array; after the primary header both agree.
// If the primary on the disk is damaged (the backup may then be the only valid copy), the
// primary is written first instead, and Read takes it as soon as it is complete.
//
// If w is also an io.ReaderAt, sectors that already hold the right bytes are not written,
// so rewriting an unchanged table writes nothing and a changed one touches only the
// sectors that differ. If w has Sync() error, it is called after each copy.
func Write(w io.WriterAt, size int64, t *Table) error {
	last, err := t.lastLBA(size)
	if err != nil {
		return err
	}
	ss := uint64(t.SectorSize)
	es := t.entrySectors()
	backupEntries := last - es
	switch {
	case t.EntrySize < minEntrySize || t.EntrySize%minEntrySize != 0 || t.EntrySize&(t.EntrySize-1) != 0:
		return fmt.Errorf("gpt: entry size %d invalid", t.EntrySize)
	case t.EntryCount == 0 || uint64(t.EntryCount)*uint64(t.EntrySize) > maxEntriesSize:
		return fmt.Errorf("gpt: entry count %d invalid", t.EntryCount)
	case t.EntriesLBA < 2:
		return fmt.Errorf("gpt: primary entries at LBA %d (must be 2 or later)", t.EntriesLBA)
	case t.FirstUsableLBA < t.EntriesLBA+es:
		return fmt.Errorf("gpt: first usable LBA %d overlaps the primary entries (LBA %d-%d)", t.FirstUsableLBA, t.EntriesLBA, t.EntriesLBA+es-1)
	case t.LastUsableLBA >= backupEntries:
		return fmt.Errorf("gpt: last usable LBA %d overlaps the backup entries at LBA %d of a %d-byte device", t.LastUsableLBA, backupEntries, size)
	case t.FirstUsableLBA > t.LastUsableLBA:
		return fmt.Errorf("gpt: first usable LBA %d after last usable LBA %d", t.FirstUsableLBA, t.LastUsableLBA)
	}
	if err := t.check(t.LastUsableLBA + 1); err != nil {
		return fmt.Errorf("gpt: %w", err)
	}
	// The entry array padded to whole sectors, as written; the CRC covers the entries only.
	pad := getEntryBuf(int(es * ss))
	defer putEntryBuf(pad)
	clear(pad)
	entries := pad[:uint64(t.EntryCount)*uint64(t.EntrySize)]
	if err := t.encodeEntries(entries); err != nil {
		return fmt.Errorf("gpt: %w", err)
	}
	ecrc := crc32.ChecksumIEEE(entries)
	primary := t.encodeHeader(1, last, t.EntriesLBA, ecrc)
	backup := t.encodeHeader(last, 1, backupEntries, ecrc)

	ww := &diffWriter{w: w}
	if ww.r, _ = w.(io.ReaderAt); ww.r != nil {
		ww.old = getEntryBuf(len(pad))
		defer func() { putEntryBuf(ww.old) }()
	}
	mbr := make([]byte, 512)
	if ww.r != nil {
		if _, err := ww.r.ReadAt(mbr, 0); err != nil {
			return fmt.Errorf("gpt: read MBR: %w", err)
		}
	}
	// The protective MBR changes with the disk's size. On a disk that has one, the old and
	// the new are both valid, so it goes with the primary copy, whose sectors share its page:
	// the first sync then flushes only the backup's pages at the end of the disk. Without
	// one, Read does not trust a backup alone: the MBR must be on the disk before the primary
	// is touched.
	mbrFirst := !isProtective(mbr)
	protectiveMBR(mbr, last)

	type step struct {
		what string
		off  uint64
		data []byte
		sync bool
	}
	backupSteps := []step{
		{"backup entries", backupEntries * ss, pad, false},
		{"backup header", last * ss, backup, true},
	}
	mbrStep := step{"protective MBR", 0, mbr, false}
	primarySteps := []step{
		{"primary entries", t.EntriesLBA * ss, pad, false},
		{"primary header", ss, primary, true},
	}
	if !mbrFirst {
		primarySteps = append([]step{mbrStep}, primarySteps...)
	}
	steps := append(backupSteps, primarySteps...)
	if ww.r != nil && !validAt(ww.r, 1, t.SectorSize, uint64(size)/ss, ww.old) {
		// The primary is damaged, so the backup may be the only valid copy: it must not be
		// touched before a complete new primary is on the disk.
		steps = append(primarySteps, backupSteps...)
	}
	if mbrFirst {
		steps = append([]step{mbrStep}, steps...)
	}
	for _, s := range steps {
		if err := ww.write(s.data, int64(s.off), t.SectorSize); err != nil {
			return fmt.Errorf("gpt: write %s at byte %d: %w", s.what, s.off, err)
		}
		if s.sync && ww.dirty {
			if sy, ok := w.(Syncer); ok {
				if err := sy.Sync(); err != nil {
					return fmt.Errorf("gpt: sync after %s: %w", s.what, err)
				}
			}
			ww.dirty = false
		}
	}
	return nil
}

// validAt reports whether a complete, valid GPT copy has its header at lba; buf is scratch
// space for its entry array.
func validAt(r io.ReaderAt, lba uint64, ss int, devSectors uint64, buf []byte) bool {
	return readCopy(r, lba, ss, devSectors, buf).ok()
}

// diffWriter writes only the sector span that differs from what the device holds.
type diffWriter struct {
	w     io.WriterAt
	r     io.ReaderAt
	dirty bool
	old   []byte // what the device holds, read before each write
}

func (d *diffWriter) write(data []byte, off int64, ss int) error {
	if d.r != nil {
		// One buffer for all the steps' reads: each fresh 16 KiB is four more pages to
		// fault in, a noticeable part of a repart run.
		if cap(d.old) < len(data) {
			d.old = make([]byte, len(data))
		}
		old := d.old[:len(data)]
		if _, err := d.r.ReadAt(old, off); err != nil && err != io.EOF {
			return err
		}
		first, last := -1, -1
		for s := 0; s < len(data); s += ss {
			e := min(s+ss, len(data))
			if !bytes.Equal(old[s:e], data[s:e]) {
				if first < 0 {
					first = s
				}
				last = e
			}
		}
		if first < 0 {
			return nil
		}
		data, off = data[first:last], off+int64(first)
	}
	d.dirty = true
	_, err := d.w.WriteAt(data, off)
	return err
}

func (t *Table) encodeHeader(my, alt, entriesLBA uint64, entriesCRC uint32) []byte {
	b := make([]byte, t.SectorSize)
	le := binary.LittleEndian
	copy(b, signature)
	le.PutUint32(b[8:], revision)
	le.PutUint32(b[12:], headerSize)
	le.PutUint64(b[24:], my)
	le.PutUint64(b[32:], alt)
	le.PutUint64(b[40:], t.FirstUsableLBA)
	le.PutUint64(b[48:], t.LastUsableLBA)
	EncodeGUID(b[56:], t.DiskGUID)
	le.PutUint64(b[72:], entriesLBA)
	le.PutUint32(b[80:], t.EntryCount)
	le.PutUint32(b[84:], t.EntrySize)
	le.PutUint32(b[88:], entriesCRC)
	le.PutUint32(b[16:], crc32.ChecksumIEEE(b[:headerSize]))
	return b
}

// encodeEntries fills b, zeroed and EntryCount*EntrySize bytes long, with the entry array.
func (t *Table) encodeEntries(b []byte) error {
	le := binary.LittleEndian
	for _, p := range t.Partitions {
		e := b[uint64(p.Index-1)*uint64(t.EntrySize):][:t.EntrySize]
		if len(p.raw) == int(t.EntrySize) && unchanged(p) {
			copy(e, p.raw)
			continue
		}
		EncodeGUID(e[0:], p.Type)
		EncodeGUID(e[16:], p.UUID)
		le.PutUint64(e[32:], p.FirstLBA)
		le.PutUint64(e[40:], p.LastLBA)
		le.PutUint64(e[48:], p.Attributes)
		if err := encodeName(e[56:], p.Name); err != nil {
			return fmt.Errorf("partition %d: %w", p.Index, err)
		}
	}
	return nil
}

// unchanged reports whether p still matches the entry it was read from.
func unchanged(p Partition) bool {
	le := binary.LittleEndian
	r := p.raw
	return DecodeGUID(r[0:]) == p.Type && DecodeGUID(r[16:]) == p.UUID &&
		le.Uint64(r[32:]) == p.FirstLBA && le.Uint64(r[40:]) == p.LastLBA &&
		le.Uint64(r[48:]) == p.Attributes && decodeName(r[56:56+nameBytes]) == p.Name
}

// protectiveMBR turns mbr into a protective MBR covering a disk whose last LBA is last. A
// hybrid MBR (0xEE next to other partitions) is left alone; boot code and disk signature
// are always kept.
func protectiveMBR(mbr []byte, last uint64) {
	var ee, others int
	for i := 0; i < 4; i++ {
		switch mbr[446+16*i+4] {
		case 0xEE:
			ee++
		case 0:
		default:
			others++
		}
	}
	n := last
	if n > 0xFFFFFFFF {
		n = 0xFFFFFFFF
	}
	valid := mbr[510] == 0x55 && mbr[511] == 0xAA
	if valid && ee > 0 && others > 0 {
		return
	}
	if valid && ee == 1 {
		// Keep the other tool's CHS bytes; only the covered size changes with the disk.
		for i := 0; i < 4; i++ {
			if e := mbr[446+16*i:][:16]; e[4] == 0xEE {
				binary.LittleEndian.PutUint32(e[8:], 1)
				binary.LittleEndian.PutUint32(e[12:], uint32(n))
			}
		}
		return
	}
	for i := 446; i < 510; i++ {
		mbr[i] = 0
	}
	e := mbr[446:462]
	e[1], e[2], e[3] = 0x00, 0x02, 0x00 // CHS of LBA 1
	e[4] = 0xEE
	e[5], e[6], e[7] = 0xFF, 0xFF, 0xFF
	binary.LittleEndian.PutUint32(e[8:], 1)
	binary.LittleEndian.PutUint32(e[12:], uint32(n))
	mbr[510], mbr[511] = 0x55, 0xAA
}
