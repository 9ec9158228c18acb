package sysupdate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/testutil"
	"github.com/piboot/piboot/internal/uuid"
)

const (
	mib      = 1 << 20
	slotSize = 8 * mib
)

// fixture is a device at v0 with the A/B layout, its ESP as a directory, a root with the
// keyring, and an update directory served over 127.0.0.1.
type fixture struct {
	t        *testing.T
	dir      string
	img      string
	esp      string
	root     string
	defs     string
	upd      string
	srv      *httptest.Server
	signer   *Signer
	stores   map[string][]byte
	ukis     map[string][]byte
	steps    []string
	crashAt  int
	hookStep func(string)
}

func payload(seed string, n int) []byte {
	h := sha256.Sum256([]byte(seed))
	r := rand.New(rand.NewSource(int64(h[0]) | int64(h[1])<<8 | int64(h[2])<<16))
	b := make([]byte, n)
	// Half random, half runs, so zstd has work to do both ways.
	r.Read(b[:n/2])
	for i := n / 2; i < n; i++ {
		b[i] = byte(i / 4096)
	}
	return b
}

func newFixture(t *testing.T, signed bool) *fixture {
	testutil.Need(t, "sgdisk", "sfdisk")
	f := &fixture{t: t, dir: fastTempDir(t), stores: map[string][]byte{}, ukis: map[string][]byte{}}
	f.img = filepath.Join(f.dir, "disk.img")
	f.esp = filepath.Join(f.dir, "esp")
	f.root = filepath.Join(f.dir, "root")
	f.defs = filepath.Join(f.dir, "sysupdate.d")
	f.upd = filepath.Join(f.dir, "update")
	for _, d := range []string{filepath.Join(f.esp, "EFI/Linux"), f.root, f.defs, f.upd} {
		os.MkdirAll(d, 0o755)
	}
	// The A/B layout: boot (ESP), nix-store_v0, _empty, root; sgdisk checks it at the end
	// of each test.
	fh, err := os.Create(f.img)
	if err != nil {
		t.Fatal(err)
	}
	fh.Truncate(40 * mib)
	tbl, _ := gpt.New(40*mib, 512, uuid.New())
	lba := uint64(2048)
	for i, p := range []struct {
		typ  uuid.UUID
		name string
		size uint64
	}{{gpt.TypeESP, "boot", 4 * mib}, {gpt.TypeLinuxGeneric, "nix-store_v0", slotSize}, {gpt.TypeLinuxGeneric, "_empty", slotSize}, {gpt.TypeLinuxGeneric, "root", 4 * mib}} {
		tbl.Partitions = append(tbl.Partitions, gpt.Partition{Index: i + 1, Type: p.typ, UUID: uuid.New(), FirstLBA: lba, LastLBA: lba + p.size/512 - 1, Name: p.name})
		lba += p.size / 512
	}
	if err := gpt.Write(fh, 40*mib, tbl); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	t.Cleanup(f.sgdiskClean)
	f.stores["v0"] = payload("store v0", 5*mib)
	f.ukis["v0"] = payload("uki v0", 64*1024)
	f.writeAt(f.part(2), f.stores["v0"])
	os.WriteFile(filepath.Join(f.esp, "EFI/Linux/piboot_v0.efi"), f.ukis["v0"], 0o444)

	f.srv = httptest.NewServer(http.FileServer(http.Dir(f.upd)))
	t.Cleanup(f.srv.Close)
	var pub []byte
	if signed {
		priv, pubKey, err := GenerateKey("piboot test", "", "t@example.com")
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(f.dir, "key.asc"), priv, 0o600)
		if f.signer, err = LoadSigner(filepath.Join(f.dir, "key.asc")); err != nil {
			t.Fatal(err)
		}
		pub = pubKey
	}
	for p, body := range ImageFiles("piboot", f.srv.URL+"/", pub) {
		full := filepath.Join(f.root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		os.WriteFile(full, body, 0o644)
	}
	f.defs = filepath.Join(f.root, "usr/lib/sysupdate.d")
	return f
}

