// Package gpt reads, validates, repairs and crash-safely writes GUID partition tables.
//
// Read accepts 512- and 4096-byte sectors, checks the protective MBR, both headers and both
// entry arrays with their CRCs, and looks for the backup copy both where the primary says it
// is (AlternateLBA) and at the device's last LBA: an image flashed onto a larger card keeps
// its backup at the image's end. It falls back to whichever copy is valid and reports, in
// Table.Status, which copies were bad. Write puts the backup at the real end of the device
// and orders its writes so that a cut after any of them leaves a valid table (old or new).
//
// GUIDs are uuid.UUID values in RFC 4122 byte order, i.e. as they are written in string
// form; the mixed-endian on-disk encoding stays inside this package.
package gpt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"unicode/utf16"

	"github.com/piboot/piboot/internal/uuid"
)

// Attribute bits of a partition entry.
const (
	AttrRequired       uint64 = 1 << 0  // platform required
	AttrNoBlockIO      uint64 = 1 << 1  // EFI: no block I/O protocol
	AttrLegacyBootable uint64 = 1 << 2  // legacy BIOS bootable
	AttrGrowFS         uint64 = 1 << 59 // systemd: grow the file system to the partition
	AttrReadOnly       uint64 = 1 << 60 // systemd: mount read-only
	AttrNoAuto         uint64 = 1 << 63 // systemd: do not auto-mount
)

const (
	headerSize     = 92
	signature      = "EFI PART"
	revision       = 0x00010000
	nameBytes      = 72
	minEntrySize   = 128
	maxEntriesSize = 4 << 20 // refuse absurd entry arrays instead of allocating them
)

// ErrNoGPT is returned (wrapped) by Read when neither GPT copy exists.
var ErrNoGPT = errors.New("no GPT partition table")

var errNoSignature = errors.New("no GPT signature")

// Partition is one used slot of the entry array.
type Partition struct {
	Index      int       // 1-based slot number: partition N is /dev/sdaN
	Type       uuid.UUID // partition type GUID
	UUID       uuid.UUID // unique partition GUID (PARTUUID)
	FirstLBA   uint64
	LastLBA    uint64 // inclusive
	Attributes uint64
	Name       string // the label (PARTLABEL), decoded from UTF-16LE

	raw []byte // the entry as read, so that an untouched entry is rewritten byte for byte
}

// Size returns the partition's size in bytes for the given sector size.
func (p Partition) Size(sectorSize int) int64 {
	return int64(p.LastLBA-p.FirstLBA+1) * int64(sectorSize)
}

// Status describes what Read found on the disk.
type Status struct {
	PrimaryValid bool
	// BackupValid reports a valid backup describing the same table as the one returned.
	BackupValid bool
	// BackupLBA is the LBA of that backup header (0 if none).
	BackupLBA uint64
	// FromBackup is set when the table came from a backup copy.
	FromBackup bool
	// MBRValid reports a protective (or hybrid) MBR with a 0xEE partition.
	MBRValid bool
	// Problems lists, in words, every bad or stale copy found.
	Problems []string
}

// Table is a GUID partition table.
type Table struct {
	SectorSize     int
	DiskGUID       uuid.UUID
	FirstUsableLBA uint64
	LastUsableLBA  uint64
	EntryCount     uint32
	EntrySize      uint32
	// EntriesLBA is where the primary entry array starts (2 on nearly every disk).
	EntriesLBA uint64
	// Partitions holds the used slots ordered by Index.
	Partitions []Partition
	// Status is filled by Read; Write ignores it.
	Status Status
}

// New returns an empty table for a device of size bytes with the usual 128 entries, the
// backup at the end of the device and the usable area in between.
func New(size int64, sectorSize int, diskGUID uuid.UUID) (*Table, error) {
	if sectorSize != 512 && sectorSize != 4096 {
		return nil, fmt.Errorf("gpt: sector size %d (want 512 or 4096)", sectorSize)
	}
	t := &Table{SectorSize: sectorSize, DiskGUID: diskGUID, EntryCount: 128, EntrySize: 128, EntriesLBA: 2}
	t.FirstUsableLBA = 2 + t.entrySectors()
	if err := t.Resize(size); err != nil {
		return nil, err
	}
	return t, nil
}

