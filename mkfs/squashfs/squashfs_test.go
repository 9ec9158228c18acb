package squashfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/piboot/piboot/internal/iszero"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/piboot/piboot/internal/testutil"
)

// compressible returns n bytes of text-like data that compresses, varied by seed.
func compressible(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	words := []string{"squashfs ", "block ", "inode ", "piboot ", "kernel\n", "fragment ", "zstd ", "0123 "}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.Bytes()[:n]
}

func random(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for k := range b {
		b[k] = byte(r.Uint32())
	}
	return b
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, p string, data []byte, mode os.FileMode) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, data, mode))
	must(t, os.Chmod(p, mode))
}

// richTree makes every kind of file the issue lists below dir, sized around bs.
func richTree(t testing.TB, dir string, bs int, xattrs bool) {
	t.Helper()
	j := func(p ...string) string { return filepath.Join(append([]string{dir}, p...)...) }
	for k, n := range []int{1, bs - 1, bs, bs + 1, 2*bs - 1, 2 * bs, 2*bs + 1, 3*bs + 17} {
		writeFile(t, j("sizes", fmt.Sprintf("text-%d", n)), compressible(n, uint64(k)), 0o644)
		writeFile(t, j("sizes", fmt.Sprintf("rand-%d", n)), random(n, uint64(k)), 0o644)
	}
	writeFile(t, j("empty"), nil, 0o644)
	// Sparse: a hole at the start, one in the middle, and a file of nothing but zeros.
	f, err := os.Create(j("sparse-start"))
	must(t, err)
	_, err = f.WriteAt([]byte("end"), int64(3*bs))
	must(t, err)
	f.Close()
	f, err = os.Create(j("sparse-middle"))
	must(t, err)
	f.Write(compressible(bs+10, 9))
	_, err = f.WriteAt(compressible(bs/2, 10), int64(5*bs))
	must(t, err)
	f.Close()
	must(t, os.Truncate(filepath.Join(dir, "empty"), 0))
	writeFile(t, j("zeros"), make([]byte, 2*bs), 0o600)
	// Duplicates, large and small, in different directories.
	for _, p := range []string{"dup/a", "dup/b", "dup/sub/c"} {
		writeFile(t, j(p), compressible(3*bs+5, 77), 0o644)
	}
	writeFile(t, j("dup/small1"), []byte("same small content\n"), 0o644)
	writeFile(t, j("dup/small2"), []byte("same small content\n"), 0o640)
	// Hardlinks: one inode under three names, an empty file under two, a symlink under two.
	writeFile(t, j("links/one"), compressible(bs+3, 5), 0o755)
	must(t, os.MkdirAll(j("links/other"), 0o755))
	must(t, os.Link(j("links/one"), j("links/two")))
	must(t, os.Link(j("links/one"), j("links/other/three")))
	writeFile(t, j("links/empty1"), nil, 0o644)
	must(t, os.Link(j("links/empty1"), j("links/empty2")))
	must(t, os.Symlink("one", j("links/sym1")))
	must(t, os.Link(j("links/sym1"), j("links/sym2")))
	// Symlinks are stored, never followed.
	must(t, os.Symlink("../sizes/text-1", j("links/relative")))
	must(t, os.Symlink("/etc/passwd", j("links/absolute")))
	must(t, os.Symlink("does/not/exist", j("links/dangling")))
	must(t, os.Symlink(strings.Repeat("x/", 2000), j("links/long")))
	must(t, os.Symlink(".", j("links/loop")))
	// Devices, fifos, sockets.
	must(t, os.MkdirAll(j("dev"), 0o755))
	must(t, unix.Mknod(j("dev/sda1"), unix.S_IFBLK|0o660, int(unix.Mkdev(8, 1))))
	must(t, unix.Mknod(j("dev/tty200"), unix.S_IFCHR|0o620, int(unix.Mkdev(4, 200))))
	must(t, unix.Mknod(j("dev/big"), unix.S_IFCHR|0o600, int(unix.Mkdev(300, 70000))))
	must(t, unix.Mknod(j("dev/fifo"), unix.S_IFIFO|0o644, 0))
	must(t, unix.Mknod(j("dev/socket"), unix.S_IFSOCK|0o755, 0))
	// Modes and owners.
	writeFile(t, j("modes/setuid"), []byte("#!/bin/sh\n"), 0o755)
	must(t, os.Chmod(j("modes/setuid"), 0o755|os.ModeSetuid))
	writeFile(t, j("modes/none"), []byte("x"), 0)
	must(t, os.MkdirAll(j("modes/setgid"), 0o755))
	must(t, os.Chmod(j("modes/setgid"), 0o2775|os.ModeSetgid))
	must(t, os.MkdirAll(j("modes/sticky"), 0o755))
	must(t, os.Chmod(j("modes/sticky"), 0o777|os.ModeSticky))
	writeFile(t, j("modes/owned"), []byte("owned"), 0o640)
	must(t, os.Lchown(j("modes/owned"), 1000, 100))
	must(t, os.Lchown(j("modes/sticky"), 65534, 65534))
	must(t, os.Lchown(j("links/absolute"), 123456, 7))
	must(t, os.Lchown(j("dev/fifo"), 5, 6))
	// Deep paths, long names, names that sort in byte order.
	deep := dir
	for k := range 40 {
		deep = filepath.Join(deep, fmt.Sprintf("d%02d", k))
	}
	writeFile(t, filepath.Join(deep, "bottom"), []byte("deep"), 0o644)
	long := strings.Repeat("n", 255)
	writeFile(t, j(strings.Repeat("L", 255), long), []byte("long"), 0o644)
	for _, n := range []string{"a", "a.b", "a-b", "B", "ä", "a b", "z", "~"} {
		writeFile(t, j("names", n), []byte(n), 0o644)
	}
	must(t, os.MkdirAll(j("emptydir"), 0o700))
	if xattrs {
		must(t, unix.Setxattr(j("modes/owned"), "user.comment", []byte("hello"), 0))
		must(t, unix.Setxattr(j("modes/owned"), "user.empty", nil, 0))
		must(t, unix.Setxattr(j("modes/owned"), "trusted.bin", []byte{0, 1, 2, 255}, 0))
		must(t, unix.Setxattr(j("names"), "user.dir", []byte("on a directory"), 0))
		must(t, unix.Setxattr(j("links/one"), "user.big", bytes.Repeat([]byte("v"), 3000), 0))
		must(t, unix.Setxattr(j("dup/small1"), "user.comment", []byte("hello"), 0))
	}
	wholeSeconds(t, dir, 1_700_000_000)
}

