package repart

import (
	"fmt"
	"os"
	"strings"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/uuid"
)

// Seed picks the seed for partition UUIDs: flag (a UUID, e.g. from --seed, or "random") if not empty, else
// the machine ID in machineIDPath if that file holds one, else the disk's GUID, so that a
// card without a machine ID still gets the same UUIDs on every attempt. It also says which.
func Seed(flag, machineIDPath string, t *gpt.Table) (uuid.UUID, string, error) {
	if flag == "random" {
		return uuid.New(), "random", nil
	}
	if flag != "" {
		u, err := parseID128(flag)
		if err != nil {
			return uuid.Nil, "", fmt.Errorf("repart: seed %q: %w", flag, err)
		}
		return u, "--seed", nil
	}
	if machineIDPath != "" {
		if b, err := os.ReadFile(machineIDPath); err == nil {
			s := strings.TrimSpace(string(b))
			if u, err := parseID128(s); err == nil && len(s) == 32 && u != uuid.Nil {
				return u, machineIDPath, nil
			}
		}
	}
	if t == nil || t.DiskGUID == uuid.Nil {
		return uuid.Nil, "", fmt.Errorf("repart: no seed: no --seed, no machine ID and no disk GUID")
	}
	return t.DiskGUID, "disk GUID", nil
}