// entrySectors is the number of sectors one entry array occupies.
func (t *Table) entrySectors() uint64 {
	ss := uint64(t.SectorSize)
	return (uint64(t.EntryCount)*uint64(t.EntrySize) + ss - 1) / ss
}

// Resize moves the end of the usable area to just before the backup entries of a device of
// size bytes: what a table needs when an image was flashed onto a larger disk.
func (t *Table) Resize(size int64) error {
	last, err := t.lastLBA(size)
	if err != nil {
		return err
	}
	backupEntries := last - t.entrySectors()
	if backupEntries <= t.FirstUsableLBA {
		return fmt.Errorf("gpt: device of %d bytes is too small for a GPT", size)
	}
	newLast := backupEntries - 1
	for _, p := range t.Partitions {
		if p.LastLBA > newLast {
			return fmt.Errorf("gpt: partition %d (%q) ends at LBA %d, beyond the last usable LBA %d of a %d-byte device",
				p.Index, p.Name, p.LastLBA, newLast, size)
		}
	}
	t.LastUsableLBA = newLast
	return nil
}

func (t *Table) lastLBA(size int64) (uint64, error) {
	if t.SectorSize != 512 && t.SectorSize != 4096 {
		return 0, fmt.Errorf("gpt: sector size %d (want 512 or 4096)", t.SectorSize)
	}
	if size < int64(t.SectorSize)*(3+2*int64(t.entrySectors())) {
		return 0, fmt.Errorf("gpt: device of %d bytes is too small for a GPT", size)
	}
	return uint64(size/int64(t.SectorSize)) - 1, nil
}

// Partition returns the partition in slot index, or nil.
func (t *Table) Partition(index int) *Partition {
	for i := range t.Partitions {
		if t.Partitions[i].Index == index {
			return &t.Partitions[i]
		}
	}
	return nil
}

// ByName returns the first partition (lowest index) whose label is name, or nil.
func (t *Table) ByName(name string) *Partition {
	for i := range t.Partitions {
		if t.Partitions[i].Name == name {
			return &t.Partitions[i]
		}
	}
	return nil
}

// Clone returns a deep copy.
func (t *Table) Clone() *Table {
	c := *t
	c.Partitions = append([]Partition(nil), t.Partitions...)
	c.Status.Problems = append([]string(nil), t.Status.Problems...)
	return &c
}

// header is a decoded GPT header.
type header struct {
	myLBA, altLBA         uint64
	firstUsable, lastUsab uint64
	diskGUID              uuid.UUID
	entriesLBA            uint64
	entryCount, entrySize uint32
	entriesCRC            uint32
}

// DecodeGUID converts the 16 on-disk bytes of a GUID (first three fields little-endian).
func DecodeGUID(b []byte) uuid.UUID {
	var u uuid.UUID
	u[0], u[1], u[2], u[3] = b[3], b[2], b[1], b[0]
	u[4], u[5] = b[5], b[4]
	u[6], u[7] = b[7], b[6]
	copy(u[8:], b[8:16])
	return u
}

// EncodeGUID writes u in the on-disk mixed-endian layout into b[:16].
func EncodeGUID(b []byte, u uuid.UUID) {
	b[0], b[1], b[2], b[3] = u[3], u[2], u[1], u[0]
	b[4], b[5] = u[5], u[4]
	b[6], b[7] = u[7], u[6]
	copy(b[8:16], u[8:])
}