func TestRoundTripEveryCompression(t *testing.T) {
	testutil.Need(t, "unsquashfs", "find", "diff")
	src := filepath.Join(scratch(t), "src")
	richTree(t, src, 4096, true)
	cases := []struct {
		name string
		opts Options
	}{
		{"zstd", Options{Compression: Zstd, BlockSize: 4096}},
		{"zstd-128K", Options{}},
		{"zstd-1M-level22", Options{BlockSize: 1 << 20, Level: 22}},
		{"xz", Options{Compression: XZ, BlockSize: 4096}},
		{"gzip", Options{Compression: Gzip, BlockSize: 4096}},
		{"lz4", Options{Compression: LZ4, BlockSize: 4096}},
		{"lz4hc", Options{Compression: LZ4, Level: 9, BlockSize: 8192}},
		{"none", Options{Compression: None, BlockSize: 4096}},
		{"zstd-nofrag-nodup-noexport", Options{BlockSize: 4096, NoFragments: true, NoDuplicates: true, NoExport: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, _ := writeImage(t, dirTree(t, src, true), c.opts)
			sameTree(t, src, unsquash(t, img), true)
			sameTree(t, src, kernelMount(t, img), true)
		})
	}
}

func TestAllRootAndMtime(t *testing.T) {
	testutil.Need(t, "unsquashfs", "find", "diff")
	src := filepath.Join(scratch(t), "src")
	richTree(t, src, 4096, false)
	when := int64(1_234_567_890)
	img, _ := writeImage(t, dirTree(t, src, false), Options{AllRoot: true, Mtime: &when, BlockSize: 4096})
	out := run(t, "unsquashfs", "-s", img)
	if !strings.Contains(out, "Creation or last append time Fri Feb 13 23:31:30 2009") {
		t.Errorf("creation time is not SOURCE_DATE_EPOCH:\n%s", out)
	}
	// What the image must hold: the source, owned by root, all mtimes when.
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		must(t, err)
		must(t, os.Lchown(p, 0, 0)) // clears setuid on files: restored below
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{{Sec: when}, {Sec: when}}, unix.AT_SYMLINK_NOFOLLOW)
	})
	must(t, err)
	must(t, os.Chmod(filepath.Join(src, "modes/setuid"), 0o755|os.ModeSetuid))
	got := kernelMount(t, img)
	sameTree(t, src, got, false)
}

