// Package images assembles piboot's flashable disk images: from an image.conf and
// build-time repart.d definitions it plans a GPT layout sized exactly to its partitions,
// writes the ESP (systemd-boot, the UKI, loader.conf, Raspberry Pi firmware) with the vfat
// writer and the store with the squashfs writer straight into the image file at their
// offsets, leaves the spare A/B slot sparse, and emits the split partition files, zstd copies
// and the update directory that sysupdate consumes. It needs no root, loop devices, mounts or
// external tools, and the same inputs give the same bytes.
package images

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/coreos/go-systemd/v22/unit"
)

// Config is an image.conf, with paths made absolute and specifiers expanded.
type Config struct {
	File string // the image.conf it came from, for messages

	// [Image]
	ID           string // image id: output names, IMAGE_ID (default "piboot")
	Version      string // IMAGE_VERSION, the suffix of the store label (default "v0")
	Architecture string // Debian architecture: arm64 or amd64
	Seed         string // optional: seeds the derived GUIDs instead of ID and Version

	// [Kernel]
	Linux       string   // kernel image (EFI stub; uncompressed on arm64)
	Initrd      string   // initramfs built by `piboot initrd` (cpio.zst)
	Stub        string   // systemd's linux<efiarch>.efi.stub
	CommandLine []string // joined with spaces; piboot.store= and init= are added
	DTB         string   // optional device tree for the UKI's .dtb

	// [Boot]
	SystemdBoot string   // systemd-boot<efiarch>.efi, installed as the ESP's default loader
	LoaderConf  []string // lines of /loader/loader.conf (default "timeout 5")

	// [Firmware]
	RPi4UEFI      string // RPi4 UEFI firmware zip or directory (optional)
	RaspiFirmware string // Debian raspi-firmware .deb or tree (optional)
	ConfigTxt     string // replaces the firmware's config.txt (optional)

	// [Store]
	Tree       string   // directory whose contents become the store filesystem
	Init       string   // init= path in the booted root (e.g. /nix/store/bin/piboot-demo)
	MountPoint string   // where the store is mounted in the root; default /nix/store
	OSRelease  []string // extra os-release lines (KEY=value)

	// [Partitions]
	Definitions string // build-time repart.d directory (default repart.d next to image.conf)

	// [Initrd]: how to build the initramfs when [Kernel] Initrd= names none.
	InitrdInit    string   // static piboot-init binary for Architecture (Init=)
	ModuleTree    string   // kernel module tree, lib/modules/<version> (Modules=); empty: none
	ModuleNames   []string // modules to include with their dependencies (Module=; default: initrd's set)
	InitrdShell   bool     // include the u-root emergency shell (Shell=, default no)
	InitrdRepartD string   // first-boot repart.d for /etc/repart.d (RepartD=; default: root.conf)

	// [Update] (images/update.go)
	Update UpdateConfig

	where map[string]string // "Section.Key" → file:line (or override) that set it
}

// Where returns where [section] key= was set: "image.conf:12", "override Kernel.Initrd",
// or the file when the value is a default.
func (c *Config) Where(section, key string) string {
	if w := c.where[section+"."+key]; w != "" {
		return w
	}
	return c.File
}

// Override is one setting given outside the file, e.g. on the command line.
type Override struct {
	Section, Key, Value string
}

// EFIArch returns systemd's EFI architecture suffix for a Debian architecture (aa64, x64).
func EFIArch(arch string) string {
	return map[string]string{"arm64": "aa64", "amd64": "x64", "armhf": "arm", "i386": "ia32", "riscv64": "riscv64"}[arch]
}

// GPTArch returns the architecture name systemd uses in partition type names.
func GPTArch(arch string) string {
	return map[string]string{"arm64": "arm64", "amd64": "x86-64", "armhf": "arm", "i386": "x86", "riscv64": "riscv64"}[arch]
}

type key struct {
	multi   bool // may repeat; an empty assignment resets the list
	boolean bool // yes/no
	path    bool // a file or directory, relative to image.conf's directory
	set     func(c *Config, v string)
	get     func(c *Config) *[]string
}

func str(f func(c *Config) *string, path bool) key {
	return key{path: path, set: func(c *Config, v string) { *f(c) = v }}
}

func list(f func(c *Config) *[]string) key {
	return key{multi: true, get: f}
}

