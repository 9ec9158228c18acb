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
		HashSeed:   req.UUID,
		SectorSize: req.SectorSize,
	})
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
