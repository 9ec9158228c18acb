// Package uki builds and reads Unified Kernel Images: a systemd EFI stub (linuxaa64.efi.stub,
// linuxx64.efi.stub) with the kernel, initrd, command line and os-release appended as PE
// sections, the layout systemd's ukify produces, written without objcopy or ukify.
//
// The stub's headers and sections are copied unchanged; the new sections go after its last
// section at 64 KiB-aligned virtual addresses (what systemd 252's stub was seen to boot), at
// file offsets aligned to the stub's FileAlignment. SizeOfImage, SizeOfInitializedData,
// NumberOfSections and the PE checksum are recomputed, and a certificate table the stub may
// carry is dropped (its signature would no longer match anything).
package uki

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Section is one PE section to append.
type Section struct {
	Name string // at most 8 bytes, e.g. ".linux"
	Data []byte
}

// Input is what goes into a UKI. Stub and Linux are required; empty optional parts are left out.
type Input struct {
	Stub    []byte // the systemd EFI stub (PE32+ or PE32)
	Linux   []byte // the kernel: an EFI-stub kernel image (arm64 Image, x86 bzImage)
	Initrd  []byte // initramfs (cpio, possibly compressed)
	Cmdline string // kernel command line; systemd's stub uses it unless the loader passes one
	OSRel   []byte // os-release, shown by systemd-boot and read by sysupdate (IMAGE_VERSION)
	Uname   string // kernel release, e.g. 6.1.0-56-arm64
	DTB     []byte // optional device tree
	Extra   []Section
}

// SectionAlign is the alignment of the virtual addresses of appended sections.
const SectionAlign = 64 << 10

// Characteristics of an appended section: initialized data, readable (what ukify uses).
const dataSectionFlags = pe.IMAGE_SCN_CNT_INITIALIZED_DATA | pe.IMAGE_SCN_MEM_READ

// Machine names for error messages and Info.
var machines = map[uint16]string{
	pe.IMAGE_FILE_MACHINE_ARM64: "arm64", pe.IMAGE_FILE_MACHINE_AMD64: "x86-64",
	pe.IMAGE_FILE_MACHINE_I386: "x86", pe.IMAGE_FILE_MACHINE_ARMNT: "arm",
	pe.IMAGE_FILE_MACHINE_RISCV64: "riscv64", pe.IMAGE_FILE_MACHINE_LOONGARCH64: "loongarch64",
}

// Sections returns the sections of in in the order ukify writes them (.linux last).
func (in *Input) Sections() []Section {
	var s []Section
	add := func(name string, data []byte) {
		if len(data) > 0 {
			s = append(s, Section{name, data})
		}
	}
	add(".osrel", in.OSRel)
	if in.Cmdline != "" {
		add(".cmdline", []byte(in.Cmdline))
	}
	add(".dtb", in.DTB)
	if in.Uname != "" {
		add(".uname", []byte(in.Uname))
	}
	s = append(s, in.Extra...)
	add(".initrd", in.Initrd)
	add(".linux", in.Linux)
	return s
}

// Build returns the UKI made of in.
func Build(in Input) ([]byte, error) {
	if len(in.Linux) == 0 {
		return nil, errors.New("uki: no kernel (.linux) given")
	}
	if err := checkKernel(in.Linux); err != nil {
		return nil, err
	}
	// The stub jumps into the kernel's PE entry point: both must be for one machine, or
	// the image is built without a word and never boots.
	if h, err := parseHeader(in.Stub); err == nil {
		if k, ok := peMachine(in.Linux); ok && k != h.machine {
			return nil, fmt.Errorf("uki: the kernel is for %s, the stub for %s", machineName(k), machineName(h.machine))
		}
	}
	return AppendSections(in.Stub, in.Sections())
}

// checkKernel rejects kernels the systemd stub cannot start: it runs the kernel's own PE
// entry point, so the image must be a PE (gzip-compressed arm64 vmlinuz is not).
func checkKernel(k []byte) error {
	if len(k) >= 2 && k[0] == 0x1f && k[1] == 0x8b {
		return errors.New("uki: kernel is gzip-compressed; the EFI stub needs the uncompressed image (gunzip it first)")
	}
	if len(k) < 0x40 || k[0] != 'M' || k[1] != 'Z' {
		return errors.New("uki: kernel is not an EFI-stub image (no MZ header)")
	}
	return nil
}

