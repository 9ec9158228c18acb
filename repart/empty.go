package repart

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/uuid"
)

// EmptyMode is systemd-repart's --empty=: what to do about a disk without a partition table.
type EmptyMode string

// Modes of --empty=, as systemd-repart 252 has them ("create", which makes a new image file,
// is left to the caller).
const (
	EmptyRefuse  EmptyMode = "refuse"  // a disk without GPT is an error (the default)
	EmptyAllow   EmptyMode = "allow"   // a disk without any partition table gets a new GPT
	EmptyRequire EmptyMode = "require" // only a disk without any partition table, which gets a new GPT
	EmptyForce   EmptyMode = "force"   // a new, empty GPT replaces whatever the disk holds
)

// ParseEmptyMode checks an --empty= value.
func ParseEmptyMode(s string) (EmptyMode, error) {
	switch m := EmptyMode(s); m {
	case EmptyRefuse, EmptyAllow, EmptyRequire, EmptyForce:
		return m, nil
	}
	return "", fmt.Errorf("--empty=%s: want refuse, allow, require or force", s)
}

// NewTable returns the empty table systemd-repart 252 creates (through libfdisk) on a disk of
// size bytes: 128 entries at LBA 2, the usable area from 1 MiB to just before the backup
// entries, and the disk GUID derived from seed.
func NewTable(size int64, sectorSize int, seed uuid.UUID) (*gpt.Table, error) {
	t, err := gpt.New(size, sectorSize, deriveUUID(seed, "disk-uuid"))
	if err != nil {
		return nil, err
	}
	// libfdisk starts the usable area at its alignment, 1 MiB.
	if first := uint64(1<<20) / uint64(sectorSize); first <= t.LastUsableLBA {
		t.FirstUsableLBA = first
	}
	last := uint64(size/int64(sectorSize)) - 1
	t.Status = gpt.Status{PrimaryValid: true, BackupValid: true, MBRValid: true, BackupLBA: last}
	return t, nil
}

// Empty carries out --empty=mode on o.Target before Run: it decides whether the disk needs a
// new partition table and, if so, plans o's definitions on that table in memory. A dry run
// prints that plan and returns done. Otherwise, once the plan is known to fit, it writes the
// new empty table and returns the seed Run must use to make the same plan. Nothing is written
// when the mode refuses the disk or the definitions do not fit.
func Empty(o Options, mode EmptyMode) (seed string, done bool, err error) {
	if mode == EmptyRefuse || mode == "" {
		return o.Seed, false, nil
	}
	out, errw := o.Out, o.Err
	if out == nil {
		out = io.Discard
	}
	if errw == nil {
		errw = io.Discard
	}
	defs, err := ParseDir(o.Definitions, o.Arch)
	if err != nil {
		return "", false, err
	}
	f, err := os.Open(o.Target)
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	size, ss, err := DeviceSize(f)
	if err != nil {
		return "", false, err
	}
	if ss == 0 {
		ss = 512
	}
	old, readErr := gpt.Read(f, size, ss)
	other, err := gpt.Sector0(f)
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", o.Target, err)
	}
	if other == "" {
		if other, err = wholeDiskFS(f); err != nil {
			return "", false, fmt.Errorf("%s: %w", o.Target, err)
		}
	}
	switch {
	case readErr == nil && mode == EmptyAllow:
		return o.Seed, false, nil
	case readErr == nil && mode == EmptyRequire:
		return "", false, fmt.Errorf("%s already has a GPT partition table, refusing (--empty=require), nothing written", o.Target)
	case readErr != nil && mode != EmptyForce && !errors.Is(readErr, gpt.ErrNoGPT):
		return "", false, fmt.Errorf("%s: %w (--empty=force replaces it), nothing written", o.Target, readErr)
	case readErr != nil && mode != EmptyForce && other != "":
		return "", false, fmt.Errorf("%s holds %s, not repartitioning (--empty=force replaces it), nothing written", o.Target, other)
	}
	var s uuid.UUID
	if o.Seed == "random" || o.Seed == "" && !hasMachineID(o.MachineID) {
		// A new disk has no GUID to fall back on: as systemd-repart without a machine ID.
		s = uuid.New()
	} else if s, _, err = Seed(o.Seed, o.MachineID, nil); err != nil {
		return "", false, err
	}
	t, err := NewTable(size, ss, s)
	if err != nil {
		return "", false, fmt.Errorf("%s: %w, nothing written", o.Target, err)
	}
	l, err := Plan(Disk{Size: size, Table: t}, defs, s)
	if err != nil {
		return "", false, fmt.Errorf("%s: %w (nothing written)", o.Target, err)
	}
	what := "no partition table"
	switch {
	case old != nil:
		what = "a GPT partition table"
	case other != "":
		what = other
	}
	l.Repair = append(l.Repair, fmt.Sprintf("new GPT partition table (--empty=%s; the disk held %s)", mode, what))
	if o.DryRun {
		if o.JSON {
			err = l.WriteJSON(out, o.Target)
		} else if err = l.WriteTable(out, o.Target); err == nil {
			fmt.Fprintln(out, "Dry run: nothing written.")
		}
		return s.String(), true, err
	}
	w, err := os.OpenFile(o.Target, os.O_RDWR, 0)
	if err != nil {
		return "", false, err
	}
	defer w.Close()
	if err := lock(w, true); err != nil {
		return "", false, fmt.Errorf("%s: lock: %w", o.Target, err)
	}
	// A clean sector 0: no boot code or file system boot sector left around the new
	// protective MBR for blkid to find.
	if _, err := w.WriteAt(make([]byte, 512), 0); err != nil {
		return "", false, fmt.Errorf("%s: %w", o.Target, err)
	}
	if err := gpt.Write(w, size, t); err != nil {
		return "", false, fmt.Errorf("%s: %w", o.Target, err)
	}
	fmt.Fprintf(errw, "%s: wrote a new GPT partition table (--empty=%s)\n", o.Target, mode)
	return s.String(), false, w.Close()
}

func hasMachineID(path string) bool {
	if path == "" {
		return false
	}
	_, src, err := Seed("", path, &gpt.Table{DiskGUID: uuid.Max})
	return err == nil && src == path
}

// wholeDiskFS names a file system or volume that starts at byte 0 of r ("an ext4 file
// system"), or "". systemd-repart 252 --empty=allow writes a new table over them; asked to
// allow a table on an empty disk, we refuse a disk that is not empty.
func wholeDiskFS(r io.ReaderAt) (string, error) {
	b := make([]byte, 68<<10)
	n, err := r.ReadAt(b, 0)
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read the start of the disk: %w", err)
	}
	b = b[:n]
	at := func(off int, magic string) bool {
		return off+len(magic) <= len(b) && string(b[off:off+len(magic)]) == magic
	}
	switch {
	case at(0x438, "\x53\xEF"):
		return "an ext2/3/4 file system", nil
	case at(0, "XFSB"):
		return "an XFS file system", nil
	case at(0x10040, "_BHRfS_M"):
		return "a btrfs file system", nil
	case at(0, "hsqs"):
		return "a squashfs file system", nil
	case at(0, "LUKS\xba\xbe"):
		return "a LUKS volume", nil
	case at(4086, "SWAPSPACE2"), at(4086, "SWAP-SPACE"):
		return "swap space", nil
	case at(0x8001, "CD001"):
		return "an ISO 9660 file system", nil
	}
	return "", nil
}
