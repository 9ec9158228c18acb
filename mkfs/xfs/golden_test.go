package xfs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/piboot/piboot/internal/testutil"
	"github.com/piboot/piboot/internal/uuid"
)

var testUUID = uuid.MustParse("0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b")

// sparse creates a sparse file of size bytes.
func sparse(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatalf("cannot make a %d-byte sparse file in %s: %v", size, dir, err)
	}
	return p
}

// referenceMkfs runs mkfs.xfs as systemd-repart does (plus rmapbt=0, the 6.1 default).
func referenceMkfs(t *testing.T, path string, sectSize int, label string) {
	t.Helper()
	args := []string{"-f", "-q", "-L", label, "-m", "uuid=" + testUUID.String() + ",reflink=1,rmapbt=0"}
	if sectSize != 512 {
		args = append(args, "-s", fmt.Sprintf("size=%d", sectSize))
	}
	if out, err := exec.Command("mkfs.xfs", append(args, path)...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs %s: %v\n%s", path, err, out)
	}
}

// formatFile formats path with Format and returns the bytes written.
func formatFile(t *testing.T, path string, opts Options) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	cw := &countingWriter{f: f}
	if opts.Reader == nil {
		opts.Reader = f
	}
	if err := Format(cw, st.Size(), opts); err != nil {
		t.Fatalf("Format %s: %v", path, err)
	}
	return cw.n
}

type countingWriter struct {
	f *os.File
	n int64
}

func (c *countingWriter) WriteAt(b []byte, off int64) (int, error) {
	c.n += int64(len(b))
	return c.f.WriteAt(b, off)
}
func (c *countingWriter) Sync() error { return c.f.Sync() }

// dataWindows lists the 1 MiB-aligned windows of path that hold data.
func dataWindows(t *testing.T, f *os.File) map[int64]bool {
	t.Helper()
	st, _ := f.Stat()
	ranges, err := dataRangesFunc(f)(0, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	w := map[int64]bool{}
	for _, r := range ranges {
		for o := r[0] &^ (chunk - 1); o < r[1]; o += chunk {
			w[o] = true
		}
	}
	return w
}

// normalizeInodes zeroes the timestamps that legitimately differ (mtime, ctime, crtime) and
// the CRCs that cover them, in every inode of the root chunk inside window buf at off.
func normalizeInodes(g *geometry, buf []byte, off int64) {
	start := g.offset(0, g.rootChunk)
	for i := int64(0); i < inodesPerChk; i++ {
		io := start + i*inodeSize - off
		if io < 0 || io+inodeSize > int64(len(buf)) {
			continue
		}
		d := buf[io : io+inodeSize]
		clear(d[40:56])
		clear(d[144:152])
		clear(d[100:104])
	}
}

// describe names the structure at byte offset off, for failure messages.
func describe(g *geometry, off int64) string {
	blk := uint64(off) >> blockLog
	ag := uint32(blk / uint64(g.agBlocks))
	agbno := uint32(blk % uint64(g.agBlocks))
	what := map[uint32]string{g.bnoRoot: "bnobt", g.cntRoot: "cntbt", g.inoRoot: "inobt", g.finoRoot: "finobt", g.refcRoot: "refcountbt"}[agbno]
	switch {
	case off-g.offset(ag, 0) < int64(4*g.sectSize):
		what = []string{"sb", "agf", "agi", "agfl"}[(off-g.offset(ag, 0))/int64(g.sectSize)]
	case ag == 0 && agbno >= g.rootChunk && agbno < g.rootChunk+chunkBlocks:
		what = fmt.Sprintf("inode %d", (off-g.offset(0, g.rootChunk))/inodeSize+int64(g.rootIno()))
	case ag == g.logAG && agbno >= g.prealloc && agbno < g.prealloc+g.logBlocks:
		what = "log"
	}
	return fmt.Sprintf("AG %d block %d (%s) byte %d", ag, agbno, what, (off-g.offset(ag, 0))%blockSize)
}

// compareImages checks that two images hold the same bytes, timestamps aside.
func compareImages(t *testing.T, g *geometry, want, got string) {
	t.Helper()
	compareRange(t, g, want, got, 0, 1<<62)
}

// compareRange compares the filesystems at [base, base+size) of two images.
func compareRange(t *testing.T, g *geometry, want, got string, base, size int64) {
	t.Helper()
	fw, err := os.Open(want)
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	fg, err := os.Open(got)
	if err != nil {
		t.Fatal(err)
	}
	defer fg.Close()
	windows := dataWindows(t, fw)
	for o := range dataWindows(t, fg) {
		windows[o] = true
	}
	bw, bg := make([]byte, chunk), make([]byte, chunk)
	diffs := 0
	for w := range windows {
		// Windows are aligned to the filesystem, not the image.
		o := base + (w-base)&^(chunk-1)
		for _, o := range []int64{o, o + chunk} {
			if o+chunk <= w || o >= w+chunk {
				continue
			}
			lo, hi := max(o, base), min(o+chunk, base+size)
			if lo >= hi {
				continue
			}
			nw, _ := fw.ReadAt(bw[:hi-lo], lo)
			ng, _ := fg.ReadAt(bg[:hi-lo], lo)
			if nw != ng {
				t.Fatalf("short read at %d: %d vs %d", lo, nw, ng)
			}
			normalizeInodes(g, bw[:nw], lo-base)
			normalizeInodes(g, bg[:ng], lo-base)
			if bytes.Equal(bw[:nw], bg[:ng]) {
				continue
			}
			for i := 0; i < nw && diffs < 12; i++ {
				if bw[i] != bg[i] {
					rel := lo - base + int64(i)
					t.Errorf("filesystem offset %d, %s: reference has %#02x, we have %#02x", rel, describe(g, rel), bw[i], bg[i])
					diffs++
				}
			}
		}
	}
	if diffs > 0 {
		t.FailNow()
	}
}

func xfsRepair(t *testing.T, path string) {
	t.Helper()
	if out, err := exec.Command("xfs_repair", "-n", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("xfs_repair -n %s: %v\n%s", path, err, out)
	}
}

// TestGolden formats the same sizes with mkfs.xfs and Format and compares every byte except
// inode timestamps, then lets xfs_repair check ours (which verifies every CRC).
func TestGolden(t *testing.T) {
	testutil.Need(t, "mkfs.xfs", "xfs_repair")
	cases := []struct {
		name string
		size int64
		ss   int
	}{
		{"300MiB", 300 << 20, 512},
		{"512MiB", 512 << 20, 512},
		{"1GiB", 1 << 30, 512},
		{"29GiB", 29 << 30, 512},
		{"SD-29.7GiB", 31914983424, 512}, // a real 32 GB card's size
		{"128GiB", 128 << 30, 512},
		{"1TiB", 1 << 40, 512},
		{"prime-sectors", 1000000007 * 512, 512},
		{"unaligned-size", (7 << 30) + 12345, 512},
		{"4TiB", 4 << 40, 512},
		{"5TiB+", 5<<40 + 3<<30 + 4096*5, 512},
		{"4096-1GiB", 1 << 30, 4096},
		{"4096-odd", 29<<30 + 4096*7, 4096},
		{"4096-2TiB", 2 << 40, 4096},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ref := sparse(t, dir, c.name+".ref", c.size)
			ours := sparse(t, dir, c.name+".ours", c.size)
			defer os.Remove(ref)
			defer os.Remove(ours)
			referenceMkfs(t, ref, c.ss, "root")
			n := formatFile(t, ours, Options{Label: "root", UUID: testUUID, SectorSize: c.ss, Time: time.Now()})
			if n > 1<<20 {
				t.Errorf("wrote %d bytes on a sparse file, want at most 1 MiB", n)
			}
			g, err := planGeometry(c.size, c.ss)
			if err != nil {
				t.Fatal(err)
			}
			compareImages(t, &g, ref, ours)
			xfsRepair(t, ours)
		})
	}
}