// peMachine returns the COFF machine of a PE image, if b is one.
func peMachine(b []byte) (uint16, bool) {
	if len(b) < 0x40 || b[0] != 'M' || b[1] != 'Z' {
		return 0, false
	}
	pe := int(le32(b, 0x3c))
	if pe <= 0 || pe+6 > len(b) || string(b[pe:pe+4]) != "PE\x00\x00" {
		return 0, false
	}
	return le16(b, pe+4), true
}

func machineName(m uint16) string {
	if n, ok := machines[m]; ok {
		return n
	}
	return fmt.Sprintf("%#x", m)
}

// peHeader holds the offsets of the fields AppendSections patches.
type peHeader struct {
	coff          int // COFF file header
	opt           int // optional header
	optSize       int
	pe32plus      bool
	nsect         int
	sectTable     int
	sectAlign     uint32
	fileAlign     uint32
	sizeOfHeaders uint32
	dataDirs      int // offset of the data directories
	nDataDirs     int
	machine       uint16
}

func le16(b []byte, off int) uint16 { return binary.LittleEndian.Uint16(b[off:]) }
func le32(b []byte, off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }

func parseHeader(b []byte) (*peHeader, error) {
	if len(b) < 0x40 || b[0] != 'M' || b[1] != 'Z' {
		return nil, errors.New("not a PE file (no MZ header)")
	}
	peOff := int(le32(b, 0x3c))
	if peOff <= 0 || peOff+24 > len(b) || !bytes.Equal(b[peOff:peOff+4], []byte("PE\x00\x00")) {
		return nil, errors.New("not a PE file (no PE signature)")
	}
	h := &peHeader{coff: peOff + 4}
	h.machine = le16(b, h.coff)
	h.nsect = int(le16(b, h.coff+2))
	h.optSize = int(le16(b, h.coff+16))
	h.opt = h.coff + 20
	h.sectTable = h.opt + h.optSize
	if h.sectTable+40*h.nsect > len(b) {
		return nil, errors.New("PE section table is truncated")
	}
	if h.optSize < 96 {
		return nil, fmt.Errorf("PE optional header too small (%d bytes)", h.optSize)
	}
	switch le16(b, h.opt) {
	case 0x20b:
		h.pe32plus = true
		h.dataDirs = h.opt + 112
		h.nDataDirs = int(le32(b, h.opt+108))
	case 0x10b:
		h.dataDirs = h.opt + 96
		h.nDataDirs = int(le32(b, h.opt+92))
	default:
		return nil, fmt.Errorf("unknown PE optional header magic %#x", le16(b, h.opt))
	}
	if h.dataDirs+8*h.nDataDirs > h.sectTable {
		return nil, errors.New("PE data directories overlap the section table")
	}
	h.sectAlign = le32(b, h.opt+32)
	h.fileAlign = le32(b, h.opt+36)
	h.sizeOfHeaders = le32(b, h.opt+60)
	if h.fileAlign == 0 || h.fileAlign&(h.fileAlign-1) != 0 || h.sectAlign == 0 || h.sectAlign&(h.sectAlign-1) != 0 {
		return nil, fmt.Errorf("bad PE alignments (section %#x, file %#x)", h.sectAlign, h.fileAlign)
	}
	return h, nil
}

func align(v, a uint64) uint64 { return (v + a - 1) &^ (a - 1) }

