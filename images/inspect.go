package images

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"github.com/piboot/piboot/internal/iszero"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/mkfs/vfat"
	"github.com/piboot/piboot/uki"
)

// Report is what Inspect finds in an image or on a disk.
type Report struct {
	Size       int64        `json:"size"`
	SectorSize int          `json:"sector_size"`
	DiskGUID   string       `json:"disk_guid"`
	Problems   []string     `json:"problems,omitempty"` // GPT copies found bad or stale
	Partitions []PartReport `json:"partitions,omitempty"`
	UKIs       []UKIReport  `json:"ukis,omitempty"`
	LoaderConf string       `json:"loader_conf,omitempty"`
	Loader     string       `json:"loader,omitempty"` // path of the default loader on the ESP, if present
}

// PartReport describes one partition.
type PartReport struct {
	Index      int      `json:"index"`
	Offset     int64    `json:"offset"`
	Size       int64    `json:"size,omitempty"`
	Type       string   `json:"type,omitempty"`
	UUID       string   `json:"uuid,omitempty"`
	Label      string   `json:"label,omitempty"`
	Flags      []string `json:"flags,omitempty"`
	Filesystem string   `json:"filesystem,omitempty"` // vfat, squashfs, ext4, xfs, empty, unknown, missing (past the end)
	FSDetail   string   `json:"fs_detail,omitempty"`  // e.g. compression and used bytes, or the filesystem label
	Version    string   `json:"version,omitempty"`    // the version in a label of the form name_<version>
}

// UKIReport describes a UKI found on the ESP.
type UKIReport struct {
	Path       string `json:"path"`
	Version    string `json:"version,omitempty"`
	ImageID    string `json:"image_id,omitempty"`
	Uname      string `json:"uname,omitempty"`
	Cmdline    string `json:"cmdline,omitempty"`
	Size       int64  `json:"size,omitempty"`
	ChecksumOK bool   `json:"checksum_ok"`
}

// Inspect reads the GPT of r (size bytes), identifies each partition's filesystem and
// reads the UKIs and loader.conf from the ESP.
func Inspect(r io.ReaderAt, size int64) (*Report, error) {
	t, err := gpt.Read(r, size, 0) // 512- or 4096-byte sectors; one message if neither
	if err != nil {
		return nil, err
	}
	rep := &Report{Size: size, SectorSize: t.SectorSize, DiskGUID: t.DiskGUID.String(), Problems: t.Status.Problems}
	for _, p := range t.Partitions {
		pr := PartReport{
			Index: p.Index, Offset: int64(p.FirstLBA) * int64(t.SectorSize), Size: p.Size(t.SectorSize),
			Type: gpt.TypeName(p.Type), UUID: p.UUID.String(), Label: p.Name,
		}
		for bit, name := range map[uint64]string{gpt.AttrRequired: "required", gpt.AttrNoBlockIO: "no-block-io",
			gpt.AttrLegacyBootable: "legacy-bootable", gpt.AttrGrowFS: "growfs", gpt.AttrReadOnly: "read-only", gpt.AttrNoAuto: "no-auto"} {
			if p.Attributes&bit != 0 {
				pr.Flags = append(pr.Flags, name)
			}
		}
		sort.Strings(pr.Flags)
		if i := strings.LastIndexByte(p.Name, '_'); i > 0 && i < len(p.Name)-1 {
			pr.Version = p.Name[i+1:]
		}
		name := fmt.Sprintf("partition %d (%s)", p.Index, p.Name)
		avail := min(pr.Size, max(size-pr.Offset, 0))
		if avail < pr.Size {
			// A partial download or a copy cut short: what is there is still shown.
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s ends at byte %d, beyond the end of the image (%d bytes): truncated?", name, pr.Offset+pr.Size, size))
		}
		sec := io.NewSectionReader(r, pr.Offset, avail)
		pr.Filesystem, pr.FSDetail = identify(sec, avail)
		if avail == 0 {
			pr.Filesystem = "missing"
		}
		if pr.Filesystem == "squashfs" {
			if used := int64(binary.LittleEndian.Uint64(squashHead(sec)[40:])); used > avail {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: the squashfs says it is %d bytes, the partition holds %d", name, used, avail))
			}
		}
		rep.Partitions = append(rep.Partitions, pr)
		switch {
		case p.Type != gpt.TypeESP:
		case pr.Filesystem == "vfat":
			rep.readESP(sec, avail, name)
		default:
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: an EFI system partition without a FAT file system (%s): firmware finds no boot loader there", name, pr.Filesystem))
		}
	}
	rep.checkStores()
	return rep, nil
}