var schema = map[string]map[string]key{
	"Image": {
		"Id":           str(func(c *Config) *string { return &c.ID }, false),
		"Version":      str(func(c *Config) *string { return &c.Version }, false),
		"Architecture": str(func(c *Config) *string { return &c.Architecture }, false),
		"Seed":         str(func(c *Config) *string { return &c.Seed }, false),
	},
	"Kernel": {
		"Linux":       str(func(c *Config) *string { return &c.Linux }, true),
		"Initrd":      str(func(c *Config) *string { return &c.Initrd }, true),
		"Stub":        str(func(c *Config) *string { return &c.Stub }, true),
		"DeviceTree":  str(func(c *Config) *string { return &c.DTB }, true),
		"CommandLine": list(func(c *Config) *[]string { return &c.CommandLine }),
	},
	"Boot": {
		"SystemdBoot": str(func(c *Config) *string { return &c.SystemdBoot }, true),
		"LoaderConf":  list(func(c *Config) *[]string { return &c.LoaderConf }),
	},
	"Firmware": {
		"RPi4UEFI":      str(func(c *Config) *string { return &c.RPi4UEFI }, true),
		"RaspiFirmware": str(func(c *Config) *string { return &c.RaspiFirmware }, true),
		"ConfigTxt":     str(func(c *Config) *string { return &c.ConfigTxt }, true),
	},
	"Store": {
		"Tree":       str(func(c *Config) *string { return &c.Tree }, true),
		"Init":       str(func(c *Config) *string { return &c.Init }, false),
		"MountPoint": str(func(c *Config) *string { return &c.MountPoint }, false),
		"OSRelease":  list(func(c *Config) *[]string { return &c.OSRelease }),
	},
	"Partitions": {
		"Definitions": str(func(c *Config) *string { return &c.Definitions }, true),
	},
	"Initrd": {
		"Init":    str(func(c *Config) *string { return &c.InitrdInit }, true),
		"Modules": str(func(c *Config) *string { return &c.ModuleTree }, true),
		"Module":  list(func(c *Config) *[]string { return &c.ModuleNames }),
		"Shell":   {boolean: true, set: func(c *Config, v string) { c.InitrdShell, _ = yesNo(v) }},
		"RepartD": str(func(c *Config) *string { return &c.InitrdRepartD }, true),
	},
}

// optionLines finds the line number of each option go-systemd's parser returns, in order:
// the parser itself keeps none, and every error must name file and line. It follows that
// parser's rules (a value ending in '\\' continues on the next line unless that is blank; so
// does a comment) and finds what the parser drops or rejects without saying where: an
// assignment before the first section (dropped silently), a bad section header, a line
// that is no Key=value.
func optionLines(file string, data []byte) ([]int, error) {
	var lines []int
	const (
		none = iota
		value
		comment
	)
	cont, section := none, false
	for i, l := range strings.Split(string(data), "\n") {
		raw := strings.TrimSuffix(l, "\r")
		t := strings.TrimSpace(raw)
		switch {
		case cont == value:
			if t == "" || !strings.HasSuffix(raw, "\\") {
				cont = none
			}
			continue
		case cont == comment:
			if !strings.HasSuffix(strings.TrimSuffix(raw, " "), "\\") {
				cont = none
			}
			continue
		case t == "":
			continue
		case t[0] == '#' || t[0] == ';':
			if strings.HasSuffix(strings.TrimSuffix(raw, " "), "\\") {
				cont = comment
			}
			continue
		case t[0] == '[':
			if strings.IndexByte(t, ']') != len(t)-1 {
				return nil, fmt.Errorf("%s:%d: %s: a section header is [Name] alone on its line", file, i+1, t)
			}
			section = true
			continue
		}
		k, v, ok := strings.Cut(t, "=")
		switch {
		case !ok:
			return nil, fmt.Errorf("%s:%d: %q is not Key=value", file, i+1, t)
		case !section:
			return nil, fmt.Errorf("%s:%d: %s= before any [section]", file, i+1, strings.TrimSpace(k))
		}
		if strings.TrimSpace(v) != "" && strings.HasSuffix(raw, "\\") {
			cont = value
		}
		lines = append(lines, i+1)
	}
	return lines, nil
}

// LoadConfig reads an image.conf, applies overrides (which win over the file), fills in
// defaults and checks the result. Relative paths are relative to the file's directory.
func LoadConfig(file string, overrides []Override) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return ParseConfig(file, data, overrides)
}

