package mount

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/piboot/piboot/gpt"
)

// ReadGPT returns a TableReader that reads a disk's GPT through its node in devDir.
func ReadGPT(devDir string) TableReader {
	return func(d BlockDev) ([]Part, error) {
		t, err := ReadTable(devDir, d)
		if err != nil {
			return nil, err
		}
		return PartsOf(t), nil
	}
}

// ReadTable reads d's GPT through its node in devDir; errors name the node.
func ReadTable(devDir string, d BlockDev) (*gpt.Table, error) {
	p := filepath.Join(devDir, d.Name)
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := gpt.Read(f, d.Size, d.SectorSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return t, nil
}

// PartsOf converts a GPT into the partitions this package works with.
func PartsOf(t *gpt.Table) []Part {
	parts := make([]Part, 0, len(t.Partitions))
	for _, p := range t.Partitions {
		parts = append(parts, Part{Index: p.Index, Label: p.Name, UUID: p.UUID, Type: p.Type,
			Start: int64(p.FirstLBA) * int64(t.SectorSize), Size: p.Size(t.SectorSize)})
	}
	return parts
}
