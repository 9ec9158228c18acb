package initrd

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// Archive is an initramfs under construction. Entries are written sorted by path with
// uid/gid 0 and mtime 0, so the same inputs always give the same bytes.
type Archive struct {
	entries map[string]entry
}

type entry struct {
	mode   uint32 // file type and permission bits, as in cpio's c_mode
	data   []byte // contents when given in memory
	src    string // contents read from this file at write time
	target string // symlink target
	rdev   [2]uint32
}

const (
	sIFDIR  = 0o040000
	sIFREG  = 0o100000
	sIFLNK  = 0o120000
	sIFCHR  = 0o020000
	permDir = 0o755
)

// NewArchive returns an empty archive.
func NewArchive() *Archive { return &Archive{entries: map[string]entry{}} }

func clean(p string) (string, error) {
	c := strings.TrimPrefix(path.Clean("/"+p), "/")
	if c == "" || c == "." {
		return "", fmt.Errorf("initrd: empty path %q", p)
	}
	return c, nil
}

// add records e at p and creates missing parent directories.
func (a *Archive) add(p string, e entry) error {
	c, err := clean(p)
	if err != nil {
		return err
	}
	if old, ok := a.entries[c]; ok && !(old.mode&sIFDIR != 0 && e.mode&sIFDIR != 0) {
		return fmt.Errorf("initrd: %s added twice", c)
	}
	for d := path.Dir(c); d != "."; d = path.Dir(d) {
		if old, ok := a.entries[d]; ok {
			if old.mode&0o170000 != sIFDIR {
				return fmt.Errorf("initrd: %s: parent %s is not a directory", c, d)
			}
			continue
		}
		a.entries[d] = entry{mode: sIFDIR | permDir}
	}
	a.entries[c] = e
	return nil
}

// Dir adds a directory.
func (a *Archive) Dir(p string, perm uint32) error {
	return a.add(p, entry{mode: sIFDIR | perm&0o7777})
}

// Bytes adds a regular file with the given contents.
func (a *Archive) Bytes(p string, data []byte, perm uint32) error {
	return a.add(p, entry{mode: sIFREG | perm&0o7777, data: data})
}

// File adds a regular file whose contents are read from src when the archive is written.
func (a *Archive) File(p, src string, perm uint32) error {
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("initrd: %s is not a regular file", src)
	}
	return a.add(p, entry{mode: sIFREG | perm&0o7777, src: src})
}

// Symlink adds a symbolic link.
func (a *Archive) Symlink(p, target string) error {
	return a.add(p, entry{mode: sIFLNK | 0o777, target: target})
}

// CharDev adds a character device node.
func (a *Archive) CharDev(p string, perm, major, minor uint32) error {
	return a.add(p, entry{mode: sIFCHR | perm&0o7777, rdev: [2]uint32{major, minor}})
}

// Paths returns the archive's paths in write order.
func (a *Archive) Paths() []string {
	ps := make([]string, 0, len(a.entries))
	for p := range a.entries {
		ps = append(ps, p)
	}
	// Sorting by path components keeps every directory before its contents.
	sort.Slice(ps, func(i, j int) bool {
		return strings.ReplaceAll(ps[i], "/", "\x00") < strings.ReplaceAll(ps[j], "/", "\x00")
	})
	return ps
}

// WriteTo writes the archive in the newc format the kernel unpacks.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: bufio.NewWriterSize(w, 1<<20)}
	ino := uint32(1)
	for _, p := range a.Paths() {
		e := a.entries[p]
		var body []byte
		var size int64
		var f *os.File
		switch {
		case e.mode&0o170000 == sIFLNK:
			body = []byte(e.target)
			size = int64(len(body))
		case e.src != "":
			var err error
			if f, err = os.Open(e.src); err != nil {
				return cw.n, fmt.Errorf("initrd: %w", err)
			}
			st, err := f.Stat()
			if err != nil {
				f.Close()
				return cw.n, err
			}
			size = st.Size()
		default:
			body = e.data
			size = int64(len(body))
		}
		if size > 0xffffffff {
			return cw.n, fmt.Errorf("initrd: %s is too large for cpio (%d bytes)", p, size)
		}
		nlink := uint32(1)
		if e.mode&sIFDIR != 0 {
			nlink = 2
		}
		writeHeader(cw, ino, e.mode, nlink, uint32(size), e.rdev, p)
		ino++
		if f != nil {
			n, err := io.Copy(cw, f)
			f.Close()
			if err != nil {
				return cw.n, fmt.Errorf("initrd: read %s: %w", e.src, err)
			}
			if n != size {
				return cw.n, fmt.Errorf("initrd: %s changed size while being archived", e.src)
			}
		} else {
			cw.Write(body)
		}
		cw.pad()
	}
	writeHeader(cw, 0, 0, 1, 0, [2]uint32{}, "TRAILER!!!")
	if err := cw.w.(*bufio.Writer).Flush(); err != nil {
		return cw.n, err
	}
	return cw.n, cw.err
}

func writeHeader(cw *countWriter, ino, mode, nlink, size uint32, rdev [2]uint32, name string) {
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
	// rdevmajor, rdevminor, namesize, check
	fmt.Fprintf(cw, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(name)+1, 0)
	io.WriteString(cw, name)
	cw.Write([]byte{0})
	cw.pad()
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(b []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
	return n, err
}

// pad aligns to 4 bytes, as newc requires after headers+names and after data.
func (c *countWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.Write(make([]byte, 4-r))
	}
}
