package xfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"unsafe"
)

// device is the partition being formatted: writes, optional reads back, and the bookkeeping
// that lets ensureZero skip what is zero already or written anyway.
type device struct {
	w          io.WriterAt
	r          io.ReaderAt // nil: cannot read back, zero by writing
	size       int64
	gran       int                                    // sector size: the unit of reads and writes
	dataRanges func(off, n int64) ([][2]int64, error) // nil: everything may hold data
	covered    [][2]int64                             // byte ranges written with metadata later
	// zeroOut zeroes a range without sending zeros (BLKZEROOUT, fallocate); nil or failing
	// with errNoOffload: write zeros.
	zeroOut func(off, n int64) error
	stats   Stats
}

// errNoOffload says a device cannot zero by itself; Format then writes zeros.
var errNoOffload = errors.New("zeroing offload not supported")

const chunk = 1 << 20

// offloadMin is the smallest range zeroed by offload: a device zeroes a range synchronously
// (an image file commits its journal for it), slower than writing a few sectors.
const offloadMin = 1 << 20

// dirtyChunksBeforeBlind is how many consecutive chunks without a zero sector make
// ensureZero stop reading and zero the rest of a range.
const dirtyChunksBeforeBlind = 4

// directAlign is the alignment of O_DIRECT reads: offsets, lengths and memory. Sectors of
// 4096 bytes need it; reads at 512-byte offsets fall back to buffered ones.
const directAlign = 4096

// alignedBuffer returns n bytes starting at a directAlign boundary.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+directAlign)
	skip := (directAlign - int(uintptr(unsafe.Pointer(unsafe.SliceData(b)))%directAlign)) % directAlign
	return b[skip : skip+n : skip+n]
}

// zeroChunk is a read-only chunk of zero bytes, allocated on first use so that programs
// that link this package but never format pay nothing.
var zeroChunk = sync.OnceValue(func() []byte { return make([]byte, chunk) })

func (d *device) writeAt(b []byte, off int64) error {
	if off < 0 || off+int64(len(b)) > d.size {
		return fmt.Errorf("internal error: write of %d bytes at %d outside the %d-byte partition", len(b), off, d.size)
	}
	if _, err := d.w.WriteAt(b, off); err != nil {
		return fmt.Errorf("writing %d bytes at offset %d: %w", len(b), off, err)
	}
	d.stats.Written += int64(len(b))
	return nil
}

// zero makes [off, off+n) zero: by offload if the device has it, else by writing.
func (d *device) zero(off, n int64) error {
	if off < 0 || off+n > d.size {
		return fmt.Errorf("internal error: zeroing %d bytes at %d outside the %d-byte partition", n, off, d.size)
	}
	if d.zeroOut != nil && n >= offloadMin {
		err := d.zeroOut(off, n)
		if err == nil {
			d.stats.Zeroed += n
			return nil
		}
		if !errors.Is(err, errNoOffload) {
			return fmt.Errorf("zeroing %d bytes at offset %d: %w", n, off, err)
		}
		d.zeroOut = nil
	}
	for pos := off; pos < off+n; pos += chunk {
		if err := d.writeAt(zeroChunk()[:min(chunk, off+n-pos)], pos); err != nil {
			return err
		}
	}
	d.stats.Zeroed += n
	return nil
}

// write writes pieces in offset order, merging neighbours into one request.
func (d *device) write(ps []piece) error {
	ps = append([]piece(nil), ps...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].off < ps[j].off })
	for i := 0; i < len(ps); {
		off, buf := ps[i].off, ps[i].data
		j := i + 1
		for ; j < len(ps) && ps[j].off == off+int64(len(buf)); j++ {
			if j == i+1 {
				buf = append([]byte(nil), buf...)
			}
			buf = append(buf, ps[j].data...)
		}
		if err := d.writeAt(buf, off); err != nil {
			return err
		}
		i = j
	}
	return nil
}

func (d *device) sync() error {
	if s, ok := d.w.(interface{ Sync() error }); ok {
		if err := s.Sync(); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
	}
	return nil
}

// isCovered reports whether the sector at off will be overwritten by metadata anyway.
func (d *device) isCovered(off int64) bool {
	for _, c := range d.covered {
		if off >= c[0] && off+int64(d.gran) <= c[1] {
			return true
		}
	}
	return false
}

