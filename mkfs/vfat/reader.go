package vfat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
)

// ErrCorrupt is wrapped by every error that reports an inconsistent filesystem (as opposed
// to an unreadable device or a missing file).
var ErrCorrupt = errors.New("corrupt FAT filesystem")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

const (
	maxDirBytes    = maxDirSlots * direntSize // no reader accepts a larger directory
	fatChunk       = 64 << 10                 // the FAT is read in pieces of this size, on demand
	fatCacheChunks = 256                      // at most 16 MiB of FAT kept
	dirCacheMax    = 256                      // parsed directories kept for repeated lookups
	// maxReadDepth bounds path depth: a hostile chain of millions of nested directories
	// would otherwise grow a walker's stack and paths without limit.
	maxReadDepth = 2048
)

// FS is a FAT12, FAT16 or FAT32 filesystem opened for reading with Open. It implements
// fs.FS, fs.ReadDirFS and fs.StatFS; names are looked up case-insensitively, as FAT does
// (an exact match wins). Files implement io.ReaderAt and io.Seeker. It is safe for
// concurrent use.
//
// Every operation does bounded work on a hostile image: cluster chains are checked for
// loops and out-of-range clusters, directories are limited to FAT's 65536 entries, and a
// directory reached under two paths (a cycle, or directories sharing clusters) is an error
// wrapping ErrCorrupt that names the paths, clusters and byte offsets involved.
type FS struct {
	r        io.ReaderAt
	fatType  int
	cb       int64 // bytes per cluster
	fatOff   int64 // the FAT that is read (the active one when mirroring is off)
	fatBytes int64
	rootOff  int64 // FAT12/16's fixed root directory
	rootSize int64
	rootClus uint32 // FAT32's root directory
	dataOff  int64
	clusters uint32 // data clusters, numbered 2..clusters+1
	bpbLabel string

	mu    sync.Mutex
	fat   map[int64][]byte    // FAT chunks read so far, by offset within the FAT
	owner map[uint32]string   // a directory's first cluster → the path that first reached it
	dirs  map[uint32][]dirent // parsed directories by first cluster (0: the root)

	volLabel *string // the root directory's label entry, once the root has been read
}

// dirent is one decoded directory entry.
type dirent struct {
	name  string
	short [11]byte // as stored
	attr  byte
	first uint32
	size  uint32
	mtime time.Time
	off   int64 // device offset of the short entry, for errors
}

func (e *dirent) isDir() bool { return e.attr&attrDirectory != 0 }

// Open reads the boot sector of the FAT filesystem in the first size bytes of r and checks
// its geometry. The rest is read on demand.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	f, err := open(r, size)
	if err != nil {
		return nil, fmt.Errorf("vfat: %w", err)
	}
	return f, nil
}