// TestLargeDirectories: one directory of 0, 1, 400 and 5000 entries through unsquashfs
// and the kernel, then 50 000 entries through the kernel's indexed lookup and readdir.
func TestLargeDirectories(t *testing.T) {
	testutil.Need(t, "unsquashfs", "find", "diff")
	for _, n := range []int{0, 1, 400, 5000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			src := filepath.Join(scratch(t), "src")
			must(t, os.MkdirAll(filepath.Join(src, "big"), 0o755))
			for k := range n {
				name := fmt.Sprintf("%s-%06d", strings.Repeat("p", k%50), k)
				p := filepath.Join(src, "big", name)
				switch k % 13 {
				case 5:
					must(t, os.Symlink(name, p))
				case 7:
					must(t, os.Mkdir(p, 0o755))
				default:
					must(t, os.WriteFile(p, []byte(name), 0o644))
				}
			}
			wholeSeconds(t, src, 1_600_000_000)
			img, _ := writeImage(t, dirTree(t, src, false), Options{})
			sameTree(t, src, unsquash(t, img), false)
			sameTree(t, src, kernelMount(t, img), false)
		})
	}
	t.Run("50000", func(t *testing.T) {
		const n = 50000
		tree := NewTree()
		names := make([]string, n)
		for k := range n {
			names[k] = fmt.Sprintf("%032x-%s", uint64(k)*0x9e3779b97f4a7c15, strings.Repeat("q", k%40))
			content := names[k]
			must(t, tree.Add(Entry{Path: "store/" + names[k], Mode: 0o444, Mtime: int64(k), Size: int64(len(content)),
				Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(content)), nil }}))
		}
		t0 := time.Now()
		img, _ := writeImage(t, tree, Options{Compression: LZ4})
		t.Logf("written in %v", time.Since(t0))
		mnt := kernelMount(t, img)
		defer func() { t.Logf("checked in %v", time.Since(t0)) }()
		ents, err := os.ReadDir(filepath.Join(mnt, "store"))
		must(t, err)
		if len(ents) != n {
			t.Fatalf("readdir: %d entries, want %d", len(ents), n)
		}
		t.Logf("listed in %v", time.Since(t0))
		// A sample in random order first, while no dentry is cached: each lookup starts from
		// the directory index...
		for k := 0; k < n; k += 17 {
			name := names[k]
			if fi, err := os.Lstat(filepath.Join(mnt, "store", name)); err != nil || fi.Size() != int64(len(name)) || fi.ModTime().Unix() != int64(k) {
				t.Fatalf("entry %d %s: %v, %v", k, name, fi, err)
			}
		}
		// ...then every file is looked up and read in readdir order, the order its data was
		// written in (random order costs the kernel ~0.3 ms a lookup, on mksquashfs' images too).
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(mnt, "store", e.Name()))
			if err != nil || string(b) != e.Name() {
				t.Fatalf("%s: %q, %v", e.Name(), b, err)
			}
		}
		t.Logf("read in %v", time.Since(t0))
		for _, missing := range []string{"0", "zzzz", names[100] + "x", names[n-1][:31]} {
			if _, err := os.Lstat(filepath.Join(mnt, "store", missing)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("lookup of absent %q: %v", missing, err)
			}
		}
	})
}

