package images

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/uuid"
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

// defaultMinSize is the size systemd-repart gives a partition without SizeMinBytes=.
const defaultMinSize = 10 << 20

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
	all, err := filepath.Glob(filepath.Join(dir, "*.conf"))
	if err != nil {
		return nil, err
	}
	// As systemd-repart (and repart.ParseDir): hidden files are skipped (editors' swap
	// files, "mv x .x"), and so are masked definitions (symlinks to /dev/null) and dangling
	// symlinks.
	var matches []string
	for _, f := range all {
		if strings.HasPrefix(filepath.Base(f), ".") {
			continue
		}
		st, err := os.Stat(f)
		if err != nil && errors.Is(err, fs.ErrNotExist) || err == nil && st.Mode()&fs.ModeCharDevice != 0 {
			continue
		}
		if err == nil && st.IsDir() {
			return nil, fmt.Errorf("%s: a directory, not a partition definition", f)
		}
		if st, err := os.Stat(f + ".d"); err == nil && st.IsDir() {
			// Silently building without them would lay out another image.
			return nil, fmt.Errorf("%s.d: drop-in directories are not supported by the image builder (merge them into %s)", f, filepath.Base(f))
		}
		matches = append(matches, f)
	}
	if len(matches) == 0 {
		return nil, fmt.Errorf("%s: no partition definitions (*.conf)", dir)
	}
	sort.Strings(matches)
	var defs []*Definition
	labels := map[string]string{}
	uuids := map[uuid.UUID]string{}
	splits := map[string]string{}
	for _, f := range matches {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		d, err := parseDefinition(f, data, c)
		if err != nil {
			return nil, err
		}
		if d.Label == "" {
			d.Label = defaultLabel(d.Type, labels)
		} else if other, dup := labels[d.Label]; dup {
			return nil, fmt.Errorf("%s: Label=%s is already used by %s", d.Where("Label"), d.Label, other)
		}
		labels[d.Label] = f
		if d.UUID != uuid.Nil {
			// Two partitions with one PARTUUID: the boot loader's LoaderDevicePartUUID and
			// root=PARTUUID= could name either.
			if other, dup := uuids[d.UUID]; dup {
				return nil, fmt.Errorf("%s: UUID=%s is already used by %s", d.Where("UUID"), d.UUID, other)
			}
			uuids[d.UUID] = f
		}
		if d.SplitName != "" && d.SplitName != "-" {
			name := expandSplit(d.SplitName, d, len(defs)+1)
			if strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
				return nil, fmt.Errorf("%s: SplitName=%s gives %q, not a file name", d.Where("SplitName"), d.SplitName, name)
			}
			if n := len(c.BaseName() + "." + strings.ReplaceAll(name, "%U", uuid.Nil.String()) + outSuffix); n > maxName {
				return nil, fmt.Errorf("%s: SplitName=%s: the split file's name would be %d bytes; file systems hold %d", d.Where("SplitName"), d.SplitName, n, maxName)
			}
			// %U is the partition's own UUID, unique by construction (and not known yet
			// when derived from the seed).
			if !strings.Contains(d.SplitName, "%U") {
				if other, dup := splits[name]; dup {
					return nil, fmt.Errorf("%s: SplitName=%s: %s.%s.raw is already the split file of %s (a default SplitName= is %%t, the type name; SplitName=- writes none)",
						d.Where("SplitName"), d.SplitName, c.BaseName(), name, other)
				}
				splits[name] = f
			}
		}
		defs = append(defs, d)
	}
	return defs, nil
}

// defaultLabel is systemd-repart's label for a partition without Label=: the type's name
// ("linux" for a type systemd has no name for), with -2, -3, ... after a label already taken.
func defaultLabel(typ uuid.UUID, taken map[string]string) string {
	prefix := "linux"
	if t, ok := gpt.TypeByGUID(typ); ok {
		prefix = t.Name
	}
	label := prefix
	for k := 2; ; k++ {
		if _, dup := taken[label]; !dup {
			return label
		}
		label = fmt.Sprintf("%s-%d", prefix, k)
	}
}

