// Package firmware collects the boot firmware files that go to the root of an ESP for the
// Raspberry Pi 4: the community UEFI firmware (github.com/pftf/RPi4, a release zip or an
// unpacked directory — the seed's rpi4-uefi input) and, optionally, Debian's raspi-firmware
// package (the GPU firmware, as a .deb or an unpacked tree).
//
// Files are returned in memory (the whole set is a few MiB), keyed by slash-separated paths
// relative to the ESP root, so the image builder can hand them to the vfat writer unchanged.
package firmware

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Config names the firmware sources; empty fields are left out.
type Config struct {
	// RPi4UEFI is the RPi4 UEFI firmware release: a .zip file or a directory holding
	// RPI_EFI.fd, config.txt, start4.elf, fixup4.dat, the bcm2711 dtbs and overlays/.
	RPi4UEFI string
	// RaspiFirmware is Debian's raspi-firmware: the .deb, or a directory that is either the
	// unpacked package (holding usr/lib/raspi-firmware) or that firmware directory itself.
	// Its files are overridden by RPi4UEFI's where both have one (the UEFI set's start4.elf
	// and fixup4.dat are the ones its RPI_EFI.fd was built against).
	RaspiFirmware string
	// ConfigTxt, when set, replaces config.txt.
	ConfigTxt []byte
}

// RPi4Required lists the files without which the RPi4 UEFI firmware set cannot boot.
var RPi4Required = []string{"RPI_EFI.fd", "config.txt", "start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb"}

// Files returns the firmware files of cfg, keyed by their path on the ESP.
func Files(cfg Config) (map[string][]byte, error) {
	out := map[string][]byte{}
	if cfg.RaspiFirmware != "" {
		files, err := loadRaspiFirmware(cfg.RaspiFirmware)
		if err != nil {
			return nil, fmt.Errorf("firmware: raspi-firmware %s: %w", cfg.RaspiFirmware, err)
		}
		for p, b := range files {
			out[p] = b
		}
	}
	if cfg.RPi4UEFI != "" {
		files, err := loadTree(cfg.RPi4UEFI)
		if err != nil {
			return nil, fmt.Errorf("firmware: RPi4 UEFI %s: %w", cfg.RPi4UEFI, err)
		}
		files = stripCommonDir(files, "RPI_EFI.fd")
		if err := checkCase(files); err != nil {
			return nil, fmt.Errorf("firmware: RPi4 UEFI %s: %w", cfg.RPi4UEFI, err)
		}
		var missing []string
		for _, r := range RPi4Required {
			if _, ok := files[r]; !ok {
				missing = append(missing, r)
			}
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("firmware: RPi4 UEFI %s: not an RPi4 UEFI firmware set: missing %s", cfg.RPi4UEFI, strings.Join(missing, ", "))
		}
		for p, b := range files {
			out[p] = b
		}
	}
	if cfg.ConfigTxt != nil {
		out["config.txt"] = cfg.ConfigTxt
	}
	if err := checkCase(out); err != nil {
		return nil, fmt.Errorf("firmware: %w", err)
	}
	return out, nil
}

// Paths returns the keys of files in sorted order.
func Paths(files map[string][]byte) []string {
	p := make([]string, 0, len(files))
	for k := range files {
		p = append(p, k)
	}
	sort.Strings(p)
	return p
}

// checkCase rejects two paths that FAT would treat as the same file.
func checkCase(files map[string][]byte) error {
	seen := map[string]string{}
	for _, p := range Paths(files) {
		k := strings.ToUpper(p)
		if other, ok := seen[k]; ok {
			return fmt.Errorf("%s and %s name the same file on FAT (case-insensitive)", other, p)
		}
		seen[k] = p
	}
	return nil
}

// cleanPath validates an archive member name and returns it relative and slash-separated.
func cleanPath(name string) (string, error) {
	p := strings.TrimPrefix(path.Clean("/"+strings.ReplaceAll(name, "\\", "/")), "/")
	if p == "" || p == "." || strings.HasPrefix(name, "/") || strings.Contains("/"+name+"/", "/../") {
		return "", fmt.Errorf("unsafe path %q", name)
	}
	return p, nil
}