// CheckInputs opens every input the config names, so that a missing or unreadable file
// fails with the line that named it (image.conf:7: [Kernel] Linux=: open ...) before a
// build starts.
func (c *Config) CheckInputs() error {
	for _, in := range []struct {
		sec, key, path string
		dir            bool
	}{
		{"Kernel", "Linux", c.Linux, false}, {"Kernel", "Initrd", c.Initrd, false}, {"Kernel", "Stub", c.Stub, false},
		{"Kernel", "DeviceTree", c.DTB, false}, {"Boot", "SystemdBoot", c.SystemdBoot, false},
		{"Firmware", "RPi4UEFI", c.RPi4UEFI, false}, {"Firmware", "RaspiFirmware", c.RaspiFirmware, false},
		{"Firmware", "ConfigTxt", c.ConfigTxt, false}, {"Store", "Tree", c.Tree, true}, {"Partitions", "Definitions", c.Definitions, true},
		{"Initrd", "Init", c.InitrdInit, false}, {"Initrd", "Modules", c.ModuleTree, true}, {"Initrd", "RepartD", c.InitrdRepartD, true},
	} {
		if in.path == "" {
			continue
		}
		f, err := os.Open(in.path)
		var st os.FileInfo
		if err == nil {
			st, err = f.Stat()
			f.Close()
		}
		switch {
		case err != nil:
			return fmt.Errorf("%s: [%s] %s=: %w", c.Where(in.sec, in.key), in.sec, in.key, err)
		case in.dir && !st.IsDir():
			return fmt.Errorf("%s: [%s] %s=%s: not a directory", c.Where(in.sec, in.key), in.sec, in.key, in.path)
		case !in.dir && !st.Mode().IsRegular() && !(in.sec == "Firmware" && in.key != "ConfigTxt" && st.IsDir()):
			// Firmware comes as a zip or .deb, or unpacked as a directory.
			return fmt.Errorf("%s: [%s] %s=%s: not a regular file", c.Where(in.sec, in.key), in.sec, in.key, in.path)
		}
	}
	// The init the UKI starts must be in the store, or every boot ends in piboot-init's
	// emergency shell. A symlink may point anywhere in the booted root: not followed.
	if rel, ok := strings.CutPrefix(c.Init, c.MountPoint+"/"); ok && c.Tree != "" {
		st, err := os.Lstat(filepath.Join(c.Tree, filepath.FromSlash(rel)))
		switch {
		case err != nil:
			return fmt.Errorf("%s: [Store] Init=%s: not in the store tree: %w", c.Where("Store", "Init"), c.Init, err)
		case st.Mode().IsRegular() && st.Mode().Perm()&0o111 == 0:
			return fmt.Errorf("%s: [Store] Init=%s: %s is not executable", c.Where("Store", "Init"), c.Init, filepath.Join(c.Tree, rel))
		case !st.Mode().IsRegular() && st.Mode()&os.ModeSymlink == 0:
			return fmt.Errorf("%s: [Store] Init=%s: %s is not a file", c.Where("Store", "Init"), c.Init, filepath.Join(c.Tree, rel))
		}
	}
	return nil
}