// parseHeader checks a header sector read from lba; it does not check the entries.
func parseHeader(sec []byte, lba uint64, sectorSize int) (*header, error) {
	if string(sec[:8]) != signature {
		return nil, errNoSignature
	}
	le := binary.LittleEndian
	hs := le.Uint32(sec[12:])
	if hs < headerSize || int(hs) > sectorSize {
		return nil, fmt.Errorf("header size %d out of range", hs)
	}
	h := make([]byte, hs)
	copy(h, sec[:hs])
	want := le.Uint32(h[16:])
	le.PutUint32(h[16:], 0)
	if got := crc32.ChecksumIEEE(h); got != want {
		return nil, fmt.Errorf("header CRC %08x, expected %08x", want, got)
	}
	hd := &header{
		myLBA:       le.Uint64(sec[24:]),
		altLBA:      le.Uint64(sec[32:]),
		firstUsable: le.Uint64(sec[40:]),
		lastUsab:    le.Uint64(sec[48:]),
		diskGUID:    DecodeGUID(sec[56:]),
		entriesLBA:  le.Uint64(sec[72:]),
		entryCount:  le.Uint32(sec[80:]),
		entrySize:   le.Uint32(sec[84:]),
		entriesCRC:  le.Uint32(sec[88:]),
	}
	switch {
	case hd.myLBA != lba:
		return nil, fmt.Errorf("header says it is at LBA %d", hd.myLBA)
	case hd.entrySize < minEntrySize || hd.entrySize%minEntrySize != 0 || hd.entrySize&(hd.entrySize-1) != 0:
		return nil, fmt.Errorf("entry size %d invalid", hd.entrySize)
	case uint64(hd.entryCount)*uint64(hd.entrySize) > maxEntriesSize || hd.entryCount == 0:
		return nil, fmt.Errorf("entry count %d invalid", hd.entryCount)
	case hd.firstUsable > hd.lastUsab+1:
		return nil, fmt.Errorf("first usable LBA %d after last usable LBA %d", hd.firstUsable, hd.lastUsab)
	}
	return hd, nil
}

// copyInfo is one candidate copy of the table.
type copyInfo struct {
	hdr     *header
	entries []byte
	err     error
}

func (c *copyInfo) ok() bool { return c.err == nil }

// entryBufs recycles entry-array buffers between Read and Write: a repart run reads two
// copies of the table and writes one through a second buffer, and every fresh 16 KiB buffer
// is four page faults (about 17 us each where the benchmarks run, and on a card's first boot
// every fault is on the way to the root file system).
var entryBufs sync.Pool

// getEntryBuf returns an n-byte buffer from entryBufs (its old contents) or a new one.
func getEntryBuf(n int) []byte {
	if b, ok := entryBufs.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n)
}

// putEntryBuf gives b back; the caller must not use it any more.
func putEntryBuf(b []byte) {
	if b != nil {
		entryBufs.Put(&b)
	}
}

// Prefetcher is implemented by readers that can start reading a range ahead of time (a
// block device: posix_fadvise WILLNEED). Read tells it where the other copy of the table is
// as soon as a header names it, so that the two copies come in at the same time instead of
// one after the other.
type Prefetcher interface{ Prefetch(off, n int64) }

// readCopy reads and checks the header at lba and its entry array, which it reads into buf
// when buf is large enough (nil: a buffer from getEntryBuf, which the caller puts back).
func readCopy(r io.ReaderAt, lba uint64, sectorSize int, devSectors uint64, buf []byte) *copyInfo {
	c := &copyInfo{}
	if lba == 0 || lba >= devSectors {
		c.err = fmt.Errorf("LBA %d outside the device (%d sectors)", lba, devSectors)
		return c
	}
	sec := make([]byte, sectorSize)
	if _, err := r.ReadAt(sec, int64(lba)*int64(sectorSize)); err != nil {
		c.err = fmt.Errorf("read LBA %d: %w", lba, err)
		return c
	}
	h, err := parseHeader(sec, lba, sectorSize)
	if err != nil {
		c.err = err
		return c
	}
	c.hdr = h
	n := uint64(h.entryCount) * uint64(h.entrySize)
	ss := uint64(sectorSize)
	if p, ok := r.(Prefetcher); ok && h.altLBA > 0 && h.altLBA != lba && h.altLBA < devSectors {
		// The other copy, laid out as Write lays it out (a backup's entries just before its
		// header), starts coming in while this one is read and checked.
		es := (n + ss - 1) / ss
		first := h.altLBA - min(es, h.altLBA-1)
		p.Prefetch(int64(first*ss), int64((h.altLBA-first+1)*ss))
	}
	end := h.entriesLBA + (n+ss-1)/ss
	if h.entriesLBA == 0 || end > devSectors {
		c.err = fmt.Errorf("entry array at LBA %d outside the device", h.entriesLBA)
		return c
	}
	if h.entriesLBA <= lba && lba < end {
		c.err = fmt.Errorf("entry array at LBA %d overlaps its header", h.entriesLBA)
		return c
	}
	// Header and entries lie outside the usable area, or a partition could overlap them
	// (and Write, which checks the same, would refuse the table after Apply had formatted).
	if h.firstUsable <= max(lba, end-1) && min(lba, h.entriesLBA) <= h.lastUsab {
		c.err = fmt.Errorf("usable area LBA %d-%d overlaps the header at LBA %d or its entry array at LBA %d-%d",
			h.firstUsable, h.lastUsab, lba, h.entriesLBA, end-1)
		return c
	}
	if uint64(cap(buf)) >= n {
		c.entries = buf[:n]
	} else {
		c.entries = getEntryBuf(int(n))
	}
	if _, err := r.ReadAt(c.entries, int64(h.entriesLBA)*int64(sectorSize)); err != nil {
		c.err = fmt.Errorf("read entries at LBA %d: %w", h.entriesLBA, err)
		return c
	}
	if got := crc32.ChecksumIEEE(c.entries); got != h.entriesCRC {
		c.err = fmt.Errorf("entry array CRC %08x, expected %08x", h.entriesCRC, got)
	}
	return c
}