// TestReproducible: the same tree gives the same bytes with one or four compressors, from
// another copy of the tree on disk, and when entries are added in random order.
func TestReproducible(t *testing.T) {
	testutil.Need(t, "cp")
	dir := scratch(t)
	src := filepath.Join(dir, "src")
	richTree(t, src, 4096, true)
	opts := Options{BlockSize: 4096}

	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	_, want := writeImage(t, dirTree(t, src, true), Options{BlockSize: 4096, Workers: 1})

	runtime.GOMAXPROCS(4)
	copyDir := filepath.Join(dir, "copy-elsewhere")
	run(t, "cp", "-a", src, copyDir)
	if _, got := writeImage(t, dirTree(t, copyDir, true), opts); got != want {
		t.Errorf("copy of the tree, 4 workers: sha256 %s, want %s", got, want)
	}

	var entries []Entry
	must(t, filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		must(t, err)
		e, err := lstatEntry(p, DirOptions{Xattrs: true})
		must(t, err)
		rel, _ := filepath.Rel(src, p)
		e.Path = rel
		entries = append(entries, e)
		return nil
	}))
	for seed := range uint64(3) {
		r := rand.New(rand.NewPCG(seed, 3))
		r.Shuffle(len(entries), func(a, b int) { entries[a], entries[b] = entries[b], entries[a] })
		tree := NewTree()
		for _, e := range entries {
			must(t, tree.Add(e))
		}
		o := opts
		o.Workers = 1 + int(seed)*3
		if _, got := writeImage(t, tree, o); got != want {
			t.Errorf("shuffled order %d, %d workers: sha256 %s, want %s", seed, o.Workers, got, want)
		}
	}
}

// TestRandomTrees is a property test: random trees with random options round-trip.
func TestRandomTrees(t *testing.T) {
	testutil.Need(t, "unsquashfs", "find", "diff")
	comps := []Compression{Zstd, XZ, Gzip, LZ4, None}
	sizes := []int{4096, 8192, 65536, 131072, 1 << 20}
	for seed := range uint64(10) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 4))
			opts := Options{
				Compression: comps[r.IntN(len(comps))], BlockSize: sizes[r.IntN(len(sizes))],
				NoFragments: r.IntN(3) == 0, NoDuplicates: r.IntN(3) == 0, NoExport: r.IntN(2) == 0,
				Workers: 1 + r.IntN(4),
			}
			src := filepath.Join(scratch(t), "src")
			randomTree(t, r, src, opts.BlockSize)
			img, _ := writeImage(t, dirTree(t, src, false), opts)
			sameTree(t, src, unsquash(t, img), false)
			if seed%3 == 0 {
				sameTree(t, src, kernelMount(t, img), false)
			}
		})
	}
}

func randomTree(t testing.TB, r *rand.Rand, root string, bs int) {
	must(t, os.MkdirAll(root, 0o755))
	dirs := []string{root}
	var files []string
	for k := range 20 + r.IntN(150) {
		parent := dirs[r.IntN(len(dirs))]
		name := fmt.Sprintf("%s%d", strings.Repeat("abcxyz"[r.IntN(6):][:1], 1+r.IntN(30)), k)
		p := filepath.Join(parent, name)
		switch x := r.IntN(20); {
		case x < 3:
			must(t, os.Mkdir(p, os.FileMode(0o700+r.IntN(0o100))))
			dirs = append(dirs, p)
		case x < 5:
			must(t, os.Symlink(strings.Repeat("../", r.IntN(3))+name, p))
		case x < 6 && len(files) > 0:
			must(t, os.Link(files[r.IntN(len(files))], p))
		case x < 7:
			must(t, unix.Mknod(p, unix.S_IFIFO|0o600, 0))
		default:
			var n int
			switch r.IntN(4) {
			case 0:
				n = r.IntN(100)
			case 1:
				n = (1+r.IntN(2))*min(bs, 128<<10) + r.IntN(3) - 1
			default:
				n = r.IntN(min(3*bs, 300000))
			}
			var data []byte
			switch r.IntN(3) {
			case 0:
				data = random(n, r.Uint64())
			case 1:
				data = compressible(n, r.Uint64()%4) // often identical: duplicates
			default:
				data = make([]byte, n)
			}
			writeFile(t, p, data, os.FileMode(r.IntN(0o1000)))
			must(t, os.Lchown(p, r.IntN(3)*1000, r.IntN(3)*100))
			files = append(files, p)
		}
	}
	wholeSeconds(t, root, int64(r.IntN(1<<31)))
}