// TestGeometryMatchesMkfs checks the planning alone against mkfs.xfs -N over many sizes.
func TestGeometryMatchesMkfs(t *testing.T) {
	testutil.Need(t, "mkfs.xfs")
	dir := t.TempDir()
	sizes := []int64{MinSize, MinSize + 4095, MinSize + 4096, 333333333, 999 << 20, 16<<30 - 4096, 16 << 30,
		16<<30 + 4096, 100 << 30, 255 << 30, 256<<30 + 3*4096, 999 << 30, 1<<40 - 4096, 3 << 40, 4<<40 - 4096,
		4<<40 + 8<<20, 4<<40 + 17<<20, 9<<40 + 512*7, 16<<40 - 4096, 16 << 40}
	for _, size := range sizes {
		args := []string{"-N", "-f", "-m", "reflink=1,rmapbt=0"}
		p := filepath.Join(dir, "n.img")
		if size >= 8<<40 {
			// Larger than some hosts' files may be: let mkfs.xfs take the size as given.
			args = append(args, "-d", fmt.Sprintf("file=1,name=%s,size=%d", p, size))
		} else {
			args = append(args, sparse(t, dir, "n.img", size))
		}
		out, err := exec.Command("mkfs.xfs", args...).CombinedOutput()
		os.Remove(p)
		if err != nil {
			t.Fatalf("mkfs.xfs -N at %d: %v\n%s", size, err, out)
		}
		var agcount, agsize, dblocks, imaxpct, logblocks uint64
		s := strings.ReplaceAll(string(out), ",", " ")
		for _, f := range strings.Fields(s) {
			fmt.Sscanf(f, "agcount=%d", &agcount)
			fmt.Sscanf(f, "agsize=%d", &agsize)
			fmt.Sscanf(f, "imaxpct=%d", &imaxpct)
		}
		// "blocks=" appears for data, log and realtime, in that order.
		var blocks []uint64
		for _, f := range strings.Fields(s) {
			var v uint64
			if n, _ := fmt.Sscanf(f, "blocks=%d", &v); n == 1 {
				blocks = append(blocks, v)
			}
		}
		dblocks, logblocks = blocks[0], blocks[1]
		g, err := planGeometry(size, 512)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		got := [5]uint64{uint64(g.agCount), uint64(g.agBlocks), g.dblocks, uint64(g.imaxPct), uint64(g.logBlocks)}
		want := [5]uint64{agcount, agsize, dblocks, imaxpct, logblocks}
		if got != want {
			t.Errorf("size %d: got agcount, agsize, dblocks, imaxpct, logblocks = %v, mkfs.xfs %v", size, got, want)
		}
	}
}