// Read reads the GPT of a device or image of size bytes. sectorSize is the logical sector
// size (512 or 4096); 0 probes both. A damaged copy is reported in Table.Status.Problems
// and the table comes from the valid one: the primary if it is valid; otherwise the backup
// whose entry CRC matches the entry array at the primary's place (the new table, when a
// Write was cut between the primary's entries and its header), else the backup the primary
// header names, else the one at the last LBA. With Write's order this gives the old table
// until the first write to the primary and the new one from then on. A disk whose MBR holds
// a DOS partition table or a file system's boot sector is not a GPT disk, and neither is one
// with only a backup left, without protective MBR and primary: that is what reformatting a
// whole disk leaves behind. Errors wrap ErrNoGPT when no GPT is there at all.
func Read(r io.ReaderAt, size int64, sectorSize int) (*Table, error) {
	sizes := []int{sectorSize}
	if sectorSize == 0 {
		sizes = []int{512, 4096}
	} else if sectorSize != 512 && sectorSize != 4096 {
		return nil, fmt.Errorf("gpt: sector size %d (want 512 or 4096)", sectorSize)
	}
	var errs []string
	for _, ss := range sizes {
		t, err := readSS(r, size, ss)
		if err == nil {
			return t, nil
		}
		if !errors.Is(err, ErrNoGPT) {
			return nil, fmt.Errorf("gpt (%d-byte sectors): %w", ss, err)
		}
		errs = append(errs, fmt.Sprintf("%d-byte sectors: %v", ss, err))
		if len(sizes) == 2 && ss == 512 && !bytes.Contains([]byte(err.Error()), []byte("LBA")) {
			// Nothing about sector 0 depends on the sector size: say it once.
			errs[0] = err.Error()
			break
		}
	}
	return nil, fmt.Errorf("gpt: %w", &noGPTError{joinProblems(errs)})
}

type noGPTError struct{ detail string }

func (e *noGPTError) Error() string { return e.detail }
func (e *noGPTError) Unwrap() error { return ErrNoGPT }

func joinProblems(p []string) string {
	var b bytes.Buffer
	for i, s := range p {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(s)
	}
	return b.String()
}