func open(r io.ReaderAt, size int64) (*FS, error) {
	b := make([]byte, 512)
	if size < 512 {
		return nil, fmt.Errorf("%d bytes is too small for a FAT filesystem", size)
	}
	if _, err := r.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("reading the boot sector: %w", err)
	}
	if b[510] != 0x55 || b[511] != 0xAA {
		return nil, fmt.Errorf("no FAT boot sector: signature at offset 510 is %02x %02x, want 55 aa", b[510], b[511])
	}
	le16 := func(o int) int64 { return int64(binary.LittleEndian.Uint16(b[o:])) }
	le32 := func(o int) int64 { return int64(binary.LittleEndian.Uint32(b[o:])) }
	bps := le16(11)
	switch bps {
	case 512, 1024, 2048, 4096:
	default:
		return nil, corrupt("bytes per sector (offset 11) is %d, want 512, 1024, 2048 or 4096", bps)
	}
	spc := int64(b[13])
	if spc == 0 || spc&(spc-1) != 0 {
		return nil, corrupt("sectors per cluster (offset 13) is %d, want a power of two up to 128", spc)
	}
	reserved, nfats, rootEnts := le16(14), int64(b[16]), le16(17)
	if reserved == 0 {
		return nil, corrupt("no reserved sectors (offset 14): the boot sector must be one")
	}
	if nfats == 0 {
		return nil, corrupt("number of FATs (offset 16) is 0")
	}
	total := le16(19)
	if total == 0 {
		total = le32(32)
	}
	if total == 0 {
		return nil, corrupt("total sector count (offsets 19 and 32) is 0")
	}
	if total*bps > size {
		return nil, fmt.Errorf("the filesystem (%d sectors of %d bytes = %d bytes) is larger than the %d-byte device", total, bps, total*bps, size)
	}
	f := &FS{r: r, cb: bps * spc, fat: map[int64][]byte{}, owner: map[uint32]string{}, dirs: map[uint32][]dirent{}}
	fatLen := le16(22)
	active := int64(0)
	labelAt := 43
	if fatLen == 0 { // FAT32 by the BPB, as Linux and fsck.fat decide
		f.fatType, labelAt = 32, 71
		fatLen = le32(36)
		if fatLen == 0 {
			return nil, corrupt("FAT length (offsets 22 and 36) is 0")
		}
		if rootEnts != 0 {
			return nil, corrupt("FAT32 boot sector with %d fixed root entries (offset 17), want 0", rootEnts)
		}
		if flags := le16(40); flags&0x80 != 0 { // mirroring off: one active FAT
			if active = flags & 0x0F; active >= nfats {
				return nil, corrupt("active FAT %d (offset 40) of %d", active, nfats)
			}
		}
		f.rootClus = uint32(le32(44))
	} else if rootEnts == 0 {
		return nil, corrupt("FAT12/16 boot sector without root directory entries (offset 17)")
	}
	rootSecs := (rootEnts*32 + bps - 1) / bps
	meta := reserved + nfats*fatLen + rootSecs
	if meta >= total {
		return nil, corrupt("reserved sectors, FATs and root directory (%d sectors) fill the whole %d-sector filesystem", meta, total)
	}
	clusters := (total - meta) / spc
	if f.fatType == 0 {
		f.fatType = 16
		if clusters < minClusters16 {
			f.fatType = 12
		}
		if clusters > 0xFFF4 {
			return nil, corrupt("FAT16 with %d clusters, at most %d are possible", clusters, 0xFFF4)
		}
	} else if clusters > 0x0FFFFFF5 {
		return nil, corrupt("FAT32 with %d clusters, at most %d are possible", clusters, 0x0FFFFFF5)
	}
	if clusters == 0 {
		return nil, corrupt("no data clusters")
	}
	f.clusters = uint32(clusters)
	f.fatBytes = fatLen * bps
	if entries := f.fatBytes * 8 / int64(f.fatType); clusters+2 > entries {
		return nil, corrupt("a FAT of %d sectors holds %d entries, the filesystem has %d clusters", fatLen, entries, clusters)
	}
	f.fatOff = (reserved + active*fatLen) * bps
	f.rootOff = (reserved + nfats*fatLen) * bps
	f.rootSize = rootEnts * 32
	f.dataOff = meta * bps
	if f.fatType == 32 && !f.valid(f.rootClus) {
		return nil, corrupt("root directory cluster %d (offset 44) is outside the data area (2..%d)", f.rootClus, f.clusters+1)
	}
	if b[labelAt-5] == 0x29 { // extended boot signature: serial and label present
		f.bpbLabel = strings.TrimRight(decodeOEM(b[labelAt:labelAt+11]), " ")
	}
	f.owner[f.rootClus] = "." // 0 on FAT12/16: no directory may claim cluster 0
	return f, nil
}

// Type returns 12, 16 or 32.
func (f *FS) Type() int { return f.fatType }

// Label returns the volume label: the root directory's label entry, as Windows and blkid read
// it, else the boot sector's. "NO NAME" and an absent label are "".
func (f *FS) Label() string {
	l := f.bpbLabel
	if _, err := f.entries(".", nil); err == nil {
		f.mu.Lock()
		if f.volLabel != nil {
			l = *f.volLabel
		}
		f.mu.Unlock()
	}
	if l == "NO NAME" {
		return ""
	}
	return l
}

func (f *FS) valid(c uint32) bool { return c >= 2 && c <= f.clusters+1 }

// fatCursor reads FAT entries, keeping the chunk it read last: following a chain costs no
// lock or map lookup per cluster.
type fatCursor struct {
	f     *FS
	base  int64
	chunk []byte
}

