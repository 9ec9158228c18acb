package images

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/piboot/piboot/internal/iszero"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/piboot/piboot/firmware"
	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/initrd"
	"github.com/piboot/piboot/mkfs/squashfs"
	"github.com/piboot/piboot/mkfs/vfat"
	"github.com/piboot/piboot/uki"
)

// The store's squashfs defaults: zstd at level 19 in 1 MiB blocks compresses a store of
// binaries and modules about a fifth smaller than mksquashfs's defaults (gzip, 128 KiB), and
// the kernel decompresses zstd quickly. Compression=/CompressionLevel= in the definition
// override the compressor and level.
const (
	StoreZstdLevel = 19
	StoreBlockSize = 1 << 20
)

// Options control where and how Build writes.
type Options struct {
	OutDir   string
	Progress *Progress // nil: silent
	// ZstdLevel is the level of the .zst outputs (default: klauspost's best, about zstd -11).
	ZstdLevel zstd.EncoderLevel
}

// Outputs are the files Build wrote (absolute paths) and what it decided.
type Outputs struct {
	Image, ImageZst string
	Split           []string // <id>_<v>.<split>.raw
	SplitZst        []string
	UKI             string
	Vmlinuz         string
	Initrd          string
	CmdlineFile     string
	UpdateDir       string
	Sums            string
	Cmdline         string
	StoreLabel      string
	Size            int64
	Partitions      []Placed
	NoFirmware      bool // built without Raspberry Pi firmware: UEFI machines and QEMU only
}

// BaseName is <id>_<version>, the stem of every versioned output.
func (c *Config) BaseName() string { return c.ID + "_" + c.Version }

// UKIName is the UKI's file name, on the ESP and in out/.
func (c *Config) UKIName() string { return c.BaseName() + ".efi" }

// OSReleaseText returns the os-release of the image (also the UKI's .osrel).
func (c *Config) OSReleaseText() []byte {
	kv := [][2]string{
		{"NAME", "piboot"}, {"ID", c.ID}, {"PRETTY_NAME", c.ID + " " + c.Version},
		{"IMAGE_ID", c.ID}, {"IMAGE_VERSION", c.Version},
	}
	for _, l := range c.OSRelease {
		k, v, _ := strings.Cut(l, "=")
		v = strings.Trim(v, `"`)
		found := false
		for i := range kv {
			if kv[i][0] == k {
				kv[i][1], found = v, true
			}
		}
		if !found {
			kv = append(kv, [2]string{k, v})
		}
	}
	var b strings.Builder
	for _, p := range kv {
		v := p[1]
		if strings.ContainsAny(v, " \t\"'$`\\") || v == "" {
			v = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`").Replace(v) + `"`
		}
		fmt.Fprintf(&b, "%s=%s\n", p[0], v)
	}
	return []byte(b.String())
}

// inputs holds everything read before writing starts, so that a missing file fails the
// build before any output is touched.
type inputs struct {
	linux, initrd, stub, boot, dtb []byte
	firmware                       map[string][]byte
	epoch                          int64
}

func readInputs(c *Config) (*inputs, error) {
	in := &inputs{}
	var err error
	read := func(dst *[]byte, what, p string) {
		if err == nil && p != "" {
			*dst, err = readInput(c.File+": "+what, p)
		}
	}
	read(&in.linux, "[Kernel] Linux", c.Linux)
	switch {
	case c.Initrd != "":
		read(&in.initrd, "[Kernel] Initrd", c.Initrd)
	case err == nil:
		in.initrd, err = c.buildInitrd()
	}
	read(&in.stub, "[Kernel] Stub", c.Stub)
	read(&in.dtb, "[Kernel] DeviceTree", c.DTB)
	read(&in.boot, "[Boot] SystemdBoot", c.SystemdBoot)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(c.Tree); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%s: [Store] Tree=%s: not a directory", c.File, c.Tree)
	}
	fc := firmware.Config{RPi4UEFI: c.RPi4UEFI, RaspiFirmware: c.RaspiFirmware}
	if c.ConfigTxt != "" {
		if fc.ConfigTxt, err = readInput(c.File+": [Firmware] ConfigTxt", c.ConfigTxt); err != nil {
			return nil, err
		}
	}
	if in.firmware, err = firmware.Files(fc); err != nil {
		return nil, err
	}
	if in.epoch, err = SourceDateEpoch(); err != nil {
		return nil, err
	}
	return in, nil
}