// loadTree reads a zip file or a directory into memory (regular files only).
func loadTree(src string) (map[string][]byte, error) {
	st, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return loadDir(os.DirFS(src), ".")
	}
	zr, err := zip.OpenReader(src)
	if err != nil {
		return nil, fmt.Errorf("neither a directory nor a zip file: %w", err)
	}
	defer zr.Close()
	out := map[string][]byte{}
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		if !f.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: not a regular file (mode %v)", f.Name, f.Mode())
		}
		p, err := cleanPath(f.Name)
		if err != nil {
			return nil, err
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		out[p] = b
	}
	return out, nil
}

func loadDir(fsys fs.FS, root string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			// Symlinks inside a firmware tree would be copied as their targets' bytes.
			info, err := fs.Stat(fsys, p)
			if err != nil || !info.Mode().IsRegular() {
				return fmt.Errorf("%s: not a regular file", p)
			}
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		out[rel] = b
		return nil
	})
	return out, err
}

// stripCommonDir removes a single top-level directory that holds everything (some release
// zips wrap their files in one), recognised by marker being inside it.
func stripCommonDir(files map[string][]byte, marker string) map[string][]byte {
	if _, ok := files[marker]; ok {
		return files
	}
	var top string
	for p := range files {
		d, _, ok := strings.Cut(p, "/")
		if !ok || (top != "" && d != top) {
			return files
		}
		top = d
	}
	if _, ok := files[top+"/"+marker]; !ok {
		return files
	}
	out := map[string][]byte{}
	for p, b := range files {
		out[strings.TrimPrefix(p, top+"/")] = b
	}
	return out
}

// debFirmwareDir is where Debian's raspi-firmware installs the files for the boot partition.
const debFirmwareDir = "usr/lib/raspi-firmware"

func loadRaspiFirmware(src string) (map[string][]byte, error) {
	st, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		if _, err := os.Stat(filepath.Join(src, debFirmwareDir)); err == nil {
			src = filepath.Join(src, debFirmwareDir)
		}
		files, err := loadDir(os.DirFS(src), ".")
		if err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, errors.New("no files")
		}
		return files, nil
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readDeb(f, debFirmwareDir)
}

// readDeb extracts the regular files below dir from a .deb (an ar archive whose data.tar.*
// member holds the package's files).
func readDeb(r io.Reader, dir string) (map[string][]byte, error) {
	br := bufio.NewReader(r)
	magic := make([]byte, 8)
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != "!<arch>\n" {
		return nil, errors.New("not a .deb (no ar header)")
	}
	for {
		hdr := make([]byte, 60)
		if _, err := io.ReadFull(br, hdr); err != nil {
			if err == io.EOF {
				return nil, errors.New("no data.tar member in the .deb")
			}
			return nil, fmt.Errorf("ar header: %w", err)
		}
		name := strings.TrimSuffix(strings.TrimSpace(string(hdr[0:16])), "/")
		var size int64
		if _, err := fmt.Sscanf(strings.TrimSpace(string(hdr[48:58])), "%d", &size); err != nil || size < 0 {
			return nil, fmt.Errorf("ar member %s: bad size %q", name, hdr[48:58])
		}
		body := io.LimitReader(br, size)
		if strings.HasPrefix(name, "data.tar") {
			dec, err := decompressor(name, body)
			if err != nil {
				return nil, err
			}
			files, err := readTar(dec, dir)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if len(files) == 0 {
				return nil, fmt.Errorf("%s: nothing below /%s", name, dir)
			}
			return files, nil
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			return nil, err
		}
		if size%2 == 1 {
			br.ReadByte()
		}
	}
}

func decompressor(name string, r io.Reader) (io.Reader, error) {
	switch path.Ext(name) {
	case ".tar":
		return r, nil
	case ".xz":
		return xz.NewReader(r)
	case ".gz":
		return gzip.NewReader(r)
	case ".zst":
		d, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return nil, fmt.Errorf("%s: unsupported compression", name)
}

func readTar(r io.Reader, dir string) (map[string][]byte, error) {
	tr := tar.NewReader(r)
	out := map[string][]byte{}
	prefix := dir + "/"
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		p := strings.TrimPrefix(h.Name, "./")
		if !strings.HasPrefix(p, prefix) || h.Typeflag != tar.TypeReg {
			continue
		}
		rel, err := cleanPath(strings.TrimPrefix(p, prefix))
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		if _, err := io.Copy(&b, tr); err != nil {
			return nil, fmt.Errorf("%s: %w", h.Name, err)
		}
		out[rel] = b.Bytes()
	}
}
