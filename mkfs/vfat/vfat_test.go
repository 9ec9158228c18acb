package vfat

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/piboot/piboot/internal/uuid"
	"io"
	"io/fs"
	"maps"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"
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
	t.Parallel() // overlaps TestKernelReadsAndWrites, which mostly waits for QEMU
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
	t.Parallel() // overlaps TestKernelReadsAndWrites, which mostly waits for QEMU
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
	t.Parallel() // overlaps TestKernelReadsAndWrites, which mostly waits for QEMU
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
	t.Parallel() // overlaps TestKernelReadsAndWrites, which mostly waits for QEMU
	edges := fstest.MapFS{}
	// Boundary sizes around the 512-byte and 4 KiB cluster sizes of the two images below.
	for _, n := range []int{511, 512, 513, 4095, 4096, 4097, 8191, 8192, 8193, 65535, 65536, 65537} {
		edges[fmt.Sprintf("edge/%d.bin", n)] = &fstest.MapFile{Data: pattern(n, int64(n))}
	}
	big := maps.Clone(edges)
	big["big/fifty.bin"] = &fstest.MapFile{Data: pattern(50<<20, 1)}
	for _, tc := range []struct {
		size int64
		fsys fstest.MapFS
	}{{100 << 20, edges}, {300 << 20, big}} { // 512 B and 4 KiB clusters
		fsys := tc.fsys
		t.Run(fmt.Sprint(tc.size>>20), func(t *testing.T) {
			img := build(t, tc.size, Options{Root: fsys})
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

func TestSectors4096(t *testing.T) {
	fsys := fstest.MapFS{
		"EFI/BOOT/BOOTAA64.EFI": {Data: pattern(123457, 3)},
		"a long name here.txt":  {Data: pattern(4097, 4)},
		"empty":                 {},
	}
	for _, size := range []int64{64 << 20, 300 << 20} { // FAT16 and FAT32
		t.Run(fmt.Sprint(size>>20), func(t *testing.T) {
			img := build(t, size, Options{Root: fsys, SectorSize: 4096, Label: "ESP"})
			fsckClean(t, img)
			readBack(t, img, fsys)
			if b := readSector(t, img, 0, 13); b[11] != 0 || b[12] != 0x10 {
				t.Errorf("bytes per sector %#x%02x", b[12], b[11])
			}
		})
	}
}

// TestPartitionInImage writes into the middle of a bigger file through io.NewOffsetWriter and
// checks the bytes around the partition are untouched.
func TestPartitionInImage(t *testing.T) {
	const start, size, total = 1 << 20, 48 << 20, 64 << 20
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(total); err != nil {
		t.Fatal(err)
	}
	guard := bytes.Repeat([]byte{0xA5}, 64<<10)
	for _, off := range []int64{start - int64(len(guard)), start + size} {
		if _, err := f.WriteAt(guard, off); err != nil {
			t.Fatal(err)
		}
	}
	fsys := fstest.MapFS{"EFI/Linux/piboot_v0.efi": {Data: pattern(3<<20, 5)}}
	opts := Options{Root: fsys, HiddenSectors: start / 512, Label: "ESP"}
	if err := Format(io.NewOffsetWriter(f, start), size, opts); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{start - int64(len(guard)), start + size} {
		got := make([]byte, len(guard))
		if _, err := f.ReadAt(got, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, guard) {
			t.Fatalf("bytes at %d outside the partition changed", off)
		}
	}
	if b := readSector(t, img, start+28, 4); b[0] != 0x00 || b[1] != 0x08 || b[2] != 0 || b[3] != 0 {
		t.Errorf("hidden sectors % x, want 2048", b)
	}
	// fsck.vfat reads whole files: check a copy of the partition; mtools reads in place.
	part := filepath.Join(t.TempDir(), "part.img")
	pf, err := os.Create(part)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(pf, io.NewSectionReader(f, start, size)); err != nil {
		t.Fatal(err)
	}
	pf.Close()
	fsckClean(t, part)
	readBack(t, fmt.Sprintf("%s@@%d", img, start), fsys)
}

func TestBootSectorFields(t *testing.T) {
	u := uuid.MustParse("12345678-9abc-def0-1234-56789abcdef0")
	stamp := time.Date(2024, 2, 29, 13, 14, 15, 0, time.UTC)
	img := build(t, 64<<20, Options{UUID: u, Label: "esp", Time: stamp,
		Root: fstest.MapFS{"f": {Data: []byte("x")}}})
	b := readSector(t, img, 0, 512)
	if got := b[67:71]; !bytes.Equal(got, []byte{0x78, 0x56, 0x34, 0x12}) {
		t.Errorf("volume id % x: want systemd-repart's first four UUID bytes 12345678", got)
	}
	if got := string(b[71:82]); got != "ESP        " {
		t.Errorf("label %q", got)
	}
	if b[21] != 0xF8 || b[510] != 0x55 || b[511] != 0xAA {
		t.Errorf("media %#x, signature % x", b[21], b[510:])
	}
	if backup := readSector(t, img, 6*512, 512); !bytes.Equal(backup, b) {
		t.Error("backup boot sector differs")
	}
	info := readSector(t, img, 512, 512)
	g, _ := layout(64<<20, 512, 0, 0, 0)
	free := uint32(info[488]) | uint32(info[489])<<8 | uint32(info[490])<<16 | uint32(info[491])<<24
	if free != g.clusters-2 { // root directory and f
		t.Errorf("FSInfo free count %d, want %d", free, g.clusters-2)
	}
	// The entry for "f" (after the label) carries the timestamp.
	root := readSector(t, img, g.clusterOffset(2), 64)
	e := root[32:]
	date := uint16(e[24]) | uint16(e[25])<<8
	tm := uint16(e[22]) | uint16(e[23])<<8
	if date != (2024-1980)<<9|2<<5|29 || tm != 13<<11|14<<5|7 {
		t.Errorf("date %#x time %#x", date, tm)
	}
	if root[11] != attrVolumeID || string(root[:11]) != "ESP        " {
		t.Errorf("root does not start with the volume label entry: % x", root[:12])
	}
	// Without UUID and ID the volume id still depends only on the inputs.
	a := readSector(t, build(t, 40<<20, Options{Label: "X"}), 67, 4)
	c := readSector(t, build(t, 40<<20, Options{Label: "X"}), 67, 4)
	d := readSector(t, build(t, 40<<20, Options{Label: "X", VolumeID: 0xCAFEF00D}), 67, 4)
	if !bytes.Equal(a, c) || !bytes.Equal(d, []byte{0x0D, 0xF0, 0xFE, 0xCA}) {
		t.Errorf("volume ids % x, % x, % x", a, c, d)
	}
}

func TestZeroedTargetSameBytes(t *testing.T) {
	fsys := fstest.MapFS{"a/b/c.txt": {Data: pattern(10000, 6)}, "d": {}}
	read := func(zeroed bool) []byte {
		b, err := os.ReadFile(build(t, 48<<20, Options{Root: fsys, TargetZeroed: zeroed}))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(read(true), read(false)) {
		t.Fatal("TargetZeroed changes the result on a zeroed target")
	}
}

// TestWritesLittle checks that on a big filesystem only metadata and content are written.
func TestWritesLittle(t *testing.T) {
	img := filepath.Join(t.TempDir(), "big.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 2 << 30
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	bf := &boundedFile{f: f}
	if err := Format(bf, size, Options{Root: fstest.MapFS{"x": {Data: pattern(1<<20, 7)}}}); err != nil {
		t.Fatal(err)
	}
	g, _ := layout(size, 512, 0, 0, 0)
	meta := int64(g.reserved)*512 + 2*int64(g.fatLength)*512 + 4096 + 1<<20
	if bf.bytes > meta+512 { // the boot sector is cleared first and written last
		t.Errorf("wrote %d bytes, metadata and data are %d", bf.bytes, meta)
	}
}

func TestErrors(t *testing.T) {
	big := fstest.MapFS{"EFI/Linux/huge.efi": {Data: make([]byte, 40<<20)}, "a": {Data: []byte("a")}}
	for _, tc := range []struct {
		name string
		size int64
		opts Options
		want string
	}{
		{"does not fit", 40 << 20, Options{Root: big}, "EFI/Linux/huge.efi (41943040 bytes) does not fit"},
		{"case collision", 40 << 20, Options{Root: fstest.MapFS{"dir/Boot": {}, "dir/BOOT": {}}}, "dir/BOOT and dir/Boot differ only in case"},
		{"bad char", 40 << 20, Options{Root: fstest.MapFS{"a/what?": {}}}, `a/what?: character '?'`},
		{"trailing dot", 40 << 20, Options{Root: fstest.MapFS{"x.": {}}}, "x.: FAT names cannot end"},
		{"long name", 40 << 20, Options{Root: fstest.MapFS{strings.Repeat("n", 256): {}}}, "256 UTF-16 units"},
		{"label length", 40 << 20, Options{Label: "nix-store_v0"}, "longer than 11"},
		{"label char", 40 << 20, Options{Label: "a.b"}, "not allowed in FAT labels"},
		{"too small", 1 << 20, Options{}, "fits neither FAT16"},
		{"FAT32 too small", 20 << 20, Options{FAT: 32}, "FAT32 needs at least 65529"},
		{"FAT12", 20 << 20, Options{FAT: 12}, "want 16 or 32"},
		{"sector size", 40 << 20, Options{SectorSize: 520}, "sector size 520"},
		{"cluster size", 40 << 20, Options{ClusterSize: 3000}, "cluster size 3000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			err := Format(rec, tc.size, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if rec.n != 0 {
				t.Errorf("wrote %d bytes before failing", rec.n)
			}
		})
	}
	var fe *FitError
	if err := Format(discard{}, 40<<20, Options{Root: big}); !errors.As(err, &fe) || fe.MinSize < 41<<20 || fe.MinSize > 44<<20 {
		t.Errorf("FitError %+v", fe)
	}
}

type recorder struct{ n int64 }

func (r *recorder) WriteAt(p []byte, off int64) (int, error) {
	r.n += int64(len(p))
	return len(p), nil
}

func TestMinSize(t *testing.T) {
	t.Parallel() // overlaps TestKernelReadsAndWrites, which mostly waits for QEMU
	for _, tc := range []struct {
		name string
		fsys fs.FS
		ss   int
	}{
		{"empty", fstest.MapFS{}, 512},
		{"50MiB", fstest.MapFS{"big": {Data: make([]byte, 50<<20)}, "small": {Data: []byte("s")}}, 512},
		{"100MiB-4K", fstest.MapFS{"big": {Data: make([]byte, 100<<20)}}, 4096},
		{"many small", manySmall(3000), 512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Root: tc.fsys, SectorSize: tc.ss, Label: "ESP", TargetZeroed: true}
			m, err := MinSize(opts)
			if err != nil {
				t.Fatal(err)
			}
			if m%(1<<20) != 0 {
				t.Fatalf("MinSize %d is not whole MiB", m)
			}
			if err := Format(discard{}, m, opts); err != nil {
				t.Fatalf("Format at MinSize %d: %v", m, err)
			}
			if m > 1<<20 {
				err := Format(discard{}, m-1<<20, opts)
				var fe *FitError
				if err == nil || !errors.As(err, &fe) && !strings.Contains(err.Error(), "fits neither") {
					t.Fatalf("Format at MinSize-1MiB (%d): %v", m-1<<20, err)
				}
			}
			t.Logf("MinSize %d MiB", m>>20)
		})
	}
}

func manySmall(n int) fstest.MapFS {
	m := fstest.MapFS{}
	for i := 0; i < n; i++ {
		m[fmt.Sprintf("d%d/file-%d.txt", i%7, i)] = &fstest.MapFile{Data: []byte(strings.Repeat("x", i%1500))}
	}
	return m
}

// TestRandomTrees builds random trees (names of every kind, sizes around cluster edges) and
// requires fsck to be clean and every file to read back.
func TestRandomTrees(t *testing.T) {
	t.Parallel() // overlaps TestKernelReadsAndWrites, which mostly waits for QEMU
	n := 6
	if testing.Short() {
		n = 2
	}
	for seed := int64(1); seed <= int64(n); seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewSource(seed))
			fsys := randomTree(r)
			ss := []int{512, 4096}[r.Intn(2)]
			size := int64(40+r.Intn(300)) << 20
			if ss == 4096 && size < 64<<20 {
				size = 64 << 20
			}
			img := build(t, size, Options{Root: fsys, SectorSize: ss, Label: "RANDOM"})
			fsckClean(t, img)
			readBack(t, img, fsys)
			compareTrees(t, fsys, openFile(t, img)) // and through Open
		})
	}
}

