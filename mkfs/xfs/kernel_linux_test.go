package xfs

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/piboot/piboot/internal/testutil"
	"github.com/piboot/piboot/internal/uuid"
	"golang.org/x/sys/unix"
)

func needKernelXFS(t *testing.T) {
	t.Helper()
	testutil.NeedRoot(t)
	testutil.Need(t, "losetup", "mount", "umount", "xfs_repair", "mkfs.xfs", "xfs_io")
	fs, _ := os.ReadFile("/proc/filesystems")
	if !bytes.Contains(fs, []byte("\txfs\n")) {
		exec.Command("modprobe", "xfs").Run()
		if fs, _ = os.ReadFile("/proc/filesystems"); !bytes.Contains(fs, []byte("\txfs\n")) {
			testutil.Missing(t, "the xfs module in the running kernel")
		}
	}
}

// loop attaches path to a loop device, detached when the test ends.
func loop(t *testing.T, path string, sectSize int, offset int64) string {
	t.Helper()
	args := []string{"-f", "--show", "--sector-size", fmt.Sprint(sectSize)}
	if offset != 0 {
		args = append(args, "--offset", fmt.Sprint(offset))
	}
	out, err := exec.Command("losetup", append(args, path)...).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup %s: %v\n%s", path, err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { testutil.DetachLoop(dev, path) })
	return dev
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// mountErr mounts dev read-write and returns the mount point, or the error with the kernel's
// complaint from the log.
func mountErr(t *testing.T, dev string) (string, error) {
	t.Helper()
	mnt := t.TempDir()
	out, err := exec.Command("mount", "-t", "xfs", dev, mnt).CombinedOutput()
	if err != nil {
		dmesg, _ := exec.Command("dmesg").Output()
		lines := strings.Split(strings.TrimSpace(string(dmesg)), "\n")
		return "", fmt.Errorf("mount %s: %v: %s\nkernel: %s", dev, err, out, strings.Join(lines[max(0, len(lines)-6):], "\n"))
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	return mnt, nil
}

// exercise checks dev with xfs_repair -n, mounts it, writes files, clones one with FICLONE, unmounts and checks with
// xfs_repair -n: the filesystem must be fully usable, not merely pass an offline check.
func exercise(t *testing.T, dev string) {
	t.Helper()
	run(t, "xfs_repair", "-n", dev)
	mnt, err := mountErr(t, dev)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.XFS_SUPER_MAGIC {
		t.Fatalf("%s mounted with filesystem magic %#x, not XFS", dev, st.Type)
	}
	data := make([]byte, 3<<20+123)
	rand.Read(data)
	orig := filepath.Join(mnt, "dir", "orig")
	if err := os.MkdirAll(filepath.Dir(orig), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(orig, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ { // more than one inode chunk
		if err := os.WriteFile(filepath.Join(mnt, "dir", fmt.Sprintf("f%03d", i)), []byte{byte(i)}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src, err := os.Open(orig)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.Create(filepath.Join(mnt, "clone"))
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())); err != nil {
		t.Fatalf("FICLONE on %s: %v (reflink must work)", dev, err)
	}
	src.Close()
	dst.Close()
	got, err := os.ReadFile(filepath.Join(mnt, "clone"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("clone reads back wrong (%v)", err)
	}
	run(t, "umount", mnt)
	run(t, "xfs_repair", "-n", dev)
	// A second mount replays nothing and sees the files.
	mnt, err = mountErr(t, dev)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "clone")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("clone lost after remount (%v)", err)
	}
	run(t, "umount", mnt)
}

// TestKernelMount formats the sizes the issue names and uses them through the kernel. Some
// are formatted through the loop device (sector size probed, every log byte read, Sync), the
// largest through the image file (holes skipped), which is quicker and as thorough otherwise.
func TestKernelMount(t *testing.T) {
	needKernelXFS(t)
	dir := t.TempDir()
	for _, c := range []struct {
		name      string
		size      int64
		ss        int
		viaDevice bool
	}{
		{"512MiB", 512 << 20, 512, true},
		{"1GiB", 1 << 30, 512, false},
		{"29GiB", 29 << 30, 512, true},
		{"128GiB", 128 << 30, 512, false},
		{"1TiB", 1 << 40, 512, false},
		{"prime-sectors", 1000000007 * 512, 512, false},
		{"4096-sectors", 29<<30 + 4096*7, 4096, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := sparse(t, dir, c.name, c.size)
			defer os.Remove(img)
			dev := loop(t, img, c.ss, 0)
			target, opts := img, Options{Label: "root", UUID: uuid.New()}
			if c.viaDevice {
				target = dev // the sector size must come from the device
			} else {
				opts.SectorSize = c.ss
			}
			f, err := os.OpenFile(target, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			cw := &countingWriter{f: f}
			opts.Reader = f
			err = Format(cw, c.size/int64(c.ss)*int64(c.ss), opts)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if cw.n > 1<<20 {
				t.Errorf("wrote %d bytes on a zeroed device, want at most 1 MiB", cw.n)
			}
			sb := make([]byte, 512)
			rf, _ := os.Open(img)
			rf.ReadAt(sb, 0)
			rf.Close()
			if ss := be.Uint16(sb[102:]); int(ss) != c.ss {
				t.Errorf("superblock sector size %d, want the device's %d", ss, c.ss)
			}
			exercise(t, dev)
		})
	}
}

// fillRandom writes random bytes over [off, off+n) of path.
func fillRandom(t *testing.T, path string, off, n int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for pos := off; pos < off+n; pos += int64(len(buf)) {
		m := min(int64(len(buf)), off+n-pos)
		rand.Read(buf[:m])
		if _, err := f.WriteAt(buf[:m], pos); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOverRandomData formats a device whose log, headers and ends hold random bytes: once
// writing the zeros itself (the writer hides the device), once letting the kernel zero
// (BLKZEROOUT on the block device).
func TestOverRandomData(t *testing.T) {
	needKernelXFS(t)
	for _, offload := range []bool{false, true} {
		t.Run(fmt.Sprint("offload=", offload), func(t *testing.T) {
			const size = 1 << 30
			img := sparse(t, t.TempDir(), "random", size)
			g, _ := planGeometry(size, 512)
			for ag := uint32(0); ag < g.agCount; ag++ {
				fillRandom(t, img, g.offset(ag, 0), 1<<20)
			}
			logOff := g.offset(g.logAG, g.prealloc)
			fillRandom(t, img, logOff-1<<20, int64(g.logBlocks)<<blockLog+2<<20)
			fillRandom(t, img, size-1<<20, 1<<20)
			dev := loop(t, img, 512, 0)
			f, err := os.OpenFile(dev, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			var w io.WriterAt = f
			cw := &countingWriter{f: f}
			if !offload {
				w = cw
			}
			var st Stats
			err = Format(w, size, Options{Label: "root", Reader: f, Stats: &st})
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			// The whole log, both 128 KiB ends, the metadata — and nothing else.
			logLen := int64(g.logBlocks) << blockLog
			if st.Zeroed < logLen-4096 || st.Zeroed > logLen+2*wipeLen {
				t.Errorf("zeroed %d bytes, want the %d-byte log and at most the two ends", st.Zeroed, logLen)
			}
			want := logLen + 2*wipeLen + 200<<10
			if offload {
				want = 2*wipeLen + 200<<10 // metadata and the ends (too small to offload)
			} else if cw.n != st.Written {
				t.Errorf("Stats.Written %d, but %d bytes reached the writer", st.Written, cw.n)
			}
			if st.Written > want {
				t.Errorf("wrote %d bytes, want at most %d", st.Written, want)
			}
			if st.Read > logLen/2 {
				t.Errorf("read %d bytes: a log full of old data should be zeroed without reading it all", st.Read)
			}
			t.Logf("read %d, wrote %d, zeroed %d", st.Read, st.Written, st.Zeroed)
			exercise(t, dev)
		})
	}
}

// oldXFS makes an XFS with mkfs.xfs, fills it and shuts it down without a clean unmount, so
// its log holds records that need recovery.
func oldXFS(t *testing.T, img string, mkfsArgs ...string) {
	t.Helper()
	run(t, "mkfs.xfs", append(append([]string{"-f", "-q"}, mkfsArgs...), img)...)
	dev := loop(t, img, 512, 0)
	mnt, err := mountErr(t, dev)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		os.WriteFile(filepath.Join(mnt, fmt.Sprintf("old%d", i)), bytes.Repeat([]byte{byte(i)}, 10000), 0o644)
	}
	run(t, "xfs_io", "-x", "-c", "shutdown -f", mnt) // log flushed, not cleaned
	run(t, "umount", mnt)
	run(t, "losetup", "-d", dev)
}

// TestOverOldXFS formats over an XFS of the same geometry whose log is dirty. The control
// writes the same metadata without zeroing the log and must fail to mount: the log handling
// is what makes the difference.
func TestOverOldXFS(t *testing.T) {
	needKernelXFS(t)
	const size = 1 << 30
	dir := t.TempDir()

	control := sparse(t, dir, "control", size)
	oldXFS(t, control)
	g, _ := planGeometry(size, 512)
	l := buildLayout(&g, params{uuid: uuid.New(), now: time.Now()})
	f, _ := os.OpenFile(control, os.O_RDWR, 0)
	d := &device{w: f, size: size, gran: 512}
	if err := d.write(append(append([]piece{l.logRec}, l.meta...), l.primary)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := mountErr(t, loop(t, control, 512, 0)); err == nil {
		t.Fatal("control: metadata over a dirty old log mounted; the test cannot tell whether the log is cleared")
	} else {
		t.Logf("control fails as expected: %v", err)
	}

	img := sparse(t, dir, "old", size)
	oldXFS(t, img)
	dirty := nonZero(t, img, l.logOff, l.logLen)
	n := formatFile(t, img, Options{Label: "root"})
	// At least the dirty log sectors (less the new record), at most those plus the metadata
	// and the two 128 KiB ends.
	if n < dirty-4096 || n > dirty+2*wipeLen+256<<10 {
		t.Errorf("wrote %d bytes over an old XFS whose log has %d non-zero bytes", n, dirty)
	}
	t.Logf("wrote %d bytes over an old XFS with %d non-zero log bytes", n, dirty)
	exercise(t, loop(t, img, 512, 0))
}

// nonZero counts the bytes in non-zero 512-byte sectors of [off, off+n) of path.
func nonZero(t *testing.T, path string, off, n int64) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatal(err)
	}
	var c int64
	for i := 0; i < len(buf); i += 512 {
		if !bytes.Equal(buf[i:i+512], zeroChunk()[:512]) {
			c += 512
		}
	}
	return c
}

// TestOverOldXFSOtherGeometry formats over an XFS with 7 AGs: its secondary superblocks must
// be gone afterwards (they would mislead xfs_repair), as mkfs.xfs ensures.
func TestOverOldXFSOtherGeometry(t *testing.T) {
	needKernelXFS(t)
	const size = 1 << 30
	img := sparse(t, t.TempDir(), "old7", size)
	oldXFS(t, img, "-d", "agcount=7")
	formatFile(t, img, Options{Label: "root"})
	f, _ := os.Open(img)
	defer f.Close()
	oldAG := int64(size / 4096 / 7 * 4096) // mkfs.xfs rounds the AG size up below
	sb := make([]byte, 4)
	found := 0
	for ag := int64(1); ag < 7; ag++ {
		for _, off := range []int64{ag * oldAG, ag * (oldAG + 4096)} {
			f.ReadAt(sb, off)
			if string(sb) == "XFSB" && off%(1<<28) != 0 {
				found++
				t.Errorf("old secondary superblock left at %d", off)
			}
		}
	}
	exercise(t, loop(t, img, 512, 0))
}

// TestInsideImage formats a partition in the middle of an image through io.OffsetWriter and
// a SectionReader, as repart does, and checks that nothing outside it changed.
func TestInsideImage(t *testing.T) {
	needKernelXFS(t)
	const start, size = 3 << 20, 600 << 20
	img := sparse(t, t.TempDir(), "disk", start+size+(5<<20))
	fillRandom(t, img, 0, start)
	fillRandom(t, img, start+size, 5<<20)
	outside := func() []byte {
		f, _ := os.Open(img)
		defer f.Close()
		b := make([]byte, start+5<<20)
		f.ReadAt(b[:start], 0)
		f.ReadAt(b[start:], start+size)
		return b
	}
	before := outside()
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	err := Format(io.NewOffsetWriter(f, start), size, Options{Label: "root", Reader: io.NewSectionReader(f, start, size)})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, outside()) {
		t.Fatal("Format wrote outside its partition")
	}
	exercise(t, loop(t, img, 512, start))
}
