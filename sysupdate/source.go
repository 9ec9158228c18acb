package sysupdate

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrNotFound is wrapped when a source lacks a file (HTTP 404, or no such file).
var ErrNotFound = errors.New("not found")

// Source is where update files come from: a directory or an HTTP(S) URL.
type Source interface {
	// Open returns the file's content and its size (-1 if unknown).
	Open(ctx context.Context, name string) (io.ReadCloser, int64, error)
	String() string
}

// SourceOptions adjust how OpenSourceWith reaches a source.
type SourceOptions struct {
	// CAFile names a PEM file of certificates trusted for https:// sources in addition to
	// the system's. (Go reads the system's from SSL_CERT_FILE and SSL_CERT_DIR when set,
	// else from the distribution's bundle, e.g. /etc/ssl/certs/ca-certificates.crt.)
	CAFile string
}

// ErrUntrusted is wrapped when an https:// server's certificate does not verify.
var ErrUntrusted = errors.New("certificate not trusted")

// OpenSource returns the source for spec: http:// and https:// URLs are fetched with
// net/http, anything else is a local directory (file:// URLs too).
func OpenSource(spec string) (Source, error) {
	return OpenSourceWith(spec, SourceOptions{})
}

// OpenSourceWith is OpenSource with options for https:// sources.
func OpenSourceWith(spec string, o SourceOptions) (Source, error) {
	switch {
	case strings.HasPrefix(spec, "http://"), strings.HasPrefix(spec, "https://"):
		u, err := url.Parse(spec)
		if err != nil {
			return nil, fmt.Errorf("source %q: %w", spec, err)
		}
		if !strings.HasSuffix(u.Path, "/") {
			u.Path += "/"
		}
		tr := httpTransport
		if o.CAFile != "" {
			pool, err := caPool(o.CAFile)
			if err != nil {
				return nil, err
			}
			tr = httpTransport.Clone()
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		return &httpSource{base: u, client: &http.Client{Transport: tr}, caFile: o.CAFile}, nil
	case strings.HasPrefix(spec, "file://"):
		spec = strings.TrimPrefix(spec, "file://")
	case strings.Contains(spec, "://"):
		return nil, fmt.Errorf("source %q: only http, https and file URLs (or a directory) are supported", spec)
	}
	st, err := os.Stat(spec)
	if err != nil {
		return nil, fmt.Errorf("source directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("source %s is not a directory", spec)
	}
	return dirSource(spec), nil
}

type dirSource string

func (d dirSource) String() string { return string(d) }

func (d dirSource) Open(_ context.Context, name string) (io.ReadCloser, int64, error) {
	if err := checkManifestName(name); err != nil {
		return nil, 0, err
	}
	f, err := os.Open(filepath.Join(string(d), name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("%s/%s: %w", d, name, ErrNotFound)
	}
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// httpTransport bounds the waits that would otherwise hang an update on a dead network,
// while leaving a slow but live download alone.
var httpTransport = &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	TLSHandshakeTimeout:   15 * time.Second,
	ResponseHeaderTimeout: 30 * time.Second,
	MaxIdleConnsPerHost:   4,
	DisableCompression:    true, // hashes are of the bytes as served
}

// caPool is the system's certificates plus those in file.
func caPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", file)
	}
	return pool, nil
}

type httpSource struct {
	base   *url.URL
	client *http.Client
	caFile string
}

func (h *httpSource) String() string { return h.base.String() }

func (h *httpSource) Open(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	if err := checkManifestName(name); err != nil {
		return nil, 0, err
	}
	uu := *h.base
	u := &uu
	u.Path, u.RawPath = h.base.Path+name, ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		var ne net.Error
		var oe *net.OpError
		var cv *tls.CertificateVerificationError
		switch {
		case errors.As(err, &cv):
			trust := "add its CA to the system's certificates, name a PEM bundle in SSL_CERT_FILE, or pass --ca-file"
			if h.caFile != "" {
				trust = "it is signed by neither the system's CAs nor those in " + h.caFile
			}
			return nil, 0, fmt.Errorf("%s: %w: the server's certificate does not verify (%v); %s", u, ErrUntrusted, cv.Err, trust)
		case errors.As(err, &oe) && oe.Op == "dial":
			return nil, 0, fmt.Errorf("cannot reach %s (is the network up?): %w", u.Host, err)
		case errors.As(err, &ne) && ne.Timeout():
			return nil, 0, fmt.Errorf("%s timed out (is the network up?): %w", u, err)
		}
		return nil, 0, fmt.Errorf("GET %s: %w", u, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		resp.Body.Close()
		return nil, 0, fmt.Errorf("%s: HTTP %s: %w", u, resp.Status, ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		resp.Body.Close()
		return nil, 0, fmt.Errorf("%s: HTTP %s", u, resp.Status)
	}
	return resp.Body, resp.ContentLength, nil
}

// readAllLimit reads a small file (manifest, signature) whole, refusing more than limit.
func readAllLimit(ctx context.Context, src Source, name string, limit int64) ([]byte, error) {
	rc, _, err := src.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s from %s: %w", name, src, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s from %s is larger than %d bytes", name, src, limit)
	}
	return data, nil
}

// FetchManifest fetches SHA256SUMS and, when verify is set, its detached signature
// (SHA256SUMS.gpg, or SHA256SUMS.asc when that is missing) and checks it against keyring.
func FetchManifest(ctx context.Context, src Source, verify bool, keyring string) (Manifest, error) {
	data, err := readAllLimit(ctx, src, ManifestName, 16<<20)
	if err != nil {
		return nil, err
	}
	if verify {
		sig, err := readAllLimit(ctx, src, ManifestName+".gpg", 1<<20)
		if errors.Is(err, ErrNotFound) {
			sig, err = readAllLimit(ctx, src, ManifestName+".asc", 1<<20)
		}
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: %s at %s is not signed (no %s.gpg or .asc); set Verify=no to accept unsigned updates", ErrSignature, ManifestName, src, ManifestName)
		}
		if err != nil {
			return nil, err
		}
		if keyring == "" {
			return nil, fmt.Errorf("%w: no keyring to check %s against", ErrSignature, ManifestName)
		}
		if err := VerifySignature(keyring, data, sig); err != nil {
			return nil, err
		}
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	return m, nil
}
