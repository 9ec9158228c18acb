package images

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"

	"github.com/piboot/piboot/internal/uuid"
)

// Layout constants of a built image. Partitions start on 1 MiB boundaries (SD cards erase in
// 4 MiB units or less; every partitioning tool does this) and are multiples of 4 KiB, as
// systemd-repart's grain.
const (
	SectorSize = 512
	Align      = 1 << 20
	Grain      = 4096
	// gptTail is the space after the last partition: the backup entries and header.
	gptTail = 33 * SectorSize
)

// Part is one partition to plan: a build-time repart.d definition with what its content needs.
type Part struct {
	Definition string    // the repart.d file, for messages (e.g. 20-nix-store.conf)
	Type       uuid.UUID // partition type GUID
	Label      string
	UUID       uuid.UUID // zero: derived from the seed and the label
	Flags      uint64    // GPT attribute bits
	MinSize    int64     // SizeMinBytes= (0: none)
	MaxSize    int64     // SizeMaxBytes= (0: none)
	Need       int64     // bytes the content needs (0: empty partition)
}

// Placed is a planned partition.
type Placed struct {
	Part
	Index  int   // 1-based GPT slot
	Offset int64 // byte offset in the image
	Size   int64
}

// SizeFor returns the size of p given that its content needs need bytes: at least MinSize
// and need, rounded up to the grain, and an error naming the definition if that exceeds MaxSize.
func SizeFor(p Part, need int64) (int64, error) {
	size := max(p.MinSize, need, Grain)
	size = (size + Grain - 1) / Grain * Grain
	if p.MaxSize > 0 {
		if need > p.MaxSize {
			return 0, fmt.Errorf("%s: content needs %d bytes, more than SizeMaxBytes=%d", p.Definition, need, p.MaxSize)
		}
		if size > p.MaxSize {
			// MinSize > MaxSize was rejected when parsing; rounding up may not cross the max.
			size = p.MaxSize / Grain * Grain
		}
	}
	return size, nil
}

// NextOffset returns where a partition after one ending at end starts.
func NextOffset(end int64) int64 { return (end + Align - 1) / Align * Align }

// FirstOffset is where the first partition starts (after the MBR and the primary GPT).
const FirstOffset = Align

// Plan places parts one after another and returns them with the image size: the end of the
// last partition plus the backup GPT, nothing more.
func Plan(parts []Part) ([]Placed, int64, error) {
	var out []Placed
	off := int64(FirstOffset)
	for i, p := range parts {
		size, err := SizeFor(p, p.Need)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, Placed{Part: p, Index: i + 1, Offset: off, Size: size})
		off = NextOffset(off + size)
	}
	if len(out) == 0 {
		return nil, 0, fmt.Errorf("no partitions defined")
	}
	last := out[len(out)-1]
	return out, ImageSize(last.Offset + last.Size), nil
}

// ImageSize is the size of an image whose last partition ends at end.
func ImageSize(end int64) int64 {
	return (end + gptTail + Grain - 1) / Grain * Grain
}

// Seed is the key from which an image's GUIDs are derived.
type Seed [32]byte

// NewSeed derives the seed from a string (the image's Seed=, or its id and version): two
// builds of the same image get the same GUIDs, different images different ones.
func NewSeed(s string) Seed { return sha256.Sum256([]byte("piboot image seed\x00" + s)) }

// GUID derives a version-4-shaped GUID for what (e.g. "disk", "partition:nix-store_v0"), the
// way systemd-repart derives its UUIDs from --seed: HMAC-SHA256 keyed by the seed.
func (s Seed) GUID(what string) uuid.UUID {
	m := hmac.New(sha256.New, s[:])
	m.Write([]byte(what))
	var u uuid.UUID
	copy(u[:], m.Sum(nil))
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}
