package vfat

import (
	"bytes"
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

// formatFails requires Format to fail with an error containing want, having written nothing.
func formatFails(t *testing.T, size int64, opts Options, want string) {
	t.Helper()
	rec := &recorder{}
	err := Format(rec, size, opts)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
	if rec.n != 0 {
		t.Errorf("wrote %d bytes before failing", rec.n)
	}
}

// TestNamesFATCannotHold: every name Windows or Linux would refuse, mangle or confuse with
// another is an error naming the path.
func TestNamesFATCannotHold(t *testing.T) {
	for _, tc := range []struct {
		name string
		fsys fstest.MapFS
		want string
	}{
		{"trailing space", fstest.MapFS{"dir/name ": {}}, "dir/name : FAT names cannot end in a dot or a space"},
		{"trailing dots", fstest.MapFS{"dir/name..": {}}, "dir/name..: FAT names cannot end"},
		{"only dots", fstest.MapFS{"...": {}}, "...: FAT names cannot end"},
		{"backslash", fstest.MapFS{`a\b`: {}}, `a\b: character '\\' is not allowed`},
		{"colon", fstest.MapFS{"EFI/c:d": {}}, `EFI/c:d: character ':' is not allowed`},
		{"control", fstest.MapFS{"x/tab\there": {}}, `x/tab` + "\t" + `here: character '\t' is not allowed`},
		{"DEL", fstest.MapFS{"del\x7f": {}}, `character '\x7f' is not allowed`},
		{"pipe in a directory", fstest.MapFS{"a|b/file": {}}, "a|b: character '|'"},
		{"not UTF-8", fstest.MapFS{"bad\xff": {}}, "not valid UTF-8"},
		{"case, ASCII", fstest.MapFS{"EFI/Linux/UKI.efi": {}, "EFI/Linux/uki.EFI": {}}, "EFI/Linux/UKI.efi and EFI/Linux/uki.EFI differ only in case"},
		{"case, file and directory", fstest.MapFS{"a/Sub/x": {}, "a/SUB": {}}, "a/SUB and a/Sub differ only in case"},
		{"case, Unicode", fstest.MapFS{"Ärger.txt": {}, "ärger.txt": {}}, "Ärger.txt and ärger.txt differ only in case"},
		{"256 UTF-16 units", fstest.MapFS{"d/" + strings.Repeat("😀", 128): {}}, "d/" + strings.Repeat("😀", 128) + ": name is 256 UTF-16 units long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			formatFails(t, 40<<20, Options{Root: tc.fsys}, tc.want)
			if _, err := MinSize(Options{Root: tc.fsys}); err == nil {
				t.Error("MinSize accepted the tree")
			}
		})
	}
	// What is allowed although unusual: leading spaces and dots, 255 units, '+' and '['.
	ok := fstest.MapFS{" lead": {Data: []byte("1")}, "..lead dots": {Data: []byte("2")},
		strings.Repeat("😀", 127) + "x": {Data: []byte("3")}, "a+b[1];c=d,e.txt": {Data: []byte("4")}}
	img := build(t, 40<<20, Options{Root: ok})
	fsckClean(t, img)
	compareTrees(t, ok, openFile(t, img))
}

// TestShortNameCollisions: a thousand long names with the same 8.3 basis get ~1 to ~1001
// tails, each unique, and fsck.vfat checks every long name's checksum against them.
func TestShortNameCollisions(t *testing.T) {
	t.Parallel() // overlaps TestKernelReadsAndWrites, which mostly waits for QEMU
	tree := fstest.MapFS{"COLLIS~3.TXT": {Data: []byte("a real 8.3 name with a tail")}}
	for i := 1; i <= 1000; i++ {
		tree[fmt.Sprintf("Collision Name %04d.txt", i)] = &fstest.MapFile{}
	}
	for i := 1; i <= 150; i++ {
		tree[fmt.Sprintf("many/Collision Name %04d.txt", i)] = &fstest.MapFile{Data: []byte(fmt.Sprint(i))}
	}
	img := build(t, 40<<20, Options{Root: tree})
	fsckClean(t, img)
	fsys := openFile(t, img)
	compareTrees(t, tree, fsys)
	for _, dir := range []string{".", "many"} {
		_, d, err := fsys.lookup("stat", dir)
		if err != nil {
			t.Fatal(err)
		}
		ents, err := fsys.entries(dir, d)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[[11]byte]string{}
		for _, e := range ents {
			if other, dup := seen[e.short]; dup {
				t.Errorf("%s: %s and %s share the short name %q", dir, e.name, other, e.short[:])
			}
			seen[e.short] = e.name
		}
		if len(seen) != len(ents) {
			t.Errorf("%s: %d entries, %d short names", dir, len(ents), len(seen))
		}
	}
	for name, short := range map[string]string{
		"Collision Name 0001.txt": "COLLIS~1TXT", "Collision Name 0003.txt": "COLLIS~4TXT", // ~3 is taken
		"Collision Name 0009.txt": "COLLI~10TXT", "Collision Name 0100.txt": "COLL~101TXT",
		"Collision Name 1000.txt": "COL~1001TXT", "many/Collision Name 0150.txt": "COLL~150TXT",
	} {
		if _, e, err := fsys.lookup("stat", name); err != nil || string(e.short[:]) != short {
			t.Errorf("%s: short name %q (%v), want %q", name, e.short[:], err, short)
		}
	}
	readBack(t, img, tree)
}