// next returns the FAT entry of cluster c (which must be valid) and its device offset.
func (fc *fatCursor) next(c uint32) (uint32, int64, error) {
	f := fc.f
	var off int64
	n := f.fatType / 8
	if f.fatType == 12 {
		off, n = int64(c)*3/2, 2
	} else {
		off = int64(c) * int64(n)
	}
	var raw [4]byte
	for i := 0; i < n; i++ {
		o := off + int64(i)
		if o >= f.fatBytes {
			break // the unused high nibble of FAT12's last entry
		}
		if fc.chunk == nil || o < fc.base || o >= fc.base+int64(len(fc.chunk)) {
			chunk, err := f.fatChunk(o / fatChunk * fatChunk)
			if err != nil {
				return 0, 0, err
			}
			fc.base, fc.chunk = o/fatChunk*fatChunk, chunk
		}
		raw[i] = fc.chunk[o-fc.base]
	}
	v := binary.LittleEndian.Uint32(raw[:])
	switch f.fatType {
	case 12:
		if c&1 == 1 {
			v >>= 4
		}
		v &= 0xFFF
	case 32:
		v &= 0x0FFFFFFF
	}
	return v, f.fatOff + off, nil
}

// fatChunk returns the piece of the FAT at base (a multiple of fatChunk), reading it once.
func (f *FS) fatChunk(base int64) ([]byte, error) {
	f.mu.Lock()
	chunk, ok := f.fat[base]
	f.mu.Unlock()
	if ok {
		return chunk, nil
	}
	chunk = make([]byte, min(fatChunk, f.fatBytes-base))
	if _, err := f.r.ReadAt(chunk, f.fatOff+base); err != nil {
		return nil, fmt.Errorf("reading the FAT at offset %d: %w", f.fatOff+base, err)
	}
	f.mu.Lock()
	if len(f.fat) >= fatCacheChunks {
		clear(f.fat) // a huge FAT is not kept whole in memory
	}
	f.fat[base] = chunk
	f.mu.Unlock()
	return chunk, nil
}

// eoc reports whether v ends a chain; bad is the bad-cluster mark.
func (f *FS) eoc(v uint32) (end, bad bool) {
	switch f.fatType {
	case 12:
		return v >= 0xFF8, v == 0xFF7
	case 16:
		return v >= 0xFFF8, v == 0xFFF7
	}
	return v >= 0x0FFFFFF8, v == 0x0FFFFFF7
}

// extent is a run of consecutive clusters.
type extent struct {
	first, n uint32
}

// chain follows the cluster chain from first for at most limit clusters (the end of chain
// may come earlier). It fails on a free, reserved, bad or out-of-range entry and on a chain
// that comes back to a cluster it already passed.
func (f *FS) chain(what string, first uint32, limit int64) ([]extent, int64, error) {
	if what != "" {
		what += ": " // files leave it to the fs.PathError around the error
	}
	if !f.valid(first) {
		return nil, 0, corrupt("%sfirst cluster %d is outside the data area (2..%d)", what, first, f.clusters+1)
	}
	var ext []extent
	var seen []uint64 // allocated at the first backward step: only then can a chain loop
	mark := func(c uint32) bool {
		w, bit := c/64, uint64(1)<<(c%64)
		was := seen[w]&bit != 0
		seen[w] |= bit
		return was
	}
	c := first
	var count int64
	fc := fatCursor{f: f}
	for {
		if len(ext) > 0 && ext[len(ext)-1].first+ext[len(ext)-1].n == c {
			ext[len(ext)-1].n++
		} else {
			ext = append(ext, extent{c, 1})
		}
		count++
		if count >= limit {
			return ext, count, nil
		}
		v, at, err := fc.next(c)
		if err != nil {
			return nil, 0, err
		}
		end, bad := f.eoc(v)
		switch {
		case end:
			return ext, count, nil
		case bad:
			return nil, 0, corrupt("%scluster %d is chained to a cluster marked bad (FAT entry at offset %d)", what, c, at)
		case v < 2:
			return nil, 0, corrupt("%scluster %d is chained to %d, a free or reserved entry (FAT entry at offset %d), after %d clusters", what, c, v, at, count)
		case v > f.clusters+1:
			return nil, 0, corrupt("%scluster %d is chained to %d, beyond the last cluster %d (FAT entry at offset %d)", what, c, v, f.clusters+1, at)
		}
		if v <= c && seen == nil {
			seen = make([]uint64, (int64(f.clusters)+2+63)/64)
			for _, e := range ext {
				for k := e.first; k < e.first+e.n; k++ {
					mark(k)
				}
			}
		}
		if seen != nil && mark(v) {
			return nil, 0, corrupt("%scluster chain loops: cluster %d leads back to cluster %d (FAT entry at offset %d) after %d clusters", what, c, v, at, count)
		}
		c = v
	}
}

