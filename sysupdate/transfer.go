package sysupdate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/uuid"
)

// DefaultDirs are where systemd-sysupdate looks for transfer files, highest priority first.
var DefaultDirs = []string{"/etc/sysupdate.d", "/run/sysupdate.d", "/usr/local/lib/sysupdate.d", "/usr/lib/sysupdate.d"}

// Resource types of [Source] and [Target].
const (
	TypeURLFile     = "url-file"
	TypeURLTar      = "url-tar"
	TypeRegularFile = "regular-file"
	TypePartition   = "partition"
	TypeTar         = "tar"
	TypeDirectory   = "directory"
	TypeSubvolume   = "subvolume"
)

// listed reports whether a source type is enumerated from a local directory rather than
// from a SHA256SUMS manifest (and so is neither hashed nor signed, as in systemd).
func listed(typ string) bool { return typ != TypeURLFile && typ != TypeURLTar }

// tree reports whether a source type carries a file tree (unpacked into a directory).
func tree(typ string) bool {
	return typ == TypeURLTar || typ == TypeTar || typ == TypeDirectory || typ == TypeSubvolume
}

// Transfer is one sysupdate.d file.
type Transfer struct {
	File           string // the file it came from
	Name           string // base name, which orders transfers
	MinVersion     string
	ProtectVersion []string
	Verify         bool
	InstancesMax   int // 0: the default for the target type
	Source         Resource
	Target         Resource
}

// Resource is a [Source] or [Target] section.
type Resource struct {
	Type           string
	TypeLine       int // where Type= was set, for errors about the combination
	Path           string
	PathRelativeTo string // root (default), esp, xbootldr, boot
	Patterns       Patterns

	// Target only.
	PartitionType uuid.UUID
	PartitionUUID *uuid.UUID
	Flags         *uint64
	NoAuto        *bool
	GrowFS        *bool
	ReadOnly      *bool
	Mode          *uint32
	TriesLeft     *uint64
	TriesDone     *uint64
	// CurrentSymlink names a symlink (relative to Path= unless absolute) pointed at the
	// newest installed version after each update; file and directory targets only.
	CurrentSymlink string
}

// Specifiers are the values of systemd's %-specifiers in transfer files, usually from
// os-release: 'A' IMAGE_VERSION, 'M' IMAGE_ID, 'o' ID, 'w' VERSION_ID, 'W' VARIANT_ID,
// 'B' BUILD_ID, 'a' the architecture, 'T' and 'V' the temporary directories.
type Specifiers map[byte]string

// SpecifiersFromOSRelease reads os-release below root (/etc/os-release, else
// /usr/lib/os-release) into specifiers.
func SpecifiersFromOSRelease(root string) (Specifiers, error) {
	s := Specifiers{'a': uapiArch(runtime.GOARCH), 'T': "/tmp", 'V': "/var/tmp"}
	var data []byte
	var err error
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		if data, err = os.ReadFile(filepath.Join(root, p)); err == nil {
			break
		}
	}
	if err != nil {
		return s, fmt.Errorf("os-release: %w", err)
	}
	osr := ParseOSRelease(string(data))
	for k, v := range map[byte]string{'A': "IMAGE_VERSION", 'M': "IMAGE_ID", 'o': "ID", 'w': "VERSION_ID", 'W': "VARIANT_ID", 'B': "BUILD_ID"} {
		if osr[v] != "" {
			s[k] = osr[v]
		}
	}
	return s, nil
}

// ParseOSRelease parses os-release's KEY=value lines (values optionally quoted).
func ParseOSRelease(data string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil && len(v) >= 2 && v[0] == '"' {
			v = uq
		} else if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
			v = v[1 : len(v)-1]
		}
		m[k] = v
	}
	return m
}

func uapiArch(goarch string) string {
	switch goarch {
	case "amd64":
		return "x86-64"
	case "386":
		return "x86"
	}
	return goarch // arm64, riscv64, ... are spelled the same
}

func (s Specifiers) expand(v string) (string, error) {
	if !strings.Contains(v, "%") {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		if i+1 >= len(v) {
			return "", fmt.Errorf("lone '%%' at the end of %q", v)
		}
		i++
		if v[i] == '%' {
			b.WriteByte('%')
			continue
		}
		r, ok := s[v[i]]
		if !ok {
			return "", fmt.Errorf("specifier %%%c in %q is unknown or has no value here", v[i], v)
		}
		b.WriteString(r)
	}
	return b.String(), nil
}