// TestDirectoryEntryLimit: FAT directories hold at most 65536 entries (2 MiB), counting ".",
// "..", long-name entries and the volume label; a FAT16 root at most what its 16-bit count
// holds.
func TestDirectoryEntryLimit(t *testing.T) {
	t.Parallel() // overlaps TestKernelReadsAndWrites, which mostly waits for QEMU
	many := func(dir string, n int) fs.FS { return manyFS{dir: dir, n: n} }
	full := many("d/", 65534) // with "." and "..": exactly 65536
	img := build(t, 16<<20, Options{Root: full, TargetZeroed: true})
	// fsck.vfat compares every pair of names in a directory: 15 s here. mtools lists it (with
	// "." and "..": 65536 files).
	testutil.Need(t, "mdir")
	cmd := exec.Command("mdir", "-i", img, "::/d")
	cmd.Env = mtoolsEnv()
	if out, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(out, []byte("65536 files ")) {
		t.Errorf("mdir: %v\n%s", err, out[max(0, len(out)-300):])
	}
	if ents, err := openFile(t, img).ReadDir("d"); err != nil || len(ents) != 65534 {
		t.Errorf("read back %d entries: %v", len(ents), err)
	}
	formatFails(t, 16<<20, Options{Root: many("d/", 65535)}, "d: 65537 directory entries (65535 files) exceed FAT's limit of 65536")
	long := fstest.MapFS{}
	for i := 0; i < 21900; i++ { // two long-name entries each: 65700 entries
		long[fmt.Sprintf("d/a long file name %05d", i)] = &fstest.MapFile{}
	}
	formatFails(t, 16<<20, Options{Root: long}, "d: 65702 directory entries (21900 files) exceed")
	formatFails(t, 64<<20, Options{Root: many("", 65536), Label: "ESP"}, "the root directory's 65536 entries and the volume label exceed")
	formatFails(t, 20<<20, Options{Root: many("", 65521)}, "the root directory needs 65521 entries, a FAT16 root holds at most 65520")

	// A FAT16 root grows beyond mkfs.fat's 512 entries as far as the content needs.
	root := many("", 3000)
	img = build(t, 20<<20, Options{Root: root, Label: "BIG ROOT", TargetZeroed: true})
	fsckClean(t, img)
	if f := openFile(t, img); f.Type() != 16 || f.Label() != "BIG ROOT" {
		t.Errorf("FAT%d, label %q", f.Type(), f.Label())
	} else if ents, err := f.ReadDir("."); err != nil || len(ents) != 3000 {
		t.Errorf("root: %d entries, %v", len(ents), err)
	}
	// The largest FAT16 root: 65520 entries (whole sectors), with smaller clusters if
	// rounding to 2 KiB clusters would pass 65535.
	img = build(t, 20<<20, Options{Root: many("", 65520), TargetZeroed: true})
	if b := readSector(t, img, 17, 2); int(b[0])|int(b[1])<<8 != 65520 {
		t.Errorf("root entries % x, want 65520", b)
	}
	cmd = exec.Command("mdir", "-i", img, "::/")
	cmd.Env = mtoolsEnv()
	if out, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(out, []byte("65520 files ")) {
		t.Errorf("mdir: %v\n%s", err, out[max(0, len(out)-300):])
	}
}