func (f *FS) clusterOff(c uint32) int64 { return f.dataOff + int64(c-2)*f.cb }

// readDir returns the entries of the directory at path p (first cluster first, or the
// root), without "." and "..".
func (f *FS) readDir(p string, first uint32, root bool) ([]dirent, error) {
	key := first
	if root {
		key = 0
	}
	f.mu.Lock()
	cached, ok := f.dirs[key]
	f.mu.Unlock()
	if ok {
		return cached, nil
	}
	var raw []byte
	var offs []extent // device offsets of raw, in units of clusters (or one run for the root)
	if root && f.fatType != 32 {
		raw = make([]byte, f.rootSize)
		if _, err := f.r.ReadAt(raw, f.rootOff); err != nil {
			return nil, fmt.Errorf("reading the root directory at offset %d: %w", f.rootOff, err)
		}
	} else {
		if root {
			first = f.rootClus
		}
		limit := (maxDirBytes+f.cb-1)/f.cb + 1
		ext, n, err := f.chain("directory "+displayPath(p), first, limit)
		if err != nil {
			return nil, err
		}
		if n == limit {
			return nil, corrupt("directory %s (cluster %d): more than %d bytes of clusters, FAT allows %d entries", displayPath(p), first, maxDirBytes, maxDirSlots)
		}
		raw = make([]byte, n*f.cb)
		pos := int64(0)
		for _, e := range ext {
			k := int64(e.n) * f.cb
			if _, err := f.r.ReadAt(raw[pos:pos+k], f.clusterOff(e.first)); err != nil {
				return nil, fmt.Errorf("reading directory %s at offset %d: %w", displayPath(p), f.clusterOff(e.first), err)
			}
			pos += k
		}
		offs = ext
	}
	devOff := func(i int) int64 {
		if offs == nil {
			return f.rootOff + int64(i)
		}
		for _, e := range offs {
			k := int64(e.n) * f.cb
			if int64(i) < k {
				return f.clusterOff(e.first) + int64(i)
			}
			i -= int(k)
		}
		return -1
	}
	ents, label, err := f.parseDir(p, raw, devOff)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	if len(f.dirs) >= dirCacheMax {
		clear(f.dirs)
	}
	f.dirs[key] = ents
	if root {
		f.volLabel = label
	}
	f.mu.Unlock()
	return ents, nil
}

func displayPath(p string) string {
	if p == "." {
		return "/"
	}
	return p
}