// ensureZero makes [off, off+n) read as zeros, writing only sectors that do not read as zero
// (and are not about to be overwritten by metadata). Both ends must be sector aligned.
func (d *device) ensureZero(off, n int64) error {
	if n <= 0 {
		return nil
	}
	if off%int64(d.gran) != 0 || n%int64(d.gran) != 0 {
		return fmt.Errorf("internal error: zeroing [%d, +%d) not aligned to %d-byte sectors", off, n, d.gran)
	}
	if d.r == nil {
		return d.zeroRange(off, n)
	}
	ranges := [][2]int64{{off, off + n}}
	if d.dataRanges != nil {
		var err error
		if ranges, err = d.dataRanges(off, n); err != nil {
			return err
		}
	}
	// Runs of dirty sectors are collected across chunks and zeroed in one request each, so
	// that a large stretch of old data is one zeroing, not one per chunk.
	var run [2]int64
	flush := func() error {
		if run[1] == run[0] {
			return nil
		}
		err := d.zeroRange(run[0], run[1]-run[0])
		run = [2]int64{}
		return err
	}
	buf := alignedBuffer(chunk)
	g := int64(d.gran)
	dirtyRun := 0
	for _, rg := range ranges {
		// Data ranges come from the filesystem in its block size; widen them to sectors.
		start := max(off, rg[0]/g*g)
		stop := min(off+n, (rg[1]+g-1)/g*g)
		for pos := start; pos < stop; {
			m := min(int64(chunk), stop-pos)
			b := buf[:m]
			if _, err := d.r.ReadAt(b, pos); err != nil && !(errors.Is(err, io.EOF) && pos+m >= d.size) {
				return fmt.Errorf("reading %d bytes at offset %d: %w", m, pos, err)
			}
			d.stats.Read += m
			clean := int64(0)
			if !bytes.Equal(b, zeroChunk()[:m]) {
				for s := int64(0); s < m; s += g {
					if bytes.Equal(b[s:s+g], zeroChunk()[:g]) {
						clean++
						if err := flush(); err != nil {
							return err
						}
						continue
					}
					if run[1] != pos+s {
						run = [2]int64{pos + s, pos + s}
					}
					run[1] = pos + s + g
				}
			} else {
				clean = m / g
				if err := flush(); err != nil {
					return err
				}
			}
			pos += m
			if clean > 0 {
				dirtyRun = 0
				continue
			}
			// Megabytes on end without a single zero sector: old data fills this stretch
			// (a reused card). Reading the rest would only add time to the writes.
			if dirtyRun++; dirtyRun >= dirtyChunksBeforeBlind && pos < stop {
				run[1] = stop
				pos = stop
			}
		}
		if err := flush(); err != nil {
			return err
		}
	}
	return nil
}

// zeroRange zeroes [off, off+n), except sectors that metadata will overwrite.
func (d *device) zeroRange(off, n int64) error {
	end := off + n
	for pos := off; pos < end; {
		if d.isCovered(pos) {
			pos += int64(d.gran)
			continue
		}
		// Up to the next metadata piece (they are few; the range may be a 2 GiB log).
		next := end
		for _, c := range d.covered {
			if c[0] > pos && c[0] < next {
				next = c[0]
			}
		}
		if err := d.zero(pos, next-pos); err != nil {
			return err
		}
		pos = next
	}
	return nil
}

// oldSecondaries reads the superblock an older XFS left at the start and returns the offsets
// of its secondary superblocks, so that they can be erased.
func (d *device) oldSecondaries() ([]int64, error) {
	if d.r == nil {
		return nil, nil
	}
	sb := make([]byte, 512)
	if _, err := d.r.ReadAt(sb, 0); err != nil {
		return nil, fmt.Errorf("reading the old superblock: %w", err)
	}
	be := binary.BigEndian
	if be.Uint32(sb) != 0x58465342 {
		return nil, nil
	}
	bsize, agblocks, agcount := int64(be.Uint32(sb[4:])), int64(be.Uint32(sb[84:])), int64(be.Uint32(sb[88:]))
	// XFS AGs are at least 16 MiB: anything else is not a superblock we can trust.
	if bsize < 512 || bsize > 65536 || bsize&(bsize-1) != 0 || agblocks*bsize < 16<<20 || agcount > 1<<20 {
		return nil, nil
	}
	var offs []int64
	for ag := int64(1); ag < agcount; ag++ {
		off := ag * agblocks * bsize
		if off%int64(d.gran) != 0 || off+int64(d.gran) > d.size {
			break
		}
		offs = append(offs, off)
	}
	return offs, nil
}
