// Package squashfs writes squashfs 4.0 images the way the Linux kernel reads them, from a
// directory on disk or from entries composed by the caller, without root and without
// squashfs-tools.
//
// Images are reproducible: the same tree and options give the same bytes whatever the
// number of cores, the order a file system lists directories in, or the host. Data blocks
// are compressed on all cores and written in order with a bounded number of blocks in
// flight; file contents are streamed from their sources, never copied to a temporary tree.
package squashfs

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/piboot/piboot/internal/iszero"
	"io"
	"math"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
)

// Options control the image.
type Options struct {
	Compression Compression // default Zstd
	// Level is the compressor's level: zstd 1-22 (default 15), gzip 1-9 (default 9),
	// lz4 0 (fast, default) or 1-9 (high compression); xz and none take none.
	Level int
	// BlockSize is the data block size, a power of two from 4 KiB to 1 MiB (default 128 KiB).
	BlockSize int
	// NoFragments stores file tails in blocks of their own instead of packing them together.
	NoFragments bool
	// NoDuplicates turns off duplicate-file detection (identical files share their data).
	NoDuplicates bool
	// NoExport leaves out the export table (needed only to export the image over NFS).
	NoExport bool
	// AllRoot makes every file owned by uid 0 and gid 0.
	AllRoot bool
	// Mtime, if not nil, is the mtime of every inode and the image's creation time
	// (SOURCE_DATE_EPOCH). Otherwise inodes keep their mtimes and the image's creation
	// time is the newest of them, so that it depends on the input only.
	Mtime *int64
	// MaxSize, if positive, is the most bytes the image may take (e.g. the partition's
	// size); a bigger image is an error and nothing is written at or past MaxSize.
	MaxSize int64
	// Workers is the number of compressing goroutines (default GOMAXPROCS).
	Workers int
}

// ErrTooBig is returned (wrapped) when the image does not fit into Options.MaxSize.
var ErrTooBig = errors.New("squashfs image does not fit")

// WriteDir writes the directory dir as an image into w and returns the bytes used.
func WriteDir(w io.WriterAt, dir string, opts Options, dopts DirOptions) (int64, error) {
	t := NewTree()
	if err := t.AddDir(dir, "", dopts); err != nil {
		return 0, err
	}
	return Write(w, t, opts)
}

