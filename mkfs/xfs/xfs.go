// Package xfs writes an empty XFS v5 filesystem, the one mkfs.xfs 6.1 makes with
// systemd-repart's arguments (-L label -m uuid=U -m reflink=1, rmapbt off; the lts_6.1 feature
// set): the same geometry, AG headers, btree roots, root and realtime inodes, secondary
// superblocks and log record, byte for byte except the inode timestamps. It needs no xfsprogs,
// so the static first-boot init can format Format=xfs partitions itself.
//
// # Writing little
//
// An empty filesystem is about 120 KiB of metadata, but the 64 MiB (up to 2 GiB) internal log
// must read as zero: the kernel finds the log head from the cycle numbers it reads, and stale
// bytes there (a reused card, an older filesystem) make it refuse to mount ("Log
// inconsistent", "mismatched uuid"). mkfs.xfs writes the whole log with zeros, seconds on an
// SD card. Format reads the log instead and writes zeros only to the sectors that are not zero
// already; on a fresh or already zeroed card that costs reads and no writes. The same is done
// for the areas mkfs.xfs wipes to remove old signatures (the first and last 128 KiB, and the
// secondary superblocks of an older XFS).
//
// Why this is as safe as writing zeros: the kernel never assumes anything about the log
// beyond what it reads back; all it needs is that reading returns zeros after the first
// record. Format establishes exactly that by reading the very sectors the kernel will read,
// through the same device, and rewriting every sector that did not read as zero. A sector we
// did not write keeps reading as it just did: nothing else writes to the partition while it is
// formatted, and Format never discards (a discarded sector on some devices is not guaranteed
// to read the same twice — so callers must not discard after Format either; discarding before
// is fine, because Format reads afterwards). Devices that return all ones after an erase
// simply get their log written, as with mkfs.xfs.
//
// Where the log turns out to be full of old data (several megabytes in a row without a single
// zero sector), the rest of it is zeroed without reading on: reading would only add time to
// writes that are needed anyway. Zeroing uses the device's own means where it has them
// (BLKZEROOUT on a block device, which the kernel turns into plain writes of zeros on an SD
// card; fallocate on an image file), like mkfs.xfs.
//
// Reading needs an io.ReaderAt for the same bytes: the writer itself if it is one (an *os.File),
// or Options.Reader. Without one Format writes all zeros, like mkfs.xfs. On a regular file,
// holes are skipped without reading (SEEK_DATA); a block device is read with O_DIRECT, so
// what is read is what the device holds, not what its page cache remembers.
//
// # Commit order
//
// The primary superblock is the only thing that makes the partition an XFS filesystem, so it is
// written last: first the old primary (and any other non-zero bytes in the first 128 KiB) is
// zeroed, then the log and all other metadata, including secondary superblocks marked
// in-progress as mkfs.xfs leaves them; then the device is synced (if the writer has Sync), the
// primary superblock written and synced again. A crash at any point leaves either no
// filesystem or a complete one.
package xfs

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/piboot/piboot/internal/uuid"
)

// Options describe the filesystem; the zero value is valid (random UUID, no label).
type Options struct {
	Label string    // at most 12 bytes, as mkfs.xfs allows
	UUID  uuid.UUID // zero: a random one
	// SectorSize is 512 or 4096. Zero means what mkfs.xfs would pick: the physical sector size
	// of a block device given as an *os.File (the writer, else Reader), else 512.
	SectorSize int
	Time       time.Time // timestamp of the root and realtime inodes; zero: now
	// Reader reads back what the writer holds, at the same offsets. Needed only when the
	// writer is not itself an io.ReaderAt (e.g. an io.OffsetWriter); without any, Format
	// writes the whole log instead of only its non-zero parts.
	Reader io.ReaderAt
	// Stats, if not nil, receives what Format read, wrote and zeroed.
	Stats *Stats
}

// Stats counts Format's I/O.
type Stats struct {
	Read    int64 // bytes read to find what is not zero already
	Written int64 // bytes sent to the device: metadata, and zeros where it cannot zero itself
	Zeroed  int64 // bytes made zero because they were not (by offload or by writing zeros)
}

// ZeroRanger is a writer that can make a range read as zero without being sent the zeros.
// An *os.File is treated as one (BLKZEROOUT for a block device, fallocate for a regular
// file: what mkfs.xfs uses); a partition section of a device can implement it to the same
// end. Returning an error wrapping errors.ErrUnsupported makes Format write zeros instead.
type ZeroRanger interface {
	ZeroRange(off, n int64) error
}

