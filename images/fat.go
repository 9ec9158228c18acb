package images

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
)

// fatReader reads files from a FAT12/16/32 filesystem (read-only, enough for inspect to
// find the UKIs and loader.conf on an ESP without mounting it).
type fatReader struct {
	r           io.ReaderAt
	bps         int64 // bytes per sector
	cluster     int64 // bytes per cluster
	fatOff      int64
	rootOff     int64 // FAT12/16 fixed root directory
	rootSize    int64
	rootCluster uint32 // FAT32
	dataOff     int64
	clusters    uint32
	bits        int
	fat         []byte // the first FAT, read once
}

// fatEntry is one directory entry.
type fatEntry struct {
	Name    string
	Dir     bool
	Size    int64
	cluster uint32
}

func openFAT(r io.ReaderAt, size int64) (*fatReader, error) {
	b := make([]byte, 512)
	if _, err := r.ReadAt(b, 0); err != nil {
		return nil, err
	}
	if b[510] != 0x55 || b[511] != 0xaa {
		return nil, errors.New("no FAT boot sector signature")
	}
	bps := int64(binary.LittleEndian.Uint16(b[11:]))
	spc := int64(b[13])
	reserved := int64(binary.LittleEndian.Uint16(b[14:]))
	nfats := int64(b[16])
	rootEntries := int64(binary.LittleEndian.Uint16(b[17:]))
	total := int64(binary.LittleEndian.Uint16(b[19:]))
	if total == 0 {
		total = int64(binary.LittleEndian.Uint32(b[32:]))
	}
	fatSz := int64(binary.LittleEndian.Uint16(b[22:]))
	if fatSz == 0 {
		fatSz = int64(binary.LittleEndian.Uint32(b[36:]))
	}
	if bps < 512 || bps&(bps-1) != 0 || spc == 0 || spc&(spc-1) != 0 || nfats == 0 || fatSz == 0 {
		return nil, errors.New("not a FAT filesystem (bad BPB)")
	}
	f := &fatReader{r: r, bps: bps, cluster: bps * spc, fatOff: reserved * bps}
	rootSectors := (rootEntries*32 + bps - 1) / bps
	f.rootOff = (reserved + nfats*fatSz) * bps
	f.rootSize = rootSectors * bps
	f.dataOff = f.rootOff + f.rootSize
	dataSectors := total - (reserved + nfats*fatSz + rootSectors)
	if dataSectors <= 0 || total*bps > size {
		return nil, fmt.Errorf("FAT filesystem of %d bytes does not fit the %d-byte partition", total*bps, size)
	}
	f.clusters = uint32(dataSectors / spc)
	switch {
	case f.clusters < 4085:
		f.bits = 12
	case f.clusters < 65525:
		f.bits = 16
	default:
		f.bits = 32
		f.rootCluster = binary.LittleEndian.Uint32(b[44:])
	}
	f.fat = make([]byte, min(fatSz*bps, (int64(f.clusters)+2)*int64(f.bits)/8+2))
	if _, err := r.ReadAt(f.fat, f.fatOff); err != nil {
		return nil, fmt.Errorf("reading the FAT: %w", err)
	}
	return f, nil
}

func (f *fatReader) next(c uint32) (uint32, error) {
	off := int64(c) * int64(f.bits) / 8
	if off+int64(f.bits/8) > int64(len(f.fat)) {
		return 0, fmt.Errorf("cluster %d beyond the FAT", c)
	}
	switch f.bits {
	case 12:
		v := uint32(binary.LittleEndian.Uint16(f.fat[off:]))
		if c&1 == 1 {
			v >>= 4
		}
		if v &= 0xfff; v >= 0xff8 {
			return 0, io.EOF
		}
		return v, nil
	case 16:
		if v := uint32(binary.LittleEndian.Uint16(f.fat[off:])); v < 0xfff8 {
			return v, nil
		}
		return 0, io.EOF
	}
	if v := binary.LittleEndian.Uint32(f.fat[off:]) & 0x0fffffff; v < 0x0ffffff8 {
		return v, nil
	}
	return 0, io.EOF
}

