package gpt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/piboot/piboot/internal/testutil"
	"github.com/piboot/piboot/internal/uuid"
)

const MiB = 1 << 20

var (
	tmplDir   string
	templates = map[string]string{}
	tmplMu    sync.Mutex
)

func TestMain(m *testing.M) {
	tmplDir, _ = os.MkdirTemp("", "gpt-test-")
	code := m.Run()
	os.RemoveAll(tmplDir)
	os.Exit(code)
}

// template builds a disk image once per test binary (sgdisk takes a second per call) and
// hands each caller a private sparse copy.
func template(t *testing.T, key string, build func(t *testing.T) string) string {
	t.Helper()
	tmplMu.Lock()
	src, ok := templates[key]
	if !ok {
		src = build(t)
		templates[key] = src
	}
	tmplMu.Unlock()
	dst := filepath.Join(t.TempDir(), "copy.img")
	copySparse(t, src, dst)
	return dst
}

func copySparse(t *testing.T, src, dst string) {
	t.Helper()
	run(t, "cp", "--sparse=always", src, dst)
}

type sfdiskTable struct {
	PT struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		FirstLBA   uint64 `json:"firstlba"`
		LastLBA    uint64 `json:"lastlba"`
		SectorSize int    `json:"sectorsize"`
		Partitions []struct {
			Node  string `json:"node"`
			Start uint64 `json:"start"`
			Size  uint64 `json:"size"`
			Type  string `json:"type"`
			UUID  string `json:"uuid"`
			Name  string `json:"name"`
			Attrs string `json:"attrs"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

func sfdisk(t *testing.T, img string) sfdiskTable {
	t.Helper()
	out, err := exec.Command("sfdisk", "--json", img).Output()
	if err != nil {
		t.Fatalf("sfdisk --json %s: %v", img, err)
	}
	var s sfdiskTable
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("sfdisk json: %v\n%s", err, out)
	}
	return s
}

func sgdiskVerify(t *testing.T, img string) {
	t.Helper()
	out, err := exec.Command("sgdisk", "-v", img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") {
		t.Fatalf("sgdisk -v %s: %v\n%s", img, err, out)
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func sparse(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, p string) *Table {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	tab, err := Read(f, fi.Size(), 0)
	if err != nil {
		t.Fatalf("Read %s: %v", p, err)
	}
	return tab
}

func writeFile(t *testing.T, p string, tab *Table) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	if err := Write(f, fi.Size(), tab); err != nil {
		t.Fatalf("Write %s: %v", p, err)
	}
}

// compare checks that tab and sfdisk's view of img agree field by field.
func compare(t *testing.T, img string, tab *Table) {
	t.Helper()
	s := sfdisk(t, img).PT
	if s.Label != "gpt" || !strings.EqualFold(s.ID, tab.DiskGUID.String()) || s.FirstLBA != tab.FirstUsableLBA ||
		s.LastLBA != tab.LastUsableLBA || s.SectorSize != tab.SectorSize || len(s.Partitions) != len(tab.Partitions) {
		t.Fatalf("sfdisk sees %+v, we read %+v", s, tab)
	}
	for i, sp := range s.Partitions {
		p := tab.Partitions[i]
		wantNode := fmt.Sprintf("%s%d", img, p.Index)
		if strings.HasPrefix(img, "/dev/") {
			wantNode = fmt.Sprintf("%sp%d", img, p.Index)
		}
		if sp.Node != wantNode || sp.Start != p.FirstLBA || sp.Size != p.LastLBA-p.FirstLBA+1 ||
			!strings.EqualFold(sp.Type, p.Type.String()) || !strings.EqualFold(sp.UUID, p.UUID.String()) || sp.Name != p.Name {
			t.Errorf("partition %d: sfdisk %+v, we %+v", i, sp, p)
		}
	}
}

func TestReadSgdisk(t *testing.T) {
	testutil.Need(t, "sgdisk", "sfdisk")
	img := sparse(t, 64*MiB)
	run(t, "sgdisk", "-U", "11111111-2222-3333-4444-555555555555",
		"-n", "1:2048:+8M", "-t", "1:EF00", "-c", "1:boot", "-u", "1:01020304-0506-0708-090a-0b0c0d0e0f10",
		"-n", "3:0:+4M", "-t", "3:8305", "-c", "3:nix-store_v0", "-A", "3:set:60",
		"-n", "2:0:+1M", "-c", "2:ünïcødé ☃", img)
	tab := readFile(t, img)
	compare(t, img, tab)
	if !tab.Status.PrimaryValid || !tab.Status.BackupValid || len(tab.Status.Problems) != 0 {
		t.Errorf("status %+v", tab.Status)
	}
	if p := tab.Partition(3); p == nil || p.Attributes != AttrReadOnly || TypeName(p.Type) != "root-arm64" {
		t.Errorf("partition 3: %+v", p)
	}
	if p := tab.ByName("boot"); p == nil || p.Type != TypeESP || p.UUID.String() != "01020304-0506-0708-090a-0b0c0d0e0f10" {
		t.Errorf("boot: %+v", p)
	}
	if tab.DiskGUID.String() != "11111111-2222-3333-4444-555555555555" {
		t.Errorf("disk GUID %s", tab.DiskGUID)
	}
}

// countingWriter counts writes and bytes; limit >= 0 makes every write after the limit-th
// fail without touching the file, as a power cut would.
type countingWriter struct {
	f      *os.File
	writes int
	bytes  int64
	limit  int
}

var errCut = errors.New("power cut")

func (c *countingWriter) ReadAt(b []byte, off int64) (int, error) { return c.f.ReadAt(b, off) }
func (c *countingWriter) WriteAt(b []byte, off int64) (int, error) {
	if c.limit >= 0 && c.writes >= c.limit {
		return 0, errCut
	}
	c.writes++
	c.bytes += int64(len(b))
	return c.f.WriteAt(b, off)
}
func (c *countingWriter) Sync() error { return nil }

func openCounting(t *testing.T, p string, limit int) (*countingWriter, int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fi, _ := f.Stat()
	return &countingWriter{f: f, limit: limit}, fi.Size()
}

func TestWriteNewAndRewriteNothing(t *testing.T) {
	testutil.Need(t, "sgdisk", "sfdisk")
	for _, ss := range []int{512, 4096} {
		t.Run(fmt.Sprint(ss), func(t *testing.T) {
			img := sparse(t, 96*MiB)
			tab, err := New(96*MiB, ss, uuid.MustParse("8a0d4f39-6b1c-4e0e-9d65-3a9e6f0b7c11"))
			if err != nil {
				t.Fatal(err)
			}
			per := uint64(MiB / ss)
			tab.Partitions = []Partition{
				{Index: 1, Type: TypeESP, UUID: uuid.New(), FirstLBA: per, LastLBA: 9*per - 1, Name: "boot"},
				{Index: 2, Type: TypeLinuxGeneric, UUID: uuid.New(), FirstLBA: 9 * per, LastLBA: 20*per - 1, Name: "data", Attributes: AttrGrowFS | AttrNoAuto},
			}
			cw, size := openCounting(t, img, -1)
			if err := Write(cw, size, tab); err != nil {
				t.Fatal(err)
			}
			if ss == 512 {
				sgdiskVerify(t, img)
				compare(t, img, tab)
			}
			got := readFile(t, img)
			if !got.Status.PrimaryValid || !got.Status.BackupValid || got.Status.BackupLBA != uint64(96*MiB/ss-1) || len(got.Status.Problems) > 0 {
				t.Fatalf("status after write: %+v", got.Status)
			}
			if got.SectorSize != ss || len(got.Partitions) != 2 || got.Partitions[1].Attributes != AttrGrowFS|AttrNoAuto {
				t.Fatalf("read back %+v", got)
			}
			cw2, _ := openCounting(t, img, -1)
			if err := Write(cw2, size, got); err != nil || cw2.writes != 0 {
				t.Fatalf("rewrite of an unchanged table: %d writes, err %v", cw2.writes, err)
			}
		})
	}
}

func TestNoGPT(t *testing.T) {
	img := sparse(t, 8*MiB)
	f, _ := os.Open(img)
	defer f.Close()
	_, err := Read(f, 8*MiB, 0)
	if !errors.Is(err, ErrNoGPT) {
		t.Fatalf("Read of an empty disk: %v", err)
	}
}

func corrupt(t *testing.T, img string, off int64) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	f.ReadAt(b, off)
	b[0] ^= 0x5a
	f.WriteAt(b, off)
}

func TestRepair(t *testing.T) {
	testutil.Need(t, "sgdisk", "sfdisk")
	const size = 32 * MiB
	last := int64(size/512 - 1)
	for _, c := range []struct {
		name       string
		off        int64
		fromBackup bool
	}{
		{"primary header", 512 + 40, true},
		{"primary entries", 2*512 + 60, true},
		{"backup header", last*512 + 40, false},
		{"backup entries", (last-32)*512 + 3, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := template(t, "repair", func(t *testing.T) string {
				img := filepath.Join(tmplDir, "repair.img")
				os.WriteFile(img, nil, 0o644)
				os.Truncate(img, size)
				run(t, "sgdisk", "-n", "1:2048:+4M", "-c", "1:one", "-n", "2:0:+4M", "-c", "2:two", img)
				return img
			})
			want := readFile(t, img)
			corrupt(t, img, c.off)
			got := readFile(t, img)
			if got.Status.FromBackup != c.fromBackup || got.Status.PrimaryValid == c.fromBackup || len(got.Status.Problems) == 0 {
				t.Fatalf("status %+v", got.Status)
			}
			if got.DiskGUID != want.DiskGUID || len(got.Partitions) != 2 || got.Partitions[1].Name != "two" {
				t.Fatalf("read %+v", got)
			}
			writeFile(t, img, got)
			sgdiskVerify(t, img)
			again := readFile(t, img)
			if !again.Status.PrimaryValid || !again.Status.BackupValid || len(again.Status.Problems) > 0 {
				t.Fatalf("after repair: %+v", again.Status)
			}
		})
	}
}

// flashed makes an image of imgSize with sgdisk and puts it at the start of a sparse disk of
// diskSize, as dd onto a card does; with stale, the card first held another GPT whose backup
// is still at the card's end.
func flashed(t *testing.T, imgSize, diskSize int64, stale bool) string {
	t.Helper()
	disk := sparse(t, diskSize)
	if stale {
		disk = template(t, fmt.Sprint("stale", diskSize), func(t *testing.T) string {
			p := filepath.Join(tmplDir, fmt.Sprint("stale", diskSize))
			os.WriteFile(p, nil, 0o644)
			os.Truncate(p, diskSize)
			run(t, "sgdisk", "-n", "1:2048:+1M", "-c", "1:old-card", p)
			return p
		})
	}
	img := template(t, fmt.Sprint("flash", imgSize), func(t *testing.T) string {
		img := filepath.Join(tmplDir, fmt.Sprint("flash", imgSize))
		os.WriteFile(img, nil, 0o644)
		os.Truncate(img, imgSize)
		run(t, "sgdisk", "-n", "1:2048:+2M", "-t", "1:EF00", "-c", "1:boot", "-n", "2:0:+2M", "-c", "2:nix-store_v0", img)
		return img
	})
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return disk
}

func TestFlashedImage(t *testing.T) {
	testutil.Need(t, "sgdisk", "sfdisk")
	for _, stale := range []bool{false, true} {
		t.Run(fmt.Sprint("stale=", stale), func(t *testing.T) {
			disk := flashed(t, 8*MiB, 24*MiB, stale)
			tab := readFile(t, disk)
			if !tab.Status.PrimaryValid || !tab.Status.BackupValid || tab.Status.BackupLBA != 8*MiB/512-1 {
				t.Fatalf("status %+v", tab.Status)
			}
			if len(tab.Status.Problems) != 1 || (stale != strings.Contains(tab.Status.Problems[0], "stale")) {
				t.Fatalf("problems %q", tab.Status.Problems)
			}
			if tab.Partitions[1].Name != "nix-store_v0" {
				t.Fatalf("read %+v", tab)
			}
			// Damage the primary: the backup at the image's end must win over the stale one.
			corrupt(t, disk, 512+50)
			bk := readFile(t, disk)
			if !bk.Status.FromBackup || bk.Status.BackupLBA != 8*MiB/512-1 || bk.Partitions[1].Name != "nix-store_v0" {
				t.Fatalf("from backup: %+v", bk)
			}
			if err := bk.Resize(24 * MiB); err != nil {
				t.Fatal(err)
			}
			writeFile(t, disk, bk)
			sgdiskVerify(t, disk)
			compare(t, disk, bk)
		})
	}
}

// TestCrash cuts Write after every possible write and checks that Read then returns either
// the old or the new table, and that writing again gives the same bytes as an uncut write.
func TestCrash(t *testing.T) {
	testutil.Need(t, "sgdisk", "sfdisk")
	for _, stale := range []bool{false, true} {
		base := flashed(t, 8*MiB, 16*MiB, stale)
		oldT := readFile(t, base)
		newT := oldT.Clone()
		if err := newT.Resize(16 * MiB); err != nil {
			t.Fatal(err)
		}
		newT.Partitions = append(newT.Partitions, Partition{Index: 3, Type: TypeLinuxGeneric, UUID: uuid.New(),
			FirstLBA: 10 * MiB / 512, LastLBA: newT.LastUsableLBA, Name: "root"})
		newT.Partitions[0].Name = "ESP" // a relabel, as sysupdate does

		ref := cutEveryWrite(t, base, 0, newT, 5, func(got *Table, n, total int) {
			isOld, isNew := sameParts(got, oldT), sameParts(got, newT)
			if !isOld && !isNew {
				t.Fatalf("stale=%v cut after %d writes: table is neither old nor new: %+v", stale, n, got.Partitions)
			}
			// Once the primary entries changed, the new table must win.
			if n >= 4 && !isNew {
				t.Errorf("stale=%v cut after %d writes: old table preferred over the complete new backup", stale, n)
			}
		})
		sgdiskVerify(t, ref) // every rerun equals it byte for byte
	}
}

// cutEveryWrite writes newT over a copy of base uncut (the reference), then over fresh
// copies cut after each of its writes in turn: check gets the table Read (sector size ss,
// 0: detect) finds on the cut image, after n of total writes; writing newT again over the
// cut image must give the reference's bytes. It returns the reference image.
func cutEveryWrite(t *testing.T, base string, ss int, newT *Table, minWrites int, check func(got *Table, n, total int)) string {
	t.Helper()
	ref := filepath.Join(t.TempDir(), "ref.img")
	copySparse(t, base, ref)
	cw, size := openCounting(t, ref, -1)
	if err := Write(cw, size, newT); err != nil {
		t.Fatal(err)
	}
	total := cw.writes
	if total < minWrites {
		t.Fatalf("only %d writes", total)
	}
	want, _ := os.ReadFile(ref)
	for n := 0; n < total; n++ {
		img := filepath.Join(t.TempDir(), "cut.img")
		copySparse(t, base, img)
		cw, size := openCounting(t, img, n)
		if err := Write(cw, size, newT); !errors.Is(err, errCut) {
			t.Fatalf("cut at %d: %v", n, err)
		}
		got, err := Read(cw.f, size, ss)
		if err != nil {
			t.Fatalf("cut after %d of %d writes: %v", n, total, err)
		}
		check(got, n, total)
		cw2, _ := openCounting(t, img, -1)
		if err := Write(cw2, size, newT); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(img); !bytes.Equal(b, want) {
			t.Errorf("cut after %d of %d writes: the rerun differs from an uncut write", n, total)
		}
	}
	return ref
}

func sameParts(a, b *Table) bool {
	if a.LastUsableLBA != b.LastUsableLBA || len(a.Partitions) != len(b.Partitions) {
		return false
	}
	for i := range a.Partitions {
		p, q := a.Partitions[i], b.Partitions[i]
		if p.Index != q.Index || p.Type != q.Type || p.UUID != q.UUID || p.FirstLBA != q.FirstLBA ||
			p.LastLBA != q.LastLBA || p.Attributes != q.Attributes || p.Name != q.Name {
			return false
		}
	}
	return true
}

func TestTypes(t *testing.T) {
	for _, c := range []struct{ in, arch, want string }{
		{"esp", "", "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"},
		{"root", "arm64", "b921b045-1df0-41c3-af44-4c6f280d3fae"},
		{"root", "amd64", "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"},
		{"root-x86-64", "arm64", "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"},
		{"usr-verity", "arm64", "6e11a4e7-fbca-4ded-b9e9-e1a512bb664e"},
		{"linux-generic", "", "0fc63daf-8483-4772-8e79-3d69d8477de4"},
		{"0FC63DAF-8483-4772-8E79-3D69D8477DE4", "", "0fc63daf-8483-4772-8e79-3d69d8477de4"},
	} {
		g, err := ParseType(c.in, c.arch)
		if err != nil || g.String() != c.want {
			t.Errorf("ParseType(%q, %q) = %s, %v; want %s", c.in, c.arch, g, err, c.want)
		}
	}
	for _, bad := range []string{"rooot", "root-z80", "{0fc63daf-8483-4772-8e79-3d69d8477de4}"} {
		if _, err := ParseType(bad, "arm64"); err == nil {
			t.Errorf("ParseType(%q) accepted", bad)
		}
	}
	if TypeName(uuid.MustParse("b921b045-1df0-41c3-af44-4c6f280d3fae")) != "root-arm64" {
		t.Error("root-arm64 name")
	}
	var b [16]byte
	u := uuid.MustParse("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
	EncodeGUID(b[:], u)
	if fmt.Sprintf("%x", b) != "28732ac11ff8d211ba4b00a0c93ec93b" || DecodeGUID(b[:]) != u {
		t.Errorf("GUID encoding %x", b)
	}
}

// TestSector4096 reads a GPT that sgdisk wrote on a loop device with 4096-byte logical
// sectors, rewrites it grown with a new partition, and has sgdisk and sfdisk check it.
func TestSector4096(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.Need(t, "sgdisk", "sfdisk", "losetup")
	img := sparse(t, 64*MiB)
	out, err := exec.Command("losetup", "-b", "4096", "-f", "--show", img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	run(t, "sgdisk", "-n", "1:256:+8M", "-t", "1:EF00", "-c", "1:boot", "-n", "2:0:+4M", "-c", "2:data", dev)

	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := Read(f, 64*MiB, 0) // probed: no 512-byte GPT there
	if err != nil {
		t.Fatal(err)
	}
	if tab.SectorSize != 4096 || tab.FirstUsableLBA != 6 || len(tab.Partitions) != 2 || tab.Partitions[0].FirstLBA != 256 ||
		!tab.Status.PrimaryValid || !tab.Status.BackupValid || tab.Status.BackupLBA != 64*MiB/4096-1 {
		t.Fatalf("read %+v", tab)
	}
	compare(t, dev, tab)
	tab.Partitions = append(tab.Partitions, Partition{Index: 3, Type: TypeHome, UUID: uuid.New(),
		FirstLBA: tab.Partitions[1].LastLBA + 1, LastLBA: tab.LastUsableLBA, Name: "home", Attributes: AttrGrowFS})
	if err := Write(f, 64*MiB, tab); err != nil {
		t.Fatal(err)
	}
	f.Sync()
	sgdiskVerify(t, dev)
	compare(t, dev, tab)
}

// TestCrashDamagedPrimary cuts a write that repairs and changes a table whose primary is
// damaged: the backup, then the only valid copy, must survive until the new primary is whole.
func TestCrashDamagedPrimary(t *testing.T) {
	testutil.Need(t, "sgdisk", "sfdisk")
	base := flashed(t, 16*MiB, 16*MiB, false) // backup already at the end
	corrupt(t, base, 512+70)
	oldT := readFile(t, base)
	if oldT.Status.PrimaryValid {
		t.Fatal("primary not damaged")
	}
	newT := oldT.Clone()
	newT.Partitions = append(newT.Partitions, Partition{Index: 3, Type: TypeLinuxGeneric, UUID: uuid.New(),
		FirstLBA: 10 * MiB / 512, LastLBA: newT.LastUsableLBA, Name: "root"})
	ref := cutEveryWrite(t, base, 0, newT, 1, func(got *Table, n, total int) {
		if !sameParts(got, oldT) && !sameParts(got, newT) {
			t.Fatalf("cut after %d writes: neither old nor new table", n)
		}
	})
	sgdiskVerify(t, ref) // every rerun equals it byte for byte
}

// TestOddEntryArray: 248 entries (sgdisk --resize-table), i.e. an entry array that is not
// 16 KiB and a first usable LBA that is not 34.
func TestOddEntryArray(t *testing.T) {
	testutil.Need(t, "sgdisk", "sfdisk")
	img := sparse(t, 32*MiB)
	run(t, "sgdisk", "--resize-table=248", "-n", "1:2048:+4M", "-c", "1:one", img)
	tab := readFile(t, img)
	if tab.EntryCount != 248 || tab.FirstUsableLBA != 64 || len(tab.Partitions) != 1 {
		t.Fatalf("read %+v", tab)
	}
	tab.Partitions = append(tab.Partitions, Partition{Index: 200, Type: TypeSrv, UUID: uuid.New(),
		FirstLBA: 20480, LastLBA: 40959, Name: "srv"})
	writeFile(t, img, tab)
	sgdiskVerify(t, img)
	compare(t, img, tab)
}

// TestDOSDiskRefused: a disk with a DOS partition table and a leftover GPT is not a GPT disk.
func TestDOSDiskRefused(t *testing.T) {
	testutil.Need(t, "sgdisk", "sfdisk")
	img := sparse(t, 32*MiB)
	run(t, "sgdisk", "-n", "1:2048:+4M", img)
	// A DOS table over it, as an old tool would write one, keeping the GPT sectors.
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	mbr := make([]byte, 512)
	f.ReadAt(mbr, 0)
	copy(mbr[446:462], []byte{0x80, 0, 0, 0, 0x0c, 0, 0, 0, 0x00, 0x08, 0, 0, 0x00, 0x00, 0x01, 0})
	f.WriteAt(mbr, 0)
	f.Close()
	f, _ = os.Open(img)
	defer f.Close()
	if _, err := Read(f, 32*MiB, 0); !errors.Is(err, ErrNoGPT) || !strings.Contains(err.Error(), "DOS") {
		t.Fatalf("Read of a DOS disk: %v", err)
	}
}

// TestStaleBackupBehindFilesystem: a card that held a GPT and was then formatted as a whole
// (mkfs.vfat -I, mformat: a FAT "superfloppy", as cameras and phones do) keeps the old
// backup GPT at its end. That is no GPT disk (the kernel and libfdisk say so): reading the
// old table from the backup, a repair would write a primary over the file system. With a
// protective MBR the same backup is a damaged disk's rescue, and a valid primary without the
// protective MBR is still read (the MBR is written anew with the table).
func TestStaleBackupBehindFilesystem(t *testing.T) {
	testutil.Need(t, "sgdisk", "mformat", "mkfs.vfat")
	img := sparse(t, 64*MiB)
	run(t, "sgdisk", "-n", "1:2048:+16M", "-c", "1:boot", "-n", "2:0:+16M", "-c", "2:store", img)
	withGPT, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	// mkfs.vfat's boot sector has zeros where an MBR has partition types; mformat's boot
	// code happens to look like DOS partitions there.
	for _, format := range [][]string{{"mkfs.vfat", "-I", "-n", "CAMERA", img}, {"mformat", "-i", img, "-v", "CAMERA", "::"}} {
		os.WriteFile(img, withGPT, 0o644)
		run(t, format[0], format[1:]...)
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Read(f, 64*MiB, 0)
		f.Close()
		if !errors.Is(err, ErrNoGPT) {
			t.Fatalf("%s superfloppy with an old backup GPT: %v", format[0], err)
		}
		t.Logf("%s: %v", format[0], err)
	}
	// A whole-disk file system that leaves sector 0 empty (ext4 starts at byte 1024).
	wiped := append([]byte(nil), withGPT...)
	clear(wiped[:64<<10])
	copy(wiped[1024+0x38:], []byte{0x53, 0xEF})
	os.WriteFile(img, wiped, 0o644)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Read(f, 64*MiB, 0); !errors.Is(err, ErrNoGPT) || !strings.Contains(err.Error(), "stale") {
		t.Fatalf("whole-disk ext4 with an old backup GPT: %v", err)
	}

	// The same disk with its protective MBR and primary entries, the primary header lost.
	damaged := append([]byte(nil), withGPT...)
	clear(damaged[512:1024])
	os.WriteFile(img, damaged, 0o644)
	if tab := readFile(t, img); !tab.Status.FromBackup || len(tab.Partitions) != 2 {
		t.Fatalf("lost primary header: %+v", tab.Status)
	}
	// A valid primary without a protective MBR.
	noMBR := append([]byte(nil), withGPT...)
	clear(noMBR[:512])
	os.WriteFile(img, noMBR, 0o644)
	if tab := readFile(t, img); tab.Status.MBRValid || !tab.Status.PrimaryValid || len(tab.Partitions) != 2 {
		t.Fatalf("no protective MBR: %+v", tab.Status)
	}
}

// TestUsableAreaOverlappingEntries: a header whose usable area covers its own entry array
// (a tool's bug, or a corrupted but checksummed field) is not a valid copy: a partition
// there would overwrite the table, and Write refuses to write such a table, after repart
// would already have formatted the new partitions. The other copy is taken.
func TestUsableAreaOverlappingEntries(t *testing.T) {
	const size = 8 * MiB
	img := sparse(t, size)
	tab, err := New(size, 512, uuid.MustParse("5d1f2b0e-7c1a-4b51-9a47-3f0b1c2d3e4f"))
	if err != nil {
		t.Fatal(err)
	}
	tab.Partitions = []Partition{{Index: 1, Type: TypeLinuxGeneric, UUID: uuid.New(), FirstLBA: 2048, LastLBA: 4095, Name: "one"}}
	writeFile(t, img, tab)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr := make([]byte, 512)
	f.ReadAt(hdr, 512)
	binary.LittleEndian.PutUint64(hdr[40:], 20) // first usable LBA inside the entries (2-33)
	binary.LittleEndian.PutUint32(hdr[16:], 0)
	binary.LittleEndian.PutUint32(hdr[16:], crc32.ChecksumIEEE(hdr[:92]))
	f.WriteAt(hdr, 512)
	got, err := Read(f, size, 512)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Status.FromBackup || got.FirstUsableLBA != 34 || !strings.Contains(strings.Join(got.Status.Problems, "; "), "overlaps") {
		t.Fatalf("%+v first usable %d", got.Status, got.FirstUsableLBA)
	}
	if err := Write(f, size, got); err != nil {
		t.Fatal(err)
	}
	if again, err := Read(f, size, 512); err != nil || !again.Status.PrimaryValid || len(again.Status.Problems) > 0 {
		t.Fatalf("after the repair: %v %+v", err, again)
	}
}

// TestCrashOddLayouts cuts Write after every write, as TestCrash does, on the layouts other
// tools leave: few entries, entries away from LBA 2, 4096-byte sectors; each flashed onto a
// larger disk that still holds the backup of an earlier, larger table. Every cut leaves the
// old or the new table, the new one from the first write to the primary on, and a rerun
// gives the bytes of an uncut write.
func TestCrashOddLayouts(t *testing.T) {
	for _, c := range []struct {
		name              string
		ss                int
		entries           uint32
		entriesLBA, first uint64
	}{
		{"4 entries", 512, 4, 2, 3},
		{"16 entries at LBA 34", 512, 16, 34, 2048},
		{"4096-byte sectors", 4096, 128, 2, 6},
		{"4096-byte sectors, 8 entries at LBA 10", 4096, 8, 10, 256},
	} {
		t.Run(c.name, func(t *testing.T) {
			const imgSize, diskSize = 8 * MiB, 16 * MiB
			ss := uint64(c.ss)
			base := sparse(t, diskSize)
			f, err := os.OpenFile(base, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			stale, _ := New(diskSize, c.ss, uuid.New())
			stale.Partitions = []Partition{{Index: 1, Type: TypeLinuxGeneric, UUID: uuid.New(), FirstLBA: MiB / ss, LastLBA: stale.LastUsableLBA, Name: "old"}}
			if err := Write(f, diskSize, stale); err != nil {
				t.Fatal(err)
			}
			f.WriteAt(make([]byte, 64<<10), 0) // flashing overwrote the old primary
			oldT, _ := New(imgSize, c.ss, uuid.New())
			oldT.EntryCount, oldT.EntriesLBA, oldT.FirstUsableLBA = c.entries, c.entriesLBA, c.first
			if err := oldT.Resize(imgSize); err != nil {
				t.Fatal(err)
			}
			oldT.Partitions = []Partition{
				{Index: 1, Type: TypeESP, UUID: uuid.New(), FirstLBA: MiB / ss, LastLBA: 3*MiB/ss - 1, Name: "boot"},
				{Index: 2, Type: TypeLinuxGeneric, UUID: uuid.New(), FirstLBA: 3 * MiB / ss, LastLBA: 5*MiB/ss - 1, Name: "store"},
			}
			if err := Write(f, imgSize, oldT); err != nil {
				t.Fatal(err)
			}
			f.Close()
			got, err := Read(openRO(t, base), diskSize, c.ss)
			if err != nil || !sameParts(got, oldT) {
				t.Fatalf("flashed table: %v %+v", err, got)
			}
			newT := got.Clone()
			if err := newT.Resize(diskSize); err != nil {
				t.Fatal(err)
			}
			newT.Partitions = append(newT.Partitions, Partition{Index: 3, Type: TypeLinuxGeneric, UUID: uuid.New(),
				FirstLBA: 5 * MiB / ss, LastLBA: newT.LastUsableLBA, Name: "root"})

			cutEveryWrite(t, base, c.ss, newT, 1, func(got *Table, n, total int) {
				isOld, isNew := sameParts(got, oldT), sameParts(got, newT)
				if !isOld && !isNew {
					t.Fatalf("cut after %d of %d writes: neither the old nor the new table: %+v", n, total, got.Partitions)
				}
				if n >= total-1 && !isNew { // the last write is the primary header; before it the primary entries
					t.Errorf("cut after %d of %d writes: the old table, though the primary entries are new", n, total)
				}
			})
		})
	}
}

func openRO(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// memDisk is a disk image in memory.
type memDisk []byte

func (m memDisk) ReadAt(p []byte, off int64) (int, error) { return copy(p, m[off:]), nil }
func (m memDisk) WriteAt(p []byte, off int64) (int, error) {
	return copy(m[off:], p), nil
}

// TestRecycledBuffers: Read and Write share entry-array buffers (entryBufs), so a buffer may
// come back holding another table's entries: a table written after reading a larger one must
// still be exactly itself on the disk, also with many goroutines reading and writing at once.
func TestRecycledBuffers(t *testing.T) {
	const size = 8 * MiB
	table := func(n int, seed byte) *Table {
		tab, err := New(size, 512, uuid.UUID{seed, 1})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			first := uint64(2048 + i*64)
			tab.Partitions = append(tab.Partitions, Partition{Index: i + 1, Type: TypeLinuxGeneric,
				UUID: uuid.UUID{seed, byte(i), 2}, FirstLBA: first, LastLBA: first + 63, Name: fmt.Sprintf("p%d-%d", seed, i)})
		}
		return tab
	}
	check := func(d memDisk, want *Table) error {
		got, err := Read(d, size, 512)
		if err != nil {
			return err
		}
		if len(got.Partitions) != len(want.Partitions) || got.DiskGUID != want.DiskGUID {
			return fmt.Errorf("read back %d partitions of disk %v, want %d of %v", len(got.Partitions), got.DiskGUID, len(want.Partitions), want.DiskGUID)
		}
		for i, p := range got.Partitions {
			if w := want.Partitions[i]; p.Name != w.Name || p.UUID != w.UUID || p.FirstLBA != w.FirstLBA {
				return fmt.Errorf("partition %d: %+v, want %+v", i+1, p, w)
			}
		}
		// Nothing of another table past the last entry, in either copy.
		for _, at := range []int64{2 * 512, size - 33*512} {
			tail := d[at+int64(len(want.Partitions))*128 : at+128*128]
			if !bytes.Equal(tail, make([]byte, len(tail))) {
				return fmt.Errorf("entry array at byte %d holds bytes past entry %d", at, len(want.Partitions))
			}
		}
		return nil
	}
	big, small := make(memDisk, size), make(memDisk, size)
	if err := Write(big, size, table(40, 1)); err != nil {
		t.Fatal(err)
	}
	if err := check(big, table(40, 1)); err != nil { // leaves big's entries in the pool
		t.Fatal(err)
	}
	if err := Write(small, size, table(1, 2)); err != nil {
		t.Fatal(err)
	}
	if err := check(small, table(1, 2)); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				d := make(memDisk, size)
				want := table((g*7+i)%12, byte(10+g))
				if err := Write(d, size, want); err != nil {
					errs <- err
					return
				}
				if err := check(d, want); err != nil {
					errs <- fmt.Errorf("goroutine %d, round %d: %w", g, i, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// onePartition is a table for a disk of size bytes with one partition, at 1 MiB.
func onePartition(t *testing.T, size int64) *Table {
	t.Helper()
	tab, err := New(size, 512, uuid.UUID{1})
	if err != nil {
		t.Fatal(err)
	}
	tab.Partitions = []Partition{{Index: 1, Type: TypeLinuxGeneric, UUID: uuid.UUID{2}, FirstLBA: 2048, LastLBA: 4095, Name: "a"}}
	return tab
}

// syncLog is a memDisk that records its writes and syncs in order.
type syncLog struct {
	memDisk
	log []string
}

func (s *syncLog) WriteAt(p []byte, off int64) (int, error) {
	s.log = append(s.log, fmt.Sprintf("write %d", off/512))
	return s.memDisk.WriteAt(p, off)
}

func (s *syncLog) Sync() error { s.log = append(s.log, "sync"); return nil }

// TestMBROrder: on a disk with a protective MBR (old or new size, both valid), the MBR is
// written with the primary copy, after the sync that makes the backup durable, so that the
// first sync flushes the backup's sectors only; on a disk without one it is written and
// synced before the primary is touched, because Read does not trust a backup alone when
// neither a protective MBR nor the primary is there.
func TestMBROrder(t *testing.T) {
	const small, size = 4 * MiB, 8 * MiB
	old := onePartition(t, small)
	for _, mbr := range []bool{true, false} {
		d := &syncLog{memDisk: make(memDisk, size)}
		if err := Write(d.memDisk, small, old); err != nil {
			t.Fatal(err)
		}
		if !mbr {
			clear(d.memDisk[:512])
		}
		grown := old.Clone()
		if err := grown.Resize(size); err != nil {
			t.Fatal(err)
		}
		if err := Write(d, size, grown); err != nil {
			t.Fatal(err)
		}
		firstSync := slices.Index(d.log, "sync")
		mbrAt, primaryAt := slices.Index(d.log, "write 0"), -1
		for i, e := range d.log {
			if e == "write 1" || e == "write 2" {
				primaryAt = i
				break
			}
		}
		if mbrAt < 0 || primaryAt < 0 || firstSync < 0 {
			t.Fatalf("mbr=%v: %v", mbr, d.log)
		}
		if mbr && mbrAt < firstSync {
			t.Errorf("protective MBR present: written before the backup's sync: %v", d.log)
		}
		if !mbr && !(mbrAt < firstSync && firstSync < primaryAt) {
			t.Errorf("no protective MBR: not written and synced before the primary: %v", d.log)
		}
		got, err := Read(d.memDisk, size, 512)
		if err != nil || !got.Status.MBRValid || !got.Status.PrimaryValid || !got.Status.BackupValid || len(got.Partitions) != 1 {
			t.Errorf("mbr=%v: read back %+v, %v", mbr, got, err)
		}
	}
}

// prefetchLog is a memDisk that logs reads and prefetches.
type prefetchLog struct {
	memDisk
	log []string
}

func (p *prefetchLog) ReadAt(b []byte, off int64) (int, error) {
	p.log = append(p.log, fmt.Sprintf("read %d+%d", off, len(b)))
	return p.memDisk.ReadAt(b, off)
}

func (p *prefetchLog) Prefetch(off, n int64) {
	p.log = append(p.log, fmt.Sprintf("prefetch %d+%d", off, n))
}

// TestPrefetchOtherCopy: a reader that can prefetch is asked for the backup copy (entries and
// header, as Write lays them out) as soon as the primary header names it, before the
// primary's entries are read.
func TestPrefetchOtherCopy(t *testing.T) {
	const small, size = 4 * MiB, 8 * MiB
	tab := onePartition(t, small)
	d := &prefetchLog{memDisk: make(memDisk, size)}
	if err := Write(d.memDisk, small, tab); err != nil { // a flashed image on a larger card
		t.Fatal(err)
	}
	got, err := Read(d, size, 512)
	if err != nil || !got.Status.BackupValid || got.Status.BackupLBA != small/512-1 {
		t.Fatalf("%+v %v", got, err)
	}
	alt := int64(small/512 - 1)
	want := fmt.Sprintf("prefetch %d+%d", (alt-32)*512, 33*512)
	at, entries := slices.Index(d.log, want), slices.Index(d.log, "read 1024+16384")
	if at < 0 || entries < 0 || at > entries {
		t.Errorf("want %q before the primary's entries are read: %v", want, d.log)
	}
}