// squashHead returns the 96-byte squashfs superblock at the start of r (zeros if short).
func squashHead(r io.ReaderAt) []byte {
	b := make([]byte, 96)
	r.ReadAt(b, 0)
	return b
}

// checkStores reports UKIs whose piboot.store= names no partition, or one without squashfs:
// piboot-init would wait for it at every boot of that entry.
func (rep *Report) checkStores() {
	for _, u := range rep.UKIs {
		label := ""
		for _, a := range strings.Fields(u.Cmdline) {
			if v, ok := strings.CutPrefix(a, "piboot.store="); ok {
				label = v
			}
		}
		if label == "" {
			continue
		}
		found := false
		for _, p := range rep.Partitions {
			if p.Label == label {
				found = true
				if p.Filesystem != "squashfs" {
					rep.Problems = append(rep.Problems, fmt.Sprintf("%s: piboot.store=%s is partition %d, which holds no squashfs (%s)", u.Path, label, p.Index, p.Filesystem))
				}
			}
		}
		if !found {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: piboot.store=%s: no partition has that label", u.Path, label))
		}
	}
}

// IdentifyFS names the file system at the start of r (size bytes) by its magic numbers:
// vfat, squashfs, ext4, xfs, empty (zeros) or unknown, with a detail such as the label.
func IdentifyFS(r io.ReaderAt, size int64) (fs, detail string) { return identify(r, size) }

func (rep *Report) readESP(r io.ReaderAt, size int64, name string) {
	esp, err := vfat.Open(r, size)
	if err != nil {
		rep.Problems = append(rep.Problems, name+": "+err.Error())
		return
	}
	loader := false
	defer func() {
		if !loader {
			rep.Problems = append(rep.Problems, name+": no /EFI/BOOT/BOOT<arch>.EFI: firmware finds no default boot loader")
		}
	}()
	if b, err := fs.ReadFile(esp, "loader/loader.conf"); err == nil {
		rep.LoaderConf = string(b)
	}
	if ents, err := esp.ReadDir("EFI/BOOT"); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(strings.ToUpper(e.Name()), "BOOT") && strings.HasSuffix(strings.ToUpper(e.Name()), ".EFI") {
				rep.Loader, loader = "/EFI/BOOT/"+e.Name(), true
			}
		}
	}
	ents, err := esp.ReadDir("EFI/Linux")
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() || !strings.EqualFold(path.Ext(e.Name()), ".efi") {
			continue
		}
		p := "/EFI/Linux/" + e.Name()
		if err := rep.readUKI(esp, p); err != nil {
			rep.Problems = append(rep.Problems, p+": "+err.Error())
		}
	}
}

// readUKI reads the UKI at p in place: vfat files are io.ReaderAt.
func (rep *Report) readUKI(esp *vfat.FS, p string) error {
	f, err := esp.Open(p[1:])
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	info, err := uki.Read(f.(io.ReaderAt), st.Size(), false)
	if err != nil {
		return err
	}
	osr := info.OSRelease()
	u, _ := info.Section(".uname")
	rep.UKIs = append(rep.UKIs, UKIReport{Path: p, Version: osr["IMAGE_VERSION"], ImageID: osr["IMAGE_ID"], Uname: string(u),
		Cmdline: info.Cmdline(), Size: st.Size(), ChecksumOK: info.Checksum == info.Computed})
	if k := UKIKernelMachine(f.(io.ReaderAt), info); k != "" && k != info.Machine {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%s: the kernel (.linux) is for %s, the stub for %s: it cannot start", p, k, info.Machine))
	}
	return nil
}

// UKIKernelMachine returns the architecture of the PE image in a UKI's .linux section, named
// as uki.Info.Machine names the stub's ("arm64", "x86-64", ...), or "" if it has none.
func UKIKernelMachine(r io.ReaderAt, info *uki.Info) string {
	for _, s := range info.Sections {
		if s.Name != ".linux" {
			continue
		}
		h := make([]byte, 512)
		n, _ := r.ReadAt(h, int64(s.FileOffset))
		h = h[:n]
		if len(h) < 0x40 || string(h[:2]) != "MZ" {
			return ""
		}
		pe := int(binary.LittleEndian.Uint32(h[0x3c:]))
		if pe+6 > len(h) || pe < 0 {
			if pe < 0 || pe > 1<<16 {
				return ""
			}
			h = make([]byte, pe+6)
			if _, err := r.ReadAt(h, int64(s.FileOffset)); err != nil {
				return ""
			}
		}
		if string(h[pe:pe+4]) != "PE\x00\x00" {
			return ""
		}
		m := binary.LittleEndian.Uint16(h[pe+4:])
		if name, ok := map[uint16]string{0xaa64: "arm64", 0x8664: "x86-64", 0x14c: "x86", 0x1c4: "arm", 0x5064: "riscv64", 0x6264: "loongarch64"}[m]; ok {
			return name
		}
		return fmt.Sprintf("%#x", m)
	}
	return ""
}

