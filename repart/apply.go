package repart

import (
	"errors"
	"fmt"
	"io"

	"github.com/piboot/piboot/gpt"
)

// Apply carries out l on a device or image of size bytes: it formats each new partition
// that has Format= (through format, before the partition enters the table, so a cut leaves
// at worst a formatted stretch of free space), writes the GPT crash-safely (backup at the
// real end of the disk, then primary; see gpt.Write) with the new file systems durable
// before the primary table points at them (flushed with the backup copy, one sync less)
// and, for a block device, tells the kernel about the new and grown partitions. It writes nothing outside the new partitions,
// the two GPT copies and the protective MBR. An empty layout writes nothing.
//
// w should also be an io.ReaderAt (so unchanged GPT sectors are not rewritten) and have
// Sync() error (an *os.File has both).
func Apply(w io.WriterAt, size int64, l *Layout, format Formatter) error {
	if l.Empty() {
		return nil
	}
	if size != l.DiskSize {
		return fmt.Errorf("repart: planned for a %d-byte disk, applying to %d bytes", l.DiskSize, size)
	}
	var formats []Partition
	for _, p := range l.Partitions {
		if p.Action != Create || p.Definition == nil {
			continue
		}
		d := p.Definition
		if len(d.CopyFiles) > 0 || len(d.MakeDirectories) > 0 || d.CopyBlocks != "" {
			return fmt.Errorf("repart: %s: CopyFiles=/MakeDirectories=/CopyBlocks= are filled in by the image builder, not by repart.Apply", d.Path)
		}
		if p.Format != "" {
			if format == nil {
				return fmt.Errorf("repart: %s: Format=%s but no formatter given", d.Path, p.Format)
			}
			formats = append(formats, p)
		}
	}
	if len(formats) > 0 && l.Old != nil && !l.Old.Status.PrimaryValid {
		// The table came from a backup copy, which may lie inside a partition about to be
		// formatted (an image's backup on a larger card): first put the old table back in
		// both places, so a cut during formatting still finds it.
		old := l.Old.Clone()
		if err := old.Resize(size); err != nil { // as Plan saw it: usable up to the end
			return fmt.Errorf("repart: %w", err)
		}
		if err := gpt.Write(w, size, old); err != nil {
			return fmt.Errorf("repart: restoring the damaged primary GPT: %w", err)
		}
	}
	for _, p := range formats {
		sec := &section{w: w, off: p.Offset, size: p.Size}
		sec.r, _ = w.(io.ReaderAt)
		req := FormatRequest{
			Format: p.Format, Label: p.Label, UUID: p.FSUUID, SectorSize: l.SectorSize, Offset: p.Offset,
			Name: fmt.Sprintf("partition %d (%s)", p.Index, p.Label),
		}
		if err := format(sec, p.Size, req); err != nil {
			return fmt.Errorf("repart: format %s as %s: %w", req.Name, p.Format, err)
		}
	}
	tw := w
	var b *barrier
	if s, ok := w.(gpt.Syncer); ok && len(formats) > 0 {
		b = &barrier{w: w, s: s, sector: int64(l.SectorSize), pending: true,
			primaryEnd: int64(l.New.FirstUsableLBA) * int64(l.SectorSize)}
		tw = b
		if r, ok := w.(io.ReaderAt); ok {
			tw = readBarrier{b, r} // so gpt.Write still skips unchanged sectors
		}
	}
	if err := gpt.Write(tw, size, l.New); err != nil {
		return fmt.Errorf("repart: %w", err)
	}
	if b != nil && b.pending { // the primary held the new table already: still, durable on return
		if err := b.Sync(); err != nil {
			return fmt.Errorf("repart: sync after formatting: %w", err)
		}
	}
	return notifyKernel(w, l)
}

// barrier passes the GPT writes through and makes the new file systems durable before the
// first write to the primary table (header or entries), which is what makes the new table
// the one a reader takes: until then the primary still holds the old table, which does not
// point at them. gpt.Write syncs after the backup copy, before it touches the primary, so
// normally the file systems are flushed together with the backup and need no sync of their
// own; the barrier syncs first when gpt.Write would not have: the primary is written first
// (it was damaged) or the backup already held the new table (a rerun after a cut right after
// it was written), so gpt.Write had nothing to write there and nothing to sync.
type barrier struct {
	w          io.WriterAt
	s          gpt.Syncer
	primaryEnd int64 // the primary header and entries lie in [sector, primaryEnd)
	sector     int64
	pending    bool // formatted data not yet known durable
}

type readBarrier struct {
	*barrier
	io.ReaderAt
}

func (b *barrier) WriteAt(p []byte, off int64) (int, error) {
	if b.pending && off < b.primaryEnd && off+int64(len(p)) > b.sector {
		if err := b.Sync(); err != nil {
			return 0, fmt.Errorf("sync of the new file systems before the primary table: %w", err)
		}
	}
	return b.w.WriteAt(p, off)
}

func (b *barrier) Sync() error {
	if err := b.s.Sync(); err != nil {
		return err
	}
	b.pending = false
	return nil
}

// ErrKernelNotTold is returned (wrapped) by Apply when the table was written but the kernel
// refused to learn about the new partitions (they appear after a reboot).
var ErrKernelNotTold = errors.New("the partition table is written, but the kernel was not told")

// errOutside is returned for a formatter write beyond its partition.
var errOutside = errors.New("write outside the partition")

// section confines a formatter to its partition: reads and writes at offsets relative to
// the partition start, and nothing past its end.
type section struct {
	w         io.WriterAt
	r         io.ReaderAt
	off, size int64
}

func (s *section) WriteAt(b []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(b)) > s.size {
		return 0, fmt.Errorf("%w: %d bytes at %d of a %d-byte partition", errOutside, len(b), off, s.size)
	}
	return s.w.WriteAt(b, s.off+off)
}

func (s *section) ReadAt(b []byte, off int64) (int, error) {
	if s.r == nil {
		return 0, errors.New("device is not readable")
	}
	if off < 0 || off >= s.size {
		return 0, io.EOF
	}
	n := len(b)
	if rem := s.size - off; int64(n) > rem {
		n = int(rem)
	}
	m, err := s.r.ReadAt(b[:n], s.off+off)
	if err == nil && m < len(b) {
		err = io.EOF
	}
	return m, err
}

// Sync passes through to the device, so formatters can order their own writes.
func (s *section) Sync() error {
	if sy, ok := s.w.(gpt.Syncer); ok {
		return sy.Sync()
	}
	return nil
}
