package sysupdate

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

var h64 = strings.Repeat("0123456789abcdef", 4)

func TestParseManifest(t *testing.T) {
	m, err := ParseManifest([]byte(h64 + "  a_v1.efi\n" + strings.ToUpper(h64) + " *b_v1.raw.zst"))
	if err != nil || m["a_v1.efi"] != h64 || m["b_v1.raw.zst"] != h64 {
		t.Fatalf("%v %v", m, err)
	}
	for body, want := range map[string]string{
		h64 + "  ../x\n":            ":1: file name \"../x\" is a path",
		"\n" + h64 + "  /etc/x\n":   ":2: file name \"/etc/x\" is a path",
		h64 + "  .\n":               "not allowed",
		h64 + "  a\x01b\n":          "control character",
		h64 + "  a\xffb\n":          "not valid UTF-8",
		"\\" + h64 + "  a\\nb\n":    "escaped",
		h64 + " a\n":                "not \"<sha256>  <file>\"",
		"xyz" + h64[3:] + "  a\n":   "not a SHA-256",
		h64 + "  a\n" + h64 + "  a": ":2: \"a\" is listed twice",
	} {
		if _, err := ParseManifest([]byte(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", body, err, want)
		}
	}
	var b bytes.Buffer
	if err := m.Write(&b); err != nil || b.String() != h64+"  a_v1.efi\n"+h64+"  b_v1.raw.zst\n" {
		t.Errorf("Write: %q %v", b.String(), err)
	}
}

func TestSignVerify(t *testing.T) {
	dir := t.TempDir()
	priv, pub, err := GenerateKey("piboot test", "", "test@example.com")
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "key.asc")
	os.WriteFile(keyPath, priv, 0o600)
	ring := filepath.Join(dir, "usr/lib/systemd/import-pubring.pgp")
	os.MkdirAll(filepath.Dir(ring), 0o755)
	os.WriteFile(ring, pub, 0o644)
	s, err := LoadSigner(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(h64 + "  x_v1.efi\n")
	sig, err := s.Sign(data)
	if err != nil {
		t.Fatal(err)
	}
	found, err := FindKeyring(dir)
	if err != nil || found != ring {
		t.Fatalf("FindKeyring = %q, %v", found, err)
	}
	if err := VerifySignature(ring, data, sig); err != nil {
		t.Fatalf("good signature refused: %v", err)
	}
	bad := append([]byte(nil), data...)
	bad[0] ^= 1
	if err := VerifySignature(ring, bad, sig); !errors.Is(err, ErrSignature) {
		t.Errorf("tampered data accepted: %v", err)
	}
	_, otherPub, _ := GenerateKey("other", "", "o@example.com")
	other := filepath.Join(dir, "other.pgp")
	os.WriteFile(other, otherPub, 0o644)
	if err := VerifySignature(other, data, sig); !errors.Is(err, ErrSignature) {
		t.Errorf("signature by an unknown key accepted: %v", err)
	}
	if _, err := FindKeyring(t.TempDir()); !errors.Is(err, ErrSignature) {
		t.Errorf("missing keyring: %v", err)
	}
}

func TestHTTPSourceErrors(t *testing.T) {
	srv := httptest.NewServer(http.FileServer(http.Dir(t.TempDir())))
	defer srv.Close()
	src, err := OpenSource(srv.URL + "/sub")
	if err != nil {
		t.Fatal(err)
	}
	_, err = FetchManifest(context.Background(), src, false, "")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "/sub/SHA256SUMS: HTTP 404") {
		t.Errorf("404: %v", err)
	}
	srv.Close()
	_, err = FetchManifest(context.Background(), src, false, "")
	if err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Errorf("no server: %v", err)
	}
	if _, err := OpenSource("ftp://x/"); err == nil {
		t.Error("ftp accepted")
	}
	if _, err := OpenSource("/nonexistent/dir"); err == nil {
		t.Error("missing dir accepted")
	}
}

func TestSignReproducible(t *testing.T) {
	dir := t.TempDir()
	priv, _, _ := GenerateKey("r", "", "")
	os.WriteFile(filepath.Join(dir, "k"), priv, 0o600)
	s, _ := LoadSigner(filepath.Join(dir, "k"))
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000") // older than the key
	a, err := s.Sign([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.Sign([]byte("x"))
	if !bytes.Equal(a, b) {
		t.Fatal("two signatures under SOURCE_DATE_EPOCH differ")
	}
}

func TestDecompressorByMagic(t *testing.T) {
	data := bytes.Repeat([]byte("piboot store "), 50000)
	var gz, xzb bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(data)
	gw.Close()
	xw, _ := xz.NewWriter(&xzb)
	xw.Write(data)
	xw.Close()
	enc, _ := zstd.NewWriter(nil)
	cases := map[string][]byte{"raw": data, "gzip": gz.Bytes(), "xz": xzb.Bytes(), "zstd": enc.EncodeAll(data, nil)}
	if _, err := exec.LookPath("bzip2"); err == nil {
		cmd := exec.Command("bzip2", "-c")
		cmd.Stdin = bytes.NewReader(data)
		if out, err := cmd.Output(); err == nil {
			cases["bzip2"] = out
		}
	}
	for name, in := range cases {
		r, closeFn, err := decompressor(bufio.NewReader(bytes.NewReader(in)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out, err := io.ReadAll(r)
		closeFn()
		if err != nil || !bytes.Equal(out, data) {
			t.Errorf("%s: %d bytes, %v", name, len(out), err)
		}
	}
}

// SHA256SUMS.asc (armored) is the fallback when SHA256SUMS.gpg is missing.
func TestArmoredSignatureFallback(t *testing.T) {
	dir := t.TempDir()
	priv, pub, _ := GenerateKey("a", "", "")
	os.WriteFile(filepath.Join(dir, "k"), priv, 0o600)
	ring := filepath.Join(dir, "ring.pgp")
	os.WriteFile(ring, pub, 0o644)
	s, _ := LoadSigner(filepath.Join(dir, "k"))
	upd := filepath.Join(dir, "upd")
	os.MkdirAll(upd, 0o755)
	os.WriteFile(filepath.Join(upd, "x_v1.efi"), []byte("uki"), 0o644)
	if err := Publish(upd, s); err != nil {
		t.Fatal(err)
	}
	sig, _ := os.ReadFile(filepath.Join(upd, "SHA256SUMS.gpg"))
	var arm bytes.Buffer
	w, _ := armor.Encode(&arm, "PGP SIGNATURE", nil)
	w.Write(sig)
	w.Close()
	os.Remove(filepath.Join(upd, "SHA256SUMS.gpg"))
	os.WriteFile(filepath.Join(upd, "SHA256SUMS.asc"), arm.Bytes(), 0o644)
	src, _ := OpenSource(upd)
	m, err := FetchManifest(context.Background(), src, true, ring)
	if err != nil || len(m) != 1 {
		t.Fatalf("FetchManifest with .asc = %v, %v", m, err)
	}
}
