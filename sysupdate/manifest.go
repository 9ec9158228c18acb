package sysupdate

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf8"
)

// ManifestName is the manifest's file name in a source directory.
const ManifestName = "SHA256SUMS"

// Manifest maps file names to the lower-case hex SHA-256 of the file as downloaded.
type Manifest map[string]string

// ParseManifest reads a SHA256SUMS file: per line 64 hex digits, a space, a space or '*',
// and a plain file name. Lines naming files in a way that could escape the source
// directory or confuse a terminal are an error, naming the line.
func ParseManifest(data []byte) (Manifest, error) {
	m := Manifest{}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data[:len(data):len(data)], '\n')
	}
	for i, line := range bytes.SplitAfter(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		no := i + 1
		line = line[:len(line)-1]
		if len(line) == 0 {
			continue
		}
		if line[0] == '\\' {
			return nil, fmt.Errorf("%s:%d: escaped file names are not accepted", ManifestName, no)
		}
		if len(line) < 67 || line[64] != ' ' || (line[65] != ' ' && line[65] != '*') {
			return nil, fmt.Errorf("%s:%d: not \"<sha256>  <file>\"", ManifestName, no)
		}
		sum := strings.ToLower(string(line[:64]))
		if _, err := hex.DecodeString(sum); err != nil {
			return nil, fmt.Errorf("%s:%d: %q is not a SHA-256 in hex", ManifestName, no, line[:64])
		}
		name := string(line[66:])
		if err := checkManifestName(name); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", ManifestName, no, err)
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("%s:%d: %q is listed twice", ManifestName, no, name)
		}
		m[name] = sum
	}
	return m, nil
}

func checkManifestName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("file name %q is not allowed", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("file name %q is not valid UTF-8", name)
	case strings.ContainsRune(name, '/'):
		return fmt.Errorf("file name %q is a path, not a name", name)
	case strings.ContainsRune(name, '\\'):
		return fmt.Errorf("file name %q holds an escape", name)
	case len(name) > 255:
		return fmt.Errorf("file name %q is too long", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("file name %q holds a control character", name)
		}
	}
	return nil
}

// Write writes the manifest in sha256sum's two-space format, sorted by name, so that the
// same files always give the same bytes (and the same signature input).
func (m Manifest) Write(w io.Writer) error {
	names := make([]string, 0, len(m))
	for n := range m {
		if err := checkManifestName(n); err != nil {
			return err
		}
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	for _, n := range names {
		fmt.Fprintf(&b, "%s  %s\n", m[n], n)
	}
	_, err := w.Write(b.Bytes())
	return err
}