// buildInitrd assembles the initramfs from the [Initrd] section: piboot-init as /init, the
// kernel modules it needs, optionally the emergency shell, the first-boot repart.d.
func (c *Config) buildInitrd() ([]byte, error) {
	cfg := initrd.Config{Init: c.InitrdInit, ModuleTree: c.ModuleTree}
	if c.ModuleTree != "" {
		cfg.Modules = c.ModuleNames
		if len(cfg.Modules) == 0 {
			cfg.Modules = initrd.DefaultModules[c.Architecture]
		}
	}
	if c.InitrdShell {
		bb, err := initrd.Busybox(c.Architecture, initrd.ShellCommands, filepath.Join(CacheDir(), c.Architecture))
		if err != nil {
			return nil, fmt.Errorf("%s: [Initrd] Shell=yes: %w", c.File, err)
		}
		cfg.Busybox, cfg.BusyboxCommands = bb, initrd.ShellCommands
	}
	if c.InitrdRepartD != "" {
		ents, err := filepath.Glob(filepath.Join(c.InitrdRepartD, "*.conf"))
		if err != nil || len(ents) == 0 {
			return nil, fmt.Errorf("%s: [Initrd] RepartD=%s: no *.conf files", c.File, c.InitrdRepartD)
		}
		cfg.RepartD = map[string][]byte{}
		for _, e := range ents {
			b, err := os.ReadFile(e)
			if err != nil {
				return nil, err
			}
			cfg.RepartD[filepath.Base(e)] = b
		}
	}
	var b bytes.Buffer
	if _, err := initrd.Build(&b, cfg); err != nil {
		return nil, fmt.Errorf("%s: [Initrd]: %w", c.File, err)
	}
	return b.Bytes(), nil
}

// Cmdline returns the kernel command line: the configured one plus the store label and init.
func (c *Config) Cmdline(storeLabel string) (string, error) {
	for _, a := range strings.Fields(strings.Join(c.CommandLine, " ")) {
		if strings.HasPrefix(a, "piboot.store=") || strings.HasPrefix(a, "init=") {
			return "", fmt.Errorf("%s: [Kernel] CommandLine= must not set %s: the builder adds it", c.File, a)
		}
	}
	parts := append(append([]string(nil), c.CommandLine...), "piboot.store="+storeLabel, "init="+c.Init)
	return strings.Join(strings.Fields(strings.Join(parts, " ")), " "), nil
}

