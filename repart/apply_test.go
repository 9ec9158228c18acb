package repart

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/testutil"
)

const MiB = 1 << 20

var errCut = errors.New("power cut")

// faultDisk is an image file that loses power after limit writes (limit < 0: never): every
// later write and sync fails without reaching the file.
type faultDisk struct {
	f      *os.File
	limit  int
	writes int
	bytes  int64
}

func (d *faultDisk) ReadAt(b []byte, off int64) (int, error) { return d.f.ReadAt(b, off) }
func (d *faultDisk) WriteAt(b []byte, off int64) (int, error) {
	if d.limit >= 0 && d.writes >= d.limit {
		return 0, errCut
	}
	d.writes++
	d.bytes += int64(len(b))
	return d.f.WriteAt(b, off)
}
func (d *faultDisk) Sync() error {
	if d.limit >= 0 && d.writes >= d.limit {
		return errCut
	}
	return nil
}

// fakeFormat writes a deterministic "file system" in several writes spread over the
// partition (start, middle, end), derived from the request, so a rerun writes the same bytes.
func fakeFormat(w io.WriterAt, size int64, req FormatRequest) error {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s|%s|%s|%d", req.Format, req.Label, req.UUID, size)))
	block := bytes.Repeat(sum[:], 4096/len(sum))
	for _, off := range []int64{0, 4096, size / 2, size - 4096} {
		if _, err := w.WriteAt(block, off); err != nil {
			return err
		}
	}
	return nil
}

