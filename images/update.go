package images

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"

	"github.com/piboot/piboot/mkfs/squashfs"
	"github.com/piboot/piboot/sysupdate"
)

// UpdateConfig is the [Update] section: where devices fetch updates and the key that signs
// them. With a SigningKey the update directory gets SHA256SUMS.gpg and the image the public
// key and Verify=yes transfers; a SigningKey path that does not exist yet is created (a new
// key pair), so that every later version is signed by the same key.
type UpdateConfig struct {
	URL        string // Path= of the transfers' url-file sources (default http://localhost/)
	SigningKey string // armored OpenPGP private key (piboot keygen)
}

func init() {
	schema["Update"] = map[string]key{
		"URL":        str(func(c *Config) *string { return &c.Update.URL }, false),
		"SigningKey": str(func(c *Config) *string { return &c.Update.SigningKey }, true),
	}
}

// signer loads (or, on first use, creates) the signing key; nil without [Update] SigningKey=.
func (c *Config) signer() (*sysupdate.Signer, error) {
	k := c.Update.SigningKey
	if k == "" {
		return nil, nil
	}
	if _, err := os.Stat(k); errors.Is(err, fs.ErrNotExist) {
		priv, _, err := sysupdate.GenerateKey(c.ID+" updates", "made by piboot build", "")
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(k), 0o755); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(k, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("[Update] SigningKey=%s: %w", k, err)
		}
		if _, err := f.Write(priv); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
	}
	s, err := sysupdate.LoadSigner(k)
	if err != nil {
		return nil, fmt.Errorf("[Update] SigningKey=: %w", err)
	}
	return s, nil
}

// addUpdateFiles puts the sysupdate transfers (.transfer and .conf) and, when signing, the
// public keyring (import-pubring.pgp and .gpg) into the store tree below target.
func (c *Config) addUpdateFiles(tree *squashfs.Tree, target string) error {
	s, err := c.signer()
	if err != nil {
		return err
	}
	var pub []byte
	if s != nil {
		if pub, err = s.PublicKey(); err != nil {
			return err
		}
	}
	url := c.Update.URL
	if url == "" {
		url = "http://localhost/"
	}
	files := sysupdate.ImageFiles(c.ID, url, pub)
	names := make([]string, 0, len(files))
	for p := range files {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		data := files[p]
		err := tree.Add(squashfs.Entry{
			Path: path.Join(target, p), Mode: 0o644, Size: int64(len(data)), Source: "piboot update files",
			Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		})
		if err != nil {
			return fmt.Errorf("adding %s to the store: %w (the store tree must not have one)", p, err)
		}
	}
	return nil
}

// signUpdateDir writes SHA256SUMS.gpg over the update directory's SHA256SUMS, or removes a
// stale one when the image is not signed.
func (c *Config) signUpdateDir(dir string) error {
	s, err := c.signer()
	if err != nil {
		return err
	}
	sig := filepath.Join(dir, sysupdate.ManifestName+".gpg")
	if s == nil {
		if err := os.Remove(sig); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	data, err := os.ReadFile(filepath.Join(dir, sysupdate.ManifestName))
	if err != nil {
		return err
	}
	b, err := s.Sign(data)
	if err != nil {
		return err
	}
	return writeAtomic(sig, b)
}
