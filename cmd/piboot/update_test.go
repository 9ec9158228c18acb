//go:build !pibootlite

package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/uuid"
	"github.com/piboot/piboot/sysupdate"
)

// TestUpdateCLI drives keygen, update (list, check-new, update, vacuum) and bless the way
// a user does, against an image file and an ESP directory.
func TestUpdateCLI(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if rc, out := capture(t, func() int { return runKeygen([]string{"--email", "u@example.com", "k"}) }); rc != 0 {
		t.Fatalf("keygen: %d\n%s", rc, out)
	}
	if rc, out := capture(t, func() int { return runKeygen([]string{"k"}) }); rc == 0 || !strings.Contains(out, "exists") {
		t.Fatalf("keygen over an existing key: %d\n%s", rc, out)
	}
	// A device: store slots A (v0) and B (_empty), an ESP directory with v0's UKI.
	img := filepath.Join(dir, "disk.img")
	const size = 24 << 20
	f, _ := os.Create(img)
	f.Truncate(size)
	tab, _ := gpt.New(size, 512, uuid.New())
	tab.Partitions = []gpt.Partition{
		{Index: 1, Type: gpt.TypeLinuxGeneric, UUID: uuid.New(), FirstLBA: 2048, LastLBA: 2048 + 16383, Name: "nix-store_v0"},
		{Index: 2, Type: gpt.TypeLinuxGeneric, UUID: uuid.New(), FirstLBA: 2048 + 16384, LastLBA: 2048 + 32767, Name: "_empty"},
	}
	if err := gpt.Write(f, size, tab); err != nil {
		t.Fatal(err)
	}
	f.Close()
	esp := filepath.Join(dir, "esp")
	os.MkdirAll(filepath.Join(esp, "EFI/Linux"), 0o755)
	os.WriteFile(filepath.Join(esp, "EFI/Linux/piboot_v0.efi"), []byte("uki v0"), 0o644)
	root := filepath.Join(dir, "root")
	pub, _ := os.ReadFile("k.pgp")
	// As on a device: the image's files live in the store, mounted at /nix/store.
	storeDir := filepath.Join(root, "nix/store")
	for p, b := range sysupdate.ImageFiles("piboot", "http://localhost/", pub) {
		os.MkdirAll(filepath.Join(storeDir, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(storeDir, p), b, 0o644)
	}
	os.MkdirAll(filepath.Join(storeDir, "etc"), 0o755)
	os.WriteFile(filepath.Join(storeDir, "etc/os-release"), []byte("ID=piboot\nIMAGE_ID=piboot\nIMAGE_VERSION=v0\n"), 0o644)
	upd := filepath.Join(dir, "update")
	os.MkdirAll(upd, 0o755)
	enc, _ := zstd.NewWriter(nil)
	os.WriteFile(filepath.Join(upd, "piboot_v1.nix-store.raw.zst"), enc.EncodeAll([]byte(strings.Repeat("store v1 ", 100000)), nil), 0o644)
	os.WriteFile(filepath.Join(upd, "piboot_v1.efi"), []byte("uki v1"), 0o644)
	signer, err := sysupdate.LoadSigner("k.key")
	if err != nil {
		t.Fatal(err)
	}
	if err := sysupdate.Publish(upd, signer); err != nil {
		t.Fatal(err)
	}
	common := []string{"--root", root, "--disk", img, "--esp", esp, "--source", upd}

	rc, out := capture(t, func() int { return runUpdate(append(common, "list")) })
	if rc != 0 || !regexpMatch(`v1\s+available`, out) || !regexpMatch(`v0\s+booted, installed`, out) {
		t.Fatalf("list: %d\n%s", rc, out)
	}
	rc, out = capture(t, func() int { return runUpdate(append(common, "check-new")) })
	if rc != 0 || !strings.Contains(out, "v1") {
		t.Fatalf("check-new: %d\n%s", rc, out)
	}
	rc, out = capture(t, func() int { return runUpdate(append(common, "update")) })
	if rc != 0 || !strings.Contains(out, "installed v1") {
		t.Fatalf("update: %d\n%s", rc, out)
	}
	if _, err := os.Stat(filepath.Join(esp, "EFI/Linux/piboot_v1+3-0.efi")); err != nil {
		t.Fatal(err)
	}
	rc, out = capture(t, func() int { return runUpdate(append(common, "check-new")) })
	if rc != 1 || !strings.Contains(out, "no new version") {
		t.Fatalf("check-new when up to date: %d\n%s", rc, out)
	}
	rc, out = capture(t, func() int { return runUpdate(append(common, "vacuum")) })
	if rc != 0 || !strings.Contains(out, "removed 0") {
		t.Fatalf("vacuum: %d\n%s", rc, out)
	}
	// A tampered manifest is refused with a message that says nothing was written.
	sums := filepath.Join(upd, "SHA256SUMS")
	b, _ := os.ReadFile(sums)
	os.WriteFile(sums, append(b, []byte(strings.Repeat("0", 64)+"  piboot_v2.efi\n")...), 0o644)
	rc, out = capture(t, func() int { return runUpdate(append(common, "update")) })
	if rc != 1 || !strings.Contains(out, "signature check failed") || !strings.Contains(out, "nothing was written") {
		t.Fatalf("tampered: %d\n%s", rc, out)
	}
	// Unknown verb, bad definitions.
	if rc, _ = capture(t, func() int { return runUpdate(append(common, "frobnicate")) }); rc != 2 {
		t.Fatalf("unknown verb: %d", rc)
	}
	bad := filepath.Join(dir, "bad.d")
	os.MkdirAll(bad, 0o755)
	os.WriteFile(filepath.Join(bad, "1.transfer"), []byte("[Transfer]\nVerify=perhaps\n"), 0o644)
	rc, out = capture(t, func() int { return runUpdate(append([]string{"--definitions", bad}, append(common, "list")...)) })
	if rc != 1 || !strings.Contains(out, "1.transfer:2: Verify=perhaps: not a boolean") {
		t.Fatalf("bad transfer: %d\n%s", rc, out)
	}

	// bless: the booted v1 entry (one try used) becomes piboot_v1.efi.
	vars := filepath.Join(dir, "efivars")
	os.MkdirAll(vars, 0o755)
	os.Rename(filepath.Join(esp, "EFI/Linux/piboot_v1+3-0.efi"), filepath.Join(esp, "EFI/Linux/piboot_v1+2-1.efi"))
	sysupdate.WriteBootCountPath(vars, "/EFI/Linux/piboot_v1+2-1.efi")
	rc, out = capture(t, func() int { return runBless([]string{"--efivars", vars, "--esp", esp, "status"}) })
	if rc != 0 || !strings.Contains(out, "2 tries left, 1 done") {
		t.Fatalf("bless status: %d\n%s", rc, out)
	}
	rc, out = capture(t, func() int { return runBless([]string{"--efivars", vars, "--esp", esp}) })
	if rc != 0 || !strings.Contains(out, "marked good") {
		t.Fatalf("bless: %d\n%s", rc, out)
	}
	if _, err := os.Stat(filepath.Join(esp, "EFI/Linux/piboot_v1.efi")); err != nil {
		t.Fatal(err)
	}
	rc, out = capture(t, func() int { return runBless([]string{"--efivars", filepath.Join(dir, "none"), "--esp", esp}) })
	if rc != 0 || !strings.Contains(out, "nothing to do") {
		t.Fatalf("bless without boot counting: %d\n%s", rc, out)
	}
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }
