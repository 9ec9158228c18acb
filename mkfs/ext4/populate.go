package ext4

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"time"
)

// dataExtentLen caps the extents of files and directories; tests lower it to exercise
// extent leaf blocks without writing gigabytes.
var dataExtentLen uint64 = maxExtentLen

// fileStat is the part of a file's status that fs.FileInfo does not carry portably.
type fileStat struct {
	uid, gid             uint32
	dev, ino, nlink      uint64
	rdevMajor, rdevMinor uint32
}

// ext4 inode type bits and directory entry file types.
const (
	sIFIFO  = 0x1000
	sIFCHR  = 0x2000
	sIFDIR  = 0x4000
	sIFBLK  = 0x6000
	sIFREG  = 0x8000
	sIFLNK  = 0xA000
	sIFSOCK = 0xC000
)

var fileType = map[uint16]byte{sIFREG: 1, sIFDIR: 2, sIFCHR: 3, sIFBLK: 4, sIFIFO: 5, sIFSOCK: 6, sIFLNK: 7}

// node is an inode being built; it is sealed (checksummed) once its link count is known.
type node struct {
	raw   []byte
	links uint32
}

type dirent struct {
	ino   uint32
	name  string
	ftype byte
}

// allocIno hands out the next inode number; inodes are used from the lowest number up, so
// every group's used inodes are a prefix of its table, as the kernel's itable_unused expects.
func (f *formatter) allocIno(dir bool) (uint32, error) {
	ino := f.nextIno
	if uint64(ino) > f.l.inodes() {
		return 0, fmt.Errorf("ext4: the tree has more files than the filesystem's %d inodes (set a smaller InodeRatio)", f.l.inodes())
	}
	f.nextIno++
	g := (ino - 1) / f.l.inodesPerGrp
	f.groupInodes[g]++
	if dir {
		f.groupDirs[g]++
	}
	return ino, nil
}

// allocData allocates n blocks, contiguous where possible, after the last allocation.
func (f *formatter) allocData(n uint64, what string) ([]extent, error) {
	if n > f.l.blocks-f.l.used.total {
		return nil, fmt.Errorf("ext4: %s needs %d blocks of 4 KiB but only %d are free: the tree does not fit in %d bytes",
			what, n, f.l.blocks-f.l.used.total, f.l.blocks*blockSize)
	}
	var runs []extent
	for n > 0 {
		pos, ok := f.l.used.find(f.goal, 1, f.l.blocks)
		if !ok {
			pos, _ = f.l.used.find(0, 1, f.l.blocks)
		}
		k := min(n, f.l.used.nextUsed(pos, f.l.blocks)-pos)
		f.l.used.add(extent{pos, k})
		runs = append(runs, extent{pos, k})
		n -= k
		f.goal = pos + k
	}
	return runs, nil
}

// mapExtents writes the extent tree of runs into the inode (i_block), with leaf blocks when
// more than four extents are needed, and returns how many tree blocks it allocated.
func (f *formatter) mapExtents(ino uint32, in []byte, runs []extent, what string) (uint64, error) {
	var exts []extent
	for _, r := range runs {
		for r.len > 0 {
			k := min(r.len, dataExtentLen)
			exts = append(exts, extent{r.start, k})
			r.start += k
			r.len -= k
		}
	}
	iblock := in[0x28:0x64]
	if len(exts) <= 4 {
		extentRoot(iblock, exts, 0)
		return 0, nil
	}
	const perLeaf = (blockSize - 12) / 12
	nleaves := (len(exts) + perLeaf - 1) / perLeaf
	if nleaves > 4 {
		return 0, fmt.Errorf("ext4: %s is too fragmented (%d extents)", what, len(exts))
	}
	leaves, err := f.allocData(uint64(nleaves), what)
	if err != nil {
		return 0, err
	}
	var leafBlocks []uint64
	for _, r := range leaves {
		for b := r.start; b < r.end(); b++ {
			leafBlocks = append(leafBlocks, b)
		}
	}
	le.PutUint16(iblock[0:], extentMagic)
	le.PutUint16(iblock[2:], uint16(nleaves))
	le.PutUint16(iblock[4:], 4)
	le.PutUint16(iblock[6:], 1)
	logical := uint32(0)
	for i := 0; i < nleaves; i++ {
		part := exts[i*perLeaf : min(len(exts), (i+1)*perLeaf)]
		idx := iblock[12+12*i:]
		le.PutUint32(idx[0:], logical)
		le.PutUint32(idx[4:], uint32(leafBlocks[i]))
		le.PutUint16(idx[8:], uint16(leafBlocks[i]>>32))
		blk := make([]byte, blockSize)
		le.PutUint16(blk[0:], extentMagic)
		le.PutUint16(blk[2:], uint16(len(part)))
		le.PutUint16(blk[4:], perLeaf)
		var l uint32 = logical
		for j, e := range part {
			x := blk[12+12*j:]
			le.PutUint32(x[0:], l)
			le.PutUint16(x[4:], uint16(e.len))
			le.PutUint16(x[6:], uint16(e.start>>32))
			le.PutUint32(x[8:], uint32(e.start))
			l += uint32(e.len)
		}
		off := 12 + 12*perLeaf
		le.PutUint32(blk[off:], crc(f.inodeSeed(ino), blk[:off]))
		f.put(leafBlocks[i], blk)
		logical = l
	}
	return uint64(nleaves), nil
}

