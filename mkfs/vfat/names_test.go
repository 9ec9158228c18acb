package vfat

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
)

// FuzzNames checks, for any name FAT accepts, that the generated short name is a valid,
// upper-case 8.3 name unique in its directory and that the long-name entries decode back to
// the name.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"a", "README.TXT", "readme.txt", "a long name.text", ".x", "x+y", "日本語", "😀", "a.b.c.d", "~1", "12345678.1234", strings.Repeat("z", 255)} {
		f.Add(s, s+"2")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if checkLongName(a) != nil || checkLongName(b) != nil || foldKey(a) == foldKey(b) {
			return
		}
		sn := newShortNamer()
		var shorts [][11]byte
		for _, name := range []string{a, b} {
			s, _, ok := exactShort(name)
			if ok {
				if !sn.reserve(s) {
					t.Fatalf("%q: exact short name %q taken", name, s[:])
				}
			} else {
				var err error
				if s, err = sn.generate(name); err != nil {
					t.Fatal(err)
				}
			}
			shorts = append(shorts, s)
			base, ext := strings.TrimRight(string(s[:8]), " "), strings.TrimRight(string(s[8:]), " ")
			if base == "" || strings.Contains(base, " ") || strings.Contains(ext, " ") {
				t.Fatalf("%q: short name %q has inner spaces or no base", name, s[:])
			}
			for _, c := range base + ext {
				if !isShortChar(c) || c >= 'a' && c <= 'z' {
					t.Fatalf("%q: short name %q has %q", name, s[:], c)
				}
			}
			var u []uint16
			ents := lfnEntries(name, s)
			for i := len(ents) - 1; i >= 0; i-- {
				if ents[i][13] != lfnChecksum(s) || ents[i][11] != attrLongName {
					t.Fatalf("%q: entry %d has checksum %#x attr %#x", name, i, ents[i][13], ents[i][11])
				}
				for k := 0; k < 13; k++ {
					o := lfnSlot(k)
					u = append(u, uint16(ents[i][o])|uint16(ents[i][o+1])<<8)
				}
			}
			if end := slices.Index(u, 0); end >= 0 {
				u = u[:end]
			} else if len(u) != len(utf16.Encode([]rune(name))) {
				t.Fatalf("%q: no terminator and wrong length", name)
			}
			if string(utf16.Decode(u)) != name {
				t.Fatalf("%q: long name entries decode to %q", name, string(utf16.Decode(u)))
			}
		}
		if shorts[0] == shorts[1] {
			t.Fatalf("%q and %q share the short name %q", a, b, shorts[0][:])
		}
	})
}