// parseDefinition parses one build-time definition with repart's parser (systemd 252's
// keys and meanings), after the additions of newer systemd that image definitions such as
// the seed's use: %A and %M (image version and id) in values; Minimize=best|guess, which lets
// a formatted partition without SizeMinBytes= be as small as its content (otherwise it gets
// systemd-repart's default minimum, 10 MiB);
// and Compression= / CompressionLevel= (systemd 256) for the squashfs store.
func parseDefinition(file string, data []byte, c *Config) (*Definition, error) {
	lines := strings.Split(string(data), "\n")
	keyLine := map[string]int{}
	var comp [2]string // Compression= value and where
	level := 0
	minimize := false
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
			case "off", "no", "false", "0":
				minimize = false
			case "best", "guess":
				minimize = true
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
		e := expandImage(v, c)
		if k == "Label" && e != v {
			if n := len(utf16.Encode([]rune(strings.TrimSpace(e)))); n > 36 {
				return nil, fmt.Errorf("%s: Label=%s is %q, %d characters: longer than the 36 a GPT label holds; shorten [Image] Version=%s or Id=%s (%s)",
					where, strings.TrimSpace(v), strings.TrimSpace(e), n, c.Version, c.ID, c.File)
			}
		}
		lines[i] = k + "=" + e
	}
	rd, err := repart.Parse(file, []byte(strings.Join(lines, "\n")), GPTArch(c.Architecture))
	if err != nil {
		return nil, err
	}
	// TypeName is %t of SplitName=: systemd's name of the type, e.g. root-arm64 for Type=root,
	// or the GUID.
	d := &Definition{File: file, Name: strings.TrimSuffix(filepath.Base(file), ".conf"), line: keyLine,
		Type: rd.Type, TypeName: gpt.TypeName(rd.Type), Label: rd.Label, UUID: rd.UUID, Format: rd.Format,
		ReadOnly: rd.ReadOnly == repart.Yes, NoAuto: rd.NoAuto == repart.Yes, GrowFS: rd.GrowFileSystem == repart.Yes,
		Flags: rd.Flags, SplitName: rd.SplitName}
	if rd.SizeMax != repart.Unset {
		d.MaxSize = int64(rd.SizeMax)
	}
	switch {
	case rd.SizeMin != repart.Unset:
		d.MinSize = int64(rd.SizeMin)
	case !minimize || d.Format == "":
		// systemd-repart's DEFAULT_MIN_SIZE; only Minimize= shrinks a partition below it to
		// its content. A smaller SizeMaxBytes= wins here (252 would raise the maximum).
		d.MinSize = defaultMinSize
		if d.MaxSize > 0 && d.MaxSize < d.MinSize {
			d.MinSize = d.MaxSize
		}
	}
	if n := len([]rune(d.Label)); n > 36 {
		return nil, fmt.Errorf("%s: Label=%s: longer than the 36 characters GPT holds", d.Where("Label"), d.Label)
	}
	switch {
	case rd.CopyBlocks != "":
		return nil, fmt.Errorf("%s: CopyBlocks= is not supported by the image builder (use CopyFiles=)", d.Where("CopyBlocks"))
	case rd.UUIDSet && rd.UUID == uuid.Nil:
		// 252 writes the all-zero PARTUUID, which nothing can find a partition by.
		return nil, fmt.Errorf("%s: UUID=null is not supported by the image builder (without UUID= the partition gets one derived from the image)", d.Where("UUID"))
	case rd.PaddingMin != repart.Unset && rd.PaddingMin > 0:
		// systemd-repart --size=auto leaves the padding after the partition; an image laid out
		// without it would not be the image the definitions describe.
		return nil, fmt.Errorf("%s: PaddingMinBytes= is not supported by the image builder (partitions follow each other on 1 MiB boundaries)", d.Where("PaddingMinBytes"))
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
		src, dst := path.Clean(cf.Source), path.Clean(cf.Target)
		if rel, ok := strings.CutPrefix(src, "/boot"); d.Format == "vfat" && (ok && (rel == "" || rel[0] == '/')) && dst != path.Clean("/"+rel) {
			// /boot is the ESP's content as firmware and systemd-boot look for it
			// (/EFI/BOOT, /EFI/Linux, /loader): moved elsewhere, nothing boots.
			return nil, fmt.Errorf("%s: CopyFiles=%s:%s would move the ESP content from %s to %s; firmware and systemd-boot find it only at %s (CopyFiles=/boot:/ copies all of it)",
				d.Where("CopyFiles"), cf.Source, cf.Target, src, dst, path.Clean("/"+rel))
		}
		d.CopyFiles = append(d.CopyFiles, CopyFile{src, dst})
	}
	for _, cf := range d.CopyFiles {
		// The store's label becomes piboot.store=<label> on the kernel command line, one word.
		if d.Format == "squashfs" && within(cf.Source, c.MountPoint) && strings.ContainsFunc(d.Label, func(r rune) bool { return unicode.IsSpace(r) || r == '"' || unicode.IsControl(r) }) {
			return nil, fmt.Errorf("%s: Label=%q: the store's label goes on the kernel command line (piboot.store=) and must not contain spaces, quotes or control characters", d.Where("Label"), d.Label)
		}
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
