package sysupdate

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestBootCounter(t *testing.T) {
	for _, c := range []struct {
		in, plain  string
		left, done uint64
		ok         bool
	}{
		{"piboot_v1+3-0.efi", "piboot_v1.efi", 3, 0, true},
		{"piboot_v1+2-1.efi", "piboot_v1.efi", 2, 1, true},
		{"piboot_v1+0-3.efi", "piboot_v1.efi", 0, 3, true},
		{"piboot_v1+5.efi", "piboot_v1.efi", 5, 0, true},
		{"piboot_v1.efi", "piboot_v1.efi", 0, 0, false},
		{"a+b.efi", "a+b.efi", 0, 0, false},
		{"entry+1-2.conf", "entry.conf", 1, 2, true},
	} {
		plain, left, done, ok := BootCounter(c.in)
		if plain != c.plain || left != c.left || done != c.done || ok != c.ok {
			t.Errorf("BootCounter(%q) = %q %d %d %v", c.in, plain, left, done, ok)
		}
	}
}

func TestBless(t *testing.T) {
	vars, esp := t.TempDir(), t.TempDir()
	if _, _, err := Bless(vars, esp, true); !errors.Is(err, ErrNoBootCounting) {
		t.Fatalf("no variable: %v", err)
	}
	os.MkdirAll(filepath.Join(esp, "EFI/Linux"), 0o755)
	os.WriteFile(filepath.Join(esp, "EFI/Linux/piboot_v2+1-2.efi"), []byte("uki"), 0o444)
	if err := WriteBootCountPath(vars, "/EFI/Linux/piboot_v2+1-2.efi"); err != nil {
		t.Fatal(err)
	}
	if p, err := ReadBootCountPath(vars); err != nil || p != "/EFI/Linux/piboot_v2+1-2.efi" {
		t.Fatalf("ReadBootCountPath = %q, %v", p, err)
	}
	_, to, err := Bless(vars, esp, true)
	if err != nil || to != filepath.Join(esp, "EFI/Linux/piboot_v2.efi") {
		t.Fatalf("Bless = %q, %v", to, err)
	}
	if b, _ := os.ReadFile(to); string(b) != "uki" {
		t.Fatal("content lost")
	}
	// Twice is fine.
	if _, _, err := Bless(vars, esp, true); err != nil {
		t.Fatalf("second Bless: %v", err)
	}
	// Never overwrite: a blessed entry of that name already exists.
	os.WriteFile(filepath.Join(esp, "EFI/Linux/piboot_v2+1-2.efi"), []byte("other"), 0o444)
	if _, _, err := Bless(vars, esp, true); err == nil {
		t.Fatal("Bless replaced an existing entry")
	}
	// Marking bad.
	os.Remove(filepath.Join(esp, "EFI/Linux/piboot_v2.efi"))
	_, to, err = Bless(vars, esp, false)
	if err != nil || filepath.Base(to) != "piboot_v2+0-2.efi" {
		t.Fatalf("bad = %q, %v", to, err)
	}
}

func TestDerivedTypes(t *testing.T) {
	lg := PartialType(gpt.TypeLinuxGeneric)
	if lg == gpt.TypeLinuxGeneric || lg == PendingType(gpt.TypeLinuxGeneric) || lg != PartialType(gpt.TypeLinuxGeneric) {
		t.Fatal("derived types not distinct or not stable")
	}
	if lg.Version() != 4 || lg.Variant().String() != "RFC4122" {
		t.Fatalf("derived type %v is not a v4 UUID", lg)
	}
}

// The ESP is mounted read-only by piboot-init: Bless remounts it read-write for the rename
// and read-only again.
func TestBlessReadOnlyESP(t *testing.T) {
	testutil.NeedRoot(t)
	vars, esp := t.TempDir(), t.TempDir()
	if err := unix.Mount("tmpfs", esp, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	defer unix.Unmount(esp, 0)
	os.MkdirAll(filepath.Join(esp, "EFI/Linux"), 0o755)
	os.WriteFile(filepath.Join(esp, "EFI/Linux/p_v1+2-1.efi"), []byte("uki"), 0o444)
	if err := unix.Mount("", esp, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOEXEC, ""); err != nil {
		t.Fatal(err)
	}
	WriteBootCountPath(vars, "/EFI/Linux/p_v1+2-1.efi")
	if _, _, err := Bless(vars, esp, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(esp, "EFI/Linux/p_v1.efi")); err != nil {
		t.Fatal(err)
	}
	var sf unix.Statfs_t
	unix.Statfs(esp, &sf)
	if sf.Flags&unix.ST_RDONLY == 0 || sf.Flags&unix.ST_NOEXEC == 0 {
		t.Fatalf("ESP flags after Bless: %#x, want read-only and noexec again", sf.Flags)
	}
}
