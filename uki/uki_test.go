package uki

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/piboot/piboot/internal/testutil"
)

// fakeStub is a minimal PE32+ image with one .text section, enough for the table tests.
func fakeStub(t *testing.T, sizeOfHeaders uint32, certSize int) []byte {
	t.Helper()
	b := make([]byte, 0x400)
	b[0], b[1] = 'M', 'Z'
	binary.LittleEndian.PutUint32(b[0x3c:], 0x40)
	copy(b[0x40:], "PE\x00\x00")
	coff := 0x44
	binary.LittleEndian.PutUint16(b[coff:], pe.IMAGE_FILE_MACHINE_ARM64)
	binary.LittleEndian.PutUint16(b[coff+2:], 1)
	binary.LittleEndian.PutUint16(b[coff+16:], 112+16*8)
	opt := coff + 20
	binary.LittleEndian.PutUint16(b[opt:], 0x20b)
	binary.LittleEndian.PutUint32(b[opt+8:], 0x200)
	binary.LittleEndian.PutUint32(b[opt+32:], 0x1000)
	binary.LittleEndian.PutUint32(b[opt+36:], 0x200)
	binary.LittleEndian.PutUint32(b[opt+56:], 0x2000)
	binary.LittleEndian.PutUint32(b[opt+60:], sizeOfHeaders)
	binary.LittleEndian.PutUint32(b[opt+108:], 16)
	sect := opt + 112 + 16*8
	copy(b[sect:], ".text")
	binary.LittleEndian.PutUint32(b[sect+8:], 0x10)
	binary.LittleEndian.PutUint32(b[sect+12:], 0x1000)
	binary.LittleEndian.PutUint32(b[sect+16:], 0x200)
	binary.LittleEndian.PutUint32(b[sect+20:], 0x200)
	copy(b[0x200:], "\xc0\x03\x5f\xd6") // ret
	if certSize > 0 {
		dd := opt + 112 + 4*8
		binary.LittleEndian.PutUint32(b[dd:], uint32(len(b)))
		binary.LittleEndian.PutUint32(b[dd+4:], uint32(certSize))
		b = append(b, bytes.Repeat([]byte{0xee}, certSize)...)
	}
	return b
}

func TestAppendSectionsLayout(t *testing.T) {
	stub := fakeStub(t, 0x200, 0x18)
	secs := []Section{{".osrel", []byte("ID=x\n")}, {".cmdline", []byte("quiet")}, {".linux", bytes.Repeat([]byte{7}, 0x10001)}}
	out, err := AppendSections(stub, secs)
	if err != nil {
		t.Fatal(err)
	}
	f, err := pe.NewFile(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("debug/pe rejects the result: %v", err)
	}
	if len(f.Sections) != 4 {
		t.Fatalf("sections = %d, want 4", len(f.Sections))
	}
	oh := f.OptionalHeader.(*pe.OptionalHeader64)
	if dd := oh.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_SECURITY]; dd.Size != 0 || dd.VirtualAddress != 0 {
		t.Errorf("certificate table still referenced: %+v", dd)
	}
	if bytes.Contains(out, bytes.Repeat([]byte{0xee}, 0x18)) {
		t.Error("certificate bytes still in the image")
	}
	prevEnd := uint32(0x1010)
	var raw uint32
	for i, s := range f.Sections[1:] {
		want := secs[i]
		if s.Name != want.Name || s.VirtualSize != uint32(len(want.Data)) {
			t.Errorf("section %d = %s/%d, want %s/%d", i, s.Name, s.VirtualSize, want.Name, len(want.Data))
		}
		if s.VirtualAddress%SectionAlign != 0 || s.VirtualAddress < prevEnd {
			t.Errorf("%s at VA %#x: not 64 KiB aligned after %#x", s.Name, s.VirtualAddress, prevEnd)
		}
		if s.Offset%0x200 != 0 || s.Size%0x200 != 0 {
			t.Errorf("%s: file offset %#x size %#x not FileAlignment-aligned", s.Name, s.Offset, s.Size)
		}
		if s.Characteristics != dataSectionFlags {
			t.Errorf("%s: characteristics %#x", s.Name, s.Characteristics)
		}
		got, _ := s.Data()
		if !bytes.Equal(got[:s.VirtualSize], want.Data) {
			t.Errorf("%s: bytes differ", s.Name)
		}
		prevEnd = s.VirtualAddress + s.VirtualSize
		raw += s.Size
	}
	if want := (prevEnd + 0xfff) &^ 0xfff; oh.SizeOfImage != want {
		t.Errorf("SizeOfImage = %#x, want %#x", oh.SizeOfImage, want)
	}
	if oh.SizeOfInitializedData != 0x200+raw {
		t.Errorf("SizeOfInitializedData = %#x, want %#x", oh.SizeOfInitializedData, 0x200+raw)
	}
	if got := Checksum(out, 0x44+20+64); oh.CheckSum != got || got == 0 {
		t.Errorf("checksum field %#x, computed %#x", oh.CheckSum, got)
	}
	// The same input gives the same bytes.
	again, _ := AppendSections(stub, secs)
	if !bytes.Equal(out, again) {
		t.Error("two builds differ")
	}
}

