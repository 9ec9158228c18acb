package sha2

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"testing"
)

// FIPS 180-4's examples and RFC 4231's HMAC-SHA256 test cases.
func TestVectors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
		{string(bytes.Repeat([]byte("a"), 1000000)), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
	} {
		got := Sum256([]byte(c.in))
		if hex.EncodeToString(got[:]) != c.want {
			t.Errorf("Sum256(%.20q, %d bytes) = %x, want %s", c.in, len(c.in), got, c.want)
		}
	}
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for i, c := range []struct{ key, msg, want string }{
		{"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", hex.EncodeToString([]byte("Hi There")),
			"b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
		{hex.EncodeToString([]byte("Jefe")), hex.EncodeToString([]byte("what do ya want for nothing?")),
			"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{string(bytes.Repeat([]byte("aa"), 131)), hex.EncodeToString([]byte("Test Using Larger Than Block-Size Key - Hash Key First")),
			"60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
	} {
		got := HMAC256(unhex(c.key), unhex(c.msg))
		if hex.EncodeToString(got[:]) != c.want {
			t.Errorf("RFC 4231 case %d: HMAC256 = %x, want %s", i, got, c.want)
		}
	}
}

// Every length around the block and padding boundaries, and keys shorter than, equal to and
// longer than a block, against the standard library.
func TestAgainstStdlib(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 300)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	for n := 0; n <= len(buf); n++ {
		if got, want := Sum256(buf[:n]), sha256.Sum256(buf[:n]); got != want {
			t.Fatalf("Sum256 of %d bytes = %x, want %x", n, got, want)
		}
	}
	for kn := 0; kn <= 130; kn++ {
		for _, mn := range []int{0, 1, 16, 31, 32, 33, 55, 56, 63, 64, 65, 119, 120, 200} {
			key, msg := buf[:kn], buf[len(buf)-mn:]
			m := hmac.New(sha256.New, key)
			m.Write(msg)
			if got := HMAC256(key, msg); !bytes.Equal(got[:], m.Sum(nil)) {
				t.Fatalf("HMAC256 with a %d-byte key of %d bytes = %x, want %x", kn, mn, got, m.Sum(nil))
			}
		}
	}
}
