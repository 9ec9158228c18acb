package repart

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/uuid"
)

// Unset marks a size limit that a definition leaves open (systemd's UINT64_MAX).
const Unset = math.MaxUint64

// Tristate is a yes/no setting that may be left to the default.
type Tristate int8

// Tristate values.
const (
	Default Tristate = iota
	No
	Yes
)

// CopyFile is one CopyFiles= pair.
type CopyFile struct{ Source, Target string }

// Definition is one repart.d partition definition file.
type Definition struct {
	Path     string    // the file it came from
	Type     uuid.UUID // resolved type GUID
	TypeName string    // Type= as written
	Label    string
	LabelSet bool
	UUID     uuid.UUID // UUID= (uuid.Nil with UUIDSet for UUID=null)
	UUIDSet  bool
	Priority int32
	Weight   uint32 // default 1000
	// PaddingWeight defaults to 0.
	PaddingWeight uint32
	// Sizes in bytes, rounded to 4096 as systemd does (min down, max up); Unset if absent.
	SizeMin, SizeMax, PaddingMin, PaddingMax uint64
	Format                                   string
	ReadOnly, NoAuto, GrowFileSystem         Tristate
	FactoryReset                             bool
	Flags                                    uint64 // Flags=: raw GPT attribute bits
	SplitName                                string // default "%t"; "-" turns it off (empty)
	CopyFiles                                []CopyFile
	CopyBlocks                               string // a path or "auto"
	// CopyBlocksSize is the size of the CopyBlocks= source; the caller fills it in (Plan does
	// no I/O). Unset if unknown.
	CopyBlocksSize  uint64
	MakeDirectories []string

	lines map[string]pos // where each key was set, for errors found after parsing
}

type pos struct {
	file string
	line int
}

// Name is the definition file's base name, as systemd prints it.
func (d *Definition) Name() string { return filepath.Base(d.Path) }

// Error is a problem in a definition file; it names file and line.
type Error struct {
	File string
	Line int // 0 when the problem is with the file as a whole
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// ParseDir reads every *.conf file in dir (sorted by name, as systemd does) plus each file's
// drop-ins in <name>.conf.d/*.conf. arch (systemd's name, "arm64", "x86-64", or Go's GOARCH)
// resolves Type=root, Type=usr and their verity variants. A directory without definitions
// gives an empty list.
func ParseDir(dir, arch string) ([]Definition, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("repart: definitions: %w", err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue // hidden, as systemd skips them: editors' lock and swap files, "mv x .x"
		}
		if strings.HasSuffix(e.Name(), ".conf") && e.Type().IsRegular() || (e.Type()&os.ModeSymlink != 0 && strings.HasSuffix(e.Name(), ".conf")) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	defs := make([]Definition, 0, len(names))
	for _, n := range names {
		p := filepath.Join(dir, n)
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 && isMasked(p) {
			continue // masked (/dev/null symlink) or dangling, as systemd skips them
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("repart: %w", err)
		}
		d := Definition{Path: p}
		d.defaults()
		if err := d.parse(p, src, arch); err != nil {
			return nil, err
		}
		dropins, _ := filepath.Glob(filepath.Join(dir, n+".d", "*.conf"))
		sort.Strings(dropins)
		for _, dp := range dropins {
			b, err := os.ReadFile(dp)
			if err != nil {
				return nil, fmt.Errorf("repart: %w", err)
			}
			if err := d.parse(dp, b, arch); err != nil {
				return nil, err
			}
		}
		if err := d.finish(p); err != nil {
			return nil, err
		}
		defs = append(defs, d)
	}
	if err := checkDuplicates(defs); err != nil {
		return nil, err
	}
	return defs, nil
}

func isMasked(p string) bool {
	t, err := os.Readlink(p)
	return err == nil && t == "/dev/null"
}

// Parse parses one definition from src; name is used in errors and as Path.
func Parse(name string, src []byte, arch string) (*Definition, error) {
	d := &Definition{Path: name}
	d.defaults()
	if err := d.parse(name, src, arch); err != nil {
		return nil, err
	}
	if err := d.finish(name); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Definition) defaults() {
	d.Weight = 1000
	d.SizeMin, d.SizeMax, d.PaddingMin, d.PaddingMax = Unset, Unset, Unset, Unset
	d.CopyBlocksSize = Unset
	d.SplitName = "%t"
}

// lines of a systemd INI file, with continuation lines joined; each keeps its first line number.
type iniLine struct {
	n    int
	text string
}

func splitLines(src []byte) []iniLine {
	// One string for the whole file: lines are slices of it, not an allocation each.
	text := strings.TrimPrefix(string(src), "\xef\xbb\xbf")
	var out []iniLine
	n := 0
	var cont *iniLine
	for text != "" {
		line, rest, _ := strings.Cut(text, "\n")
		text = rest
		n++
		t := strings.TrimSpace(line) // also the \r of a CRLF line end
		if cont == nil && (t == "" || t[0] == '#' || t[0] == ';') {
			continue
		}
		if cont != nil && (strings.HasPrefix(t, "#") || strings.HasPrefix(t, ";")) {
			continue // comments inside a continuation are dropped, as systemd does
		}
		more := strings.HasSuffix(t, "\\") && !strings.HasSuffix(t, "\\\\")
		if more {
			t = strings.TrimSuffix(t, "\\") + " "
		}
		if cont != nil {
			cont.text += t
		} else {
			cont = &iniLine{n: n, text: t}
		}
		if !more {
			cont.text = strings.TrimSpace(cont.text)
			out = append(out, *cont)
			cont = nil
		}
	}
	if cont != nil {
		cont.text = strings.TrimSpace(cont.text)
		out = append(out, *cont)
	}
	return out
}

func (d *Definition) parse(file string, src []byte, arch string) error {
	section := ""
	if d.lines == nil {
		d.lines = map[string]pos{}
	}
	seen := map[string]int{}
	for _, l := range splitLines(src) {
		bad := func(format string, a ...any) error {
			return &Error{File: file, Line: l.n, Msg: fmt.Sprintf(format, a...)}
		}
		if strings.HasPrefix(l.text, "[") {
			if !strings.HasSuffix(l.text, "]") {
				return bad("invalid section header %q", l.text)
			}
			section = l.text[1 : len(l.text)-1]
			if section != "Partition" && !strings.HasPrefix(section, "X-") {
				return bad("unknown section [%s] (repart.d files have only [Partition])", section)
			}
			if _, ok := d.lines["[Partition]"]; !ok && section == "Partition" {
				d.lines["[Partition]"] = pos{file, l.n}
			}
			continue
		}
		if section == "" {
			return bad("assignment outside of any section: %q", l.text)
		}
		key, val, ok := strings.Cut(l.text, "=")
		if !ok {
			return bad("missing '=' in %q", l.text)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if strings.HasPrefix(section, "X-") || strings.HasPrefix(key, "X-") {
			continue
		}
		multi := key == "CopyFiles" || key == "MakeDirectories"
		if prev, dup := seen[key]; dup && !multi {
			return bad("duplicate %s= (first set on line %d)", key, prev)
		}
		seen[key] = l.n
		d.lines[key] = pos{file, l.n}
		if err := d.set(key, val, arch); err != nil {
			return bad("%s=%s: %v", key, val, err)
		}
	}
	return nil
}

func (d *Definition) set(key, val, arch string) error {
	var err error
	switch key {
	case "Type":
		d.Type, err = gpt.ParseType(val, arch)
		d.TypeName = val
	case "Label":
		if !utf8.ValidString(val) {
			return fmt.Errorf("not valid UTF-8")
		}
		if d.Label, err = expandSpecifiers(val); err != nil {
			return err
		}
		if n := len(utf16.Encode([]rune(d.Label))); n > 36 {
			return fmt.Errorf("label is %d UTF-16 characters long, GPT allows 36", n)
		}
		d.LabelSet = true
	case "UUID":
		switch val {
		case "":
			d.UUID, d.UUIDSet = uuid.Nil, false
		case "null":
			d.UUID, d.UUIDSet = uuid.Nil, true
		default:
			d.UUID, err = parseID128(val)
			d.UUIDSet = err == nil
		}
	case "Priority":
		var v int64
		v, err = strconv.ParseInt(val, 10, 32)
		d.Priority = int32(v)
	case "Weight", "PaddingWeight":
		var v uint64
		v, err = strconv.ParseUint(val, 10, 32)
		if err == nil && v > 1000*1000 {
			err = fmt.Errorf("weight must be in the range 0…1000000")
		}
		if key == "Weight" {
			d.Weight = uint32(v)
		} else {
			d.PaddingWeight = uint32(v)
		}
	case "SizeMinBytes", "PaddingMinBytes", "SizeMaxBytes", "PaddingMaxBytes":
		var v uint64
		if v, err = ParseSize(val); err != nil {
			return err
		}
		switch key {
		case "SizeMinBytes":
			d.SizeMin = roundDown(v, 4096)
		case "PaddingMinBytes":
			d.PaddingMin = roundDown(v, 4096)
		case "SizeMaxBytes":
			d.SizeMax = roundUp(v, 4096)
		case "PaddingMaxBytes":
			d.PaddingMax = roundUp(v, 4096)
		}
	case "Format":
		if val == "" || val == "." || val == ".." || strings.Contains(val, "/") {
			return fmt.Errorf("not a valid file system type")
		}
		d.Format = val
	case "ReadOnly", "NoAuto", "GrowFileSystem":
		var t Tristate
		if val != "" {
			var b bool
			if b, err = parseBool(val); err != nil {
				return err
			}
			t = No
			if b {
				t = Yes
			}
		}
		switch key {
		case "ReadOnly":
			d.ReadOnly = t
		case "NoAuto":
			d.NoAuto = t
		default:
			d.GrowFileSystem = t
		}
	case "FactoryReset":
		d.FactoryReset, err = parseBool(val)
	case "Flags":
		// Like systemd's safe_atou64: decimal, or 0x/0o/0b-prefixed; no octal by leading zero.
		base := 10
		if l := strings.ToLower(val); strings.HasPrefix(l, "0x") || strings.HasPrefix(l, "0o") || strings.HasPrefix(l, "0b") {
			base = 0
		}
		if strings.Contains(val, "_") {
			return fmt.Errorf("not a number")
		}
		d.Flags, err = strconv.ParseUint(val, base, 64)
	case "SplitName":
		d.SplitName = val
	case "CopyFiles":
		if val == "" {
			d.CopyFiles = nil
			return nil
		}
		src, dst, two := strings.Cut(val, ":")
		if !two {
			dst = src
		}
		if strings.Contains(dst, ":") {
			return fmt.Errorf("too many ':'-separated arguments")
		}
		for _, p := range []string{src, dst} {
			if !filepath.IsAbs(p) {
				return fmt.Errorf("path %q is not absolute", p)
			}
		}
		d.CopyFiles = append(d.CopyFiles, CopyFile{filepath.Clean(src), filepath.Clean(dst)})
	case "CopyBlocks":
		if val != "" && val != "auto" && !filepath.IsAbs(val) {
			return fmt.Errorf("path %q is not absolute (or \"auto\")", val)
		}
		if val != "" && val != "auto" {
			val = filepath.Clean(val)
		}
		d.CopyBlocks = val
	case "MakeDirectories":
		for _, w := range strings.Fields(val) {
			if !filepath.IsAbs(w) {
				return fmt.Errorf("path %q is not absolute", w)
			}
			d.MakeDirectories = append(d.MakeDirectories, filepath.Clean(w))
		}
	case "Encrypt":
		if b, e := parseBool(val); val != "off" && (e != nil || b) {
			return fmt.Errorf("encryption is not supported by piboot")
		}
	case "Verity":
		if val != "off" && val != "" {
			return fmt.Errorf("dm-verity partitions are not supported by piboot")
		}
	case "VerityMatchKey":
		return fmt.Errorf("dm-verity partitions are not supported by piboot")
	default:
		return fmt.Errorf("unknown key")
	}
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		// Say what was wanted, not which Go function failed.
		what := map[string]string{"Priority": "an integer in the range -2147483648…2147483647",
			"Weight": "an integer in the range 0…1000000", "PaddingWeight": "an integer in the range 0…1000000",
			"Flags": "a 64-bit number (decimal, or 0x, 0o, 0b prefixed)"}[key]
		if ne.Err == strconv.ErrRange {
			return fmt.Errorf("out of range (want %s)", what)
		}
		return fmt.Errorf("not a number (want %s)", what)
	}
	return err
}

// finish applies the cross-key checks and defaults systemd applies after parsing.
func (d *Definition) finish(file string) error {
	bad := func(key, format string, a ...any) error {
		return d.errorAt(key, fmt.Sprintf(format, a...))
	}
	if d.SizeMin != Unset && d.SizeMax != Unset && d.SizeMin > d.SizeMax {
		return bad("SizeMinBytes", "SizeMinBytes= larger than SizeMaxBytes=")
	}
	if d.PaddingMin != Unset && d.PaddingMax != Unset && d.PaddingMin > d.PaddingMax {
		return bad("PaddingMinBytes", "PaddingMinBytes= larger than PaddingMaxBytes=")
	}
	if d.Type == uuid.Nil {
		return bad("Type", "Type= not defined")
	}
	if d.CopyBlocks != "" && (d.Format != "" || len(d.CopyFiles) > 0 || len(d.MakeDirectories) > 0) {
		return bad("CopyBlocks", "Format=/CopyFiles=/MakeDirectories= and CopyBlocks= cannot be combined")
	}
	if (len(d.CopyFiles) > 0 || len(d.MakeDirectories) > 0) && d.Format == "swap" {
		return bad("Format", "Format=swap and CopyFiles= cannot be combined")
	}
	if d.Format == "" && (len(d.CopyFiles) > 0 || len(d.MakeDirectories) > 0) {
		d.Format = "ext4" // systemd's default when files are to be copied
	}
	role := ""
	if t, ok := gpt.TypeByGUID(d.Type); ok {
		role = t.Role
	}
	if (role == "root-verity" || role == "usr-verity") && d.ReadOnly == Default {
		d.ReadOnly = Yes
	}
	if knowsGrowFS(d.Type) && d.ReadOnly != Yes {
		d.GrowFileSystem = Yes // systemd 252 forces this on, whatever GrowFileSystem= says
	}
	if d.SplitName == "-" {
		d.SplitName = ""
	}
	return nil
}

// errorAt names the file and line where key was set; for a key that is not set, the
// [Partition] line, or line 1 of a file without one, as systemd does.
func (d *Definition) errorAt(key, msg string) error {
	if p, ok := d.lines[key]; ok {
		return &Error{File: p.file, Line: p.line, Msg: msg}
	}
	if p, ok := d.lines["[Partition]"]; ok && p.file == d.Path {
		return &Error{File: p.file, Line: p.line, Msg: msg}
	}
	return &Error{File: d.Path, Line: 1, Msg: msg}
}

func checkDuplicates(defs []Definition) error {
	labels := map[string]*Definition{}
	uuids := map[uuid.UUID]*Definition{}
	for i := range defs {
		d := &defs[i]
		if d.LabelSet && d.Label != "" {
			if o := labels[d.Label]; o != nil {
				return d.errorAt("Label", fmt.Sprintf("duplicate definition: Label=%s is also used by %s", d.Label, o.Path))
			}
			labels[d.Label] = d
		}
		if d.UUIDSet && d.UUID != uuid.Nil {
			if o := uuids[d.UUID]; o != nil {
				return d.errorAt("UUID", fmt.Sprintf("duplicate definition: UUID=%s is also used by %s", d.UUID, o.Path))
			}
			uuids[d.UUID] = d
		}
	}
	return nil
}

// parseID128 accepts what sd_id128_from_string accepts: 32 hex digits or the dashed form.
func parseID128(s string) (uuid.UUID, error) {
	if len(s) != 32 && len(s) != 36 {
		return uuid.Nil, fmt.Errorf("not a valid UUID")
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("not a valid UUID")
	}
	return u, nil
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "yes", "y", "true", "t", "on":
		return true, nil
	case "0", "no", "n", "false", "f", "off":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean")
}

// expandSpecifiers supports "%%"; the machine-specific specifiers systemd offers would make
// a first-boot label depend on the build host, so they are refused.
func expandSpecifiers(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '%' {
			b.WriteByte('%')
			i++
			continue
		}
		if i+1 < len(s) {
			return "", fmt.Errorf("specifier %%%c is not supported", s[i+1])
		}
		return "", fmt.Errorf("lone %% at the end")
	}
	return b.String(), nil
}

