package vfat

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"unicode/utf16"

	"github.com/piboot/piboot/internal/testutil"
)

// boundedFile records the extent of all writes, to prove Format stays inside [0, size).
type boundedFile struct {
	f        *os.File
	min, max int64
	bytes    int64
}

func (b *boundedFile) WriteAt(p []byte, off int64) (int, error) {
	if b.bytes == 0 || off < b.min {
		b.min = off
	}
	if end := off + int64(len(p)); end > b.max {
		b.max = end
	}
	b.bytes += int64(len(p))
	return b.f.WriteAt(p, off)
}

// build formats a new sparse image file of size bytes and returns its path.
func build(t *testing.T, size int64, opts Options) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fat.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	bf := &boundedFile{f: f}
	if err := Format(bf, size, opts); err != nil {
		t.Fatalf("Format(%d): %v", size, err)
	}
	if bf.min < 0 || bf.max > size {
		t.Fatalf("wrote [%d, %d) outside [0, %d)", bf.min, bf.max, size)
	}
	return img
}

// fsckClean runs fsck.vfat -n and requires exit 0 and nothing but its banner and summary.
func fsckClean(t *testing.T, img string) {
	t.Helper()
	testutil.Need(t, "fsck.vfat")
	out, err := exec.Command("fsck.vfat", "-n", img).CombinedOutput()
	if err != nil {
		t.Fatalf("fsck.vfat -n %s: %v\n%s", img, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "fsck.fat ") || !strings.Contains(lines[1], " files, ") {
		t.Fatalf("fsck.vfat -n %s reported problems:\n%s", img, out)
	}
}

// mtoolsEnv makes mtools read unicode names as UTF-8 and accept any geometry.
func mtoolsEnv() []string {
	return append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "LC_ALL=C.UTF-8")
}

// readBack extracts the image with mcopy -s and requires exactly the files of want, byte for
// byte, and the same directories.
func readBack(t *testing.T, img string, want fs.FS) {
	t.Helper()
	testutil.Need(t, "mcopy")
	dst := filepath.Join(t.TempDir(), "out")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("mcopy", "-s", "-n", "-Q", "-i", img, "::/", dst+"/")
	cmd.Env = mtoolsEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mcopy -s: %v\n%s", err, out)
	}
	compareTrees(t, want, os.DirFS(dst))
}