// fileInode starts an inode with the file's mode, owner and times.
func (f *formatter) fileInode(mode uint16, st fileStat, mtime time.Time) []byte {
	in := make([]byte, inodeSize)
	le.PutUint16(in[0x0:], mode)
	le.PutUint16(in[0x2:], uint16(st.uid))
	le.PutUint16(in[0x18:], uint16(st.gid))
	le.PutUint16(in[0x78:], uint16(st.uid>>16))
	le.PutUint16(in[0x7A:], uint16(st.gid>>16))
	t := mtime.Unix()
	extra := uint32((t>>32)&3) | uint32(mtime.Nanosecond())<<2
	for _, off := range []int{0x8, 0xC, 0x10} { // atime ctime mtime
		le.PutUint32(in[off:], uint32(t))
	}
	for _, off := range []int{0x84, 0x88, 0x8C} {
		le.PutUint32(in[off:], extra)
	}
	ct := f.o.Time.Unix()
	le.PutUint32(in[0x90:], uint32(ct)) // crtime: when this filesystem was made
	le.PutUint32(in[0x94:], uint32((ct>>32)&3)|uint32(f.o.Time.Nanosecond())<<2)
	le.PutUint16(in[0x80:], extraIsize)
	return in
}

func setSize(in []byte, size, blocks uint64) {
	le.PutUint32(in[0x4:], uint32(size))
	le.PutUint32(in[0x6C:], uint32(size>>32))
	sectors := blocks * (blockSize / 512)
	le.PutUint32(in[0x1C:], uint32(sectors))
	le.PutUint16(in[0x74:], uint16(sectors>>32))
}

