package sysupdate

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/piboot/piboot/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestCleanTarName(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"./", ".", ""}, {".", ".", ""}, {"", ".", ""}, {"./usr/bin/", "usr/bin", ""}, {"/etc/passwd", "etc/passwd", ""},
		{"a//b/./c", "a/b/c", ""}, {"../x", "", "leaves the tree"}, {"a/../../x", "", "leaves the tree"}, {"a/..", "", "leaves the tree"},
	} {
		got, err := cleanTarName(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("cleanTarName(%q) = %q, %v; want error %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("cleanTarName(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestCompressionBySuffixAndMagic(t *testing.T) {
	zst, xz, gz, bz := []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0}, []byte{0xfd, '7', 'z', 'X', 'Z', 0}, []byte{0x1f, 0x8b, 8, 0, 0, 0}, []byte("BZh91AY")
	plain := []byte("usr/bin/\x00\x00\x00")
	for _, c := range []struct {
		name    string
		content []byte
		err     string
	}{
		{"a_1.tar.zst", zst, ""}, {"a_1.tzst", zst, ""}, {"a_1.tar.xz", xz, ""}, {"a_1.txz", xz, ""},
		{"a_1.tar.gz", gz, ""}, {"a_1.tgz", gz, ""}, {"a_1.tar.bz2", bz, ""}, {"a_1.tar", plain, ""},
		{"a_1.archive", xz, ""}, // the name says nothing: the magic decides
		{"a_1.tar.zst", xz, "a_1.tar.zst: its name says zstd-compressed tar, its content is xz-compressed"},
		{"a_1.tar.gz", plain, "its name says gzip-compressed tar, its content is uncompressed"},
		{"a_1.tar", gz, "its name says uncompressed tar, its content is gzip-compressed"},
	} {
		err := checkArchiveName(c.name, bufioReader(c.content))
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s with %x: %v, want %q", c.name, c.content[:4], err, c.err)
		}
	}
}

// TestParseTreeTransfers: the tree transfers a sysupdate user may have load with their
// types, symlink and flags.
func TestParseTreeTransfers(t *testing.T) {
	for _, c := range []struct{ src, path, pattern string }{
		{"url-tar", "https://example.com/app/", "app_@v.tar.zst"},
		{"tar", "/var/lib/app-archives", "app_@v.tar.xz"},
		{"directory", "/var/lib/app-trees", "app_@v"},
		{"subvolume", "/var/lib/app-subvols", "app_@v"},
	} {
		body := fmt.Sprintf("[Transfer]\nVerify=no\n[Source]\nType=%s\nPath=%s\nMatchPattern=%s\n[Target]\nType=directory\nPath=/opt/app\nMatchPattern=app_@v\nCurrentSymlink=current\nReadOnly=yes\nRemoveTemporary=yes\nInstancesMax=3\n", c.src, c.path, c.pattern)
		tr, err := ParseTransferFile(writeTransfer(t, body), nil)
		if err != nil {
			t.Errorf("%s: %v", c.src, err)
			continue
		}
		if tr.Source.Type != c.src || tr.Target.Type != TypeDirectory || tr.Target.CurrentSymlink != "current" ||
			tr.Target.ReadOnly == nil || !*tr.Target.ReadOnly || tr.InstancesMax != 3 || listed(c.src) == (c.src == "url-tar") {
			t.Errorf("%s: parsed %+v", c.src, tr)
		}
	}
}

// makeTree writes a file tree with what an OS tree has: modes (setuid, read-only
// directories), symlinks, a hard link, a FIFO, an empty directory, an xattr, old mtimes.
func makeTree(t *testing.T, dir, version string) {
	t.Helper()
	mk := func(p string, mode fs.FileMode, body string) {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chmod(full, mode)
	}
	mk("bin/app", 0o755, "#!/bin/sh\necho app "+version+"\n")
	mk("bin/helper", 0o755|fs.ModeSetuid, "helper "+version)
	mk("share/doc/README", 0o644, strings.Repeat("read me "+version+"\n", 5000))
	mk("etc/version", 0o444, version+"\n")
	os.Symlink("../bin/app", filepath.Join(dir, "share/app-link"))
	os.Symlink("/usr/bin/true", filepath.Join(dir, "bin/abs-link"))
	if err := os.Link(filepath.Join(dir, "bin/app"), filepath.Join(dir, "bin/app-hardlink")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "run-fifo"), 0o620); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "var/empty"), 0o755)
	if err := unix.Setxattr(filepath.Join(dir, "bin/helper"), "trusted.piboot", []byte("cap "+version), 0); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if d.Type()&fs.ModeSymlink == 0 {
			os.Chtimes(p, old, old)
		}
		return nil
	})
	os.Chmod(filepath.Join(dir, "share/doc"), 0o555)
	os.Chtimes(filepath.Join(dir, "share/doc"), old, old)
}

