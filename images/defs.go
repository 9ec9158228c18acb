package images

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/coreos/go-systemd/v22/unit"
	"github.com/google/uuid"
	"github.com/piboot/piboot/gpt"
)

// Definition is a build-time repart.d partition definition (the keys systemd-repart uses
// when it builds an image; first-boot keys such as Weight= belong to the device's repart.d).
type Definition struct {
	File      string // path of the .conf file
	Name      string // file name without .conf, e.g. 20-nix-store
	Type      uuid.UUID
	TypeName  string
	Label     string // with %A/%M resolved
	UUID      uuid.UUID
	Format    string // vfat, squashfs or "" (no filesystem)
	MinSize   int64
	MaxSize   int64
	ReadOnly  bool
	NoAuto    bool
	GrowFS    bool
	Flags     uint64
	SplitName string // "-" or "": not split
	CopyFiles []CopyFile
	line      map[string]int // key → line, for errors found after parsing
}

// CopyFile is one CopyFiles=SOURCE[:TARGET] pair.
type CopyFile struct{ Source, Target string }

// Where returns "file:line" of key, or the file.
func (d *Definition) Where(key string) string {
	if l := d.line[key]; l > 0 {
		return fmt.Sprintf("%s:%d", d.File, l)
	}
	return d.File
}

// ParseSize parses a systemd size: bytes, or a number with K, M, G, T, P, E (powers of 1024,
// optionally followed by B or iB).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "i")
	mult := int64(1)
	if n := len(t); n > 0 {
		if i := strings.IndexByte("KMGTPE", t[n-1]); i >= 0 {
			mult = 1 << (10 * (i + 1))
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || v < 0 || t == "" {
		return 0, fmt.Errorf("bad size %q", s)
	}
	r := v * float64(mult)
	if r > 1<<62 {
		return 0, fmt.Errorf("size %q too large", s)
	}
	return int64(r), nil
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "yes", "y", "true", "t", "on":
		return true, nil
	case "0", "no", "n", "false", "f", "off":
		return false, nil
	}
	return false, fmt.Errorf("bad boolean %q", s)
}

// LoadDefinitions reads every *.conf of dir in file-name order. Labels are expanded with
// systemd's %A (image version) and %M (image id) specifiers; arch resolves Type=root etc.
func LoadDefinitions(dir string, c *Config) ([]*Definition, error) {
	matches, err := filepath.Glob(filepath.Join(dir, "*.conf"))
	if err != nil {
		return nil, err
	}
	if len(matches) == 0 {
		return nil, fmt.Errorf("%s: no partition definitions (*.conf)", dir)
	}
	sort.Strings(matches)
	var defs []*Definition
	labels := map[string]string{}
	for _, f := range matches {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		d, err := parseDefinition(f, data, c)
		if err != nil {
			return nil, err
		}
		if other, dup := labels[d.Label]; dup && d.Label != "" {
			return nil, fmt.Errorf("%s: Label=%s is already used by %s", d.Where("Label"), d.Label, other)
		}
		labels[d.Label] = f
		defs = append(defs, d)
	}
	return defs, nil
}

