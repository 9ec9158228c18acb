package repart

import (
	"bytes"
	"crypto/sha256"
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

// Bad disks and definitions given to Run, as `piboot repart` gets them: each is refused with
// an error that says what is wrong, and the disk stays byte for byte as it was; or it is one
// of the documented repairs, after which sgdisk -v is clean and a second run writes nothing.

func inSum(t *testing.T, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

func inSh(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// inCard is a 64 MiB image with the seed's first partitions (as sgdisk makes them), flashed
// onto a card of cardSize bytes: the backup GPT stays at 64 MiB.
func inCard(t *testing.T, cardSize int64) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "card.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := gpt.New(64<<20, 512, uuid.MustParse("5d1f2b0e-7c1a-4b51-9a47-3f0b1c2d3e4f"))
	if err != nil {
		t.Fatal(err)
	}
	tab.Partitions = []gpt.Partition{
		{Index: 1, Type: gpt.TypeESP, UUID: uuid.MustParse("11111111-1111-4111-8111-111111111111"), FirstLBA: 2048, LastLBA: 34815, Name: "boot"},
		{Index: 2, Type: gpt.TypeLinuxGeneric, UUID: uuid.MustParse("22222222-2222-4222-8222-222222222222"), FirstLBA: 34816, LastLBA: 67583, Name: "store"},
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	if err := gpt.Write(f, 64<<20, tab); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(cardSize); err != nil {
		t.Fatal(err)
	}
	return img
}

func inPatch(t *testing.T, img string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func inRun(t *testing.T, img, defs string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	_, err := Run(Options{Target: img, Definitions: defs, Seed: "c0ffee00-1234-4abc-8def-0123456789ab", Arch: "arm64",
		Out: &out, Err: &out})
	return out.String(), err
}

func TestBadDisksRefused(t *testing.T) {
	testutil.Need(t, "sgdisk", "sfdisk", "mkfs.vfat")
	defs := t.TempDir()
	writeFile(t, filepath.Join(defs, "10-root.conf"), "[Partition]\nType=root\nLabel=root\n")
	const MiB = 1 << 20
	for _, c := range []struct {
		name string
		make func(t *testing.T) string
		want string // in the error
	}{
		{"no partition table", func(t *testing.T) string {
			img := filepath.Join(t.TempDir(), "blank.img")
			os.WriteFile(img, nil, 0o644)
			os.Truncate(img, 64*MiB)
			return img
		}, "no GPT partition table at LBA 1 or at the last LBA"},
		{"MBR only", func(t *testing.T) string {
			img := filepath.Join(t.TempDir(), "dos.img")
			os.WriteFile(img, nil, 0o644)
			os.Truncate(img, 64*MiB)
			cmd := exec.Command("sfdisk", "-q", img)
			cmd.Stdin = strings.NewReader("label: dos\n,16M,c\n,16M,83\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sfdisk: %v\n%s", err, out)
			}
			return img
		}, "DOS partition table"},
		{"whole-disk FAT over an old GPT", func(t *testing.T) string {
			img := inCard(t, 96*MiB)
			inSh(t, "mkfs.vfat", "-I", img)
			return img
		}, "boot sector of a FAT file system"},
		{"zeroed start over an old GPT", func(t *testing.T) string {
			img := inCard(t, 64*MiB)
			inPatch(t, img, 0, make([]byte, 1<<20))
			return img
		}, "stale leftover"},
		{"both GPT copies damaged", func(t *testing.T) string {
			img := inCard(t, 96*MiB)
			inPatch(t, img, 512+20, []byte{0xFF})
			inPatch(t, img, 64*MiB-512+20, []byte{0xFF})
			return img
		}, "no valid GPT copy"},
		{"empty file", func(t *testing.T) string {
			img := filepath.Join(t.TempDir(), "empty.img")
			os.WriteFile(img, nil, 0o644)
			return img
		}, "device of 0 bytes is too small"},
		{"100-byte file", func(t *testing.T) string {
			img := filepath.Join(t.TempDir(), "tiny.img")
			os.WriteFile(img, make([]byte, 100), 0o644)
			return img
		}, "too small"},
		{"GPT of a 40 KiB file", func(t *testing.T) string {
			img := filepath.Join(t.TempDir(), "small.img")
			os.WriteFile(img, nil, 0o644)
			os.Truncate(img, 40<<10)
			inSh(t, "sgdisk", "-o", img)
			return img
		}, "missing"},
		{"card smaller than the image", func(t *testing.T) string {
			return inCard(t, 20*MiB)
		}, `partition 2 ("store") ends at LBA 67583, beyond the last usable LBA`},
		{"partition table full", func(t *testing.T) string {
			img := inCard(t, 96*MiB)
			f, _ := os.OpenFile(img, os.O_RDWR, 0)
			defer f.Close()
			tab, err := gpt.Read(f, 96*MiB, 512)
			if err != nil {
				t.Fatal(err)
			}
			tab.Partitions = append(tab.Partitions, gpt.Partition{Index: 128, Type: gpt.TypeLinuxGeneric,
				UUID: uuid.MustParse("33333333-3333-4333-8333-333333333333"), FirstLBA: 67584, LastLBA: 69631})
			if err := gpt.Write(f, 64*MiB, tab); err != nil {
				t.Fatal(err)
			}
			return img
		}, "exceeds the 128 entries"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			img := c.make(t)
			before := inSum(t, img)
			out, err := inRun(t, img, defs)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), img) {
				t.Errorf("want an error naming %s with %q, got %v\n%s", img, c.want, err, out)
			}
			if inSum(t, img) != before {
				t.Errorf("%s changed", img)
			}
		})
	}
}

