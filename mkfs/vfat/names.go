package vfat

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// NT case bits in a short entry (byte 12): the base or the extension is shown in lower case.
// Windows NT, Linux (shortname=mixed displays them), mtools, EDK2 and U-Boot all honor them, so
// "readme.txt" needs no long-name entries.
const (
	caseLowerBase = 0x08
	caseLowerExt  = 0x10
)

// shortChars are the ASCII characters besides letters and digits allowed in a short name.
// Space is legal on disk but Linux and Windows never generate it, so names with spaces get a
// long name.
const shortChars = "$%'-_@~`!(){}^#&"

func isShortChar(r rune) bool {
	return r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' ||
		r < utf8.RuneSelf && strings.ContainsRune(shortChars, r)
}

// longInvalid are the characters Windows and Linux vfat refuse in long names.
const longInvalid = "\"*/:<>?\\|"

// checkLongName rejects names FAT cannot store.
func checkLongName(name string) error {
	if !utf8.ValidString(name) {
		return fmt.Errorf("name is not valid UTF-8")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(longInvalid, r) {
			return fmt.Errorf("character %q is not allowed in FAT names", r)
		}
	}
	if strings.HasSuffix(name, ".") || strings.HasSuffix(name, " ") {
		// Windows and Linux strip trailing dots and spaces on lookup: the file would be
		// unreachable under its own name.
		return fmt.Errorf("FAT names cannot end in a dot or a space")
	}
	if n := len(utf16.Encode([]rune(name))); n > 255 {
		return fmt.Errorf("name is %d UTF-16 units long, FAT allows 255", n)
	}
	return nil
}

// exactShort reports whether name is itself a valid 8.3 name whose base and extension are
// each entirely upper or lower case; it returns the 11-byte on-disk name and the NT case bits.
func exactShort(name string) (short [11]byte, lcase byte, ok bool) {
	if name == "" || name[0] == '.' {
		return short, 0, false
	}
	base, ext := name, ""
	if i := strings.IndexByte(name, '.'); i >= 0 {
		base, ext = name[:i], name[i+1:]
		if strings.IndexByte(ext, '.') >= 0 || ext == "" {
			return short, 0, false
		}
	}
	if len(base) < 1 || len(base) > 8 || len(ext) > 3 {
		return short, 0, false
	}
	partCase := func(s string) (lower bool, ok bool) {
		hasUp, hasLow := false, false
		for _, r := range s {
			if !isShortChar(r) {
				return false, false
			}
			hasUp = hasUp || r >= 'A' && r <= 'Z'
			hasLow = hasLow || r >= 'a' && r <= 'z'
		}
		return hasLow, !(hasUp && hasLow)
	}
	lb, okb := partCase(base)
	le, oke := partCase(ext)
	if !okb || !oke {
		return short, 0, false
	}
	if lb {
		lcase |= caseLowerBase
	}
	if le {
		lcase |= caseLowerExt
	}
	return pack83(strings.ToUpper(base), strings.ToUpper(ext)), lcase, true
}

func pack83(base, ext string) (s [11]byte) {
	for i := range s {
		s[i] = ' '
	}
	copy(s[:8], base)
	copy(s[8:], ext)
	return s
}

// basis derives the uppercase short-name basis of a long name the way Windows, Linux vfat and
// mtools do: leading dots and all spaces dropped, periods other than the last dropped,
// characters with no short form replaced by '_', base cut to 8 and extension to 3 characters.
// lossy reports that the basis does not round-trip to the long name, so a numeric tail is
// required.
func basis(name string) (base, ext string, lossy bool) {
	trimmed := strings.TrimLeft(name, ".")
	lossy = trimmed != name
	b, e := trimmed, ""
	if i := strings.LastIndexByte(trimmed, '.'); i >= 0 {
		b, e = trimmed[:i], trimmed[i+1:]
	}
	conv := func(s string, limit int) string {
		var out []byte
		for _, r := range s {
			switch {
			case r == ' ' || r == '.':
				lossy = true
				continue
			case isShortChar(r):
				if r >= 'a' && r <= 'z' {
					r -= 'a' - 'A'
				}
			default:
				lossy = true
				r = '_'
			}
			if len(out) == limit {
				lossy = true
				break
			}
			out = append(out, byte(r))
		}
		return string(out)
	}
	base, ext = conv(b, 8), conv(e, 3)
	if base == "" {
		base, lossy = "_", true
	}
	return base, ext, lossy
}