// Build writes the image of c and its companion files into opts.OutDir.
func Build(c *Config, opts Options) (*Outputs, error) {
	p := opts.Progress
	in, err := readInputs(c)
	if err != nil {
		return nil, err
	}
	defs, err := LoadDefinitions(c.Definitions, c)
	if err != nil {
		return nil, err
	}
	espDef, storeDef, err := c.roles(defs)
	if err != nil {
		return nil, err
	}
	cmdline, err := c.Cmdline(storeDef.Label)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(opts.OutDir, "update"), 0o755); err != nil {
		return nil, err
	}
	out := &Outputs{Cmdline: cmdline, StoreLabel: storeDef.Label, NoFirmware: c.RPi4UEFI == ""}
	abs := func(name string) string { a, _ := filepath.Abs(filepath.Join(opts.OutDir, name)); return a }

	// The UKI.
	t := p.start("UKI "+c.UKIName(), 0)
	ukiBytes, err := uki.Build(uki.Input{
		Stub: in.stub, Linux: in.linux, Initrd: in.initrd, Cmdline: cmdline,
		OSRel: c.OSReleaseText(), Uname: uki.KernelRelease(in.linux), DTB: in.dtb,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Stub, err)
	}
	t.done(human(int64(len(ukiBytes))))

	// The ESP's content: systemd-boot as the default loader, the UKI, loader.conf, firmware.
	esp := map[string][]byte{}
	for _, f := range firmware.Paths(in.firmware) {
		esp[f] = in.firmware[f]
	}
	own := map[string][]byte{
		"EFI/BOOT/BOOT" + strings.ToUpper(EFIArch(c.Architecture)) + ".EFI": in.boot,
		"EFI/Linux/" + c.UKIName(): ukiBytes,
		"loader/loader.conf":       []byte(strings.Join(c.LoaderConf, "\n") + "\n"),
	}
	for name, b := range own {
		for f := range esp {
			if strings.EqualFold(f, name) {
				return nil, fmt.Errorf("firmware file %s collides with the builder's %s", f, name)
			}
		}
		esp[name] = b
	}

	// The image, partition by partition, straight into the file at each offset.
	base := c.BaseName()
	imgPath := abs(base + ".raw")
	tmp := imgPath + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer func() {
		if f != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	seed := NewSeed(c.ID + "_" + c.Version)
	if c.Seed != "" {
		seed = NewSeed(c.Seed)
	}
	mtime := time.Unix(in.epoch, 0).UTC()
	// Each partition is compressed as soon as it is written; on a failed build, the
	// compressors are waited for before the image goes.
	zst := newZstdPipeline(f, imgPath, opts.ZstdLevel)
	defer zst.abort()
	var placed []Placed
	off := int64(FirstOffset)
	for i, d := range defs {
		part := Part{Definition: d.File, Type: d.Type, Label: d.Label, UUID: d.UUID, Flags: d.Flags, MinSize: d.MinSize, MaxSize: d.MaxSize}
		if part.UUID == uuid0 {
			part.UUID = seed.GUID("partition:" + d.Label)
		}
		w := io.NewOffsetWriter(f, off)
		switch d.Format {
		case "vfat":
			files, err := d.espFiles(esp)
			if err != nil {
				return nil, err
			}
			root, err := espFS(files)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", d.Where("CopyFiles"), err)
			}
			vo := vfat.Options{Label: vfat.MangleLabel(d.Label), UUID: seed.GUID("filesystem:" + d.Label), SectorSize: SectorSize,
				HiddenSectors: uint32(off / SectorSize), Time: mtime, Root: root, TargetZeroed: true}
			need, err := vfat.MinSize(vo)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", d.File, err)
			}
			if part.Need, err = SizeFor(part, need); err != nil {
				return nil, err
			}
			t := p.start(fmt.Sprintf("vfat %s (%d files)", d.Label, len(files)), sum(files))
			if err := vfat.Format(countingWriterAt{w, t}, part.Need, vo); err != nil {
				return nil, fmt.Errorf("%s: %w", d.File, err)
			}
			t.done(human(part.Need))
		case "squashfs":
			tree, err := c.storeTree(d)
			if err != nil {
				return nil, err
			}
			epoch := in.epoch
			so := squashfs.Options{AllRoot: true, Mtime: &epoch, MaxSize: d.MaxSize,
				Compression: d.Compression, Level: d.CompressionLevel, BlockSize: StoreBlockSize}
			if so.Compression == "" {
				so.Compression = squashfs.Zstd
			}
			if so.Level == 0 && so.Compression == squashfs.Zstd {
				so.Level = StoreZstdLevel
			}
			t := p.start("squashfs "+d.Label, 0)
			n, err := squashfs.Write(countingWriterAt{w, t}, tree, so)
			if errors.Is(err, squashfs.ErrTooBig) {
				return nil, fmt.Errorf("%s: the store does not fit in SizeMaxBytes=%d: %w", d.Where("SizeMaxBytes"), d.MaxSize, err)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: squashfs: %w", d.File, err)
			}
			part.Need = n
			t.done(human(n))
		}
		size, err := SizeFor(part, part.Need)
		if err != nil {
			return nil, err
		}
		placed = append(placed, Placed{Part: part, Index: i + 1, Offset: off, Size: size})
		zst.partition(i+1, off, size)
		off = NextOffset(off + size)
	}
	last := placed[len(placed)-1]
	out.Size = ImageSize(last.Offset + last.Size)
	out.Partitions = placed
	if err := f.Truncate(out.Size); err != nil {
		return nil, err
	}
	table, err := gpt.New(out.Size, SectorSize, seed.GUID("disk"))
	if err != nil {
		return nil, err
	}
	for _, pl := range placed {
		table.Partitions = append(table.Partitions, gpt.Partition{
			Index: pl.Index, Type: pl.Type, UUID: pl.UUID, Name: pl.Label, Attributes: pl.Flags,
			FirstLBA: uint64(pl.Offset / SectorSize), LastLBA: uint64((pl.Offset+pl.Size)/SectorSize - 1),
		})
	}
	if err := gpt.Write(f, out.Size, table); err != nil {
		return nil, fmt.Errorf("GPT: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}

	// Split files of the partitions that ask for one. The ESP's goes to out/ only: updates
	// carry its content as the UKI.
	splitZst := map[int64]string{}
	var espSplit string
	for i, d := range defs {
		if d.SplitName == "" || d.SplitName == "-" {
			continue
		}
		// %U is the UUID the partition got, derived when the definition has none.
		withUUID := *d
		withUUID.UUID = placed[i].UUID
		name := base + "." + expandSplit(d.SplitName, &withUUID, placed[i].Index) + ".raw"
		if d == espDef {
			espSplit = abs(name) + ".zst"
		}
		t := p.start("split "+name, placed[i].Size)
		if err := copySparse(abs(name), f, placed[i].Offset, placed[i].Size, t); err != nil {
			return nil, err
		}
		t.done("")
		out.Split = append(out.Split, abs(name))
		out.SplitZst = append(out.SplitZst, abs(name)+".zst")
		splitZst[placed[i].Offset] = abs(name) + ".zst"
	}

	// Compressed copies: every partition compressed once, its frames reused in the
	// image's .zst and as its split file's .zst.
	if err := zst.finish(imgPath+".zst", out.Size, splitZst, p); err != nil {
		return nil, err
	}
	out.ImageZst = imgPath + ".zst"
	if err := f.Close(); err != nil {
		return nil, err
	}
	f = nil
	if err := os.Rename(tmp, imgPath); err != nil {
		return nil, err
	}
	out.Image = imgPath

	// Files for direct-kernel boots and the UKI on its own.
	out.UKI, out.Vmlinuz, out.Initrd, out.CmdlineFile = abs(c.UKIName()), abs("vmlinuz"), abs("initrd.cpio.zst"), abs("cmdline.txt")
	for _, w := range []struct {
		path string
		data []byte
	}{{out.UKI, ukiBytes}, {out.Vmlinuz, in.linux}, {out.Initrd, in.initrd}, {out.CmdlineFile, []byte(cmdline + "\n")}} {
		if err := writeAtomic(w.path, w.data); err != nil {
			return nil, err
		}
	}

	// The update directory: this version's store image and UKI next to earlier versions',
	// and SHA256SUMS over all of them.
	out.UpdateDir = abs("update")
	for _, src := range append(append([]string(nil), out.SplitZst...), out.UKI) {
		if src == espSplit {
			continue
		}
		if err := linkOrCopy(filepath.Join(out.UpdateDir, filepath.Base(src)), src); err != nil {
			return nil, err
		}
	}
	if out.Sums, err = WriteSums(out.UpdateDir); err != nil {
		return nil, err
	}
	if err := c.signUpdateDir(out.UpdateDir); err != nil {
		return nil, err
	}
	if out.NoFirmware {
		p.info("no Raspberry Pi firmware given ([Firmware] RPi4UEFI=, make image FIRMWARE=...): this image boots on UEFI machines and in QEMU only")
	}
	return out, nil
}

var uuid0 [16]byte

func sum(files map[string][]byte) int64 {
	var n int64
	for _, b := range files {
		n += int64(len(b))
	}
	return n
}

// roles finds the ESP (the vfat partition receiving /boot) and the store (the squashfs
// partition receiving the store's mount point), which the command line and sysupdate name.
func (c *Config) roles(defs []*Definition) (esp, store *Definition, err error) {
	for _, d := range defs {
		for _, cf := range d.CopyFiles {
			switch {
			case d.Format == "vfat" && within(cf.Source, "/boot"):
				if esp != nil && esp != d {
					return nil, nil, fmt.Errorf("%s: /boot is copied into both %s and %s", d.Where("CopyFiles"), esp.Name, d.Name)
				}
				esp = d
			case d.Format == "squashfs" && within(cf.Source, c.MountPoint):
				if store != nil && store != d {
					return nil, nil, fmt.Errorf("%s: %s is copied into both %s and %s", d.Where("CopyFiles"), c.MountPoint, store.Name, d.Name)
				}
				store = d
			default:
				return nil, nil, fmt.Errorf("%s: CopyFiles=%s: a %s partition copies from /boot (the ESP content) or %s (the store)",
					d.Where("CopyFiles"), cf.Source, d.Format, c.MountPoint)
			}
		}
	}
	if esp == nil {
		return nil, nil, fmt.Errorf("%s: no vfat partition has CopyFiles=/boot:/ (the ESP with systemd-boot and the UKI)", c.Definitions)
	}
	if store == nil {
		return nil, nil, fmt.Errorf("%s: no squashfs partition has CopyFiles=%s:/ (the store)", c.Definitions, c.MountPoint)
	}
	return esp, store, nil
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// espFiles maps the ESP content (paths relative to /boot) through d's CopyFiles.
func (d *Definition) espFiles(esp map[string][]byte) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, cf := range d.CopyFiles {
		src := strings.TrimPrefix(strings.TrimPrefix(cf.Source, "/boot"), "/")
		n := 0
		for name, b := range esp {
			rel, ok := name, src == ""
			if !ok {
				rel, ok = strings.CutPrefix(name, src+"/")
			}
			if !ok && name != src {
				continue
			}
			dst := strings.TrimPrefix(path.Join(cf.Target, rel), "/")
			if name == src {
				// A file source names its target file, as systemd-repart copies it.
				dst = strings.TrimPrefix(path.Clean(cf.Target), "/")
			}
			files[dst] = b
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: CopyFiles=%s:%s copies nothing", d.Where("CopyFiles"), cf.Source, cf.Target)
		}
	}
	return files, nil
}

// storeTree builds the squashfs tree of d's CopyFiles from the store directory, with the
// image's os-release at etc/os-release of the store's root.
func (c *Config) storeTree(d *Definition) (*squashfs.Tree, error) {
	tree := squashfs.NewTree()
	for _, cf := range d.CopyFiles {
		rel := strings.TrimPrefix(strings.TrimPrefix(cf.Source, c.MountPoint), "/")
		host := filepath.Join(c.Tree, filepath.FromSlash(rel))
		if err := tree.AddDir(host, cf.Target, squashfs.DirOptions{}); err != nil {
			return nil, fmt.Errorf("%s: CopyFiles=%s: %w", d.Where("CopyFiles"), cf.Source, err)
		}
		if rel == "" {
			osrel := c.OSReleaseText()
			err := tree.Add(squashfs.Entry{
				Path: path.Join(cf.Target, "etc/os-release"), Mode: 0o644, Size: int64(len(osrel)), Source: "generated os-release",
				Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(osrel)), nil },
			})
			if err != nil {
				return nil, fmt.Errorf("%s: adding etc/os-release to the store: %w (the store tree must not have one)", d.File, err)
			}
			if err := c.addUpdateFiles(tree, cf.Target); err != nil {
				return nil, fmt.Errorf("%s: %w", d.File, err)
			}
		}
	}
	return tree, nil
}

