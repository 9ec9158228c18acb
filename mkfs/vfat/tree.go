package vfat

import (
	"fmt"
	"io/fs"
	"path"
)

const (
	attrVolumeID  = 0x08
	attrDirectory = 0x10
	attrArchive   = 0x20
	attrLongName  = 0x0F

	maxFileSize  = 1<<32 - 1
	maxDirSlots  = 65536 // a directory may hold at most 2 MiB of entries
	direntSize   = 32
	maxTreeDepth = 256 // guards against symlink loops in the source
)

// node is one file or directory of the tree being written.
type node struct {
	name     string // the long name, as in the source tree
	path     string // path in the source fs.FS ("." for the root)
	dir      bool
	size     int64
	children []*node

	short [11]byte
	lcase byte
	long  bool // needs long-name entries

	first    uint32 // first cluster, 0 for empty files
	nclust   uint32
	dirSlots int // directories: entries including ".", ".." and the volume label
}

// readTree reads the whole source tree (metadata only) and assigns short names.
func readTree(fsys fs.FS) (*node, error) {
	root := &node{name: "", path: ".", dir: true}
	if fsys == nil {
		return root, nil
	}
	if err := readDir(fsys, root, 0); err != nil {
		return nil, err
	}
	return root, nil
}

func readDir(fsys fs.FS, d *node, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("%s: directories nested more than %d deep (a symlink loop?)", d.path, maxTreeDepth)
	}
	ents, err := fs.ReadDir(fsys, d.path) // sorted by name: the output is reproducible
	if err != nil {
		return fmt.Errorf("reading directory %s: %w", d.path, err)
	}
	seen := map[string]string{}
	for _, e := range ents {
		p := path.Join(d.path, e.Name())
		if err := checkLongName(e.Name()); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		k := foldKey(e.Name())
		if other, dup := seen[k]; dup {
			return fmt.Errorf("%s and %s differ only in case; FAT names are case-insensitive",
				path.Join(d.path, other), p)
		}
		seen[k] = e.Name()
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			// Follow links the way the source's Open will: FAT has no symlinks.
			if info, err = fs.Stat(fsys, p); err != nil {
				return fmt.Errorf("%s: following symlink: %w", p, err)
			}
		}
		c := &node{name: e.Name(), path: p}
		switch {
		case info.IsDir():
			c.dir = true
			if err := readDir(fsys, c, depth+1); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			c.size = info.Size()
			if c.size > maxFileSize {
				return fmt.Errorf("%s: %d bytes, FAT files are limited to %d bytes", p, c.size, int64(maxFileSize))
			}
		default:
			return fmt.Errorf("%s: %s files cannot be stored on FAT", p, info.Mode().Type())
		}
		d.children = append(d.children, c)
	}
	return nameEntries(d)
}

// nameEntries assigns short names to d's children and counts d's directory slots. Names that
// are valid 8.3 names themselves are claimed first, so that a generated BASE~N never takes the
// name of a file that really is called BASE~N.
func nameEntries(d *node) error {
	sn := newShortNamer()
	for _, c := range d.children {
		if s, lc, ok := exactShort(c.name); ok {
			if !sn.reserve(s) {
				return fmt.Errorf("%s: short name collision", c.path) // excluded by the case check
			}
			c.short, c.lcase = s, lc
		} else {
			c.long = true
		}
	}
	slots := 0
	if d.path != "." {
		slots = 2 // "." and ".."
	}
	for _, c := range d.children {
		if c.long {
			s, err := sn.generate(c.name)
			if err != nil {
				return fmt.Errorf("%s: %w", c.path, err)
			}
			c.short = s
			slots += lfnCount(c.name)
		}
		slots++
	}
	d.dirSlots = slots
	if slots > maxDirSlots {
		return fmt.Errorf("%s: %d directory entries (%d files) exceed FAT's limit of %d entries per directory",
			d.path, slots, len(d.children), maxDirSlots)
	}
	return nil
}

// addLabel counts the volume label's entry in the root directory.
func (n *node) addLabel(has bool) error {
	if !has {
		return nil
	}
	n.dirSlots++
	if n.dirSlots > maxDirSlots {
		return fmt.Errorf("the root directory's %d entries and the volume label exceed FAT's limit of %d entries per directory",
			n.dirSlots-1, maxDirSlots)
	}
	return nil
}

// walk visits n and its descendants in preorder: the order clusters are allocated in.
func walk(n *node, f func(*node) error) error {
	if err := f(n); err != nil {
		return err
	}
	for _, c := range n.children {
		if err := walk(c, f); err != nil {
			return err
		}
	}
	return nil
}
