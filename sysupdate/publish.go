package sysupdate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Publish (re)writes dir's SHA256SUMS over every regular file in it (so one manifest covers
// all versions published there) and, with a signer, SHA256SUMS.gpg; without one, a stale
// signature is removed, since it could not match. Files are replaced atomically.
func Publish(dir string, signer *Signer) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	m := Manifest{}
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(n, ManifestName) || strings.HasPrefix(n, ".") {
			continue
		}
		sum, err := fileSHA256(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		m[n] = sum
	}
	var b strings.Builder
	if err := m.Write(&b); err != nil {
		return err
	}
	data := []byte(b.String())
	if err := writeFileAtomic(filepath.Join(dir, ManifestName), data, 0o644); err != nil {
		return err
	}
	sigPath := filepath.Join(dir, ManifestName+".gpg")
	if signer == nil {
		if err := os.Remove(sigPath); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	}
	sig, err := signer.Sign(data)
	if err != nil {
		return fmt.Errorf("sign %s: %w", ManifestName, err)
	}
	return writeFileAtomic(sigPath, sig, 0o644)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := filepath.Join(filepath.Dir(path), ".#"+filepath.Base(path))
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// ImageFiles returns the files an image carries for updates, by absolute path: the
// transfer files (as .transfer for systemd ≥ 257 and .conf for older readers) and, when
// publicKey is given, the keyring under both names systemd reads. id names the image
// (IMAGE_ID), url is the update source.
func ImageFiles(id, url string, publicKey []byte) map[string][]byte {
	files := map[string][]byte{}
	for name, body := range DefaultTransfers(id, url, publicKey != nil) {
		files["/usr/lib/sysupdate.d/"+name+".transfer"] = body
		files["/usr/lib/sysupdate.d/"+name+".conf"] = body
	}
	if publicKey != nil {
		files["/usr/lib/systemd/import-pubring.pgp"] = publicKey
		files["/usr/lib/systemd/import-pubring.gpg"] = publicKey
	}
	return files
}

// DefaultTransfers are the seed's two transfers for image id: the store into an _empty
// partition, then the UKI into the ESP, installed with a boot counter (+3-0) so that a
// version failing three times is skipped by systemd-boot.
func DefaultTransfers(id, url string, verify bool) map[string][]byte {
	v := "no"
	if verify {
		v = "yes"
	}
	return map[string][]byte{
		"10-nix-store": []byte(fmt.Sprintf(`[Source]
MatchPattern=%[1]s_@v.nix-store.raw.zst
Path=%[2]s
Type=url-file

[Target]
InstancesMax=2
MatchPattern=nix-store_@v
Path=auto
ReadOnly=yes
Type=partition

[Transfer]
Verify=%[3]s
`, id, url, v)),
		"20-boot-image": []byte(fmt.Sprintf(`[Source]
MatchPattern=%[1]s_@v.efi
Path=%[2]s
Type=url-file

[Target]
InstancesMax=2
MatchPattern=%[1]s_@v+@l-@d.efi %[1]s_@v+@l.efi %[1]s_@v.efi
Mode=0444
Path=/EFI/Linux
PathRelativeTo=boot
TriesDone=0
TriesLeft=3
Type=regular-file

[Transfer]
Verify=%[3]s
`, id, url, v)),
	}
}