// fastTempDir is on tmpfs when there is one: the updater fsyncs after every step, which
// on a busy disk costs more than everything else these tests do.
func fastTempDir(t *testing.T) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "piboot-sysupdate-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func (f *fixture) table() *gpt.Table {
	fh, err := os.Open(f.img)
	if err != nil {
		f.t.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	tbl, err := gpt.Read(fh, st.Size(), 0)
	if err != nil {
		f.t.Fatal(err)
	}
	return tbl
}

func (f *fixture) part(i int) gpt.Partition { return *f.table().Partition(i) }

func (f *fixture) writeAt(p gpt.Partition, data []byte) {
	fh, err := os.OpenFile(f.img, os.O_RDWR, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteAt(data, int64(p.FirstLBA)*512); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) readPart(p gpt.Partition, n int) []byte {
	fh, _ := os.Open(f.img)
	defer fh.Close()
	b := make([]byte, n)
	fh.ReadAt(b, int64(p.FirstLBA)*512)
	return b
}

// publish adds version v to the update directory and re-signs it.
func (f *fixture) publish(v string) {
	f.stores[v] = payload("store "+v, 5*mib)
	f.ukis[v] = payload("uki "+v, 64*1024)
	enc, _ := zstd.NewWriter(nil)
	os.WriteFile(filepath.Join(f.upd, "piboot_"+v+".nix-store.raw.zst"), enc.EncodeAll(f.stores[v], nil), 0o644)
	os.WriteFile(filepath.Join(f.upd, "piboot_"+v+".efi"), f.ukis[v], 0o644)
	if err := Publish(f.upd, f.signer); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) updater(booted string) *Updater {
	ts, err := Load([]string{f.defs}, Specifiers{'A': booted})
	if err != nil {
		f.t.Fatal(err)
	}
	u := &Updater{Transfers: ts, Root: f.root, Disk: f.img, ESP: f.esp, Booted: booted}
	u.step = func(what string) error {
		f.steps = append(f.steps, what)
		if f.crashAt > 0 && len(f.steps) == f.crashAt {
			return errCrash
		}
		return nil
	}
	return u
}

var errCrash = errors.New("simulated power cut")

// snapshot is the disk's and the ESP's content, to prove a refusal wrote nothing.
func (f *fixture) snapshot() string {
	h := sha256.New()
	fh, _ := os.Open(f.img)
	io.Copy(h, fh)
	fh.Close()
	filepath.Walk(f.esp, func(p string, info os.FileInfo, err error) error {
		fmt.Fprintf(h, "%s %v\n", p, info.Mode())
		if info.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			h.Write(b)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))
}

func (f *fixture) espFiles() []string {
	ents, _ := os.ReadDir(filepath.Join(f.esp, "EFI/Linux"))
	var n []string
	for _, e := range ents {
		n = append(n, e.Name())
	}
	sort.Strings(n)
	return n
}

// checkVersion asserts that partition idx holds version v, installed, with its data.
func (f *fixture) checkVersion(idx int, v string) {
	f.t.Helper()
	p := f.part(idx)
	if p.Name != "nix-store_"+v || p.Type != gpt.TypeLinuxGeneric {
		f.t.Fatalf("partition %d: label %q type %v, want nix-store_%s installed", idx, p.Name, p.Type, v)
	}
	if !bytes.Equal(f.readPart(p, len(f.stores[v])), f.stores[v]) {
		f.t.Fatalf("partition %d: data of %s differs", idx, v)
	}
}

func (f *fixture) sgdiskClean() {
	f.t.Helper()
	if p := f.table().Status.Problems; len(p) > 0 {
		f.t.Fatalf("GPT problems: %v", p)
	}
	out := run(f.t, "sgdisk", "-v", f.img)
	if !strings.Contains(out, "No problems found") {
		f.t.Fatalf("sgdisk -v: %s", out)
	}
}

func TestUpdateEndToEnd(t *testing.T) {
	f := newFixture(t, true)
	f.publish("v1")
	ctx := context.Background()

	u := f.updater("v0")
	newV, _, err := u.CheckNew(ctx)
	if err != nil || newV != "v1" {
		t.Fatalf("CheckNew = %q, %v", newV, err)
	}
	got, err := u.Update(ctx, "")
	if err != nil || got != "v1" {
		t.Fatalf("Update = %q, %v", got, err)
	}
	f.checkVersion(2, "v0")
	f.checkVersion(3, "v1")
	if a := f.part(3).Attributes; a&gpt.AttrReadOnly == 0 {
		t.Errorf("ReadOnly=yes not set: attributes %#x", a)
	}
	if names := f.espFiles(); strings.Join(names, " ") != "piboot_v0.efi piboot_v1+3-0.efi" {
		t.Fatalf("ESP holds %v", names)
	}
	b, _ := os.ReadFile(filepath.Join(f.esp, "EFI/Linux/piboot_v1+3-0.efi"))
	if !bytes.Equal(b, f.ukis["v1"]) {
		t.Fatal("UKI v1 content differs")
	}
	f.sgdiskClean()
	// The real tool sees what we wrote.
	var sf struct {
		PartitionTable struct {
			Partitions []struct{ Name, Type string } `json:"partitions"`
		} `json:"partitiontable"`
	}
	json.Unmarshal([]byte(run(t, "sfdisk", "--json", f.img)), &sf)
	if p := sf.PartitionTable.Partitions; len(p) != 4 || p[2].Name != "nix-store_v1" || p[2].Type != "0FC63DAF-8483-4772-8E79-3D69D8477DE4" {
		t.Fatalf("sfdisk sees %+v", p)
	}
	// systemd-boot's count reaching zero shows as bad.
	os.Rename(filepath.Join(f.esp, "EFI/Linux/piboot_v1+3-0.efi"), filepath.Join(f.esp, "EFI/Linux/piboot_v1+0-3.efi"))
	if list, _ := u.List(nil); len(list) != 2 || !list[0].Bad || list[1].Bad {
		t.Fatalf("List with v1 out of tries: %+v", list)
	}
	os.Rename(filepath.Join(f.esp, "EFI/Linux/piboot_v1+0-3.efi"), filepath.Join(f.esp, "EFI/Linux/piboot_v1+3-0.efi"))
	if again, err := u.Update(ctx, ""); err != nil || again != "" {
		t.Fatalf("second Update = %q, %v; want up to date", again, err)
	}

	// An explicit version that is installed already: nothing to do.
	if got, err := u.Update(ctx, "v1"); err != nil || got != "" {
		t.Fatalf("Update(v1) again = %q, %v", got, err)
	}
	// Two updates at once: the second finds the disk locked.
	lk, err := lockDisk(f.img)
	if err != nil {
		t.Fatal(err)
	}
	f.publish("v9")
	if _, err := f.updater("v0").Update(ctx, ""); err == nil || !strings.Contains(err.Error(), "another update is running") {
		t.Fatalf("concurrent update: %v", err)
	}
	lk.Close()
	for _, n := range []string{"piboot_v9.efi", "piboot_v9.nix-store.raw.zst"} {
		os.Remove(filepath.Join(f.upd, n))
	}
	Publish(f.upd, f.signer)

	// Reboot into v1 (systemd-boot counted one try), bless it.
	efivars := filepath.Join(f.dir, "efivars")
	os.MkdirAll(efivars, 0o755)
	os.Rename(filepath.Join(f.esp, "EFI/Linux/piboot_v1+3-0.efi"), filepath.Join(f.esp, "EFI/Linux/piboot_v1+2-1.efi"))
	WriteBootCountPath(efivars, "/EFI/Linux/piboot_v1+2-1.efi")
	if _, to, err := Bless(efivars, f.esp, true); err != nil || filepath.Base(to) != "piboot_v1.efi" {
		t.Fatalf("Bless = %q, %v", to, err)
	}

	// v2: vacuum keeps the booted v1 and reuses v0's slot.
	f.publish("v2")
	u = f.updater("v1")
	list, err := u.List(nil)
	if err != nil || len(list) != 2 || !list[0].Installed || !list[0].Booted || list[0].Version != "v1" {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if got, err := u.Update(ctx, ""); err != nil || got != "v2" {
		t.Fatalf("Update v2 = %q, %v", got, err)
	}
	f.checkVersion(2, "v2")
	f.checkVersion(3, "v1")
	if names := f.espFiles(); strings.Join(names, " ") != "piboot_v1.efi piboot_v2+3-0.efi" {
		t.Fatalf("ESP holds %v", names)
	}
	f.sgdiskClean()
}

func TestProtectVersionAndNoSlot(t *testing.T) {
	f := newFixture(t, true)
	f.publish("v1")
	ctx := context.Background()
	if _, err := f.updater("v0").Update(ctx, ""); err != nil {
		t.Fatal(err)
	}
	f.publish("v2")
	// Booted v0 and v1 protected: nothing may go, so v2 has no slot; nothing is written.
	u := f.updater("v0")
	for _, tr := range u.Transfers {
		tr.ProtectVersion = []string{"v1"}
	}
	before := f.snapshot()
	_, err := u.Update(ctx, "")
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Update = %v, want no free slot", err)
	}
	if f.snapshot() != before {
		t.Fatal("refused update changed the disk or ESP")
	}
	// Only the booted version protected: v1 (not booted) goes... no: the oldest unprotected,
	// which is v1 since v0 is booted.
	u = f.updater("v0")
	if _, err := u.Update(ctx, ""); err != nil {
		t.Fatal(err)
	}
	f.checkVersion(2, "v0")
	f.checkVersion(3, "v2")
}

func TestRefusedBeforeWriting(t *testing.T) {
	f := newFixture(t, true)
	f.publish("v1")
	ctx := context.Background()
	sums := filepath.Join(f.upd, ManifestName)
	good, _ := os.ReadFile(sums)
	goodSig, _ := os.ReadFile(sums + ".gpg")
	before := f.snapshot()
	for _, c := range []struct {
		name  string
		setup func()
	}{
		{"tampered SHA256SUMS", func() {
			os.WriteFile(sums, bytes.Replace(good, []byte("piboot_v1.efi"), []byte("piboot_v1.efi\n"+strings.Repeat("0", 64)+"  piboot_v9.efi"), 1), 0o644)
		}},
		{"missing signature", func() { os.Remove(sums + ".gpg") }},
		{"garbage signature", func() { os.WriteFile(sums+".gpg", []byte("not a signature"), 0o644) }},
		{"signed by another key", func() {
			priv, _, _ := GenerateKey("evil", "", "e@example.com")
			p := filepath.Join(f.dir, "evil.asc")
			os.WriteFile(p, priv, 0o600)
			s, _ := LoadSigner(p)
			sig, _ := s.Sign(good)
			os.WriteFile(sums+".gpg", sig, 0o644)
		}},
	} {
		c.setup()
		_, err := f.updater("v0").Update(ctx, "")
		if !errors.Is(err, ErrSignature) {
			t.Errorf("%s: Update = %v, want a signature error", c.name, err)
		}
		if f.snapshot() != before {
			t.Fatalf("%s: disk or ESP changed", c.name)
		}
		os.WriteFile(sums, good, 0o644)
		os.WriteFile(sums+".gpg", goodSig, 0o644)
	}
	// A server that went away, and a 404.
	url := f.srv.URL
	f.srv.Close()
	if _, err := f.updater("v0").Update(ctx, ""); err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Errorf("no network: %v", err)
	}
	// A 404: the update directory is not where the transfer says.
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	u := f.updater("v0")
	u.Source, _ = OpenSource(srv.URL + "/nothing/")
	if _, err := u.Update(ctx, ""); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "404") {
		t.Errorf("404: %v", err)
	}
	_ = url
	// No keyring on the device: refused too.
	os.Remove(filepath.Join(f.root, "usr/lib/systemd/import-pubring.pgp"))
	os.Remove(filepath.Join(f.root, "usr/lib/systemd/import-pubring.gpg"))
	if _, err := f.updater("v0").Update(ctx, ""); !errors.Is(err, ErrSignature) {
		t.Errorf("no keyring: %v", err)
	}
	if f.snapshot() != before {
		t.Fatal("disk or ESP changed")
	}
}

