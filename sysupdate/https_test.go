package sysupdate

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHTTPSTrust: an https:// source whose certificate no trusted CA signed is refused
// before anything is written, with a message saying how to trust it; with its CA in
// SourceOptions.CAFile (--ca-file), or in SSL_CERT_FILE, the update goes through.
func TestHTTPSTrust(t *testing.T) {
	f := newFixture(t, true)
	f.publish("v1")
	srv := httptest.NewUnstartedServer(http.FileServer(http.Dir(f.upd)))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(f.dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before := f.snapshot()

	u := f.updater("v0")
	src, err := OpenSource(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.Source = src
	_, err = u.Update(ctx, "")
	if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), srv.URL+"/SHA256SUMS") ||
		!strings.Contains(err.Error(), "unknown authority") || !strings.Contains(err.Error(), "SSL_CERT_FILE") {
		t.Fatalf("untrusted certificate: %v", err)
	}
	t.Logf("refused: %v", err)
	if f.snapshot() != before {
		t.Fatal("a refused https update changed the disk or the ESP")
	}

	// A CA file that is not one, or another CA: refused, naming the file.
	notPEM := filepath.Join(f.dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello\n"), 0o644)
	if _, err := OpenSourceWith(srv.URL, SourceOptions{CAFile: notPEM}); err == nil || !strings.Contains(err.Error(), notPEM) {
		t.Fatalf("CA file without a certificate: %v", err)
	}
	otherCA := filepath.Join(f.dir, "other.pem")
	os.WriteFile(otherCA, selfSignedCA(t), 0o644)
	u = f.updater("v0")
	for _, tr := range u.Transfers {
		tr.Source.Path = srv.URL + "/"
	}
	u.SourceOptions = SourceOptions{CAFile: otherCA}
	if _, err := u.Update(ctx, ""); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), otherCA) {
		t.Fatalf("certificate not signed by the CA file: %v", err)
	}
	if f.snapshot() != before {
		t.Fatal("a refused https update changed the disk or the ESP")
	}

	// The transfers' own https:// Path= with the CA file.
	u = f.updater("v0")
	for _, tr := range u.Transfers {
		tr.Source.Path = srv.URL + "/"
	}
	u.SourceOptions = SourceOptions{CAFile: ca}
	if got, err := u.Update(ctx, ""); err != nil || got != "v1" {
		t.Fatalf("Update over https with the CA file = %q, %v", got, err)
	}
	f.checkVersion(3, "v1")

	// The system pool: Go reads SSL_CERT_FILE once per process, so a child process checks it.
	cmd := exec.Command(os.Args[0], "-test.run=^TestHTTPSSystemPoolChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "PIBOOT_TEST_HTTPS_URL="+srv.URL, "SSL_CERT_FILE="+ca, "SSL_CERT_DIR="+f.dir+"/none")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "manifest lists piboot_v1.efi") {
		t.Fatalf("with SSL_CERT_FILE=%s: %v\n%s", ca, err, out)
	}
}

// TestHTTPSSystemPoolChild is TestHTTPSTrust's child process; alone it does nothing.
func TestHTTPSSystemPoolChild(t *testing.T) {
	url := os.Getenv("PIBOOT_TEST_HTTPS_URL")
	if url == "" {
		return
	}
	src, err := OpenSource(url)
	if err != nil {
		t.Fatal(err)
	}
	m, err := FetchManifest(context.Background(), src, false, "")
	if err != nil {
		t.Fatal(err)
	}
	if m["piboot_v1.efi"] == "" {
		t.Fatalf("manifest: %v", m)
	}
	t.Log("manifest lists piboot_v1.efi")
}

// selfSignedCA is a PEM CA certificate that signed nothing the tests serve.
func selfSignedCA(t *testing.T) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "piboot test other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
