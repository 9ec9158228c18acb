// Package initrd assembles piboot's initramfs: piboot-init as /init, the u-root
// emergency shell and core commands as one busybox, kernel modules with their
// dependencies (resolved from each module's .modinfo), the list piboot-init loads them
// from and their modules.alias (so drivers load only for devices present), and the
// first-boot repart.d definitions. The cpio is reproducible (sorted paths,
// uid/gid 0, mtime 0) and zstd-compressed.
package initrd

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/piboot/piboot/initrd/layout"
)

// Paths inside the initramfs that piboot-init relies on (see package layout).
const (
	ModulesDir = layout.ModulesDir
	RepartDir  = layout.RepartDir
	BusyboxBin = layout.BusyboxBin
	ShellPath  = layout.ShellPath
)

// DefaultRootConf is the seed's first-boot definition: the root partition takes the rest
// of the disk and is formatted ext4.
const DefaultRootConf = `[Partition]
Type=root
Format=ext4
Label=root
Weight=1000
`

// Config says what goes into the initramfs.
type Config struct {
	// Init is the static piboot-init binary, installed as /init.
	Init string
	// Busybox is the u-root busybox (see Busybox); BusyboxCommands are linked to it in
	// /bin. Empty Busybox means no emergency shell.
	Busybox         string
	BusyboxCommands []string
	// ModuleTree is a kernel's lib/modules/<version> directory; Modules the names to
	// include (with their dependencies). Empty ModuleTree means no modules.
	ModuleTree string
	Modules    []string
	// RepartD maps file names to repart.d definitions for /etc/repart.d; nil means the
	// default root.conf.
	RepartD map[string][]byte
	// Files adds more files: path in the initramfs → file on the host.
	Files map[string]string
}

// Stats describes a built initramfs.
type Stats struct {
	CPIOBytes       int64
	CompressedBytes int64
	Modules         []string // module files in load order
	KernelVersion   string
}

// Assemble builds the archive described by cfg.
func Assemble(cfg Config) (*Archive, Stats, error) {
	var st Stats
	a := NewArchive()
	if cfg.Init == "" {
		return nil, st, fmt.Errorf("initrd: no init binary given")
	}
	if err := a.File("init", cfg.Init, 0o755); err != nil {
		return nil, st, err
	}
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "root", "mnt", "sysroot"} {
		if err := a.Dir(d, 0o755); err != nil {
			return nil, st, err
		}
	}
	// The kernel opens /dev/console for init's stdio before devtmpfs is mounted.
	if err := a.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return nil, st, err
	}
	if cfg.Busybox != "" {
		if err := a.File(BusyboxBin, cfg.Busybox, 0o755); err != nil {
			return nil, st, err
		}
		for _, c := range cfg.BusyboxCommands {
			if strings.ContainsAny(c, "/ ") || c == "" {
				return nil, st, fmt.Errorf("initrd: bad command name %q", c)
			}
			if err := a.Symlink("bin/"+c, "../bbin/bb"); err != nil {
				return nil, st, err
			}
		}
		if !contains(cfg.BusyboxCommands, "sh") {
			if err := a.Symlink("bin/sh", "gosh"); err != nil {
				return nil, st, err
			}
		}
	}
	if cfg.ModuleTree != "" {
		t, err := OpenModuleTree(cfg.ModuleTree)
		if err != nil {
			return nil, st, err
		}
		mods, err := t.ResolveDeps(cfg.Modules)
		if err != nil {
			return nil, st, err
		}
		st.KernelVersion = t.Version()
		base := path.Join(ModulesDir, st.KernelVersion)
		// Stored uncompressed: finit_module then needs no decompression flags, and the
		// whole initramfs is compressed anyway.
		rel := func(f string) string {
			return strings.TrimSuffix(strings.TrimSuffix(filepath.ToSlash(f), ".zst"), ".xz")
		}
		var list, aliases strings.Builder
		for _, m := range mods {
			b, err := readModule(filepath.Join(t.Dir, m.File))
			if err != nil {
				return nil, st, err
			}
			if err := a.Bytes(path.Join(base, rel(m.File)), b, 0o644); err != nil {
				return nil, st, err
			}
			list.WriteString(rel(m.File))
			for _, d := range m.Deps {
				list.WriteString(" " + rel(d))
			}
			list.WriteString("\n")
			st.Modules = append(st.Modules, rel(m.File))
			mi, err := ParseModInfo(b)
			if err != nil {
				return nil, st, fmt.Errorf("%s: %w", filepath.Join(t.Dir, m.File), err)
			}
			name := mi.Name
			if name == "" {
				name = ModName(m.File)
			}
			for _, p := range mi.Patterns {
				if strings.ContainsAny(p, " \t\n") {
					return nil, st, fmt.Errorf("%s: alias %q contains white space", filepath.Join(t.Dir, m.File), p)
				}
				fmt.Fprintf(&aliases, "alias %s %s\n", p, name)
			}
		}
		if err := a.Bytes(path.Join(base, LoadList), []byte(list.String()), 0o644); err != nil {
			return nil, st, err
		}
		if err := a.Bytes(path.Join(base, layout.AliasList), []byte(aliases.String()), 0o644); err != nil {
			return nil, st, err
		}
	}
	repart := cfg.RepartD
	if repart == nil {
		repart = map[string][]byte{"50-root.conf": []byte(DefaultRootConf)}
	}
	names := make([]string, 0, len(repart))
	for n := range repart {
		names = append(names, n)
	}
	sort.Strings(names)
	if err := a.Dir(RepartDir, 0o755); err != nil {
		return nil, st, err
	}
	for _, n := range names {
		if strings.Contains(n, "/") || !strings.HasSuffix(n, ".conf") {
			return nil, st, fmt.Errorf("initrd: repart.d file %q must be a plain name ending in .conf", n)
		}
		if err := a.Bytes(path.Join(RepartDir, n), repart[n], 0o644); err != nil {
			return nil, st, err
		}
	}
	for dst, src := range cfg.Files {
		if err := a.File(dst, src, 0o755); err != nil {
			return nil, st, err
		}
	}
	return a, st, nil
}

// Build writes the zstd-compressed initramfs for cfg to w.
func Build(w io.Writer, cfg Config) (Stats, error) {
	a, st, err := Assemble(cfg)
	if err != nil {
		return st, err
	}
	cw := &countWriter{w: w}
	// The kernel's unzstd accepts windows up to 128 MiB; the encoder's 8 MiB is well inside.
	enc, err := zstd.NewWriter(cw, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return st, err
	}
	n, err := a.WriteTo(enc)
	if err != nil {
		enc.Close()
		return st, err
	}
	if err := enc.Close(); err != nil {
		return st, err
	}
	st.CPIOBytes, st.CompressedBytes = n, cw.n
	return st, cw.err
}

// BuildFile writes the initramfs to path atomically.
func BuildFile(path string, cfg Config) (Stats, error) {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return Stats{}, err
	}
	st, err := Build(f, cfg)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return st, err
	}
	return st, os.Rename(tmp, path)
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