// shortNamer hands out the short names of one directory.
type shortNamer struct {
	used map[[11]byte]bool
	// next is, per basis, the first numeric tail not yet known to be taken: names are never
	// freed, so thousands of similar names cost linear, not quadratic, time.
	next map[string]int
}

func newShortNamer() *shortNamer {
	return &shortNamer{used: map[[11]byte]bool{pack83(".", ""): true, pack83("..", ""): true}, next: map[string]int{}}
}

// reserve claims an exact 8.3 name; it fails if another entry already holds it.
func (s *shortNamer) reserve(n [11]byte) bool {
	if s.used[n] {
		return false
	}
	s.used[n] = true
	return true
}

// generate picks the short name for a long name: the basis itself when it is lossless and
// free, else the first free BASE~N, shortening the base as N grows (as mtools does, so that
// even thousands of similar names stay deterministic).
func (s *shortNamer) generate(name string) ([11]byte, error) {
	base, ext, lossy := basis(name)
	if !lossy {
		if n := pack83(base, ext); !s.used[n] {
			s.used[n] = true
			return n, nil
		}
	}
	key := base + "." + ext
	for i := max(s.next[key], 1); i <= 999999; i++ {
		tail := "~" + strconv.Itoa(i)
		b := base
		if len(b) > 8-len(tail) {
			b = b[:8-len(tail)]
		}
		if i <= 9 && len(b) > 6 {
			b = b[:6]
		}
		n := pack83(b+tail, ext)
		if !s.used[n] {
			s.used[n] = true
			s.next[key] = i + 1
			return n, nil
		}
	}
	return [11]byte{}, fmt.Errorf("no free short name for %q", name)
}

// lfnChecksum is the checksum of a short name that each long-name entry carries.
func lfnChecksum(short [11]byte) byte {
	var sum byte
	for _, c := range short {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	return sum
}

// lfnEntries encodes name as the long-name entries that precede its short entry, in on-disk
// order (the last part first, flagged 0x40).
func lfnEntries(name string, short [11]byte) [][32]byte {
	u := utf16.Encode([]rune(name))
	n := (len(u) + 12) / 13
	sum := lfnChecksum(short)
	out := make([][32]byte, 0, n)
	for seq := n; seq >= 1; seq-- {
		var e [32]byte
		e[0] = byte(seq)
		if seq == n {
			e[0] |= 0x40
		}
		e[11] = attrLongName
		e[13] = sum
		for i := 0; i < 13; i++ {
			k := (seq-1)*13 + i
			var c uint16
			switch {
			case k < len(u):
				c = u[k]
			case k == len(u):
				c = 0
			default:
				c = 0xFFFF
			}
			off := lfnSlot(i)
			e[off], e[off+1] = byte(c), byte(c>>8)
		}
		out = append(out, e)
	}
	return out
}

// lfnSlot is the byte offset of the i-th UTF-16 unit inside a long-name entry.
func lfnSlot(i int) int {
	switch {
	case i < 5:
		return 1 + 2*i
	case i < 11:
		return 14 + 2*(i-5)
	default:
		return 28 + 2*(i-11)
	}
}

// lfnCount is the number of long-name entries name needs.
func lfnCount(name string) int {
	return (len(utf16.Encode([]rune(name))) + 12) / 13
}

// foldKey is the key under which FAT compares names: case-insensitively.
func foldKey(name string) string { return strings.ToUpper(strings.ToLower(name)) }
