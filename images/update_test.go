package images

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/testutil"
	"github.com/piboot/piboot/sysupdate"
)

// TestUpdateDirAndDevice takes the v0 and v1 images that the boot tests build into one
// output directory (signed: the demo's image.conf has [Update] SigningKey=) and plays the
// device: the store's transfer files and keyring verify and apply v1 from the update
// directory onto a copy of the v0 image.
func TestUpdateDirAndDevice(t *testing.T) {
	testutil.Need(t, "unsquashfs", "gpgv", "sha256sum")
	tmp := t.TempDir()
	dir, outs := bootImages(t)
	out := filepath.Join(dir, "out")
	res0 := outs["v0"]
	b, err := os.ReadFile(res0.Image)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(tmp, "device.img"), b, 0o644)
	upd := filepath.Join(out, "update")
	ents, _ := os.ReadDir(upd)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "SHA256SUMS SHA256SUMS.gpg piboot_v0.efi piboot_v0.nix-store.raw.zst piboot_v1.efi piboot_v1.nix-store.raw.zst" {
		t.Fatalf("update dir: %s", got)
	}
	cmd := exec.Command("sha256sum", "--strict", "-c", "SHA256SUMS")
	cmd.Dir = upd
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, b)
	}

	// What the v0 store carries.
	split := ""
	for _, s := range res0.Split {
		if strings.HasSuffix(s, ".nix-store.raw") {
			split = s
		}
	}
	root := filepath.Join(tmp, "root")
	if b, err := exec.Command("unsquashfs", "-d", root, split).CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs: %v\n%s", err, b)
	}
	for _, p := range []string{"usr/lib/sysupdate.d/10-nix-store.transfer", "usr/lib/sysupdate.d/10-nix-store.conf",
		"usr/lib/sysupdate.d/20-boot-image.transfer", "usr/lib/sysupdate.d/20-boot-image.conf",
		"usr/lib/systemd/import-pubring.pgp", "usr/lib/systemd/import-pubring.gpg", "etc/os-release"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("store lacks %s", p)
		}
	}
	ring := filepath.Join(root, "usr/lib/systemd/import-pubring.gpg")
	if b, err := exec.Command("gpgv", "--keyring", ring, filepath.Join(upd, "SHA256SUMS.gpg"), filepath.Join(upd, "SHA256SUMS")).CombinedOutput(); err != nil {
		t.Fatalf("gpgv: %v\n%s", err, b)
	}
	spec, err := sysupdate.SpecifiersFromOSRelease(root)
	if err != nil || spec['A'] != "v0" || spec['M'] != "piboot" {
		t.Fatalf("os-release specifiers %v, %v", spec, err)
	}
	ts, err := sysupdate.Load([]string{filepath.Join(root, "usr/lib/sysupdate.d")}, spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || !ts[0].Verify || ts[0].Source.Path != "http://localhost/" {
		t.Fatalf("transfers: %+v", ts)
	}

	// The device: v0 image, its ESP as a directory holding v0's UKI.
	esp := filepath.Join(tmp, "esp")
	os.MkdirAll(filepath.Join(esp, "EFI/Linux"), 0o755)
	uki0, _ := os.ReadFile(filepath.Join(upd, "piboot_v0.efi"))
	os.WriteFile(filepath.Join(esp, "EFI/Linux/piboot_v0.efi"), uki0, 0o644)
	src, _ := sysupdate.OpenSource(upd)
	dev := filepath.Join(tmp, "device.img")
	u := &sysupdate.Updater{Transfers: ts, Source: src, Root: root, Disk: dev, ESP: esp, Booted: "v0"}
	got, err := u.Update(context.Background(), "")
	if err != nil || got != "v1" {
		t.Fatalf("Update = %q, %v", got, err)
	}
	f, _ := os.Open(dev)
	defer f.Close()
	st, _ := f.Stat()
	tbl, err := gpt.Read(f, st.Size(), 0)
	if err != nil {
		t.Fatal(err)
	}
	p := tbl.ByName("nix-store_v1")
	if p == nil || p.Type != gpt.TypeLinuxGeneric || tbl.ByName("nix-store_v0") == nil {
		t.Fatalf("partitions after update: %+v", tbl.Partitions)
	}
	want, _ := os.ReadFile(strings.Replace(split, "_v0.", "_v1.", 1))
	have := make([]byte, len(want))
	f.ReadAt(have, int64(p.FirstLBA)*512)
	if len(want) == 0 || !bytes.Equal(want, have) {
		t.Fatal("v1's store in the slot differs from out/piboot_v1.nix-store.raw")
	}
	if _, err := os.Stat(filepath.Join(esp, "EFI/Linux/piboot_v1+3-0.efi")); err != nil {
		t.Fatal(err)
	}
}

// TestSigningKeyMadeOnFirstUse: a SigningKey= that does not exist yet becomes a new key
// (mode 0600), and the next build signs with the same key.
func TestSigningKeyMadeOnFirstUse(t *testing.T) {
	key := filepath.Join(t.TempDir(), "keys", "signing.key")
	c := &Config{ID: "piboot", Update: UpdateConfig{SigningKey: key}}
	s1, err := c.signer()
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(key)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	s2, err := c.signer()
	if err != nil {
		t.Fatal(err)
	}
	p1, _ := s1.PublicKey()
	p2, _ := s2.PublicKey()
	if !bytes.Equal(p1, p2) {
		t.Fatal("second use made another key")
	}
	if s, err := (&Config{}).signer(); s != nil || err != nil {
		t.Fatalf("no SigningKey: %v %v", s, err)
	}
}