// ParseConfig is LoadConfig on data already read from file.
func ParseConfig(file string, data []byte, overrides []Override) (*Config, error) {
	lines, err := optionLines(file, data)
	if err != nil {
		return nil, err
	}
	// go-systemd's parser trips over continuation lines ending in CRLF (a file edited on
	// Windows): it gets LF only.
	opts, err := unit.DeserializeOptions(bytes.NewReader(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(lines) != len(opts) {
		lines = nil // an unusual layout: report without line numbers rather than wrong ones
	}
	c := &Config{File: file}
	dir := filepath.Dir(file)
	type raw struct {
		where string
		sec   string
		k     key
		name  string
		value string
	}
	var all []raw
	seen := map[string]string{}
	for i, o := range opts {
		where := file
		if lines != nil {
			where = fmt.Sprintf("%s:%d", file, lines[i])
		}
		keys, ok := schema[o.Section]
		if !ok {
			return nil, fmt.Errorf("%s: unknown section [%s]", where, o.Section)
		}
		k, ok := keys[o.Name]
		if !ok {
			return nil, fmt.Errorf("%s: unknown key %s= in [%s]", where, o.Name, o.Section)
		}
		if id := o.Section + "." + o.Name; !k.multi {
			// A second Linux= in one file is a mistake, not an override: say so rather
			// than build with whichever came last.
			if first, dup := seen[id]; dup {
				return nil, fmt.Errorf("%s: %s= in [%s] is already set at %s (one value per key)", where, o.Name, o.Section, first)
			}
			seen[id] = where
		}
		// A value continued over lines is one line, as systemd reads it: go-systemd keeps
		// the backslashes and newlines (CommandLine= got a stray "\\" word).
		v := strings.TrimSpace(strings.ReplaceAll(o.Value, "\\\n", " "))
		all = append(all, raw{where, o.Section, k, o.Name, v})
	}
	for _, o := range overrides {
		where := fmt.Sprintf("override %s.%s", o.Section, o.Key)
		k, ok := schema[o.Section][o.Key]
		if !ok {
			return nil, fmt.Errorf("%s: unknown setting", where)
		}
		all = append(all, raw{where, o.Section, k, o.Key, o.Value})
	}
	// [Image] first: the specifiers of every other value depend on it.
	c.where = map[string]string{}
	apply := func(r raw) error {
		c.where[r.sec+"."+r.name] = r.where
		v, err := c.expand(r.value)
		if err != nil {
			return fmt.Errorf("%s: %s=%s: %w", r.where, r.name, r.value, err)
		}
		if r.k.boolean {
			if _, err := yesNo(v); err != nil {
				return fmt.Errorf("%s: %s=%s: %w", r.where, r.name, r.value, err)
			}
		}
		switch {
		case r.k.multi:
			p := r.k.get(c)
			if v == "" {
				*p = nil
			} else {
				*p = append(*p, v)
			}
		case r.k.path && v != "" && !filepath.IsAbs(v) && !strings.HasPrefix(r.where, "override"):
			r.k.set(c, filepath.Join(dir, v))
		case r.k.path && v != "" && !filepath.IsAbs(v):
			abs, err := filepath.Abs(v)
			if err != nil {
				return err
			}
			r.k.set(c, abs)
		default:
			r.k.set(c, v)
		}
		return nil
	}
	for _, pass := range []bool{true, false} {
		for _, r := range all {
			if (r.sec == "Image") == pass {
				if err := apply(r); err != nil {
					return nil, err
				}
			}
			if pass && r.sec == "Image" {
				if err := c.checkImage(r.where); err != nil {
					return nil, err
				}
			}
		}
		if pass {
			c.defaults()
		}
	}
	if c.Definitions == "" {
		c.Definitions = filepath.Join(dir, "repart.d")
	}
	if len(c.LoaderConf) == 0 {
		c.LoaderConf = []string{"timeout 5"}
	}
	if c.MountPoint == "" {
		c.MountPoint = "/nix/store"
	}
	c.MountPoint = path.Clean(c.MountPoint) // CopyFiles= sources are compared with it
	return c, c.check()
}

func (c *Config) defaults() {
	if c.ID == "" {
		c.ID = "piboot"
	}
	if c.Version == "" {
		c.Version = "v0"
	}
	if c.Architecture == "" {
		c.Architecture = "arm64"
	}
}

// validName reports whether s starts with a letter or digit and continues with letters,
// digits and the bytes of extra. Versions and ids become file names, GPT labels and
// sysupdate @v values; plain code rather than package-level regexps keeps them off every
// piboot command's start-up.
func validName(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || strings.IndexByte(extra, c) < 0) {
			return false
		}
	}
	return s != ""
}

func (c *Config) checkImage(where string) error {
	// systemd's and the kernel's names for the architectures (ConditionArchitecture=,
	// uname -m) mean the same image; %a and the cache use Debian's.
	if a, ok := archAliases[c.Architecture]; ok {
		c.Architecture = a
	}
	switch {
	case c.ID != "" && !validName(c.ID, "._-"):
		return fmt.Errorf("%s: Id=%s: only letters, digits, '.', '_' and '-' are allowed", where, c.ID)
	case c.Version != "" && !validName(c.Version, ".,_+-"):
		return fmt.Errorf("%s: Version=%s: a sysupdate version is letters, digits and .,_+-", where, c.Version)
	case c.Version != "" && strings.Contains(c.Version, "_"):
		// <id>_<version> names are split at the first '_' by sysupdate patterns.
		return fmt.Errorf("%s: Version=%s: must not contain '_'", where, c.Version)
	case c.Architecture != "" && EFIArch(c.Architecture) == "":
		return fmt.Errorf("%s: Architecture=%s: unknown (arm64, amd64, armhf, i386, riscv64)", where, c.Architecture)
	}
	return nil
}

