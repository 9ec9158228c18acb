// Package uuid is the part of github.com/google/uuid that piboot uses: the UUID type, parsing
// and formatting, and random (version 4) UUIDs.
//
// It exists for start-up time: google/uuid links net, crypto/rand (and with it the FIPS DRBG,
// AES and GCM) and database/sql/driver, whose package initialisation alone cost the piboot front
// door about a millisecond per run. Here random bytes come straight from getrandom(2) on Linux.
// Semantics follow google/uuid v1.6.0, so values, strings and JSON are unchanged; the one
// deliberate difference is that the 38-character form must really be enclosed in braces.
package uuid

import (
	"fmt"
	"io"
)

// A UUID is a 128-bit identifier as defined in RFC 4122 (RFC 9562), bytes in the order of the
// string form.
type UUID [16]byte

// A Version is the version number a UUID carries in the high nibble of byte 6.
type Version byte

// A Variant is the layout family a UUID declares in the high bits of byte 8.
type Variant byte

// The variants Variant reports, numbered as in google/uuid.
const (
	Invalid   = Variant(iota) // not returned by Variant; the zero value
	RFC4122                   // 10xx: RFC 4122 / RFC 9562 and GPT GUIDs
	Reserved                  // 0xxx: NCS backward compatibility
	Microsoft                 // 110x: Microsoft backward compatibility
	Future                    // 111x: reserved for future definition
)

var (
	// Nil is the UUID with all 128 bits zero.
	Nil UUID
	// Max is the UUID with all 128 bits set (RFC 9562 section 5.10).
	Max = UUID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

// A ParseError says which string is not a UUID and why.
type ParseError struct {
	Input  string // the string given to Parse
	Reason string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("invalid UUID %q: %s", e.Input, e.Reason)
}

// groups are the offsets of the 16 hex pairs in xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx.
var groups = [16]int{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34}

// Parse decodes s, accepting the forms google/uuid accepts, in any letter case:
// xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, urn:uuid:xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx,
// {xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx} and 32 hex digits without dashes.
func Parse(s string) (UUID, error) {
	var u UUID
	fail := func(format string, args ...any) (UUID, error) {
		return Nil, &ParseError{Input: s, Reason: fmt.Sprintf(format, args...)}
	}
	body, off := s, 0
	switch len(s) {
	case 36:
	case 36 + 9:
		if !equalFoldASCII(s[:9], "urn:uuid:") {
			return fail("45 characters but no urn:uuid: prefix")
		}
		body, off = s[9:], 9
	case 36 + 2:
		if s[0] != '{' || s[37] != '}' {
			return fail("38 characters but not enclosed in {}")
		}
		body, off = s[1:37], 1
	case 32:
		for i := range u {
			b, ok := xtob(s[2*i], s[2*i+1])
			if !ok {
				return fail("%s at offset %d", badHex(s[2*i:2*i+2]), 2*i+bad(s[2*i]))
			}
			u[i] = b
		}
		return u, nil
	default:
		return fail("length %d, want 36 (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), 32 hex digits, {…} or urn:uuid:…", len(s))
	}
	for _, i := range [4]int{8, 13, 18, 23} {
		if body[i] != '-' {
			return fail("%s at offset %d, want '-'", char(body[i]), off+i)
		}
	}
	for i, x := range groups {
		b, ok := xtob(body[x], body[x+1])
		if !ok {
			return fail("%s at offset %d", badHex(body[x:x+2]), off+x+bad(body[x]))
		}
		u[i] = b
	}
	return u, nil
}

// MustParse is Parse for constants: it panics if s is not a UUID.
func MustParse(s string) UUID {
	u, err := Parse(s)
	if err != nil {
		panic("uuid: MustParse: " + err.Error())
	}
	return u
}

// Must returns u, or panics if err is not nil.
func Must(u UUID, err error) UUID {
	if err != nil {
		panic(err)
	}
	return u
}

// New returns a random (version 4) UUID, or panics if the system has no randomness to give.
func New() UUID {
	return Must(NewRandom())
}

// NewRandom returns a random (version 4, RFC 4122 variant) UUID from the kernel's CSPRNG.
func NewRandom() (UUID, error) {
	return NewRandomFromReader(reader{})
}

// NewRandomFromReader returns a version 4 UUID made of the next 16 bytes of r, with the version
// and variant bits set.
func NewRandomFromReader(r io.Reader) (UUID, error) {
	var u UUID
	if _, err := io.ReadFull(r, u[:]); err != nil {
		return Nil, err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u, nil
}

// Read fills b with random bytes from the kernel's CSPRNG, like crypto/rand.Read, for callers
// that should not link crypto/rand.
func Read(b []byte) (int, error) {
	if err := fill(b); err != nil {
		return 0, err
	}
	return len(b), nil
}

type reader struct{}

func (reader) Read(b []byte) (int, error) { return Read(b) }

// String returns the canonical form, lower case with dashes: xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx.
func (u UUID) String() string {
	var buf [36]byte
	u.encode(&buf)
	return string(buf[:])
}

// MarshalText returns the canonical form, as String.
func (u UUID) MarshalText() ([]byte, error) {
	var buf [36]byte
	u.encode(&buf)
	return buf[:], nil
}

// UnmarshalText accepts every form Parse accepts.
func (u *UUID) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*u = v
	return nil
}

// Version returns the version nibble (4 for random UUIDs).
func (u UUID) Version() Version {
	return Version(u[6] >> 4)
}

// Variant returns the variant the high bits of byte 8 declare.
func (u UUID) Variant() Variant {
	switch {
	case u[8]&0xc0 == 0x80:
		return RFC4122
	case u[8]&0xe0 == 0xc0:
		return Microsoft
	case u[8]&0xe0 == 0xe0:
		return Future
	default:
		return Reserved
	}
}

func (v Version) String() string {
	if v > 15 {
		return fmt.Sprintf("BAD_VERSION_%d", byte(v))
	}
	return fmt.Sprintf("VERSION_%d", byte(v))
}

func (v Variant) String() string {
	switch v {
	case Invalid:
		return "Invalid"
	case RFC4122:
		return "RFC4122"
	case Reserved:
		return "Reserved"
	case Microsoft:
		return "Microsoft"
	case Future:
		return "Future"
	}
	return fmt.Sprintf("BadVariant%d", byte(v))
}

const hexDigits = "0123456789abcdef"

func (u UUID) encode(buf *[36]byte) {
	for i, x := range groups {
		buf[x], buf[x+1] = hexDigits[u[i]>>4], hexDigits[u[i]&0x0f]
	}
	buf[8], buf[13], buf[18], buf[23] = '-', '-', '-', '-'
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func xtob(hi, lo byte) (byte, bool) {
	h, ok1 := unhex(hi)
	l, ok2 := unhex(lo)
	return h<<4 | l, ok1 && ok2
}

// bad is 0 if c (the first of a pair) is the offending character, else 1.
func bad(c byte) int {
	if _, ok := unhex(c); ok {
		return 1
	}
	return 0
}

// badHex names the first non-hex character of a pair.
func badHex(pair string) string {
	return char(pair[bad(pair[0])]) + " is not a hex digit"
}

// char quotes c; a byte of a multi-byte UTF-8 sequence is shown as a byte, not as the
// Latin-1 letter %q would make of it.
func char(c byte) string {
	if c >= 0x80 {
		return fmt.Sprintf("byte 0x%02x", c)
	}
	return fmt.Sprintf("%q", c)
}

// equalFoldASCII reports whether a equals the lower-case b, ignoring the case of a.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}
