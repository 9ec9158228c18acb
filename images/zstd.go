package images

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/piboot/piboot/internal/iszero"
)

// zstdChunk is the granularity at which compressRange tells zero runs from data. Partitions
// start on 1 MiB boundaries, so a partition's frames are the same whether it is compressed
// on its own or as part of the image, and whatever file system holds the image.
const zstdChunk = 1 << 20

// compressRange writes size bytes of src at off to w as zstd frames: each run of all-zero
// chunks is one frame of RLE blocks (a few bytes per 128 KiB, no encoder work), each chunk
// that does not compress (noiseProbe) one frame of raw blocks, each run of other data one
// frame of enc. A .zst may be a concatenation of frames; zstd -d, klauspost's decoder and
// sysupdate read them as one stream. Holes in src are skipped without reading; the frames
// depend on the bytes only.
func compressRange(w io.Writer, enc *zstd.Encoder, src *os.File, off, size int64, progress func(int)) error {
	buf := make([]byte, zstdChunk)
	var zeros int64
	open := false
	endFrame := func() error {
		if !open {
			return nil
		}
		open = false
		return enc.Close()
	}
	var noise noiseProbe
	defer noise.close()
	data := int64(-1) // the next offset that may hold data; below it, src is a hole
	for pos := int64(0); pos < size; pos += zstdChunk {
		n := min(int64(len(buf)), size-pos)
		if data < off+pos {
			var err error
			if data, err = nextData(src, off+pos); err != nil {
				return err
			}
		}
		zero := data >= off+pos+n
		if !zero {
			// Past the file's end reads as zeros: the image is truncated to its size only
			// after its partitions are compressed.
			k, err := src.ReadAt(buf[:n], off+pos)
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			clear(buf[k:n])
			zero = iszero.Bytes(buf[:n])
		}
		if zero {
			if err := endFrame(); err != nil {
				return err
			}
			zeros += n
		} else {
			if zeros > 0 {
				if _, err := w.Write(zeroFrame(zeros)); err != nil {
					return err
				}
				zeros = 0
			}
			raw, err := noise.incompressible(buf[:n])
			if err != nil {
				return err
			}
			if raw {
				if err := endFrame(); err != nil {
					return err
				}
				if _, err := w.Write(rawFrame(buf[:n])); err != nil {
					return err
				}
			} else {
				if !open {
					enc.Reset(w)
					open = true
				}
				if _, err := enc.Write(buf[:n]); err != nil {
					return err
				}
			}
		}
		if progress != nil {
			progress(int(n))
		}
	}
	if err := endFrame(); err != nil {
		return err
	}
	if zeros > 0 {
		_, err := w.Write(zeroFrame(zeros))
		return err
	}
	return nil
}

// Compressed data (a squashfs store's blocks, a zstd initrd, firmware archives) is most of
// an image's data, and the best encoder spends as long on 1 MiB of it as on 1 MiB of code
// (about 35 ms here) to save nothing: such a chunk is stored as raw blocks instead. A chunk
// counts as such when its bytes are nearly uniformly distributed (looksRandom, a histogram)
// and the fastest encoder cannot save 1/64 of it either (a cheap check for repeats the
// histogram cannot see). On bench/build.sh's image: 20 of 60 data chunks go raw, each one
// the best encoder made 37 bytes larger on its own; the build takes about 0.6 s less CPU
// (of 8), and the .raw.zst is 0.13 % larger, because a frame that follows raw chunks
// cannot refer back to them.

// noiseProbe tells chunks that do not compress from the others; its encoder is made on the
// first chunk that looks like noise.
type noiseProbe struct {
	enc   *zstd.Encoder
	trial []byte
}

func (p *noiseProbe) incompressible(b []byte) (bool, error) {
	if !looksRandom(b) {
		return false, nil
	}
	if p.enc == nil {
		var err error
		if p.enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false)); err != nil {
			return false, err
		}
	}
	p.trial = p.enc.EncodeAll(b, p.trial[:0])
	return len(p.trial) >= len(b)-len(b)/64, nil
}

func (p *noiseProbe) close() {
	if p.enc != nil {
		p.enc.Close()
	}
}

// looksRandom reports whether b's byte histogram is nearly flat: order-0 entropy of at least
// 7.9 bits per byte, what compressed or encrypted data has and code or text never has.
func looksRandom(b []byte) bool {
	if len(b) < 4096 {
		return false
	}
	var h [256]int
	for _, c := range b {
		h[c]++
	}
	// sum(n log2 n) <= N log2 N - 7.9 N  is  entropy >= 7.9 bits per byte.
	n := float64(len(b))
	sum := 0.0
	for _, c := range h {
		if c > 1 {
			f := float64(c)
			sum += f * math.Log2(f)
		}
	}
	return n*math.Log2(n)-sum >= 7.9*n
}