func TestVerifyNoAcceptsUnsigned(t *testing.T) {
	f := newFixture(t, false) // ImageFiles writes Verify=no without a key
	f.publish("v1")
	if _, err := os.Stat(filepath.Join(f.upd, ManifestName+".gpg")); err == nil {
		t.Fatal("unsigned publish left a signature")
	}
	if got, err := f.updater("v0").Update(context.Background(), ""); err != nil || got != "v1" {
		t.Fatalf("Update = %q, %v", got, err)
	}
	f.checkVersion(3, "v1")
}

func TestBadPayloadLeavesPartialSlotThenReused(t *testing.T) {
	ctx := context.Background()
	storeFile := func(f *fixture) string { return filepath.Join(f.upd, "piboot_v1.nix-store.raw.zst") }
	for _, c := range []struct {
		name    string
		corrupt func(path string)
		want    error
	}{
		{"tampered", func(p string) {
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0xff
			os.WriteFile(p, b, 0o644)
		}, ErrHashMismatch},
		{"truncated", func(p string) {
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()/2)
		}, ErrHashMismatch},
		{"too large", func(p string) {
			enc, _ := zstd.NewWriter(nil)
			os.WriteFile(p, enc.EncodeAll(make([]byte, slotSize+mib), nil), 0o644)
		}, ErrTooLarge},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, true)
			f.publish("v1")
			good, _ := os.ReadFile(storeFile(f))
			c.corrupt(storeFile(f))
			if c.want == ErrTooLarge {
				Publish(f.upd, f.signer) // listed with its hash: only the size is wrong
			}
			_, err := f.updater("v0").Update(ctx, "")
			if err == nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("Update = %v", err)
			}
			t.Logf("refused: %v", err)
			p := f.part(3)
			if p.Type != PartialType(gpt.TypeLinuxGeneric) {
				t.Fatalf("slot type %v, want partial %v", p.Type, PartialType(gpt.TypeLinuxGeneric))
			}
			f.checkVersion(2, "v0")
			if names := f.espFiles(); strings.Join(names, " ") != "piboot_v0.efi" {
				t.Fatalf("ESP holds %v", names)
			}
			list, _ := f.updater("v0").List(nil)
			for _, vi := range list {
				if vi.Version == "v1" && vi.Installed {
					t.Fatal("partial v1 listed as installed")
				}
			}
			os.WriteFile(storeFile(f), good, 0o644)
			Publish(f.upd, f.signer)
			if got, err := f.updater("v0").Update(ctx, ""); err != nil || got != "v1" {
				t.Fatalf("retry = %q, %v", got, err)
			}
			f.checkVersion(3, "v1")
			f.checkVersion(2, "v0")
			f.sgdiskClean()
		})
	}
}