// manyFS is a directory dir ("" for the root) of n empty files F00000, F00001, ...: a big
// directory without fstest.MapFS's cost per lookup.
type manyFS struct {
	dir string
	n   int
}

func (m manyFS) ReadDir(name string) ([]fs.DirEntry, error) {
	switch {
	case name == "." && m.dir != "":
		return []fs.DirEntry{fs.FileInfoToDirEntry(zeroInfo{name: strings.TrimSuffix(m.dir, "/"), mode: fs.ModeDir | 0o755})}, nil
	case name == "." || name+"/" == m.dir:
		out := make([]fs.DirEntry, m.n)
		for i := range out {
			out[i] = fs.FileInfoToDirEntry(zeroInfo{name: fmt.Sprintf("F%05d", i)})
		}
		return out, nil
	}
	return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
}

func (m manyFS) Open(name string) (fs.File, error) {
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid} // only ReadDir is needed
}

// zeroFS holds one file of n zero bytes, produced without allocating them; reading it yields
// n+drift bytes.
type zeroFS struct{ n, drift int64 }

func (z zeroFS) Open(name string) (fs.File, error) {
	switch name {
	case ".":
		return &zeroFile{z: z, dir: true}, nil
	case "zeros.bin":
		return &zeroFile{z: z}, nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

type zeroFile struct {
	z    zeroFS
	dir  bool
	read int64
	done bool
}

func (f *zeroFile) Stat() (fs.FileInfo, error) {
	if f.dir {
		return zeroInfo{name: ".", mode: fs.ModeDir | 0o755}, nil
	}
	return zeroInfo{name: "zeros.bin", size: f.z.n}, nil
}
func (f *zeroFile) Read(p []byte) (int, error) {
	n := f.z.n + f.z.drift
	if f.read >= n {
		return 0, io.EOF
	}
	k := min(int64(len(p)), n-f.read)
	clear(p[:k])
	f.read += k
	return int(k), nil
}
func (f *zeroFile) Close() error { return nil }
func (f *zeroFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if f.done {
		return nil, io.EOF
	}
	f.done = true
	return []fs.DirEntry{fs.FileInfoToDirEntry(zeroInfo{name: "zeros.bin", size: f.z.n})}, nil
}

type zeroInfo struct {
	name string
	size int64
	mode fs.FileMode
}

func (i zeroInfo) Name() string       { return i.name }
func (i zeroInfo) Size() int64        { return i.size }
func (i zeroInfo) Mode() fs.FileMode  { return i.mode }
func (i zeroInfo) ModTime() time.Time { return time.Time{} }
func (i zeroInfo) IsDir() bool        { return i.mode.IsDir() }
func (i zeroInfo) Sys() any           { return nil }

// sparseWriter skips zero blocks, for targets known to read as zeros.
type sparseWriter struct{ f *os.File }

var zeroBlock = make([]byte, 1<<20)

func (s sparseWriter) WriteAt(p []byte, off int64) (int, error) {
	if len(p) <= len(zeroBlock) && bytes.Equal(p, zeroBlock[:len(p)]) {
		return len(p), nil
	}
	return s.f.WriteAt(p, off)
}

// TestFileSizeLimit: 4 GiB - 1 bytes is the largest FAT file; one byte more is an error
// naming the file.
func TestFileSizeLimit(t *testing.T) {
	t.Parallel() // overlaps TestKernelReadsAndWrites, which mostly waits for QEMU
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "EFI"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "EFI", "huge.img"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, "EFI", "huge.img"), 1<<32); err != nil { // sparse
		t.Fatal(err)
	}
	formatFails(t, 8<<30, Options{Root: os.DirFS(dir)}, "EFI/huge.img: 4294967296 bytes, FAT files are limited to 4294967295 bytes")

	// fsck.fat 4.2 computes a chain's length in 32 bits, so a file of more than 4 GiB minus
	// one cluster reads as "cluster chain length is 0 bytes": it checks the largest size it
	// can, mtools and Open the largest there is.
	for _, n := range []int64{maxFileSize - 4096, maxFileSize} {
		img := filepath.Join(t.TempDir(), "max.img")
		f, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		const size = 4<<30 + 64<<20 // FAT32 with 4 KiB clusters
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		if err := Format(sparseWriter{f}, size, Options{Root: zeroFS{n: n}, TargetZeroed: true}); err != nil {
			t.Fatal(err)
		}
		if n < maxFileSize {
			fsckClean(t, img)
		} else {
			testutil.Need(t, "mdir")
			cmd := exec.Command("mdir", "-i", img, "::/")
			cmd.Env = mtoolsEnv()
			if out, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(out, []byte("4294967295")) {
				t.Errorf("mdir: %v\n%s", err, out)
			}
		}
		zf, err := openFile(t, img).Open("zeros.bin")
		if err != nil {
			t.Fatal(err)
		}
		var b [2]byte
		if st, _ := zf.Stat(); st.Size() != n {
			t.Errorf("size %d, want %d", st.Size(), n)
		} else if k, err := zf.(io.ReaderAt).ReadAt(b[:], n-1); k != 1 || err != io.EOF {
			t.Errorf("reading the last byte: %d, %v", k, err)
		}
	}
}