// wipeLen is what mkfs.xfs zeroes at both ends of the device to erase other signatures.
const wipeLen = 128 << 10

// Format writes an empty XFS filesystem into w, a partition of size bytes.
func Format(w io.WriterAt, size int64, opts Options) error {
	if w == nil {
		return errors.New("xfs: no device to write to")
	}
	if len(opts.Label) > 12 {
		return fmt.Errorf("xfs: label %q is %d bytes long, at most 12 allowed", opts.Label, len(opts.Label))
	}
	ss := opts.SectorSize
	if ss == 0 {
		if ss = deviceSectorSize(w); ss == 512 && opts.Reader != nil {
			ss = deviceSectorSize(opts.Reader)
		}
	}
	g, err := planGeometry(size, ss)
	if err != nil {
		return fmt.Errorf("xfs: %w", err)
	}
	p := params{uuid: opts.UUID, now: opts.Time}
	copy(p.label[:], opts.Label)
	if p.uuid == uuid.Nil {
		if p.uuid, err = uuid.NewRandom(); err != nil {
			return fmt.Errorf("xfs: %w", err)
		}
	}
	if p.now.IsZero() {
		p.now = time.Now()
	}
	l := buildLayout(&g, p)

	r := opts.Reader
	if r == nil {
		r, _ = w.(io.ReaderAt)
	}
	if r != nil {
		// A writer may claim to read and not be able to (repart's partition section over a
		// write-only device): then zero by writing, as mkfs.xfs does.
		if _, err := r.ReadAt(make([]byte, ss), 0); err != nil {
			r = nil
		}
	}
	d := &device{w: w, r: r, size: size, gran: ss, dataRanges: dataRangesFunc(r), zeroOut: zeroFunc(w)}
	if r != nil {
		// Cached pages of a block device may predate writes that bypassed the cache (a
		// filesystem's log writes); reading must see what the kernel will see at mount.
		if err := flushBuffers(r); err != nil {
			return fmt.Errorf("xfs: %w", err)
		}
		var done func()
		d.r, done = directReader(r)
		defer done()
	}
	// Sectors we write anyway need no zeroing first, except the primary superblock's: the old
	// one must be gone before anything else changes.
	for _, pc := range append(l.meta, l.logRec) {
		d.covered = append(d.covered, [2]int64{pc.off, pc.off + int64(len(pc.data))})
	}
	err = format(d, &g, &l)
	if opts.Stats != nil {
		*opts.Stats = d.stats
	}
	if err != nil {
		return fmt.Errorf("xfs: %w", err)
	}
	return nil
}

func format(d *device, g *geometry, l *layout) error {
	// Secondary superblocks of an older XFS with another geometry would survive otherwise and
	// mislead xfs_repair's search for a good superblock (mkfs.xfs zeroes them as well).
	old, err := d.oldSecondaries()
	if err != nil {
		return err
	}
	end := d.size / int64(d.gran) * int64(d.gran)
	if err := d.ensureZero(0, min(wipeLen, end)); err != nil {
		return err
	}
	if err := d.ensureZero(max(0, end-wipeLen), end-max(0, end-wipeLen)); err != nil {
		return err
	}
	for _, off := range old {
		if err := d.ensureZero(off, int64(d.gran)); err != nil {
			return err
		}
	}
	if err := d.ensureZero(l.logOff, l.logLen); err != nil {
		return err
	}
	if err := d.write(append([]piece{l.logRec}, l.meta...)); err != nil {
		return err
	}
	if err := d.sync(); err != nil {
		return err
	}
	if err := d.write([]piece{l.primary}); err != nil {
		return err
	}
	return d.sync()
}

// Geometry summarizes the filesystem Format makes for a size, as mkfs.xfs prints it.
type Geometry struct {
	SectorSize int
	BlockSize  int
	Blocks     uint64 // data blocks (the partition's tail beyond the last full AG is unused)
	AGCount    uint32
	AGBlocks   uint32
	LogBlocks  uint32
}

// Plan returns the geometry Format would use for a partition of size bytes, or the error it
// would return for that size.
func Plan(size int64, sectorSize int) (Geometry, error) {
	g, err := planGeometry(size, sectorSize)
	if err != nil {
		return Geometry{}, fmt.Errorf("xfs: %w", err)
	}
	return Geometry{SectorSize: sectorSize, BlockSize: blockSize, Blocks: g.dblocks, AGCount: g.agCount,
		AGBlocks: g.agBlocks, LogBlocks: g.logBlocks}, nil
}

// SectorSize is the sector size Format picks for w when Options.SectorSize is zero.
func SectorSize(w any) int { return deviceSectorSize(w) }