func randomTree(r *rand.Rand) fstest.MapFS {
	parts := []string{"a", "B", "readme", "README", "Long Name", "x.y.z", "ünï", "日本", "data", "~1", "file.txt", "File.TXT2", ".dot", "a+b", "sp ace", "0123456789abcdef"}
	name := func() string {
		var b strings.Builder
		for k := 1 + r.Intn(3); k > 0; k-- {
			b.WriteString(parts[r.Intn(len(parts))])
		}
		s := b.String()
		for strings.HasSuffix(s, ".") || strings.HasSuffix(s, " ") {
			s = s[:len(s)-1] + "_"
		}
		return s
	}
	m := fstest.MapFS{}
	folded := map[string]bool{}
	dirs := []string{""}
	for i := 0; i < 60+r.Intn(200); i++ {
		parent := dirs[r.Intn(len(dirs))]
		p := name()
		if parent != "" {
			p = parent + "/" + p
		}
		if folded[foldKey(p)] || p == "" {
			continue
		}
		folded[foldKey(p)] = true
		if r.Intn(4) == 0 {
			m[p] = &fstest.MapFile{Mode: fs.ModeDir | 0o755}
			dirs = append(dirs, p)
			continue
		}
		sizes := []int{0, 1, 511, 512, 513, 4095, 4096, 4097, r.Intn(100000)}
		m[p] = &fstest.MapFile{Data: pattern(sizes[r.Intn(len(sizes))], r.Int63())}
	}
	return m
}