// TestPowerCut cuts the update before each durable write in turn: the old version must stay
// intact and bootable (its UKI the newest complete one), and the next update must finish.
func TestPowerCut(t *testing.T) {
	ctx := context.Background()
	probe := newFixture(t, true)
	probe.publish("v1")
	if _, err := probe.updater("v0").Update(ctx, ""); err != nil {
		t.Fatal(err)
	}
	n := len(probe.steps)
	t.Logf("%d write steps: %q", n, probe.steps)
	if n < 5 {
		t.Fatalf("only %d steps", n)
	}
	for i := 1; i <= n; i++ {
		f := newFixture(t, true)
		f.publish("v1")
		f.crashAt = i
		_, err := f.updater("v0").Update(ctx, "")
		if !errors.Is(err, errCrash) {
			t.Fatalf("cut at %d: %v", i, err)
		}
		f.checkVersion(2, "v0")
		if p := f.table().Status; len(p.Problems) > 0 || !p.PrimaryValid || !p.BackupValid {
			t.Fatalf("cut at %d (%s): GPT %+v", i, f.steps[i-1], p)
		}
		if b, err := os.ReadFile(filepath.Join(f.esp, "EFI/Linux/piboot_v0.efi")); err != nil || !bytes.Equal(b, f.ukis["v0"]) {
			t.Fatalf("cut at %d (%s): v0's UKI damaged: %v", i, f.steps[i-1], err)
		}
		for _, n := range f.espFiles() {
			if regexp.MustCompile(`^piboot_v1`).MatchString(n) {
				t.Fatalf("cut at %d (%s): %s bootable before the update finished", i, f.steps[i-1], n)
			}
		}
		f.crashAt = 0
		if got, err := f.updater("v0").Update(ctx, ""); err != nil || got != "v1" {
			t.Fatalf("cut at %d (%s): next update = %q, %v", i, f.steps[i-1], got, err)
		}
		f.checkVersion(3, "v1")
		f.checkVersion(2, "v0")
	}
}

