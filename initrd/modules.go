package initrd

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/piboot/piboot/initrd/layout"
)

// LoadList is the module load list (see package layout).
const LoadList = layout.LoadList

// ModInfo is what a module's .modinfo section says about loading it.
type ModInfo struct {
	Name    string   // name= (with '_', as the kernel names modules)
	Depends []string // depends=: must be loaded first
	Pre     []string // softdep pre: loaded first when present
	Post    []string // softdep post: loaded after when present
	Aliases []string // alias= without wildcards
	// Patterns are all alias= values as written, wildcards included (modalias patterns
	// such as "pci:v00001AF4d*sv*sd*bc*sc*i*", and names such as "fs-ext4").
	Patterns []string
}

// ModName normalizes a module name or file name the way the kernel does ('-' is '_').
func ModName(s string) string { return layout.ModName(s) }

// readModule returns the uncompressed bytes of a .ko, .ko.zst or .ko.xz file.
func readModule(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	switch {
	case strings.HasSuffix(path, ".zst"):
		d, err := zstd.NewReader(nil)
		if err != nil {
			return nil, err
		}
		defer d.Close()
		b, err = d.DecodeAll(b, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	case strings.HasSuffix(path, ".xz"):
		r, err := xz.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if b, err = io.ReadAll(r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return b, nil
}

// ParseModInfo reads the .modinfo section of a kernel module image.
func ParseModInfo(ko []byte) (ModInfo, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return ModInfo{}, err
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return ModInfo{}, fmt.Errorf("no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return ModInfo{}, err
	}
	var mi ModInfo
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			mi.Name = ModName(v)
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					mi.Depends = append(mi.Depends, ModName(d))
				}
			}
		case "softdep":
			// "pre: a b post: c"
			var into *[]string
			for _, w := range strings.Fields(v) {
				switch w {
				case "pre:":
					into = &mi.Pre
				case "post:":
					into = &mi.Post
				default:
					if into != nil {
						*into = append(*into, ModName(w))
					}
				}
			}
		case "alias":
			mi.Patterns = append(mi.Patterns, v)
			if !strings.ContainsAny(v, "*?[:") {
				mi.Aliases = append(mi.Aliases, ModName(v))
			}
		}
	}
	return mi, nil
}

// ModuleTree is a kernel's module directory, lib/modules/<version>.
type ModuleTree struct {
	Dir     string
	files   map[string]string // module name → path relative to Dir
	builtin map[string]bool
	info    map[string]ModInfo
	aliases map[string]string // built on first need
}

// OpenModuleTree indexes the modules under dir by name.
func OpenModuleTree(dir string) (*ModuleTree, error) {
	// A link such as ~/.cache/piboot/arm64/modules names the real lib/modules/<version>.
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	t := &ModuleTree{Dir: dir, files: map[string]string{}, builtin: map[string]bool{}, info: map[string]ModInfo{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n := d.Name()
		if d.Type().IsRegular() && (strings.HasSuffix(n, ".ko") || strings.HasSuffix(n, ".ko.zst") || strings.HasSuffix(n, ".ko.xz")) {
			rel, _ := filepath.Rel(dir, p)
			t.files[ModName(n)] = rel
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("module tree %s: %w", dir, err)
	}
	if len(t.files) == 0 {
		return nil, fmt.Errorf("module tree %s: no kernel modules (.ko) found", dir)
	}
	if f, err := os.Open(filepath.Join(dir, "modules.builtin")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" {
				t.builtin[ModName(l)] = true
			}
		}
		f.Close()
	}
	return t, nil
}

// Version is the kernel version the tree belongs to (its directory name).
func (t *ModuleTree) Version() string { return filepath.Base(filepath.Clean(t.Dir)) }

func (t *ModuleTree) modInfo(name string) (ModInfo, error) {
	if mi, ok := t.info[name]; ok {
		return mi, nil
	}
	b, err := readModule(filepath.Join(t.Dir, t.files[name]))
	if err != nil {
		return ModInfo{}, err
	}
	mi, err := ParseModInfo(b)
	if err != nil {
		return ModInfo{}, fmt.Errorf("%s: %w", filepath.Join(t.Dir, t.files[name]), err)
	}
	t.info[name] = mi
	return mi, nil
}

