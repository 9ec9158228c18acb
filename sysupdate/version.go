package sysupdate

import "strings"

// CompareVersions orders two version strings the way systemd's strverscmp_improved does (the
// UAPI version format specification): it returns -1 when a is older than b, 0 when they are
// equivalent and 1 when a is newer.
//
// Characters other than ASCII letters, digits and "~-^." are ignored; "~" marks a pre-release
// (older than anything else at that point), "-" separates version from release, "^" marks a
// patched release, "." a point release; digit runs compare numerically, letter runs
// lexically, and a digit run is newer than a letter run.
func CompareVersions(a, b string) int {
	for {
		a = strings.TrimLeftFunc(a, func(r rune) bool { return !validVersionOrderChar(r) })
		b = strings.TrimLeftFunc(b, func(r rune) bool { return !validVersionOrderChar(r) })

		if r, done := prefixed(&a, &b, '~'); done {
			return r
		}
		if a == "" || b == "" {
			return cmpInt(len(a), len(b))
		}
		for _, sep := range []byte{'-', '^', '.'} {
			if r, done := prefixed(&a, &b, sep); done {
				return r
			}
		}

		var sa, sb string
		if isDigit(first(a)) || isDigit(first(b)) {
			// An empty digit run (the other side has letters or a separator) is older.
			sa, sb = span(a, isDigit), span(b, isDigit)
			if r := cmpBool(sa != "", sb != ""); r != 0 {
				return r
			}
			// Leading zeros do not count: 00123 equals 123.
			a, b = a[len(sa)-len(strings.TrimLeft(sa, "0")):], b[len(sb)-len(strings.TrimLeft(sb, "0")):]
			sa, sb = strings.TrimLeft(sa, "0"), strings.TrimLeft(sb, "0")
			if r := cmpInt(len(sa), len(sb)); r != 0 {
				return r
			}
			if r := strings.Compare(sa, sb); r != 0 {
				return r
			}
		} else {
			sa, sb = span(a, isAlpha), span(b, isAlpha)
			n := min(len(sa), len(sb))
			if r := strings.Compare(sa[:n], sb[:n]); r != 0 {
				return r
			}
			if r := cmpInt(len(sa), len(sb)); r != 0 {
				return r
			}
		}
		a, b = a[len(sa):], b[len(sb):]
	}
}

// prefixed handles one separator ("~", "-", "^" or "."): the side that has it where the other
// does not is the older one. done reports whether the comparison is decided.
func prefixed(a, b *string, sep byte) (r int, done bool) {
	ha, hb := first(*a) == sep, first(*b) == sep
	if !ha && !hb {
		return 0, false
	}
	if ha != hb {
		if ha {
			return -1, true
		}
		return 1, true
	}
	*a, *b = (*a)[1:], (*b)[1:]
	return 0, false
}

func validVersionOrderChar(r rune) bool {
	return r < 0x80 && (isAlpha(byte(r)) || isDigit(byte(r)) || strings.ContainsRune("~-^.", r))
}

func first(s string) byte {
	if s == "" {
		return 0
	}
	return s[0]
}

func span(s string, f func(byte) bool) string {
	i := 0
	for i < len(s) && f(s[i]) {
		i++
	}
	return s[:i]
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// ValidVersion reports whether s may be used as a version in a MatchPattern: non-empty, at
// most 255 bytes, made of ASCII letters, digits and ".,_+-".
func ValidVersion(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlpha(c) && !isDigit(c) && !strings.ContainsRune(".,_+-", rune(c)) {
			return false
		}
	}
	return true
}
