package sysupdate

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Directory targets: a version is a directory tree, unpacked from a tar archive (url-tar,
// tar) or copied from a directory (directory, subvolume) into
// .sysupdate.partial.<name>, synced, renamed .sysupdate.pending.<name>, and at install
// renamed to <name>: a cut at any point leaves either no version or a whole one.

// removingPrefix marks a directory being vacuumed: renamed first (atomically), so a cut
// removal never leaves a half-emptied tree under a version's name. scanFiles takes it for
// a leftover (".#sysupdate…"), which the next run removes.
const removingPrefix = oldTmpPrefix + "sysupdate.removing."

// compressionBySuffix is the decompressor an archive's name promises ("" for plain tar,
// "?" when the name does not say).
func compressionBySuffix(name string) string {
	for _, s := range []struct{ suffix, kind string }{
		{".tar.zst", "zstd"}, {".tzst", "zstd"}, {".tar.xz", "xz"}, {".txz", "xz"},
		{".tar.gz", "gzip"}, {".tgz", "gzip"}, {".tar.bz2", "bzip2"}, {".tbz2", "bzip2"}, {".tar", ""},
	} {
		if strings.HasSuffix(name, s.suffix) {
			return s.kind
		}
	}
	return "?"
}

// compressionByMagic names the compression the stream starts with ("" for none known).
func compressionByMagic(magic []byte) string {
	switch {
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "zstd"
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return "xz"
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return "gzip"
	case bytes.HasPrefix(magic, []byte("BZh")):
		return "bzip2"
	}
	return ""
}

// checkArchiveName refuses an archive whose name and content disagree about compression
// (a .tar.zst that is xz, a .tar that is gzip): a publishing mistake best caught by name.
func checkArchiveName(name string, br *bufio.Reader) error {
	want := compressionBySuffix(name)
	if want == "?" {
		return nil
	}
	magic, _ := br.Peek(6)
	got := compressionByMagic(magic)
	if got == want {
		return nil
	}
	describe := func(k string) string {
		if k == "" {
			return "uncompressed"
		}
		return k + "-compressed"
	}
	return fmt.Errorf("%s: its name says %s tar, its content is %s", name, describe(want), describe(got))
}

// cleanTarName makes an archive member's name relative to the tree ("." for its top),
// refusing names that climb out of it.
func cleanTarName(name string) (string, error) {
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("member %q leaves the tree", name)
		}
	}
	if n := path.Clean("/" + name)[1:]; n != "" {
		return n, nil
	}
	return ".", nil
}

type dirMeta struct {
	name string
	hdr  *tar.Header
}

// extractTar unpacks a tar stream below dir, which must exist. Every path is resolved
// inside dir (os.Root): neither "../" nor a symlink in the archive can write outside it.
// Owners (when run as root), modes, times, hard links, devices and PAX xattrs are kept.
func extractTar(r io.Reader, dir string) (files int, err error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	var dirs []dirMeta
	buf := make([]byte, 1<<20)
	asRoot := os.Geteuid() == 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return files, fmt.Errorf("tar after %d members: %w", files, err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name, err := cleanTarName(h.Name)
		if err != nil {
			return files, err
		}
		files++
		fail := func(err error) (int, error) {
			return files, fmt.Errorf("tar member %s: %w", h.Name, err)
		}
		if name != "." {
			if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
				return fail(err)
			}
			// A later member of the same name replaces an earlier one, as tar does.
			if h.Typeflag != tar.TypeDir {
				if err := root.Remove(name); err != nil && !os.IsNotExist(err) {
					return fail(err)
				}
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if name != "." {
				if err := root.Mkdir(name, 0o700); err != nil && !os.IsExist(err) {
					return fail(err)
				}
			}
			dirs = append(dirs, dirMeta{name, h})
			continue
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archives still say '\x00'
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fail(err)
			}
			if _, err := io.CopyBuffer(f, tr, buf); err != nil {
				f.Close()
				return fail(err)
			}
			if err := setMeta(f, h, asRoot); err != nil {
				f.Close()
				return fail(err)
			}
			if err := f.Close(); err != nil {
				return fail(err)
			}
		case tar.TypeSymlink:
			if err := root.Symlink(h.Linkname, name); err != nil {
				return fail(err)
			}
			if asRoot {
				if err := root.Lchown(name, h.Uid, h.Gid); err != nil {
					return fail(err)
				}
			}
			continue // symlinks have no mode; their times do not matter
		case tar.TypeLink:
			target, err := cleanTarName(h.Linkname)
			if err != nil {
				return fail(err)
			}
			if err := root.Link(target, name); err != nil {
				return fail(err)
			}
			continue // the inode's metadata came with its first name
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			if err := mknodIn(root, name, h); err != nil {
				return fail(err)
			}
			if asRoot {
				if err := root.Lchown(name, h.Uid, h.Gid); err != nil {
					return fail(err)
				}
			}
			if err := root.Chmod(name, fileMode(h.Mode)); err != nil {
				return fail(err)
			}
		default:
			return fail(fmt.Errorf("type %q is not supported", h.Typeflag))
		}
		if err := root.Chtimes(name, h.AccessTime, h.ModTime); err != nil {
			return fail(err)
		}
	}
	// Directories last, deepest first: their modes may forbid the writes above, and each
	// member written changed their times.
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		f, err := root.Open(d.name)
		if err != nil {
			return files, fmt.Errorf("tar member %s: %w", d.hdr.Name, err)
		}
		err = setMeta(f, d.hdr, asRoot)
		f.Close()
		if err == nil {
			err = root.Chtimes(d.name, d.hdr.AccessTime, d.hdr.ModTime)
		}
		if err != nil {
			return files, fmt.Errorf("tar member %s: %w", d.hdr.Name, err)
		}
	}
	return files, nil
}