// treeListing describes every entry of a tree: type, mode, owner, size, content hash,
// link target, mtime of non-symlinks, xattrs, and which names share an inode.
func treeListing(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	inodes := map[uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %v %d:%d", rel, info.Mode(), st.Uid, st.Gid)
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			line += " -> " + l
		case info.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %d %x", len(b), sumBytes(b))
			if first, ok := inodes[st.Ino]; ok {
				line += " =" + first
			} else {
				inodes[st.Ino] = rel
			}
		}
		if info.Mode()&fs.ModeSymlink == 0 && rel != "." {
			line += " " + info.ModTime().UTC().Format(time.RFC3339)
		}
		if x, _ := listXattrs(p); len(x) > 0 {
			line += fmt.Sprintf(" %v", x)
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// treeFixture: a root with /opt/app as directory target, an update directory served on
// 127.0.0.1 and signed, and source trees made by makeTree.
type treeFixture struct {
	t                     *testing.T
	dir, root, upd, trees string
	srv                   *httptest.Server
	signer                *Signer
	keyring               string
	steps                 []string
	crashAt               int
}

func newTreeFixture(t *testing.T) *treeFixture {
	testutil.Need(t, "tar", "zstd", "xz", "gzip")
	f := &treeFixture{t: t, dir: fastTempDir(t)}
	f.root, f.upd, f.trees = filepath.Join(f.dir, "root"), filepath.Join(f.dir, "update"), filepath.Join(f.dir, "trees")
	for _, d := range []string{f.root, f.upd, f.trees} {
		os.MkdirAll(d, 0o755)
	}
	f.srv = httptest.NewServer(http.FileServer(http.Dir(f.upd)))
	t.Cleanup(f.srv.Close)
	priv, pub, err := GenerateKey("piboot test", "", "t@example.com")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(f.dir, "key.asc"), priv, 0o600)
	if f.signer, err = LoadSigner(filepath.Join(f.dir, "key.asc")); err != nil {
		t.Fatal(err)
	}
	f.keyring = filepath.Join(f.dir, "pubring.pgp")
	os.WriteFile(f.keyring, pub, 0o644)
	t.Cleanup(func() {
		// ReadOnly=yes made the installed trees immutable; t's cleanup must remove them.
		ents, _ := os.ReadDir(filepath.Join(f.root, "opt/app"))
		for _, e := range ents {
			setImmutable(filepath.Join(f.root, "opt/app", e.Name()), false)
		}
	})
	return f
}

// tree makes version v's source tree under trees/app_<v>.
func (f *treeFixture) tree(v string) string {
	d := filepath.Join(f.trees, "app_"+v)
	if _, err := os.Stat(d); err != nil {
		makeTree(f.t, d, v)
	}
	return d
}

// publishTar archives version v's tree with GNU tar (xattrs included), compresses it with
// the tool for its suffix and re-signs the update directory.
func (f *treeFixture) publishTar(v, suffix string) string {
	src := f.tree(v)
	name := "app_" + v + suffix
	out := filepath.Join(f.upd, name)
	cmd := fmt.Sprintf("tar --xattrs --xattrs-include='*' --numeric-owner -C %q -cf - . | ", src)
	switch suffix {
	case ".tar.zst":
		cmd += "zstd -q -c"
	case ".tar.xz":
		cmd += "xz -c"
	case ".tar.gz":
		cmd += "gzip -c"
	default:
		cmd += "cat"
	}
	run(f.t, "sh", "-c", cmd+" >"+out)
	if err := Publish(f.upd, f.signer); err != nil {
		f.t.Fatal(err)
	}
	return src
}

func (f *treeFixture) updater(source string, extra string) *Updater {
	f.t.Helper()
	defs := filepath.Join(f.dir, "defs")
	os.RemoveAll(defs)
	os.MkdirAll(defs, 0o755)
	os.WriteFile(filepath.Join(defs, "50-app.transfer"), []byte(source+`
[Target]
Type=directory
Path=/opt/app
MatchPattern=app_@v
CurrentSymlink=current
ReadOnly=yes
InstancesMax=2
`+extra), 0o644)
	ts, err := Load([]string{defs}, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	u := &Updater{Transfers: ts, Root: f.root, Keyring: f.keyring}
	u.step = func(what string) error {
		f.steps = append(f.steps, what)
		if f.crashAt > 0 && len(f.steps) == f.crashAt {
			return errCrash
		}
		return nil
	}
	return u
}

func (f *treeFixture) urlTar() string {
	return "[Source]\nType=url-tar\nPath=" + f.srv.URL + "/\nMatchPattern=app_@v.tar.zst app_@v.tar.xz app_@v.tar.gz app_@v.tar\n"
}

// installed lists /opt/app.
func (f *treeFixture) installed() string {
	ents, _ := os.ReadDir(filepath.Join(f.root, "opt/app"))
	var n []string
	for _, e := range ents {
		n = append(n, e.Name())
	}
	return strings.Join(n, " ")
}

func (f *treeFixture) checkTree(v, src string) {
	f.t.Helper()
	got := filepath.Join(f.root, "opt/app/app_"+v)
	if a, b := treeListing(f.t, src), treeListing(f.t, got); a != b {
		f.t.Fatalf("%s differs from its source:\nsource:\n%s\ninstalled:\n%s", got, a, b)
	}
}

// TestTreeUpdateURLTar: url-tar over HTTP on 127.0.0.1 into a directory target, through
// .tar.zst, .tar.xz, .tar.gz: the tree arrives whole (modes, owners, links, FIFO, xattrs,
// times), is made immutable (ReadOnly=yes), "current" follows it, InstancesMax=2 vacuums
// the oldest; a tampered archive is refused and leaves nothing that looks installed; a
// power cut before the final rename leaves the old versions, and the next run completes.
func TestTreeUpdateURLTar(t *testing.T) {
	f := newTreeFixture(t)
	ctx := context.Background()
	src1 := f.publishTar("1.0", ".tar.zst")
	if got, err := f.updater(f.urlTar(), "").Update(ctx, ""); err != nil || got != "1.0" {
		t.Fatalf("Update = %q, %v", got, err)
	}
	f.checkTree("1.0", src1)
	if got := f.installed(); got != "app_1.0 current" {
		t.Fatalf("/opt/app holds %s", got)
	}
	if l, _ := os.Readlink(filepath.Join(f.root, "opt/app/current")); l != "app_1.0" {
		t.Fatalf("current -> %q", l)
	}
	if out := run(t, "lsattr", "-d", filepath.Join(f.root, "opt/app/app_1.0")); !strings.Contains(strings.Fields(out)[0], "i") {
		t.Fatalf("ReadOnly=yes: lsattr says %s", out)
	}
	if err := os.Mkdir(filepath.Join(f.root, "opt/app/app_1.0/new"), 0o755); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("mkdir in an immutable version: %v", err)
	}

	src2 := f.publishTar("2.0", ".tar.xz")
	if got, err := f.updater(f.urlTar(), "").Update(ctx, ""); err != nil || got != "2.0" {
		t.Fatalf("Update 2.0 = %q, %v", got, err)
	}
	f.checkTree("2.0", src2)
	f.checkTree("1.0", src1)

	// A tampered archive (listed, signed, then changed): refused by its hash; nothing
	// that looks like a version appears, 1.0 and 2.0 stay.
	f.publishTar("3.0", ".tar.gz")
	arch := filepath.Join(f.upd, "app_3.0.tar.gz")
	b, _ := os.ReadFile(arch)
	b[len(b)/2] ^= 0xff
	os.WriteFile(arch, b, 0o644)
	_, err := f.updater(f.urlTar(), "").Update(ctx, "")
	if !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("tampered archive: %v", err)
	}
	t.Logf("tampered archive refused: %v", err)
	// InstancesMax=2: 1.0 went to make room before the download; 2.0 (newest) stays.
	if got := f.installed(); got != ".sysupdate.partial.app_3.0 app_2.0 current" {
		t.Fatalf("after the refused 3.0: /opt/app holds %s", got)
	}
	f.checkTree("2.0", src2)
	if l, _ := os.Readlink(filepath.Join(f.root, "opt/app/current")); l != "app_2.0" {
		t.Fatalf("current -> %q", l)
	}

	// Republished correctly (plain .tar this time); a power cut just before the final
	// rename: the pending tree is not a version; the next run removes it and completes.
	os.Remove(arch)
	src3 := f.publishTar("3.0", ".tar")
	u := f.updater(f.urlTar(), "")
	f.steps = nil
	if _, err := u.Update(ctx, ""); err != nil {
		t.Fatal(err)
	}
	at := -1
	for i, s := range f.steps {
		if strings.HasPrefix(s, "rename to ") && strings.HasSuffix(s, "/app_3.0") {
			at = i + 1
		}
	}
	if at < 0 {
		t.Fatalf("no final rename among %q", f.steps)
	}
	// Replay from 2.0 with the cut at that step.
	setImmutable(filepath.Join(f.root, "opt/app/app_3.0"), false)
	if err := removeTree(filepath.Join(f.root, "opt/app"), "app_3.0"); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(f.root, "opt/app/app_1.0"), 0o755) // an older version for vacuum to take
	pointSymlink(filepath.Join(f.root, "opt/app"), "current", "app_2.0")
	f.steps, f.crashAt = nil, at
	if _, err := f.updater(f.urlTar(), "").Update(ctx, ""); !errors.Is(err, errCrash) {
		t.Fatalf("cut update: %v", err)
	}
	if got := f.installed(); got != ".sysupdate.pending.app_3.0 app_2.0 current" {
		t.Fatalf("after the cut: /opt/app holds %s", got)
	}
	f.crashAt = 0
	if got, err := f.updater(f.urlTar(), "").Update(ctx, ""); err != nil || got != "3.0" {
		t.Fatalf("update after the cut = %q, %v", got, err)
	}
	if got := f.installed(); got != "app_2.0 app_3.0 current" {
		t.Fatalf("after completing: /opt/app holds %s", got)
	}
	f.checkTree("3.0", src3)
}

