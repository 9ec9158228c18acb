// Package mkfs connects the filesystem writers to repart: ForRepart is the one
// repart.Formatter that the piboot CLI and piboot-init hand to repart.Apply.
package mkfs

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/piboot/piboot/mkfs/ext4"
	"github.com/piboot/piboot/mkfs/vfat"
	"github.com/piboot/piboot/mkfs/xfs"
	"github.com/piboot/piboot/repart"
)

// ForRepart writes the empty filesystem req asks for into w, a partition of size bytes. It
// is a repart.Formatter.
func ForRepart(w io.WriterAt, size int64, req repart.FormatRequest) error {
	format, ok := formats[req.Format]
	if !ok {
		return fmt.Errorf("%s: Format=%s is not supported (supported: %s)", req.Name, req.Format, supported())
	}
	if format == nil {
		return fmt.Errorf("%s: Format=%s is not supported yet", req.Name, req.Format)
	}
	if err := format(w, size, req); err != nil {
		return fmt.Errorf("%s: Format=%s: %w", req.Name, req.Format, err)
	}
	return nil
}

// supported lists the formats with a writer, for messages.
func supported() string {
	var l []string
	for name, f := range formats {
		if f != nil {
			l = append(l, name)
		}
	}
	sort.Strings(l)
	return strings.Join(l, ", ")
}

// formats maps a repart.d Format= value to its writer; a new filesystem is one entry here,
// and a nil writer marks a format that is planned but not there yet.
var formats = map[string]func(w io.WriterAt, size int64, req repart.FormatRequest) error{
	"ext4": formatExt4,
	"vfat": formatVfat,
	"xfs":  formatXFS,
}

func formatExt4(w io.WriterAt, size int64, req repart.FormatRequest) error {
	return ext4.Format(w, size, ext4.Options{
		Label: truncateLabel(req.Label, 16), // mkfs.ext4 -L truncates the same way
		UUID:  req.UUID,
		// Derived from the UUID (itself derived from repart's seed), so that the same
		// definitions and seed give the same filesystem, as systemd-repart's -E hash_seed=.
		HashSeed:    req.UUID,
		SectorSize:  req.SectorSize,
		ResizeLimit: Ext4ResizeLimit(size),
	})
}

// growthLimit is how far online growth through the resize inode reaches for a filesystem
// piboot makes: 2 TiB, the largest SD card (SDXC).
const growthLimit = 2 << 40

// Ext4ResizeLimit returns ext4.Options.ResizeLimit for an ext4 of size bytes made by repart
// on first boot, and by `piboot mkfs ext4` unless told otherwise.
// The descriptor blocks reserved for online growth are the resize inode's indirect blocks and
// must be written: mke2fs reserves for growth to 1024 times the size (at most 16 TiB), 4 MiB
// from 8 GiB up, most of what formatting writes, and on an SD card writing 10-20 MB/s,
// 200-400 ms of the first boot. The partition repart formats fills the card, so it reserves
// for growth to growthLimit, which is about 1 MiB. Growing further still works: online the
// kernel converts the filesystem to meta_bg, offline resize2fs makes room (mkfs/ext4's tests).
// Where mke2fs's reserve reaches less far, or the partition is already half of growthLimit or
// more, mke2fs's reserve is kept (0).
func Ext4ResizeLimit(size int64) int64 {
	if size > growthLimit/1024 && size <= growthLimit/2 {
		return growthLimit
	}
	return 0
}

// hiddenSectors is FAT's count of sectors before the partition, which firmware that boots
// from a FAT partition uses to find it on the disk.
func hiddenSectors(req repart.FormatRequest) uint32 {
	if req.SectorSize <= 0 || req.Offset <= 0 {
		return 0
	}
	return uint32(req.Offset / int64(req.SectorSize))
}

func formatVfat(w io.WriterAt, size int64, req repart.FormatRequest) error {
	return vfat.Format(w, size, vfat.Options{
		Label:         vfat.MangleLabel(req.Label),
		UUID:          req.UUID,
		SectorSize:    req.SectorSize,
		HiddenSectors: hiddenSectors(req),
	})
}

// formatXFS makes what systemd-repart's mkfs.xfs call makes. w (repart's partition section)
// also reads, so the log is only written where it is not zero already.
func formatXFS(w io.WriterAt, size int64, req repart.FormatRequest) error {
	return xfs.Format(w, size, xfs.Options{
		Label:      truncateLabel(req.Label, 12), // systemd truncates XFS labels to 12 bytes
		UUID:       req.UUID,
		SectorSize: req.SectorSize,
	})
}

// truncateLabel cuts s to at most n bytes without splitting a UTF-8 character.
func truncateLabel(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