// Write writes t as a squashfs image into w, at offsets [0, n), and returns n: the image
// size padded to 4 KiB (or to MaxSize, when that is smaller). The superblock is written
// last, so an interrupted write never leaves something that looks like a valid image.
func Write(w io.WriterAt, t *Tree, opts Options) (int64, error) {
	if opts.Compression == "" {
		opts.Compression = Zstd
	}
	if opts.BlockSize == 0 {
		opts.BlockSize = 128 << 10
	}
	bs := opts.BlockSize
	if bs < 4<<10 || bs > 1<<20 || bs&(bs-1) != 0 {
		return 0, fmt.Errorf("block size %d: must be a power of two from 4 KiB to 1 MiB", bs)
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	cd, err := newCodec(opts.Compression, opts.Level, bs)
	if err != nil {
		return 0, err
	}
	wr := &writer{w: w, max: opts.MaxSize, opts: opts, cd: cd, bs: bs, tree: t}
	return wr.run()
}

type writer struct {
	w    io.WriterAt
	max  int64
	pos  int64
	opts Options
	cd   codec
	bs   int
	tree *Tree

	order    []*inode // every inode once, in inode-number order
	sorted   map[*node][]*node
	ids      map[uint32]uint16
	idList   []uint32
	frags    []fragEntry
	mkfsTime uint32
}

type fragEntry struct {
	start uint64
	size  uint32
}

func (wr *writer) run() (int64, error) {
	wr.prepare()
	if len(wr.order) > math.MaxUint32-1 {
		return 0, fmt.Errorf("%d inodes: more than squashfs can number", len(wr.order))
	}
	if err := wr.collectIDs(); err != nil {
		return 0, err
	}
	// Compressor options live in a metadata block right after the superblock.
	wr.pos = superblockSize
	if wr.cd.options != nil {
		b := le(nil).u16(uint16(len(wr.cd.options)) | metaUncompressed)
		if err := wr.write(append(b, wr.cd.options...)); err != nil {
			return 0, err
		}
	}
	if err := wr.writeData(); err != nil {
		return 0, err
	}
	return wr.writeTables()
}

// write appends b at the current position, refusing to cross MaxSize.
func (wr *writer) write(b []byte) error {
	if wr.max > 0 && wr.pos+int64(len(b)) > wr.max {
		return fmt.Errorf("%w into %d bytes: it needs more than %d", ErrTooBig, wr.max, wr.pos+int64(len(b)))
	}
	if _, err := wr.w.WriteAt(b, wr.pos); err != nil {
		return err
	}
	wr.pos += int64(len(b))
	return nil
}

// prepare numbers the inodes in the order their inodes are written: a directory's
// children (subdirectories recursively) before the directory itself, so that a
// directory's listing and inode can refer to inodes already placed.
func (wr *writer) prepare() {
	wr.sorted = map[*node][]*node{}
	var reset func(n *node)
	reset = func(n *node) {
		i := n.ino
		i.num, i.ref, i.written, i.nlink = 0, 0, false, 0
		i.start, i.blocks, i.frag, i.fragOff, i.sparse, i.xattrIdx, i.dupOf = 0, nil, invalidFrag, 0, 0, invalidXattr, nil
		for _, c := range n.children {
			reset(c)
		}
	}
	reset(wr.tree.root)
	var walk func(d *node)
	walk = func(d *node) {
		kids := d.sortedChildren()
		wr.sorted[d] = kids
		d.ino.nlink = 2
		for _, c := range kids {
			if c.children != nil {
				d.ino.nlink++
				walk(c)
				continue
			}
			c.ino.nlink++
			if c.ino.num == 0 {
				wr.order = append(wr.order, c.ino)
				c.ino.num = uint32(len(wr.order))
			}
		}
		wr.order = append(wr.order, d.ino)
		d.ino.num = uint32(len(wr.order))
	}
	walk(wr.tree.root)
	var newest int64
	for _, i := range wr.order {
		newest = max(newest, i.mtime)
	}
	wr.mkfsTime = clampTime(newest)
	if wr.opts.Mtime != nil {
		wr.mkfsTime = clampTime(*wr.opts.Mtime)
	}
}

func clampTime(t int64) uint32 {
	return uint32(min(max(t, 0), math.MaxUint32))
}

func (wr *writer) collectIDs() error {
	set := map[uint32]bool{0: true}
	if !wr.opts.AllRoot {
		for _, i := range wr.order {
			set[i.uid], set[i.gid] = true, true
		}
	}
	if len(set) > 65536 {
		return fmt.Errorf("%d distinct uids and gids: squashfs stores at most 65536", len(set))
	}
	wr.idList = wr.idList[:0]
	for id := range set {
		wr.idList = append(wr.idList, id)
	}
	sort.Slice(wr.idList, func(a, b int) bool { return wr.idList[a] < wr.idList[b] })
	wr.ids = map[uint32]uint16{}
	for k, id := range wr.idList {
		wr.ids[id] = uint16(k)
	}
	return nil
}

// dataFiles returns the regular files whose data must be written, in inode order, after
// marking duplicates (same size and SHA-256 as an earlier file) to share that file's data.
func (wr *writer) dataFiles() ([]*inode, error) {
	var files []*inode
	bySize := map[int64][]*inode{}
	for _, i := range wr.order {
		if i.mode.Type() == 0 && i.size > 0 {
			files = append(files, i)
			bySize[i.size] = append(bySize[i.size], i)
		}
	}
	if wr.opts.NoDuplicates {
		return files, nil
	}
	var candidates []*inode
	for _, i := range files {
		if len(bySize[i.size]) > 1 {
			candidates = append(candidates, i)
		}
	}
	sums := make([][32]byte, len(candidates))
	errs := make([]error, len(candidates))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range wr.opts.Workers {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= len(candidates) {
					return
				}
				sums[k], errs[k] = hashFile(candidates[k])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	type key struct {
		size int64
		sum  [32]byte
	}
	first := map[key]*inode{}
	for k, i := range candidates {
		kk := key{i.size, sums[k]}
		if f := first[kk]; f != nil {
			i.dupOf = f
		} else {
			first[kk] = i
		}
	}
	unique := files[:0:0]
	for _, i := range files {
		if i.dupOf == nil {
			unique = append(unique, i)
		}
	}
	return unique, nil
}

func hashFile(i *inode) ([32]byte, error) {
	var sum [32]byte
	r, err := i.open()
	if err != nil {
		return sum, err
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return sum, fmt.Errorf("%s: %w", i.source, err)
	}
	if n != i.size {
		return sum, fmt.Errorf("%s: changed size while the image was built (%d bytes, was %d)", i.source, n, i.size)
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// job is one data block or fragment block on its way through the compressors.
type job struct {
	raw    []byte
	out    []byte
	stored []byte
	size   uint32 // the on-disk size word
	sparse bool
	ino    *inode // nil: a fragment block
	idx    int
	done   chan struct{}
	err    error
}

// writeData streams every file's blocks through the compressors and writes them in file
// order. A bounded number of blocks (see inflight) is in memory at a time.
func (wr *writer) writeData() error {
	files, err := wr.dataFiles()
	if err != nil {
		return err
	}
	bs := wr.bs
	// Enough blocks in flight (8 MiB) that compressors keep busy through the reader's and
	// writer's scheduling delays on a loaded machine, and never fewer than two per worker.
	inflight := max(2*wr.opts.Workers+2, min(256, 8<<20/bs))
	// Each job in flight holds up to two buffers; every worker one more.
	pool := newBufPool(2*inflight+wr.opts.Workers+2, bs)
	work := make(chan *job, inflight)
	ordered := make(chan *job, inflight)
	var stop atomic.Bool

	comps := make([]compressor, wr.opts.Workers)
	for k := range comps {
		if comps[k], err = wr.cd.new(); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	for _, c := range comps {
		wg.Go(func() {
			for j := range work {
				buf := pool.get()
				out, err := c.compress(buf, j.raw)
				j.err = err
				if err == nil && out != nil && len(out) < len(j.raw) {
					j.out, j.stored, j.size = out, out, uint32(len(out))
				} else {
					pool.put(buf)
					j.stored, j.size = j.raw, uint32(len(j.raw))|dataUncompressed
				}
				close(j.done)
			}
		})
	}

	var readErr error
	go func() {
		defer close(ordered)
		defer close(work)
		submit := func(j *job) {
			j.done = make(chan struct{})
			ordered <- j
			if j.sparse {
				close(j.done)
			} else {
				work <- j
			}
		}
		frag := pool.get()
		nfrag := 0
		for _, f := range files {
			if stop.Load() {
				break
			}
			if err := wr.readFile(f, pool, submit, &frag, &nfrag, &stop); err != nil {
				readErr = err
				stop.Store(true)
				break
			}
		}
		if len(frag) > 0 && readErr == nil {
			submit(&job{raw: frag})
		}
	}()

	var werr error
	for j := range ordered {
		<-j.done
		if werr == nil && j.err != nil {
			werr = j.err
		}
		if werr == nil {
			werr = wr.place(j)
		}
		if werr != nil {
			stop.Store(true)
		}
		if j.raw != nil {
			pool.put(j.raw)
		}
		if j.out != nil {
			pool.put(j.out)
		}
	}
	wg.Wait()
	if readErr != nil {
		return readErr
	}
	if werr != nil {
		return werr
	}
	for _, i := range wr.order {
		if d := i.dupOf; d != nil {
			i.start, i.blocks, i.frag, i.fragOff, i.sparse = d.start, d.blocks, d.frag, d.fragOff, d.sparse
		}
	}
	return nil
}

// place writes a finished block and records where it went.
func (wr *writer) place(j *job) error {
	if j.ino == nil {
		wr.frags = append(wr.frags, fragEntry{start: uint64(wr.pos), size: j.size})
		return wr.write(j.stored)
	}
	if j.idx == 0 {
		j.ino.start = uint64(wr.pos)
	}
	if j.sparse {
		j.ino.blocks[j.idx] = 0
		return nil
	}
	j.ino.blocks[j.idx] = j.size
	return wr.write(j.stored)
}

// readFile cuts f into blocks for the compressors and its tail into the open fragment.
func (wr *writer) readFile(f *inode, pool *bufPool, submit func(*job), frag *[]byte, nfrag *int, stop *atomic.Bool) error {
	r, err := f.open()
	if err != nil {
		return err
	}
	defer r.Close()
	bs := int64(wr.bs)
	nblocks := (f.size + bs - 1) / bs
	tail := int64(0)
	if !wr.opts.NoFragments && f.size%bs != 0 {
		nblocks, tail = f.size/bs, f.size%bs
	}
	f.blocks = make([]uint32, nblocks)
	for k := range nblocks {
		if stop.Load() {
			return nil // the writer failed: its error is the one reported
		}
		n := min(bs, f.size-k*bs)
		buf := pool.get()[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return wr.readErr(f, err)
		}
		j := &job{raw: buf, ino: f, idx: int(k)}
		if iszero.Bytes(buf) {
			j.sparse = true
			f.sparse += uint64(n)
		}
		submit(j)
	}
	if tail > 0 {
		if int64(len(*frag))+tail > bs {
			submit(&job{raw: *frag})
			*frag = pool.get()
			*nfrag++
		}
		f.frag, f.fragOff = uint32(*nfrag), uint32(len(*frag))
		*frag = (*frag)[:len(*frag)+int(tail)]
		if _, err := io.ReadFull(r, (*frag)[f.fragOff:]); err != nil {
			return wr.readErr(f, err)
		}
	}
	var one [1]byte
	if n, _ := r.Read(one[:]); n > 0 {
		return fmt.Errorf("%s: grew while the image was built (was %d bytes)", f.source, f.size)
	}
	return nil
}

func (wr *writer) readErr(f *inode, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: shrank while the image was built (was %d bytes)", f.source, f.size)
	}
	return fmt.Errorf("%s: %w", f.source, err)
}

// bufPool recycles block buffers. Unlike sync.Pool it survives garbage collections, so
// the buffers in use stay the same few whatever the GC does.
type bufPool struct {
	free chan []byte
	size int
}

func newBufPool(n, size int) *bufPool { return &bufPool{free: make(chan []byte, n), size: size} }

func (p *bufPool) get() []byte {
	select {
	case b := <-p.free:
		return b
	default:
		return make([]byte, 0, p.size)
	}
}

func (p *bufPool) put(b []byte) {
	select {
	case p.free <- b[:0]:
	default:
	}
}

var zeroPage [4096]byte

// writeTables writes the inode and directory tables and the fragment, export, id and
// xattr tables after the data, then the padding and finally the superblock.
func (wr *writer) writeTables() (int64, error) {
	raw := wr.opts.Compression == None
	// The tables are built one after the other in this goroutine: one compressor serves all.
	comp, err := wr.cd.new()
	if err != nil {
		return 0, err
	}
	newMeta := func() (*metaStream, error) {
		return &metaStream{comp: comp, raw: raw}, nil
	}
	xattrTable, err := wr.buildXattrs(newMeta)
	if err != nil {
		return 0, err
	}
	inodes, err := newMeta()
	if err != nil {
		return 0, err
	}
	dirs, err := newMeta()
	if err != nil {
		return 0, err
	}
	wr.writeInodes(inodes, dirs)
	root := wr.tree.root.ino.ref

	var sb superblock
	sb.inodeTable = uint64(wr.pos)
	b, err := inodes.finish()
	if err != nil {
		return 0, err
	}
	if err := wr.write(b); err != nil {
		return 0, err
	}
	sb.dirTable = uint64(wr.pos)
	if b, err = dirs.finish(); err != nil {
		return 0, err
	}
	if err := wr.write(b); err != nil {
		return 0, err
	}

	frags, err := newMeta()
	if err != nil {
		return 0, err
	}
	for _, f := range wr.frags {
		frags.write(le(nil).u64(f.start).u32(f.size).u32(0))
	}
	if sb.fragTable, err = wr.writeIndexed(frags); err != nil {
		return 0, err
	}

	sb.exportTable = invalidTable
	if !wr.opts.NoExport {
		exp, err := newMeta()
		if err != nil {
			return 0, err
		}
		for _, i := range wr.order {
			exp.write(le(nil).u64(i.ref))
		}
		if sb.exportTable, err = wr.writeIndexed(exp); err != nil {
			return 0, err
		}
	}

	ids, err := newMeta()
	if err != nil {
		return 0, err
	}
	for _, id := range wr.idList {
		ids.write(le(nil).u32(id))
	}
	if sb.idTable, err = wr.writeIndexed(ids); err != nil {
		return 0, err
	}

	sb.xattrTable = invalidTable
	if xattrTable != nil {
		if sb.xattrTable, err = xattrTable.write(wr); err != nil {
			return 0, err
		}
	}

	used := wr.pos
	padded := (used + 4095) &^ 4095
	if wr.max > 0 {
		padded = min(padded, wr.max)
	}
	for wr.pos < padded {
		if err := wr.write(zeroPage[:min(int64(len(zeroPage)), padded-wr.pos)]); err != nil {
			return 0, err
		}
	}

	flags := uint16(0)
	if raw {
		flags |= flagNoI | flagNoD | flagNoF | flagNoX | flagNoID
	}
	if wr.opts.NoFragments {
		flags |= flagNoFrag
	}
	if !wr.opts.NoDuplicates {
		flags |= flagDuplicates
	}
	if !wr.opts.NoExport {
		flags |= flagExport
	}
	if xattrTable == nil {
		flags |= flagNoXattrs
	}
	if wr.cd.options != nil {
		flags |= flagCompOpt
	}
	sb.inodes = uint32(len(wr.order))
	sb.mkfsTime = wr.mkfsTime
	sb.blockSize = uint32(wr.bs)
	sb.fragments = uint32(len(wr.frags))
	sb.compression = wr.cd.id
	sb.flags = flags
	sb.ids = uint16(len(wr.idList))
	sb.root = root
	sb.bytesUsed = uint64(used)
	if _, err := wr.w.WriteAt(sb.bytes(), 0); err != nil {
		return 0, err
	}
	return padded, nil
}

// writeIndexed writes a table's metadata blocks followed by the array of their positions
// and returns the position of that array, which is what the superblock points to.
func (wr *writer) writeIndexed(m *metaStream) (uint64, error) {
	b, err := m.finish()
	if err != nil {
		return 0, err
	}
	base := uint64(wr.pos)
	if err := wr.write(b); err != nil {
		return 0, err
	}
	start := uint64(wr.pos)
	var idx le
	for _, s := range m.starts {
		idx = idx.u64(base + s)
	}
	return start, wr.write(idx)
}

type superblock struct {
	inodes, mkfsTime, blockSize, fragments uint32
	compression, flags, ids                uint16
	root, bytesUsed, idTable, xattrTable   uint64
	inodeTable, dirTable, fragTable        uint64
	exportTable                            uint64
}

func (s *superblock) bytes() []byte {
	blockLog := uint16(0)
	for 1<<blockLog < s.blockSize {
		blockLog++
	}
	return le(nil).u32(magic).u32(s.inodes).u32(s.mkfsTime).u32(s.blockSize).
		u32(s.fragments).u16(s.compression).u16(blockLog).u16(s.flags).u16(s.ids).
		u16(4).u16(0).u64(s.root).u64(s.bytesUsed).u64(s.idTable).u64(s.xattrTable).
		u64(s.inodeTable).u64(s.dirTable).u64(s.fragTable).u64(s.exportTable)
}

// xattrTables holds the built xattr table until its position is known: key/value lists,
// then the id entries pointing at them, then a header with the index of the id blocks.
type xattrTables struct {
	kv, ids *metaStream
	count   uint32
}

func (wr *writer) buildXattrs(newMeta func() (*metaStream, error)) (*xattrTables, error) {
	var x *xattrTables
	seen := map[string]uint32{}
	for _, i := range wr.order {
		if len(i.xattrs) == 0 {
			continue
		}
		if x == nil {
			kv, err := newMeta()
			if err != nil {
				return nil, err
			}
			ids, err := newMeta()
			if err != nil {
				return nil, err
			}
			x = &xattrTables{kv: kv, ids: ids}
		}
		var enc []byte
		for _, a := range i.xattrs {
			typ, rest, _ := xattrPrefix(a.name)
			enc = le(enc).u16(typ).u16(uint16(len(rest)))
			enc = append(enc, rest...)
			enc = le(enc).u32(uint32(len(a.value)))
			enc = append(enc, a.value...)
		}
		key := string(enc)
		if k, ok := seen[key]; ok {
			i.xattrIdx = k
			continue
		}
		ref := x.kv.ref()
		x.kv.write(enc)
		x.ids.write(le(nil).u64(ref).u32(uint32(len(i.xattrs))).u32(uint32(len(enc))))
		i.xattrIdx = x.count
		seen[key] = x.count
		x.count++
	}
	return x, nil
}

func (x *xattrTables) write(wr *writer) (uint64, error) {
	kv, err := x.kv.finish()
	if err != nil {
		return 0, err
	}
	kvStart := uint64(wr.pos)
	if err := wr.write(kv); err != nil {
		return 0, err
	}
	ids, err := x.ids.finish()
	if err != nil {
		return 0, err
	}
	idsStart := uint64(wr.pos)
	if err := wr.write(ids); err != nil {
		return 0, err
	}
	start := uint64(wr.pos)
	hdr := le(nil).u64(kvStart).u32(x.count).u32(0)
	for _, s := range x.ids.starts {
		hdr = hdr.u64(idsStart + s)
	}
	return start, wr.write(hdr)
}

// writeInodes fills the inode and directory tables, children before their directory.
func (wr *writer) writeInodes(inodes, dirs *metaStream) {
	var walk func(d *node, parent uint32)
	walk = func(d *node, parent uint32) {
		kids := wr.sorted[d]
		for _, c := range kids {
			if c.children != nil {
				walk(c, d.ino.num)
			} else if !c.ino.written {
				c.ino.ref = inodes.ref()
				inodes.write(wr.encodeInode(c.ino, nil))
				c.ino.written = true
			}
		}
		listing := dirListing{}
		startU := dirs.uncompressedLen()
		block, offset := dirs.pos()
		listing.build(kids)
		dirs.write(listing.buf)
		for k := range listing.index {
			listing.index[k].block = uint32(dirs.blockAt(startU + int(listing.index[k].pos)))
		}
		d.ino.ref = inodes.ref()
		inodes.write(wr.encodeInode(d.ino, &dirInfo{
			block: uint32(block), offset: offset, size: uint32(len(listing.buf)) + 3,
			parent: parent, index: listing.index,
		}))
		d.ino.written = true
	}
	walk(wr.tree.root, uint32(len(wr.order)+1))
}

type dirInfo struct {
	block  uint32
	offset uint16
	size   uint32 // listing size + 3, as the kernel counts "." and ".."
	parent uint32
	index  []dirIndex
}

type dirIndex struct {
	pos   uint32 // offset of a directory header inside the listing
	block uint32 // directory table block holding that header
	name  string // name of the header's first entry
}

// dirListing is a directory's entries as the directory table stores them: runs of up
// to 256 entries behind a header naming the inode block they share and a base inode
// number, with an index entry whenever more than a metadata block's worth of listing
// lies behind the previous index point, so that lookups can skip ahead.
type dirListing struct {
	buf   []byte
	index []dirIndex
}

func (l *dirListing) build(kids []*node) {
	hdr, count := -1, 0
	var hdrBlock uint64
	var hdrNum uint32
	indexBase := 0
	closeHdr := func() {
		if hdr >= 0 {
			putU32(l.buf[hdr:], uint32(count-1))
		}
	}
	for _, c := range kids {
		block, num := c.ino.ref>>16, c.ino.num
		esize := 8 + len(c.name)
		delta := int64(num) - int64(hdrNum)
		if hdr < 0 || count == dirMaxCount || block != hdrBlock || delta > math.MaxInt16 || delta < math.MinInt16 ||
			len(l.buf)+esize-indexBase > metadataSize {
			if hdr >= 0 && len(l.buf)+esize-indexBase > metadataSize {
				l.index = append(l.index, dirIndex{pos: uint32(len(l.buf)), name: c.name})
				indexBase = len(l.buf)
			}
			closeHdr()
			hdr, count, hdrBlock, hdrNum = len(l.buf), 0, block, num
			l.buf = le(l.buf).u32(0).u32(uint32(block)).u32(num)
			delta = 0
		}
		l.buf = le(l.buf).u16(uint16(c.ino.ref & 0xffff)).u16(uint16(int16(delta))).
			u16(basicType(c.ino.mode)).u16(uint16(len(c.name) - 1))
		l.buf = append(l.buf, c.name...)
		count++
	}
	closeHdr()
}

func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

// encodeDev encodes a Linux dev_t (glibc layout) the way squashfs stores it, the
// kernel's new_encode_dev.
func encodeDev(dev uint64) uint32 {
	major := uint32((dev>>8)&0xfff) | uint32((dev>>32)&^0xfff)
	minor := uint32(dev&0xff) | uint32((dev>>12)&^0xff)
	return minor&0xff | major<<8 | (minor&^0xff)<<12
}

func (wr *writer) encodeInode(i *inode, d *dirInfo) []byte {
	uid, gid, mtime := i.uid, i.gid, clampTime(i.mtime)
	if wr.opts.AllRoot {
		uid, gid = 0, 0
	}
	if wr.opts.Mtime != nil {
		mtime = clampTime(*wr.opts.Mtime)
	}
	hasX := i.xattrIdx != invalidXattr
	typ := basicType(i.mode)
	long := hasX
	switch typ {
	case typeDir:
		long = long || len(d.index) > 0 || d.size > math.MaxUint16
	case typeReg:
		long = long || i.nlink > 1 || i.start > math.MaxUint32 || i.size > math.MaxUint32 || i.sparse > 0
	}
	if long {
		typ += typeLDir - typeDir
	}
	b := le(nil).u16(typ).u16(unixMode(i.mode)).u16(wr.ids[uid]).u16(wr.ids[gid]).u32(mtime).u32(i.num)
	switch typ {
	case typeDir:
		b = b.u32(d.block).u32(i.nlink).u16(uint16(d.size)).u16(d.offset).u32(d.parent)
	case typeLDir:
		b = b.u32(i.nlink).u32(d.size).u32(d.block).u32(d.parent).u16(uint16(len(d.index))).u16(d.offset).u32(i.xattrIdx)
		for _, x := range d.index {
			b = b.u32(x.pos).u32(x.block).u32(uint32(len(x.name) - 1))
			b = append(b, x.name...)
		}
	case typeReg:
		b = b.u32(uint32(i.start)).u32(i.frag).u32(i.fragOff).u32(uint32(i.size))
		for _, s := range i.blocks {
			b = b.u32(s)
		}
	case typeLReg:
		b = b.u64(i.start).u64(uint64(i.size)).u64(i.sparse).u32(i.nlink).u32(i.frag).u32(i.fragOff).u32(i.xattrIdx)
		for _, s := range i.blocks {
			b = b.u32(s)
		}
	case typeSymlink, typeLSymlink:
		b = b.u32(i.nlink).u32(uint32(len(i.target)))
		b = append(b, i.target...)
		if typ == typeLSymlink {
			b = b.u32(i.xattrIdx)
		}
	case typeBlk, typeChr:
		b = b.u32(i.nlink).u32(encodeDev(i.rdev))
	case typeLBlk, typeLChr:
		b = b.u32(i.nlink).u32(encodeDev(i.rdev)).u32(i.xattrIdx)
	case typeFifo, typeSock:
		b = b.u32(i.nlink)
	case typeLFifo, typeLSock:
		b = b.u32(i.nlink).u32(i.xattrIdx)
	}
	return b
}
