package images

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/piboot/piboot/internal/testutil"
)

// TestFATReader reads back files that mkfs.vfat and mtools wrote, for every FAT type.
func TestFATReader(t *testing.T) {
	testutil.Need(t, "mkfs.vfat", "mmd", "mcopy")
	dir := t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcdef"), 40000)
	os.WriteFile(filepath.Join(dir, "big"), big, 0o644)
	os.WriteFile(filepath.Join(dir, "small"), []byte("timeout 0\n"), 0o644)
	for _, c := range []struct{ fat, kib string }{{"12", "4096"}, {"16", "65536"}, {"32", "102400"}} {
		t.Run("FAT"+c.fat, func(t *testing.T) {
			img := filepath.Join(dir, "fat"+c.fat+".img")
			run(t, "mkfs.vfat", "-F", c.fat, "-C", img, c.kib)
			run(t, "mmd", "-i", img, "::EFI", "::EFI/Linux", "::loader")
			run(t, "mcopy", "-i", img, filepath.Join(dir, "small"), "::loader/loader.conf")
			run(t, "mcopy", "-i", img, filepath.Join(dir, "small"), "::EFI/Linux/A-Long_Name.with.dots.efi")
			run(t, "mcopy", "-i", img, filepath.Join(dir, "big"), "::EFI/Linux/piboot_v0.efi")
			f, _ := os.Open(img)
			defer f.Close()
			st, _ := f.Stat()
			fr, err := openFAT(f, st.Size())
			if err != nil {
				t.Fatal(err)
			}
			if fr.bits != map[string]int{"12": 12, "16": 16, "32": 32}[c.fat] {
				t.Errorf("detected FAT%d", fr.bits)
			}
			ents, err := fr.List("/efi/linux")
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range ents {
				names = append(names, e.Name)
			}
			if strings.Join(names, ",") != "A-Long_Name.with.dots.efi,piboot_v0.efi" {
				t.Errorf("names %v", names)
			}
			if b, err := fr.ReadFile("EFI/Linux/piboot_v0.efi"); err != nil || !bytes.Equal(b, big) {
				t.Errorf("big file: %v, %d bytes", err, len(b))
			}
			if b, err := fr.ReadFile("loader/loader.conf"); err != nil || string(b) != "timeout 0\n" {
				t.Errorf("loader.conf: %q %v", b, err)
			}
			if _, err := fr.ReadFile("loader/missing"); err == nil || !strings.Contains(err.Error(), "not found") {
				t.Errorf("missing file: %v", err)
			}
		})
	}
}
