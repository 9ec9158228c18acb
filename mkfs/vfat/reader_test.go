package vfat

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/piboot/piboot/internal/testutil"
)

// memImage is an in-memory disk image.
type memImage []byte

func (m memImage) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, fmt.Errorf("write [%d, %d) outside %d bytes", off, off+int64(len(p)), len(m))
	}
	return copy(m[off:], p), nil
}

func (m memImage) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(m).ReadAt(p, off)
}

func buildMem(t testing.TB, size int64, opts Options) memImage {
	t.Helper()
	m := make(memImage, size)
	if err := Format(m, size, opts); err != nil {
		t.Fatal(err)
	}
	return m
}

func openFile(t *testing.T, img string) *FS {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := Open(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}

// readerTree has every kind of name and size the writer handles.
func readerTree() fstest.MapFS {
	m := fstest.MapFS{
		"EFI/BOOT/BOOTAA64.EFI":           {Data: pattern(70001, 21)},
		"EFI/Linux/piboot_v1.2.3.efi":     {Data: pattern(300000, 22)},
		"loader/loader.conf":              {Data: []byte("timeout 3\n")},
		"loader/entries":                  {Mode: fs.ModeDir | 0o755},
		"README.TXT":                      {Data: []byte("upper")},
		"readme.md":                       {Data: []byte("lower")},
		"Mixed Case Long Name.Conf":       {Data: []byte("mixed")},
		"Ünïcødé ñame.txt":                {Data: []byte("unicode")},
		"日本語のファイル名.efi":                   {Data: []byte("cjk")},
		"emoji 😀 beyond the BMP":          {Data: []byte("surrogates")},
		".hidden":                         {Data: []byte("dot")},
		"empty":                           {},
		"deep/a/b/c/d/e/f/g/h/bottom.bin": {Data: pattern(513, 23)},
		strings.Repeat("L", 255):          {Data: []byte("255")},
	}
	for _, n := range []int{511, 512, 513, 4095, 4096, 4097, 65537} {
		m[fmt.Sprintf("edge/%d.bin", n)] = &fstest.MapFile{Data: pattern(n, int64(n))}
	}
	for i := 0; i < 40; i++ {
		m[fmt.Sprintf("many/collision-name-%02d.txt", i)] = &fstest.MapFile{Data: []byte(fmt.Sprint(i))}
	}
	return m
}

// TestOpenRoundTrip reads what the writer wrote: every file byte-identical, the same names,
// directories, sizes and modification times, for FAT16 and FAT32 and both sector sizes.
func TestOpenRoundTrip(t *testing.T) {
	tree := readerTree()
	stamp := time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)
	for _, tc := range []struct {
		size int64
		ss   int
		fat  int
	}{{8 << 20, 512, 16}, {40 << 20, 512, 32}, {64 << 20, 4096, 16}, {300 << 20, 4096, 32}} {
		t.Run(fmt.Sprintf("FAT%d-%d", tc.fat, tc.ss), func(t *testing.T) {
			fsys := openFile(t, build(t, tc.size, Options{Root: tree, SectorSize: tc.ss, Label: "Round Trip", Time: stamp,
				TargetZeroed: true}))
			if fsys.Type() != tc.fat || fsys.Label() != "ROUND TRIP" {
				t.Errorf("FAT%d, label %q", fsys.Type(), fsys.Label())
			}
			compareTrees(t, tree, fsys)
			err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
				if err != nil || p == "." {
					return err
				}
				info, err := d.Info()
				if err != nil {
					return err
				}
				want, err := fs.Stat(tree, p)
				if err != nil {
					return err
				}
				if !info.ModTime().Equal(stamp) || info.Size() != want.Size() && !want.IsDir() || info.Name() != want.Name() {
					t.Errorf("%s: %s, want %s at %s", p, fs.FormatFileInfo(info), fs.FormatFileInfo(want), stamp)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			// FAT is case-insensitive: so is the lookup.
			if b, err := fs.ReadFile(fsys, "efi/linux/PIBOOT_V1.2.3.EFI"); err != nil || !bytes.Equal(b, tree["EFI/Linux/piboot_v1.2.3.efi"].Data) {
				t.Errorf("case-insensitive read: %d bytes, %v", len(b), err)
			}
			// Short names as generated: the 40 collisions got ~1..~40 tails.
			_, e, err := fsys.lookup("stat", "many/collision-name-39.txt")
			if err != nil || string(e.short[:]) != "COLLI~40TXT" {
				t.Errorf("short name of the 40th collision: %q %v", e.short[:], err)
			}
			for _, bad := range []string{"missing", "EFI/BOOT/BOOTAA64.EFI/x", "/EFI", "EFI/../EFI"} {
				if _, err := fsys.Open(bad); err == nil {
					t.Errorf("Open(%q) succeeded", bad)
				}
			}
		})
	}
}

// TestOpenFSConformance runs testing/fstest on an image in memory (fstest reads every file
// one byte at a time through ReadAt as well).
func TestOpenFSConformance(t *testing.T) {
	img := buildMem(t, 8<<20, Options{Root: readerTree()})
	fsys, err := Open(img, int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(fsys, "EFI/BOOT/BOOTAA64.EFI", "empty", "loader/entries", "edge/65537.bin",
		"deep/a/b/c/d/e/f/g/h/bottom.bin"); err != nil {
		t.Fatal(err)
	}
}

// mtoolsTree is copied into images made by mkfs.vfat and mtools.
func mtoolsTree() fstest.MapFS {
	return fstest.MapFS{
		"EFI/Linux/piboot_v0.efi":               {Data: pattern(40000, 31)},
		"EFI/Linux/A-Long_Name.with.dots.efi":   {Data: []byte("long")},
		"loader/loader.conf":                    {Data: []byte("timeout 0\n")},
		"UPPER.TXT":                             {Data: []byte("upper")},
		"lower.txt":                             {Data: []byte("lower")},
		"empty":                                 {},
		"frag/second":                           {Data: pattern(3000, 32)},
		"frag/fragmented across a deleted file": {Data: pattern(12000, 33)},
		"Ünïcødé.txt":                           {Data: []byte("unicode")},
	}
}

// mtoolsImage formats a FAT image with mkfs.vfat and fills it with mtoolsTree's files using
// mmd and mcopy. A file deleted before the last copy leaves a hole, so the last file is
// fragmented and a deleted entry stays in its directory.
func mtoolsImage(t *testing.T, fat string, kib int, label string) string {
	testutil.Need(t, "mkfs.vfat", "mmd", "mcopy", "mdel")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	tree := mtoolsTree()
	mtime := time.Date(2021, 6, 7, 8, 9, 10, 0, time.UTC)
	files := append([]string{"frag/deleted"}, "EFI/Linux/piboot_v0.efi", "EFI/Linux/A-Long_Name.with.dots.efi",
		"loader/loader.conf", "UPPER.TXT", "lower.txt", "empty", "frag/second", "Ünïcødé.txt", "frag/fragmented across a deleted file")
	img := filepath.Join(dir, "fat"+fat+".img")
	mt := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(mtoolsEnv(), "TZ=UTC")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	mt("mkfs.vfat", "-F", fat, "-n", label, "-C", img, fmt.Sprint(kib))
	mt("mmd", "-i", img, "::EFI", "::EFI/Linux", "::loader", "::frag")
	for _, p := range files {
		data := pattern(3000, 34)
		if f, ok := tree[p]; ok {
			data = f.Data
		}
		local := filepath.Join(src, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(local, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(local, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		mt("mcopy", "-m", "-i", img, local, "::"+p)
		if p == "frag/second" {
			mt("mdel", "-i", img, "::frag/deleted")
		}
	}
	return img
}

// TestOpenMkfsVfat reads images made by the real mkfs.vfat and mcopy, for each FAT type.
func TestOpenMkfsVfat(t *testing.T) {
	t.Parallel() // overlaps TestKernelReadsAndWrites, which mostly waits for QEMU
	tree := mtoolsTree()
	for _, tc := range []struct {
		fat int
		kib int
	}{{12, 1024}, {16, 16384}, {32, 40960}} {
		t.Run(fmt.Sprint("FAT", tc.fat), func(t *testing.T) {
			img := mtoolsImage(t, fmt.Sprint(tc.fat), tc.kib, "MK FAT")
			fsys := openFile(t, img)
			if fsys.Type() != tc.fat || fsys.Label() != "MK FAT" {
				t.Errorf("FAT%d, label %q", fsys.Type(), fsys.Label())
			}
			compareTrees(t, tree, fsys)
			f, err := fsys.Open("frag/fragmented across a deleted file")
			if err != nil {
				t.Fatal(err)
			}
			// mtools allocates FAT32 clusters after the last one allocated: no hole is reused.
			if err := f.(*File).load(); err != nil || len(f.(*File).ext) < 2 && tc.fat != 32 {
				t.Errorf("the fragmented file has %d extents (%v): the test did not fragment it", len(f.(*File).ext), err)
			}
			info, _ := f.Stat()
			if want := time.Date(2021, 6, 7, 8, 9, 10, 0, time.UTC); !info.ModTime().Equal(want) {
				t.Errorf("mtime %s, want %s", info.ModTime(), want)
			}
			if err := fstest.TestFS(fsys, "EFI/Linux/piboot_v0.efi", "frag/second", "empty"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestOpenFAT12Testdata reads testdata/fat12.img.gz, made once by mtoolsImage, so the FAT12
// path is covered where mkfs.vfat is missing and the fuzz test has a FAT12 seed.
func TestOpenFAT12Testdata(t *testing.T) {
	img := fat12Testdata(t)
	fsys, err := Open(img, int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if fsys.Type() != 12 {
		t.Errorf("FAT%d", fsys.Type())
	}
	compareTrees(t, mtoolsTree(), fsys)
}

func fat12Testdata(t testing.TB) memImage {
	t.Helper()
	const name = "testdata/fat12.img.gz"
	if os.Getenv("PIBOOT_VFAT_WRITE_TESTDATA") != "" {
		tt, ok := t.(*testing.T)
		if !ok {
			t.Fatal("regenerate the testdata from a test")
		}
		raw, err := os.ReadFile(mtoolsImage(tt, "12", 256, "FAT12 SEED"))
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		zw.Write(raw)
		zw.Close()
		if err := os.WriteFile(name, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// corruption is a change to an image and the error it must cause.
type corruption struct {
	name    string
	patch   func(t testing.TB, img memImage, f *FS)
	want    string
	corrupt bool // the error wraps ErrCorrupt
}

func put32(img memImage, off int64, v uint32) { binary.LittleEndian.PutUint32(img[off:], v) }

// fatOff is the offset of cluster c's entry in the first FAT of a FAT32 image.
func fatOff(f *FS, c uint32) int64 { return f.fatOff + int64(c)*4 }

func entryOf(t testing.TB, f *FS, p string) *dirent {
	t.Helper()
	_, e, err := f.lookup("stat", p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// setFirst points the entry of p at cluster c.
func setFirst(t testing.TB, img memImage, f *FS, p string, c uint32) {
	e := entryOf(t, f, p)
	binary.LittleEndian.PutUint16(img[e.off+20:], uint16(c>>16))
	binary.LittleEndian.PutUint16(img[e.off+26:], uint16(c))
}

func corruptionTree() fstest.MapFS {
	return fstest.MapFS{
		"file.bin":     {Data: pattern(5000, 41)}, // 10 clusters of 512 bytes
		"a/b/c.txt":    {Data: []byte("c")},
		"x/in x":       {Data: []byte("x")},
		"y/in y":       {Data: []byte("y")},
		"a long name!": {Data: []byte("long")},
	}
}

var corruptions = []corruption{
	{"signature", func(t testing.TB, img memImage, f *FS) { img[510] = 0 }, "no FAT boot sector: signature at offset 510", false},
	{"sector size", func(t testing.TB, img memImage, f *FS) { img[11], img[12] = 0xE8, 0x03 }, "bytes per sector (offset 11) is 1000", true},
	{"cluster size", func(t testing.TB, img memImage, f *FS) { img[13] = 3 }, "sectors per cluster (offset 13) is 3", true},
	{"no FATs", func(t testing.TB, img memImage, f *FS) { img[16] = 0 }, "number of FATs (offset 16) is 0", true},
	{"larger than device", func(t testing.TB, img memImage, f *FS) { put32(img, 32, 1<<30) }, "is larger than the", false},
	{"FAT too small", func(t testing.TB, img memImage, f *FS) { put32(img, 36, 1) }, "holds 128 entries", true},
	{"root cluster", func(t testing.TB, img memImage, f *FS) { put32(img, 44, 1<<27) }, "root directory cluster 134217728 (offset 44)", true},
	{"file loop", func(t testing.TB, img memImage, f *FS) {
		e := entryOf(t, f, "file.bin")
		put32(img, fatOff(f, e.first+5), e.first+2)
	}, "read file.bin: corrupt FAT filesystem: cluster chain loops", true},
	{"file chain beyond the end", func(t testing.TB, img memImage, f *FS) {
		e := entryOf(t, f, "file.bin")
		put32(img, fatOff(f, e.first+1), f.clusters+2)
	}, "beyond the last cluster", true},
	{"free in chain", func(t testing.TB, img memImage, f *FS) {
		e := entryOf(t, f, "file.bin")
		put32(img, fatOff(f, e.first+1), 0)
	}, "a free or reserved entry", true},
	{"bad cluster", func(t testing.TB, img memImage, f *FS) {
		e := entryOf(t, f, "file.bin")
		put32(img, fatOff(f, e.first), 0x0FFFFFF7)
	}, "marked bad", true},
	{"chain too short", func(t testing.TB, img memImage, f *FS) {
		e := entryOf(t, f, "file.bin")
		put32(img, fatOff(f, e.first+2), 0x0FFFFFFF)
	}, "ends after 3 clusters (1536 bytes), the entry at offset", true},
	{"file larger than the filesystem", func(t testing.TB, img memImage, f *FS) {
		put32(img, entryOf(t, f, "file.bin").off+28, 0xFFFFFFFF)
	}, "read file.bin: corrupt FAT filesystem: the entry at offset", true},
	{"first cluster 1", func(t testing.TB, img memImage, f *FS) { setFirst(t, img, f, "file.bin", 1) }, "read file.bin: corrupt FAT filesystem: first cluster 1 is outside", true},
	{"directory cycle", func(t testing.TB, img memImage, f *FS) {
		setFirst(t, img, f, "a/b", entryOf(t, f, "a").first)
	}, "directory a/b (entry at offset", true},
	{"directory is the root", func(t testing.TB, img memImage, f *FS) { setFirst(t, img, f, "a", f.rootClus) }, "which is directory / already", true},
	{"cross-linked directories", func(t testing.TB, img memImage, f *FS) {
		setFirst(t, img, f, "y", entryOf(t, f, "x").first)
	}, "which is directory x already", true},
	{"directory chain loop", func(t testing.TB, img memImage, f *FS) {
		c := entryOf(t, f, "a").first
		put32(img, fatOff(f, c), c)
	}, "directory a: cluster chain loops", true},
	{"directory without cluster", func(t testing.TB, img memImage, f *FS) { setFirst(t, img, f, "x", 0) }, "first cluster 0 is outside", true},
	{"slash in a long name", func(t testing.TB, img memImage, f *FS) {
		e := entryOf(t, f, "a long name!")
		img[e.off-32+1] = '/' // the last long-name entry holds the name's start
	}, `has the name "/ long name!"`, true},
}

// walkAll reads everything in fsys (at most limit bytes of each file) and returns the first
// error.
func walkAll(fsys *FS, limit int64) error {
	_ = fsys.Label()
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		f, err := fsys.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := io.Copy(io.Discard, io.LimitReader(f, limit))
		if err != nil {
			return err
		}
		if n != min(limit, info.Size()) {
			return fmt.Errorf("%s: read %d bytes, size %d", p, n, info.Size())
		}
		if info.Size() > 0 {
			var b [1]byte
			if _, err := f.(io.ReaderAt).ReadAt(b[:], info.Size()-1); err != nil {
				return err
			}
		}
		return nil
	})
}

func TestOpenCorrupt(t *testing.T) {
	t.Parallel() // overlaps TestKernelReadsAndWrites, which mostly waits for QEMU
	pristine := buildMem(t, 34<<20, Options{Root: corruptionTree(), Label: "CORRUPT"})
	ref, err := Open(pristine, int64(len(pristine)))
	if err != nil {
		t.Fatal(err)
	}
	if err := walkAll(ref, 1<<30); err != nil {
		t.Fatalf("pristine image: %v", err)
	}
	img := make(memImage, len(pristine))
	for _, tc := range corruptions {
		t.Run(tc.name, func(t *testing.T) {
			copy(img, pristine)
			ref, _ := Open(pristine, int64(len(pristine))) // fresh: lookups claim directories
			tc.patch(t, img, ref)
			fsys, err := Open(img, int64(len(img)))
			if err == nil {
				err = walkAll(fsys, 1<<30)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			t.Log(err)
			if errors.Is(err, ErrCorrupt) != tc.corrupt {
				t.Errorf("errors.Is(%v, ErrCorrupt) = %v", err, !tc.corrupt)
			}
		})
	}
}

func TestOpenLimits(t *testing.T) {
	for _, size := range []int64{0, 511} {
		if _, err := Open(bytes.NewReader(make([]byte, size)), size); err == nil {
			t.Errorf("Open of %d bytes succeeded", size)
		}
	}
	// A device shorter than it claims: reading past its end fails with the offset.
	img := buildMem(t, 34<<20, Options{Root: corruptionTree()})
	ref, err := Open(img, int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	cut := ref.clusterOff(entryOf(t, ref, "file.bin").first) + 100
	fsys, err := Open(img[:cut], int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if err := walkAll(fsys, 1<<30); err == nil || !strings.Contains(err.Error(), "at offset") {
		t.Errorf("short device: %v", err)
	}
	if n := len([]rune(cp437)); n != 128 {
		t.Errorf("cp437 table has %d characters", n)
	}
}

// patched overlays patches on a base image without copying it.
type patched struct {
	base    memImage
	patches []patch
}

type patch struct {
	off  int64
	data []byte
}

func (p *patched) ReadAt(b []byte, off int64) (int, error) {
	n, err := p.base.ReadAt(b, off)
	for _, q := range p.patches {
		lo, hi := max(off, q.off), min(off+int64(n), q.off+int64(len(q.data)))
		if lo < hi {
			copy(b[lo-off:hi-off], q.data[lo-q.off:hi-q.off])
		}
	}
	return n, err
}

// fuzzBases are the images the fuzz input patches: FAT12 (mtools), FAT16 and FAT32 (ours).
func fuzzBases(t testing.TB) []memImage {
	return []memImage{
		fat12Testdata(t),
		buildMem(t, 4<<20, Options{Root: corruptionTree(), Label: "FUZZ16"}),
		buildMem(t, 34<<20, Options{Root: corruptionTree(), Label: "FUZZ32"}),
	}
}

// decodePatches turns fuzz input into patches: a base index byte, then records of a 3-byte
// offset (into the image's first MiB, where the metadata and small files are), a length
// byte and that many bytes.
func decodePatches(data []byte, bases []memImage) (int, []patch) {
	if len(data) == 0 {
		return 0, nil
	}
	base := int(data[0]) % len(bases)
	data = data[1:]
	var ps []patch
	window := min(int64(len(bases[base])), 1<<20)
	for len(data) >= 4 {
		off := int64(data[0]) | int64(data[1])<<8 | int64(data[2])<<16
		k := min(int(data[3]), len(data)-4)
		ps = append(ps, patch{off % window, data[4 : 4+k]})
		data = data[4+k:]
	}
	return base, ps
}

func encodePatch(off int64, b []byte) []byte {
	return append([]byte{byte(off), byte(off >> 8), byte(off >> 16), byte(len(b))}, b...)
}

// FuzzOpen opens patched images and reads everything in them: it must never panic or loop,
// and every file must read as many bytes as its size or fail.
func FuzzOpen(f *testing.F) {
	bases := fuzzBases(f)
	for i := range bases {
		f.Add([]byte{byte(i)})
	}
	// Seeds from the corruption table: the bytes each corruption changes in the FAT32 base.
	img := make(memImage, len(bases[2]))
	for _, tc := range corruptions {
		copy(img, bases[2])
		ref, err := Open(bases[2], int64(len(bases[2])))
		if err != nil {
			f.Fatal(err)
		}
		tc.patch(f, img, ref)
		seed := []byte{2}
		for i := 0; i < 1<<20; i++ {
			if img[i] != bases[2][i] {
				seed = append(seed, encodePatch(int64(i), img[i:i+1])...)
			}
		}
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		i, ps := decodePatches(data, bases)
		size := int64(len(bases[i]))
		r := &patched{base: bases[i], patches: ps}
		fsys, err := Open(r, size)
		if err != nil {
			return
		}
		_ = walkAll(fsys, 64<<10)
		_, _ = fsys.Stat("EFI/../x")
		_, _ = fsys.ReadDir("A/B")
	})
}

// TestParseLongNames: long-name entries out of sequence, with a wrong checksum or orphaned
// are ignored in favor of the short name, as Linux does; none of them may panic.
func TestParseLongNames(t *testing.T) {
	short := pack83("LONGNA~1", "TXT")
	name := "a long name that needs two entries.txt"
	lfn := lfnEntries(name, short)
	sh := make([]byte, 32)
	copy(sh, short[:])
	sh[11] = attrArchive
	ent := func(e [32]byte, edit func(*[32]byte)) []byte {
		if edit != nil {
			edit(&e)
		}
		return e[:]
	}
	for _, tc := range []struct {
		name    string
		entries [][]byte
		want    string
	}{
		{"valid", [][]byte{lfn[0][:], lfn[1][:], lfn[2][:], sh}, name},
		{"checksum", [][]byte{ent(lfn[0], func(e *[32]byte) { e[13]++ }), lfn[1][:], lfn[2][:], sh}, "LONGNA~1.TXT"},
		{"short checksum", [][]byte{lfn[0][:], lfn[1][:], lfn[2][:], ent([32]byte(sh), func(e *[32]byte) { e[0] = 'M' })}, "MONGNA~1.TXT"},
		{"missing part", [][]byte{lfn[0][:], lfn[2][:], sh}, "LONGNA~1.TXT"},
		{"ord 0 after the last part", [][]byte{lfn[0][:], lfn[1][:], lfn[2][:], ent(lfn[2], func(e *[32]byte) { e[0] = 0x20 }), sh}, "LONGNA~1.TXT"},
		{"ord 0 first", [][]byte{ent(lfn[0], func(e *[32]byte) { e[0] = 0x40 }), sh}, "LONGNA~1.TXT"},
		{"ord 31", [][]byte{ent(lfn[0], func(e *[32]byte) { e[0] = 0x5F }), sh}, "LONGNA~1.TXT"},
		{"orphan", [][]byte{lfn[1][:], lfn[2][:], sh}, "LONGNA~1.TXT"},
		{"deleted between", [][]byte{lfn[0][:], lfn[1][:], ent(lfn[2], func(e *[32]byte) { e[0] = 0xE5 }), sh}, "LONGNA~1.TXT"},
		{"restarted", [][]byte{lfn[0][:], lfn[0][:], lfn[1][:], lfn[2][:], sh}, name},
		{"E5 lead byte", [][]byte{ent([32]byte(sh), func(e *[32]byte) { e[0] = 0x05 })}, "σONGNA~1.TXT"},
	} {
		raw := bytes.Join(tc.entries, nil)
		f := &FS{fatType: 32, clusters: 100}
		ents, _, err := f.parseDir("d", raw, func(i int) int64 { return int64(i) })
		if err != nil || len(ents) != 1 || ents[0].name != tc.want {
			t.Errorf("%s: %v, %+v; want %q", tc.name, err, ents, tc.want)
		}
	}
}

// FuzzRoundTrip writes trees of fuzzed names (a directory and two files in it, or in the
// root) and requires Open to read back exactly those names and contents.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range [][3]string{{"EFI", "BOOT", "bootaa64.efi"}, {"a long dir", "x.y.z", "X.Y.Z2"},
		{"日本", "😀", "COLLIS~1.TXT"}, {".d", "..e", "~1"}, {"README.TXT", "readme.md", "ReadMe.TXT"}} {
		f.Add(s[0], s[1], s[2], true)
	}
	img := make(memImage, 4<<20)
	f.Fuzz(func(t *testing.T, dir, a, b string, nested bool) {
		for _, n := range []string{dir, a, b} {
			if checkLongName(n) != nil || !fs.ValidPath(n) || strings.Contains(n, "/") {
				return
			}
		}
		if foldKey(a) == foldKey(b) || !nested && (foldKey(dir) == foldKey(a) || foldKey(dir) == foldKey(b)) {
			return
		}
		pa, pb := a, b
		if nested {
			pa, pb = dir+"/"+a, dir+"/"+b
		}
		tree := fstest.MapFS{dir: {Mode: fs.ModeDir | 0o755}, pa: {Data: []byte(a)}, pb: {Data: []byte(b + b)}}
		clear(img)
		if err := Format(img, int64(len(img)), Options{Root: tree}); err != nil {
			t.Fatalf("%q: %v", []string{dir, a, b}, err)
		}
		fsys, err := Open(img, int64(len(img)))
		if err != nil {
			t.Fatal(err)
		}
		compareTrees(t, tree, fsys)
	})
}

// BenchmarkOpenReadUKI opens a FAT32 image in memory and reads a 40 MiB file (what inspect
// does with each UKI), through Read with a small buffer and through one ReadAt.
func BenchmarkOpenReadUKI(b *testing.B) {
	const size = 40 << 20
	tree := fstest.MapFS{"EFI/Linux/piboot_v1.efi": {Data: pattern(size, 51)}}
	img := buildMem(b, 64<<20, Options{Root: tree})
	buf := make([]byte, size)
	for _, mode := range []string{"Read 4KiB", "ReadAt"} {
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				fsys, err := Open(img, int64(len(img)))
				if err != nil {
					b.Fatal(err)
				}
				f, err := fsys.Open("EFI/Linux/piboot_v1.efi")
				if err != nil {
					b.Fatal(err)
				}
				if mode == "ReadAt" {
					_, err = f.(io.ReaderAt).ReadAt(buf, 0)
				} else {
					_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf[:4096])
				}
				if err != nil && err != io.EOF {
					b.Fatal(err)
				}
			}
		})
	}
}