func TestUpdateDirFollowsContract(t *testing.T) {
	testutil.Need(t, "sha256sum", "gpgv")
	f := newFixture(t, true)
	f.publish("v0")
	f.publish("v1")
	ents, _ := os.ReadDir(f.upd)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := "SHA256SUMS SHA256SUMS.gpg piboot_v0.efi piboot_v0.nix-store.raw.zst piboot_v1.efi piboot_v1.nix-store.raw.zst"
	if strings.Join(names, " ") != want {
		t.Fatalf("update dir: %v", names)
	}
	sums, _ := os.ReadFile(filepath.Join(f.upd, ManifestName))
	if !regexp.MustCompile(`^([0-9a-f]{64}  [^/\s]+\n){4}$`).Match(sums) {
		t.Fatalf("SHA256SUMS format:\n%s", sums)
	}
	cmd := exec.Command("sha256sum", "--strict", "-c", ManifestName)
	cmd.Dir = f.upd
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	// GnuPG's verifier accepts our binary detached signature with the image's keyring.
	ring := filepath.Join(f.root, "usr/lib/systemd/import-pubring.gpg")
	out, err := exec.Command("gpgv", "--keyring", ring, filepath.Join(f.upd, "SHA256SUMS.gpg"), filepath.Join(f.upd, ManifestName)).CombinedOutput()
	if err != nil {
		t.Fatalf("gpgv: %v\n%s", err, out)
	}
	// Each payload matches the seed-style source patterns.
	ts, _ := Load([]string{f.defs}, Specifiers{})
	for _, n := range names[2:] {
		matched := false
		for _, tr := range ts {
			if _, ok := tr.Source.Patterns.Match(n); ok {
				matched = true
			}
		}
		if !matched {
			t.Errorf("%s matches no transfer", n)
		}
	}
}

