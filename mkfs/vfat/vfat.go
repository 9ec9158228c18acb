// Package vfat writes FAT filesystems (FAT32, or FAT16 where FAT32 is too small) from an fs.FS,
// for EFI system partitions built without root, loop devices or mkfs.vfat.
//
// The layout is mkfs.fat's (dosfstools 4.2) for the same size with `-F 32`, which is what
// systemd-repart runs for Format=vfat: 2 FATs, media 0xF8, 32 reserved sectors with the
// FSInfo sector at 1 and the backup boot sector at 6, cluster size 512 B up to 260 MiB,
// 4 KiB up to 8 GiB, 8/16/32 KiB above, and reserved sectors and FAT length rounded to whole
// clusters. FAT32 needs at least 65529 clusters: with 512-byte sectors that is 34091520 bytes
// (32.52 MiB; 33 MiB is FAT32), with 4096-byte sectors 269062144 bytes (256.6 MiB). Below
// that the filesystem is FAT16 with mkfs.fat's FAT16 parameters (4 sectors per cluster, a
// 512-entry root directory that grows if the root holds more), down to 2.03 MiB (512-byte
// sectors) or 16 MiB (4096); smaller sizes are an error. Options.FAT forces a type.
//
// The content is written in one pass: directories first in each subtree (preorder), each
// file contiguous, entries sorted by name, every timestamp equal to Options.Time, so two builds
// of the same tree are byte-identical. Long names get VFAT long-name entries; short names are
// generated like Linux and mtools do (BASE~N). Only metadata, directory clusters and file
// data are written: free clusters keep whatever the device held, which FAT never reads.
//
// Names FAT cannot hold are errors naming the path, never silently changed: characters
// Windows and Linux refuse, trailing dots and spaces, names differing only in case, more
// than 255 UTF-16 units; so are files of 4 GiB or more and directories of more than 65536
// entries (long-name entries, "." and ".." included).
//
// Overlay composes the content from several fs.FS (a directory, a firmware zip, files built
// in memory) without copying anything to disk.
//
// Open reads FAT12, FAT16 and FAT32 filesystems (ours, mkfs.fat's, Windows') as an fs.FS,
// for inspecting an ESP without mounting it.
package vfat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/piboot/piboot/internal/sha2"
	"github.com/piboot/piboot/internal/uuid"
)

// DefaultEpoch is the timestamp of every entry when neither Options.Time nor SOURCE_DATE_EPOCH
// is set: 1980-01-01 00:00:00, the first instant FAT can store.
var DefaultEpoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// Options describe the filesystem to write. The zero value is a valid empty FAT32 (or FAT16)
// filesystem with 512-byte sectors.
type Options struct {
	// Label is the volume label: at most 11 characters of printable ASCII without
	// *?.,;:/\|+=<>[]" (stored upper-cased, as Windows does). Empty means "NO NAME".
	// MangleLabel turns any string (e.g. a partition label) into a valid one.
	Label string
	// VolumeID is the 32-bit volume serial number. Zero derives it from UUID the way
	// systemd-repart does (its first four bytes, big-endian), or, when UUID is nil too,
	// from a hash of the label, timestamp and size, so it is reproducible either way.
	VolumeID uint32
	UUID     uuid.UUID
	// SectorSize is the logical sector size: 512 (default), 1024, 2048 or 4096.
	SectorSize int
	// HiddenSectors is the partition's start in logical sectors, as recorded in the boot
	// sector (some firmware and Windows want it; Linux ignores it).
	HiddenSectors uint32
	// FAT forces the FAT type: 16 or 32. Zero picks FAT32 where the size allows it.
	FAT int
	// ClusterSize forces the cluster size in bytes (a power of two up to 64 KiB). Zero picks
	// mkfs.fat's.
	ClusterSize int
	// Time stamps every directory entry. Zero means $SOURCE_DATE_EPOCH if set, else
	// DefaultEpoch. Times before 1980 are stored as 1980-01-01, after 2107 as 2107-12-31.
	Time time.Time
	// Root is the content: every directory and regular file (symlinks are followed) is
	// copied. Nil makes an empty filesystem.
	Root fs.FS
	// TargetZeroed promises that w reads as zeros (a new sparse file), so runs of zeros are
	// skipped instead of written.
	TargetZeroed bool
}

// FitError reports a tree that does not fit the filesystem.
type FitError struct {
	Path      string // the first file or directory that did not fit
	Bytes     int64  // its size
	Size      int64  // the filesystem size
	Capacity  int64  // bytes of data clusters the filesystem has
	Needed    int64  // bytes of clusters the whole tree needs at this cluster size
	MinSize   int64  // the smallest filesystem that holds the tree (0 if unknown)
	geometryS string
}

