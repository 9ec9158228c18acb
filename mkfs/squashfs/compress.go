package squashfs

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

// Compression names a squashfs compressor.
type Compression string

// The compressors piboot writes; all are readable by the Linux kernel.
const (
	Zstd Compression = "zstd"
	XZ   Compression = "xz"
	Gzip Compression = "gzip"
	LZ4  Compression = "lz4"
	None Compression = "none"
)

// Compressions lists the accepted Compression values.
var Compressions = []Compression{Zstd, XZ, Gzip, LZ4, None}

const (
	compGzip = 1
	compXZ   = 4
	compLZ4  = 5
	compZstd = 6
)

// codec describes one compressor: its id, options block and a factory for per-goroutine
// compressors (encoders keep state and are not safe for concurrent use).
type codec struct {
	id      uint16
	options []byte // the compressor options metadata block's content; nil: none
	new     func() (compressor, error)
}

// compressor compresses src into dst[:0] (growing it if needed) and returns the result,
// or nil when src should be stored uncompressed; the caller also stores src uncompressed
// when the result is not smaller. The result never aliases src.
type compressor interface {
	compress(dst, src []byte) ([]byte, error)
}

func newCodec(c Compression, level, blockSize int) (codec, error) {
	le := binary.LittleEndian
	switch c {
	case Zstd:
		if level == 0 {
			level = 15
		}
		if level < 1 || level > 22 {
			return codec{}, fmt.Errorf("zstd level %d out of range 1-22", level)
		}
		opts := le.AppendUint32(nil, uint32(level))
		return codec{id: compZstd, options: opts, new: func() (compressor, error) {
			// Single-segment frames declare a window equal to their content size, never
			// more than the block size the kernel sizes its decompression window by.
			enc, err := zstd.NewWriter(nil,
				zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
				zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false),
				zstd.WithSingleSegment(true), zstd.WithZeroFrames(true),
				zstd.WithLowerEncoderMem(false))
			if err != nil {
				return nil, err
			}
			return zstdComp{enc}, nil
		}}, nil
	case Gzip:
		if level == 0 {
			level = 9
		}
		if level < 1 || level > 9 {
			return codec{}, fmt.Errorf("gzip level %d out of range 1-9", level)
		}
		// compression_level u32, window_size u16 (15), strategies u16 (0: default).
		opts := le.AppendUint16(le.AppendUint16(le.AppendUint32(nil, uint32(level)), 15), 0)
		return codec{id: compGzip, options: opts, new: func() (compressor, error) {
			w, err := zlib.NewWriterLevel(nil, level)
			if err != nil {
				return nil, err
			}
			return &zlibComp{w: w}, nil
		}}, nil
	case XZ:
		if level != 0 {
			return codec{}, fmt.Errorf("xz takes no compression level")
		}
		// The kernel preallocates a dictionary of this size; it must be 2^n or 2^n+2^(n+1)
		// and cover metadata blocks (8 KiB) too.
		dict := max(blockSize, metadataSize)
		opts := le.AppendUint32(le.AppendUint32(nil, uint32(dict)), 0)
		return codec{id: compXZ, options: opts, new: func() (compressor, error) {
			return &xzComp{cfg: xz.WriterConfig{DictCap: dict, CheckSum: xz.CRC32}}, nil
		}}, nil
	case LZ4:
		if level < 0 || level > 9 {
			return codec{}, fmt.Errorf("lz4 level %d out of range 0 (fast) - 9 (high compression)", level)
		}
		// version u32 (1: the legacy block format the kernel reads), flags u32 (1: HC).
		flags := uint32(0)
		if level > 0 {
			flags = 1
		}
		opts := le.AppendUint32(le.AppendUint32(nil, 1), flags)
		return codec{id: compLZ4, options: opts, new: func() (compressor, error) {
			if level > 0 {
				return &lz4HC{c: lz4.CompressorHC{Level: lz4.CompressionLevel(1 << (8 + level))}}, nil
			}
			return &lz4Fast{}, nil
		}}, nil
	case None:
		if level != 0 {
			return codec{}, fmt.Errorf("compression none takes no level")
		}
		// There is no "none" compressor id: gzip with every uncompressed flag, as
		// mksquashfs -noI -noD -noF -noX does.
		return codec{id: compGzip, new: func() (compressor, error) { return noComp{}, nil }}, nil
	}
	return codec{}, fmt.Errorf("unknown compression %q (want zstd, xz, gzip, lz4 or none)", c)
}

type zstdComp struct{ enc *zstd.Encoder }

func (z zstdComp) compress(dst, src []byte) ([]byte, error) {
	return z.enc.EncodeAll(src, dst[:0]), nil
}

type zlibComp struct {
	w   *zlib.Writer
	buf bytes.Buffer
}

func (z *zlibComp) compress(dst, src []byte) ([]byte, error) {
	z.buf = *bytes.NewBuffer(dst[:0])
	z.w.Reset(&z.buf)
	if _, err := z.w.Write(src); err != nil {
		return nil, err
	}
	if err := z.w.Close(); err != nil {
		return nil, err
	}
	return z.buf.Bytes(), nil
}

type xzComp struct {
	cfg xz.WriterConfig
	buf bytes.Buffer
}

func (x *xzComp) compress(dst, src []byte) ([]byte, error) {
	x.buf = *bytes.NewBuffer(dst[:0])
	w, err := x.cfg.NewWriter(&x.buf)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(src); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return x.buf.Bytes(), nil
}

type lz4Fast struct{ c lz4.Compressor }

func (l *lz4Fast) compress(dst, src []byte) ([]byte, error) {
	dst = grow(dst, lz4.CompressBlockBound(len(src)))
	n, err := l.c.CompressBlock(src, dst)
	if err != nil || n == 0 {
		return nil, nil // incompressible: stored raw
	}
	return dst[:n], nil
}

type lz4HC struct{ c lz4.CompressorHC }

func (l *lz4HC) compress(dst, src []byte) ([]byte, error) {
	dst = grow(dst, lz4.CompressBlockBound(len(src)))
	n, err := l.c.CompressBlock(src, dst)
	if err != nil || n == 0 {
		return nil, nil
	}
	return dst[:n], nil
}

type noComp struct{}

func (noComp) compress(dst, src []byte) ([]byte, error) { return nil, nil }

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}
