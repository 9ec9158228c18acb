package sysupdate

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/piboot/piboot/internal/uuid"
)

// Pattern is one compiled MatchPattern: literal text and @-wildcards.
type Pattern struct {
	raw   string
	elems []patElem
}

type patElem struct {
	lit   string // literal text, when field == 0
	field byte   // the letter after '@'
}

// Properties are the values a Pattern extracts from, or puts into, a name. A nil pointer (or
// an empty string) means "not present".
type Properties struct {
	Version   string
	UUID      *uuid.UUID
	Flags     *uint64
	NoAuto    *bool
	GrowFS    *bool
	ReadOnly  *bool
	MTime     *uint64 // µs since the epoch
	Mode      *uint32
	Size      *uint64 // decompressed size in bytes
	TriesDone *uint64
	TriesLeft *uint64
	SHA256    string // lower-case hex
}

const patternFields = "vufagrtmsdlh"

// ParsePattern compiles a MatchPattern. @v is mandatory, each wildcard may appear once, and
// two wildcards need literal text between them: matching is non-greedy, so a value runs to
// the first occurrence of the literal that follows it.
func ParsePattern(s string) (*Pattern, error) {
	if s == "" {
		return nil, fmt.Errorf("empty pattern")
	}
	p := &Pattern{raw: s}
	seen := map[byte]bool{}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			p.elems = append(p.elems, patElem{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '@' {
			lit.WriteByte(c)
			continue
		}
		if i+1 >= len(s) {
			return nil, fmt.Errorf("pattern %q ends in a lone '@'", s)
		}
		i++
		f := s[i]
		if f == '@' {
			lit.WriteByte('@')
			continue
		}
		if !strings.ContainsRune(patternFields, rune(f)) {
			return nil, fmt.Errorf("pattern %q: unknown wildcard @%c", s, f)
		}
		if seen[f] {
			return nil, fmt.Errorf("pattern %q: wildcard @%c appears twice", s, f)
		}
		seen[f] = true
		if lit.Len() == 0 && len(p.elems) > 0 && p.elems[len(p.elems)-1].field != 0 {
			return nil, fmt.Errorf("pattern %q: wildcards @%c and @%c need literal text between them",
				s, p.elems[len(p.elems)-1].field, f)
		}
		flush()
		p.elems = append(p.elems, patElem{field: f})
	}
	flush()
	if !seen['v'] {
		return nil, fmt.Errorf("pattern %q lacks the version wildcard @v", s)
	}
	return p, nil
}

// String returns the pattern as written.
func (p *Pattern) String() string { return p.raw }

// Has reports whether the pattern contains the wildcard @f.
func (p *Pattern) Has(f byte) bool {
	for _, e := range p.elems {
		if e.field == f {
			return true
		}
	}
	return false
}

// Match extracts the properties from name, or reports false if name does not match or a
// value is malformed (a version with characters outside [A-Za-z0-9.,_+-], a bad UUID, ...).
func (p *Pattern) Match(name string) (Properties, bool) {
	var props Properties
	rest := name
	for i, e := range p.elems {
		if e.field == 0 {
			if !strings.HasPrefix(rest, e.lit) {
				return Properties{}, false
			}
			rest = rest[len(e.lit):]
			continue
		}
		var val string
		if i+1 < len(p.elems) {
			next := p.elems[i+1].lit
			j := strings.Index(rest, next)
			if j < 0 {
				return Properties{}, false
			}
			val, rest = rest[:j], rest[j:]
		} else {
			val, rest = rest, ""
		}
		if val == "" || !props.set(e.field, val) {
			return Properties{}, false
		}
	}
	return props, rest == ""
}

func (pr *Properties) set(f byte, val string) bool {
	u64 := func(base int) (*uint64, bool) {
		n, err := strconv.ParseUint(val, base, 64)
		if err != nil {
			return nil, false
		}
		return &n, true
	}
	boolean := func() (*bool, bool) {
		switch val {
		case "0":
			b := false
			return &b, true
		case "1":
			b := true
			return &b, true
		}
		return nil, false
	}
	var ok bool
	switch f {
	case 'v':
		pr.Version, ok = val, ValidVersion(val)
	case 'u':
		u, err := uuid.Parse(val)
		pr.UUID, ok = &u, err == nil && len(val) == 36
	case 'f':
		pr.Flags, ok = u64(16)
	case 'a':
		pr.NoAuto, ok = boolean()
	case 'g':
		pr.GrowFS, ok = boolean()
	case 'r':
		pr.ReadOnly, ok = boolean()
	case 't':
		pr.MTime, ok = u64(10)
	case 'm':
		var m *uint64
		if m, ok = u64(8); ok && *m <= 0o775 {
			mode := uint32(*m)
			pr.Mode = &mode
		} else {
			ok = false
		}
	case 's':
		pr.Size, ok = u64(10)
	case 'd':
		pr.TriesDone, ok = u64(10)
	case 'l':
		pr.TriesLeft, ok = u64(10)
	case 'h':
		_, err := hex.DecodeString(val)
		pr.SHA256, ok = strings.ToLower(val), err == nil && len(val) == 64
	}
	return ok
}

// Format builds a name from props; every wildcard of the pattern needs a value.
func (p *Pattern) Format(props Properties) (string, error) {
	var b strings.Builder
	for _, e := range p.elems {
		if e.field == 0 {
			b.WriteString(e.lit)
			continue
		}
		v, ok := props.get(e.field)
		if !ok {
			return "", fmt.Errorf("pattern %q: no value for @%c", p.raw, e.field)
		}
		b.WriteString(v)
	}
	name := b.String()
	// The result must read back as the same values, or a later scan would misread it
	// (e.g. a version holding '+' in "name_@v+@l-@d.efi").
	if back, ok := p.Match(name); !ok || back.Version != props.Version {
		return "", fmt.Errorf("pattern %q: %q would not match back (version %q holds the pattern's separators?)", p.raw, name, props.Version)
	}
	return name, nil
}

func (pr Properties) get(f byte) (string, bool) {
	b := func(v *bool) (string, bool) {
		if v == nil {
			return "", false
		}
		if *v {
			return "1", true
		}
		return "0", true
	}
	u := func(v *uint64, base int) (string, bool) {
		if v == nil {
			return "", false
		}
		return strconv.FormatUint(*v, base), true
	}
	switch f {
	case 'v':
		return pr.Version, ValidVersion(pr.Version)
	case 'u':
		if pr.UUID == nil {
			return "", false
		}
		return pr.UUID.String(), true
	case 'f':
		return u(pr.Flags, 16)
	case 'a':
		return b(pr.NoAuto)
	case 'g':
		return b(pr.GrowFS)
	case 'r':
		return b(pr.ReadOnly)
	case 't':
		return u(pr.MTime, 10)
	case 'm':
		if pr.Mode == nil {
			return "", false
		}
		return strconv.FormatUint(uint64(*pr.Mode), 8), true
	case 's':
		return u(pr.Size, 10)
	case 'd':
		return u(pr.TriesDone, 10)
	case 'l':
		return u(pr.TriesLeft, 10)
	case 'h':
		return pr.SHA256, pr.SHA256 != ""
	}
	return "", false
}

// Patterns is the list of MatchPattern= values of one section; new names use the first.
type Patterns []*Pattern

// Match tries each pattern in order and returns the first match.
func (ps Patterns) Match(name string) (Properties, bool) {
	for _, p := range ps {
		if props, ok := p.Match(name); ok {
			return props, true
		}
	}
	return Properties{}, false
}