// seedImage makes the seed's layout the way the image builder does — ESP "boot", the store
// "nix-store_v0" and "_empty" (sizes scaled down) — in an image of imgSize at the start of
// a sparse disk of diskSize.
func seedImage(t testing.TB, imgSize, diskSize int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := gpt.New(imgSize, 512, uuid.MustParse("5d1f2b0e-7c1a-4b51-9a47-3f0b1c2d3e4f"))
	if err != nil {
		t.Fatal(err)
	}
	const s = MiB / 512
	tab.Partitions = []gpt.Partition{
		{Index: 1, Type: gpt.TypeESP, UUID: uuid.MustParse("11111111-1111-4111-8111-111111111111"), FirstLBA: 1 * s, LastLBA: 9*s - 1, Name: "boot"},
		{Index: 2, Type: gpt.TypeLinuxGeneric, UUID: uuid.MustParse("22222222-2222-4222-8222-222222222222"), FirstLBA: 9 * s, LastLBA: 17*s - 1, Name: "nix-store_v0"},
		{Index: 3, Type: gpt.TypeLinuxGeneric, UUID: uuid.MustParse("33333333-3333-4333-8333-333333333333"), FirstLBA: 17 * s, LastLBA: 25*s - 1, Name: "_empty"},
	}
	f.Truncate(imgSize)
	if err := gpt.Write(f, imgSize, tab); err != nil {
		t.Fatal(err)
	}
	// Content in the partitions and in the gap before partition 1, which must survive.
	for _, off := range []int64{64 * 1024, 1 * MiB, 9 * MiB, 17*MiB + 4096} {
		f.WriteAt(bytes.Repeat([]byte{0xA5}, 4096), off)
	}
	if err := f.Truncate(diskSize); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeDefs(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, s := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var firstBootDefs = map[string]string{
	"10-root.conf": "[Partition]\nType=root\nFormat=ext4\nWeight=1000\n",
	"20-swap.conf": "[Partition]\nType=swap\nSizeMinBytes=4M\nSizeMaxBytes=4M\n",
}

// runOnce reads the disk, plans and applies through d, as piboot-init does.
func runOnce(t testing.TB, d *faultDisk, defsDir string) (*Layout, error) {
	fi, _ := d.f.Stat()
	defs, err := ParseDir(defsDir, "arm64")
	if err != nil {
		t.Fatal(err)
	}
	tab, err := gpt.Read(d, fi.Size(), 0)
	if err != nil {
		return nil, err
	}
	seed, _, err := Seed("", "", tab)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Plan(Disk{Size: fi.Size(), Table: tab}, defs, seed)
	if err != nil {
		return nil, err
	}
	return l, Apply(d, fi.Size(), l, fakeFormat)
}

func openDisk(t testing.TB, p string, limit int) *faultDisk {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &faultDisk{f: f, limit: limit}
}

func cp(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy.img")
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return dst
}

func sgdiskClean(t testing.TB, img string) {
	t.Helper()
	out, err := exec.Command("sgdisk", "-v", img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") {
		t.Fatalf("sgdisk -v: %v\n%s", err, out)
	}
}

// TestApplyFirstBoot grows the seed's layout: only the new partitions, the GPT copies and the
// MBR change; the second run finds nothing to do and writes nothing.
func TestApplyFirstBoot(t *testing.T) {
	testutil.Need(t, "sgdisk")
	base := seedImage(t, 32*MiB, 96*MiB)
	img := cp(t, base)
	defs := writeDefs(t, firstBootDefs)
	d := openDisk(t, img, -1)
	l, err := runOnce(t, d, defs)
	if err != nil {
		t.Fatal(err)
	}
	sgdiskClean(t, img)
	var root, swap *Partition
	for i := range l.Partitions {
		switch l.Partitions[i].TypeName {
		case "root-arm64":
			root = &l.Partitions[i]
		case "swap":
			swap = &l.Partitions[i]
		}
	}
	if root == nil || swap == nil || root.Action != Create || root.Index != 4 || swap.Index != 5 ||
		root.Label != "root-arm64" || root.Format != "ext4" || root.FSUUID != FileSystemUUID(root.UUID) ||
		root.Attributes != gpt.AttrGrowFS || swap.Size != 4*MiB {
		t.Fatalf("plan: %+v", l.Partitions)
	}
	// The root partition fills the disk up to the end (grain-aligned).
	if end := root.Offset + root.Size + root.Padding; end != 96*MiB-MiB && root.Offset+root.Size > 96*MiB-34*512 {
		t.Errorf("root ends at %d", root.Offset+root.Size)
	}
	regions := [][2]int64{{0, 34 * 512}, {96*MiB - 33*512, 96 * MiB}}
	for _, p := range l.Partitions {
		if p.Action == Create {
			regions = append(regions, [2]int64{p.Offset, p.Offset + p.Size})
		}
	}
	before, _ := os.ReadFile(base)
	after, _ := os.ReadFile(img)
	for off := int64(0); off < int64(len(after)); off += 512 {
		if bytes.Equal(before[off:off+512], after[off:off+512]) {
			continue
		}
		ok := false
		for _, r := range regions {
			ok = ok || off >= r[0] && off < r[1]
		}
		if !ok {
			t.Fatalf("sector %d changed, outside the new partitions and the GPT", off/512)
		}
	}
	if !bytes.Equal(before[34*512:25*MiB], after[34*512:25*MiB]) {
		t.Fatal("the gap before partition 1 or an existing partition changed")
	}

	d2 := openDisk(t, img, -1)
	l2, err := runOnce(t, d2, defs)
	if err != nil || !l2.Empty() || d2.writes != 0 {
		t.Fatalf("second run: empty=%v writes=%d err=%v", l2 != nil && l2.Empty(), d2.writes, err)
	}
	var out bytes.Buffer
	l2.WriteTable(&out, img)
	if !strings.Contains(out.String(), "No changes.") {
		t.Errorf("second run printed:\n%s", out.String())
	}
}

// TestCrashEveryWrite cuts the power after every write of a first-boot repart (formatter
// writes, both GPT copies, the MBR), runs again, and wants the bytes of an uncut run.
func TestCrashEveryWrite(t *testing.T) {
	testutil.Need(t, "sgdisk")
	base := seedImage(t, 32*MiB, 64*MiB)
	defs := writeDefs(t, firstBootDefs)

	ref := cp(t, base)
	d := openDisk(t, ref, -1)
	if _, err := runOnce(t, d, defs); err != nil {
		t.Fatal(err)
	}
	total := d.writes
	want, _ := os.ReadFile(ref)
	sgdiskClean(t, ref)
	if total < 8 {
		t.Fatalf("only %d writes", total)
	}
	t.Logf("an uncut first boot makes %d writes", total)
	newTab, _ := gpt.Read(bytes.NewReader(want), int64(len(want)), 0)

	sawPrimaryCut := false
	for n := 0; n < total; n++ {
		img := cp(t, base)
		cut := openDisk(t, img, n)
		if _, err := runOnce(t, cut, defs); !errors.Is(err, errCut) {
			t.Fatalf("cut after %d writes: %v", n, err)
		}
		// What a restart sees: the old table or the new one, never an error.
		got, err := gpt.Read(cut.f, 64*MiB, 0)
		if err != nil {
			t.Fatalf("cut after %d writes: %v", n, err)
		}
		if !got.Status.PrimaryValid {
			sawPrimaryCut = true // primary entries written, primary header not
			if len(got.Partitions) != len(newTab.Partitions) {
				t.Errorf("cut after %d writes: primary broken and the new table not taken from the backup", n)
			}
		}
		again := openDisk(t, img, -1)
		if _, err := runOnce(t, again, defs); err != nil {
			t.Fatalf("rerun after a cut at %d: %v", n, err)
		}
		sgdiskClean(t, img)
		b, _ := os.ReadFile(img)
		if !bytes.Equal(b, want) {
			t.Errorf("cut after %d of %d writes: rerun differs from an uncut run", n, total)
		}
	}
	if !sawPrimaryCut {
		t.Error("no cut left the primary entries written and the primary header not")
	}
}

func TestRepairPrimaryAndBackup(t *testing.T) {
	testutil.Need(t, "sgdisk")
	for _, c := range []struct {
		name string
		off  int64
	}{{"primary", 512 + 20}, {"backup", 64*MiB - 512 + 20}} {
		t.Run(c.name, func(t *testing.T) {
			img := seedImage(t, 64*MiB, 64*MiB)
			// A grown disk: nothing to add, only the damage to repair.
			defs := writeDefs(t, map[string]string{"10-esp.conf": "[Partition]\nType=esp\n"})
			f, _ := os.OpenFile(img, os.O_RDWR, 0)
			f.WriteAt([]byte{0xFF}, c.off)
			f.Close()
			d := openDisk(t, img, -1)
			l, err := runOnce(t, d, defs)
			if err != nil {
				t.Fatal(err)
			}
			if l.Changed || len(l.Repair) != 1 || d.writes != 1 {
				t.Fatalf("changed=%v repair=%q writes=%d", l.Changed, l.Repair, d.writes)
			}
			sgdiskClean(t, img)
			d2 := openDisk(t, img, -1)
			if l, err := runOnce(t, d2, defs); err != nil || !l.Empty() || d2.writes != 0 {
				t.Fatalf("after repair: %v, %d writes", err, d2.writes)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	// No GPT: clear error, nothing written.
	p := filepath.Join(t.TempDir(), "blank.img")
	os.WriteFile(p, nil, 0o644)
	os.Truncate(p, 64*MiB)
	d := openDisk(t, p, -1)
	defs := writeDefs(t, firstBootDefs)
	if _, err := runOnce(t, d, defs); !errors.Is(err, gpt.ErrNoGPT) || d.writes != 0 {
		t.Fatalf("blank disk: %v, %d writes", err, d.writes)
	}
	// Does not fit: the error says how much is missing, nothing written.
	img := seedImage(t, 32*MiB, 40*MiB)
	big := writeDefs(t, map[string]string{"10-root.conf": "[Partition]\nType=root\nSizeMinBytes=20M\n"})
	d = openDisk(t, img, -1)
	_, err := runOnce(t, d, big)
	if err == nil || d.writes != 0 || !strings.Contains(err.Error(), "missing") || !strings.Contains(err.Error(), "10-root.conf") {
		t.Fatalf("too big: %v, %d writes", err, d.writes)
	}
	// 40 MiB disk: the usable area ends 33 sectors before the end, rounded down to 4 KiB:
	// 40M-20K; 25 MiB are used, so 15M-20K are free for the 20 MiB asked.
	free := int64(40*MiB-20*1024) - 25*MiB
	if want := fmt.Sprintf("%d bytes (5.0M) missing", 20*MiB-free); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}

// TestCrashDamagedPrimaryFlashed is the worst case: a flashed image whose primary GPT is
// damaged, so the only valid copy is the image's backup — inside the root partition about
// to be formatted. Every cut must still leave a table, and a rerun must give the uncut result.
func TestCrashDamagedPrimaryFlashed(t *testing.T) {
	testutil.Need(t, "sgdisk")
	base := seedImage(t, 32*MiB, 64*MiB)
	f, _ := os.OpenFile(base, os.O_RDWR, 0)
	f.WriteAt([]byte("damage"), 512+60)
	f.Close()
	defs := writeDefs(t, map[string]string{"10-root.conf": "[Partition]\nType=root\nFormat=ext4\n"})
	ref := cp(t, base)
	d := openDisk(t, ref, -1)
	if _, err := runOnce(t, d, defs); err != nil {
		t.Fatal(err)
	}
	total := d.writes
	want, _ := os.ReadFile(ref)
	sgdiskClean(t, ref)
	for n := 0; n < total; n++ {
		img := cp(t, base)
		cut := openDisk(t, img, n)
		if _, err := runOnce(t, cut, defs); !errors.Is(err, errCut) {
			t.Fatalf("cut after %d writes: %v", n, err)
		}
		if _, err := gpt.Read(cut.f, 64*MiB, 0); err != nil {
			t.Fatalf("cut after %d of %d writes: %v", n, total, err)
		}
		again := openDisk(t, img, -1)
		if _, err := runOnce(t, again, defs); err != nil {
			t.Fatalf("rerun after a cut at %d: %v", n, err)
		}
		sgdiskClean(t, img)
		if b, _ := os.ReadFile(img); !bytes.Equal(b, want) {
			t.Errorf("cut after %d of %d writes: rerun differs from an uncut run", n, total)
		}
	}
}

// TestFactoryReset: the partitions whose definition has FactoryReset=yes are erased and
// created anew (same place, same derived UUID, formatted again); the others stay as they are.
func TestFactoryReset(t *testing.T) {
	testutil.Need(t, "sgdisk")
	img := cp(t, seedImage(t, 32*MiB, 64*MiB))
	defs := writeDefs(t, map[string]string{
		"10-root.conf": "[Partition]\nType=root\nFormat=ext4\nFactoryReset=yes\n",
		"20-swap.conf": "[Partition]\nType=swap\nSizeMinBytes=4M\nSizeMaxBytes=4M\n",
	})
	first, err := Run(Options{Target: img, Definitions: defs, Arch: "arm64", Format: fakeFormat})
	if err != nil {
		t.Fatal(err)
	}
	var root Partition
	for _, p := range first.Partitions {
		if p.TypeName == "root-arm64" {
			root = p
		}
	}
	// User data in root and swap.
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	fsStart := append([]byte(nil), make([]byte, 4096)...)
	f.ReadAt(fsStart, root.Offset)
	f.WriteAt([]byte("user data"), root.Offset) // the file system is in use: its first block changed
	swapOff := first.Partitions[1].Offset
	f.WriteAt([]byte("swap data"), swapOff+8192)
	f.Close()
	before, _ := os.ReadFile(img)

	l, err := Run(Options{Target: img, Definitions: defs, Arch: "arm64", Format: fakeFormat, FactoryReset: true})
	if err != nil {
		t.Fatal(err)
	}
	sgdiskClean(t, img)
	after, _ := os.ReadFile(img)
	var again Partition
	for _, p := range l.Partitions {
		if p.TypeName == "root-arm64" {
			again = p
		}
	}
	// Same place and UUID; like systemd-repart, the new partition takes the next free
	// number after the highest one in use (swap's 5), so 6.
	if again.Action != Create || again.Offset != root.Offset || again.Size != root.Size || again.UUID != root.UUID || again.Index != 6 {
		t.Fatalf("root after the reset %+v, before %+v", again, root)
	}
	if !bytes.Equal(after[root.Offset:root.Offset+4096], fsStart) {
		t.Error("root was not formatted again")
	}
	if !bytes.Equal(after[swapOff:swapOff+4*MiB], before[swapOff:swapOff+4*MiB]) || !bytes.Equal(after[34*512:25*MiB], before[34*512:25*MiB]) {
		t.Error("a partition without FactoryReset=yes changed")
	}
	if l, err := Run(Options{Target: img, Definitions: defs, Arch: "arm64", Format: fakeFormat}); err != nil || !l.Empty() {
		t.Fatalf("after the reset: %v", err)
	}
}