func parseDefinition(file string, data []byte, c *Config) (*Definition, error) {
	opts, err := unit.DeserializeOptions(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	lines := optionLines(data)
	d := &Definition{File: file, Name: strings.TrimSuffix(filepath.Base(file), ".conf"), line: map[string]int{}}
	typ := ""
	for i, o := range opts {
		where := file
		if len(lines) == len(opts) {
			where = fmt.Sprintf("%s:%d", file, lines[i])
			d.line[o.Name] = lines[i]
		}
		bad := func(err error) error { return fmt.Errorf("%s: %s=%s: %w", where, o.Name, o.Value, err) }
		if o.Section != "Partition" {
			return nil, fmt.Errorf("%s: unknown section [%s]", where, o.Section)
		}
		v := o.Value
		switch o.Name {
		case "Type":
			typ = v
		case "Label":
			l, err := expandLabel(v, c)
			if err != nil {
				return nil, bad(err)
			}
			if n := len([]rune(l)); n > 36 {
				return nil, bad(fmt.Errorf("label longer than the 36 characters GPT holds"))
			}
			d.Label = l
		case "UUID":
			u, err := uuid.Parse(v)
			if err != nil {
				return nil, bad(err)
			}
			d.UUID = u
		case "Format":
			switch v {
			case "vfat", "squashfs", "":
			default:
				return nil, bad(fmt.Errorf("the image builder writes vfat and squashfs (other filesystems are made on the device)"))
			}
			d.Format = v
		case "SizeMinBytes", "SizeMaxBytes":
			n, err := ParseSize(v)
			if err != nil {
				return nil, bad(err)
			}
			if o.Name == "SizeMinBytes" {
				d.MinSize = n
			} else {
				d.MaxSize = n
			}
		case "ReadOnly", "NoAuto", "GrowFileSystem":
			b, err := parseBool(v)
			if err != nil {
				return nil, bad(err)
			}
			switch o.Name {
			case "ReadOnly":
				d.ReadOnly = b
			case "NoAuto":
				d.NoAuto = b
			default:
				d.GrowFS = b
			}
		case "Flags":
			n, err := strconv.ParseUint(v, 0, 64)
			if err != nil {
				return nil, bad(err)
			}
			d.Flags = n
		case "SplitName":
			d.SplitName = v
		case "Minimize":
			if _, err := parseBool(v); err != nil && v != "best" && v != "guess" {
				return nil, bad(fmt.Errorf("want off, best or guess"))
			}
		case "CopyFiles":
			src, dst, _ := strings.Cut(v, ":")
			if dst == "" {
				dst = src
			}
			if !strings.HasPrefix(src, "/") || !strings.HasPrefix(dst, "/") {
				return nil, bad(fmt.Errorf("source and target must be absolute"))
			}
			d.CopyFiles = append(d.CopyFiles, CopyFile{filepath.Clean(src), filepath.Clean(dst)})
		default:
			return nil, fmt.Errorf("%s: unknown or unsupported key %s= at build time", where, o.Name)
		}
	}
	if typ == "" {
		return nil, fmt.Errorf("%s: Type= is required", file)
	}
	t, err := gpt.ParseType(typ, GPTArch(c.Architecture))
	if err != nil {
		return nil, fmt.Errorf("%s: Type=%s: %w", d.Where("Type"), typ, err)
	}
	d.Type, d.TypeName = t, typ
	if d.MaxSize > 0 && d.MinSize > d.MaxSize {
		return nil, fmt.Errorf("%s: SizeMinBytes=%d is larger than SizeMaxBytes=%d", d.Where("SizeMinBytes"), d.MinSize, d.MaxSize)
	}
	if len(d.CopyFiles) > 0 && d.Format == "" {
		return nil, fmt.Errorf("%s: CopyFiles= needs Format=", d.Where("CopyFiles"))
	}
	if d.Label == "" {
		d.Label = d.TypeName
	}
	if d.ReadOnly {
		d.Flags |= gpt.AttrReadOnly
	}
	if d.NoAuto {
		d.Flags |= gpt.AttrNoAuto
	}
	if d.GrowFS {
		d.Flags |= gpt.AttrGrowFS
	}
	return d, nil
}

// expandLabel resolves systemd-repart's specifiers in Label=: %A image version, %M image
// id, %%. (systemd takes them from the host's os-release; at build time they are the image's.)
func expandLabel(s string, c *Config) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return "", fmt.Errorf("specifier %% at the end")
		}
		i++
		switch s[i] {
		case 'A':
			b.WriteString(c.Version)
		case 'M':
			b.WriteString(c.ID)
		case '%':
			b.WriteByte('%')
		default:
			return "", fmt.Errorf("unsupported specifier %%%c (known: %%A %%M %%%%)", s[i])
		}
	}
	return b.String(), nil
}