func compareTrees(t *testing.T, want, got fs.FS) {
	t.Helper()
	list := func(fsys fs.FS) map[string]bool {
		m := map[string]bool{}
		if fsys == nil {
			return m
		}
		err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p != "." {
				m[p] = d.IsDir()
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	w, g := list(want), list(got)
	for p, isDir := range w {
		gd, ok := g[p]
		if !ok {
			t.Errorf("%s: missing from the image", p)
			continue
		}
		if gd != isDir {
			t.Errorf("%s: directory=%v in the image, %v in the tree", p, gd, isDir)
			continue
		}
		if !isDir {
			a, err1 := fs.ReadFile(want, p)
			b, err2 := fs.ReadFile(got, p)
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: %v %v", p, err1, err2)
			}
			if !bytes.Equal(a, b) {
				t.Errorf("%s: %d bytes read back differ from the %d written", p, len(b), len(a))
			}
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			t.Errorf("%s: in the image but not in the tree", p)
		}
	}
}

func pattern(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func TestEmptySizes(t *testing.T) {
	for _, tc := range []struct {
		size int64
		ss   int
		fat  int
	}{
		{4 << 20, 512, 16}, {20 << 20, 512, 16}, {32 << 20, 512, 16}, {33 << 20, 512, 32},
		{260 << 20, 512, 32}, {261 << 20, 512, 32}, {1 << 30, 512, 32}, {2 << 30, 512, 32},
		{64 << 20, 4096, 16}, {300 << 20, 4096, 32}, {1 << 30, 4096, 32},
	} {
		t.Run(fmt.Sprintf("%dMiB-%d", tc.size>>20, tc.ss), func(t *testing.T) {
			img := build(t, tc.size, Options{SectorSize: tc.ss, Label: "ESP", TargetZeroed: tc.size > 1<<30})
			fsckClean(t, img)
			readBack(t, img, fstest.MapFS{})
			b := readSector(t, img, 0, 512)
			typ := string(b[82:87])
			if tc.fat == 16 {
				typ = string(b[54:59])
			}
			if typ != fmt.Sprintf("FAT%d", tc.fat) {
				t.Errorf("type %q, want FAT%d", typ, tc.fat)
			}
		})
	}
}

func readSector(t *testing.T, img string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLayoutMatchesMkfsFat compares the geometry with mkfs.fat's for the same number of
// sectors (mkfs.fat trims files to whole dummy tracks, so its sector count is used).
func TestLayoutMatchesMkfsFat(t *testing.T) {
	testutil.Need(t, "mkfs.vfat")
	for _, tc := range []struct {
		mib  int64
		ss   int
		args []string
		fat  int
	}{
		{33, 512, []string{"-F", "32"}, 32}, {100, 512, []string{"-F", "32"}, 32},
		{260, 512, []string{"-F", "32"}, 32}, {261, 512, []string{"-F", "32"}, 32},
		{513, 512, []string{"-F", "32"}, 32}, {2048, 512, []string{"-F", "32"}, 32},
		{9000, 512, []string{"-F", "32"}, 32}, {40000, 512, []string{"-F", "32"}, 32},
		{20, 512, nil, 16}, {32, 512, nil, 16}, {100, 512, []string{"-F", "16"}, 16},
		{300, 4096, []string{"-F", "32"}, 32}, {1024, 4096, []string{"-F", "32"}, 32},
		{100, 4096, []string{"-F", "16"}, 16},
	} {
		t.Run(fmt.Sprintf("%dMiB-%d-%v", tc.mib, tc.ss, tc.args), func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "ref.img")
			if err := os.WriteFile(img, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			// mkfs.fat trims a file to whole dummy tracks (32 or 63 sectors) but picks the
			// cluster size from the untrimmed size: use sizes it does not trim.
			track := int64(32 * 63 * tc.ss)
			if err := os.Truncate(img, (tc.mib<<20+track-1)/track*track); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"-S", fmt.Sprint(tc.ss)}, tc.args...)
			if out, err := exec.Command("mkfs.vfat", append(args, img)...).CombinedOutput(); err != nil {
				t.Fatalf("mkfs.vfat: %v\n%s", err, out)
			}
			b := readSector(t, img, 0, 512)
			le := func(o, n int) uint32 {
				var v uint32
				for i := n - 1; i >= 0; i-- {
					v = v<<8 | uint32(b[o+i])
				}
				return v
			}
			total := le(19, 2)
			if total == 0 {
				total = le(32, 4)
			}
			fatLen := le(22, 2)
			if fatLen == 0 {
				fatLen = le(36, 4)
			}
			g, err := layout(int64(total)*int64(tc.ss), tc.ss, tc.fat, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			got := [4]uint32{uint32(g.secPerCluster), uint32(g.reserved), g.fatLength, uint32(g.rootEntries)}
			want := [4]uint32{uint32(b[13]), le(14, 2), fatLen, le(17, 2)}
			if got != want {
				t.Errorf("sectors/cluster, reserved, FAT length, root entries = %v, mkfs.fat: %v", got, want)
			}
			if tc.args == nil { // auto: our default must also agree where mkfs.fat picks FAT16
				if g2, _ := layout(int64(total)*int64(tc.ss), tc.ss, 0, 0, 0); g2.fatType != 16 {
					t.Errorf("auto picked FAT%d below the FAT32 minimum", g2.fatType)
				}
			}
		})
	}
}

func TestNames(t *testing.T) {
	fsys := fstest.MapFS{
		"README.TXT":                 {Data: []byte("upper 8.3")},
		"readme.md":                  {Data: []byte("lower 8.3")},
		"Mixed.Txt":                  {Data: []byte("mixed case")},
		"a long file name.text":      {Data: []byte("long")},
		"Ünïcødé ñame — ok.txt":      {Data: []byte("unicode")},
		"日本語のファイル名.efi":              {Data: []byte("cjk")},
		".hidden":                    {Data: []byte("dot")},
		"many.dots.in.name.conf":     {Data: []byte("dots")},
		"spaces in name":             {Data: []byte("spaces")},
		"plus+and=brackets[1].txt":   {Data: []byte("lossy")},
		strings.Repeat("x", 255):     {Data: []byte("255 characters")},
		"LONGNA~1.TXT":               {Data: []byte("a real ~1 name")},
		"longname1.txt":              {Data: []byte("1")},
		"longname2.txt":              {Data: []byte("2")},
		"LongName3.txt":              {Data: []byte("3")},
		"empty file":                 {Data: nil},
		"empty":                      {},
		"dir with long name/x":       {Data: []byte("in a long dir")},
		"dir with long name/sub/y.z": {Data: []byte("deeper")},
	}
	for i := 0; i < 30; i++ { // ~N tails beyond 9 shorten the base
		fsys[fmt.Sprintf("collision-name-%02d.txt", i)] = &fstest.MapFile{Data: []byte(fmt.Sprint(i))}
	}
	img := build(t, 64<<20, Options{Root: fsys, Label: "names"})
	fsckClean(t, img)
	readBack(t, img, fsys)
}

func TestShortNameGeneration(t *testing.T) {
	sn := newShortNamer()
	for _, tc := range []struct{ long, short string }{
		{"ReadMe.txt", "README  TXT"},
		{"readme.txt", "README~1TXT"}, // second one: the basis is taken
		{"a long file name.text", "ALONGF~1TEX"},
		{"a long file name.texture", "ALONGF~2TEX"},
		{".bashrc", "BASHRC~1   "},
		{"x+y=z", "X_Y_Z~1    "},
		{"many.dots.conf", "MANYDO~1CON"},
		{"Ünïcødé", "_N_C_D~1   "},
	} {
		got, err := sn.generate(tc.long)
		if err != nil {
			t.Fatal(err)
		}
		if string(got[:]) != tc.short {
			t.Errorf("%q: short %q, want %q", tc.long, got[:], tc.short)
		}
	}
	sn = newShortNamer()
	var last [11]byte
	for i := 1; i <= 12; i++ {
		last, _ = sn.generate("collision.txt")
	}
	if string(last[:]) != "COLLI~12TXT" {
		t.Errorf("12th collision: %q", last[:])
	}
	for _, tc := range []struct {
		name  string
		ok    bool
		lcase byte
	}{
		{"README.TXT", true, 0}, {"readme.txt", true, caseLowerBase | caseLowerExt},
		{"README.txt", true, caseLowerExt}, {"ReadMe.txt", false, 0}, {"a.b.c", false, 0},
		{"toolongname.x", false, 0}, {"x.long", false, 0}, {".x", false, 0}, {"a b", false, 0},
		{"12345678.123", true, 0}, {"x.", false, 0},
	} {
		_, lc, ok := exactShort(tc.name)
		if ok != tc.ok || lc != tc.lcase {
			t.Errorf("exactShort(%q) = %v, %#x; want %v, %#x", tc.name, ok, lc, tc.ok, tc.lcase)
		}
	}
	// Names beyond the BMP are stored as surrogate pairs (mtools cannot show them, Linux can).
	name := "emoji 😀 beyond the BMP, and long enough for three entries"
	var u []uint16
	ents := lfnEntries(name, pack83("EMOJI~1", ""))
	for i := len(ents) - 1; i >= 0; i-- {
		for k := 0; k < 13; k++ {
			o := lfnSlot(k)
			u = append(u, uint16(ents[i][o])|uint16(ents[i][o+1])<<8)
		}
	}
	if end := slices.Index(u, 0); end < 0 || string(utf16.Decode(u[:end])) != name {
		t.Errorf("long name entries decode to %q", string(utf16.Decode(u)))
	}
	if ents[0][0] != 0x40|byte(len(ents)) || ents[len(ents)-1][0] != 1 {
		t.Errorf("sequence numbers %#x..%#x", ents[0][0], ents[len(ents)-1][0])
	}
	if s := lfnChecksum(pack83("README", "TXT")); s != 0x73 {
		t.Errorf("checksum of README.TXT = %#x", s)
	}
}

func TestDeepAndWide(t *testing.T) {
	fsys := fstest.MapFS{}
	p := "deep"
	for i := 0; i < 40; i++ {
		p += fmt.Sprintf("/level %d", i)
	}
	fsys[p+"/bottom.txt"] = &fstest.MapFile{Data: []byte("bottom")}
	fsys["deep/empty dir"] = &fstest.MapFile{Mode: fs.ModeDir | 0o755}
	for i := 0; i < 1000; i++ {
		fsys[fmt.Sprintf("wide/file number %04d.dat", i)] = &fstest.MapFile{Data: []byte(fmt.Sprint(i))}
	}
	img := build(t, 64<<20, Options{Root: fsys})
	fsckClean(t, img)
	readBack(t, img, fsys)
}

func TestLargeFiles(t *testing.T) {
	fsys := fstest.MapFS{"big/fifty.bin": {Data: pattern(50<<20, 1)}}
	// Boundary sizes around the 512-byte and 4 KiB cluster sizes of the two images below.
	for _, n := range []int{511, 512, 513, 4095, 4096, 4097, 8191, 8192, 8193, 65535, 65536, 65537} {
		fsys[fmt.Sprintf("edge/%d.bin", n)] = &fstest.MapFile{Data: pattern(n, int64(n))}
	}
	for _, size := range []int64{100 << 20, 300 << 20} { // 512 B and 4 KiB clusters
		t.Run(fmt.Sprint(size>>20), func(t *testing.T) {
			img := build(t, size, Options{Root: fsys})
			fsckClean(t, img)
			readBack(t, img, fsys)
		})
	}
}

func TestReproducible(t *testing.T) {
	fsys := fstest.MapFS{
		"EFI/BOOT/BOOTAA64.EFI": {Data: pattern(70000, 2)},
		"loader/loader.conf":    {Data: []byte("timeout 3\n")},
		"a long name":           {Data: []byte("x")},
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	sum := func() [32]byte {
		b, err := os.ReadFile(build(t, 40<<20, Options{Root: fsys, Label: "ESP"}))
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
	a, b := sum(), sum()
	if a != b {
		t.Fatal("two builds differ")
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000002")
	if c := sum(); c == a {
		t.Fatal("SOURCE_DATE_EPOCH had no effect")
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if err := Format(discard{}, 40<<20, Options{}); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
		t.Fatalf("bad SOURCE_DATE_EPOCH: %v", err)
	}
}

type discard struct{}

func (discard) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }
