package repart

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// PartitionNode names partition n of a disk as libfdisk (and so systemd-repart) does: a "p"
// after a name ending in a digit (/dev/mmcblk0p3, /dev/nvme0n1p3, card2p3), "-part" after
// udev's by-id and by-path links (/dev/disk/by-id/usb-…-0:0-part3), else the number
// (/dev/sda3, disk.img3).
func PartitionNode(disk string, n int) string {
	switch {
	case strings.HasPrefix(disk, "/dev/disk/by-id/") || strings.HasPrefix(disk, "/dev/disk/by-path/"):
		return fmt.Sprintf("%s-part%d", disk, n)
	case disk != "" && disk[len(disk)-1] >= '0' && disk[len(disk)-1] <= '9':
		return fmt.Sprintf("%sp%d", disk, n)
	}
	return fmt.Sprintf("%s%d", disk, n)
}

// WriteTable prints the layout as systemd-repart does: one row per partition with its size
// and padding change, then the sums and what will happen.
func (l *Layout) WriteTable(w io.Writer, disk string) error {
	rows := make([][]string, 0, len(l.Partitions)+2)
	rows = append(rows, []string{"TYPE", "LABEL", "UUID", "FILE", "NODE", "OFFSET", "SIZE", "PADDING", "ACTIVITY"})
	var sumSize, sumPad uint64
	for _, p := range l.Partitions {
		file := "-"
		if p.Definition != nil {
			file = p.Definition.Name()
		}
		label := p.Label
		if label == "" {
			label = "-"
		}
		old := uint64(p.OldSize)
		if p.Action == Create {
			old = Unset
		}
		oldPad := uint64(p.OldPadding)
		if p.Action == Create {
			oldPad = Unset
		}
		sumSize += uint64(p.Size)
		sumPad += uint64(p.Padding)
		rows = append(rows, []string{p.TypeName, label, p.UUID.String(), file, PartitionNode(disk, p.Index),
			strconv.FormatInt(p.Offset, 10), sizeChange(old, uint64(p.Size)), sizeChange(oldPad, uint64(p.Padding)), string(p.Action)})
	}
	rows = append(rows, []string{"", "", "", "", "", "", "Σ = " + formatBytes(sumSize), "Σ = " + formatBytes(sumPad), ""})
	if err := writeColumns(w, rows); err != nil {
		return err
	}
	for _, d := range l.Dropped {
		fmt.Fprintf(w, "dropped (does not fit, Priority=%d): %s\n", d.Priority, d.Path)
	}
	for _, r := range l.Repair {
		fmt.Fprintf(w, "repair: %s\n", r)
	}
	if l.Empty() {
		_, err := fmt.Fprintln(w, "No changes.")
		return err
	}
	return nil
}

// writeColumns writes rows of cells, all rows with the same number of cells, as
// text/tabwriter with padding 1 writes them when each cell but a row's last ends in a tab:
// every cell but the last padded with spaces to one more than the widest in its column
// (counted in runes), the last as it is. One buffer, sized up front: tabwriter's growing
// buffers and cell lists were a dozen fresh pages of a repart run.
func writeColumns(w io.Writer, rows [][]string) error {
	if len(rows) == 0 {
		return nil
	}
	widths := make([]int, len(rows[0])-1)
	line := 0 // bytes of a line, but for the last cell and multi-byte runes
	for _, r := range rows {
		for i, c := range r[:len(r)-1] {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, wd := range widths {
		line += wd + 1
	}
	b := make([]byte, 0, len(rows)*(line+16))
	for _, r := range rows {
		for i, c := range r[:len(r)-1] {
			b = append(b, c...)
			for n := widths[i] + 1 - utf8.RuneCountInString(c); n > 0; n-- {
				b = append(b, ' ')
			}
		}
		b = append(b, r[len(r)-1]...)
		b = append(b, '\n')
	}
	_, err := w.Write(b)
	return err
}

func sizeChange(from, to uint64) string {
	switch {
	case from == Unset:
		return "→ " + formatBytes(to)
	case from == to:
		return formatBytes(from)
	default:
		return formatBytes(from) + " → " + formatBytes(to)
	}
}

// jsonPartition is one row of the JSON output, with systemd's field names where they exist.
type jsonPartition struct {
	Type       string `json:"type"`
	TypeUUID   string `json:"type_uuid"`
	Label      string `json:"label"`
	UUID       string `json:"uuid"`
	File       string `json:"file,omitempty"`
	Node       string `json:"node"`
	Partno     int    `json:"partno"`
	Offset     int64  `json:"offset"`
	OldSize    int64  `json:"old_size"`
	RawSize    int64  `json:"raw_size"`
	OldPadding int64  `json:"old_padding"`
	RawPadding int64  `json:"raw_padding"`
	Attributes uint64 `json:"attributes"`
	Activity   Action `json:"activity"`
	Format     string `json:"format,omitempty"`
	FSUUID     string `json:"fs_uuid,omitempty"`
}

// WriteJSON prints the layout as a JSON object: the partitions, whether anything changes,
// the dropped definitions and the repairs.
func (l *Layout) WriteJSON(w io.Writer, disk string) error {
	out := struct {
		Disk       string          `json:"disk"`
		Size       int64           `json:"size"`
		SectorSize int             `json:"sector_size"`
		Changed    bool            `json:"changed"`
		Empty      bool            `json:"empty"`
		Partitions []jsonPartition `json:"partitions"`
		Dropped    []string        `json:"dropped,omitempty"`
		Repair     []string        `json:"repair,omitempty"`
	}{Disk: disk, Size: l.DiskSize, SectorSize: l.SectorSize, Changed: l.Changed, Empty: l.Empty(), Repair: l.Repair}
	for _, p := range l.Partitions {
		j := jsonPartition{Type: p.TypeName, TypeUUID: p.Type.String(), Label: p.Label, UUID: p.UUID.String(),
			Node: PartitionNode(disk, p.Index), Partno: p.Index - 1, Offset: p.Offset, OldSize: p.OldSize, RawSize: p.Size,
			OldPadding: p.OldPadding, RawPadding: p.Padding, Attributes: p.Attributes, Activity: p.Action, Format: p.Format}
		if p.Definition != nil {
			j.File = p.Definition.Name()
		}
		if p.Format != "" {
			j.FSUUID = p.FSUUID.String()
		}
		out.Partitions = append(out.Partitions, j)
	}
	for _, d := range l.Dropped {
		out.Dropped = append(out.Dropped, d.Path)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
