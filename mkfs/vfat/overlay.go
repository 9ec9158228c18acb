package vfat

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

// Overlay is an fs.FS assembled in memory from several sources mounted at paths: whole trees
// (a directory, a firmware zip's archive/zip.Reader), single files of other fs.FS, and byte
// slices (a UKI built in memory, loader.conf). Nothing is copied: files are opened from their
// sources when read. Directories from different sources merge; two sources providing the
// same file is an error naming both. It is not specific to FAT.
type Overlay struct {
	root *ovNode
}

type ovNode struct {
	name     string
	children map[string]*ovNode // non-nil for directories
	src      fs.FS              // file from a source ...
	srcPath  string
	data     []byte // ... or from memory
	origin   string // where the entry came from, for conflict errors
	modTime  time.Time
}

// NewOverlay returns an empty overlay: a root directory.
func NewOverlay() *Overlay {
	return &Overlay{root: &ovNode{name: ".", children: map[string]*ovNode{}, origin: "root"}}
}

// cleanAt checks a path inside the overlay: slash-separated and relative like an fs.FS path
// ("EFI/BOOT", never "/EFI", "EFI/", "./EFI" or "../x"), where "", "." and "/" all name the
// root.
func cleanAt(at string) (string, error) {
	if at == "" || at == "/" {
		return ".", nil
	}
	if !fs.ValidPath(at) {
		return "", fmt.Errorf("overlay: invalid path %q: want a relative slash-separated path without . or .. elements", at)
	}
	return at, nil
}

// dir returns the directory at p, creating it and its parents.
func (o *Overlay) dir(p, origin string) (*ovNode, error) {
	n := o.root
	if p == "." {
		return n, nil
	}
	walked := ""
	for _, part := range strings.Split(p, "/") {
		walked = path.Join(walked, part)
		c, ok := n.children[part]
		if !ok {
			c = &ovNode{name: part, children: map[string]*ovNode{}, origin: origin}
			n.children[part] = c
		} else if c.children == nil {
			return nil, fmt.Errorf("overlay: %s from %s is a file, %s needs it to be a directory", walked, c.origin, origin)
		}
		n = c
	}
	return n, nil
}

func (o *Overlay) addFile(p string, f *ovNode) error {
	parent, err := o.dir(path.Dir(p), f.origin)
	if err != nil {
		return err
	}
	f.name = path.Base(p)
	if old, ok := parent.children[f.name]; ok {
		if old.children != nil {
			return fmt.Errorf("overlay: %s from %s is a file, and a directory from %s", p, f.origin, old.origin)
		}
		return fmt.Errorf("overlay: %s from %s conflicts with %s from %s", p, f.origin, p, old.origin)
	}
	parent.children[f.name] = f
	return nil
}

// Mkdir makes an empty directory (and its parents) at at.
func (o *Overlay) Mkdir(at string) error {
	p, err := cleanAt(at)
	if err != nil {
		return err
	}
	_, err = o.dir(p, "Mkdir("+p+")")
	return err
}

// AddFile places data as the file at.
func (o *Overlay) AddFile(at string, data []byte) error {
	p, err := cleanAt(at)
	if err != nil || p == "." {
		return fmt.Errorf("overlay: invalid file path %q", at)
	}
	return o.addFile(p, &ovNode{data: data, origin: "memory"})
}

// MountFile places the file name of src as the file at.
func (o *Overlay) MountFile(at string, src fs.FS, name string) error {
	p, err := cleanAt(at)
	if err != nil || p == "." {
		return fmt.Errorf("overlay: invalid file path %q", at)
	}
	info, err := fs.Stat(src, name)
	if err != nil {
		return fmt.Errorf("overlay: %w", err)
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("overlay: %s is not a regular file", name)
	}
	return o.addFile(p, &ovNode{src: src, srcPath: name, origin: name, modTime: info.ModTime()})
}

// Mount places every directory and file of src under the directory at, merging with
// directories already there.
func (o *Overlay) Mount(at string, src fs.FS) error {
	base, err := cleanAt(at)
	if err != nil {
		return err
	}
	return fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("overlay: mounting at %s: %w", base, err)
		}
		dst := path.Join(base, p)
		origin := fmt.Sprintf("%s (mounted at /%s)", p, strings.TrimPrefix(base, "."))
		if d.IsDir() {
			_, err := o.dir(dst, origin)
			return err
		}
		info, err := fs.Stat(src, p) // follows symlinks, like Open will
		if err != nil {
			return fmt.Errorf("overlay: %s: %w", p, err)
		}
		if info.IsDir() {
			if strings.Count(dst, "/") > maxTreeDepth {
				return fmt.Errorf("overlay: %s: directories nested more than %d deep (a symlink loop?)", dst, maxTreeDepth)
			}
			sub, err := fs.Sub(src, p)
			if err != nil {
				return err
			}
			return o.Mount(dst, sub)
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("overlay: %s: not a regular file or directory", p)
		}
		return o.addFile(dst, &ovNode{src: src, srcPath: p, origin: origin, modTime: info.ModTime()})
	})
}

