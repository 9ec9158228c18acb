package images

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/testutil"
)

// TestVersionsAndIDs pins which version and id strings an image.conf accepts: they become
// file names, GPT labels (nix-store_<v> in 36 UTF-16 units) and sysupdate @v values.
func TestVersionsAndIDs(t *testing.T) {
	for _, c := range []struct {
		key, val, want string // want "": accepted
	}{
		{"Version", "v1", ""},
		{"Version", "1.2.3", ""},
		{"Version", "2026-11-26", ""},
		{"Version", "1.0+git.3-rc1", ""},
		{"Version", "1,2", ""},
		{"Version", "1_2", "Version=1_2: must not contain '_'"},
		{"Version", "1~rc1", "Version=1~rc1: a sysupdate version"},
		{"Version", "-1", "Version=-1: a sysupdate version"},
		{"Version", ".1", "Version=.1"},
		{"Version", "v 1", "Version=v 1"},
		{"Version", "v/1", "Version=v/1"},
		{"Version", "vé", "Version=vé"},
		{"Id", "my-image.x_1", ""},
		{"Id", "_x", "Id=_x: only letters"},
		{"Id", "a+b", "Id=a+b"},
		{"Id", "a b", "Id=a b"},
		{"Architecture", "arm64", ""},
		{"Architecture", "amd64", ""},
		{"Architecture", "x86-64", ""},
		{"Architecture", "aarch64", ""},
		{"Architecture", "sparc64", "Architecture=sparc64: unknown"},
	} {
		var lines []string
		for _, l := range strings.Split(goodConf, "\n") {
			if !strings.HasPrefix(l, c.key+"=") {
				lines = append(lines, l)
			}
		}
		text := strings.Replace(strings.Join(lines, "\n"), "[Image]\n", "[Image]\n"+c.key+"="+c.val+"\n", 1)
		conf, err := ParseConfig("image.conf", []byte(text), nil)
		if err == nil && c.key == "Architecture" && conf.Architecture != map[string]string{"x86-64": "amd64", "aarch64": "arm64"}[c.val] && conf.Architecture != c.val {
			t.Errorf("Architecture=%s: %s", c.val, conf.Architecture)
		}
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s=%s: %v", c.key, c.val, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), "image.conf:3: "+c.want)):
			t.Errorf("%s=%s: err = %v, want %q", c.key, c.val, err, c.want)
		}
	}
}

// qaImage is a small image.conf for QA builds: a fake kernel (a PE header and a version
// banner) keeps the UKI, the ESP and so each build small and fast.
type qaImage struct {
	dir   string // image.conf, kernel, initrd, store/, d/ (the definitions)
	arch  string
	store string
}

// The seed's ESP and store, small; qaDefs adds what a case needs.
const (
	qaESP   = "[Partition]\nType=esp\nFormat=vfat\nLabel=boot\nSizeMinBytes=4M\nSplitName=-\nCopyFiles=/boot:/\n"
	qaStore = "[Partition]\nType=linux-generic\nFormat=squashfs\nLabel=nix-store_%A\nSizeMinBytes=2M\nSizeMaxBytes=2M\nReadOnly=yes\nSplitName=nix-store\nCopyFiles=/nix/store:/\n"
)