// parseDir decodes raw directory entries. Long names whose sequence or checksum does not
// match are ignored in favor of the short name, as Linux and Windows do.
func (f *FS) parseDir(p string, raw []byte, devOff func(int) int64) ([]dirent, *string, error) {
	var ents []dirent
	var label *string
	var lfn [20 * 13]uint16
	lfnParts, lfnNext, lfnSum := 0, 0, byte(0) // lfnNext: the sequence number expected next, 0 when complete
	for i := 0; i+direntSize <= len(raw); i += direntSize {
		d := raw[i : i+direntSize]
		if d[0] == 0 {
			break
		}
		if d[0] == 0xE5 {
			lfnParts = 0
			continue
		}
		if d[11] == attrLongName {
			ord := int(d[0] & 0x1F)
			switch {
			case d[0]&0x40 != 0 && ord >= 1 && ord <= 20:
				lfnParts, lfnNext, lfnSum = ord, ord, d[13]
				clear(lfn[:])
			case lfnParts > 0 && ord >= 1 && ord == lfnNext && d[13] == lfnSum && d[0]&0x40 == 0:
			default:
				lfnParts = 0
				continue
			}
			for k := 0; k < 13; k++ {
				o := lfnSlot(k)
				lfn[(ord-1)*13+k] = binary.LittleEndian.Uint16(d[o:])
			}
			lfnNext--
			continue
		}
		var short [11]byte
		copy(short[:], d[:11])
		hasLFN := lfnParts > 0 && lfnNext == 0 && lfnSum == lfnChecksum(short)
		parts := lfnParts
		lfnParts = 0
		if d[11]&attrVolumeID != 0 {
			if p == "." && label == nil {
				l := strings.TrimRight(decodeOEM(short[:]), " ")
				label = &l
			}
			continue
		}
		if short[0] == 0x05 {
			short[0] = 0xE5 // a name really starting with 0xE5 (KANJI lead byte)
		}
		if short == pack83(".", "") || short == pack83("..", "") {
			continue
		}
		name := ""
		if hasLFN {
			u := lfn[:parts*13]
			if end := slices.Index(u, 0); end >= 0 {
				u = u[:end]
			}
			name = string(utf16.Decode(u))
		}
		if name == "" {
			base := strings.TrimRight(decodeOEM(short[:8]), " ")
			ext := strings.TrimRight(decodeOEM(short[8:]), " ")
			if d[12]&caseLowerBase != 0 {
				base = asciiLower(base)
			}
			if d[12]&caseLowerExt != 0 {
				ext = asciiLower(ext)
			}
			name = base
			if ext != "" {
				name += "." + ext
			}
		}
		at := devOff(i)
		if name == "" || name == "." || name == ".." || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == '/' }) {
			return nil, nil, corrupt("directory %s: the entry at offset %d has the name %q, which no path can hold", displayPath(p), at, name)
		}
		le := binary.LittleEndian
		first := uint32(le.Uint16(d[26:]))
		if f.fatType == 32 {
			first |= uint32(le.Uint16(d[20:])) << 16
		}
		ents = append(ents, dirent{name: name, short: short, attr: d[11], first: first,
			size: le.Uint32(d[28:]), mtime: fromDOSTime(le.Uint16(d[24:]), le.Uint16(d[22:])), off: at})
	}
	return ents, label, nil
}

func fromDOSTime(date, tm uint16) time.Time {
	if date == 0 {
		return time.Time{}
	}
	return time.Date(1980+int(date>>9), time.Month(date>>5&15), int(date&31),
		int(tm>>11), int(tm>>5&63), int(tm&31)*2, 0, time.UTC)
}

func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// cp437 is the upper half of code page 437, the OEM code page Linux and mtools assume for
// short names by default.
const cp437 = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0"

// cp437Runes is built on first use (reading a short name with a byte >= 0x80), not at init.
var cp437Runes = sync.OnceValue(func() []rune { return []rune(cp437) })

func decodeOEM(b []byte) string {
	var s strings.Builder
	for _, c := range b {
		if c < 0x80 {
			s.WriteByte(c)
		} else {
			s.WriteRune(cp437Runes()[c-0x80])
		}
	}
	return s.String()
}

// lookup resolves name (case-insensitively) to its canonical path and entry; the root's
// entry is nil. Directories reached are claimed for their path, so that no directory is
// reachable under two paths.
func (f *FS) lookup(op, name string) (string, *dirent, error) {
	if !fs.ValidPath(name) {
		return "", nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return ".", nil, nil
	}
	parts := strings.Split(name, "/")
	if len(parts) > maxReadDepth {
		return "", nil, &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("%d directories deep: more than the %d a 4096-byte Linux path can reach", len(parts), maxReadDepth)}
	}
	var cur *dirent
	canon := "."
	for _, part := range parts {
		if cur != nil && !cur.isDir() {
			return "", nil, &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("%s is not a directory", canon)}
		}
		ents, err := f.entries(canon, cur)
		if err != nil {
			return "", nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
		var found *dirent
		for i := range ents {
			if ents[i].name == part {
				found = &ents[i]
				break
			}
		}
		if found == nil {
			for i := range ents {
				if strings.EqualFold(ents[i].name, part) {
					found = &ents[i]
					break
				}
			}
		}
		if found == nil {
			return "", nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		cur = found
		canon = path.Join(canon, found.name)
		if cur.isDir() {
			if err := f.claim(canon, cur); err != nil {
				return "", nil, &fs.PathError{Op: op, Path: name, Err: err}
			}
		}
	}
	return canon, cur, nil
}

