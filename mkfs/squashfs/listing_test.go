package squashfs

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
)

// FuzzDirListing builds directory listings for random directories (names, inode positions
// and numbers, including the backward references hardlinks make) and checks them the way
// the kernel reads them: header limits, every entry decoded back, every index entry at a
// header naming its first entry, and lookups through the index finding exactly the
// names present. `go test` runs the seeds; `go test -fuzz FuzzDirListing` explores.
func FuzzDirListing(f *testing.F) {
	f.Add(uint64(1), uint16(0), uint8(0), uint8(0))
	f.Add(uint64(2), uint16(1), uint8(0), uint8(3))
	f.Add(uint64(3), uint16(300), uint8(1), uint8(0))
	f.Add(uint64(4), uint16(5000), uint8(3), uint8(1))
	f.Add(uint64(5), uint16(9000), uint8(0), uint8(3))
	f.Add(uint64(6), uint16(2000), uint8(255), uint8(2))
	f.Add(uint64(7), uint16(3000), uint8(0), uint8(3))
	f.Fuzz(func(t *testing.T, seed uint64, n uint16, jumps, shape uint8) {
		r := rand.New(rand.NewPCG(seed, 5))
		alphabet := "ab.-_zA0~"[:1+r.IntN(9)]
		maxLen := 255
		if shape&2 != 0 {
			maxLen = 12 // short names: more than 256 entries fit in 8 KiB of listing
		}
		seen := map[string]bool{}
		var kids []*node
		for tries := 0; len(kids) < int(n) && tries < 10*int(n); tries++ {
			var b strings.Builder
			for range 1 + r.IntN(1+r.IntN(maxLen)) {
				b.WriteByte(alphabet[r.IntN(len(alphabet))])
			}
			name := b.String()
			if seen[name] {
				continue
			}
			seen[name] = true
			kids = append(kids, &node{name: name, ino: &inode{mode: 0o644}})
		}
		sort.Slice(kids, func(a, b int) bool { return kids[a].name < kids[b].name })
		// Inodes as writeInodes places them: consecutive, of varying size, crossing
		// metadata blocks; some jump far away (subdirectories' subtrees, hardlinks).
		var block, off uint64
		small := shape&1 != 0 // fifo-sized inodes: more than 256 share a metadata block
		num := uint32(1 + r.IntN(100))
		for _, k := range kids {
			if jumps > 0 && r.IntN(256) < int(jumps) {
				if r.IntN(2) == 0 {
					num += uint32(r.IntN(100000))
					block += uint64(r.IntN(1 << 20))
				} else {
					num = uint32(1 + r.IntN(int(num)))
					block = uint64(r.IntN(int(block) + 1))
				}
			}
			k.ino.ref, k.ino.num = block<<16|off, num
			num++
			if small {
				off += uint64(20 + r.IntN(4))
			} else {
				off += uint64(32 + r.IntN(200))
			}
			if off >= metadataSize {
				off -= metadataSize
				block += uint64(100 + r.IntN(8000))
			}
			if r.IntN(7) == 0 {
				k.ino.mode = fs.ModeDir | 0o755
			}
		}
		var l dirListing
		l.build(kids)
		checkListing(t, l, kids)
		step := 1 + len(kids)/1500 // lookups scan: keep the seeds quick
		for i := 0; i < len(kids); i += step {
			k := kids[i]
			if !kernelLookup(l, k.name) {
				t.Fatalf("lookup of %q fails", k.name)
			}
			if absent := k.name + "\x01"; !seen[absent] && kernelLookup(l, absent) {
				t.Fatalf("lookup of absent %q succeeds", absent)
			}
		}
		if kernelLookup(l, "\x00") || kernelLookup(l, "\xff") {
			t.Fatal("lookup of an absent name succeeds")
		}
	})
}

type header struct {
	pos             int
	count           int
	block           uint32
	base            uint32
	first           string
	entriesFollowed int
}

func checkListing(t *testing.T, l dirListing, kids []*node) {
	t.Helper()
	le := binary.LittleEndian
	b := l.buf
	p, k := 0, 0
	headers := map[int]header{}
	for p < len(b) {
		h := header{pos: p, count: int(le.Uint32(b[p:])) + 1, block: le.Uint32(b[p+4:]), base: le.Uint32(b[p+8:])}
		if h.count > dirMaxCount {
			t.Fatalf("header at %d: %d entries", p, h.count)
		}
		p += 12
		for range h.count {
			if k >= len(kids) {
				t.Fatalf("more entries than children")
			}
			want := kids[k]
			off, delta, typ, size := le.Uint16(b[p:]), int16(le.Uint16(b[p+2:])), le.Uint16(b[p+4:]), int(le.Uint16(b[p+6:]))+1
			name := string(b[p+8 : p+8+size])
			if h.first == "" {
				h.first = name
			}
			got := fmt.Sprintf("%s ref=%d:%d num=%d type=%d", name, h.block, off, int64(h.base)+int64(delta), typ)
			exp := fmt.Sprintf("%s ref=%d:%d num=%d type=%d", want.name, want.ino.ref>>16, want.ino.ref&0xffff, want.ino.num, basicType(want.ino.mode))
			if got != exp {
				t.Fatalf("entry %d: %s, want %s", k, got, exp)
			}
			p += 8 + size
			k++
		}
		headers[h.pos] = h
	}
	if k != len(kids) {
		t.Fatalf("%d entries decoded, want %d", k, len(kids))
	}
	last := 0
	for _, x := range l.index {
		h, ok := headers[int(x.pos)]
		if !ok || int(x.pos) <= last || h.first != x.name {
			t.Fatalf("index %+v: not at a later header naming its first entry", x)
		}
		last = int(x.pos)
	}
	if len(b) > 2*metadataSize && len(l.index) == 0 {
		t.Fatalf("a %d-byte listing without index", len(b))
	}
}

// kernelLookup follows fs/squashfs/namei.c: skip to the last index entry whose name is not
// greater than name, then scan headers and entries, stopping at the first entry whose
// first byte is greater.
func kernelLookup(l dirListing, name string) bool {
	le := binary.LittleEndian
	p := 0
	for _, x := range l.index {
		if x.name > name {
			break
		}
		p = int(x.pos)
	}
	b := l.buf
	for p < len(b) {
		count := int(le.Uint32(b[p:])) + 1
		p += 12
		for range count {
			size := int(le.Uint16(b[p+6:])) + 1
			entry := string(b[p+8 : p+8+size])
			p += 8 + size
			if name[0] < entry[0] {
				return false
			}
			if entry == name {
				return true
			}
		}
	}
	return false
}