func ext4Mode(m fs.FileMode) uint16 {
	mode := uint16(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// populate copies opts.Root into the filesystem: file data is written straight to w, inodes
// and directories are kept for write. Without a tree it only builds the root directory.
func (f *formatter) populate(w io.WriterAt) error {
	l := f.l
	f.nextIno = firstIno + 1
	f.groupInodes = make([]uint32, len(l.groups))
	f.groupDirs = make([]uint32, len(l.groups))
	f.groupInodes[0], f.groupDirs[0] = firstIno, 2
	f.nodes = map[uint32]*node{}
	f.links = map[[2]uint64]uint32{}
	f.goal = l.lpf + lpfBlocks
	root := f.newInode(0o40755, 0, 0, 0, extentsFl)
	entries := []dirent{{rootIno, ".", 2}, {rootIno, "..", 2}, {lpfIno, "lost+found", 2}}
	subdirs := uint32(1)
	if f.o.Root != nil {
		info, err := fs.Stat(f.o.Root, ".")
		if err != nil {
			return fmt.Errorf("ext4: tree: %w", err)
		}
		st, _ := statOf(info)
		root = f.fileInode(sIFDIR|ext4Mode(info.Mode()), st, info.ModTime())
		le.PutUint32(root[0x90:], uint32(f.o.Time.Unix()))
		more, n, err := f.addDir(w, ".", rootIno)
		if err != nil {
			return err
		}
		entries = append(entries, more...)
		subdirs += n
	}
	le.PutUint32(root[0x20:], extentsFl)
	blocks := f.dirBlocks(rootIno, entries)
	runs := []extent{{l.rootDir, 1}}
	if len(blocks) > 1 {
		more, err := f.allocData(uint64(len(blocks)-1), "the root directory")
		if err != nil {
			return err
		}
		runs = append(runs, more...)
	}
	f.putRuns(runs, blocks)
	tree, err := f.mapExtents(rootIno, root, runs, "the root directory")
	if err != nil {
		return err
	}
	setSize(root, uint64(len(blocks))*blockSize, uint64(len(blocks))+tree)
	f.nodes[rootIno] = &node{raw: root, links: dirLinks(subdirs)}
	return nil
}

func dirLinks(subdirs uint32) uint32 {
	if subdirs+2 >= 65000 {
		return 1 // dir_nlink: too many to count
	}
	return subdirs + 2
}

// putRuns queues blocks for writing at the blocks of runs, in order.
func (f *formatter) putRuns(runs []extent, blocks [][]byte) {
	i := 0
	for _, r := range runs {
		for b := r.start; b < r.end(); b++ {
			f.put(b, blocks[i])
			i++
		}
	}
}

// addDir adds the entries of directory p (inode ino) and everything below; it returns the
// entries and how many of them are directories.
func (f *formatter) addDir(w io.WriterAt, p string, ino uint32) ([]dirent, uint32, error) {
	ents, err := fs.ReadDir(f.o.Root, p)
	if err != nil {
		return nil, 0, fmt.Errorf("ext4: tree: %w", err)
	}
	var out []dirent
	var subdirs uint32
	for _, e := range ents {
		name := e.Name()
		cp := path.Join(p, name)
		if ino == rootIno && name == "lost+found" && e.IsDir() {
			continue // the filesystem has its own
		}
		if len(name) > 255 {
			return nil, 0, fmt.Errorf("ext4: tree: %s: name longer than 255 bytes", cp)
		}
		info, err := e.Info()
		if err != nil {
			return nil, 0, fmt.Errorf("ext4: tree: %w", err)
		}
		st, hasStat := statOf(info)
		m := info.Mode()
		perm := ext4Mode(m)
		switch {
		case m.IsDir():
			child, err := f.allocIno(true)
			if err != nil {
				return nil, 0, err
			}
			in := f.fileInode(sIFDIR|perm, st, info.ModTime())
			sub, n, err := f.addDir(w, cp, child)
			if err != nil {
				return nil, 0, err
			}
			entries := append([]dirent{{child, ".", 2}, {ino, "..", 2}}, sub...)
			blocks := f.dirBlocks(child, entries)
			runs, err := f.allocData(uint64(len(blocks)), cp)
			if err != nil {
				return nil, 0, err
			}
			f.putRuns(runs, blocks)
			le.PutUint32(in[0x20:], extentsFl)
			tree, err := f.mapExtents(child, in, runs, cp)
			if err != nil {
				return nil, 0, err
			}
			setSize(in, uint64(len(blocks))*blockSize, uint64(len(blocks))+tree)
			f.nodes[child] = &node{raw: in, links: dirLinks(n)}
			out = append(out, dirent{child, name, 2})
			subdirs++
		case m.IsRegular():
			if hasStat && st.nlink > 1 {
				if prev, ok := f.links[[2]uint64{st.dev, st.ino}]; ok {
					f.nodes[prev].links++
					out = append(out, dirent{prev, name, 1})
					continue
				}
			}
			child, err := f.allocIno(false)
			if err != nil {
				return nil, 0, err
			}
			in := f.fileInode(sIFREG|perm, st, info.ModTime())
			if err := f.addFile(w, cp, child, in, info.Size()); err != nil {
				return nil, 0, err
			}
			f.nodes[child] = &node{raw: in, links: 1}
			if hasStat && st.nlink > 1 {
				f.links[[2]uint64{st.dev, st.ino}] = child
			}
			out = append(out, dirent{child, name, 1})
		case m&fs.ModeSymlink != 0:
			target, err := fs.ReadLink(f.o.Root, cp)
			if err != nil {
				return nil, 0, fmt.Errorf("ext4: tree: %w", err)
			}
			if len(target) >= blockSize {
				return nil, 0, fmt.Errorf("ext4: tree: %s: symlink target longer than %d bytes", cp, blockSize-1)
			}
			child, err := f.allocIno(false)
			if err != nil {
				return nil, 0, err
			}
			in := f.fileInode(sIFLNK|0o777, st, info.ModTime())
			if len(target) < 60 {
				// fast symlink: the target lives in i_block
				copy(in[0x28:], target)
				setSize(in, uint64(len(target)), 0)
			} else {
				runs, err := f.allocData(1, cp)
				if err != nil {
					return nil, 0, err
				}
				blk := make([]byte, blockSize)
				copy(blk, target)
				f.putRuns(runs, [][]byte{blk})
				le.PutUint32(in[0x20:], extentsFl)
				if _, err := f.mapExtents(child, in, runs, cp); err != nil {
					return nil, 0, err
				}
				setSize(in, uint64(len(target)), 1)
			}
			f.nodes[child] = &node{raw: in, links: 1}
			out = append(out, dirent{child, name, 7})
		case m&(fs.ModeDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0:
			typ := uint16(sIFIFO)
			switch {
			case m&fs.ModeCharDevice != 0:
				typ = sIFCHR
			case m&fs.ModeDevice != 0:
				typ = sIFBLK
			case m&fs.ModeSocket != 0:
				typ = sIFSOCK
			}
			child, err := f.allocIno(false)
			if err != nil {
				return nil, 0, err
			}
			in := f.fileInode(typ|perm, st, info.ModTime())
			if typ == sIFCHR || typ == sIFBLK {
				maj, min := st.rdevMajor, st.rdevMinor
				if maj < 256 && min < 256 {
					le.PutUint32(in[0x28:], maj<<8|min)
				} else {
					le.PutUint32(in[0x2C:], (min&0xff)|(maj<<8)|((min&^0xff)<<12))
				}
			}
			f.nodes[child] = &node{raw: in, links: 1}
			out = append(out, dirent{child, name, fileType[typ]})
		default:
			return nil, 0, fmt.Errorf("ext4: tree: %s: unsupported file type %v", cp, m.Type())
		}
	}
	return out, subdirs, nil
}

// addFile copies a regular file's data into newly allocated blocks.
func (f *formatter) addFile(w io.WriterAt, p string, ino uint32, in []byte, size int64) error {
	le.PutUint32(in[0x20:], extentsFl)
	n := (uint64(size) + blockSize - 1) / blockSize
	var runs []extent
	if n > 0 {
		var err error
		if runs, err = f.allocData(n, p); err != nil {
			return err
		}
	}
	src, err := f.o.Root.Open(p)
	if err != nil {
		return fmt.Errorf("ext4: tree: %w", err)
	}
	defer src.Close()
	buf := make([]byte, 1<<20)
	var done int64
	for _, r := range runs {
		off := int64(r.start) * blockSize
		left := int64(r.len) * blockSize
		for left > 0 && done < size {
			k := min(int64(len(buf)), left, size-done)
			if _, err := io.ReadFull(src, buf[:k]); err != nil {
				return fmt.Errorf("ext4: tree: %s: %w (did it change while being copied?)", p, err)
			}
			// pad the last block so no stale bytes follow the end of the file
			wk := (k + blockSize - 1) / blockSize * blockSize
			clear(buf[k:wk])
			if _, err := w.WriteAt(buf[:wk], off); err != nil {
				return fmt.Errorf("ext4: writing %s: %w", p, err)
			}
			off += wk
			left -= wk
			done += k
		}
	}
	if k, _ := src.Read(buf[:1]); k != 0 {
		return fmt.Errorf("ext4: tree: %s grew while being copied", p)
	}
	tree, err := f.mapExtents(ino, in, runs, p)
	if err != nil {
		return err
	}
	setSize(in, uint64(size), n+tree)
	f.dataBytes += n * blockSize
	return nil
}

// dirBlocks packs entries into directory blocks, each ending in the checksum tail.
func (f *formatter) dirBlocks(dirIno uint32, entries []dirent) [][]byte {
	const tail = 12
	var blocks [][]byte
	var blk []byte
	off, last := 0, -1
	finish := func() {
		if blk == nil {
			return
		}
		le.PutUint16(blk[last+4:], uint16(blockSize-tail-last))
		t := blk[blockSize-tail:]
		le.PutUint16(t[4:], tail)
		t[7] = 0xDE
		le.PutUint32(t[8:], crc(f.inodeSeed(dirIno), blk[:blockSize-tail]))
		blocks = append(blocks, blk)
		blk = nil
	}
	for _, e := range entries {
		rec := (8 + len(e.name) + 3) &^ 3
		if blk == nil || off+rec > blockSize-tail {
			finish()
			blk = make([]byte, blockSize)
			off = 0
		}
		le.PutUint32(blk[off:], e.ino)
		le.PutUint16(blk[off+4:], uint16(rec))
		blk[off+6] = byte(len(e.name))
		blk[off+7] = e.ftype
		copy(blk[off+8:], e.name)
		last = off
		off += rec
	}
	finish()
	return blocks
}