func readSS(r io.ReaderAt, size int64, ss int) (*Table, error) {
	devSectors := uint64(size / int64(ss))
	if devSectors < 3 {
		return nil, fmt.Errorf("%w: device of %d bytes is too small", ErrNoGPT, size)
	}
	var st Status
	mbr := make([]byte, 512)
	if _, err := r.ReadAt(mbr, 0); err != nil {
		return nil, fmt.Errorf("read protective MBR: %w", err)
	}
	st.MBRValid = isProtective(mbr)
	if fs := bootSectorFS(mbr); !st.MBRValid && fs != "" {
		return nil, fmt.Errorf("%w: sector 0 is the boot sector of a %s file system on the whole disk", ErrNoGPT, fs)
	}
	if !st.MBRValid && hasDOSPartitions(mbr) {
		// A DOS-partitioned disk with a leftover GPT: the kernel and libfdisk treat it as
		// DOS, and so do we, so that nothing writes a GPT over its partitions.
		return nil, fmt.Errorf("%w: the MBR holds a DOS partition table (no 0xEE protective entry)", ErrNoGPT)
	}
	if !st.MBRValid {
		st.Problems = append(st.Problems, "protective MBR missing (no 0x55AA signature or no 0xEE partition)")
	}

	last := devSectors - 1
	primary := readCopy(r, 1, ss, devSectors, nil)
	// A primary header with a bad CRC may still hold the right AlternateLBA: worth a look,
	// since a backup proves itself by its own CRCs and MyLBA.
	altLBA := uint64(0)
	if primary.hdr != nil {
		altLBA = primary.hdr.altLBA
	} else if hint, ok := altHint(r, ss); ok {
		altLBA = hint
	}
	var alt *copyInfo
	if altLBA != 0 && altLBA != last && altLBA != 1 && altLBA < devSectors {
		alt = readCopy(r, altLBA, ss, devSectors, nil)
	}
	atEnd := readCopy(r, last, ss, devSectors, nil)

	if !primary.ok() && !atEnd.ok() && (alt == nil || !alt.ok()) {
		if errors.Is(primary.err, errNoSignature) && errors.Is(atEnd.err, errNoSignature) && alt == nil {
			return nil, fmt.Errorf("%w at LBA 1 or at the last LBA %d", ErrNoGPT, last)
		}
		msg := fmt.Sprintf("primary GPT at LBA 1: %v; backup at last LBA %d: %v", primary.err, last, atEnd.err)
		if alt != nil {
			msg += fmt.Sprintf("; backup at LBA %d: %v", altLBA, alt.err)
		}
		return nil, fmt.Errorf("no valid GPT copy: %s", msg)
	}

	if !primary.ok() && !st.MBRValid {
		// Without a protective MBR and a primary, only a backup is left, and that is what a
		// disk reformatted without a partition table (a FAT "superfloppy" card) keeps at its
		// end: the kernel and libfdisk see no GPT there, and rewriting the primary from the
		// backup would overwrite the file system at the start of the disk.
		return nil, fmt.Errorf("%w: no protective MBR and no primary GPT at LBA 1 (%v); the backup GPT at LBA %d alone is not trusted: "+
			"it is probably a stale leftover of a reformatted disk (if it is this disk's table, restore it with gdisk's recovery menu)",
			ErrNoGPT, primary.err, lbaOf(pickValid(alt, atEnd), last))
	}

	var chosen *copyInfo
	if primary.ok() {
		chosen = primary
		st.PrimaryValid = true
		// The matching backup: where the primary says, else at the end of the device.
		for _, b := range []*copyInfo{alt, atEnd} {
			if b == nil {
				continue
			}
			if b.ok() && sameTable(primary, b) && st.BackupLBA == 0 {
				st.BackupValid = true
				st.BackupLBA = b.hdr.myLBA
			}
		}
		if alt != nil && !alt.ok() {
			st.Problems = append(st.Problems, fmt.Sprintf("backup GPT at LBA %d (the primary's AlternateLBA): %v", primary.hdr.altLBA, alt.err))
		}
		if primary.hdr.altLBA >= devSectors {
			st.Problems = append(st.Problems, fmt.Sprintf("primary GPT's AlternateLBA %d is beyond the device's last LBA %d", primary.hdr.altLBA, last))
		}
		switch {
		case atEnd.ok() && !sameTable(primary, atEnd):
			st.Problems = append(st.Problems, fmt.Sprintf("stale backup GPT at the last LBA %d describes another table", last))
		case !atEnd.ok() && primary.hdr.altLBA == last:
			st.Problems = append(st.Problems, fmt.Sprintf("backup GPT at the last LBA %d: %v", last, atEnd.err))
		case !atEnd.ok():
			st.Problems = append(st.Problems, fmt.Sprintf("backup GPT is not at the end of the device (LBA %d, last LBA %d)", primary.hdr.altLBA, last))
		}
	} else {
		st.FromBackup = true
		st.Problems = append(st.Problems, fmt.Sprintf("primary GPT at LBA 1: %v", primary.err))
		chosen = pickBackup(r, ss, primary, alt, atEnd)
		st.BackupValid = true
		st.BackupLBA = chosen.hdr.myLBA
		for _, b := range []*copyInfo{alt, atEnd} {
			if b != nil && b != chosen {
				if b.ok() {
					st.Problems = append(st.Problems, fmt.Sprintf("ignored an older backup GPT at LBA %d", b.hdr.myLBA))
				} else if b == atEnd || b.hdr != nil {
					st.Problems = append(st.Problems, fmt.Sprintf("backup GPT at LBA %d: %v", lbaOf(b, last), b.err))
				}
			}
		}
	}

	h := chosen.hdr
	t := &Table{
		SectorSize:     ss,
		DiskGUID:       h.diskGUID,
		FirstUsableLBA: h.firstUsable,
		LastUsableLBA:  h.lastUsab,
		EntryCount:     h.entryCount,
		EntrySize:      h.entrySize,
		EntriesLBA:     2,
	}
	if chosen == primary {
		t.EntriesLBA = h.entriesLBA
	} else if primary.hdr != nil {
		t.EntriesLBA = primary.hdr.entriesLBA
	}
	parts, err := decodeEntries(chosen.entries, h.entrySize, h.entryCount)
	for _, c := range []*copyInfo{primary, alt, atEnd} {
		if c != nil {
			putEntryBuf(c.entries)
			c.entries = nil
		}
	}
	if err != nil {
		return nil, err
	}
	t.Partitions = parts
	if err := t.check(h.lastUsab + 1); err != nil {
		return nil, fmt.Errorf("GPT at LBA %d: %w", h.myLBA, err)
	}
	t.Status = st
	return t, nil
}