func TestAppendSectionsErrors(t *testing.T) {
	stub := fakeStub(t, 0x200, 0)
	cases := []struct {
		name string
		stub []byte
		secs []Section
		want string
	}{
		{"not PE", []byte("hello, this is not a PE file at all, just some text that is long enough for the header"), nil, "no MZ"},
		{"long name", stub, []Section{{".toolongname", nil}}, "1 to 8 bytes"},
		{"twice", stub, []Section{{".a", nil}, {".a", nil}}, "given twice"},
		{"already", stub, []Section{{".text", nil}}, "already has a .text"},
		// 0x200 of headers hold 4 section headers after the table's start at 0x148.
		{"no room", stub, []Section{{".a", nil}, {".b", nil}, {".c", nil}, {".d", nil}}, "no room for 4 more"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := AppendSections(c.stub, c.secs)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
	if _, err := Build(Input{Stub: stub, Linux: []byte{0x1f, 0x8b, 8, 0}}); err == nil || !strings.Contains(err.Error(), "gzip") {
		t.Errorf("gzip kernel: err = %v", err)
	}
}

func TestChecksumKnown(t *testing.T) {
	// Computed by hand: words 0x0201+0x0403 (field at 4..7 skipped) = 0x0604, plus length 8.
	b := []byte{1, 2, 3, 4, 0xff, 0xff, 0xff, 0xff}
	if got := Checksum(b, 4); got != 0x0604+8 {
		t.Fatalf("Checksum = %#x", got)
	}
	// Carries fold back into the low 16 bits.
	b = []byte{0xff, 0xff, 0x02, 0x00, 0, 0, 0, 0}
	if got := Checksum(b, 4); got != 0x0002+8 {
		t.Fatalf("Checksum with carry = %#x", got)
	}
}

func TestKernelRelease(t *testing.T) {
	img := []byte("xx Linux version %s (%s) junk\x00 Linux version 6.1.0-56-arm64 (debian-kernel@lists.debian.org) (gcc)")
	if got := KernelRelease(img); got != "6.1.0-56-arm64" {
		t.Fatalf("KernelRelease = %q", got)
	}
	if got := KernelRelease([]byte("nothing here")); got != "" {
		t.Fatalf("KernelRelease = %q", got)
	}
}

// newc builds a cpio archive (newc format) of regular files.
func newc(files map[string]string) []byte {
	var b bytes.Buffer
	ino := 1
	add := func(name string, mode int, data string) {
		fmt.Fprintf(&b, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
			ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		ino++
		b.WriteString(name + "\x00")
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
		b.WriteString(data)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	for name, data := range files {
		add(name, 0o100755, data)
	}
	add("TRAILER!!!", 0, "")
	return b.Bytes()
}

// buildReal builds a UKI from Debian's stub and kernel for arch into dir.
func buildReal(t *testing.T, arch, cmdline string) (path string, in Input) {
	t.Helper()
	vmlinuz, _ := testutil.Kernel(t, arch)
	_, stubPath := testutil.SystemdBoot(t, arch)
	var err error
	if in.Stub, err = os.ReadFile(stubPath); err != nil {
		t.Fatal(err)
	}
	if in.Linux, err = os.ReadFile(vmlinuz); err != nil {
		t.Fatal(err)
	}
	in.Initrd = newc(map[string]string{"init": "#!/bin/sh-that-does-not-exist\n"})
	in.Cmdline = cmdline
	in.OSRel = []byte("ID=piboot\nIMAGE_ID=piboot\nIMAGE_VERSION=\"v7\"\n")
	in.Uname = KernelRelease(in.Linux)
	img, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "test.efi")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, in
}

func TestRealStubs(t *testing.T) {
	for _, c := range []struct{ arch, objdump string }{{"arm64", "aarch64-linux-gnu-objdump"}, {"amd64", "objdump"}} {
		t.Run(c.arch, func(t *testing.T) {
			testutil.Need(t, c.objdump, "osslsigncode")
			path, in := buildReal(t, c.arch, "console=ttyS0 quiet")
			if in.Uname == "" || !regexp.MustCompile(`^\d+\.\d+\.\d+-\d+-`+c.arch+`$`).MatchString(in.Uname) {
				t.Errorf("kernel release from banner = %q", in.Uname)
			}
			// objdump -h lists every section with its exact size.
			out, err := exec.Command(c.objdump, "-h", path).CombinedOutput()
			if err != nil {
				t.Fatalf("%s -h: %v\n%s", c.objdump, err, out)
			}
			sizes := map[string]int{}
			re := regexp.MustCompile(`(?m)^\s*\d+\s+(\.\w+)\s+([0-9a-f]+)\s`)
			for _, m := range re.FindAllStringSubmatch(string(out), -1) {
				n, _ := strconv.ParseUint(m[2], 16, 64)
				sizes[m[1]] = int(n)
			}
			for _, s := range in.Sections() {
				if sizes[s.Name] != len(s.Data) {
					t.Errorf("objdump -h: %s size %d, want %d\n%s", s.Name, sizes[s.Name], len(s.Data), out)
				}
			}
			// osslsigncode parses it: unsigned, but the checksum must be valid and nothing corrupt.
			out, _ = exec.Command("osslsigncode", "verify", path).CombinedOutput()
			s := string(out)
			if !strings.Contains(s, "PE checksum") || strings.Contains(s, "invalid PE checksum") ||
				strings.Contains(strings.ToLower(s), "corrupt") || !strings.Contains(s, "No signature found") {
				t.Errorf("osslsigncode verify:\n%s", s)
			}
			// Read back: every section equal, checksum field right.
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			info, err := Read(f, st.Size(), true)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range in.Sections() {
				if got, _ := info.Section(s.Name); !bytes.Equal(got, s.Data) {
					t.Errorf("section %s read back differs (%d vs %d bytes)", s.Name, len(got), len(s.Data))
				}
			}
			if info.Checksum != info.Computed || info.Checksum == 0 {
				t.Errorf("checksum %#x, computed %#x", info.Checksum, info.Computed)
			}
			if info.Cmdline() != "console=ttyS0 quiet" || info.OSRelease()["IMAGE_VERSION"] != "v7" {
				t.Errorf("cmdline %q osrel %v", info.Cmdline(), info.OSRelease())
			}
		})
	}
}

// TestKernelStubMismatch: an arm64 kernel behind the x86-64 stub (and the reverse) is
// refused; the stub would jump into code it cannot run.
func TestKernelStubMismatch(t *testing.T) {
	for _, c := range []struct{ kernel, stub, want string }{
		{"arm64", "amd64", "the kernel is for arm64, the stub for x86-64"},
		{"amd64", "arm64", "the kernel is for x86-64, the stub for arm64"},
	} {
		vmlinuz, _ := testutil.Kernel(t, c.kernel)
		_, stubPath := testutil.SystemdBoot(t, c.stub)
		linux, err := os.ReadFile(vmlinuz)
		if err != nil {
			t.Fatal(err)
		}
		stub, err := os.ReadFile(stubPath)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Build(Input{Stub: stub, Linux: linux, Cmdline: "x"})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s kernel, %s stub: err = %v, want %q", c.kernel, c.stub, err, c.want)
		}
	}
}