// failingWriter records the highest offset written.
type recordingWriter struct {
	w   io.WriterAt
	end int64
}

func (r *recordingWriter) WriteAt(b []byte, off int64) (int, error) {
	r.end = max(r.end, off+int64(len(b)))
	return r.w.WriteAt(b, off)
}

func TestMaxSize(t *testing.T) {
	src := filepath.Join(scratch(t), "src")
	richTree(t, src, 4096, false)
	tree := dirTree(t, src, false)
	f, err := os.Create(filepath.Join(scratch(t), "img"))
	must(t, err)
	defer f.Close()
	full, err := Write(f, tree, Options{})
	must(t, err)
	for _, limit := range []int64{100, 4096, full / 2, full - 4096} {
		rw := &recordingWriter{w: f}
		_, err := Write(rw, tree, Options{MaxSize: limit})
		if !errors.Is(err, ErrTooBig) {
			t.Errorf("MaxSize %d of %d: err %v, want ErrTooBig", limit, full, err)
		}
		if rw.end > limit {
			t.Errorf("MaxSize %d: wrote up to %d", limit, rw.end)
		}
	}
	rw := &recordingWriter{w: f}
	n, err := Write(rw, tree, Options{MaxSize: full})
	if err != nil || n != full || rw.end != full {
		t.Errorf("MaxSize = size: n %d end %d err %v, want %d", n, rw.end, err, full)
	}
}

func TestErrors(t *testing.T) {
	short := Entry{Path: "f", Mode: 0o644, Size: 10, Source: "/host/f",
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("abc")), nil }}
	long := short
	long.Size = 2
	dev := t.TempDir()
	for _, c := range []struct {
		name    string
		entries []Entry
		opts    Options
		want    string
	}{
		{"shrank", []Entry{short}, Options{}, "/host/f: shrank while the image was built"},
		{"grew", []Entry{long}, Options{}, "/host/f: grew while the image was built"},
		{"block size", nil, Options{BlockSize: 3000}, "block size 3000"},
		{"compression", nil, Options{Compression: "lzo"}, `unknown compression "lzo"`},
		{"level", nil, Options{Level: 30}, "zstd level 30 out of range"},
		{"open", []Entry{{Path: "x", Mode: 0o644, Size: 1, Source: dev + "/gone",
			Open: func() (io.ReadCloser, error) { return os.Open(dev + "/gone") }}}, Options{}, dev + "/gone"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tree := NewTree()
			for _, e := range c.entries {
				must(t, tree.Add(e))
			}
			_, err := Write(&recordingWriter{w: discard{}}, tree, c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
		})
	}
	tree := NewTree()
	must(t, tree.Add(Entry{Path: "a/b", Mode: 0o644}))
	for _, c := range []struct {
		e    Entry
		want string
	}{
		{Entry{Path: "a/b", Mode: 0o644}, "/a/b is already in the image"},
		{Entry{Path: "a/b/c", Mode: 0o644}, `parent "b" is not a directory`},
		{Entry{Path: "x", Mode: 0o644, Xattrs: map[string][]byte{"system.posix_acl_access": nil}}, "only user., trusted. and security."},
		{Entry{Path: strings.Repeat("n", 256), Mode: 0o644}, "longer than 255 bytes"},
		{Entry{Path: "l", Mode: fs.ModeSymlink, Target: strings.Repeat("t", 4096)}, "more than the 4095"},
		{Entry{Path: "", Mode: 0o644}, "root must be a directory"},
		{Entry{Path: "d", Mode: fs.ModeDir, LinkID: "x"}, "directories cannot be hardlinked"},
	} {
		if err := tree.Add(c.e); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Add(%q): %v, want %q", c.e.Path, err, c.want)
		}
	}
}