func newQAImage(t *testing.T, arch string, defs map[string]string) *qaImage {
	t.Helper()
	boot, stub := testutil.SystemdBoot(t, arch)
	q := &qaImage{dir: t.TempDir(), arch: arch}
	q.store = filepath.Join(q.dir, "store")
	kernel := append(append([]byte("MZ"), make([]byte, 4094)...), "Linux version 6.1.0-qa (qa@host) #1\n"...)
	files := map[string]string{
		"vmlinuz": string(kernel), "initrd": "initrd", "store/bin/init": "#!/bin/sh\n",
		"image.conf": "[Image]\nId=qa\nVersion=v1\nArchitecture=" + arch + "\n[Kernel]\nLinux=vmlinuz\nInitrd=initrd\nStub=" + stub +
			"\nCommandLine=console=ttyS0\n[Boot]\nSystemdBoot=" + boot + "\n[Store]\nTree=store\nInit=/nix/store/bin/init\n[Partitions]\nDefinitions=d\n",
	}
	for n, s := range defs {
		files["d/"+n] = s
	}
	for n, s := range files {
		p := filepath.Join(q.dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return q
}

func (q *qaImage) build(t *testing.T, out string, ov ...Override) (*Outputs, error) {
	t.Helper()
	c, err := LoadConfig(filepath.Join(q.dir, "image.conf"), ov)
	if err != nil {
		return nil, err
	}
	return Build(c, Options{OutDir: out, ZstdLevel: zstd.SpeedFastest})
}

// sfdiskPart is what sfdisk --json reports of a partition.
type sfdiskPart struct {
	Start, Size uint64
	Type, UUID  string
	Name, Attrs string
}

func sfdiskJSON(t *testing.T, img string) []sfdiskPart {
	t.Helper()
	var v struct {
		PartitionTable struct{ Partitions []sfdiskPart }
	}
	if err := json.Unmarshal([]byte(run(t, "sfdisk", "--json", img)), &v); err != nil {
		t.Fatal(err)
	}
	return v.PartitionTable.Partitions
}

// checkImage runs the real tools over a built image: sgdisk -v, fsck.vfat -n on the ESP,
// unsquashfs -s on the store, and Inspect; it returns sfdisk's view of the table.
func checkImage(t *testing.T, out *Outputs) []sfdiskPart {
	t.Helper()
	if v := run(t, "sgdisk", "-v", out.Image); !strings.Contains(v, "No problems found") {
		t.Errorf("sgdisk -v %s:\n%s", out.Image, v)
	}
	parts := sfdiskJSON(t, out.Image)
	f, err := os.Open(out.Image)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := Inspect(f, out.Size)
	if err != nil {
		t.Fatal(err)
	}
	var problems []string
	for _, p := range rep.Problems {
		// An extra ESP-typed partition without Format= is left empty, and Inspect says so.
		if !strings.HasPrefix(p, "partition 1 ") && strings.Contains(p, "an EFI system partition without a FAT file system (empty)") {
			continue
		}
		problems = append(problems, p)
	}
	if len(problems) > 0 || len(rep.Partitions) != len(out.Partitions) || len(parts) != len(out.Partitions) || len(rep.UKIs) != 1 {
		t.Errorf("inspect: %+v; sfdisk: %+v", rep, parts)
	}
	for i, p := range out.Partitions {
		switch {
		case p.Label == out.StoreLabel:
			run(t, "unsquashfs", "-s", extract(t, out.Image, p))
		case p.Type == gpt.TypeESP && rep.Partitions[i].Filesystem == "vfat":
			run(t, "fsck.vfat", "-n", extract(t, out.Image, p))
		}
	}
	return parts
}

// TestLayoutsAgainstRepart252 builds images whose definitions go beyond the seed's three —
// types systemd names and ones it does not, default and duplicate labels, sizes off the
// 4 KiB grain, flags, explicit UUIDs, Weight=/Priority= — and compares every partition's
// label, type, size, attributes and explicit UUID with what systemd-repart 252 makes of the
// same definitions (--size=auto; the ESP and store without Format=/CopyFiles=, which 252
// cannot fill without a mount). Offsets differ by design: the builder starts partitions on
// 1 MiB boundaries.
func TestLayoutsAgainstRepart252(t *testing.T) {
	testutil.Need(t, "systemd-repart", "sfdisk", "sgdisk", "fsck.vfat", "unsquashfs")
	cases := [][]string{
		{
			"[Partition]\nType=21686148-6449-6e6f-744e-656564454649\nSizeMinBytes=1M\n",
			"[Partition]\nType=linux-generic\n",
			"[Partition]\nType=linux-generic\nSizeMinBytes=3M\nWeight=0\nPriority=5\n",
			"[Partition]\nType=c12a7328-f81f-11d2-ba4b-00a0c93ec93b\nSizeMinBytes=1M\n",
		},
		{
			"[Partition]\nType=root\nSizeMinBytes=5000001\nSizeMaxBytes=6000001\n",
			"[Partition]\nType=usr-verity\nSizeMinBytes=1M\nReadOnly=yes\n",
			"[Partition]\nType=swap\nLabel=swap-é\nSizeMinBytes=1M\nSizeMaxBytes=1M\nUUID=5d6b3c6e-8f62-4d1a-9a0b-0c1d2e3f4a5b\n",
			"[Partition]\nType=xbootldr\nSizeMinBytes=4095\nNoAuto=yes\nGrowFileSystem=yes\n",
		},
		{
			"[Partition]\nType=home\nFlags=0x1000000000000000\nSizeMinBytes=1M\n",
			"[Partition]\nType=srv\nFlags=0x1000000000000000\nReadOnly=yes\nSizeMinBytes=1M\nSizeMaxBytes=20M\n",
			"[Partition]\nType=var\nSizeMaxBytes=12M\nPaddingMaxBytes=1M\n",
		},
		{
			"[Partition]\nType=linux-generic\nReadOnly=yes\nNoAuto=yes\nGrowFileSystem=yes\nSizeMinBytes=1M\n",
			"[Partition]\nType=c12a7328-f81f-11d2-ba4b-00a0c93ec93b\nNoAuto=yes\nReadOnly=yes\nSizeMinBytes=1M\n",
			"[Partition]\nType=swap\nGrowFileSystem=yes\nNoAuto=yes\nSizeMinBytes=1M\n",
			"[Partition]\nType=xbootldr\nReadOnly=yes\nGrowFileSystem=yes\nNoAuto=yes\nSizeMinBytes=1M\n",
		},
	}
	rnd := rand.New(rand.NewPCG(6, 252))
	types := []string{"linux-generic", "xbootldr", "swap", "home", "srv", "var", "tmp", "root", "usr", "root-verity",
		"21686148-6449-6e6f-744e-656564454649", "e6d6d379-f507-44c2-a23c-238f2a3df928"}
	for range 3 {
		var c []string
		for j := range 1 + rnd.IntN(4) {
			var b strings.Builder
			fmt.Fprintf(&b, "[Partition]\nType=%s\n", types[rnd.IntN(len(types))])
			if rnd.IntN(3) == 0 {
				fmt.Fprintf(&b, "Label=part%d\n", j)
			}
			min := []int64{-1, 1 << 20, int64(rnd.IntN(3<<20) + 1)}[rnd.IntN(3)]
			if min >= 0 {
				fmt.Fprintf(&b, "SizeMinBytes=%d\n", min)
			}
			if rnd.IntN(2) == 0 {
				fmt.Fprintf(&b, "SizeMaxBytes=%d\n", max(min, 10<<20)+int64(rnd.IntN(1<<20)))
			}
			for _, k := range []string{"ReadOnly", "NoAuto", "GrowFileSystem"} {
				if v := rnd.IntN(4); v < 2 {
					fmt.Fprintf(&b, "%s=%s\n", k, []string{"no", "yes"}[v])
				}
			}
			if rnd.IntN(3) == 0 {
				fmt.Fprintf(&b, "Weight=%d\nPriority=%d\n", rnd.IntN(2000), rnd.IntN(3))
			}
			c = append(c, b.String())
		}
		cases = append(cases, c)
	}
	for i, extra := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			defs := map[string]string{"10-esp.conf": qaESP, "20-store.conf": qaStore}
			plain := map[string]string{
				"10-esp.conf":   "[Partition]\nType=esp\nLabel=boot\nSizeMinBytes=4M\n",
				"20-store.conf": "[Partition]\nType=linux-generic\nLabel=nix-store_v1\nSizeMinBytes=2M\nSizeMaxBytes=2M\nReadOnly=yes\n",
			}
			for j, s := range extra {
				n := fmt.Sprintf("%02d-x.conf", 30+j)
				defs[n], plain[n] = s+"SplitName=-\n", s
			}
			q := newQAImage(t, "amd64", defs)
			out, err := q.build(t, filepath.Join(q.dir, "out"))
			if err != nil {
				t.Fatalf("%v\n%q", err, extra)
			}
			ours := checkImage(t, out)

			sd := filepath.Join(q.dir, "sd")
			os.Mkdir(sd, 0o755)
			for n, s := range plain {
				os.WriteFile(filepath.Join(sd, n), []byte(s), 0o644)
			}
			img := filepath.Join(q.dir, "252.raw")
			run(t, "systemd-repart", "--empty=create", "--size=auto", "--dry-run=no", "--no-pager",
				"--definitions="+sd, "--seed=0c1d2e3f-4a5b-4d6e-8f70-8192a3b4c5d6", img)
			theirs := sfdiskJSON(t, img)
			if len(ours) != len(theirs) {
				t.Fatalf("%d partitions, 252 made %d", len(ours), len(theirs))
			}
			for j := range ours {
				o, s := ours[j], theirs[j]
				def := ""
				if j >= 2 {
					def = extra[j-2]
				}
				if o.Name != s.Name || o.Type != s.Type || o.Size != s.Size || !sameAttrs(o.Attrs, s.Attrs, def) ||
					(strings.Contains(def, "UUID=") && o.UUID != s.UUID) {
					t.Errorf("partition %d: ours %+v\n252: %+v\ndefinition:\n%s", j+1, o, s, def)
				}
			}
		})
	}
}