// AppendSections returns a copy of the PE image stub with sections appended after its last
// section, with every header field that depends on them recomputed.
func AppendSections(stub []byte, sections []Section) ([]byte, error) {
	h, err := parseHeader(stub)
	if err != nil {
		return nil, fmt.Errorf("uki: stub: %w", err)
	}
	// Names already in the stub, and the end of its sections in memory and in the file.
	have := map[string]bool{}
	var vaEnd, rawEnd, firstRaw uint64
	firstRaw = uint64(len(stub))
	for i := 0; i < h.nsect; i++ {
		s := h.sectTable + 40*i
		have[strings.TrimRight(string(stub[s:s+8]), "\x00")] = true
		vsize, va := uint64(le32(stub, s+8)), uint64(le32(stub, s+12))
		rsize, rptr := uint64(le32(stub, s+16)), uint64(le32(stub, s+20))
		vaEnd = max(vaEnd, va+max(vsize, rsize))
		if rsize > 0 {
			rawEnd = max(rawEnd, rptr+rsize)
			firstRaw = min(firstRaw, rptr)
		}
	}
	seen := map[string]bool{}
	for _, s := range sections {
		switch {
		case len(s.Name) == 0 || len(s.Name) > 8:
			return nil, fmt.Errorf("uki: section name %q must be 1 to 8 bytes", s.Name)
		case have[s.Name]:
			return nil, fmt.Errorf("uki: the stub already has a %s section (is it a UKI already?)", s.Name)
		case seen[s.Name]:
			return nil, fmt.Errorf("uki: section %s given twice", s.Name)
		case uint64(len(s.Data)) > 0xffffffff:
			return nil, fmt.Errorf("uki: section %s is larger than 4 GiB", s.Name)
		}
		seen[s.Name] = true
	}
	total := h.nsect + len(sections)
	tableEnd := uint64(h.sectTable + 40*total)
	if tableEnd > uint64(h.sizeOfHeaders) || tableEnd > firstRaw {
		return nil, fmt.Errorf("uki: stub headers have no room for %d more section headers (SizeOfHeaders %#x)", len(sections), h.sizeOfHeaders)
	}

	// A certificate table (data directory 4) holds a signature over the old bytes: drop it,
	// and everything after the sections that only it used.
	base := stub
	if h.nDataDirs > 4 {
		dd := h.dataDirs + 8*4
		if off, size := uint64(le32(stub, dd)), uint64(le32(stub, dd+4)); size > 0 && off >= rawEnd && off <= uint64(len(stub)) {
			base = stub[:off]
		}
	}
	fa, sa := uint64(h.fileAlign), uint64(h.sectAlign)
	fileOff := align(uint64(len(base)), fa)
	va := align(vaEnd, max(SectionAlign, sa))
	size := fileOff
	type placed struct{ va, off, raw uint64 }
	places := make([]placed, len(sections))
	var initData uint64
	for i, s := range sections {
		raw := align(uint64(len(s.Data)), fa)
		places[i] = placed{va, size, raw}
		size += raw
		initData += raw
		va = align(va+uint64(len(s.Data)), max(SectionAlign, sa))
		if va > 0xffffffff || size > 0xffffffff {
			return nil, errors.New("uki: image larger than 4 GiB")
		}
	}
	out := make([]byte, size)
	copy(out, base)
	if h.nDataDirs > 4 {
		dd := h.dataDirs + 8*4
		binary.LittleEndian.PutUint64(out[dd:], 0)
	}
	lastEnd := uint64(0)
	for i, s := range sections {
		p := places[i]
		hdr := out[h.sectTable+40*(h.nsect+i):][:40]
		clear(hdr)
		copy(hdr, s.Name)
		binary.LittleEndian.PutUint32(hdr[8:], uint32(len(s.Data)))
		binary.LittleEndian.PutUint32(hdr[12:], uint32(p.va))
		binary.LittleEndian.PutUint32(hdr[16:], uint32(p.raw))
		binary.LittleEndian.PutUint32(hdr[20:], uint32(p.off))
		binary.LittleEndian.PutUint32(hdr[36:], dataSectionFlags)
		copy(out[p.off:], s.Data)
		lastEnd = p.va + uint64(len(s.Data))
	}
	binary.LittleEndian.PutUint16(out[h.coff+2:], uint16(total))
	idata := uint64(le32(out, h.opt+8)) + initData
	if idata > 0xffffffff {
		idata = 0xffffffff
	}
	binary.LittleEndian.PutUint32(out[h.opt+8:], uint32(idata))
	if len(sections) > 0 {
		binary.LittleEndian.PutUint32(out[h.opt+56:], uint32(align(lastEnd, sa)))
	}
	binary.LittleEndian.PutUint32(out[h.opt+64:], Checksum(out, h.opt+64))
	return out, nil
}

// Checksum computes the PE image checksum of b (the algorithm of IMAGEHLP's CheckSumMappedFile:
// a 16-bit one's-complement-style sum of the file, skipping the checksum field at csumOff, plus
// the file length).
func Checksum(b []byte, csumOff int) uint32 {
	var sum uint64
	n := len(b) &^ 1
	for i := 0; i < n; i += 2 {
		if i == csumOff || i == csumOff+2 {
			continue
		}
		sum += uint64(b[i]) | uint64(b[i+1])<<8
		sum = (sum & 0xffff) + (sum >> 16)
	}
	if len(b)&1 == 1 {
		sum += uint64(b[len(b)-1])
	}
	sum = (sum & 0xffff) + (sum >> 16)
	sum = (sum & 0xffff) + (sum >> 16)
	return uint32(sum&0xffff) + uint32(len(b))
}

