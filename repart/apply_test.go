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

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/testutil"
	"github.com/piboot/piboot/internal/uuid"
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
	return runOn(t, d, fi.Size(), defsDir)
}

// runOn is runOnce through any disk model over the image file f.
func runOn(t testing.TB, d interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}, size int64, defsDir string) (*Layout, error) {
	defs, err := ParseDir(defsDir, "arm64")
	if err != nil {
		t.Fatal(err)
	}
	tab, err := gpt.Read(d, size, 0)
	if err != nil {
		return nil, err
	}
	seed, _, err := Seed("", "", tab)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Plan(Disk{Size: size, Table: tab}, defs, seed)
	if err != nil {
		return nil, err
	}
	return l, Apply(d, size, l, fakeFormat)
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

// cacheDisk is a disk in memory with a volatile write cache, for power cuts in every
// order the cache may flush in: what was written since the last sync may or may not be on
// the medium after a cut. It keeps written sectors over a shared base image, so copies are
// cheap. After limit writes (limit < 0: never) writes and syncs fail.
type cacheDisk struct {
	base          []byte
	over          map[int64][]byte // sector offset -> 512 bytes
	cached        []cachedWrite    // since the last sync, in order
	limit, writes int
	syncs         int
}

type cachedWrite struct {
	off      int64
	old, new []byte
}

func newCacheDisk(base []byte, limit int) *cacheDisk {
	return &cacheDisk{base: base, over: map[int64][]byte{}, limit: limit}
}

// copyCut is what the medium holds: a new disk over the same base, without a cache.
func (d *cacheDisk) copyCut(limit int) *cacheDisk {
	c := newCacheDisk(d.base, limit)
	for k, v := range d.over {
		c.over[k] = v
	}
	return c
}

func (d *cacheDisk) ReadAt(b []byte, off int64) (int, error) {
	if off%512 != 0 || len(b)%512 != 0 {
		return 0, fmt.Errorf("unaligned read of %d at %d", len(b), off)
	}
	for i := 0; i < len(b); i += 512 {
		if s, ok := d.over[off+int64(i)]; ok {
			copy(b[i:], s)
		} else {
			copy(b[i:i+512], d.base[off+int64(i):])
		}
	}
	return len(b), nil
}

func (d *cacheDisk) WriteAt(b []byte, off int64) (int, error) {
	if d.limit >= 0 && d.writes >= d.limit {
		return 0, errCut
	}
	if off%512 != 0 || len(b)%512 != 0 || off+int64(len(b)) > int64(len(d.base)) {
		return 0, fmt.Errorf("bad write of %d at %d", len(b), off)
	}
	d.writes++
	old := make([]byte, len(b))
	d.ReadAt(old, off)
	// A copy, as io.WriterAt requires: the writer reuses b (gpt recycles its buffers).
	b = append([]byte(nil), b...)
	d.cached = append(d.cached, cachedWrite{off, old, b})
	d.put(b, off)
	return len(b), nil
}

func (d *cacheDisk) put(b []byte, off int64) {
	for i := 0; i < len(b); i += 512 {
		d.over[off+int64(i)] = b[i : i+512 : i+512]
	}
}

func (d *cacheDisk) Sync() error {
	if d.limit >= 0 && d.writes >= d.limit {
		return errCut
	}
	d.cached = nil
	d.syncs++
	return nil
}

// lose undoes the cached writes for which drop says so, latest first.
func (d *cacheDisk) lose(drop func(off int64) bool) {
	for i := len(d.cached) - 1; i >= 0; i-- {
		if c := d.cached[i]; drop(c.off) {
			d.put(c.old, c.off)
		}
	}
	d.cached = nil
}

func (d *cacheDisk) bytes() []byte {
	b := make([]byte, len(d.base))
	d.ReadAt(b, 0)
	return b
}

// TestCrashUnsynced cuts the power after every write of a first boot, and again after every
// write of the rerun that follows, and each time loses what was not synced in the worst
// ways for the file systems: all of it, or only the formatter's writes while the table
// writes reach the medium. Whenever a reader then finds the new root partition in the table,
// its file system must be complete; and a final rerun must give the bytes of an uncut run.
func TestCrashUnsynced(t *testing.T) {
	base, err := os.ReadFile(seedImage(t, 32*MiB, 64*MiB))
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(base))
	defs := writeDefs(t, firstBootDefs)
	ref := newCacheDisk(base, -1)
	if _, err := runOn(t, ref, size, defs); err != nil {
		t.Fatal(err)
	}
	total := ref.writes
	want := ref.bytes()
	newTab, _ := gpt.Read(bytes.NewReader(want), size, 0)
	var root gpt.Partition
	for _, p := range newTab.Partitions {
		if p.Name == "root-arm64" {
			root = p
		}
	}
	if root.Index == 0 {
		t.Fatal("no root partition in the uncut result")
	}
	rootStart, rootEnd := int64(root.FirstLBA)*512, int64(root.LastLBA+1)*512
	t.Logf("an uncut first boot makes %d writes and %d syncs", total, ref.syncs)
	if ref.syncs > 2 {
		t.Errorf("%d syncs, want 2 (file systems with the backup table, then the primary)", ref.syncs)
	}
	losses := []struct {
		name string
		drop func(int64) bool
	}{
		{"all unsynced", func(int64) bool { return true }},
		{"unsynced formatter writes", func(off int64) bool { return off >= rootStart && off < rootEnd }},
	}
	// check: a reader finds a table, and if it has the new root, the root's file system
	// is complete.
	check := func(d *cacheDisk, what string) {
		t.Helper()
		got, err := gpt.Read(d, size, 0)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		for _, p := range got.Partitions {
			if p.UUID != root.UUID {
				continue
			}
			b := make([]byte, rootEnd-rootStart)
			d.ReadAt(b, rootStart)
			if !bytes.Equal(b, want[rootStart:rootEnd]) {
				t.Fatalf("%s: the table has the new root partition, its file system is incomplete", what)
			}
		}
	}
	cuts := 0
	for n := 0; n < total; n++ {
		for _, loss := range losses {
			cut := newCacheDisk(base, n)
			if _, err := runOn(t, cut, size, defs); !errors.Is(err, errCut) {
				t.Fatalf("cut after %d writes: %v", n, err)
			}
			cut.lose(loss.drop)
			what := fmt.Sprintf("cut after %d writes, %s lost", n, loss.name)
			check(cut, what)
			// The rerun is cut too, at every write it makes.
			probe := cut.copyCut(-1)
			if _, err := runOn(t, probe, size, defs); err != nil {
				t.Fatalf("%s: rerun: %v", what, err)
			}
			for m := 0; m < probe.writes; m++ {
				cut2 := cut.copyCut(m)
				if _, err := runOn(t, cut2, size, defs); !errors.Is(err, errCut) {
					t.Fatalf("%s, rerun cut after %d: %v", what, m, err)
				}
				cut2.lose(loss.drop)
				check(cut2, fmt.Sprintf("%s, rerun cut after %d writes", what, m))
				cuts++
			}
			if !bytes.Equal(probe.bytes(), want) {
				t.Errorf("%s: rerun differs from an uncut run", what)
			}
		}
	}
	t.Logf("%d double cuts checked", cuts)
}
