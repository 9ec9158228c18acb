package uuid

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// rfc is the example UUID of RFC 4122 section 4.1 (a time-based one), in bytes.
var rfc = UUID{0xf8, 0x1d, 0x4f, 0xae, 0x7d, 0xec, 0x11, 0xd0, 0xa7, 0x65, 0x00, 0xa0, 0xc9, 0x1e, 0x6b, 0xf6}

func TestParseAccepts(t *testing.T) {
	esp := UUID{0xc1, 0x2a, 0x73, 0x28, 0xf8, 0x1f, 0x11, 0xd2, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}
	for _, tc := range []struct {
		in   string
		want UUID
	}{
		{"f81d4fae-7dec-11d0-a765-00a0c91e6bf6", rfc},
		{"F81D4FAE-7DEC-11D0-A765-00A0C91E6BF6", rfc},
		{"f81D4fAe-7dEc-11d0-A765-00a0C91e6bF6", rfc},
		{"urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", rfc},
		{"URN:UUID:F81D4FAE-7DEC-11D0-A765-00A0C91E6BF6", rfc},
		{"Urn:Uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", rfc},
		{"{f81d4fae-7dec-11d0-a765-00a0c91e6bf6}", rfc},
		{"{F81D4FAE-7DEC-11D0-A765-00A0C91E6BF6}", rfc},
		{"f81d4fae7dec11d0a76500a0c91e6bf6", rfc},
		{"F81D4FAE7DEC11D0A76500A0C91E6BF6", rfc},
		// The EFI system partition's type GUID, as systemd and the UEFI spec write it.
		{"c12a7328-f81f-11d2-ba4b-00a0c93ec93b", esp},
		{"C12A7328-F81F-11D2-BA4B-00A0C93EC93B", esp},
		{"00000000-0000-0000-0000-000000000000", Nil},
		{"00000000000000000000000000000000", Nil},
		{"ffffffff-ffff-ffff-ffff-ffffffffffff", Max},
		{"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF", Max},
		{"01234567-89ab-cdef-0123-456789abcdef", UUID{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}},
	} {
		got, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("Parse(%q) = % x, want % x", tc.in, got[:], tc.want[:])
		}
		var text UUID
		if err := text.UnmarshalText([]byte(tc.in)); err != nil || text != tc.want {
			t.Errorf("UnmarshalText(%q) = % x, %v; want % x", tc.in, text[:], err, tc.want[:])
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct {
		in, why string
	}{
		{"", "length 0"},
		{"f81d4fae", "length 8"},
		{"f81d4fae-7dec-11d0-a765-00a0c91e6bf", "length 35"},
		{"f81d4fae-7dec-11d0-a765-00a0c91e6bf66", "length 37"},
		{"f81d4fae7dec11d0a76500a0c91e6bf", "length 31"},
		{" f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "length 37"},
		{"f81d4fae-7dec-11d0-a765-00a0c91e6bf6\n", "length 37"},
		{"f81d4fae-7dec-11d0-a765-00a0c91e6bg6", `'g' is not a hex digit at offset 34`},
		{"x81d4fae-7dec-11d0-a765-00a0c91e6bf6", `'x' is not a hex digit at offset 0`},
		{"f81d4fae-7dec-11d0-a765-00a0c91e6b f", `' ' is not a hex digit at offset 34`},
		{"f81d4fae-+dec-11d0-a765-00a0c91e6bf6", `'+' is not a hex digit at offset 9`},
		{"f81d4fae-7dec-11d0-a765-00a0c91e6bé", `byte 0xc3 is not a hex digit at offset 34`},
		{"f81d4fae_7dec-11d0-a765-00a0c91e6bf6", `'_' at offset 8, want '-'`},
		{"f81d4fae-7dec-11d0-a765é0a0c91e6bf6", `byte 0xc3 at offset 23, want '-'`},
		{"f81d4fae-7dec-11d0-a765x00a0c91e6bf6", `'x' at offset 23, want '-'`},
		{"f81d4fae07dec011d00a765000a0c91e6bf6", `'0' at offset 8, want '-'`},
		{"f81d4fae-7dec-11d0-a76-500a0c91e6bf6", `'5' at offset 23, want '-'`},
		{"urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bfz", `'z' is not a hex digit at offset 44`},
		{"urn:uuid:f81d4fae-7dec-11d0-a765_00a0c91e6bf6", `'_' at offset 32, want '-'`},
		{"urn:uuix:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "no urn:uuid: prefix"},
		{"uuid:urn:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "no urn:uuid: prefix"},
		{"(f81d4fae-7dec-11d0-a765-00a0c91e6bf6)", "not enclosed in {}"},
		{"{f81d4fae-7dec-11d0-a765-00a0c91e6bf6{", "not enclosed in {}"},
		{"\"f81d4fae-7dec-11d0-a765-00a0c91e6bf6\"", "not enclosed in {}"},
		{"{f81d4fae-7dec-11d0-a765-00a0c91e6bfx}", `'x' is not a hex digit at offset 36`},
		{"f81d4fae7dec11d0a76500a0c91e6bfZ", `'Z' is not a hex digit at offset 31`},
		{"f81d4fae-dec11d0a76500a0c91e6bf6", `'-' is not a hex digit at offset 8`},
		{"zz1d4fae7dec11d0a76500a0c91e6bf6", `'z' is not a hex digit at offset 0`},
	} {
		u, err := Parse(tc.in)
		if err == nil {
			t.Errorf("Parse(%q) = %v, want an error", tc.in, u)
			continue
		}
		if u != Nil {
			t.Errorf("Parse(%q) returned %v with its error, want Nil", tc.in, u)
		}
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Input != tc.in {
			t.Errorf("Parse(%q): error %#v does not carry the input", tc.in, err)
		}
		// The message names the string, so that a user sees which value is wrong.
		if msg := err.Error(); !strings.Contains(msg, tc.why) || !strings.Contains(msg, `invalid UUID "`) {
			t.Errorf("Parse(%q): error %q, want it to name the string and say %q", tc.in, msg, tc.why)
		}
		var text UUID
		if text.UnmarshalText([]byte(tc.in)) == nil {
			t.Errorf("UnmarshalText(%q) accepted it", tc.in)
		}
	}
}

func TestMustParse(t *testing.T) {
	if got := MustParse("F81D4FAE-7DEC-11D0-A765-00A0C91E6BF6"); got != rfc {
		t.Errorf("MustParse = %v", got)
	}
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(string), `"not-a-uuid"`) {
			t.Errorf("MustParse of a bad string: recovered %v, want a panic naming it", r)
		}
	}()
	MustParse("not-a-uuid")
}

func TestMust(t *testing.T) {
	if got := Must(rfc, nil); got != rfc {
		t.Errorf("Must = %v", got)
	}
	boom := errors.New("boom")
	defer func() {
		if r := recover(); r != boom {
			t.Errorf("Must with an error: recovered %v, want the error", r)
		}
	}()
	Must(Nil, boom)
}

func TestString(t *testing.T) {
	for _, tc := range []struct {
		u    UUID
		want string
	}{
		{Nil, "00000000-0000-0000-0000-000000000000"},
		{Max, "ffffffff-ffff-ffff-ffff-ffffffffffff"},
		{rfc, "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"},
		{UUID{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, "00010203-0405-0607-0809-0a0b0c0d0e0f"},
	} {
		if got := tc.u.String(); got != tc.want {
			t.Errorf("% x: String = %q, want %q", tc.u[:], got, tc.want)
		}
		if b, err := tc.u.MarshalText(); err != nil || string(b) != tc.want {
			t.Errorf("% x: MarshalText = %q, %v; want %q", tc.u[:], b, err, tc.want)
		}
		if back, err := Parse(tc.want); err != nil || back != tc.u {
			t.Errorf("Parse(String()) = %v, %v; want % x", back, err, tc.u[:])
		}
	}
	// Every byte value in every position survives the round trip, upper or lower case.
	var u UUID
	for v := 0; v < 256; v++ {
		for i := range u {
			u[i] = byte(v + i)
		}
		s := u.String()
		if s != strings.ToLower(s) || len(s) != 36 {
			t.Fatalf("String = %q", s)
		}
		for _, in := range []string{s, strings.ToUpper(s), strings.ReplaceAll(s, "-", ""), "{" + s + "}", "urn:uuid:" + s} {
			if back, err := Parse(in); err != nil || back != u {
				t.Fatalf("Parse(%q) = %v, %v; want %v", in, back, err, s)
			}
		}
	}
}

func TestVersionVariant(t *testing.T) {
	for _, tc := range []struct {
		s       string
		version Version
		variant Variant
	}{
		{"f81d4fae-7dec-11d0-a765-00a0c91e6bf6", 1, RFC4122}, // RFC 4122's time-based example
		{"b921b045-1df0-41c3-af44-4c6f280d3fae", 4, RFC4122}, // systemd's root-arm64 type
		{"ebd0a0a2-b9e5-4433-87c0-68b6b72699c7", 4, RFC4122}, // Microsoft basic data
		{"6ba7b810-9dad-11d1-80b4-00c04fd430c8", 1, RFC4122}, // RFC 4122's DNS namespace
		{"00000000-0000-0000-0000-000000000000", 0, Reserved},
		{"ffffffff-ffff-ffff-ffff-ffffffffffff", 15, Future},
		{"00000000-0000-5000-7f00-000000000000", 5, Reserved},
		{"00000000-0000-6000-bf00-000000000000", 6, RFC4122},
		{"00000000-0000-7000-c000-000000000000", 7, Microsoft},
		{"00000000-0000-8000-df00-000000000000", 8, Microsoft},
		{"00000000-0000-f000-e000-000000000000", 15, Future},
	} {
		u := MustParse(tc.s)
		if u.Version() != tc.version || u.Variant() != tc.variant {
			t.Errorf("%s: version %v variant %v, want %v %v", tc.s, u.Version(), u.Variant(), tc.version, tc.variant)
		}
	}
	for v, want := range map[Variant]string{Invalid: "Invalid", RFC4122: "RFC4122", Reserved: "Reserved",
		Microsoft: "Microsoft", Future: "Future", 9: "BadVariant9"} {
		if v.String() != want {
			t.Errorf("Variant(%d).String() = %q, want %q", byte(v), v.String(), want)
		}
	}
	if Version(4).String() != "VERSION_4" || Version(16).String() != "BAD_VERSION_16" {
		t.Errorf("Version strings %q %q", Version(4), Version(16))
	}
}

func TestNew(t *testing.T) {
	seen := map[UUID]bool{}
	var or, and UUID
	for i := range and {
		and[i] = 0xff
	}
	for i := 0; i < 1000; i++ {
		u := New()
		if u.Version() != 4 || u.Variant() != RFC4122 {
			t.Fatalf("New() = %v: version %v variant %v", u, u.Version(), u.Variant())
		}
		r, err := NewRandom()
		if err != nil || r.Version() != 4 || r.Variant() != RFC4122 {
			t.Fatalf("NewRandom() = %v, %v", r, err)
		}
		if seen[u] || seen[r] {
			t.Fatalf("a random UUID came twice: %v %v", u, r)
		}
		seen[u], seen[r] = true, true
		for j := range u {
			or[j] |= u[j]
			and[j] &= u[j]
		}
	}
	// Over 1000 UUIDs every random bit is seen both set and clear (2^-999 per bit otherwise);
	// only the 6 version and variant bits are fixed.
	want := MustParse("ffffffff-ffff-4fff-bfff-ffffffffffff")
	wantAnd := MustParse("00000000-0000-4000-8000-000000000000")
	if or != want || and != wantAnd {
		t.Errorf("bits ever set %v, always set %v; want %v and %v", or, and, want, wantAnd)
	}
}

func TestNewRandomFromReader(t *testing.T) {
	seq := make([]byte, 32)
	for i := range seq {
		seq[i] = byte(i)
	}
	for _, tc := range []struct {
		name string
		r    io.Reader
		want string
	}{
		{"counting", bytes.NewReader(seq), "00010203-0405-4607-8809-0a0b0c0d0e0f"},
		{"ones", bytes.NewReader(bytes.Repeat([]byte{0xff}, 16)), "ffffffff-ffff-4fff-bfff-ffffffffffff"},
		{"zeros", bytes.NewReader(make([]byte, 16)), "00000000-0000-4000-8000-000000000000"},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(seq[16:])), "10111213-1415-4617-9819-1a1b1c1d1e1f"},
		{"c12a7328", bytes.NewReader(MustParse("c12a7328-f81f-11d2-ba4b-00a0c93ec93b").bytes()), "c12a7328-f81f-41d2-ba4b-00a0c93ec93b"},
	} {
		u, err := NewRandomFromReader(tc.r)
		if err != nil || u.String() != tc.want {
			t.Errorf("%s: %v, %v; want %s", tc.name, u, err, tc.want)
		}
	}
	// The reader is consumed 16 bytes at a time.
	r := bytes.NewReader(seq)
	a, _ := NewRandomFromReader(r)
	b, _ := NewRandomFromReader(r)
	if a.String() != "00010203-0405-4607-8809-0a0b0c0d0e0f" || b.String() != "10111213-1415-4617-9819-1a1b1c1d1e1f" {
		t.Errorf("two UUIDs from one reader: %v %v", a, b)
	}
	if u, err := NewRandomFromReader(bytes.NewReader(seq[:15])); err != io.ErrUnexpectedEOF || u != Nil {
		t.Errorf("15 bytes: %v, %v; want Nil, unexpected EOF", u, err)
	}
	if u, err := NewRandomFromReader(bytes.NewReader(nil)); err != io.EOF || u != Nil {
		t.Errorf("no bytes: %v, %v; want Nil, EOF", u, err)
	}
	boom := errors.New("boom")
	if _, err := NewRandomFromReader(iotest.ErrReader(boom)); err != boom {
		t.Errorf("failing reader: %v", err)
	}
}

func (u UUID) bytes() []byte { return u[:] }

func TestRead(t *testing.T) {
	// Larger than one getrandom call is guaranteed to return (256 bytes), so the loop is used.
	a, b := make([]byte, 1<<20), make([]byte, 1<<20)
	for _, buf := range [][]byte{a, b} {
		if n, err := Read(buf); n != len(buf) || err != nil {
			t.Fatalf("Read: %d, %v", n, err)
		}
	}
	if bytes.Equal(a, b) || bytes.Equal(a[len(a)-4096:], make([]byte, 4096)) {
		t.Error("Read returned the same or unfilled bytes twice")
	}
	if n, err := Read(nil); n != 0 || err != nil {
		t.Errorf("Read(nil) = %d, %v", n, err)
	}
}

func TestJSON(t *testing.T) {
	type part struct {
		UUID  UUID          `json:"uuid"`
		Type  *UUID         `json:"type,omitempty"`
		ByID  map[UUID]bool `json:"by_id,omitempty"`
		Slots []UUID        `json:"slots,omitempty"`
	}
	esp := MustParse("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
	in := part{UUID: rfc, Type: &esp, ByID: map[UUID]bool{Nil: true}, Slots: []UUID{Max, rfc}}
	out, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"uuid":"f81d4fae-7dec-11d0-a765-00a0c91e6bf6","type":"c12a7328-f81f-11d2-ba4b-00a0c93ec93b",` +
		`"by_id":{"00000000-0000-0000-0000-000000000000":true},` +
		`"slots":["ffffffff-ffff-ffff-ffff-ffffffffffff","f81d4fae-7dec-11d0-a765-00a0c91e6bf6"]}`
	if string(out) != want {
		t.Errorf("json.Marshal:\n got %s\nwant %s", out, want)
	}
	var back part
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if back.UUID != rfc || *back.Type != esp || !back.ByID[Nil] || len(back.Slots) != 2 || back.Slots[0] != Max {
		t.Errorf("json round trip: %+v", back)
	}
	// Input may use any form Parse accepts; a bad value is an error naming it.
	if err := json.Unmarshal([]byte(`{"uuid":"{F81D4FAE-7DEC-11D0-A765-00A0C91E6BF6}"}`), &back); err != nil || back.UUID != rfc {
		t.Errorf("braced upper-case JSON: %v, %v", back.UUID, err)
	}
	if err := json.Unmarshal([]byte(`{"uuid":"f81d4fae"}`), &back); err == nil || !strings.Contains(err.Error(), `"f81d4fae"`) {
		t.Errorf("bad JSON UUID: error %v, want one naming it", err)
	}
}