func (e *FitError) Error() string {
	s := fmt.Sprintf("%s (%d bytes) does not fit: the tree needs %d bytes of clusters, the %d-byte filesystem (%s) has %d",
		e.Path, e.Bytes, e.Needed, e.Size, e.geometryS, e.Capacity)
	if e.MinSize > 0 {
		s += fmt.Sprintf("; it needs a filesystem of at least %d bytes (%d MiB)", e.MinSize, e.MinSize>>20)
	}
	return s
}

// Format writes a FAT filesystem of size bytes holding opts.Root to w. It writes nothing
// outside [0, size), and nothing at all when the tree cannot be read or does not fit.
func Format(w io.WriterAt, size int64, opts Options) error {
	p, err := plan(size, opts)
	if err != nil {
		return fmt.Errorf("vfat: %w", err)
	}
	t := &target{w: w, size: size, zeroed: opts.TargetZeroed}
	if err := p.write(t, opts.Root); err != nil {
		return fmt.Errorf("vfat: %w", err)
	}
	return nil
}

// MinSize returns the smallest size, a whole number of MiB, of a filesystem made with opts
// (opts.Root is the tree) that holds the tree.
func MinSize(opts Options) (int64, error) {
	ss, err := opts.check()
	if err != nil {
		return 0, fmt.Errorf("vfat: %w", err)
	}
	_, hasLbl, err := parseLabel(opts.Label)
	if err != nil {
		return 0, fmt.Errorf("vfat: %w", err)
	}
	root, err := readTree(opts.Root)
	if err != nil {
		return 0, fmt.Errorf("vfat: %w", err)
	}
	if err := root.addLabel(hasLbl); err != nil {
		return 0, fmt.Errorf("vfat: %w", err)
	}
	n, err := minSize(root, opts, ss)
	if err != nil {
		return 0, fmt.Errorf("vfat: %w", err)
	}
	return n, nil
}

func minSize(root *node, opts Options, ss int) (int64, error) {
	var total int64
	_ = walk(root, func(n *node) error {
		if n.dir {
			total += int64(n.dirSlots) * direntSize
		} else {
			total += n.size
		}
		return nil
	})
	limit := int64(0xFFFFFFFF) * int64(ss)
	// Whether a tree fits is monotonic within one FAT type and cluster size but not across
	// them (bigger filesystems get bigger clusters and more slack), so scan upward from the
	// data size in MiB steps; FAT overhead is a few percent, so the scan is short.
	needs := map[[2]int]uint64{} // by FAT type and cluster size
	for s := max(total>>20, 1) << 20; s <= limit; s += 1 << 20 {
		g, err := layout(s, ss, opts.FAT, opts.ClusterSize, root.dirSlots)
		if err != nil {
			continue
		}
		k := [2]int{g.fatType, int(g.clusterBytes())}
		need, ok := needs[k]
		if !ok {
			need = clustersNeeded(root, g)
			needs[k] = need
		}
		if need <= uint64(g.clusters) {
			return s, nil
		}
	}
	return 0, fmt.Errorf("the tree (%d bytes) does not fit the largest FAT filesystem with %d-byte sectors", total, ss)
}

func clustersNeeded(root *node, g geometry) uint64 {
	cb := g.clusterBytes()
	var need uint64
	_ = walk(root, func(n *node) error {
		need += uint64(nodeClusters(n, n == root, g, cb))
		return nil
	})
	return need
}

// nodeClusters is the number of clusters n occupies: directories at least one (FAT16's root
// none: it has its own region), empty files none.
func nodeClusters(n *node, isRoot bool, g geometry, cb int64) uint32 {
	if n.dir {
		if isRoot && g.fatType == 16 {
			return 0
		}
		slots := n.dirSlots
		if isRoot {
			slots = max(slots, 1)
		}
		return uint32((int64(slots)*direntSize + cb - 1) / cb)
	}
	return uint32((n.size + cb - 1) / cb)
}

// fsPlan is everything Format decided before writing a byte.
type fsPlan struct {
	g       geometry
	root    *node
	used    uint32 // clusters allocated
	volID   uint32
	label   [11]byte
	hasLbl  bool
	stamp   dosTime
	hidden  uint32
	byOrder []*node // nodes with clusters, in cluster order
}