// Info describes an existing UKI (or any PE image).
type Info struct {
	Machine  string
	Sections []SectionInfo
	Checksum uint32 // as stored
	// Computed is the checksum the bytes have; equal to Checksum for a well-formed UKI.
	Computed uint32
	data     map[string][]byte
}

// SectionInfo is one section header.
type SectionInfo struct {
	Name                   string
	VirtualAddress, Size   uint32 // Size is the VirtualSize: the section's real length
	FileOffset, FileLength uint32
}

// Section returns the bytes of the named section (VirtualSize long, without file padding).
func (i *Info) Section(name string) ([]byte, bool) { d, ok := i.data[name]; return d, ok }

// Cmdline returns the embedded kernel command line, trimmed of the trailing NUL/newline.
func (i *Info) Cmdline() string {
	return strings.TrimRight(string(i.data[".cmdline"]), "\x00\n ")
}

// OSRelease returns the key/value pairs of the embedded os-release.
func (i *Info) OSRelease() map[string]string { return ParseOSRelease(i.data[".osrel"]) }

// Read parses the PE image in r (size bytes) and loads its small sections (everything but
// .linux and .initrd, whose sizes Info still reports). Set all to load those too.
func Read(r io.ReaderAt, size int64, all bool) (*Info, error) {
	f, err := pe.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("uki: %w", err)
	}
	defer f.Close()
	info := &Info{Machine: machines[f.Machine], data: map[string][]byte{}}
	if info.Machine == "" {
		info.Machine = fmt.Sprintf("%#x", f.Machine)
	}
	for _, s := range f.Sections {
		si := SectionInfo{Name: s.Name, VirtualAddress: s.VirtualAddress, Size: s.VirtualSize, FileOffset: s.Offset, FileLength: s.Size}
		info.Sections = append(info.Sections, si)
		if !all && (s.Name == ".linux" || s.Name == ".initrd") {
			continue
		}
		n := min(s.VirtualSize, s.Size)
		if s.VirtualSize == 0 {
			n = s.Size
		}
		buf := make([]byte, n)
		if _, err := r.ReadAt(buf, int64(s.Offset)); err != nil {
			return nil, fmt.Errorf("uki: reading section %s: %w", s.Name, err)
		}
		info.data[s.Name] = buf
	}
	// The checksum needs the whole file; UKIs are tens of MiB, read it once.
	if all || size <= 256<<20 {
		whole := make([]byte, size)
		if _, err := r.ReadAt(whole, 0); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("uki: %w", err)
		}
		if h, err := parseHeader(whole); err == nil {
			info.Checksum = le32(whole, h.opt+64)
			info.Computed = Checksum(whole, h.opt+64)
		}
	}
	return info, nil
}

// ParseOSRelease parses os-release text: KEY=value lines, values optionally quoted.
func ParseOSRelease(b []byte) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
			v = strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\$`, `$`, "\\`", "`").Replace(v)
		}
		m[k] = v
	}
	return m
}

// KernelRelease finds the release string ("6.1.0-56-arm64") in an uncompressed kernel image,
// from its "Linux version <release> (" banner, or returns "".
func KernelRelease(kernel []byte) string {
	// An x86 bzImage is compressed, but its setup header points at the version string.
	if len(kernel) > 0x210 && string(kernel[0x202:0x206]) == "HdrS" {
		if off := int(le16(kernel, 0x20e)) + 0x200; off > 0x200 && off < len(kernel) {
			rest := kernel[off:min(len(kernel), off+128)]
			if end := bytes.IndexAny(rest, " \x00"); end > 0 {
				return string(rest[:end])
			}
		}
	}
	marker := []byte("Linux version ")
	for off := 0; ; {
		i := bytes.Index(kernel[off:], marker)
		if i < 0 {
			return ""
		}
		rest := kernel[off+i+len(marker):]
		end := bytes.IndexAny(rest, " \x00\n")
		// The banner is "Linux version REL (builder) ..."; other hits (format strings) have %s.
		if end > 0 && end < 128 && end+1 < len(rest) && rest[end] == ' ' && rest[end+1] == '(' {
			rel := string(rest[:end])
			if !strings.Contains(rel, "%") {
				return rel
			}
		}
		off += i + len(marker)
	}
}