// claim records that the directory e is reached as p, and fails if it was reached under
// another path: a directory that contains itself or shares clusters with another.
func (f *FS) claim(p string, e *dirent) error {
	if !f.valid(e.first) {
		return corrupt("directory %s (entry at offset %d): first cluster %d is outside the data area (2..%d)", p, e.off, e.first, f.clusters+1)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch other, ok := f.owner[e.first]; {
	case !ok:
		f.owner[e.first] = p
	case other != p:
		return corrupt("directory %s (entry at offset %d) starts at cluster %d, which is directory %s already", p, e.off, e.first, displayPath(other))
	}
	return nil
}

// entries lists the directory d at path p (d nil: the root).
func (f *FS) entries(p string, d *dirent) ([]dirent, error) {
	if d == nil {
		return f.readDir(".", 0, true)
	}
	return f.readDir(p, d.first, false)
}

// Open implements fs.FS.
func (f *FS) Open(name string) (fs.File, error) {
	p, e, err := f.lookup("open", name)
	if err != nil {
		return nil, err
	}
	if e == nil || e.isDir() {
		ents, err := f.entries(p, e)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return &dirFile{info: f.info(p, e), ents: ents}, nil
	}
	return &File{fs: f, path: p, e: e}, nil
}

// Stat implements fs.StatFS.
func (f *FS) Stat(name string) (fs.FileInfo, error) {
	p, e, err := f.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	return f.info(p, e), nil
}

// ReadDir implements fs.ReadDirFS: the entries sorted by name.
func (f *FS) ReadDir(name string) ([]fs.DirEntry, error) {
	p, e, err := f.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if e != nil && !e.isDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	ents, err := f.entries(p, e)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	out := make([]fs.DirEntry, len(ents))
	for i := range ents {
		out[i] = f.info(path.Join(p, ents[i].name), &ents[i])
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

func (f *FS) info(p string, e *dirent) *fileInfo {
	if e == nil {
		return &fileInfo{name: ".", e: &dirent{attr: attrDirectory, first: f.rootClus}}
	}
	return &fileInfo{name: path.Base(p), e: e}
}

// fileInfo is both the fs.FileInfo and the fs.DirEntry of an entry.
type fileInfo struct {
	name string
	e    *dirent
}

func (i *fileInfo) Name() string { return i.name }
func (i *fileInfo) Size() int64 {
	if i.e.isDir() {
		return 0
	}
	return int64(i.e.size)
}
func (i *fileInfo) Mode() fs.FileMode {
	m := fs.FileMode(0o644)
	if i.e.isDir() {
		m = fs.ModeDir | 0o755
	}
	if i.e.attr&0x01 != 0 { // read-only
		m &^= 0o222
	}
	return m
}
func (i *fileInfo) ModTime() time.Time         { return i.e.mtime }
func (i *fileInfo) IsDir() bool                { return i.e.isDir() }
func (i *fileInfo) Sys() any                   { return nil }
func (i *fileInfo) Type() fs.FileMode          { return i.Mode().Type() }
func (i *fileInfo) Info() (fs.FileInfo, error) { return i, nil }
func (i *fileInfo) String() string             { return fs.FormatFileInfo(i) }

type dirFile struct {
	info *fileInfo
	ents []dirent
	pos  int
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *dirFile) Close() error               { return nil }
func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: errors.New("is a directory")}
}

// ReadDir implements fs.ReadDirFile, in on-disk order.
func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.ents[d.pos:]
	if n > 0 {
		if len(rest) == 0 {
			return nil, io.EOF
		}
		rest = rest[:min(n, len(rest))]
	}
	out := make([]fs.DirEntry, len(rest))
	for i := range rest {
		out[i] = &fileInfo{name: rest[i].name, e: &rest[i]}
	}
	d.pos += len(rest)
	return out, nil
}

