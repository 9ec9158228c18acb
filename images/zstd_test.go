package images

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestCompressRange: data, zero runs, holes and a range past the file's end come back as
// they were, through klauspost's decoder and zstd -d; the frames do not depend on which
// zero runs are holes.
func TestCompressRange(t *testing.T) {
	dir := t.TempDir()
	const size = 9<<20 + 4096
	content := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for _, at := range []int{0, 3<<20 + 17, 8<<20 + 100} {
		for k := range 300000 {
			content[at+k] = byte(r.IntN(4)) // compressible but not trivial
		}
	}
	// Chunks of noise, stored as raw frames: one between data chunks and a copy of it (the
	// probe looks at each chunk alone, so the copy is raw too); and a chunk of noise with a
	// tail of zeros, whose histogram is flat enough but which the probe compresses.
	for k := 1 << 20; k < 2<<20; k++ {
		content[k] = byte(r.Uint32())
	}
	copy(content[5<<20:6<<20], content[1<<20:2<<20])
	for k := 6 << 20; k < 7<<20-100000; k++ {
		content[k] = byte(r.Uint32())
	}
	sparse := filepath.Join(dir, "sparse")
	dense := filepath.Join(dir, "dense")
	fs, err := os.Create(sparse)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	for off := 0; off < size; off += 1 << 20 {
		chunk := content[off:min(off+1<<20, size)]
		if !bytes.Equal(chunk, make([]byte, len(chunk))) {
			if _, err := fs.WriteAt(chunk, int64(off)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The file ends before the range does: the rest reads as zeros (the image is truncated
	// to its size only after its partitions are compressed).
	if err := os.WriteFile(dense, content, 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := os.Open(dense)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	enc, err := newZstdEncoder(zstd.SpeedDefault)
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if err := compressRange(&a, enc, fs, 0, size+2<<20, nil); err != nil {
		t.Fatal(err)
	}
	if err := compressRange(&b, enc, fd, 0, size+2<<20, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("a sparse and a dense file of the same bytes compress differently")
	}
	want := append(append([]byte(nil), content...), make([]byte, 2<<20)...)
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	got, err := dec.DecodeAll(a.Bytes(), nil)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("klauspost: %d bytes, err %v; want %d identical bytes", len(got), err, len(want))
	}
	// The two chunks of noise are raw frames; the chunk with a compressible tail went
	// through the encoder.
	if got := rawFrames(t, a.Bytes()); len(got) != 2 || got[0] != 1<<20 || got[1] != 1<<20 {
		t.Errorf("raw frames of %v bytes, want two of 1 MiB (the noise chunks)", got)
	}
	if _, err := exec.LookPath("zstd"); err == nil {
		cmd := exec.Command("zstd", "-dc")
		cmd.Stdin = bytes.NewReader(a.Bytes())
		got, err := cmd.Output()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("zstd -d: %d bytes, err %v; want %d identical bytes", len(got), err, len(want))
		}
	}
}

// rawFrames walks the zstd frames in b and returns the content size of each frame made of
// raw blocks only.
func rawFrames(t *testing.T, b []byte) []int {
	t.Helper()
	var sizes []int
	for len(b) > 0 {
		if len(b) < 6 || binary.LittleEndian.Uint32(b) != 0xFD2FB528 {
			t.Fatalf("no zstd frame at %x", b[:min(len(b), 8)])
		}
		fhd := b[4]
		fcs := [4]int{0, 2, 4, 8}[fhd>>6]
		single := fhd>>5&1 == 1
		if single && fcs == 0 {
			fcs = 1
		}
		did := [4]int{0, 1, 2, 4}[fhd&3]
		p := 5 + did + fcs
		if !single {
			p++
		}
		raw, n := true, 0
		for {
			h := int(b[p]) | int(b[p+1])<<8 | int(b[p+2])<<16
			typ, size := h>>1&3, h>>3
			p += 3
			switch typ {
			case 0:
				p += size
				n += size
			case 1:
				p++
				raw = false
			default:
				p += size
				raw = false
			}
			if h&1 == 1 {
				break
			}
		}
		if fhd>>2&1 == 1 {
			p += 4
		}
		if raw {
			sizes = append(sizes, n)
		}
		b = b[p:]
	}
	return sizes
}

// TestHandMadeFrames: the RLE frames of zero runs and the raw frames of noise decode to
// their content in klauspost's decoder and the zstd CLI (both check the checksum), and their
// checksum is the one klauspost's encoder computes; xxh64 matches known vectors and
// xxh64Zeros.
func TestHandMadeFrames(t *testing.T) {
	for in, want := range map[string]uint64{"": 0xEF46DB3751D8E999, "a": 0xD24EC4F1A98C6E5B, "abc": 0x44BC2CF5AD770999} {
		if got := xxh64([]byte(in)); got != want {
			t.Errorf("xxh64(%q) = %#x, want %#x", in, got, want)
		}
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	check := func(what string, fr, want []byte) {
		t.Helper()
		got, err := dec.DecodeAll(fr, nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: decoded %d bytes, err %v; want %d identical bytes", what, len(got), err, len(want))
		}
		ref := enc.EncodeAll(want, nil)
		if !bytes.Equal(fr[len(fr)-4:], ref[len(ref)-4:]) {
			t.Errorf("%s: checksum %x, klauspost's %x", what, fr[len(fr)-4:], ref[len(ref)-4:])
		}
		all = append(all, fr...)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 3, 4, 7, 8, 31, 32, 33, 100, 128 << 10, 128<<10 + 1, 1 << 20, 5<<20 + 12345} {
		if got, want := xxh64(make([]byte, n)), xxh64Zeros(int64(n)); got != want {
			t.Errorf("n=%d: xxh64 of zeros %#x, xxh64Zeros %#x", n, got, want)
		}
		check(fmt.Sprintf("zero frame of %d bytes", n), zeroFrame(int64(n)), make([]byte, n))
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		check(fmt.Sprintf("raw frame of %d bytes", n), rawFrame(b), b)
	}
	if _, err := exec.LookPath("zstd"); err == nil {
		p := filepath.Join(t.TempDir(), "frames.zst")
		if err := os.WriteFile(p, all, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("zstd", "-t", p).CombinedOutput(); err != nil {
			t.Fatalf("zstd -t: %v\n%s", err, out)
		}
	}
}