// TestTreeUpdateLocalSources: tar and directory sources are listed from a local directory
// (no manifest, as in systemd); subvolume sources read like directories.
func TestTreeUpdateLocalSources(t *testing.T) {
	f := newTreeFixture(t)
	ctx := context.Background()
	archives := filepath.Join(f.root, "srv/archives")
	os.MkdirAll(archives, 0o755)
	src1 := f.tree("1.0")
	run(t, "sh", "-c", fmt.Sprintf("tar --xattrs --xattrs-include='*' -C %q -czf %q .", src1, filepath.Join(archives, "app_1.0.tar.gz")))
	os.WriteFile(filepath.Join(archives, "app_0.9.tar.gz.sig"), []byte("not an archive"), 0o644)
	u := f.updater("[Source]\nType=tar\nPath=/srv/archives\nMatchPattern=app_@v.tar.gz\n", "")
	if got, err := u.Update(ctx, ""); err != nil || got != "1.0" {
		t.Fatalf("tar source: Update = %q, %v", got, err)
	}
	f.checkTree("1.0", src1)

	trees := filepath.Join(f.root, "srv/trees")
	os.MkdirAll(trees, 0o755)
	src2 := filepath.Join(trees, "app_2.0")
	makeTree(t, src2, "2.0")
	for _, typ := range []string{"directory", "subvolume"} {
		u = f.updater("[Source]\nType="+typ+"\nPath=/srv/trees\nMatchPattern=app_@v\n", "")
		list, err := u.List(mustAvailable(t, u))
		if err != nil || len(list) != 2 || list[0].Version != "2.0" || !list[0].Available || !list[1].Installed {
			t.Fatalf("%s source: List = %+v, %v", typ, list, err)
		}
	}
	if got, err := u.Update(ctx, ""); err != nil || got != "2.0" {
		t.Fatalf("directory source: Update = %q, %v", got, err)
	}
	f.checkTree("2.0", src2)
	f.checkTree("1.0", src1)
	if l, _ := os.Readlink(filepath.Join(f.root, "opt/app/current")); l != "app_2.0" {
		t.Fatalf("current -> %q", l)
	}

	// A .tar.zst that is really gzip: refused by name before anything is unpacked.
	src3 := f.tree("3.0")
	run(t, "sh", "-c", fmt.Sprintf("tar -C %q -czf %q .", src3, filepath.Join(archives, "app_3.0.tar.zst")))
	u = f.updater("[Source]\nType=tar\nPath=/srv/archives\nMatchPattern=app_@v.tar.zst app_@v.tar.gz\n", "")
	if _, err := u.Update(ctx, ""); err == nil || !strings.Contains(err.Error(), "app_3.0.tar.zst: its name says zstd-compressed tar, its content is gzip-compressed") {
		t.Fatalf("misnamed archive: %v", err)
	}
}