// pickValid returns the first valid copy among cs.
func pickValid(cs ...*copyInfo) *copyInfo {
	for _, c := range cs {
		if c != nil && c.ok() {
			return c
		}
	}
	return nil
}

func lbaOf(c *copyInfo, def uint64) uint64 {
	if c == nil {
		return def
	}
	if c.hdr != nil {
		return c.hdr.myLBA
	}
	return def
}

// pickBackup chooses among valid backups when the primary is bad. A write cut between the
// primary's entries and its header leaves the new entries at the primary location: the
// backup whose entry CRC matches them is the new table. Otherwise the one the primary
// header (if readable) points to, then the one at the end of the device.
func pickBackup(r io.ReaderAt, ss int, primary, alt, atEnd *copyInfo) *copyInfo {
	var cands []*copyInfo
	for _, b := range []*copyInfo{atEnd, alt} {
		if b != nil && b.ok() {
			cands = append(cands, b)
		}
	}
	if len(cands) == 1 {
		return cands[0]
	}
	entriesLBA := uint64(2)
	if primary.hdr != nil {
		entriesLBA = primary.hdr.entriesLBA
	}
	for _, b := range cands {
		buf := getEntryBuf(int(uint64(b.hdr.entryCount) * uint64(b.hdr.entrySize)))
		_, err := r.ReadAt(buf, int64(entriesLBA)*int64(ss))
		match := err == nil && crc32.ChecksumIEEE(buf) == b.hdr.entriesCRC
		putEntryBuf(buf)
		if match {
			return b
		}
	}
	if alt != nil && alt.ok() {
		return alt
	}
	return atEnd
}

// altHint returns the AlternateLBA field of a primary header that has the GPT signature
// but failed its checks.
func altHint(r io.ReaderAt, ss int) (uint64, bool) {
	sec := make([]byte, ss)
	if _, err := r.ReadAt(sec, int64(ss)); err != nil || string(sec[:8]) != signature {
		return 0, false
	}
	return binary.LittleEndian.Uint64(sec[32:]), true
}

// sameTable reports whether two valid copies describe the same table.
func sameTable(a, b *copyInfo) bool {
	return a.hdr.diskGUID == b.hdr.diskGUID && a.hdr.firstUsable == b.hdr.firstUsable &&
		a.hdr.lastUsab == b.hdr.lastUsab && a.hdr.entryCount == b.hdr.entryCount &&
		a.hdr.entrySize == b.hdr.entrySize && bytes.Equal(a.entries, b.entries)
}

func isProtective(mbr []byte) bool {
	if mbr[510] != 0x55 || mbr[511] != 0xAA {
		return false
	}
	for i := 0; i < 4; i++ {
		if mbr[446+16*i+4] == 0xEE {
			return true
		}
	}
	return false
}

