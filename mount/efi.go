package mount

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf16"

	"github.com/piboot/piboot/internal/uuid"
)

// LoaderVar is the efivarfs file in which systemd-boot records the PARTUUID of the
// partition it was loaded from.
const LoaderVar = "LoaderDevicePartUUID-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"

// ParseLoaderDevicePartUUID decodes an efivarfs file: 4 bytes of attributes, then the
// UUID as a NUL-terminated UTF-16LE string.
func ParseLoaderDevicePartUUID(b []byte) (uuid.UUID, error) {
	if len(b) < 4 || (len(b)-4)%2 != 0 {
		return uuid.Nil, fmt.Errorf("LoaderDevicePartUUID: %d bytes is not attributes + UTF-16", len(b))
	}
	u := make([]uint16, 0, (len(b)-4)/2)
	for i := 4; i+1 < len(b); i += 2 {
		c := uint16(b[i]) | uint16(b[i+1])<<8
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	s := strings.TrimSpace(string(utf16.Decode(u)))
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("LoaderDevicePartUUID %q: %w", s, err)
	}
	return id, nil
}

// LoaderDevicePartUUID reads the variable from efivarsDir
// ("/sys/firmware/efi/efivars"); ok is false when it is not set (no UEFI, no
// systemd-boot, efivarfs not mounted).
func LoaderDevicePartUUID(efivarsDir string) (id uuid.UUID, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(efivarsDir, LoaderVar))
	if os.IsNotExist(err) {
		return uuid.Nil, false, nil
	}
	if err != nil {
		return uuid.Nil, false, err
	}
	id, err = ParseLoaderDevicePartUUID(b)
	return id, err == nil, err
}