type discard struct{}

func (discard) WriteAt(b []byte, off int64) (int, error) { return len(b), nil }

// TestComposedTree: the image builder's use, files from several places at chosen paths,
// with implicit parents, through the kernel.
func TestComposedTree(t *testing.T) {
	a, b := filepath.Join(scratch(t), "a"), filepath.Join(scratch(t), "b")
	writeFile(t, filepath.Join(a, "bin/tool"), []byte("tool"), 0o755)
	writeFile(t, filepath.Join(b, "lib/libx.so"), compressible(200000, 1), 0o644)
	tree := NewTree()
	must(t, tree.AddDir(a, "nix/store/aaa-tool", DirOptions{}))
	must(t, tree.AddDir(b, "nix/store/bbb-libx", DirOptions{}))
	must(t, tree.Add(Entry{Path: "nix", Mode: fs.ModeDir | 0o555, Mtime: 5}))
	must(t, tree.Add(Entry{Path: "etc/motd", Mode: 0o644, Size: 3, Open: func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader("hi\n")), nil
	}}))
	img, _ := writeImage(t, tree, Options{})
	mnt := kernelMount(t, img)
	for p, want := range map[string]string{"nix/store/aaa-tool/bin/tool": "tool", "etc/motd": "hi\n",
		"nix/store/bbb-libx/lib/libx.so": string(compressible(200000, 1))} {
		got, err := os.ReadFile(filepath.Join(mnt, p))
		if err != nil || string(got) != want {
			t.Errorf("%s: %d bytes, %v", p, len(got), err)
		}
	}
	fi, err := os.Stat(filepath.Join(mnt, "nix"))
	must(t, err)
	if fi.Mode() != fs.ModeDir|0o555 || fi.ModTime().Unix() != 5 {
		t.Errorf("nix: %v %v, want the metadata added after its children", fi.Mode(), fi.ModTime())
	}
	if fi, _ := os.Stat(filepath.Join(mnt, "etc")); fi == nil || fi.Mode() != fs.ModeDir|0o755 {
		t.Errorf("implicit etc: %v", fi)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	// Loop devices and mounts are released by each test's cleanup; the scratch root goes last.
	os.Remove("/tmp/squashfs-test")
	os.Exit(code)
}

// TestDuplicatesAndHardlinks: identical files share their data, hardlinks are one inode.
func TestDuplicatesAndHardlinks(t *testing.T) {
	src := filepath.Join(scratch(t), "src")
	data := random(1<<20+100, 42)
	writeFile(t, filepath.Join(src, "a"), data, 0o644)
	writeFile(t, filepath.Join(src, "sub/b"), data, 0o600)
	must(t, os.Link(filepath.Join(src, "a"), filepath.Join(src, "sub/a-link")))
	withDup, _ := writeImage(t, dirTree(t, src, false), Options{})
	noDup, _ := writeImage(t, dirTree(t, src, false), Options{NoDuplicates: true})
	s1, s2 := fileSize(t, withDup), fileSize(t, noDup)
	if s1 > int64(len(data))+64<<10 || s2 < 2*int64(len(data)) {
		t.Errorf("image sizes %d with duplicate detection and %d without, for two copies of %d bytes", s1, s2, len(data))
	}
	mnt := kernelMount(t, withDup)
	var a, link, b unix.Stat_t
	must(t, unix.Lstat(filepath.Join(mnt, "a"), &a))
	must(t, unix.Lstat(filepath.Join(mnt, "sub/a-link"), &link))
	must(t, unix.Lstat(filepath.Join(mnt, "sub/b"), &b))
	if a.Ino != link.Ino || a.Nlink != 2 || b.Ino == a.Ino || b.Nlink != 1 || b.Mode&0o777 != 0o600 {
		t.Errorf("a ino %d nlink %d, a-link ino %d, b ino %d nlink %d mode %o", a.Ino, a.Nlink, link.Ino, b.Ino, b.Nlink, b.Mode)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "sub/b"))
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("duplicate's content through the kernel: %d bytes, %v", len(got), err)
	}
}

