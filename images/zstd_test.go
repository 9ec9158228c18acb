package images

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestZeroFrame: the hand-made RLE frames decode to n zeros with a valid checksum in
// klauspost's decoder (which checks it) and in the zstd CLI, and their checksum is the one
// klauspost's encoder computes.
func TestZeroFrame(t *testing.T) {
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int64{1, 3, 4, 7, 8, 31, 32, 33, 100, 128 << 10, 128<<10 + 1, 1 << 20, 5<<20 + 12345} {
		fr := zeroFrame(n)
		got, err := dec.DecodeAll(fr, nil)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if int64(len(got)) != n || bytes.Count(got, []byte{0}) != len(got) {
			t.Fatalf("n=%d: decoded %d bytes, not all zero", n, len(got))
		}
		ref := enc.EncodeAll(make([]byte, n), nil)
		if !bytes.Equal(fr[len(fr)-4:], ref[len(ref)-4:]) {
			t.Errorf("n=%d: checksum %x, klauspost's %x", n, fr[len(fr)-4:], ref[len(ref)-4:])
		}
	}
	if _, err := exec.LookPath("zstd"); err == nil {
		p := filepath.Join(t.TempDir(), "z.zst")
		if err := os.WriteFile(p, append(zeroFrame(3<<20+5), zeroFrame(77)...), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("zstd", "-t", p).CombinedOutput(); err != nil {
			t.Fatalf("zstd -t: %v\n%s", err, out)
		}
	}
}

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
	if _, err := exec.LookPath("zstd"); err == nil {
		cmd := exec.Command("zstd", "-dc")
		cmd.Stdin = bytes.NewReader(a.Bytes())
		got, err := cmd.Output()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("zstd -d: %d bytes, err %v; want %d identical bytes", len(got), err, len(want))
		}
	}
}