func TestLayoutLimits(t *testing.T) {
	g, err := layout(3<<40, 512, 0, 0, 0)
	if err != nil || g.totalSectors != 0xFFFFFFFF || g.clusterBytes() != 32<<10 || g.fatType != 32 {
		t.Errorf("3 TiB: %v, %v (%d sectors)", g, err, g.totalSectors)
	}
	if d := g.dataStart() + int64(g.clusters)*g.clusterBytes(); d > int64(g.totalSectors)*512 {
		t.Errorf("data area ends at %d, past the last sector", d)
	}
	for _, size := range []int64{33 << 20, 1 << 30, 40 << 30, 1 << 40} {
		for _, ss := range []int{512, 4096} {
			g, err := layout(size, ss, 0, 0, 0)
			if err != nil {
				continue // 33 MiB with 4K sectors is FAT16, fine; errors are tested elsewhere
			}
			end := g.dataStart() + int64(g.clusters)*g.clusterBytes()
			fatEntries := int64(g.fatLength) * int64(ss) / int64(g.fatType/8)
			if end > size || int64(g.clusters)+2 > fatEntries || g.dataStart()%g.clusterBytes() != 0 && size > 8192*int64(ss) {
				t.Errorf("%d/%d: %v: data ends %d, FAT holds %d entries, data starts %d", size, ss, g, end, fatEntries, g.dataStart())
			}
		}
	}
	for _, opts := range []Options{{SectorSize: 100}, {ClusterSize: 1000}, {FAT: 12}} {
		if _, err := MinSize(opts); err == nil {
			t.Errorf("MinSize(%+v) accepted", opts)
		}
	}
}
