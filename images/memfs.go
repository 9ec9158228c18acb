package images

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"path"
	"sort"
	"time"
)

// memFS is a read-only in-memory file tree with one modification time for everything: the
// ESP's content, handed to the vfat writer as an fs.FS.
type memFS struct {
	files map[string][]byte // slash paths without a leading slash
	dirs  map[string][]string
	mtime time.Time
}

func newMemFS(files map[string][]byte, mtime time.Time) (*memFS, error) {
	m := &memFS{files: map[string][]byte{}, dirs: map[string][]string{".": nil}, mtime: mtime}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if !fs.ValidPath(p) || p == "." {
			return nil, &fs.PathError{Op: "add", Path: p, Err: fs.ErrInvalid}
		}
		if _, isDir := m.dirs[p]; isDir {
			return nil, &fs.PathError{Op: "add", Path: p, Err: errors.New("is a directory")}
		}
		m.files[p] = files[p]
		for child, dir := p, path.Dir(p); ; child, dir = dir, path.Dir(dir) {
			if _, isFile := m.files[dir]; isFile {
				return nil, &fs.PathError{Op: "add", Path: p, Err: errors.New(dir + " is a file")}
			}
			_, known := m.dirs[dir]
			m.dirs[dir] = append(m.dirs[dir], path.Base(child))
			if known || dir == "." {
				break
			}
		}
	}
	for d, names := range m.dirs {
		sort.Strings(names)
		m.dirs[d] = names
	}
	return m, nil
}

func (m *memFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if b, ok := m.files[name]; ok {
		return &memFile{info: m.info(name, int64(len(b)), 0o644), r: bytes.NewReader(b)}, nil
	}
	if names, ok := m.dirs[name]; ok {
		ents := make([]fs.DirEntry, len(names))
		for i, n := range names {
			p := path.Join(name, n)
			if b, ok := m.files[p]; ok {
				ents[i] = fs.FileInfoToDirEntry(m.info(p, int64(len(b)), 0o644))
			} else {
				ents[i] = fs.FileInfoToDirEntry(m.info(p, 0, fs.ModeDir|0o755))
			}
		}
		return &memFile{info: m.info(name, 0, fs.ModeDir|0o755), ents: ents}, nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

func (m *memFS) info(name string, size int64, mode fs.FileMode) fileInfo {
	return fileInfo{name: path.Base(name), size: size, mode: mode, mtime: m.mtime}
}

type fileInfo struct {
	name  string
	size  int64
	mode  fs.FileMode
	mtime time.Time
}

func (f fileInfo) Name() string       { return f.name }
func (f fileInfo) Size() int64        { return f.size }
func (f fileInfo) Mode() fs.FileMode  { return f.mode }
func (f fileInfo) ModTime() time.Time { return f.mtime }
func (f fileInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fileInfo) Sys() any           { return nil }

type memFile struct {
	info fileInfo
	r    *bytes.Reader
	ents []fs.DirEntry
	pos  int
}

func (f *memFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *memFile) Close() error               { return nil }

func (f *memFile) Read(b []byte) (int, error) {
	if f.r == nil {
		return 0, &fs.PathError{Op: "read", Path: f.info.name, Err: errors.New("is a directory")}
	}
	return f.r.Read(b)
}

func (f *memFile) ReadAt(b []byte, off int64) (int, error) {
	if f.r == nil {
		return 0, io.EOF
	}
	return f.r.ReadAt(b, off)
}

func (f *memFile) Seek(off int64, whence int) (int64, error) {
	if f.r == nil {
		return 0, errors.New("seek on a directory")
	}
	return f.r.Seek(off, whence)
}

func (f *memFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if f.r != nil {
		return nil, &fs.PathError{Op: "readdir", Path: f.info.name, Err: errors.New("not a directory")}
	}
	rest := f.ents[f.pos:]
	if n <= 0 {
		f.pos = len(f.ents)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	rest = rest[:min(n, len(rest))]
	f.pos += len(rest)
	return rest, nil
}