func TestVacuumCommand(t *testing.T) {
	f := newFixture(t, true)
	// Leftovers of a cut update: a partial slot and a partial file.
	fh, _ := os.OpenFile(f.img, os.O_RDWR, 0)
	tbl := f.table()
	p := tbl.Partition(3)
	p.Type, p.Name = PartialType(gpt.TypeLinuxGeneric), "nix-store_v1"
	st, _ := fh.Stat()
	if err := gpt.Write(fh, st.Size(), tbl); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	os.WriteFile(filepath.Join(f.esp, "EFI/Linux/.sysupdate.partial.piboot_v1+3-0.efi"), []byte("x"), 0o644)
	n, err := f.updater("v0").Vacuum()
	if err != nil || n != 2 {
		t.Fatalf("Vacuum = %d, %v", n, err)
	}
	if p := f.part(3); p.Name != EmptyLabel || p.Type != gpt.TypeLinuxGeneric {
		t.Fatalf("slot after vacuum: %q %v", p.Name, p.Type)
	}
	if names := f.espFiles(); strings.Join(names, " ") != "piboot_v0.efi" {
		t.Fatalf("ESP holds %v", names)
	}
	f.checkVersion(2, "v0")
}

// A source pattern with @s: the slot must hold the decompressed size, else no slot.
func TestSlotBySize(t *testing.T) {
	f := newFixture(t, false)
	f.publish("v1")
	os.Rename(filepath.Join(f.upd, "piboot_v1.nix-store.raw.zst"), filepath.Join(f.upd, fmt.Sprintf("piboot_v1_%d.nix-store.raw.zst", 2*slotSize)))
	Publish(f.upd, nil)
	u := f.updater("v0")
	p, _ := ParsePattern("piboot_@v_@s.nix-store.raw.zst")
	u.Transfers[0].Source.Patterns = Patterns{p}
	before := f.snapshot()
	if _, err := u.Update(context.Background(), ""); !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "needs 16777216 bytes") {
		t.Fatalf("Update = %v", err)
	}
	if f.snapshot() != before {
		t.Fatal("refused update wrote")
	}
	os.Rename(filepath.Join(f.upd, fmt.Sprintf("piboot_v1_%d.nix-store.raw.zst", 2*slotSize)), filepath.Join(f.upd, fmt.Sprintf("piboot_v1_%d.nix-store.raw.zst", len(f.stores["v1"]))))
	Publish(f.upd, nil)
	if got, err := u.Update(context.Background(), ""); err != nil || got != "v1" {
		t.Fatalf("Update = %q, %v", got, err)
	}
	f.checkVersion(3, "v1")
}