// sameAttrs compares sfdisk's attribute lists of the builder's and 252's partition. 252
// applies ReadOnly=, NoAuto= and GrowFileSystem= only to the types whose specification
// defines the flag (not linux-generic, swap's read-only, the ESP's...); the builder sets what the
// definition asks for on every type, so that the seed's linux-generic store is read-only. The
// builder's store and ESP (def "") differ from the Format=-less stand-ins 252 gets.
func sameAttrs(ours, theirs, def string) bool {
	if def == "" {
		return true
	}
	set := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, a := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == ':' }) {
			if a != "GUID" {
				m[a] = true
			}
		}
		return m
	}
	o, th := set(ours), set(theirs)
	asked := map[string]bool{"60": strings.Contains(def, "ReadOnly=yes"), "63": strings.Contains(def, "NoAuto=yes"), "59": strings.Contains(def, "GrowFileSystem=yes")}
	for a := range th {
		if !o[a] {
			return false
		}
	}
	for a := range o {
		if !th[a] && !asked[a] {
			return false
		}
	}
	return true
}

// TestDefinitionErrors: definitions the builder cannot honour fail before anything is
// written, naming the file, the line and the key.
func TestDefinitionErrors(t *testing.T) {
	c := &Config{ID: "qa", Version: "2026-11-26.1+build.42", Architecture: "arm64", File: "image.conf", MountPoint: "/nix/store"}
	for _, cse := range []struct {
		name string
		defs map[string]string
		want string
	}{
		{"split file twice", map[string]string{"20-a.conf": "[Partition]\nType=linux-generic\nLabel=a\n", "30-b.conf": "[Partition]\nType=linux-generic\nLabel=b\n"},
			"30-b.conf: SplitName=%t: qa_2026-11-26.1+build.42.linux-generic.raw is already the split file of"},
		{"split name twice", map[string]string{"20-a.conf": "[Partition]\nType=esp\nSplitName=x\n", "30-b.conf": "[Partition]\nType=linux-generic\n\nSplitName=x\n"},
			"30-b.conf:4: SplitName=x: qa_2026-11-26.1+build.42.x.raw is already the split file of"},
		{"split slash", map[string]string{"20-a.conf": "[Partition]\nType=esp\nSplitName=../x\n"}, "20-a.conf:3: SplitName=../x gives \"../x\", not a file name"},
		{"long split name", map[string]string{"20-a.conf": "[Partition]\nType=esp\nSplitName=" + strings.Repeat("s", 240) + "\n"}, "20-a.conf:3: SplitName=sss"},
		{"padding", map[string]string{"20-a.conf": "[Partition]\nType=esp\nPaddingMinBytes=1M\n"}, "20-a.conf:3: PaddingMinBytes= is not supported"},
		{"uuid twice", map[string]string{"20-a.conf": "[Partition]\nType=esp\nUUID=5d6b3c6e-8f62-4d1a-9a0b-0c1d2e3f4a5b\n", "30-b.conf": "[Partition]\nType=swap\nUUID=5d6b3c6e-8f62-4d1a-9a0b-0c1d2e3f4a5b\n"},
			"30-b.conf:3: UUID=5d6b3c6e-8f62-4d1a-9a0b-0c1d2e3f4a5b is already used by"},
		{"ESP moved", map[string]string{"20-a.conf": "[Partition]\nType=esp\nFormat=vfat\nCopyFiles=/boot\n"},
			"20-a.conf:4: CopyFiles=/boot:/boot would move the ESP content from /boot to /boot; firmware and systemd-boot find it only at /"},
		{"ESP part moved", map[string]string{"20-a.conf": "[Partition]\nType=esp\nFormat=vfat\nCopyFiles=/boot/EFI:/\n"},
			"20-a.conf:4: CopyFiles=/boot/EFI:/ would move the ESP content from /boot/EFI to /; firmware and systemd-boot find it only at /EFI"},
		{"store label with a space", map[string]string{"20-a.conf": "[Partition]\nType=linux-generic\nFormat=squashfs\nLabel=nix store_%A\nCopyFiles=/nix/store:/\n"},
			"20-a.conf:4: Label=\"nix store_2026-11-26.1+build.42\": the store's label goes on the kernel command line"},
		{"null UUID", map[string]string{"20-a.conf": "[Partition]\nType=esp\nUUID=null\n"}, "20-a.conf:3: UUID=null is not supported by the image builder"},
		{"label twice", map[string]string{"20-a.conf": "[Partition]\nType=esp\nLabel=x\n", "30-b.conf": "[Partition]\nType=swap\nLabel=x\n"}, "30-b.conf:3: Label=x is already used by"},
		{"version too long", map[string]string{"20-a.conf": "[Partition]\nType=linux-generic\n# the store\nLabel=nix-store_%A\n"},
			"20-a.conf:4: Label=nix-store_%A is \"nix-store_2026-11-26.1+build.42\", 31 characters"},
	} {
		t.Run(cse.name, func(t *testing.T) {
			cc := *c
			if cse.name == "version too long" {
				cc.Version = "2026-11-26.1+build.42.extra"
				cse.want = strings.NewReplacer("build.42", "build.42.extra", "31 characters", "37 characters").Replace(cse.want) +
					": longer than the 36 a GPT label holds; shorten [Image] Version=2026-11-26.1+build.42.extra or Id=qa (image.conf)"
			}
			_, err := LoadDefinitions(writeDefs(t, cse.defs), &cc)
			if err == nil || !strings.Contains(err.Error(), cse.want) {
				t.Fatalf("err = %v, want %q", err, cse.want)
			}
		})
	}
	// Accepted: a version that fills the label exactly; labels defaulted as systemd does.
	defs, err := LoadDefinitions(writeDefs(t, map[string]string{
		"10-a.conf": "[Partition]\nType=linux-generic\nLabel=nix-store_%A\nSplitName=-\n",
		"20-b.conf": "[Partition]\nType=linux-generic\nSplitName=-\n",
		"30-c.conf": "[Partition]\nType=root\nSplitName=%t.%n\n",
		"40-d.conf": "[Partition]\nType=21686148-6449-6e6f-744e-656564454649\nSplitName=%t\n",
		"50-e.conf": "[Partition]\nType=linux-generic\nSplitName=-\nMinimize=best\nFormat=squashfs\n",
		"60-f.conf": "[Partition]\nType=esp\nFormat=vfat\nCopyFiles=/boot/EFI:/EFI\nCopyFiles=/boot/loader/:/loader\n",
	}), &Config{ID: "qa", Version: strings.Repeat("1", 26), Architecture: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, d := range defs {
		got = append(got, fmt.Sprintf("%s %s %d", d.Label, expandSplit(d.SplitName, d, len(got)+1), d.MinSize))
	}
	want := []string{"nix-store_" + strings.Repeat("1", 26) + "  10485760", "linux-generic  10485760", "root-arm64 root-arm64.3 10485760",
		"linux 21686148-6449-6e6f-744e-656564454649 10485760", "linux-generic-2  0", "esp esp 10485760"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestBadImageConf: a bad image.conf fails naming file:line and the key.
func TestBadImageConf(t *testing.T) {
	for _, c := range []struct{ name, text, want string }{
		{"duplicate", "[Kernel]\nLinux=/a\n\n# again\nLinux=/b\n", "image.conf:5: Linux= in [Kernel] is already set at image.conf:2 (one value per key)"},
		{"duplicate across sections", "[Kernel]\nLinux=/a\n[Store]\nTree=/t\n[Kernel]\nLinux=/b\n", "image.conf:6: Linux= in [Kernel] is already set at image.conf:2"},
		{"crlf", "[Image]\r\nId=x\r\n\r\n[Kernal]\r\nLinux=/k\r\n", "image.conf:5: unknown section [Kernal]"},
		{"spaces", "  [Image]  \n  Id = x \n\n\t[Kernel]\n Linuz = /k\n", "image.conf:5: unknown key Linuz= in [Kernel]"},
		{"continuation", "[Kernel]\nCommandLine=a \\\n  b\nLinuz=/k\n", "image.conf:4: unknown key Linuz="},
		{"comments", "; c\n# c\n[Image]\n# Linuz=\nColour=red\n", "image.conf:5: unknown key Colour= in [Image]"},
		{"init with a space", strings.Replace(goodConf, "Init=/nix/store/bin/init", "Init=/nix/store/bin/my init", 1), "image.conf:18: [Store] Init=\"/nix/store/bin/my init\": the kernel command line's init= cannot hold spaces"},
		{"long id", strings.Replace(goodConf, "Id=demo", "Id="+strings.Repeat("i", 250), 1), "image.conf:3: [Image] Id= and Version= make output names of 265 bytes"},
		{"key before section", "# c\nId=x\n[Image]\n", "image.conf:2: Id= before any [section]"},
		{"no equals", "[Image]\nId=x\n  Version v1\n", "image.conf:3: \"Version v1\" is not Key=value"},
		{"bad section", "[Image]\nId=x\n\n[Kernel\nLinux=/k\n", "image.conf:4: [Kernel: a section header is [Name] alone on its line"},
		{"crlf continuation", "[Kernel]\r\nCommandLine=a \\\r\n  b\r\nLinuz=/k\r\n", "image.conf:4: unknown key Linuz= in [Kernel]"},
		{"continued comment", "[Image]\n# a comment \\\nColour=red\nColour=blue\n", "image.conf:4: unknown key Colour="},
		{"garbage after section", "[Image]\nId=x\n[Kernel] x\n", "image.conf:3: [Kernel] x: a section header is [Name] alone on its line"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("image.conf", []byte(c.text), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
	// The same key in the file and on the command line: the override wins, no error.
	conf, err := ParseConfig("image.conf", []byte(goodConf), []Override{{"Image", "Id", "other"}, {"Image", "Id", "third"}})
	if err != nil || conf.ID != "third" || conf.Where("Image", "Id") != "override Image.Id" || conf.Where("Kernel", "Linux") != "image.conf:7" {
		t.Errorf("overrides: %v, %+v", err, conf)
	}

	// Inputs that are missing, unreadable or of the wrong kind name the line that set them.
	q := newQAImage(t, "arm64", map[string]string{"10-esp.conf": qaESP, "20-store.conf": qaStore})
	conf, err = LoadConfig(filepath.Join(q.dir, "image.conf"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := conf.CheckInputs(); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(q.dir, "fw"), 0o755)
	os.WriteFile(filepath.Join(q.dir, "unreadable"), []byte("x"), 0)
	os.WriteFile(filepath.Join(q.dir, "store/noexec"), []byte("x"), 0o644)
	for _, c := range []struct {
		ov   Override
		want string
	}{
		{Override{"Kernel", "Linux", filepath.Join(q.dir, "nope")}, "override Kernel.Linux: [Kernel] Linux=: open " + filepath.Join(q.dir, "nope") + ": no such file"},
		{Override{"Kernel", "Linux", q.dir}, "[Kernel] Linux=" + q.dir + ": not a regular file"},
		{Override{"Store", "Tree", filepath.Join(q.dir, "vmlinuz")}, "[Store] Tree=" + filepath.Join(q.dir, "vmlinuz") + ": not a directory"},
		{Override{"Firmware", "RPi4UEFI", filepath.Join(q.dir, "fw")}, ""},
		{Override{"Firmware", "ConfigTxt", filepath.Join(q.dir, "fw")}, "[Firmware] ConfigTxt=" + filepath.Join(q.dir, "fw") + ": not a regular file"},
		{Override{"Boot", "SystemdBoot", filepath.Join(q.dir, "unreadable")}, "permission denied"},
		{Override{"Store", "Init", "/nix/store/bin/nope"}, "override Store.Init: [Store] Init=/nix/store/bin/nope: not in the store tree: lstat " + filepath.Join(q.dir, "store/bin/nope")},
		{Override{"Store", "Init", "/nix/store/bin"}, "[Store] Init=/nix/store/bin: " + filepath.Join(q.dir, "store/bin") + " is not a file"},
		{Override{"Store", "Init", "/nix/store/bin/init"}, ""},
		{Override{"Store", "Init", "/nix/store/noexec"}, "[Store] Init=/nix/store/noexec: " + filepath.Join(q.dir, "store/noexec") + " is not executable"},
		{Override{"Store", "Init", "/sbin/init"}, ""},
		{Override{"Store", "MountPoint", "/nix/store/"}, ""},
		{Override{"Store", "MountPoint", "/"}, "override Store.MountPoint: [Store] MountPoint=/ must be an absolute directory below /"},
	} {
		conf, err := LoadConfig(filepath.Join(q.dir, "image.conf"), []Override{c.ov})
		if err == nil {
			err = conf.CheckInputs()
		}
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			if c.want == "permission denied" && os.Geteuid() == 0 {
				continue // root reads mode-0 files
			}
			t.Errorf("%v: err = %v, want %q", c.ov, err, c.want)
		}
	}
	os.WriteFile(filepath.Join(q.dir, "image.conf"), []byte(strings.Replace(readFile(t, filepath.Join(q.dir, "image.conf")), "Linux=vmlinuz", "Linux=vmlinux", 1)), 0o644)
	conf, err = LoadConfig(filepath.Join(q.dir, "image.conf"), nil)
	if err == nil {
		err = conf.CheckInputs()
	}
	if err == nil || !strings.Contains(err.Error(), "image.conf:6: [Kernel] Linux=: open "+filepath.Join(q.dir, "vmlinux")) {
		t.Errorf("missing kernel: %v", err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestInspectHostile: Inspect on damaged and odd images reports what it finds, names the
// problems, and never panics — also on thousands of images with bytes flipped in the GPT,
// the FAT boot sector and directories, the squashfs superblock and the UKI's headers.
func TestInspectHostile(t *testing.T) {
	q := newQAImage(t, "arm64", map[string]string{"10-esp.conf": qaESP, "20-store.conf": qaStore,
		"30-empty.conf": "[Partition]\nType=linux-generic\nLabel=_empty\nSizeMinBytes=2M\nSizeMaxBytes=2M\nSplitName=-\n"})
	out, err := q.build(t, filepath.Join(q.dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(out.Image)
	if err != nil {
		t.Fatal(err)
	}
	esp, store := out.Partitions[0], out.Partitions[1]
	inspect := func(img []byte) (*Report, error) {
		t.Helper()
		var rep *Report
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("Inspect panicked: %v", p)
				}
			}()
			rep, err = Inspect(bytes.NewReader(img), int64(len(img)))
		}()
		return rep, err
	}
	patch := func(off int64, b []byte) []byte {
		img := bytes.Clone(good)
		copy(img[off:], b)
		return img
	}
	espAsSquashfs := bytes.Clone(good)
	copy(espAsSquashfs[esp.Offset:esp.Offset+esp.Size], good[store.Offset:store.Offset+store.Size])
	noESP := bytes.Clone(good)
	for _, c := range []struct {
		name string
		img  []byte
		want []string // in the report's problems, or the error if it fails
		err  bool
	}{
		{"good", good, nil, false},
		{"empty", nil, []string{"no GPT partition table: device of 0 bytes is too small"}, true},
		{"zeros", make([]byte, 8<<20), []string{"no GPT partition table at LBA 1 or at the last LBA"}, true},
		{"truncated in the store", good[:store.Offset+200], []string{"partition 2 (nix-store_v1) ends at byte", "beyond the end of the image", "partition 3 (_empty) ends",
			"backup GPT", "the squashfs says it is"}, false},
		{"truncated after the GPT", good[:40000], []string{"partition 1 (boot) ends", "an EFI system partition without a FAT file system (missing)"}, false},
		{"ESP zeroed", patch(esp.Offset, make([]byte, 1<<20)), []string{"partition 1 (boot): an EFI system partition without a FAT file system (empty)"}, false},
		{"ESP is squashfs", espAsSquashfs, []string{"partition 1 (boot): an EFI system partition without a FAT file system (squashfs)"}, false},
		{"store not squashfs", patch(store.Offset, bytes.Repeat([]byte{0xa5}, 4096)), []string{"/EFI/Linux/qa_v1.efi: piboot.store=nix-store_v1 is partition 2, which holds no squashfs (unknown)"}, false},
		{"no ESP type", noESP, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "no ESP type" {
				// The ESP's type GUID changed to linux-generic in both tables, CRCs fixed
				// by sgdisk: a disk with no ESP is no error, and its FAT is still shown.
				p := filepath.Join(t.TempDir(), "img")
				os.WriteFile(p, good, 0o644)
				run(t, "sgdisk", "-t", "1:8300", p)
				c.img, _ = os.ReadFile(p)
			}
			rep, err := inspect(c.img)
			if c.err != (err != nil) {
				t.Fatalf("err = %v, report %+v", err, rep)
			}
			got := fmt.Sprint(err)
			if rep != nil {
				got = strings.Join(rep.Problems, "\n")
				var b bytes.Buffer
				rep.Format(&b) // must not panic either
			}
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in\n%s", w, got)
				}
			}
			if c.want == nil && got != "" {
				t.Errorf("problems in a good image:\n%s", got)
			}
		})
	}

	// Flipped bytes in every structure Inspect parses.
	f, err := os.Open(out.Image)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ukiOff := int64(-1)
	if i := bytes.Index(good[esp.Offset:esp.Offset+esp.Size], []byte("MZ")); i >= 0 {
		ukiOff = esp.Offset + int64(i)
	}
	regions := [][2]int64{{0, 34 * 512}, {int64(len(good)) - 33*512, int64(len(good))}, {esp.Offset, esp.Offset + 64<<10}, {store.Offset, store.Offset + 4096}}
	if ukiOff > 0 {
		regions = append(regions, [2]int64{ukiOff, ukiOff + 4096})
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	img := bytes.Clone(good)
	for i := range 2000 {
		r := regions[i%len(regions)]
		for range 1 + rnd.IntN(8) {
			off := r[0] + rnd.Int64N(r[1]-r[0])
			img[off] = []byte{0, 0xff, byte(rnd.IntN(256)), img[off] ^ 0x80}[rnd.IntN(4)]
		}
		if rep, err := inspect(img); err == nil {
			rep.Format(io.Discard)
		}
		copy(img[r[0]:r[1]], good[r[0]:r[1]])
	}
}

// TestReproducibleAcrossEnvironments: the same inputs give the same bytes in every output
// whatever the working directory, umask, time zone, GOMAXPROCS, the absolute path of the
// inputs, the order their directory entries were created in and their own time stamps.
func TestReproducibleAcrossEnvironments(t *testing.T) {
	defs := map[string]string{"10-esp.conf": qaESP, "20-store.conf": qaStore,
		"30-empty.conf": "[Partition]\nType=linux-generic\nLabel=_empty\nSizeMinBytes=2M\nSizeMaxBytes=2M\nSplitName=-\n"}
	a := newQAImage(t, "arm64", defs)
	// A store with what real stores have: nested directories, an empty one, symlinks
	// (relative, absolute, dangling), a hard link, non-ASCII and 255-byte names, modes.
	names := []string{"bin/init", "lib/libc.so.6", "lib/modules/6.1/kernel/a.ko", "share/doc/é日本.txt", "share/" + strings.Repeat("n", 255)}
	for i, n := range names {
		p := filepath.Join(a.store, n)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, bytes.Repeat([]byte(n), 100*(i+1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(a.store, "bin/init"), os.ModeSetuid|0o755)
	os.MkdirAll(filepath.Join(a.store, "var/empty"), 0o755)
	os.Chmod(filepath.Join(a.store, "var/empty"), os.ModeSticky|0o777)
	os.Symlink("../lib/libc.so.6", filepath.Join(a.store, "bin/libc"))
	os.Symlink("/nix/store/bin/init", filepath.Join(a.store, "init"))
	os.Symlink("nowhere", filepath.Join(a.store, "dangling"))
	os.Link(filepath.Join(a.store, "lib/libc.so.6"), filepath.Join(a.store, "lib/libc.so"))
	// Special files go in as they are, as mksquashfs stores them.
	if err := syscall.Mkfifo(filepath.Join(a.store, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0
	if root {
		if err := syscall.Mknod(filepath.Join(a.store, "null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
			t.Fatal(err)
		}
	}

	outA := filepath.Join(a.dir, "out")
	if _, err := a.build(t, outA); err != nil {
		t.Fatal(err)
	}

	// The same inputs elsewhere, created in reverse order, with other time stamps.
	b := t.TempDir()
	var paths []string
	filepath.WalkDir(a.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != a.dir && !strings.HasPrefix(p, outA) {
			paths = append(paths, p)
		}
		return err
	})
	inodes := map[uint64]string{}
	later := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	for i := len(paths) - 1; i >= 0; i-- {
		src := paths[i]
		dst := filepath.Join(b, strings.TrimPrefix(src, a.dir))
		st, err := os.Lstat(src)
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(dst), 0o755)
		switch {
		case st.IsDir():
			os.MkdirAll(dst, 0o755)
			os.Chmod(dst, st.Mode().Perm()|st.Mode()&os.ModeSticky)
		case st.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(src)
			os.Symlink(l, dst)
		case st.Mode()&(os.ModeNamedPipe|os.ModeDevice) != 0:
			sys := st.Sys().(*syscall.Stat_t)
			if err := syscall.Mknod(dst, sys.Mode, int(sys.Rdev)); err != nil {
				t.Fatal(err)
			}
		default:
			ino := st.Sys().(*syscall.Stat_t).Ino
			if first, ok := inodes[ino]; ok {
				os.Link(first, dst)
				continue
			}
			inodes[ino] = dst
			data, _ := os.ReadFile(src)
			if err := os.WriteFile(dst, data, 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chmod(dst, st.Mode().Perm()|st.Mode()&(os.ModeSetuid))
		}
		if st.Mode()&os.ModeSymlink == 0 {
			os.Chtimes(dst, later, later)
		}
	}
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	t.Chdir(t.TempDir())
	loc := time.Local
	time.Local = time.FixedZone("UTC+14", 14*3600)
	defer func() { time.Local = loc }()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	q := &qaImage{dir: b, arch: "arm64", store: filepath.Join(b, "store")}
	if _, err := q.build(t, "out"); err != nil {
		t.Fatal(err)
	}
	ha, hb := hashTree(t, outA), hashTree(t, "out")
	if len(ha) < 8 || len(ha) != len(hb) {
		t.Fatalf("outputs differ: %d vs %d files", len(ha), len(hb))
	}
	for n, h := range ha {
		if hb[n] != h {
			t.Errorf("%s differs", n)
		}
	}
	if ls := run(t, "unsquashfs", "-lls", extract(t, filepath.Join(outA, "qa_v1.raw"), mustStore(t, outA))); !strings.Contains(ls, "-rwsr-xr-x") || !strings.Contains(ls, "drwxrwxrwt") || !strings.Contains(ls, "dangling -> nowhere") ||
		!strings.Contains(ls, "prw-------") || root && !regexp.MustCompile(`(?m)^crw.* 1,  3 .*squashfs-root/null$`).MatchString(ls) {
		t.Errorf("store listing:\n%s", ls)
	}
}

// mustStore returns the placed store partition of the image in out (the second).
func mustStore(t *testing.T, out string) Placed {
	t.Helper()
	parts := sfdiskJSON(t, filepath.Join(out, "qa_v1.raw"))
	if len(parts) < 2 {
		t.Fatalf("%d partitions", len(parts))
	}
	p := parts[1]
	return Placed{Part: Part{Label: p.Name}, Offset: int64(p.Start) * 512, Size: int64(p.Size) * 512}
}

// TestDefinitionFiles: which files of a definitions directory count, as systemd-repart
// reads them.
func TestDefinitionFiles(t *testing.T) {
	c := &Config{ID: "qa", Version: "v1", Architecture: "arm64"}
	dir := writeDefs(t, map[string]string{
		"10-a.conf":       "[Partition]\nType=esp\n",
		".20-hidden.conf": "[Partition]\nType=swap\n",
		"30-b.conf~":      "[Partition]\nType=swap\n",
		"README":          "not a definition",
	})
	os.Symlink("/dev/null", filepath.Join(dir, "40-masked.conf"))
	os.Symlink("nowhere.conf", filepath.Join(dir, "50-dangling.conf"))
	os.WriteFile(filepath.Join(dir, "target"), []byte("[Partition]\nType=home\n"), 0o644)
	os.Symlink("target", filepath.Join(dir, "60-link.conf"))
	defs, err := LoadDefinitions(dir, c)
	if err != nil || len(defs) != 2 || defs[0].Label != "esp" || defs[1].Label != "home" {
		t.Fatalf("%v: %+v", err, defs)
	}
	os.Mkdir(filepath.Join(dir, "10-a.conf.d"), 0o755)
	if _, err := LoadDefinitions(dir, c); err == nil || !strings.Contains(err.Error(), "10-a.conf.d: drop-in directories are not supported by the image builder") {
		t.Errorf("drop-ins: %v", err)
	}
	os.Remove(filepath.Join(dir, "10-a.conf.d"))
	os.Mkdir(filepath.Join(dir, "70-dir.conf"), 0o755)
	if _, err := LoadDefinitions(dir, c); err == nil || !strings.Contains(err.Error(), "70-dir.conf: a directory, not a partition definition") {
		t.Errorf("directory: %v", err)
	}
	if _, err := LoadDefinitions(t.TempDir(), c); err == nil || !strings.Contains(err.Error(), "no partition definitions (*.conf)") {
		t.Errorf("empty directory: %v", err)
	}
}

func TestSourceDateEpoch(t *testing.T) {
	for _, c := range []struct {
		v    string
		want int64
		err  string
	}{
		{"", 0, ""}, {"0", 0, ""}, {"1700000000", 1700000000, ""}, {"4294967295", 4294967295, ""},
		{"1700000000000", 0, "is after 2106-02-07"}, {"4294967296", 0, "is after 2106-02-07"},
		{"-1", 0, "not a non-negative number"}, {"1.5", 0, "not a non-negative number"}, {" 1", 0, "not a non-negative number"},
	} {
		t.Setenv("SOURCE_DATE_EPOCH", c.v)
		n, err := SourceDateEpoch()
		if n != c.want || (c.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("SOURCE_DATE_EPOCH=%q: %d, %v", c.v, n, err)
		}
	}
}

// TestConfigLineNumbers: whatever the layout (comments, blank lines, indentation, CRLF,
// continuation lines), an error names the line it is about.
func TestConfigLineNumbers(t *testing.T) {
	// Units of lines, each complete; all valid in [Kernel].
	pool := []string{"", "# comment", "; comment", "# comment ending in \\\n  CommandLine=swallowed", "  \t", "[Kernel]", "CommandLine=a \\\n  continued",
		"CommandLine=b", "  CommandLine = c ", "CommandLine=x \\\n\tmore \\\nend", "\tCommandLine=", "CommandLine=a=b"}
	rnd := rand.New(rand.NewPCG(3, 4))
	for i := range 500 {
		units := []string{"[Kernel]"}
		for range rnd.IntN(12) {
			units = append(units, pool[rnd.IntN(len(pool))])
		}
		at := 1 + rnd.IntN(len(units))
		units = append(units[:at], append([]string{"[Image]\nColour=red"}, units[at:]...)...)
		lines := strings.Split(strings.Join(units, "\n"), "\n")
		at = slices.Index(lines, "Colour=red") - 1
		eol := "\n"
		if i%3 == 0 {
			eol = "\r\n"
		}
		text := strings.Join(lines, eol) + eol
		_, err := ParseConfig("image.conf", []byte(text), nil)
		want := fmt.Sprintf("image.conf:%d: unknown key Colour= in [Image]", at+2)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want %q in\n%q", err, want, text)
		}
	}
}

// TestConfigContinuation: a value continued with a backslash is one value, joined by a
// space, as systemd reads it.
func TestConfigContinuation(t *testing.T) {
	for _, eol := range []string{"\n", "\r\n"} {
		text := strings.ReplaceAll(goodConf+"[Kernel]\nCommandLine=a \\\n  b \\\n\tc\n[Boot]\nLoaderConf=timeout 3 \\\n  \nLoaderConf=default \\\n @saved\n", "\n", eol)
		c, err := ParseConfig("image.conf", []byte(text), nil)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := c.Cmdline("nix-store_v1")
		if err != nil || cl != "console=ttyAMA0 quiet a b c piboot.store=nix-store_v1 init=/nix/store/bin/init" || strings.Join(strings.Fields(strings.Join(c.LoaderConf, " | ")), " ") != "timeout 3 | default @saved" {
			t.Errorf("%q: cmdline %q, loader.conf %q, %v", eol, cl, c.LoaderConf, err)
		}
	}
}

// TestInspectKernelArch: a UKI whose kernel is for another architecture than its stub (an
// arm64 kernel given to an amd64 image) builds, but Inspect says it cannot start.
func TestInspectKernelArch(t *testing.T) {
	for _, c := range []struct {
		machine uint16
		problem string
	}{{0x8664, ""}, {0xaa64, "/EFI/Linux/qa_v1.efi: the kernel (.linux) is for arm64, the stub for x86-64: it cannot start"}} {
		q := newQAImage(t, "amd64", map[string]string{"10-esp.conf": qaESP, "20-store.conf": qaStore})
		k := make([]byte, 4096)
		copy(k, "MZ")
		binary.LittleEndian.PutUint32(k[0x3c:], 0x80)
		copy(k[0x80:], "PE\x00\x00")
		binary.LittleEndian.PutUint16(k[0x84:], c.machine)
		k = append(k, "Linux version 6.1.0-qa (qa@host) #1\n"...)
		if err := os.WriteFile(filepath.Join(q.dir, "vmlinuz"), k, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := q.build(t, filepath.Join(q.dir, "out"))
		if c.problem != "" {
			// The builder refuses it (uki.Build)...
			if err == nil || !strings.Contains(err.Error(), "the kernel is for arm64, the stub for x86-64") {
				t.Fatalf("machine %#x: build err = %v", c.machine, err)
			}
			// ...so make the image with a matching kernel and patch the machine of the
			// .linux inside it, as a UKI built elsewhere could carry it.
			binary.LittleEndian.PutUint16(k[0x84:], 0x8664)
			os.WriteFile(filepath.Join(q.dir, "vmlinuz"), k, 0o644)
			if out, err = q.build(t, filepath.Join(q.dir, "out")); err != nil {
				t.Fatal(err)
			}
			img, err := os.ReadFile(out.Image)
			if err != nil {
				t.Fatal(err)
			}
			at := bytes.Index(img, k[:0x90])
			if at < 0 || bytes.Index(img[at+1:], k[:0x90]) >= 0 {
				t.Fatalf("the kernel is not once in the image (at %d)", at)
			}
			binary.LittleEndian.PutUint16(img[at+0x84:], c.machine)
			if err := os.WriteFile(out.Image, img, 0o644); err != nil {
				t.Fatal(err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(out.Image)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Inspect(f, out.Size)
		f.Close()
		if err != nil || strings.Join(rep.Problems, "\n") != c.problem {
			t.Errorf("machine %#x: %v, problems %q, want %q", c.machine, err, rep.Problems, c.problem)
		}
	}
}