// bootSectorFS names the file system whose boot sector mbr is (FAT, exFAT, NTFS), or "".
// Their boot code can look like DOS partition entries.
func bootSectorFS(mbr []byte) string {
	switch {
	case mbr[510] != 0x55 || mbr[511] != 0xAA:
		return ""
	case string(mbr[3:11]) == "EXFAT   ":
		return "exFAT"
	case string(mbr[3:11]) == "NTFS    ":
		return "NTFS"
	case (mbr[0] == 0xEB || mbr[0] == 0xE9) && (string(mbr[54:59]) == "FAT12" || string(mbr[54:59]) == "FAT16" ||
		string(mbr[54:57]) == "FAT" || string(mbr[82:87]) == "FAT32"):
		return "FAT"
	}
	return ""
}

func hasDOSPartitions(mbr []byte) bool {
	if mbr[510] != 0x55 || mbr[511] != 0xAA {
		return false
	}
	for i := 0; i < 4; i++ {
		if t := mbr[446+16*i+4]; t != 0 && t != 0xEE {
			return true
		}
	}
	return false
}

func decodeEntries(b []byte, size, count uint32) ([]Partition, error) {
	var parts []Partition
	le := binary.LittleEndian
	for i := uint32(0); i < count; i++ {
		e := b[i*size : (i+1)*size]
		typ := DecodeGUID(e[0:16])
		if typ == uuid.Nil {
			continue
		}
		p := Partition{
			Index:      int(i) + 1,
			Type:       typ,
			UUID:       DecodeGUID(e[16:32]),
			FirstLBA:   le.Uint64(e[32:]),
			LastLBA:    le.Uint64(e[40:]),
			Attributes: le.Uint64(e[48:]),
			Name:       decodeName(e[56 : 56+nameBytes]),
			raw:        append([]byte(nil), e...),
		}
		parts = append(parts, p)
	}
	return parts, nil
}

func decodeName(b []byte) string {
	u := make([]uint16, 0, nameBytes/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

func encodeName(dst []byte, s string) error {
	u := utf16.Encode([]rune(s))
	if len(u) > nameBytes/2 {
		return fmt.Errorf("partition name %q is longer than 36 UTF-16 code units", s)
	}
	for i := range dst[:nameBytes] {
		dst[i] = 0
	}
	for i, c := range u {
		binary.LittleEndian.PutUint16(dst[2*i:], c)
	}
	return nil
}

// check validates the partitions against the usable area and each other; limit is the
// first LBA past the usable area.
func (t *Table) check(limit uint64) error {
	seen := map[int]bool{}
	for i, p := range t.Partitions {
		switch {
		case p.Index < 1 || p.Index > int(t.EntryCount):
			return fmt.Errorf("partition index %d outside 1..%d", p.Index, t.EntryCount)
		case seen[p.Index]:
			return fmt.Errorf("partition index %d used twice", p.Index)
		case p.Type == uuid.Nil:
			return fmt.Errorf("partition %d has the empty type GUID", p.Index)
		case p.FirstLBA > p.LastLBA:
			return fmt.Errorf("partition %d starts at LBA %d after its end %d", p.Index, p.FirstLBA, p.LastLBA)
		case p.FirstLBA < t.FirstUsableLBA || p.LastLBA >= limit:
			return fmt.Errorf("partition %d (LBA %d-%d) outside the usable area %d-%d", p.Index, p.FirstLBA, p.LastLBA, t.FirstUsableLBA, limit-1)
		}
		seen[p.Index] = true
		for _, q := range t.Partitions[:i] {
			if p.FirstLBA <= q.LastLBA && q.FirstLBA <= p.LastLBA {
				return fmt.Errorf("partitions %d and %d overlap", q.Index, p.Index)
			}
		}
	}
	return nil
}

// Sector0 says what other than a GPT's protective MBR sector 0 of r holds: "a DOS partition
// table", "the boot sector of a FAT file system" (exFAT, NTFS), or "" when it is empty or
// protective. Whoever creates a new table on a disk without GPT asks first.
func Sector0(r io.ReaderAt) (string, error) {
	mbr := make([]byte, 512)
	if _, err := r.ReadAt(mbr, 0); err != nil {
		return "", fmt.Errorf("gpt: read sector 0: %w", err)
	}
	switch {
	case isProtective(mbr):
		return "", nil
	case bootSectorFS(mbr) != "":
		return "the boot sector of a " + bootSectorFS(mbr) + " file system", nil
	case hasDOSPartitions(mbr):
		return "a DOS partition table", nil
	}
	return "", nil
}
