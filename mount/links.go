package mount

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// escapeLink makes a partition label usable as a file name the way udev does.
func escapeLink(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '/' || r == '\\' || r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// PartLinks creates devDir/disk/by-partlabel/<label> and by-partuuid/<uuid> links for
// the partitions of d, as udev would, replacing links left from an earlier call (after
// repartitioning). It returns the label links made.
func PartLinks(devDir, sysfsDir string, d Disk) ([]string, error) {
	var made []string
	for _, kind := range []string{"by-partlabel", "by-partuuid"} {
		if err := os.MkdirAll(filepath.Join(devDir, "disk", kind), 0o755); err != nil {
			return nil, err
		}
	}
	names := PartitionNames(sysfsDir, d.Name)
	for _, p := range d.Parts {
		target := filepath.Join("..", "..", names.Name(p.Index))
		links := []string{filepath.Join(devDir, "disk", "by-partuuid", p.UUID.String())}
		if p.Label != "" {
			links = append(links, filepath.Join(devDir, "disk", "by-partlabel", escapeLink(p.Label)))
		}
		for _, l := range links {
			if err := os.Remove(l); err != nil && !os.IsNotExist(err) {
				return nil, err
			}
			if err := os.Symlink(target, l); err != nil {
				return nil, err
			}
		}
		if p.Label != "" {
			made = append(made, links[1])
		}
	}
	return made, nil
}