func (o *Overlay) lookup(op, name string) (*ovNode, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	n := o.root
	if name == "." {
		return n, nil
	}
	for _, part := range strings.Split(name, "/") {
		if n.children == nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		c, ok := n.children[part]
		if !ok {
			return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		n = c
	}
	return n, nil
}

// Open implements fs.FS.
func (o *Overlay) Open(name string) (fs.File, error) {
	n, err := o.lookup("open", name)
	if err != nil {
		return nil, err
	}
	switch {
	case n.children != nil:
		return &ovDir{n: n, ents: n.entries(o)}, nil
	case n.src != nil:
		f, err := n.src.Open(n.srcPath)
		if err != nil {
			return nil, err
		}
		return &ovSrcFile{File: f, n: n}, nil
	default:
		return &ovFile{n: n, r: bytes.NewReader(n.data)}, nil
	}
}

// Stat implements fs.StatFS.
func (o *Overlay) Stat(name string) (fs.FileInfo, error) {
	n, err := o.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	return n.info()
}

// ReadDir implements fs.ReadDirFS; entries are sorted by name.
func (o *Overlay) ReadDir(name string) ([]fs.DirEntry, error) {
	n, err := o.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if n.children == nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fmt.Errorf("not a directory")}
	}
	return n.entries(o), nil
}

func (n *ovNode) entries(o *Overlay) []fs.DirEntry {
	names := make([]string, 0, len(n.children))
	for k := range n.children {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]fs.DirEntry, len(names))
	for i, k := range names {
		out[i] = ovEntry{n.children[k]}
	}
	return out
}

func (n *ovNode) info() (fs.FileInfo, error) {
	if n.src != nil {
		fi, err := fs.Stat(n.src, n.srcPath)
		if err != nil {
			return nil, err
		}
		return ovInfo{n: n, size: fi.Size(), mode: fi.Mode().Perm()}, nil
	}
	if n.children != nil {
		return ovInfo{n: n, mode: fs.ModeDir | 0o755}, nil
	}
	return ovInfo{n: n, size: int64(len(n.data)), mode: 0o644}, nil
}

type ovInfo struct {
	n    *ovNode
	size int64
	mode fs.FileMode
}

func (i ovInfo) Name() string       { return i.n.name }
func (i ovInfo) Size() int64        { return i.size }
func (i ovInfo) Mode() fs.FileMode  { return i.mode }
func (i ovInfo) ModTime() time.Time { return i.n.modTime }
func (i ovInfo) IsDir() bool        { return i.mode.IsDir() }
func (i ovInfo) Sys() any           { return nil }

type ovEntry struct{ n *ovNode }

func (e ovEntry) Name() string { return e.n.name }
func (e ovEntry) IsDir() bool  { return e.n.children != nil }
func (e ovEntry) Type() fs.FileMode {
	if e.n.children != nil {
		return fs.ModeDir
	}
	return 0
}
func (e ovEntry) Info() (fs.FileInfo, error) { return e.n.info() }

type ovFile struct {
	n *ovNode
	r *bytes.Reader
}

func (f *ovFile) Stat() (fs.FileInfo, error) { return f.n.info() }
func (f *ovFile) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f *ovFile) ReadAt(p []byte, off int64) (int, error) {
	return f.r.ReadAt(p, off)
}
func (f *ovFile) Seek(off int64, whence int) (int64, error) { return f.r.Seek(off, whence) }
func (f *ovFile) Close() error                              { return nil }

// ovSrcFile is a source's file under its name in the overlay.
type ovSrcFile struct {
	fs.File
	n *ovNode
}

func (f *ovSrcFile) Stat() (fs.FileInfo, error) {
	fi, err := f.File.Stat()
	if err != nil {
		return nil, err
	}
	return ovInfo{n: f.n, size: fi.Size(), mode: fi.Mode().Perm()}, nil
}

type ovDir struct {
	n    *ovNode
	ents []fs.DirEntry
}

func (d *ovDir) Stat() (fs.FileInfo, error) { return d.n.info() }
func (d *ovDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.n.name, Err: fmt.Errorf("is a directory")}
}
func (d *ovDir) Close() error { return nil }
func (d *ovDir) ReadDir(count int) ([]fs.DirEntry, error) {
	if count <= 0 {
		out := d.ents
		d.ents = nil
		return out, nil
	}
	if len(d.ents) == 0 {
		return nil, io.EOF
	}
	k := min(count, len(d.ents))
	out := d.ents[:k]
	d.ents = d.ents[k:]
	return out, nil
}
