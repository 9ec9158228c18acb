package squashfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/piboot/piboot/internal/testutil"
)

// scratch returns a fresh directory under /tmp/squashfs-test (not t.TempDir's default
// location only because we want user xattrs, which tmpfs may refuse).
func scratch(t testing.TB) string {
	t.Helper()
	if err := os.MkdirAll("/tmp/squashfs-test", 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := os.MkdirTemp("/tmp/squashfs-test", strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// writeImage writes t into a new file and returns its path and sha256.
func writeImage(t testing.TB, tree *Tree, opts Options) (string, string) {
	t.Helper()
	p := filepath.Join(scratch(t), "image.sqfs")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := Write(f, tree, opts)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if n%4096 != 0 {
		t.Fatalf("image size %d is not padded to 4 KiB", n)
	}
	if fi, _ := f.Stat(); fi.Size() != n {
		t.Fatalf("Write returned %d but wrote up to %d", n, fi.Size())
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return p, hex.EncodeToString(sum[:])
}

func dirTree(t testing.TB, dir string, xattrs bool) *Tree {
	t.Helper()
	tree := NewTree()
	if err := tree.AddDir(dir, "", DirOptions{Xattrs: xattrs}); err != nil {
		t.Fatal(err)
	}
	return tree
}

// listing is the metadata of every file below dir as find prints it (the format
// plus type and link count), with directory sizes left out since they are file-system
// specific, followed by device numbers and xattrs that find cannot print.
func listing(t testing.TB, dir string, xattrs bool) string {
	t.Helper()
	out := run(t, "find", dir, "-printf", `%P|%y|%m|%U|%G|%s|%l|%T@|%n\n`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for k, l := range lines {
		f := strings.Split(l, "|")
		if f[1] == "d" {
			f[5] = "-"
		}
		p := filepath.Join(dir, f[0])
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		if f[1] == "b" || f[1] == "c" {
			f = append(f, fmt.Sprintf("rdev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)))
		}
		if xattrs {
			x, err := readXattrs(p)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for n, v := range x {
				names = append(names, n+"="+hex.EncodeToString(v))
			}
			sort.Strings(names)
			f = append(f, names...)
		}
		lines[k] = strings.Join(f, "|")
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// sameTree checks contents with diff -r and metadata with listing.
func sameTree(t testing.TB, want, got string, xattrs bool) {
	t.Helper()
	out, err := exec.Command("diff", "-r", "--no-dereference", want, got).CombinedOutput()
	if err != nil {
		// diff cannot compare special files; it must only say that both are the same kind.
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if m := specialRe.FindStringSubmatch(l); m != nil && m[1] == m[2] {
				continue
			}
			t.Fatalf("diff -r %s %s:\n%s", want, got, out)
		}
	}
	lw, lg := listing(t, want, xattrs), listing(t, got, xattrs)
	if lw != lg {
		t.Fatalf("metadata differs:\n%s", lineDiff(lw, lg))
	}
}

var specialRe = regexp.MustCompile(`^File .+ is a (.+) while file .+ is a (.+)$`)

func lineDiff(a, b string) string {
	as, bs := strings.Split(a, "\n"), strings.Split(b, "\n")
	in := func(l []string) map[string]bool {
		m := map[string]bool{}
		for _, x := range l {
			m[x] = true
		}
		return m
	}
	ma, mb := in(as), in(bs)
	var out bytes.Buffer
	n := 0
	for _, x := range as {
		if !mb[x] && n < 20 {
			fmt.Fprintf(&out, "- %s\n", x)
			n++
		}
	}
	for _, x := range bs {
		if !ma[x] && n < 40 {
			fmt.Fprintf(&out, "+ %s\n", x)
			n++
		}
	}
	return out.String()
}

func unsquash(t testing.TB, img string) string {
	t.Helper()
	testutil.Need(t, "unsquashfs")
	d := filepath.Join(scratch(t), "out")
	run(t, "unsquashfs", "-q", "-n", "-d", d, img)
	return d
}

// kernelMount mounts img read-only through a loop device and returns the mount point.
func kernelMount(t testing.TB, img string) string {
	t.Helper()
	testutil.NeedRoot(t)
	testutil.Need(t, "losetup", "mount", "umount")
	// losetup -f can race with other users of loop devices: retry a few times.
	var dev string
	for try := 0; ; try++ {
		out, err := exec.Command("losetup", "-f", "--show", "-r", img).CombinedOutput()
		if err == nil {
			dev = strings.TrimSpace(string(out))
			break
		}
		if try == 4 {
			t.Fatalf("losetup -f --show -r %s: %v\n%s", img, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	mnt := filepath.Join(scratch(t), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-t", "squashfs", "-o", "ro", dev, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	return mnt
}

// wholeSeconds sets every mtime below dir to whole seconds, since squashfs stores seconds.
func wholeSeconds(t testing.TB, dir string, when int64) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// Vary by path so that a mix-up of inodes shows.
		sec := when + int64(len(p))
		ts := []unix.Timespec{{Sec: sec}, {Sec: sec}}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil {
		t.Fatal(err)
	}
}
