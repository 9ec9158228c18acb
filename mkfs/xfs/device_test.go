package xfs

import (
	"bytes"
	"fmt"
	"testing"
)

// memDev is an in-memory partition that records every write.
type memDev struct {
	b      []byte
	writes [][2]int64
}

func (m *memDev) ReadAt(p []byte, off int64) (int, error) { return copy(p, m.b[off:]), nil }
func (m *memDev) WriteAt(p []byte, off int64) (int, error) {
	m.writes = append(m.writes, [2]int64{off, int64(len(p))})
	return copy(m.b[off:], p), nil
}

func TestEnsureZero(t *testing.T) {
	const size = 12 << 20
	for _, c := range []struct {
		name    string
		dirty   [][2]int64 // byte ranges filled with 0xff before
		covered [][2]int64
		writes  [][2]int64 // expected writes (offset, length)
		maxRead int64
	}{
		{name: "clean", writes: nil, maxRead: size},
		{name: "one sector", dirty: [][2]int64{{5000, 5001}}, writes: [][2]int64{{4608, 512}}, maxRead: size},
		{name: "across chunks is one write", dirty: [][2]int64{{chunk - 1000, chunk + 10}},
			writes: [][2]int64{{chunk - 1024, 1536}}, maxRead: size},
		{name: "covered sectors skipped", dirty: [][2]int64{{0, 4096}}, covered: [][2]int64{{1024, 2048}},
			writes: [][2]int64{{0, 1024}, {2048, 2048}}, maxRead: size},
		{name: "old data everywhere: stop reading", dirty: [][2]int64{{0, size}},
			writes: [][2]int64{{0, size}}, maxRead: dirtyChunksBeforeBlind * chunk},
		{name: "mostly dirty keeps reading", dirty: [][2]int64{{0, 3 * chunk}, {3*chunk + 512, size}},
			writes: [][2]int64{{0, 3 * chunk}, {3*chunk + 512, size - 3*chunk - 512}}, maxRead: 9 * chunk},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := &memDev{b: make([]byte, size)}
			for _, r := range c.dirty {
				copy(m.b[r[0]:r[1]], bytes.Repeat([]byte{0xff}, int(r[1]-r[0])))
			}
			d := &device{w: m, r: m, size: size, gran: 512, covered: c.covered}
			if err := d.ensureZero(0, size); err != nil {
				t.Fatal(err)
			}
			// Zeros are sent in chunks; what counts is the ranges they cover.
			var merged [][2]int64
			for _, w := range m.writes {
				if n := len(merged); n > 0 && merged[n-1][0]+merged[n-1][1] == w[0] {
					merged[n-1][1] += w[1]
					continue
				}
				merged = append(merged, w)
			}
			if fmt.Sprint(merged) != fmt.Sprint(c.writes) && !(len(merged) == 0 && len(c.writes) == 0) {
				t.Errorf("writes %v, want %v", merged, c.writes)
			}
			if d.stats.Read > c.maxRead {
				t.Errorf("read %d bytes, want at most %d", d.stats.Read, c.maxRead)
			}
			for i := int64(0); i < size; i += 512 {
				cov := false
				for _, r := range c.covered {
					cov = cov || (i >= r[0] && i < r[1])
				}
				if !cov && !bytes.Equal(m.b[i:i+512], zeroChunk()[:512]) {
					t.Fatalf("sector at %d not zero", i)
				}
			}
		})
	}
}