func fileSize(t testing.TB, p string) int64 {
	fi, err := os.Stat(p)
	must(t, err)
	return fi.Size()
}

// TestBoundedMemory streams a 256 MiB file from a generator: the heap must stay far below
// the file's size (no copy of the input, a bounded number of blocks in flight).
func TestBoundedMemory(t *testing.T) {
	const size = 256 << 20
	tree := NewTree()
	must(t, tree.Add(Entry{Path: "big", Mode: 0o644, Size: size, Open: func() (io.ReadCloser, error) {
		return io.NopCloser(io.LimitReader(&counter{}, size)), nil
	}}))
	runtime.GC()
	var peak atomic.Uint64
	done := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}
	}()
	n, err := Write(discard{}, tree, Options{Compression: LZ4, Workers: 4})
	close(done)
	must(t, err)
	t.Logf("heap in use peaked at %.1f MiB", float64(peak.Load())/(1<<20))
	if p := peak.Load(); p > 48<<20 {
		t.Errorf("heap in use peaked at %d MiB writing a %d MiB file (image %d bytes)", p>>20, size>>20, n)
	}
}

// counter yields a cheap, compressible, non-repeating byte stream.
type counter struct{ n uint64 }

func (c *counter) Read(b []byte) (int, error) {
	for k := range b {
		b[k] = byte(c.n>>3) ^ byte(c.n>>13)
		c.n++
	}
	return len(b), nil
}

// TestHugeSparseFile: a 5 GiB file (holes but for its last bytes) needs the extended
// regular inode; the kernel must read its end and its holes.
func TestHugeSparseFile(t *testing.T) {
	const size = 5<<30 + 12345
	tail := []byte("the end of a 5 GiB file")
	tree := NewTree()
	must(t, tree.Add(Entry{Path: "huge", Mode: 0o644, Size: size, Open: func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(io.LimitReader(zeros{}, size-int64(len(tail))), bytes.NewReader(tail))), nil
	}}))
	img, _ := writeImage(t, tree, Options{})
	if fi, _ := os.Stat(img); fi.Size() > 1<<20 {
		t.Errorf("image of a sparse file takes %d bytes", fi.Size())
	}
	mnt := kernelMount(t, img)
	f, err := os.Open(filepath.Join(mnt, "huge"))
	must(t, err)
	defer f.Close()
	fi, err := f.Stat()
	must(t, err)
	if fi.Size() != size {
		t.Fatalf("size %d, want %d", fi.Size(), size)
	}
	got := make([]byte, len(tail)+10)
	_, err = f.ReadAt(got, size-int64(len(got)))
	must(t, err)
	if want := append(make([]byte, 10), tail...); !bytes.Equal(got, want) {
		t.Errorf("end of file: %q", got)
	}
	hole := make([]byte, 1<<20)
	_, err = f.ReadAt(hole, 3<<30)
	must(t, err)
	if !iszero.Bytes(hole) {
		t.Error("a hole reads as non-zero")
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// TestZstdFrames: the kernel sizes its zstd window by the block size, so frames must be
// single-segment (window = content size), without checksum.
func TestZstdFrames(t *testing.T) {
	for _, level := range []int{1, 3, 9, 15, 22} {
		cd, err := newCodec(Zstd, level, 128<<10)
		must(t, err)
		c, err := cd.new()
		must(t, err)
		out, err := c.compress(nil, compressible(128<<10, 1))
		must(t, err)
		if binary.LittleEndian.Uint32(out) != 0xfd2fb528 {
			t.Fatalf("level %d: no zstd frame", level)
		}
		fhd := out[4]
		if fhd&0x20 == 0 || fhd&0x04 != 0 {
			t.Errorf("level %d: frame header descriptor %08b: want single segment (window = content size), no checksum", level, fhd)
		}
	}
}
