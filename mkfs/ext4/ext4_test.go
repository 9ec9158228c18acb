package ext4

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/piboot/piboot/internal/uuid"

	"github.com/piboot/piboot/internal/testutil"
)

// format makes a sparse file of size bytes in dir and formats it.
func format(t *testing.T, dir string, size int64, opts Options) string {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("ext4-%d.img", size))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := Format(f, size, opts); err != nil {
		t.Fatalf("Format(%d): %v", size, err)
	}
	return path
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func fsck(t *testing.T, path string) {
	t.Helper()
	run(t, "e2fsck", "-fn", path)
}

// allocated is what a sparse file really holds, i.e. what was written to it.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// dumpe2fs returns the superblock fields as printed by dumpe2fs -h.
func dumpe2fs(t *testing.T, path string) map[string]string {
	t.Helper()
	out := run(t, "dumpe2fs", "-h", path)
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

const wantFeatures = "has_journal ext_attr resize_inode dir_index filetype extent 64bit flex_bg sparse_super large_file huge_file dir_nlink extra_isize metadata_csum"

// TestSizes formats the sizes the issue names, sparse, and checks them with e2fsck and
// dumpe2fs and counts what was written.
func TestSizes(t *testing.T) {
	testutil.Need(t, "e2fsck", "dumpe2fs")
	dir := t.TempDir()
	id := uuid.MustParse("2b3c4d5e-0000-4000-8000-0123456789ab")
	for _, tc := range []struct {
		size     int64
		maxBytes int64
	}{
		{16 << 20, 192 << 10},
		{1 << 30, 1 << 20},
		{8 << 30, 5 << 20},
		{32 << 30, 5 << 20},
		{128 << 30, 6 << 20},
		{1 << 40, 16 << 20},
	} {
		path := format(t, dir, tc.size, Options{Label: "root", UUID: id})
		fsck(t, path)
		sb := dumpe2fs(t, path)
		if sb["Filesystem features"] != wantFeatures {
			t.Errorf("%d: features %q, want %q", tc.size, sb["Filesystem features"], wantFeatures)
		}
		if sb["Filesystem volume name"] != "root" || sb["Filesystem UUID"] != id.String() || sb["Reserved block count"] != "0" {
			t.Errorf("%d: label %q uuid %q reserved %q", tc.size, sb["Filesystem volume name"], sb["Filesystem UUID"], sb["Reserved block count"])
		}
		if n := allocated(t, path); n > tc.maxBytes {
			t.Errorf("%d: wrote %d bytes, want at most %d", tc.size, n, tc.maxBytes)
		} else {
			t.Logf("%d GiB: %d KiB written", tc.size>>30, n>>10)
		}
		os.Remove(path)
	}
}

// TestLikeMkfsExt4 compares our superblock with what mkfs.ext4 makes for the same size with
// systemd-repart's options: same geometry, same free space, same journal.
func TestLikeMkfsExt4(t *testing.T) {
	testutil.Need(t, "mkfs.ext4", "dumpe2fs", "e2fsck")
	dir := t.TempDir()
	same := []string{"Filesystem features", "Inode count", "Block count", "Reserved block count",
		"Free blocks", "Free inodes", "First block", "Block size", "Group descriptor size",
		"Reserved GDT blocks", "Blocks per group", "Inodes per group", "Inode blocks per group",
		"Flex block group size", "First inode", "Inode size", "Required extra isize",
		"Desired extra isize", "Journal inode", "Default directory hash", "Journal backup",
		"Checksum type", "Total journal size", "Total journal blocks", "Default mount options",
		"Maximum mount count", "Journal start"}
	for _, size := range []int64{1 << 30, 128 << 30} {
		ref := filepath.Join(dir, "ref.img")
		f, _ := os.Create(ref)
		f.Truncate(size)
		f.Close()
		run(t, "mkfs.ext4", "-q", "-F", "-L", "root", "-I", "256", "-O", "has_journal", "-m", "0",
			"-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1", "-T", "default", ref)
		want := dumpe2fs(t, ref)
		os.Remove(ref)
		path := format(t, dir, size, Options{Label: "root"})
		got := dumpe2fs(t, path)
		fsck(t, path)
		os.Remove(path)
		for _, k := range same {
			if got[k] != want[k] {
				t.Errorf("%d GiB: %s = %q, mkfs.ext4 has %q", size>>30, k, got[k], want[k])
			}
		}
	}
}

// loop attaches path to a loop device for the test's lifetime.
func loop(t *testing.T, path string, args ...string) string {
	t.Helper()
	dev := strings.TrimSpace(run(t, "losetup", append(append([]string{"-f", "--show"}, args...), path)...))
	t.Cleanup(func() { testutil.DetachLoop(dev, path) })
	return dev
}

func mount(t *testing.T, dev string) string {
	t.Helper()
	mnt := t.TempDir()
	run(t, "mount", "-t", "ext4", dev, mnt)
	mounted := true
	t.Cleanup(func() {
		if mounted {
			exec.Command("umount", mnt).Run()
		}
	})
	return mnt
}

// TestKernelReadWrite mounts our filesystem read-write, fills it with 10 000 files and 1 GiB,
// and checks that e2fsck still finds it clean afterwards.
func TestKernelReadWrite(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.Need(t, "losetup", "mount", "umount", "e2fsck")
	dir := t.TempDir()
	path := format(t, dir, 4<<30, Options{Label: "rw"})
	dev := loop(t, path)
	mnt := t.TempDir()
	run(t, "mount", "-t", "ext4", dev, mnt)
	umounted := false
	defer func() {
		if !umounted {
			exec.Command("umount", mnt).Run()
		}
	}()
	for i := 0; i < 100; i++ {
		d := filepath.Join(mnt, fmt.Sprintf("d%02d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 100; j++ {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("file-%03d", j)), []byte(fmt.Sprintf("%d/%d\n", i, j)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	big, err := os.Create(filepath.Join(mnt, "big"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4<<20)
	rand.Read(chunk)
	for n := 0; n < 256; n++ {
		chunk[0] = byte(n)
		if _, err := big.Write(chunk); err != nil {
			t.Fatalf("writing 1 GiB: %v", err)
		}
	}
	if err := big.Close(); err != nil {
		t.Fatal(err)
	}
	run(t, "umount", mnt)
	umounted = true
	exec.Command("losetup", "-d", dev).Run()
	fsck(t, path)
	out := run(t, "e2fsck", "-fn", path)
	if !regexp.MustCompile(`10112/\d+ files`).MatchString(out) {
		t.Errorf("e2fsck does not count 10 000 files + 100 dirs + 12: %s", out)
	}
}

// TestResize grows the filesystem with resize2fs past the point where it needs a new
// descriptor block, which must come from the resize inode's reserved blocks, keeping a file;
// then online through the kernel where the sandbox allows it.
func TestResize(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.Need(t, "resize2fs", "e2fsck", "losetup", "mount")
	dir := t.TempDir()
	path := format(t, dir, 256<<20, Options{})
	dev := loop(t, path)
	mnt := mount(t, dev)
	if err := os.WriteFile(filepath.Join(mnt, "keep"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "umount", mnt)
	run(t, "losetup", "-d", dev)
	// The mount stamped s_mtime; resize2fs refuses a filesystem mounted after its last check
	// (s_lastcheck < s_mtime: "Please run e2fsck -f first"), which happens whenever the clock
	// ticks a second between Format and the mount. Checking it first is what resize2fs asks
	// for, and a check that has to correct anything fails the test.
	run(t, "e2fsck", "-fy", path)
	before := dumpe2fs(t, path)
	if err := os.Truncate(path, 16<<30); err != nil { // 128 groups: two descriptor blocks
		t.Fatal(err)
	}
	run(t, "resize2fs", path)
	fsck(t, path)
	after := dumpe2fs(t, path)
	if after["Block count"] != "4194304" {
		t.Errorf("resize2fs: %s blocks, want 4194304", after["Block count"])
	}
	if before["Reserved GDT blocks"] == after["Reserved GDT blocks"] {
		t.Errorf("resize2fs did not use a reserved descriptor block (%s before and after)", after["Reserved GDT blocks"])
	}
	dev = loop(t, path)
	mnt = mount(t, dev)
	if b, err := os.ReadFile(filepath.Join(mnt, "keep")); err != nil || string(b) != "kept" {
		t.Errorf("file after resize: %q %v", b, err)
	}

	// Online growth needs CAP_SYS_RESOURCE, which some sandboxes drop even for root.
	if !hasCapSysResource() {
		t.Log("online resize not tried: no CAP_SYS_RESOURCE here")
		return
	}
	if err := os.Truncate(path, 32<<30); err != nil {
		t.Fatal(err)
	}
	run(t, "losetup", "-c", dev)
	run(t, "resize2fs", dev)
	run(t, "umount", mnt)
	fsck(t, path)
	if got := dumpe2fs(t, path)["Block count"]; got != "8388608" {
		t.Errorf("online resize: %s blocks, want 8388608", got)
	}
}

func hasCapSysResource() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			var caps uint64
			fmt.Sscanf(strings.TrimSpace(v), "%x", &caps)
			return caps&(1<<24) != 0
		}
	}
	return false
}

// TestReusedDevice formats over random data and over a used ext4 filesystem: what we do not
// write must not matter.
func TestReusedDevice(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.Need(t, "mkfs.ext4", "e2fsck", "losetup", "mount")
	dir := t.TempDir()
	const size = 64 << 20
	path := filepath.Join(dir, "old.img")
	junk := make([]byte, size)
	rand.Read(junk)
	if err := os.WriteFile(path, junk, 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(what string) {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := Format(f, size, Options{}); err != nil {
			t.Fatal(err)
		}
		f.Close()
		fsck(t, path)
		dev := loop(t, path)
		mnt := mount(t, dev)
		ents, _ := os.ReadDir(mnt)
		if len(ents) != 1 || ents[0].Name() != "lost+found" {
			t.Errorf("over %s: root holds %v", what, ents)
		}
		for i := 0; i < 200; i++ {
			if err := os.WriteFile(filepath.Join(mnt, fmt.Sprint(i)), bytes.Repeat([]byte{byte(i)}, 50<<10), 0o644); err != nil {
				t.Fatalf("over %s: %v", what, err)
			}
		}
		run(t, "umount", mnt)
		run(t, "losetup", "-d", dev)
		fsck(t, path)
	}
	check("random data")
	// Signatures of other filesystems and RAID where ext4 writes nothing must be gone, or
	// blkid sees two filesystems.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("_BHRfS_M"), 64<<10+64)                  // btrfs
	f.WriteAt([]byte{0xfc, 0x4e, 0x2b, 0xa9}, size-64<<10)    // MD RAID 0.90 at the end
	f.WriteAt([]byte{0xfc, 0x4e, 0x2b, 0xa9}, size-8<<10)     // MD RAID 1.0
	if err := Format(f, size-12<<10, Options{}); err != nil { // a partition not ending on a block
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command("wipefs", "-n", path).CombinedOutput(); err != nil || strings.Count(string(out), "\n") != 2 || !strings.Contains(string(out), "ext4") {
		t.Errorf("wipefs finds more than ext4 (%v):\n%s", err, out)
	}
	// An old ext4 with a busy journal (mounted with a journal-heavy workload).
	run(t, "mkfs.ext4", "-q", "-F", "-J", "size=4", path)
	dev := loop(t, path)
	mnt := mount(t, dev)
	for i := 0; i < 300; i++ {
		os.WriteFile(filepath.Join(mnt, fmt.Sprintf("old%d", i)), []byte("old"), 0o644)
	}
	run(t, "sync")
	run(t, "umount", mnt)
	run(t, "losetup", "-d", dev)
	check("a used ext4")
}

// TestSector4096 formats a loop device with 4096-byte logical sectors through the device.
func TestSector4096(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.Need(t, "losetup", "mount", "e2fsck")
	dir := t.TempDir()
	path := filepath.Join(dir, "4k.img")
	os.WriteFile(path, nil, 0o644)
	os.Truncate(path, 256<<20)
	dev := loop(t, path, "-b", "4096")
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	size, _ := f.Seek(0, io.SeekEnd)
	if err := Format(f, size, Options{SectorSize: 4096, Label: "4k"}); err != nil {
		t.Fatal(err)
	}
	f.Sync()
	f.Close()
	mnt := mount(t, dev)
	if err := os.WriteFile(filepath.Join(mnt, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "umount", mnt)
	fsck(t, dev)
}

// boundedWriter records writes and fails any outside [0, size) or not whole sectors.
type boundedWriter struct {
	size, sector, bytes int64
	t                   *testing.T
}

func (w *boundedWriter) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > w.size {
		w.t.Errorf("write [%d, %d) outside [0, %d)", off, off+int64(len(p)), w.size)
	}
	if off%w.sector != 0 || int64(len(p))%w.sector != 0 {
		w.t.Errorf("write [%d, +%d) not in whole %d-byte sectors", off, len(p), w.sector)
	}
	w.bytes += int64(len(p))
	return len(p), nil
}

// TestWritesBounded checks without any tool that every write stays inside the partition, in
// whole sectors, and that 128 GiB cost at most 8 MiB.
func TestWritesBounded(t *testing.T) {
	for _, size := range []int64{MinSize, 16 << 20, 1<<30 + 4096, 128 << 30, 2 << 40} {
		for _, ss := range []int{512, 4096} {
			w := &boundedWriter{size: size, sector: int64(ss), t: t}
			if err := Format(w, size, Options{SectorSize: ss}); err != nil {
				t.Fatalf("%d/%d: %v", size, ss, err)
			}
			if size == 128<<30 && w.bytes > 8<<20 {
				t.Errorf("128 GiB: wrote %d bytes, goal 8 MiB", w.bytes)
			}
		}
	}
}

func TestBadInput(t *testing.T) {
	w := &boundedWriter{size: 1 << 30, sector: 512, t: t}
	for _, tc := range []struct {
		size int64
		opts Options
		want string
	}{
		{1 << 20, Options{}, "too small"},
		{1<<30 + 512, Options{SectorSize: 4096}, "not a multiple of the 4096-byte sector"},
		{1 << 30, Options{SectorSize: 1024}, "sector size 1024"},
		{1 << 30, Options{Label: "seventeen-bytes!!"}, "longer than 16 bytes"},
	} {
		err := Format(w, tc.size, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Format(%d, %+v) = %v, want %q", tc.size, tc.opts, err, tc.want)
		}
	}
}

// TestDeferred: with DeferInodeTableZeroing the groups are left for the kernel's lazy init,
// like mkfs.ext4 -E lazy_itable_init=1; by default they are marked zeroed.
func TestDeferred(t *testing.T) {
	testutil.Need(t, "dumpe2fs")
	dir := t.TempDir()
	for _, defer_ := range []bool{false, true} {
		path := format(t, dir, 256<<20, Options{DeferInodeTableZeroing: defer_, Time: time.Unix(1700000000, 0)})
		out := run(t, "dumpe2fs", path)
		zeroed := strings.Count(out, "ITABLE_ZEROED")
		if (zeroed == 2) == defer_ || (zeroed == 0) != defer_ {
			t.Errorf("defer=%v: %d groups marked ITABLE_ZEROED of 2", defer_, zeroed)
		}
		fsck(t, path)
		os.Remove(path)
	}
}

// TestResizeLimit: a smaller reserve of descriptor blocks is laid out like mkfs.ext4 -E
// resize= lays it out, and growing past it still works (resize2fs makes room itself).
func TestResizeLimit(t *testing.T) {
	testutil.Need(t, "mkfs.ext4", "dumpe2fs", "e2fsck", "resize2fs")
	dir := t.TempDir()
	same := []string{"Filesystem features", "Block count", "Free blocks", "Reserved GDT blocks",
		"Inode count", "Free inodes", "Total journal blocks"}
	for _, c := range []struct{ size, limit int64 }{{1 << 30, 16 << 30}, {128 << 30, 2 << 40}} {
		ref := filepath.Join(dir, "ref.img")
		f, _ := os.Create(ref)
		f.Truncate(c.size)
		f.Close()
		run(t, "mkfs.ext4", "-q", "-F", "-L", "root", "-I", "256", "-O", "has_journal", "-m", "0",
			"-E", fmt.Sprintf("nodiscard,lazy_itable_init=1,lazy_journal_init=1,resize=%d", c.limit/4096), "-T", "default", ref)
		want := dumpe2fs(t, ref)
		os.Remove(ref)
		path := format(t, dir, c.size, Options{Label: "root", ResizeLimit: c.limit})
		fsck(t, path)
		got := dumpe2fs(t, path)
		for _, k := range same {
			if got[k] != want[k] {
				t.Errorf("%d GiB, limit %d GiB: %s = %q, mkfs.ext4 -E resize= has %q", c.size>>30, c.limit>>30, k, got[k], want[k])
			}
		}
		if c.size == 1<<30 {
			// 1 GiB has one descriptor block and reserves one more (up to 16 GiB); 32 GiB
			// needs four.
			if got["Reserved GDT blocks"] != "1" {
				t.Errorf("reserved GDT blocks %q, want 1", got["Reserved GDT blocks"])
			}
			if err := os.Truncate(path, 32<<30); err != nil {
				t.Fatal(err)
			}
			run(t, "resize2fs", path)
			fsck(t, path)
			if n := dumpe2fs(t, path)["Block count"]; n != "8388608" {
				t.Errorf("after growing past the limit: %s blocks, want 8388608", n)
			}
		}
		os.Remove(path)
	}
	for _, limit := range []int64{1<<30 - 1, 4 << 30, MaxSize + 1} {
		if err := Format(discard{}, 1<<30, Options{ResizeLimit: limit}); err == nil {
			t.Errorf("resize limit %d for 1 GiB: no error", limit)
		}
	}
}