// fileMode converts tar's mode bits (with setuid, setgid, sticky) to Go's.
func fileMode(m int64) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// setMeta gives an open file or directory the member's owner, mode and extended
// attributes (owner first: chown clears setuid).
func setMeta(f *os.File, h *tar.Header, asRoot bool) error {
	if asRoot {
		if err := f.Chown(h.Uid, h.Gid); err != nil {
			return err
		}
	}
	for k, v := range h.PAXRecords {
		if attr, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if err := setXattr(f, attr, []byte(v)); err != nil {
				return fmt.Errorf("xattr %s: %w", attr, err)
			}
		}
	}
	return f.Chmod(fileMode(h.Mode))
}

// tarDir writes the tree at dir as a tar stream (for directory sources: one extractor for
// both kinds of tree), hard links as links to the first name seen.
func tarDir(ctx context.Context, w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	buf := make([]byte, 1<<20)
	seen := map[[2]uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		rel, _ := filepath.Rel(dir, p)
		h.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			h.Name += "/"
		}
		if id, ok := hardLinkID(info); ok {
			if first, dup := seen[id]; dup {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			} else {
				seen[id] = h.Name
			}
		}
		h.Format = tar.FormatPAX
		if x, err := listXattrs(p); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		} else if len(x) > 0 {
			h.PAXRecords = map[string]string{}
			for k, v := range x {
				h.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if h.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.CopyBuffer(tw, f, buf)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// removeTree vacuums a directory instance: renamed aside first (one atomic step, synced),
// then removed; its immutable flag (ReadOnly=yes) is cleared first.
func removeTree(dir, name string) error {
	p := filepath.Join(dir, name)
	if err := setImmutable(p, false); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("%s: clear immutable flag: %w", p, err)
	}
	aside := p
	if !strings.HasPrefix(name, oldTmpPrefix) {
		aside = filepath.Join(dir, removingPrefix+strings.TrimPrefix(strings.TrimPrefix(name, partialPrefix), pendingPrefix))
		if err := os.Rename(p, aside); err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	return os.RemoveAll(aside)
}

// pointSymlink makes link (relative to dir unless absolute) point at dir/name, replacing
// what it pointed at in one rename.
func pointSymlink(dir, link, name string) error {
	if !filepath.IsAbs(link) {
		link = filepath.Join(dir, link)
	}
	target := filepath.Join(dir, name)
	rel, err := filepath.Rel(filepath.Dir(link), target)
	if err != nil {
		rel = target
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(link), ".#sysupdate.symlink."+filepath.Base(link))
	os.Remove(tmp)
	if err := os.Symlink(rel, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(link))
}

// acquireTree unpacks one version into .sysupdate.partial.<name> in the target directory,
// syncs it and renames it .sysupdate.pending.<name>.
func (u *Updater) acquireTree(ctx context.Context, src Source, j *job) error {
	tg, t := j.tg, j.tg.t
	partial, pending, err := u.startInDir(j, "unpacking %s into %s")
	if err != nil {
		return err
	}
	if err := removeTree(tg.dir, partialPrefix+j.name); err != nil {
		return err
	}
	if err := os.Mkdir(partial, 0o755); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	extracted := make(chan error, 1)
	go func() {
		_, err := extractTar(pr, partial)
		// Read on to the end either way: the archive's padding is part of the download,
		// and after a failed member the hash tells a damaged download from a bad archive.
		io.Copy(io.Discard, pr)
		extracted <- err
	}()
	if t.Source.Type == TypeDirectory || t.Source.Type == TypeSubvolume {
		err = tarDir(ctx, pw, filepath.Join(string(src.(dirSource)), j.file))
	} else {
		_, err = u.fetch(ctx, src, j, pw)
	}
	pw.CloseWithError(err)
	xerr := <-extracted
	if err != nil {
		return err
	}
	if xerr != nil {
		return fmt.Errorf("%s: %s: %w", t.File, j.file, xerr)
	}
	if t.Target.Mode != nil {
		if err := os.Chmod(partial, os.FileMode(*t.Target.Mode)); err != nil {
			return err
		}
	}
	if err := syncFS(partial); err != nil {
		return fmt.Errorf("sync %s: %w", partial, err)
	}
	if err := u.doStep("rename to " + pending); err != nil {
		return err
	}
	if err := os.Rename(partial, pending); err != nil {
		return err
	}
	return syncDir(tg.dir)
}
