package sysupdate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// KeyringPaths are where sysupdate looks for the keyring, first existing wins. The .gpg
// names are what systemd before v258 reads.
var KeyringPaths = []string{
	"/etc/systemd/import-pubring.pgp",
	"/etc/systemd/import-pubring.gpg",
	"/usr/lib/systemd/import-pubring.pgp",
	"/usr/lib/systemd/import-pubring.gpg",
}

// ErrSignature is wrapped by every signature failure, so that callers and tests can tell a
// refused manifest from a network error.
var ErrSignature = errors.New("signature check failed")

// GenerateKey makes a signing key pair for name (e.g. "piboot updates <ops@example.com>").
// The private key is returned as an armored secret key block, the public one in binary, the
// form systemd's import-pubring.pgp holds.
func GenerateKey(name, comment, email string) (private, public []byte, err error) {
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Time: time.Now}
	e, err := openpgp.NewEntity(name, comment, email, cfg)
	if err != nil {
		return nil, nil, err
	}
	var priv bytes.Buffer
	aw, err := armor.Encode(&priv, openpgp.PrivateKeyType, nil)
	if err != nil {
		return nil, nil, err
	}
	if err := e.SerializePrivate(aw, cfg); err != nil {
		return nil, nil, err
	}
	if err := aw.Close(); err != nil {
		return nil, nil, err
	}
	var pub bytes.Buffer
	if err := e.Serialize(&pub); err != nil {
		return nil, nil, err
	}
	return priv.Bytes(), pub.Bytes(), nil
}

// Signer signs manifests with one private key.
type Signer struct{ entity *openpgp.Entity }

// LoadSigner reads a private key (armored or binary) as written by GenerateKey or gpg
// --export-secret-keys; the key must not be passphrase-protected.
func LoadSigner(path string) (*Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	el, err := readKeyRing(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, e := range el {
		if e.PrivateKey == nil {
			continue
		}
		if e.PrivateKey.Encrypted {
			return nil, fmt.Errorf("%s: the private key is passphrase-protected", path)
		}
		return &Signer{entity: e}, nil
	}
	return nil, fmt.Errorf("%s: no private key", path)
}

// PublicKey returns the signer's public key in binary form (for import-pubring.pgp).
func (s *Signer) PublicKey() ([]byte, error) {
	var b bytes.Buffer
	err := s.entity.Serialize(&b)
	return b.Bytes(), err
}

// Sign returns a binary detached signature of data (SHA256SUMS.gpg).
func (s *Signer) Sign(data []byte) ([]byte, error) {
	var b bytes.Buffer
	cfg := &packet.Config{}
	// Reproducible builds: the signature's creation time follows SOURCE_DATE_EPOCH, and
	// EdDSA signatures are deterministic, so two builds sign alike.
	// A key younger than the epoch cannot sign then: use its own creation time instead.
	if e, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
		at := time.Unix(e, 0)
		for _, k := range append([]openpgp.Subkey{{PublicKey: s.entity.PrimaryKey}}, s.entity.Subkeys...) {
			if k.PublicKey != nil && k.PublicKey.CreationTime.After(at) {
				at = k.PublicKey.CreationTime
			}
		}
		cfg.Time = func() time.Time { return at }
		randomized := false
		cfg.NonDeterministicSignaturesViaNotation = &randomized
	}
	if err := openpgp.DetachSign(&b, s.entity, bytes.NewReader(data), cfg); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func readKeyRing(data []byte) (openpgp.EntityList, error) {
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN PGP")) {
		return openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	}
	return openpgp.ReadKeyRing(bytes.NewReader(data))
}

// FindKeyring returns the first keyring of KeyringPaths that exists below root.
func FindKeyring(root string) (string, error) {
	for _, p := range KeyringPaths {
		full := filepath.Join(root, p)
		if _, err := os.Stat(full); err == nil {
			return full, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("%w: no keyring at any of %v (below %q)", ErrSignature, KeyringPaths, root)
}

// VerifySignature checks a detached signature (binary, or armored for SHA256SUMS.asc) of
// data against the keyring file.
func VerifySignature(keyringPath string, data, sig []byte) error {
	kr, err := os.ReadFile(keyringPath)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrSignature, err)
	}
	el, err := readKeyRing(kr)
	if err != nil {
		return fmt.Errorf("%w: keyring %s: %v", ErrSignature, keyringPath, err)
	}
	var check func(openpgp.KeyRing, io.Reader, io.Reader, *packet.Config) (*openpgp.Entity, error)
	if bytes.HasPrefix(bytes.TrimSpace(sig), []byte("-----BEGIN PGP")) {
		check = openpgp.CheckArmoredDetachedSignature
	} else {
		check = openpgp.CheckDetachedSignature
	}
	if _, err := check(el, bytes.NewReader(data), bytes.NewReader(sig), nil); err != nil {
		return fmt.Errorf("%w: %s does not verify against %s: %v", ErrSignature, ManifestName, keyringPath, err)
	}
	return nil
}
