package images

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/mkfs/squashfs"
	"github.com/piboot/piboot/repart"
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
	// Compression and CompressionLevel of a squashfs (systemd 256's keys); zero: the defaults.
	Compression      squashfs.Compression
	CompressionLevel int
	line             map[string]int // key → line, for errors found after parsing
}

// CopyFile is one CopyFiles=SOURCE[:TARGET] pair: SOURCE in the image's virtual source tree
// (/boot is the ESP content, the store's mount point the store tree), TARGET in the partition.
type CopyFile struct{ Source, Target string }

// Where returns "file:line" of key, or the file.
func (d *Definition) Where(key string) string {
	if l := d.line[key]; l > 0 {
		return fmt.Sprintf("%s:%d", d.File, l)
	}
	return d.File
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

// parseDefinition parses one build-time definition with repart's parser (systemd 252's
// keys and meanings), after the additions of newer systemd that image definitions such as
// the seed's use: %A and %M (image version and id) in values; Minimize=, which changes
// nothing here because every partition is sized to its content or its SizeMinBytes anyway;
// and Compression= / CompressionLevel= (systemd 256) for the squashfs store.
func parseDefinition(file string, data []byte, c *Config) (*Definition, error) {
	lines := strings.Split(string(data), "\n")
	keyLine := map[string]int{}
	var comp [2]string // Compression= value and where
	level := 0
	for i, l := range lines {
		t := strings.TrimSpace(l)
		k, v, ok := strings.Cut(t, "=")
		if !ok || t == "" || t[0] == '#' || t[0] == ';' || t[0] == '[' {
			continue
		}
		k = strings.TrimSpace(k)
		keyLine[k] = i + 1
		where := fmt.Sprintf("%s:%d", file, i+1)
		if k == "Minimize" {
			switch strings.TrimSpace(v) {
			case "off", "no", "false", "0", "best", "guess":
			default:
				return nil, fmt.Errorf("%s: Minimize=%s: want off, best or guess", where, strings.TrimSpace(v))
			}
			lines[i] = "# " + l // keep the line numbers of everything else
			continue
		}
		if k == "Compression" || k == "CompressionLevel" {
			v = strings.TrimSpace(v)
			if k == "Compression" {
				comp[0], comp[1] = v, where
			} else {
				n, err := strconv.Atoi(v)
				if err != nil || n < 0 {
					return nil, fmt.Errorf("%s: CompressionLevel=%s: not a level", where, v)
				}
				level = n
			}
			lines[i] = "# " + l
			continue
		}
		lines[i] = k + "=" + expandImage(v, c)
	}
	rd, err := repart.Parse(file, []byte(strings.Join(lines, "\n")), GPTArch(c.Architecture))
	if err != nil {
		return nil, err
	}
	d := &Definition{File: file, Name: strings.TrimSuffix(filepath.Base(file), ".conf"), line: keyLine,
		Type: rd.Type, TypeName: rd.TypeName, Label: rd.Label, UUID: rd.UUID, Format: rd.Format,
		ReadOnly: rd.ReadOnly == repart.Yes, NoAuto: rd.NoAuto == repart.Yes, GrowFS: rd.GrowFileSystem == repart.Yes,
		Flags: rd.Flags, SplitName: rd.SplitName}
	if rd.SizeMin != repart.Unset {
		d.MinSize = int64(rd.SizeMin)
	}
	if rd.SizeMax != repart.Unset {
		d.MaxSize = int64(rd.SizeMax)
	}
	if n := len([]rune(d.Label)); n > 36 {
		return nil, fmt.Errorf("%s: Label=%s: longer than the 36 characters GPT holds", d.Where("Label"), d.Label)
	}
	switch {
	case rd.CopyBlocks != "":
		return nil, fmt.Errorf("%s: CopyBlocks= is not supported by the image builder (use CopyFiles=)", d.Where("CopyBlocks"))
	case len(rd.MakeDirectories) > 0:
		return nil, fmt.Errorf("%s: MakeDirectories= is not supported by the image builder", d.Where("MakeDirectories"))
	case d.Format != "" && d.Format != "vfat" && d.Format != "squashfs":
		return nil, fmt.Errorf("%s: Format=%s: the image builder writes vfat and squashfs (other filesystems are made on the device at first boot)", d.Where("Format"), d.Format)
	}
	if comp[0] != "" || level != 0 {
		if d.Format != "squashfs" {
			return nil, fmt.Errorf("%s: Compression=/CompressionLevel= apply to Format=squashfs only", file)
		}
		d.Compression, d.CompressionLevel = squashfs.Compression(comp[0]), level
		if comp[0] != "" && !slices.Contains(squashfs.Compressions, d.Compression) {
			return nil, fmt.Errorf("%s: Compression=%s: unknown (%v)", comp[1], comp[0], squashfs.Compressions)
		}
	}
	for _, cf := range rd.CopyFiles {
		if !strings.HasPrefix(cf.Source, "/") || !strings.HasPrefix(cf.Target, "/") {
			return nil, fmt.Errorf("%s: CopyFiles=%s:%s: source and target must be absolute", d.Where("CopyFiles"), cf.Source, cf.Target)
		}
		d.CopyFiles = append(d.CopyFiles, CopyFile{path.Clean(cf.Source), path.Clean(cf.Target)})
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

// expandImage resolves %A (image version) and %M (image id), which systemd takes from the
// host's os-release and which at build time are the image's; "%%" and other specifiers are
// left for repart's parser and SplitName=.
func expandImage(s string, c *Config) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case 'A':
			b.WriteString(c.Version)
		case 'M':
			b.WriteString(c.ID)
		default:
			b.WriteByte('%')
			b.WriteByte(s[i+1])
		}
		i++
	}
	return b.String()
}