// maxName is the longest file name Linux file systems (and FAT's long names) hold; outSuffix
// the longest suffix the builder puts after <id>_<version> but for split names.
const (
	maxName   = 255
	outSuffix = ".raw.zst.tmp"
)

var archAliases = map[string]string{"x86-64": "amd64", "x86_64": "amd64", "aarch64": "arm64", "arm": "armhf", "x86": "i386", "i686": "i386"}

// yesNo parses a systemd boolean.
func yesNo(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "yes", "y", "true", "t", "on":
		return true, nil
	case "0", "no", "n", "false", "f", "off":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean")
}

// expand replaces the specifiers %i (id), %v (version), %a (Debian architecture), %e (EFI
// architecture, e.g. aa64), %C (piboot's download cache) and %%.
func (c *Config) expand(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
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
		case 'i':
			b.WriteString(c.ID)
		case 'v':
			b.WriteString(c.Version)
		case 'a':
			b.WriteString(c.Architecture)
		case 'e':
			b.WriteString(EFIArch(c.Architecture))
		case 'C':
			b.WriteString(CacheDir())
		case '%':
			b.WriteByte('%')
		default:
			return "", fmt.Errorf("unknown specifier %%%c (known: %%i %%v %%a %%e %%C %%%%)", s[i])
		}
	}
	return b.String(), nil
}

func (c *Config) check() error {
	need := []struct{ key, val string }{
		{"[Kernel] Linux", c.Linux}, {"[Kernel] Initrd (or [Initrd] Init)", c.Initrd + c.InitrdInit}, {"[Kernel] Stub", c.Stub},
		{"[Boot] SystemdBoot", c.SystemdBoot}, {"[Store] Tree", c.Tree}, {"[Store] Init", c.Init},
	}
	for _, n := range need {
		if n.val == "" {
			return fmt.Errorf("%s: %s= is required", c.File, n.key)
		}
	}
	if n := len(c.BaseName() + outSuffix); n > maxName {
		// Found before anything is built, not when the first output is renamed.
		return fmt.Errorf("%s: [Image] Id= and Version= make output names of %d bytes (%s_%s%s); file systems hold %d", c.Where("Image", "Id"), n, c.ID, c.Version, outSuffix, maxName)
	}
	if !strings.HasPrefix(c.Init, "/") {
		return fmt.Errorf("%s: [Store] Init=%s must be an absolute path in the booted root", c.Where("Store", "Init"), c.Init)
	}
	if strings.ContainsAny(c.Init, " \t\n\"") {
		// init= is one word of the kernel command line.
		return fmt.Errorf("%s: [Store] Init=%q: the kernel command line's init= cannot hold spaces or quotes", c.Where("Store", "Init"), c.Init)
	}
	if !strings.HasPrefix(c.MountPoint, "/") || c.MountPoint == "/" {
		return fmt.Errorf("%s: [Store] MountPoint=%s must be an absolute directory below /", c.Where("Store", "MountPoint"), c.MountPoint)
	}
	for _, l := range c.OSRelease {
		k, _, ok := strings.Cut(l, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t\"") {
			return fmt.Errorf("%s: [Store] OSRelease=%s: want KEY=value", c.File, l)
		}
	}
	return nil
}

// SourceDateEpoch returns $SOURCE_DATE_EPOCH (the time stamped on every file of the image),
// or 0 when unset, so that builds stay reproducible by default.
func SourceDateEpoch() (int64, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a non-negative number of seconds", v)
	}
	if n > math.MaxUint32 {
		// squashfs stores 32-bit times: later ones would be clamped without a word,
		// and such a value is usually milliseconds.
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q is after 2106-02-07, the last time squashfs can store (seconds, not milliseconds)", v)
	}
	return n, nil
}

// readAll reads a file named in the config, with the key in the error.
func readInput(what, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return b, nil
}

// CacheDir is where scripts/deps.sh caches Debian's kernels and systemd-boot ($PIBOOT_CACHE,
// default ~/.cache/piboot): the %C specifier.
func CacheDir() string {
	if c := os.Getenv("PIBOOT_CACHE"); c != "" {
		return c
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "piboot")
}