func TestBadDefinitionsNameFileAndLine(t *testing.T) {
	testutil.Need(t, "sgdisk")
	img := inCard(t, 256<<20)
	before := inSum(t, img)
	for _, c := range []struct{ file, text, want string }{
		{"10-a.conf", "[Partition]\nType=root\nSizeMinBytes=lots\n", "10-a.conf:3: SizeMinBytes=lots"},
		{"10-a.conf", "[Partition]\nType=rooot\n", "10-a.conf:2: Type=rooot"},
		{"10-a.conf", "[Partition]\nType=root\n\nWeight=-1\n", "10-a.conf:4: Weight=-1"},
		{"10-a.conf", "[Partition]\nType=root\nSizeMinBytes=2G\n# max\nSizeMaxBytes=1G\n", "10-a.conf:3: SizeMinBytes= larger than SizeMaxBytes="},
		{"10-a.conf", "# no type\n[Partition]\nLabel=x\n", "10-a.conf:2: Type= not defined"},
		{"10-a.conf", "", "10-a.conf:1: Type= not defined"},
		{"10-a.conf", "[Partiton]\nType=root\n", "10-a.conf:1: unknown section"},
		{"10-a.conf", "Type=root\n", "10-a.conf:1: assignment outside of any section"},
		{"10-a.conf", "[Partition]\nType=root\nType=esp\n", "10-a.conf:3: duplicate Type="},
		{"10-a.conf", "[Partition]\nType=root\nFormat=ext4\nCopyBlocks=auto\n", "10-a.conf:4: Format=/CopyFiles="},
		{"10-a.conf", "[Partition]\nType=root\nLabel=a-label-that-is-much-longer-than-thirty-six\n", "10-a.conf:3: Label="},
		{"10-a.conf", "[Partition]\nType=root\n\nLabel=boot\n", "10-a.conf:4: duplicate definition: Label=boot is also used by"},
		{"10-a.conf", "[Partition]\nType=root\n[Partition]\nType=esp\n", "10-a.conf:4: duplicate Type="},
	} {
		defs := t.TempDir()
		writeFile(t, filepath.Join(defs, "05-ok.conf"), "[Partition]\nType=esp\nLabel=boot\n")
		writeFile(t, filepath.Join(defs, c.file), c.text)
		out, err := inRun(t, img, defs)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(defs, c.want)) {
			t.Errorf("%q: want %q, got %v\n%s", c.text, c.want, err, out)
		}
	}
	// Drop-ins are named by their own path and line.
	defs := t.TempDir()
	writeFile(t, filepath.Join(defs, "10-a.conf"), "[Partition]\nType=root\n")
	os.Mkdir(filepath.Join(defs, "10-a.conf.d"), 0o755)
	writeFile(t, filepath.Join(defs, "10-a.conf.d", "size.conf"), "[Partition]\n\nSizeMaxBytes=1X\n")
	if _, err := inRun(t, img, defs); err == nil || !strings.Contains(err.Error(), filepath.Join(defs, "10-a.conf.d", "size.conf")+":3:") {
		t.Errorf("drop-in: %v", err)
	}
	if inSum(t, img) != before {
		t.Errorf("%s changed", img)
	}
}

// TestDocumentedRepairs: a damaged GPT copy or a missing protective MBR is rewritten, even
// when nothing else changes.
func TestDocumentedRepairs(t *testing.T) {
	testutil.Need(t, "sgdisk")
	defs := t.TempDir()
	writeFile(t, filepath.Join(defs, "10-esp.conf"), "[Partition]\nType=esp\n") // matches boot: nothing to do
	for _, c := range []struct {
		name   string
		off    int64
		data   []byte
		repair string
	}{
		{"primary header", 512 + 20, []byte{0x5A}, "primary GPT is damaged"},
		{"primary entries", 1024 + 60, []byte{0x5A}, "primary GPT is damaged"},
		{"backup header", 64<<20 - 512 + 20, []byte{0x5A}, "backup GPT is damaged"},
		{"protective MBR", 0, make([]byte, 512), "protective MBR missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			img := inCard(t, 64<<20)
			inPatch(t, img, c.off, c.data)
			out, err := inRun(t, img, defs)
			if err != nil || !strings.Contains(out, "repair: "+c.repair) {
				t.Fatalf("%v\n%s", err, out)
			}
			if b, err := exec.Command("sgdisk", "-v", img).CombinedOutput(); err != nil || !strings.Contains(string(b), "No problems found") {
				t.Fatalf("sgdisk -v: %v\n%s", err, b)
			}
			before := inSum(t, img)
			if out, err := inRun(t, img, defs); err != nil || !strings.Contains(out, "No changes.") || inSum(t, img) != before {
				t.Fatalf("second run: %v\n%s", err, out)
			}
		})
	}
}