// expandSplit resolves SplitName= specifiers: %t type name, %T type GUID, %U partition
// GUID, %n partition number, %%.
func expandSplit(s string, d *Definition, index int) string {
	r := strings.NewReplacer("%t", d.TypeName, "%T", d.Type.String(), "%U", d.UUID.String(), "%n", fmt.Sprint(index), "%%", "%")
	return r.Replace(s)
}

// copySparse copies size bytes at off of src into a new file at dst, leaving holes where
// src reads as zeros.
func copySparse(dst string, src *os.File, off, size int64, t *task) error {
	tmp := dst + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	buf := make([]byte, 1<<20)
	data := int64(0) // the next offset that may hold data
	for pos := int64(0); pos < size; {
		n := int(min(int64(len(buf)), size-pos))
		if data < off+pos {
			if data, err = nextData(src, off+pos); err != nil {
				f.Close()
				return err
			}
		}
		if data >= off+pos+int64(n) { // a hole: nothing to read or write
			t.add(n)
			pos += int64(n)
			continue
		}
		if _, err := src.ReadAt(buf[:n], off+pos); err != nil {
			f.Close()
			return err
		}
		if !iszero.Bytes(buf[:n]) {
			if _, err := f.WriteAt(buf[:n], pos); err != nil {
				f.Close()
				return err
			}
		}
		t.add(n)
		pos += int64(n)
	}
	err = errors.Join(f.Truncate(size), f.Sync(), f.Close())
	if err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// linkOrCopy makes dst a hard link to src, or a copy where links are not possible. A later
// build replaces src by renaming a new file over it, so dst keeps this build's bytes.
func linkOrCopy(dst, src string) error {
	tmp := dst + ".tmp"
	os.Remove(tmp)
	if err := os.Link(src, tmp); err == nil {
		if err := os.Rename(tmp, dst); err != nil {
			os.Remove(tmp)
			return err
		}
		return nil
	}
	return copyFile(dst, src)
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := errors.Join(out.Sync(), out.Close()); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// WriteSums writes dir/SHA256SUMS for every regular file in dir (but SHA256SUMS and its
// signatures) in the two-space format of sha256sum, sorted by name, and returns its path.
func WriteSums(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(n, "SHA256SUMS") || strings.HasSuffix(n, ".tmp") {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		h := sha256.New()
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%x  %s\n", h.Sum(nil), n)
	}
	p := filepath.Join(dir, "SHA256SUMS")
	return p, writeAtomic(p, []byte(b.String()))
}

// espFS assembles the ESP's files (slash paths) into the fs.FS vfat.Format reads. Paths go in
// sorted, so a conflict (a path that is both a file and a directory, an invalid path) is
// reported the same way on every run. Timestamps come from vfat.Options.Time.
func espFS(files map[string][]byte) (fs.FS, error) {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	o := vfat.NewOverlay()
	for _, p := range paths {
		if err := o.AddFile(p, files[p]); err != nil {
			return nil, err
		}
	}
	return o, nil
}