func mustAvailable(t *testing.T, u *Updater) *Available {
	t.Helper()
	av, err := u.FetchAvailable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return av
}

// TestExtractTarStaysInside: members that climb out ("../"), absolute names, and writes
// through a symlink the archive planted all stay below the target (or are refused).
func TestExtractTarStaysInside(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	os.MkdirAll(outside, 0o755)
	mkTar := func(members ...tar.Header) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range members {
			h := h
			body := "x"
			if h.Typeflag == tar.TypeReg {
				h.Size = int64(len(body))
			}
			h.Mode |= 0o644
			tw.WriteHeader(&h)
			if h.Typeflag == tar.TypeReg {
				tw.Write([]byte(body))
			}
		}
		tw.Close()
		return b.Bytes()
	}
	for i, c := range []struct {
		members []tar.Header
		err     string
	}{
		{[]tar.Header{{Name: "../outside/escaped", Typeflag: tar.TypeReg}}, "leaves the tree"},
		{[]tar.Header{{Name: "link", Typeflag: tar.TypeSymlink, Linkname: outside}, {Name: "link/escaped", Typeflag: tar.TypeReg}}, "tar member link/escaped"},
		{[]tar.Header{{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "../outside"}, {Name: "link/escaped", Typeflag: tar.TypeReg}}, "tar member link/escaped"},
		{[]tar.Header{{Name: "hard", Typeflag: tar.TypeLink, Linkname: "../outside/x"}}, "leaves the tree"},
		{[]tar.Header{{Name: "/abs", Typeflag: tar.TypeReg}}, ""},
	} {
		dst := filepath.Join(base, fmt.Sprint("t", i))
		os.MkdirAll(dst, 0o755)
		_, err := extractTar(bytes.NewReader(mkTar(c.members...)), dst)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("case %d: %v, want %q", i, err, c.err)
		}
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Fatalf("case %d wrote outside the target: %v", i, ents)
		}
	}
	if _, err := os.Stat(filepath.Join(base, "t4", "abs")); err != nil {
		t.Errorf("an absolute member lands below the target: %v", err)
	}
}

func sumBytes(b []byte) [32]byte { return sha256.Sum256(b) }

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
