package main

import (
	"fmt"
	"io"
	"strings"
)

// aliasTable maps device modaliases to the modules that drive them, as the initramfs's
// modules.alias says (generated at `piboot initrd` time from the modules' .modinfo).
type aliasTable struct {
	// byBus holds the device patterns by the bus before the first ':' ("pci", "usb",
	// "of", "virtio", "scsi", ...), so a modalias is compared only with its own bus's
	// patterns (usb-storage alone has over 400).
	byBus   map[string][]aliasPattern
	drivers map[string]bool // modules with at least one device pattern
}

type aliasPattern struct {
	pattern string
	prefix  string // the literal part before the first wildcard: a cheap first test
	module  string
}

// deviceBus returns the bus of a device alias pattern or modalias ("pci" for
// "pci:v0000..."), or "" for the aliases modules give for loading by name (fs-ext4,
// crypto-crc32c, char-major-..., devname:..., symbol:...).
func deviceBus(s string) string {
	bus, _, ok := strings.Cut(s, ":")
	if !ok || bus == "" || bus == "devname" || bus == "symbol" {
		return ""
	}
	for _, r := range bus {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '*') {
			return ""
		}
	}
	// ACPI and DMI patterns are written "acpi*:PNP0A03:*": both "acpi" and "acpi*"
	// modaliases exist, and the pattern covers them.
	return strings.TrimSuffix(bus, "*")
}

// parseAliases reads a modules.alias file ("alias <pattern> <module>" per line; blank
// lines and # comments allowed). name is for errors. Patterns and module names are
// slices of the file's one string: under QEMU's TCG every allocation and every new
// code path is slow, and the disk's driver waits for this table.
func parseAliases(r io.Reader, name string) (*aliasTable, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	text := string(b)
	t := &aliasTable{byBus: map[string][]aliasPattern{}, drivers: map[string]bool{}}
	for n := 1; len(text) > 0; n++ {
		line := text
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = ""
		}
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		var f [3]string
		nf := 0
		for i := 0; i < len(line) && nf <= 3; {
			for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
				i++
			}
			j := i
			for j < len(line) && line[j] != ' ' && line[j] != '\t' {
				j++
			}
			if j > i {
				if nf < 3 {
					f[nf] = line[i:j]
				}
				nf++
			}
			i = j
		}
		if nf != 3 || f[0] != "alias" {
			return nil, fmt.Errorf("%s:%d: want \"alias <pattern> <module>\", got %q", name, n, line)
		}
		bus := deviceBus(f[1])
		if bus == "" {
			continue
		}
		prefix := f[1]
		if i := strings.IndexAny(prefix, "*?[\\"); i >= 0 {
			prefix = prefix[:i]
		}
		t.byBus[bus] = append(t.byBus[bus], aliasPattern{pattern: f[1], prefix: prefix, module: f[2]})
		t.drivers[f[2]] = true
	}
	return t, nil
}

// match returns the modules whose patterns match modalias, each once, in file order.
func (t *aliasTable) match(modalias string) []string {
	bus := deviceBus(modalias)
	if bus == "" {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, p := range t.byBus[bus] {
		if seen[p.module] || !strings.HasPrefix(modalias, p.prefix) || !globMatch(p.pattern, modalias) {
			continue
		}
		seen[p.module] = true
		out = append(out, p.module)
	}
	return out
}

// globMatch is fnmatch(3) without flags, as kmod matches modaliases: '*' and '?' match
// any characters including '/', "[...]" is a character class ("[!...]" or "[^...]"
// negated, with ranges), and '\' quotes the next character. A malformed class matches
// its '[' literally.
func globMatch(pattern, s string) bool {
	// Iterative with one backtracking point per '*': linear enough for modaliases.
	px, sx := 0, 0
	starP, starS := -1, 0
	for sx < len(s) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				starP, starS = px, sx
				px++
				continue
			case '?':
				px++
				sx++
				continue
			case '[':
				if ok, next, valid := matchClass(pattern, px, s[sx]); valid {
					if ok {
						px, sx = next, sx+1
						continue
					}
				} else if s[sx] == '[' {
					px++
					sx++
					continue
				}
			case '\\':
				if px+1 < len(pattern) && pattern[px+1] == s[sx] {
					px += 2
					sx++
					continue
				}
			default:
				if c == s[sx] {
					px++
					sx++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		px, sx = starP+1, starS
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}

// matchClass matches c against the class starting at pattern[i] == '['. It returns
// whether c is in it, the index after the class, and whether the class is well formed.
func matchClass(pattern string, i int, c byte) (ok bool, next int, valid bool) {
	j := i + 1
	neg := false
	if j < len(pattern) && (pattern[j] == '!' || pattern[j] == '^') {
		neg = true
		j++
	}
	first := true
	for j < len(pattern) {
		if pattern[j] == ']' && !first {
			return ok != neg, j + 1, true
		}
		first = false
		lo := pattern[j]
		if lo == '\\' && j+1 < len(pattern) {
			j++
			lo = pattern[j]
		}
		hi := lo
		if j+2 < len(pattern) && pattern[j+1] == '-' && pattern[j+2] != ']' {
			hi = pattern[j+2]
			j += 2
		}
		if lo <= c && c <= hi {
			ok = true
		}
		j++
	}
	return false, 0, false
}
