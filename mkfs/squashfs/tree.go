package squashfs

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Entry describes one file to put into the image. Paths are slash-separated and relative
// to the image root; "" or "." is the root directory itself.
type Entry struct {
	Path     string
	Mode     fs.FileMode // type bits plus permissions, including setuid, setgid and sticky
	Uid, Gid uint32
	Mtime    int64  // seconds since the epoch
	Size     int64  // regular files: the number of bytes Open yields
	Target   string // symlinks: the link text, stored as is and never followed
	Rdev     uint64 // device nodes: the device number as Linux encodes it (unix.Mkdev)
	// Xattrs holds extended attributes by full name ("user.x", "trusted.x", "security.x").
	Xattrs map[string][]byte
	// Open returns the content of a regular file; it must yield exactly Size bytes. It may
	// be called more than once and from several goroutines: duplicate detection reads
	// files of equal size before their data is written.
	Open func() (io.ReadCloser, error)
	// LinkID makes hardlinks: entries with the same non-empty LinkID share one inode,
	// whose metadata and content come from the first of them added.
	LinkID string
	// Source names the entry in error messages (e.g. the host path it came from).
	Source string
}

// Tree is a file hierarchy to be written as a squashfs image. It holds metadata only;
// regular files are read when the image is written.
type Tree struct {
	root  *node
	links map[string]*inode
}

type node struct {
	name     string
	ino      *inode
	children map[string]*node // directories only
	implicit bool             // created as the parent of another entry, not added itself
}

// inode is one file of the image; hardlinked entries share it.
type inode struct {
	mode   fs.FileMode
	uid    uint32
	gid    uint32
	mtime  int64
	size   int64
	target string
	rdev   uint64
	xattrs []xattr
	open   func() (io.ReadCloser, error)
	source string
	nlink  uint32

	// Filled while writing.
	num      uint32
	ref      uint64 // inode table reference: block start << 16 | offset
	written  bool
	start    uint64   // first data block
	blocks   []uint32 // on-disk size of each data block (0: sparse)
	frag     uint32   // fragment index, invalidFrag if none
	fragOff  uint32
	sparse   uint64
	xattrIdx uint32
	dupOf    *inode
}

type xattr struct {
	name  string
	value []byte
}

// NewTree returns a tree holding only a root directory (mode 0755, owned by root, mtime 0).
func NewTree() *Tree {
	return &Tree{
		root:  &node{ino: &inode{mode: fs.ModeDir | 0o755}, children: map[string]*node{}, implicit: true},
		links: map[string]*inode{},
	}
}

func cleanPath(p string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("path %q contains a NUL byte", p)
	}
	c := path.Clean("/" + p)
	if c == "/" {
		return "", nil
	}
	for _, part := range strings.Split(c[1:], "/") {
		if len(part) > maxNameLen {
			return "", fmt.Errorf("path %q: name %q is longer than %d bytes", p, part, maxNameLen)
		}
	}
	return c[1:], nil
}

// Add puts e into the tree. Missing parent directories are created with mode 0755, owner
// root and mtime 0; adding such a directory later sets its metadata. Adding the same path
// twice is an error.
func (t *Tree) Add(e Entry) error {
	p, err := cleanPath(e.Path)
	if err != nil {
		return err
	}
	what := e.Source
	if what == "" {
		what = "/" + p
	}
	ino, err := newInode(e, what)
	if err != nil {
		return err
	}
	if p == "" {
		if !e.Mode.IsDir() {
			return fmt.Errorf("%s: the image root must be a directory", what)
		}
		if !t.root.implicit {
			return fmt.Errorf("%s: root directory added twice", what)
		}
		t.root.ino, t.root.implicit = ino, false
		return nil
	}
	dir := t.root
	parts := strings.Split(p, "/")
	for _, part := range parts[:len(parts)-1] {
		c := dir.children[part]
		if c == nil {
			c = &node{name: part, ino: &inode{mode: fs.ModeDir | 0o755}, children: map[string]*node{}, implicit: true}
			dir.children[part] = c
		} else if c.children == nil {
			return fmt.Errorf("%s: parent %q is not a directory", what, part)
		}
		dir = c
	}
	name := parts[len(parts)-1]
	if old := dir.children[name]; old != nil {
		if !(old.implicit && e.Mode.IsDir()) {
			return fmt.Errorf("%s: /%s is already in the image", what, p)
		}
		old.ino, old.implicit = ino, false
		return nil
	}
	n := &node{name: name, ino: ino}
	if e.Mode.IsDir() {
		if e.LinkID != "" {
			return fmt.Errorf("%s: directories cannot be hardlinked", what)
		}
		n.children = map[string]*node{}
	} else if e.LinkID != "" {
		if first := t.links[e.LinkID]; first != nil {
			n.ino = first
		} else {
			t.links[e.LinkID] = ino
		}
	}
	dir.children[name] = n
	return nil
}

func newInode(e Entry, what string) (*inode, error) {
	ino := &inode{
		mode: e.Mode, uid: e.Uid, gid: e.Gid, mtime: e.Mtime, source: what,
		frag: invalidFrag, xattrIdx: invalidXattr,
	}
	switch e.Mode.Type() {
	case 0:
		if e.Size < 0 {
			return nil, fmt.Errorf("%s: negative size %d", what, e.Size)
		}
		if e.Open == nil && e.Size > 0 {
			return nil, fmt.Errorf("%s: regular file without content (Open is nil)", what)
		}
		ino.size, ino.open = e.Size, e.Open
	case fs.ModeDir, fs.ModeNamedPipe, fs.ModeSocket:
	case fs.ModeSymlink:
		if len(e.Target) > maxSymlink {
			return nil, fmt.Errorf("%s: symlink target is %d bytes, more than the %d the kernel reads", what, len(e.Target), maxSymlink)
		}
		ino.target = e.Target
	case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
		ino.rdev = e.Rdev
	default:
		return nil, fmt.Errorf("%s: unsupported file type %v", what, e.Mode.Type())
	}
	for name, v := range e.Xattrs {
		if _, _, ok := xattrPrefix(name); !ok {
			return nil, fmt.Errorf("%s: extended attribute %q: squashfs stores only user., trusted. and security. attributes", what, name)
		}
		if len(v) > 1<<16 {
			return nil, fmt.Errorf("%s: extended attribute %q is %d bytes (at most 65536)", what, name, len(v))
		}
		ino.xattrs = append(ino.xattrs, xattr{name, v})
	}
	sort.Slice(ino.xattrs, func(i, j int) bool { return ino.xattrs[i].name < ino.xattrs[j].name })
	return ino, nil
}

func xattrPrefix(name string) (typ uint16, rest string, ok bool) {
	for i, p := range []string{"user.", "trusted.", "security."} {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			return uint16(i), name[len(p):], true
		}
	}
	return 0, "", false
}

// sortedChildren returns the directory's entries in the byte order the kernel's lookup
// expects (it stops scanning at the first name greater than the one it looks for).
func (n *node) sortedChildren() []*node {
	out := make([]*node, 0, len(n.children))
	for _, c := range n.children {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