// File is a regular file of an FS.
type File struct {
	fs   *FS
	path string
	e    *dirent
	pos  int64

	buf    []byte // Read's read-ahead, from bufOff: small sequential reads cost no syscall each
	bufOff int64

	once sync.Once
	ext  []extent
	idx  []int64 // idx[i]: the file's cluster index where ext[i] starts
	err  error
}

// Stat implements fs.File.
func (f *File) Stat() (fs.FileInfo, error) { return f.fs.info(f.path, f.e), nil }

// Close implements fs.File.
func (f *File) Close() error { return nil }

// Read implements io.Reader.
func (f *File) Read(p []byte) (int, error) {
	const ahead = 64 << 10
	if len(p) >= ahead {
		n, err := f.ReadAt(p, f.pos)
		f.pos += int64(n)
		if err == io.EOF && n > 0 {
			err = nil
		}
		return n, err
	}
	if f.pos < f.bufOff || f.pos >= f.bufOff+int64(len(f.buf)) {
		if f.pos >= int64(f.e.size) {
			if len(p) == 0 {
				return 0, nil
			}
			return 0, io.EOF
		}
		if f.buf == nil {
			f.buf = make([]byte, ahead)
		}
		f.buf = f.buf[:min(ahead, int64(f.e.size)-f.pos)]
		f.bufOff = f.pos
		if n, err := f.ReadAt(f.buf, f.pos); err != nil && err != io.EOF {
			f.buf = f.buf[:0]
			return 0, err
		} else {
			f.buf = f.buf[:n]
		}
	}
	n := copy(p, f.buf[f.pos-f.bufOff:])
	f.pos += int64(n)
	return n, nil
}

// Seek implements io.Seeker.
func (f *File) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += f.pos
	case io.SeekEnd:
		off += int64(f.e.size)
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "seek", Path: f.path, Err: fs.ErrInvalid}
	}
	f.pos = off
	return off, nil
}

// load follows the file's cluster chain once, as far as its size needs.
func (f *File) load() error {
	f.once.Do(func() {
		size := int64(f.e.size)
		need := (size + f.fs.cb - 1) / f.fs.cb
		switch {
		case need == 0:
			return
		case need > int64(f.fs.clusters):
			f.err = corrupt("the entry at offset %d says %d bytes, more than the whole data area", f.e.off, size)
			return
		}
		ext, n, err := f.fs.chain("", f.e.first, need)
		if err != nil {
			f.err = err
			return
		}
		if n < need {
			f.err = corrupt("the cluster chain from cluster %d ends after %d clusters (%d bytes), the entry at offset %d says %d bytes",
				f.e.first, n, n*f.fs.cb, f.e.off, size)
			return
		}
		f.ext = ext
		f.idx = make([]int64, len(ext))
		var k int64
		for i, e := range ext {
			f.idx[i] = k
			k += int64(e.n)
		}
	})
	return f.err
}

// ReadAt implements io.ReaderAt; it is safe for concurrent use.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: f.path, Err: fs.ErrInvalid}
	}
	size := int64(f.e.size)
	if off >= size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	if err := f.load(); err != nil {
		return 0, &fs.PathError{Op: "read", Path: f.path, Err: err}
	}
	want := min(int64(len(p)), size-off)
	done := int64(0)
	for done < want {
		pos := off + done
		ci := pos / f.fs.cb
		i, found := slices.BinarySearch(f.idx, ci)
		if !found {
			i--
		}
		e := f.ext[i]
		inExt := pos - f.idx[i]*f.fs.cb
		k := min(want-done, int64(e.n)*f.fs.cb-inExt)
		dev := f.fs.clusterOff(e.first) + inExt
		if _, err := f.fs.r.ReadAt(p[done:done+k], dev); err != nil {
			return int(done), &fs.PathError{Op: "read", Path: f.path, Err: fmt.Errorf("reading %d bytes at offset %d: %w", k, dev, err)}
		}
		done += k
	}
	if done < int64(len(p)) {
		return int(done), io.EOF
	}
	return int(done), nil
}