// rawFrame returns b as one zstd frame of raw blocks of at most 128 KiB: a 128 KiB window
// (raw blocks refer to nothing), the content size and checksum, like zeroFrame's.
func rawFrame(b []byte) []byte {
	out := frameHeader(make([]byte, 0, len(b)+len(b)/handBlock*3+32), int64(len(b)))
	for rest := b; ; {
		k := min(len(rest), handBlock)
		out = append(blockHeader(out, 0, k, k == len(rest)), rest[:k]...)
		if rest = rest[k:]; len(rest) == 0 {
			break
		}
	}
	return binary.LittleEndian.AppendUint32(out, uint32(xxh64(b)))
}

// handBlock is the block size of the frames written here without an encoder: 128 KiB, the
// most a block may hold, with a window of the same size (they refer to nothing).
const handBlock = 128 << 10

// frameHeader appends a zstd frame header for n bytes of content: the 8-byte content size,
// a content checksum at the end, a 128 KiB window.
func frameHeader(b []byte, n int64) []byte {
	b = binary.LittleEndian.AppendUint32(b, 0xFD2FB528)
	b = append(b, 3<<6|1<<2, (17-10)<<3)
	return binary.LittleEndian.AppendUint64(b, uint64(n))
}

// blockHeader appends the 3-byte header of a block of type typ (0 raw, 1 RLE) holding k
// bytes of content.
func blockHeader(b []byte, typ uint32, k int, last bool) []byte {
	h := uint32(k)<<3 | typ<<1
	if last {
		h |= 1
	}
	return append(b, byte(h), byte(h>>8), byte(h>>16))
}

func newZstdEncoder(level zstd.EncoderLevel) (*zstd.Encoder, error) {
	if level == 0 {
		level = zstd.SpeedBestCompression
	}
	// The output does not depend on the concurrency: klauspost's encoder splits the stream
	// into the same blocks whatever the number of cores.
	return zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithEncoderCRC(true), zstd.WithZeroFrames(true))
}

// zeroFrame returns a zstd frame of n zero bytes: RLE blocks of 128 KiB, a 128 KiB window
// (decoders need no more memory than for one block) and the content checksum.
func zeroFrame(n int64) []byte {
	b := frameHeader(nil, n)
	for left := n; left > 0; {
		k := min(left, handBlock)
		left -= k
		b = append(blockHeader(b, 1, int(k), left == 0), 0) // RLE of the byte 0
	}
	return binary.LittleEndian.AppendUint32(b, uint32(xxh64Zeros(n)))
}

const (
	xxP1 uint64 = 11400714785074694791
	xxP2 uint64 = 14029467366897019727
	xxP3 uint64 = 1609587929392839161
	xxP4 uint64 = 9650029242287828579
	xxP5 uint64 = 2870177450012600261
)

// xxh64 is XXH64 with seed 0 of b, the checksum zstd frames carry.
func xxh64(b []byte) uint64 {
	le := binary.LittleEndian
	n := uint64(len(b))
	h := xxP5
	if len(b) >= 32 {
		v := xxInit()
		for ; len(b) >= 32; b = b[32:] {
			for i := range v {
				v[i] = xxRound(v[i], le.Uint64(b[8*i:]))
			}
		}
		h = xxMerge(v)
	}
	h += n
	for ; len(b) >= 8; b = b[8:] {
		h = xxTail8(h, le.Uint64(b))
	}
	if len(b) >= 4 {
		h = xxTail4(h, le.Uint32(b))
		b = b[4:]
	}
	for _, c := range b {
		h = xxTail1(h, c)
	}
	return xxAvalanche(h)
}

// xxh64Zeros is xxh64 of n zero bytes, without the bytes: zero runs can be gigabytes.
func xxh64Zeros(n int64) uint64 {
	left := n
	h := xxP5
	if n >= 32 {
		v := xxInit()
		for ; left >= 32; left -= 32 {
			for i := range v {
				v[i] = xxRound(v[i], 0)
			}
		}
		h = xxMerge(v)
	}
	h += uint64(n)
	for ; left >= 8; left -= 8 {
		h = xxTail8(h, 0)
	}
	if left >= 4 {
		h = xxTail4(h, 0)
		left -= 4
	}
	for ; left > 0; left-- {
		h = xxTail1(h, 0)
	}
	return xxAvalanche(h)
}

// The steps of XXH64 (seed 0) shared by xxh64 and xxh64Zeros.

func xxInit() [4]uint64 {
	p1, p2 := xxP1, xxP2 // variables: the sums wrap around
	return [4]uint64{p1 + p2, p2, 0, -p1}
}

func xxRound(acc, in uint64) uint64 { return bits.RotateLeft64(acc+in*xxP2, 31) * xxP1 }

func xxMerge(v [4]uint64) uint64 {
	h := bits.RotateLeft64(v[0], 1) + bits.RotateLeft64(v[1], 7) + bits.RotateLeft64(v[2], 12) + bits.RotateLeft64(v[3], 18)
	for _, x := range v {
		h = (h^xxRound(0, x))*xxP1 + xxP4
	}
	return h
}