func plan(size int64, opts Options) (*fsPlan, error) {
	ss, err := opts.check()
	if err != nil {
		return nil, err
	}
	lbl, hasLbl, err := parseLabel(opts.Label)
	if err != nil {
		return nil, err
	}
	ts, err := opts.timestamp()
	if err != nil {
		return nil, err
	}
	root, err := readTree(opts.Root)
	if err != nil {
		return nil, err
	}
	if err := root.addLabel(hasLbl); err != nil {
		return nil, err
	}
	g, err := layout(size, ss, opts.FAT, opts.ClusterSize, root.dirSlots)
	if err != nil {
		return nil, err
	}
	p := &fsPlan{g: g, root: root, label: lbl, hasLbl: hasLbl, stamp: toDOSTime(ts),
		hidden: opts.HiddenSectors}
	if g.fatType == 16 && root.dirSlots > g.rootEntries {
		return nil, fmt.Errorf("the root directory needs %d entries, the FAT16 root has %d", root.dirSlots, g.rootEntries)
	}
	p.volID = opts.VolumeID
	if p.volID == 0 {
		if opts.UUID != uuid.Nil {
			p.volID = binary.BigEndian.Uint32(opts.UUID[:4])
		} else {
			h := sha2.Sum256([]byte(fmt.Sprintf("piboot vfat\x00%s\x00%d\x00%d", opts.Label, ts.Unix(), size)))
			p.volID = binary.LittleEndian.Uint32(h[:4])
		}
	}

	cb := g.clusterBytes()
	next := uint32(2)
	err = walk(root, func(n *node) error {
		k := nodeClusters(n, n == root, g, cb)
		if k == 0 {
			return nil
		}
		if uint64(next-2)+uint64(k) > uint64(g.clusters) {
			bytes := n.size
			if n.dir {
				bytes = int64(n.dirSlots) * direntSize
			}
			fe := &FitError{Path: n.path, Bytes: bytes, Size: size, geometryS: g.String(),
				Capacity: int64(g.clusters) * cb, Needed: int64(clustersNeeded(root, g)) * cb}
			if m, err := minSize(root, opts, ss); err == nil {
				fe.MinSize = m
			}
			return fe
		}
		n.first, n.nclust = next, k
		next += k
		p.byOrder = append(p.byOrder, n)
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.used = next - 2
	return p, nil
}

// check validates the options that do not depend on the size and returns the sector size.
func (o Options) check() (int, error) {
	ss := o.SectorSize
	if ss == 0 {
		ss = 512
	}
	if o.FAT != 0 && o.FAT != 16 && o.FAT != 32 {
		return 0, fmt.Errorf("FAT type %d: want 16 or 32 (or 0 to choose)", o.FAT)
	}
	return ss, checkSizes(ss, o.ClusterSize)
}

func (o Options) timestamp() (time.Time, error) {
	if !o.Time.IsZero() {
		return o.Time, nil
	}
	if v, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); ok && v != "" {
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", v)
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	return DefaultEpoch, nil
}

const labelInvalid = "*?.,;:/\\|+=<>[]\""

// parseLabel validates a volume label and returns its on-disk form.
func parseLabel(l string) (out [11]byte, has bool, err error) {
	if l == "" {
		return pack83("NO NAME", ""), false, nil
	}
	if len(l) > 11 {
		return out, false, fmt.Errorf("label %q is longer than 11 characters", l)
	}
	if l[0] == ' ' {
		return out, false, fmt.Errorf("label %q starts with a space", l)
	}
	for _, r := range l {
		if r < 0x20 || r > 0x7e || strings.ContainsRune(labelInvalid, r) {
			return out, false, fmt.Errorf("label %q: character %q is not allowed in FAT labels", l, r)
		}
	}
	u := strings.ToUpper(l)
	if strings.TrimRight(u, " ") == "NO NAME" {
		return pack83("NO NAME", ""), false, nil
	}
	copy(out[:], u+"           ") // all 11 bytes: a label has no 8.3 split
	return out, true, nil
}

// MangleLabel turns any string into a valid FAT label: upper case, characters FAT does not
// allow replaced by '_', cut to 11 characters (systemd-repart did the same before it started
// passing labels through unchanged).
func MangleLabel(s string) string {
	var b []byte
	for _, r := range strings.ToUpper(s) {
		if len(b) == 11 {
			break
		}
		if r < 0x20 || r > 0x7e || strings.ContainsRune(labelInvalid, r) {
			r = '_'
		}
		b = append(b, byte(r))
	}
	return strings.TrimLeft(string(b), " ")
}

// dosTime is a timestamp in FAT's encoding.
type dosTime struct {
	date, time uint16
	centis     byte // creation time, 10 ms units within the 2 s of time
}

func toDOSTime(t time.Time) dosTime {
	t = t.UTC()
	switch {
	case t.Year() < 1980:
		t = DefaultEpoch
	case t.Year() > 2107:
		t = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
	}
	return dosTime{
		date:   uint16((t.Year()-1980)<<9 | int(t.Month())<<5 | t.Day()),
		time:   uint16(t.Hour()<<11 | t.Minute()<<5 | t.Second()/2),
		centis: byte(t.Second()%2*100 + t.Nanosecond()/10_000_000),
	}
}

var errOutside = errors.New("write outside the filesystem")
