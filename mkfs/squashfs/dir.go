package squashfs

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// DirOptions says how AddDir reads a directory from disk.
type DirOptions struct {
	// Xattrs reads extended attributes (user., trusted., security.; others are an error).
	Xattrs bool
}

// AddDir adds the directory hostDir and everything below it at path at in the tree, with
// the metadata lstat reports: owners, modes, mtimes, device numbers, and hardlinks (files
// sharing a device and inode number) as one inode. Symlinks are stored, never followed.
// File contents are read only when the image is written. A hostDir that is not a
// directory is added alone at at.
func (t *Tree) AddDir(hostDir, at string, opts DirOptions) error {
	at, err := cleanPath(at)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(hostDir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		// A single file (or symlink, device...) is added as itself at at, as
		// systemd-repart's CopyFiles= copies a file source to its target path.
		e, err := lstatEntry(hostDir, opts)
		if err != nil {
			return err
		}
		e.Path = at
		return t.Add(e)
	}
	return filepath.WalkDir(hostDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(hostDir, p)
		if err != nil {
			return err
		}
		e, err := lstatEntry(p, opts)
		if err != nil {
			return err
		}
		e.Path = path.Join(at, filepath.ToSlash(rel))
		return t.Add(e)
	})
}

// lstatEntry describes the file at p without following a final symlink.
func lstatEntry(p string, opts DirOptions) (Entry, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Mode: fi.Mode(), Mtime: fi.ModTime().Unix(), Source: p}
	sys, err := statSys(p, fi)
	if err != nil {
		return Entry{}, err
	}
	e.Uid, e.Gid, e.Rdev = sys.uid, sys.gid, sys.rdev
	switch fi.Mode().Type() {
	case 0:
		e.Size = fi.Size()
		e.Open = func() (io.ReadCloser, error) { return os.Open(p) }
	case fs.ModeSymlink:
		if e.Target, err = os.Readlink(p); err != nil {
			return Entry{}, err
		}
	}
	if !fi.IsDir() && sys.nlink > 1 && e.LinkID == "" {
		e.LinkID = fmt.Sprintf("host:%d:%d", sys.dev, sys.ino)
	}
	if opts.Xattrs {
		if e.Xattrs, err = readXattrs(p); err != nil {
			return Entry{}, fmt.Errorf("%s: reading extended attributes: %w", p, err)
		}
	}
	return e, nil
}