func xxTail8(h, in uint64) uint64 { return bits.RotateLeft64(h^xxRound(0, in), 27)*xxP1 + xxP4 }
func xxTail4(h uint64, in uint32) uint64 {
	return bits.RotateLeft64(h^uint64(in)*xxP1, 23)*xxP2 + xxP3
}
func xxTail1(h uint64, c byte) uint64 { return bits.RotateLeft64(h^uint64(c)*xxP5, 11) * xxP1 }

func xxAvalanche(h uint64) uint64 {
	h ^= h >> 33
	h *= xxP2
	h ^= h >> 29
	h *= xxP3
	h ^= h >> 32
	return h
}

// zstdPipeline compresses the image's partitions each once, as soon as each is written
// (the ESP's while the store's squashfs is built), and assembles the image's .zst from their
// frames; a split partition's frames become its .zst as they are.
type zstdPipeline struct {
	img   *os.File
	base  string // the image's path: partition frames go to <base>.p<N>.zst.tmp
	level zstd.EncoderLevel
	parts []*zstdPart
	mu    sync.Mutex
	n     int64 // bytes compressed before the progress task started
	t     *task
}

type zstdPart struct {
	off, size int64
	tmp       string
	done      chan error // receives once; wait keeps the result
	err       error
	waited    bool
}

func newZstdPipeline(img *os.File, base string, level zstd.EncoderLevel) *zstdPipeline {
	return &zstdPipeline{img: img, base: base, level: level}
}

func (z *zstdPipeline) add(n int) {
	z.mu.Lock()
	if z.t != nil {
		z.t.add(n)
	} else {
		z.n += int64(n)
	}
	z.mu.Unlock()
}

// partition starts compressing the image's bytes [off, off+size), which must not change
// any more.
func (z *zstdPipeline) partition(index int, off, size int64) {
	pt := &zstdPart{off: off, size: size, tmp: fmt.Sprintf("%s.p%d.zst.tmp", z.base, index), done: make(chan error, 1)}
	z.parts = append(z.parts, pt)
	go func() { pt.done <- compressFileRange(z.img, off, size, pt.tmp, z.level, z.add) }()
}

func (pt *zstdPart) wait() error {
	if !pt.waited {
		pt.err, pt.waited = <-pt.done, true
	}
	return pt.err
}

// abort waits for the partitions still being compressed and removes their frames.
func (z *zstdPipeline) abort() {
	for _, pt := range z.parts {
		pt.wait()
		os.Remove(pt.tmp)
	}
}

// finish writes dst, the .zst of the whole image of size bytes, and renames each split
// partition's frames (split: partition offset to its .zst path) into place.
func (z *zstdPipeline) finish(dst string, size int64, split map[int64]string, p *Progress) error {
	defer z.abort()
	names := filepath.Base(dst)
	for _, pt := range z.parts {
		if s, ok := split[pt.off]; ok {
			names += ", " + filepath.Base(s)
		}
	}
	t := p.start("zstd "+names, size)
	z.mu.Lock()
	z.t = t
	t.add(int(z.n))
	z.mu.Unlock()
	out, err := createTemp(dst)
	if err != nil {
		return err
	}
	defer os.Remove(dst + ".tmp")
	enc, err := newZstdEncoder(z.level)
	pos := int64(0)
	for _, pt := range z.parts {
		if err == nil {
			err = compressRange(out, enc, z.img, pos, pt.off-pos, z.add)
		}
		if err == nil {
			if err = pt.wait(); err == nil {
				err = appendFile(out, pt.tmp)
			}
		}
		pos = pt.off + pt.size
	}
	if err == nil {
		err = compressRange(out, enc, z.img, pos, size-pos, z.add)
	}
	if err := errors.Join(err, out.Sync(), out.Close()); err != nil {
		return fmt.Errorf("zstd %s: %w", dst, err)
	}
	for _, pt := range z.parts {
		if s, ok := split[pt.off]; ok {
			if err := os.Rename(pt.tmp, s); err != nil {
				return err
			}
		}
	}
	if st, err := os.Stat(dst + ".tmp"); err == nil {
		t.done(human(st.Size()))
	}
	return os.Rename(dst+".tmp", dst)
}

// compressFileRange writes size bytes of src at off to dst as zstd frames, synced.
func compressFileRange(src *os.File, off, size int64, dst string, level zstd.EncoderLevel, progress func(int)) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	enc, err := newZstdEncoder(level)
	if err == nil {
		err = compressRange(out, enc, src, off, size, progress)
	}
	if err := errors.Join(err, out.Sync(), out.Close()); err != nil {
		return fmt.Errorf("zstd %s: %w", dst, err)
	}
	return nil
}

func createTemp(dst string) (*os.File, error) {
	return os.OpenFile(dst+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
}

func appendFile(w io.Writer, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}