// lookup finds the module providing name: a module of that name, else one with that alias.
func (t *ModuleTree) lookup(name string) (string, bool) {
	if _, ok := t.files[name]; ok {
		return name, true
	}
	if t.aliases == nil {
		t.aliases = map[string]string{}
		names := make([]string, 0, len(t.files))
		for n := range t.files {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			mi, err := t.modInfo(n)
			if err != nil {
				continue
			}
			for _, a := range mi.Aliases {
				if _, dup := t.aliases[a]; !dup {
					t.aliases[a] = n
				}
			}
		}
	}
	n, ok := t.aliases[name]
	return n, ok
}

// Resolve returns the module files (relative to the tree) to load for names, each after
// its dependencies and soft pre-dependencies. Built-in modules need no file and are
// skipped; an unknown name is an error. Soft dependencies that do not exist are ignored,
// as modprobe does.
func (t *ModuleTree) Resolve(names []string) ([]string, error) {
	mods, err := t.ResolveDeps(names)
	if err != nil {
		return nil, err
	}
	files := make([]string, len(mods))
	for i, m := range mods {
		files[i] = m.File
	}
	return files, nil
}

// Module is one module file to load and the files that must be loaded before it.
type Module struct {
	File string   // relative to the tree
	Deps []string // files (relative to the tree) of its dependencies and soft pre-dependencies
}

// ResolveDeps is Resolve keeping each module's direct dependencies, so a loader can
// load independent modules in parallel.
func (t *ModuleTree) ResolveDeps(names []string) ([]Module, error) {
	var order []Module
	state := map[string]int{} // 1 visiting, 2 done
	// visit returns the module's file, or "" for a built-in or absent soft dependency.
	var visit func(name string, chain []string, soft bool) (string, error)
	visit = func(name string, chain []string, soft bool) (string, error) {
		name = ModName(name)
		if t.builtin[name] {
			return "", nil
		}
		real, ok := t.lookup(name)
		if !ok {
			if soft {
				return "", nil
			}
			return "", fmt.Errorf("module %s (%s) not found in %s", name, strings.Join(append(chain, name), " → "), t.Dir)
		}
		switch state[real] {
		case 2:
			return t.files[real], nil
		case 1:
			return "", fmt.Errorf("module dependency cycle: %s", strings.Join(append(chain, real), " → "))
		}
		state[real] = 1
		mi, err := t.modInfo(real)
		if err != nil {
			return "", err
		}
		chain = append(chain, real)
		m := Module{File: t.files[real]}
		for i, list := range [][]string{mi.Pre, mi.Depends} {
			for _, d := range list {
				f, err := visit(d, chain, i == 0)
				if err != nil {
					return "", err
				}
				if f != "" {
					m.Deps = append(m.Deps, f)
				}
			}
		}
		state[real] = 2
		order = append(order, m)
		for _, d := range mi.Post {
			if _, err := visit(d, chain, true); err != nil {
				return "", err
			}
		}
		return m.File, nil
	}
	for _, n := range names {
		if _, err := visit(n, nil, false); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// DefaultModules are the modules a Raspberry Pi 4 and QEMU's virt machine need to find
// and mount a piboot disk: SD (sdhci-iproc, sdhci-pci), USB storage behind xHCI, NVMe and
// SATA (AHCI) on other UEFI boards and a Compute Module's PCIe, virtio disks and network, the filesystems (squashfs, ext4, xfs, vfat with its code pages) and
// efivarfs (and, on amd64, where it is a module, mmc_block for SD cards). Device
// drivers among them load at boot only when a device's modalias matches (see
// layout.AliasList); the rest load by name. crc32c is named because ext4 and xfs ask the crypto API for it at mount time
// and the initramfs has no modprobe to load it on demand. efivarfs comes first: under
// UEFI, finding the disk starts with LoaderDevicePartUUID, which needs it mounted.
var DefaultModules = map[string][]string{
	"arm64": {"efivarfs", "sdhci-iproc", "sdhci-pci", "virtio_pci", "virtio_blk", "virtio_net", "xhci-pci", "usb-storage", "uas", "sd_mod", "nvme", "ahci",
		"crc32c_generic", "squashfs", "ext4", "xfs", "vfat", "nls_cp437", "nls_ascii", "nls_utf8", "nls_iso8859-1"},
	"amd64": {"efivarfs", "sdhci-pci", "virtio_pci", "virtio_blk", "virtio_net", "xhci-pci", "usb-storage", "uas", "sd_mod", "ahci", "nvme", "mmc_block",
		"crc32c_generic", "squashfs", "ext4", "xfs", "vfat", "nls_cp437", "nls_ascii", "nls_utf8", "nls_iso8859-1"},
}