// Load reads every *.transfer and *.conf file from dirs; a file name found in an earlier
// directory hides the same name in later ones, and a file that is empty or links to
// /dev/null masks it. Transfers are returned in file-name order, which is the order
// sysupdate downloads and installs them in.
func Load(dirs []string, spec Specifiers) ([]*Transfer, error) {
	chosen := map[string]string{}
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			n := e.Name()
			if !strings.HasSuffix(n, ".transfer") && !strings.HasSuffix(n, ".conf") {
				continue
			}
			if _, dup := chosen[n]; !dup {
				chosen[n] = filepath.Join(d, n)
			}
		}
	}
	names := make([]string, 0, len(chosen))
	for n := range chosen {
		// An image ships each transfer twice, as .transfer for systemd >= 257 and .conf for
		// older readers; the .transfer one wins so it is not run twice.
		if stem, ok := strings.CutSuffix(n, ".conf"); ok && chosen[stem+".transfer"] != "" {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	var out []*Transfer
	for _, n := range names {
		p := chosen[n]
		if target, err := os.Readlink(p); err == nil && target == "/dev/null" {
			continue
		}
		if st, err := os.Stat(p); err == nil && st.Size() == 0 {
			continue
		}
		t, err := ParseTransferFile(p, spec)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no transfer files (*.transfer, *.conf) in %s", strings.Join(dirs, ", "))
	}
	return out, nil
}

// ParseTransferFile reads and checks one transfer file.
func ParseTransferFile(path string, spec Specifiers) (*Transfer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ents, err := parseINI(f, path)
	if err != nil {
		return nil, err
	}
	base := filepath.Base(path)
	t := &Transfer{File: path, Name: strings.TrimSuffix(strings.TrimSuffix(base, ".transfer"), ".conf"), Verify: true}
	for _, e := range ents {
		if err := t.set(e, spec); err != nil {
			return nil, fmt.Errorf("%s:%d: %s=%s: %w", path, e.Line, e.Key, e.Value, err)
		}
	}
	if err := t.check(); err != nil {
		var le lineError
		if errors.As(err, &le) && le.line > 0 {
			return nil, fmt.Errorf("%s:%d: %w", path, le.line, le.err)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// lineError is a check() error about one line of the file.
type lineError struct {
	line int
	err  error
}

func (e lineError) Error() string { return fmt.Sprintf("line %d: %v", e.line, e.err) }
func (e lineError) Unwrap() error { return e.err }

// errUnknownKey is wrapped so that callers can tell a typo from a bad value.
var errUnknownKey = errors.New("unknown key")

func (t *Transfer) set(e iniEntry, spec Specifiers) error {
	v, err := spec.expand(e.Value)
	if err != nil {
		return err
	}
	switch e.Section {
	case "Transfer":
		switch e.Key {
		case "MinVersion":
			if v != "" && !ValidVersion(v) {
				return fmt.Errorf("not a valid version")
			}
			t.MinVersion = v
		case "ProtectVersion":
			if v == "" {
				t.ProtectVersion = nil
				return nil
			}
			for _, w := range strings.Fields(v) {
				if !ValidVersion(w) {
					return fmt.Errorf("%q is not a valid version", w)
				}
				t.ProtectVersion = append(t.ProtectVersion, w)
			}
		case "Verify":
			return parseBoolInto(v, &t.Verify)
		case "InstancesMax":
			return t.setInstancesMax(v)
		case "ChangeLog", "AppStream", "Features", "RequisiteFeatures":
			// Informational (and optional-feature) keys: accepted so that transfer files
			// written for newer systemd keep loading.
		default:
			return errUnknownKey
		}
	case "Source", "Target":
		r := &t.Source
		if e.Section == "Target" {
			r = &t.Target
		}
		if e.Key == "Type" {
			r.TypeLine = e.Line
		}
		return t.setResource(r, e.Section == "Target", e.Key, v)
	default:
		if strings.HasPrefix(e.Section, "X-") {
			return nil
		}
		return fmt.Errorf("unknown section [%s]", e.Section)
	}
	return nil
}

func (t *Transfer) setInstancesMax(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 2 {
		return fmt.Errorf("must be a number of at least 2")
	}
	t.InstancesMax = n
	return nil
}

func (t *Transfer) setResource(r *Resource, target bool, k, v string) error {
	targetOnly := func() error {
		if !target {
			return fmt.Errorf("only allowed in [Target]")
		}
		return nil
	}
	switch k {
	case "Type":
		switch v {
		case TypeURLFile, TypeURLTar, TypeRegularFile, TypePartition, TypeTar, TypeDirectory:
		case TypeSubvolume:
			// As a source a subvolume is read like any directory; as a target it must be
			// created as a btrfs subvolume, which piboot does not do.
			if target {
				return fmt.Errorf("not supported: a subvolume target needs btrfs subvolume creation, which piboot update does not do (Type=directory installs the same tree as a plain directory)")
			}
		default:
			return fmt.Errorf("unknown type %q (url-file, url-tar, regular-file, partition, tar, directory, subvolume)", v)
		}
		r.Type = v
	case "Path":
		r.Path = v
	case "PathRelativeTo":
		switch v {
		case "root", "esp", "xbootldr", "boot", "":
		default:
			return fmt.Errorf("must be root, esp, xbootldr or boot")
		}
		r.PathRelativeTo = v
	case "MatchPattern":
		if v == "" {
			r.Patterns = nil
			return nil
		}
		words, err := splitWords(v)
		if err != nil {
			return err
		}
		for _, w := range words {
			p, err := ParsePattern(w)
			if err != nil {
				return err
			}
			r.Patterns = append(r.Patterns, p)
		}
	case "MatchPartitionType":
		if err := targetOnly(); err != nil {
			return err
		}
		u, err := PartitionTypeByName(v)
		if err != nil {
			return err
		}
		r.PartitionType = u
	case "PartitionUUID":
		if err := targetOnly(); err != nil {
			return err
		}
		u, err := uuid.Parse(v)
		if err != nil {
			return fmt.Errorf("not a UUID")
		}
		r.PartitionUUID = &u
	case "PartitionFlags":
		if err := targetOnly(); err != nil {
			return err
		}
		n, err := strconv.ParseUint(v, 0, 64)
		if err != nil {
			return fmt.Errorf("not a number")
		}
		r.Flags = &n
	case "PartitionNoAuto", "PartitionGrowFileSystem", "ReadOnly":
		if err := targetOnly(); err != nil {
			return err
		}
		var b bool
		if err := parseBoolInto(v, &b); err != nil {
			return err
		}
		*map[string]**bool{"PartitionNoAuto": &r.NoAuto, "PartitionGrowFileSystem": &r.GrowFS, "ReadOnly": &r.ReadOnly}[k] = &b
	case "Mode":
		if err := targetOnly(); err != nil {
			return err
		}
		n, err := strconv.ParseUint(v, 8, 32)
		if err != nil || n > 0o7777 {
			return fmt.Errorf("not an octal access mode")
		}
		m := uint32(n)
		r.Mode = &m
	case "TriesLeft", "TriesDone":
		if err := targetOnly(); err != nil {
			return err
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n > 0x7fffffff {
			return fmt.Errorf("not a count")
		}
		if k == "TriesLeft" {
			r.TriesLeft = &n
		} else {
			r.TriesDone = &n
		}
	case "InstancesMax":
		if err := targetOnly(); err != nil {
			return err
		}
		return t.setInstancesMax(v)
	case "RemoveTemporary":
		// Leftovers are always removed before an update (they are never a version).
		if err := targetOnly(); err != nil {
			return err
		}
		var b bool
		return parseBoolInto(v, &b)
	case "CurrentSymlink":
		if err := targetOnly(); err != nil {
			return err
		}
		r.CurrentSymlink = v
	default:
		return errUnknownKey
	}
	return nil
}

func (t *Transfer) check() error {
	for _, s := range []struct {
		name string
		r    *Resource
	}{{"[Source]", &t.Source}, {"[Target]", &t.Target}} {
		if s.r.Type == "" {
			return fmt.Errorf("%s lacks Type=", s.name)
		}
		if len(s.r.Patterns) == 0 {
			return fmt.Errorf("%s lacks MatchPattern=", s.name)
		}
	}
	if t.Source.Type == TypePartition {
		return lineError{t.Source.TypeLine, fmt.Errorf("[Source] Type=partition: partitions are only targets")}
	}
	if t.Source.Path == "" {
		return fmt.Errorf("[Source] lacks Path=")
	}
	if listed(t.Source.Type) && !filepath.IsAbs(t.Source.Path) {
		return fmt.Errorf("[Source] Type=%s reads a local directory: Path=%s is not absolute", t.Source.Type, t.Source.Path)
	}
	if tree(t.Source.Type) != (t.Target.Type == TypeDirectory) {
		want := "partition or regular-file"
		if tree(t.Source.Type) {
			want = "directory"
		}
		return lineError{t.Target.TypeLine, fmt.Errorf("[Target] Type=%s cannot take [Source] Type=%s (line %d): that goes to a %s target",
			t.Target.Type, t.Source.Type, t.Source.TypeLine, want)}
	}
	switch t.Target.Type {
	case TypePartition:
		if t.Target.Path == "" {
			t.Target.Path = "auto"
		}
		if t.Target.PartitionType == uuid.Nil {
			t.Target.PartitionType = gpt.TypeLinuxGeneric
		}
		for _, p := range t.Target.Patterns {
			for _, f := range []byte("tmsdlh") {
				if p.Has(f) {
					return fmt.Errorf("[Target] MatchPattern=%s: @%c is not allowed for partitions", p, f)
				}
			}
		}
		if t.Target.Mode != nil || t.Target.TriesLeft != nil || t.Target.TriesDone != nil {
			return fmt.Errorf("[Target] Mode=, TriesLeft=, TriesDone= only apply to regular-file targets")
		}
	case TypeRegularFile, TypeDirectory:
		if t.Target.Path == "" {
			return fmt.Errorf("[Target] lacks Path=")
		}
		if !filepath.IsAbs(t.Target.Path) {
			return fmt.Errorf("[Target] Path=%s is not absolute", t.Target.Path)
		}
		first := t.Target.Patterns[0]
		if t.Target.TriesLeft != nil && !first.Has('l') {
			return fmt.Errorf("[Target] TriesLeft= is set but the first MatchPattern=%s has no @l", first)
		}
		if t.Target.TriesDone != nil && !first.Has('d') {
			return fmt.Errorf("[Target] TriesDone= is set but the first MatchPattern=%s has no @d", first)
		}
		for _, p := range t.Target.Patterns {
			for _, f := range []byte("ufag") {
				if p.Has(f) {
					return fmt.Errorf("[Target] MatchPattern=%s: @%c only applies to partitions", p, f)
				}
			}
		}
	default:
		return fmt.Errorf("[Target] Type=%s is not supported (partition, regular-file, directory are)", t.Target.Type)
	}
	if t.Target.CurrentSymlink != "" && t.Target.Type == TypePartition {
		return fmt.Errorf("[Target] CurrentSymlink= only applies to regular-file and directory targets")
	}
	{
		for _, p := range t.Source.Patterns {
			for _, f := range []byte("ufag") {
				if p.Has(f) {
					return fmt.Errorf("[Source] MatchPattern=%s: @%c only applies to partitions", p, f)
				}
			}
		}
	}
	return nil
}

func parseBoolInto(v string, b *bool) error {
	switch strings.ToLower(v) {
	case "1", "yes", "y", "true", "t", "on":
		*b = true
	case "0", "no", "n", "false", "f", "off":
		*b = false
	default:
		return fmt.Errorf("not a boolean")
	}
	return nil
}

// splitWords splits on whitespace, honouring double and single quotes.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	in := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote")
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// PartitionTypeByName resolves a MatchPartitionType= value: a GUID or one of systemd's
// names ("root" and "usr" mean the running architecture's).
func PartitionTypeByName(v string) (uuid.UUID, error) {
	return gpt.ParseType(v, runtime.GOARCH)
}

// Device is where a device's update configuration lives: piboot's images carry their
// transfer files, keyring and os-release in the store (the image's /usr, mounted at
// /nix/store), while an administrator's overrides go to the root file system's /etc.
type Device struct {
	Dirs    []string   // transfer directories, highest priority first
	Keyring string     // "" when there is none
	Spec    Specifiers // from os-release; 'A' falls back to the booted version
}

// DeviceDefaults searches below root and then below store (e.g. "/nix/store").
func DeviceDefaults(root, store, booted string) Device {
	var d Device
	roots := []string{root}
	if store != "" {
		roots = append(roots, filepath.Join(root, store))
	}
	for _, r := range roots {
		for _, dir := range DefaultDirs {
			d.Dirs = append(d.Dirs, filepath.Join(r, dir))
		}
	}
	for _, r := range roots {
		if k, err := FindKeyring(r); err == nil {
			d.Keyring = k
			break
		}
	}
	for _, r := range roots {
		if s, err := SpecifiersFromOSRelease(r); err == nil {
			d.Spec = s
			break
		}
	}
	if d.Spec == nil {
		d.Spec, _ = SpecifiersFromOSRelease(root)
	}
	if d.Spec['A'] == "" && booted != "" {
		d.Spec['A'] = booted
	}
	return d
}