// chain reads the clusters from c on, at most limit bytes (negative: the whole chain).
// Contiguous runs of clusters are read with one ReadAt each: files on a freshly built ESP
// are contiguous, and a UKI is tens of thousands of 512-byte clusters.
func (f *fatReader) chain(c uint32, limit int64) ([]byte, error) {
	var out []byte
	flush := func(first uint32, n int64) error {
		want := n * f.cluster
		if limit >= 0 {
			want = min(want, limit-int64(len(out)))
		}
		buf := make([]byte, want)
		if _, err := f.r.ReadAt(buf, f.dataOff+int64(first-2)*f.cluster); err != nil {
			return err
		}
		out = append(out, buf...)
		return nil
	}
	first, run := c, int64(0)
	for n := 0; c >= 2; n++ {
		if c-2 >= f.clusters || n > int(f.clusters) {
			return nil, fmt.Errorf("bad cluster chain (cluster %d)", c)
		}
		run++
		if limit >= 0 && int64(len(out))+run*f.cluster >= limit {
			break
		}
		nc, err := f.next(c)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if nc != c+1 {
			if err := flush(first, run); err != nil {
				return nil, err
			}
			first, run = nc, 0
		}
		c = nc
	}
	if run > 0 {
		if err := flush(first, run); err != nil {
			return nil, err
		}
	}
	if limit >= 0 && int64(len(out)) < limit {
		return nil, errors.New("file shorter than its size")
	}
	return out, nil
}

func (f *fatReader) readDir(e *fatEntry) ([]fatEntry, error) {
	var raw []byte
	var err error
	if e == nil && f.bits != 32 {
		raw = make([]byte, f.rootSize)
		_, err = f.r.ReadAt(raw, f.rootOff)
	} else {
		c := f.rootCluster
		if e != nil {
			c = e.cluster
		}
		raw, err = f.chain(c, -1)
	}
	if err != nil {
		return nil, err
	}
	var ents []fatEntry
	var lfn []uint16
	for i := 0; i+32 <= len(raw); i += 32 {
		d := raw[i : i+32]
		if d[0] == 0 {
			break
		}
		if d[0] == 0xe5 {
			lfn = nil
			continue
		}
		if d[11] == 0x0f {
			var part []uint16
			for _, o := range []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
				part = append(part, binary.LittleEndian.Uint16(d[o:]))
			}
			if d[0]&0x40 != 0 {
				lfn = nil
			}
			lfn = append(part, lfn...)
			continue
		}
		if d[11]&0x08 != 0 { // volume label
			lfn = nil
			continue
		}
		name := ""
		if lfn != nil {
			for k, u := range lfn {
				if u == 0 {
					lfn = lfn[:k]
					break
				}
			}
			name = string(utf16.Decode(lfn))
		} else {
			base, ext := strings.TrimRight(string(d[0:8]), " "), strings.TrimRight(string(d[8:11]), " ")
			if d[12]&0x08 != 0 {
				base = strings.ToLower(base)
			}
			if d[12]&0x10 != 0 {
				ext = strings.ToLower(ext)
			}
			name = base
			if ext != "" {
				name += "." + ext
			}
		}
		lfn = nil
		if name == "." || name == ".." {
			continue
		}
		ents = append(ents, fatEntry{
			Name: name, Dir: d[11]&0x10 != 0, Size: int64(binary.LittleEndian.Uint32(d[28:])),
			cluster: uint32(binary.LittleEndian.Uint16(d[20:]))<<16 | uint32(binary.LittleEndian.Uint16(d[26:])),
		})
	}
	return ents, nil
}

// lookup finds a path (slash-separated, case-insensitive as FAT is).
func (f *fatReader) lookup(p string) (*fatEntry, error) {
	var cur *fatEntry
	for _, part := range strings.Split(strings.Trim(p, "/"), "/") {
		if part == "" {
			continue
		}
		if cur != nil && !cur.Dir {
			return nil, fmt.Errorf("%s: not a directory", p)
		}
		ents, err := f.readDir(cur)
		if err != nil {
			return nil, err
		}
		var found *fatEntry
		for i := range ents {
			if strings.EqualFold(ents[i].Name, part) {
				found = &ents[i]
				break
			}
		}
		if found == nil {
			return nil, fmt.Errorf("%s: not found", p)
		}
		cur = found
	}
	return cur, nil
}

// List returns the entries of the directory at p.
func (f *fatReader) List(p string) ([]fatEntry, error) {
	e, err := f.lookup(p)
	if err != nil {
		return nil, err
	}
	return f.readDir(e)
}

// ReadFile returns the content of the file at p.
func (f *fatReader) ReadFile(p string) ([]byte, error) {
	e, err := f.lookup(p)
	if err != nil {
		return nil, err
	}
	if e == nil || e.Dir {
		return nil, fmt.Errorf("%s: is a directory", p)
	}
	if e.Size == 0 {
		return nil, nil
	}
	return f.chain(e.cluster, e.Size)
}
