package xfs

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Geometry examples measured with mkfs.xfs 6.1 (see also TestGeometryMatchesMkfs, which asks
// the tool itself over more sizes).
func TestPlanGeometry(t *testing.T) {
	for _, c := range []struct {
		size                                int64
		ss                                  int
		agcount, agsize, agblklog, logblks  uint32
		dblocks                             uint64
		prealloc, rootChunk, logAG, imaxPct uint32
	}{
		{1 << 30, 512, 4, 65536, 16, 16384, 262144, 6, 16, 2, 25},
		{29 << 30, 512, 4, 1900544, 21, 16384, 7602176, 6, 16, 2, 25},
		{255 << 30, 512, 4, 16711680, 24, 32640, 66846720, 6, 16, 2, 25},
		{1 << 40, 512, 4, 67108864, 26, 131072, 268435456, 6, 16, 2, 5},
		{4 << 40, 512, 4, 268435455, 28, 521728, 1073741820, 6, 16, 2, 5},
		{5 << 40, 512, 5, 268435455, 28, 521728, 1342177275, 6, 16, 2, 5},
		{1 << 30, 4096, 4, 65536, 16, 16384, 262144, 9, 16, 2, 25},
	} {
		g, err := planGeometry(c.size, c.ss)
		if err != nil {
			t.Fatalf("%d: %v", c.size, err)
		}
		got := []uint64{uint64(g.agCount), uint64(g.agBlocks), uint64(g.agBlkLog), uint64(g.logBlocks), g.dblocks,
			uint64(g.prealloc), uint64(g.rootChunk), uint64(g.logAG), uint64(g.imaxPct)}
		want := []uint64{uint64(c.agcount), uint64(c.agsize), uint64(c.agblklog), uint64(c.logblks), c.dblocks,
			uint64(c.prealloc), uint64(c.rootChunk), uint64(c.logAG), uint64(c.imaxPct)}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("size %d/%d: got %v, want %v", c.size, c.ss, got, want)
				break
			}
		}
	}
}

// Block and inode numbers use the rounded-up AG size; disk offsets the real one.
func TestAddressesWithOddAGSize(t *testing.T) {
	g, err := planGeometry(29<<30, 512) // agsize 1900544, agblklog 21
	if err != nil {
		t.Fatal(err)
	}
	if got, want := g.fsb(2, 6), uint64(2<<21|6); got != want {
		t.Errorf("fsb(2, 6) = %d, want %d", got, want)
	}
	if got, want := g.offset(2, 6), int64(2*1900544+6)*4096; got != want {
		t.Errorf("offset(2, 6) = %d, want %d", got, want)
	}
	if got, want := g.daddr(1, 1), uint64(1900544+1)*8; got != want {
		t.Errorf("daddr(1, 1) = %d, want %d", got, want)
	}
}

type memDisk struct{ b []byte }

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > int64(len(m.b)) {
		return 0, io.ErrShortWrite
	}
	return copy(m.b[off:], p), nil
}

func TestFormatErrors(t *testing.T) {
	for _, c := range []struct {
		size int64
		opts Options
		want string
	}{
		{MinSize - 4096, Options{}, "too small"},
		{200 << 20, Options{}, "at least 300 MiB"},
		{MaxSize + 4096, Options{}, "too large"},
		{1 << 30, Options{SectorSize: 1024}, "sector size 1024"},
		{1 << 30, Options{Label: "thirteen-char"}, "at most 12"},
	} {
		err := Format(&memDisk{}, c.size, c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("size %d %+v: error %v, want one mentioning %q", c.size, c.opts, err, c.want)
		}
	}
	if err := Format(nil, 1<<30, Options{}); err == nil {
		t.Error("nil writer accepted")
	}
}

type failingWriter struct{}

func (failingWriter) WriteAt(p []byte, off int64) (int, error) { return 0, errors.New("EIO") }

func TestWriteErrorNamesOffset(t *testing.T) {
	err := Format(failingWriter{}, 1<<30, Options{})
	if err == nil || !strings.Contains(err.Error(), "offset") || !strings.Contains(err.Error(), "EIO") {
		t.Fatalf("got %v", err)
	}
}

// Without a way to read back, the whole log and both ends are written with zeros; the result
// is the same as with reading.
func TestWithoutReader(t *testing.T) {
	const size = 400 << 20
	path := filepath.Join(t.TempDir(), "img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(size)
	cw := &countingOnly{w: io.NewOffsetWriter(f, 0)}
	now := time.Unix(1700000000, 5)
	if err := Format(cw, size, Options{Label: "x", UUID: testUUID, Time: now}); err != nil {
		t.Fatal(err)
	}
	g, _ := planGeometry(size, 512)
	if min := int64(g.logBlocks) << blockLog; cw.n < min {
		t.Errorf("wrote %d bytes without a reader, want the whole %d-byte log", cw.n, min)
	}
	// Same bytes as a format that could read (a fresh sparse file: no log writes).
	path2 := filepath.Join(t.TempDir(), "img2")
	f2, _ := os.Create(path2)
	f2.Truncate(size)
	f2.Close()
	if n := formatFile(t, path2, Options{Label: "x", UUID: testUUID, Time: now}); n > 256<<10 {
		t.Errorf("wrote %d bytes on a sparse file", n)
	}
	compareImages(t, &g, path, path2)
}

type countingOnly struct {
	w io.WriterAt
	n int64
}

func (c *countingOnly) WriteAt(b []byte, off int64) (int, error) {
	c.n += int64(len(b))
	return c.w.WriteAt(b, off)
}

type unreadable struct{}

func (unreadable) ReadAt([]byte, int64) (int, error) { return 0, errors.New("device is not readable") }

// A reader that cannot read (repart's section over a write-only device) means zeroing by
// writing, not failing: every log byte after the first record is written with zeros.
func TestUnreadableReader(t *testing.T) {
	const size = 400 << 20
	var rec recorder
	if err := Format(&rec, size, Options{Reader: unreadable{}}); err != nil {
		t.Fatal(err)
	}
	g, _ := planGeometry(size, 512)
	start, end := g.offset(g.logAG, g.prealloc)+512*2, g.offset(g.logAG, g.prealloc+g.logBlocks)
	sort.Slice(rec.zero, func(i, j int) bool { return rec.zero[i][0] < rec.zero[j][0] })
	pos := start
	for _, z := range rec.zero {
		if z[0] <= pos && z[1] > pos {
			pos = z[1]
		}
	}
	if pos < end {
		t.Fatalf("log not zeroed from %d (zeroed up to %d of %d)", start, pos, end)
	}
}

// recorder remembers which byte ranges were written with zeros.
type recorder struct{ zero [][2]int64 }

func (r *recorder) WriteAt(b []byte, off int64) (int, error) {
	if bytes.Count(b, []byte{0}) == len(b) {
		r.zero = append(r.zero, [2]int64{off, off + int64(len(b))})
	}
	return len(b), nil
}

// BenchmarkFormat formats a 32 GiB sparse file: what Format itself costs on a zeroed card
// (the log is found to be holes, not read).
func BenchmarkFormat(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench.img")
	for i := 0; i < b.N; i++ {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		f.Truncate(32 << 30)
		if err := Format(f, 32<<30, Options{Label: "root"}); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