// TestFileChangesWhileCopied: a file that grows or shrinks between reading the tree and
// copying it is an error naming it, and nothing is written past its clusters.
func TestFileChangesWhileCopied(t *testing.T) {
	for _, drift := range []int64{1, 4096, -1} {
		img := filepath.Join(t.TempDir(), "img")
		f, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		const size = 40 << 20
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		bf := &boundedFile{f: f}
		err = Format(bf, size, Options{Root: zeroFS{n: 10000, drift: drift}})
		want := "zeros.bin: file grew beyond 10000 bytes while being copied"
		if drift < 0 {
			want = "zeros.bin: read 9999 bytes, expected 10000 (file changed while being copied)"
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("drift %d: %v, want %q", drift, err, want)
		}
		g, _ := layout(size, 512, 0, 0, 0)
		if end := g.clusterOffset(3) + 10240; bf.max > end {
			t.Errorf("drift %d: wrote up to %d, the file's clusters end at %d", drift, bf.max, end)
		}
		if b := readSector(t, img, 0, 512); b[510] == 0x55 {
			t.Errorf("drift %d: the failed filesystem has a boot sector", drift)
		}
	}
}

// TestLabels: what FAT labels may hold, as fsck.vfat, mlabel and Open read them back.
func TestLabels(t *testing.T) {
	testutil.Need(t, "mlabel")
	for _, tc := range []struct{ label, want string }{
		{"ESP", "ESP"}, {"nix-store_v", "NIX-STORE_V"}, {"boot", "BOOT"}, {"A B  ", "A B"},
		{"NO NAME", ""}, {"", ""}, {"#$%&'()-@^_", "#$%&'()-@^_"},
	} {
		t.Run(tc.label, func(t *testing.T) {
			for _, size := range []int64{8 << 20, 40 << 20} { // FAT16 and FAT32
				img := build(t, size, Options{Label: tc.label, Root: fstest.MapFS{"f": {}}})
				fsckClean(t, img)
				if got := openFile(t, img).Label(); got != tc.want {
					t.Errorf("%d MiB: Open reads label %q, want %q", size>>20, got, tc.want)
				}
				cmd := exec.Command("mlabel", "-i", img, "-s", "::")
				cmd.Env = mtoolsEnv()
				out, err := cmd.CombinedOutput()
				want := "Volume label is " + tc.want
				if tc.want == "" {
					want = "Volume has no label"
				}
				if err != nil || !strings.Contains(string(out), want) {
					t.Errorf("%d MiB: mlabel -s: %v %q, want %q", size>>20, err, out, want)
				}
				if b := readSector(t, img, 0, 512); tc.want != "" && !strings.Contains(string(b), fmt.Sprintf("%-11s", tc.want)) {
					t.Errorf("%d MiB: the boot sector does not hold the label", size>>20)
				}
			}
		})
	}
	for _, tc := range []struct{ label, want string }{
		{"twelve chars", "longer than 11"}, {" lead", "starts with a space"}, {"a.b", "character '.' is not allowed"},
		{"Ärger", "character 'Ä' is not allowed"}, {"tab\t", `character '\t'`}, {"a*", "character '*'"},
	} {
		formatFails(t, 40<<20, Options{Label: tc.label}, tc.want)
		if MangleLabel(tc.label) == "" && tc.label != "" {
			t.Errorf("MangleLabel(%q) is empty", tc.label)
		} else if _, _, err := parseLabel(MangleLabel(tc.label)); err != nil {
			t.Errorf("MangleLabel(%q) = %q: %v", tc.label, MangleLabel(tc.label), err)
		}
	}
}