// squashComp names squashfs compressor ids; an array, not a map, so it costs no init.
var squashComp = [...]string{1: "gzip", 2: "lzma", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd"}

// compName names a squashfs compressor id; a hostile superblock may hold any number.
func compName(id uint16) string {
	if int(id) < len(squashComp) && squashComp[id] != "" {
		return squashComp[id]
	}
	return fmt.Sprintf("compressor %d", id)
}

// identify names the filesystem at the start of r by its magic numbers.
func identify(r io.ReaderAt, size int64) (fs, detail string) {
	b := make([]byte, 2048)
	n, _ := r.ReadAt(b, 0)
	b = b[:n]
	switch {
	case len(b) >= 96 && string(b[0:4]) == "hsqs":
		used := binary.LittleEndian.Uint64(b[40:])
		return "squashfs", fmt.Sprintf("%d.%d, %s, %s used", binary.LittleEndian.Uint16(b[28:]), binary.LittleEndian.Uint16(b[30:]),
			compName(binary.LittleEndian.Uint16(b[20:])), human(int64(used)))
	case len(b) >= 512 && b[510] == 0x55 && b[511] == 0xaa && (bytes.HasPrefix(b[82:], []byte("FAT32")) || bytes.HasPrefix(b[54:], []byte("FAT1"))):
		label := strings.TrimSpace(string(b[71:82]))
		kind := "FAT32"
		if !bytes.HasPrefix(b[82:], []byte("FAT32")) {
			label, kind = strings.TrimSpace(string(b[43:54])), strings.TrimSpace(string(b[54:62]))
		}
		return "vfat", fmt.Sprintf("%s, label %q", kind, label)
	case len(b) >= 1024+136 && binary.LittleEndian.Uint16(b[1024+56:]) == 0xef53:
		return "ext4", fmt.Sprintf("label %q", strings.TrimRight(string(b[1024+120:1024+136]), "\x00"))
	case len(b) >= 120 && string(b[0:4]) == "XFSB":
		return "xfs", fmt.Sprintf("label %q", strings.TrimRight(string(b[108:120]), "\x00"))
	}
	// Nothing recognised: empty if the first MiB (or all of a small partition) is zeros.
	z := make([]byte, min(size, 1<<20))
	if n, _ := r.ReadAt(z, 0); n == len(z) && iszero.Bytes(z) {
		return "empty", ""
	}
	return "unknown", ""
}

// Format writes rep as text.
func (rep *Report) Format(w io.Writer) {
	fmt.Fprintf(w, "disk: %s (%d bytes), %d-byte sectors, GUID %s\n", human(rep.Size), rep.Size, rep.SectorSize, rep.DiskGUID)
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
	fmt.Fprintf(w, "%-3s %-10s %-10s %-14s %-18s %-9s %s\n", "#", "start", "size", "type", "label", "version", "filesystem")
	for _, p := range rep.Partitions {
		v := p.Version
		if v == "" {
			v = "-"
		}
		fs := p.Filesystem
		if p.FSDetail != "" {
			fs += " (" + p.FSDetail + ")"
		}
		if len(p.Flags) > 0 {
			fs += " [" + strings.Join(p.Flags, ",") + "]"
		}
		fmt.Fprintf(w, "%-3d %-10s %-10s %-14s %-18s %-9s %s\n", p.Index, human(p.Offset), human(p.Size), p.Type, p.Label, v, fs)
		fmt.Fprintf(w, "    partuuid %s\n", p.UUID)
	}
	if rep.Loader != "" {
		fmt.Fprintf(w, "loader: %s\n", rep.Loader)
	}
	if rep.LoaderConf != "" {
		fmt.Fprintf(w, "loader.conf: %s\n", strings.Join(strings.FieldsFunc(rep.LoaderConf, func(r rune) bool { return r == '\n' }), "; "))
	}
	for _, u := range rep.UKIs {
		ck := "checksum ok"
		if !u.ChecksumOK {
			ck = "checksum WRONG"
		}
		fmt.Fprintf(w, "uki: %s (%s, %s): %s version %s, kernel %s\n     cmdline: %s\n", u.Path, human(u.Size), ck, u.ImageID, u.Version, u.Uname, u.Cmdline)
	}
}