// ParseSize parses a size as systemd's parse_size(…, 1024) does: an integer or decimal number
// with an optional B, K, M, G, T, P or E suffix (powers of 1024), and sums such as "1G 512M".
func ParseSize(s string) (uint64, error) {
	units := []struct {
		suf string
		f   uint64
	}{{"E", 1 << 60}, {"P", 1 << 50}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}, {"", 1}}
	var total uint64
	start := 0
	p := s
	for {
		p = strings.TrimLeft(p, " \t\n\r")
		if p == "" || p[0] == '-' {
			return 0, fmt.Errorf("invalid size %q", s)
		}
		i := 0
		for i < len(p) && p[i] >= '0' && p[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("invalid size %q", s)
		}
		l, err := strconv.ParseUint(p[:i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("size %q out of range", s)
		}
		p = p[i:]
		frac := 0.0
		if strings.HasPrefix(p, ".") {
			p = p[1:]
			j := 0
			for j < len(p) && p[j] >= '0' && p[j] <= '9' {
				j++
			}
			if j > 0 {
				v, _ := strconv.ParseUint(p[:j], 10, 64)
				frac = float64(v)
				for k := 0; k < j; k++ {
					frac /= 10
				}
			}
			p = p[j:]
		}
		p = strings.TrimLeft(p, " \t\n\r")
		k := start
		for ; k < len(units); k++ {
			if strings.HasPrefix(p, units[k].suf) {
				break
			}
		}
		if k >= len(units) {
			return 0, fmt.Errorf("invalid size %q", s)
		}
		f := units[k].f
		extra := uint64(0)
		if frac > 0 {
			extra = 1
		}
		if l+extra > math.MaxUint64/f {
			return 0, fmt.Errorf("size %q out of range", s)
		}
		v := l*f + uint64(frac*float64(f))
		if v > math.MaxUint64-total {
			return 0, fmt.Errorf("size %q out of range", s)
		}
		total += v
		p = p[len(units[k].suf):]
		start = k + 1
		if p == "" {
			return total, nil
		}
	}
}

func roundDown(v, p uint64) uint64 { return v / p * p }

func roundUp(v, p uint64) uint64 {
	q := v / p
	if v%p != 0 {
		q++
	}
	if q > math.MaxUint64/p {
		return math.MaxUint64
	}
	return q * p
}

func knowsGrowFS(t uuid.UUID) bool {
	if pt, ok := gpt.TypeByGUID(t); ok && (pt.Role == "root" || pt.Role == "usr") {
		return true
	}
	switch t {
	case gpt.TypeHome, gpt.TypeSrv, gpt.TypeVar, gpt.TypeTmp, gpt.TypeXBOOTLDR:
		return true
	}
	return false
}

func knowsReadOnly(t uuid.UUID) bool {
	if pt, ok := gpt.TypeByGUID(t); ok && (pt.Role == "root-verity" || pt.Role == "usr-verity") {
		return true
	}
	return knowsGrowFS(t)
}

func knowsNoAuto(t uuid.UUID) bool {
	if pt, ok := gpt.TypeByGUID(t); ok && (pt.Role == "root-verity" || pt.Role == "usr-verity") {
		return true
	}
	return knowsGrowFS(t) || t == gpt.TypeSwap
}
