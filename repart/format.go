// Package repart implements systemd-repart's semantics: it parses repart.d partition
// definitions, plans (purely, without I/O) how an existing GPT disk must change to satisfy
// them, and applies such a plan crash-safely through an io.WriterAt.
package repart

import (
	"io"

	"github.com/piboot/piboot/internal/uuid"
)

// FormatRequest says which filesystem to create in a new partition before the partition
// enters the table.
type FormatRequest struct {
	Format     string    // the repart.d Format= value: "ext4", "vfat", "xfs", ...
	Label      string    // filesystem label (the partition label, as systemd-repart does)
	UUID       uuid.UUID // filesystem UUID, derived like systemd-repart derives it
	SectorSize int       // logical sector size of the disk, 512 or 4096
	Offset     int64     // the partition's start on the disk in bytes (FAT's hidden sectors)
	Name       string    // human name of the partition for error messages, e.g. "/dev/mmcblk0p4 (root)"
}

// Formatter writes an empty filesystem described by req into w, a partition of size bytes.
// It must not write outside [0, size). Unsupported formats return an error naming req.Format.
type Formatter func(w io.WriterAt, size int64, req FormatRequest) error
