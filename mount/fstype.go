package mount

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// ProbeFS names the filesystem whose superblock starts the device r, as mount(2) wants
// it: "ext4", "xfs", "squashfs", "erofs", "vfat", "btrfs"; an error when none is found.
func ProbeFS(r io.ReaderAt) (string, error) {
	b := make([]byte, 68*1024)
	n, err := r.ReadAt(b, 0)
	if n < 4096 {
		return "", fmt.Errorf("probe filesystem: read %d bytes: %v", n, err)
	}
	b = b[:n]
	switch {
	case bytes.Equal(b[0:4], []byte("hsqs")):
		return "squashfs", nil
	case bytes.Equal(b[0:4], []byte("XFSB")):
		return "xfs", nil
	case binary.LittleEndian.Uint16(b[1024+56:]) == 0xEF53:
		// ext2/3 superblocks mount with the ext4 driver too.
		return "ext4", nil
	case binary.LittleEndian.Uint32(b[1024:]) == 0xE0F5E1E2:
		return "erofs", nil
	case len(b) >= 0x10040+8 && bytes.Equal(b[0x10040:0x10048], []byte("_BHRfS_M")):
		return "btrfs", nil
	case b[510] == 0x55 && b[511] == 0xAA && (bytes.Equal(b[0x52:0x57], []byte("FAT32")) || bytes.Equal(b[0x36:0x39], []byte("FAT"))):
		return "vfat", nil
	}
	return "", fmt.Errorf("no known filesystem (ext4, xfs, squashfs, erofs, btrfs, vfat)")
}
