package repart

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/piboot/piboot/gpt"
)

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
	}{
		{"0", 0}, {"4096", 4096}, {"1K", 1024}, {"1M", 1 << 20}, {"200M", 200 << 20}, {"1G", 1 << 30},
		{"2T", 2 << 40}, {"1.5G", 3 << 29}, {"1G 512M", 3 << 29}, {"10B", 10}, {"0.5K", 512}, {"10.M", 10 << 20},
		{" 7 K", 7 << 10},
	} {
		if got, err := ParseSize(c.in); err != nil || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "-1", "1X", "M", "1M 1G", "99999999999E", "1Mi"} {
		if v, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", bad, v)
		}
	}
}

func TestParseDefinition(t *testing.T) {
	d, err := Parse("50-root.conf", []byte(`# the root partition
[Partition]
Type=root
Label=root
Weight=1000
PaddingWeight=10
SizeMinBytes=1000
SizeMaxBytes=10001
PaddingMinBytes=8K
PaddingMaxBytes=1G
Priority=-2
Format=ext4
ReadOnly=no
NoAuto=yes
FactoryReset=yes
SplitName=%t.%U
CopyFiles=/etc:/etc
CopyFiles=/usr
MakeDirectories=/var /home
Flags=0x1000000000000000
UUID=0123456789abcdef0123456789abcdef
Encrypt=off
Verity=off
[X-Vendor]
Whatever=1
`), "arm64")
	if err != nil {
		t.Fatal(err)
	}
	if d.Type != mustType(t, "root-arm64") || d.Label != "root" || d.Weight != 1000 || d.PaddingWeight != 10 ||
		d.SizeMin != 0 || d.SizeMax != 12288 || d.PaddingMin != 8192 || d.PaddingMax != 1<<30 || d.Priority != -2 ||
		d.Format != "ext4" || d.ReadOnly != No || d.NoAuto != Yes || d.GrowFileSystem != Yes || !d.FactoryReset ||
		d.SplitName != "%t.%U" || len(d.CopyFiles) != 2 || d.CopyFiles[1] != (CopyFile{"/usr", "/usr"}) ||
		len(d.MakeDirectories) != 2 || d.Flags != 1<<60 || d.UUID.String() != "01234567-89ab-cdef-0123-456789abcdef" {
		t.Errorf("%+v", d)
	}
	d, err = Parse("x.conf", []byte("[Partition]\nType=usr-verity\n"), "x86-64")
	if err != nil || d.ReadOnly != Yes || d.GrowFileSystem != Default || d.Weight != 1000 || d.SizeMin != Unset {
		t.Errorf("defaults: %+v %v", d, err)
	}
}

// TestParseLongLines: lines are not limited in length (a 2 MiB comment, then keys), CRLF
// line ends and a byte-order mark are taken as systemd takes them, and line numbers count
// every line.
func TestParseLongLines(t *testing.T) {
	src := "\xef\xbb\xbf[Partition]\r\n#" + strings.Repeat("x", 2<<20) + "\r\nType=root\r\nLabel=after-a-long-line\r\n\r\nWeight=7"
	d, err := Parse("long.conf", []byte(src), "arm64")
	if err != nil || d.Label != "after-a-long-line" || d.Weight != 7 || d.Type != mustType(t, "root-arm64") {
		t.Fatalf("%+v %v", d, err)
	}
	_, err = Parse("bad.conf", []byte("[Partition]\n#"+strings.Repeat("x", 2<<20)+"\n\nType=root\nNoSuchKey=1\n"), "arm64")
	if err == nil || !strings.Contains(err.Error(), "bad.conf:5") {
		t.Errorf("error %v, want one naming bad.conf:5", err)
	}
}

func mustType(t *testing.T, s string) [16]byte {
	g, err := gpt.ParseType(s, "")
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"[Partition]\nType=root\nSizeMinBytes=lots\n", "f.conf:3: SizeMinBytes=lots"},
		{"[Partition]\nType=root\nColour=blue\n", "f.conf:3: Colour=blue: unknown key"},
		{"[Partition]\nType=root\nType=esp\n", "f.conf:3: duplicate Type= (first set on line 2)"},
		{"[Partition]\nLabel=x\n", "f.conf:1: Type= not defined"},
		{"[Partition]\nType=rooot\n", "f.conf:2: Type=rooot: unknown partition type"},
		{"[Partition]\nType=root\nWeight=1000001\n", "f.conf:3: Weight=1000001"},
		{"[Partition]\nType=root\nWeight=\n", "f.conf:3: Weight=: not a number (want an integer in the range 0…1000000)"},
		{"[Partition]\nType=root\nPriority=99999999999\n", "f.conf:3: Priority=99999999999: out of range"},
		{"[Partition]\nType=root\nFlags=0xZ\n", "f.conf:3: Flags=0xZ: not a number (want a 64-bit number"},
		{"[Partition]\nType=root\nReadOnly=maybe\n", "f.conf:3: ReadOnly=maybe: not a boolean"},
		{"Type=root\n", "f.conf:1: assignment outside of any section"},
		{"[Partitions]\nType=root\n", "f.conf:1: unknown section [Partitions]"},
		{"[Partition]\nType=root\nSizeMinBytes=2G\nSizeMaxBytes=1G\n", "f.conf:3: SizeMinBytes= larger than SizeMaxBytes="},
		{"[Partition]\nType=root\nLabel=0123456789012345678901234567890123456\n", "f.conf:3: Label="},
		{"[Partition]\nType=root\nEncrypt=tpm2\n", "f.conf:3: Encrypt=tpm2: encryption is not supported"},
		{"[Partition]\nType=root\nCopyBlocks=auto\nFormat=ext4\n", "cannot be combined"},
		{"[Partition]\nType=root\nCopyFiles=etc\n", "f.conf:3: CopyFiles=etc: path \"etc\" is not absolute"},
		{"[Partition]\nType=root\nthis is not a key\n", "f.conf:3: missing '='"},
		{"[Partition]\nType=root\nLabel=%m\n", "f.conf:3: Label=%m: specifier %m is not supported"},
	} {
		_, err := Parse("f.conf", []byte(c.src), "arm64")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", c.src, err, c.want)
		}
	}
}

func TestParseDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "20-b.conf"), "[Partition]\nType=home\nLabel=same\n")
	writeFile(t, filepath.Join(dir, "10-a.conf"), "[Partition]\nType=esp\n# continued \\\nLabel=a \\\n  b\n")
	writeFile(t, filepath.Join(dir, "README"), "not a definition")
	os.Mkdir(filepath.Join(dir, "20-b.conf.d"), 0o755)
	writeFile(t, filepath.Join(dir, "20-b.conf.d", "size.conf"), "[Partition]\nSizeMinBytes=1G\n")
	os.Symlink("/dev/null", filepath.Join(dir, "30-masked.conf"))
	writeFile(t, filepath.Join(dir, ".15-disabled.conf"), "[Partition]\nType=swap\n") // hidden: skipped, as systemd does
	os.Symlink("root@host.1234:1700000000", filepath.Join(dir, ".#10-a.conf"))        // an editor's lock
	defs, err := ParseDir(dir, "arm64")
	if err != nil {
		t.Fatal(err)
	}
	if len(defs) != 2 || defs[0].Name() != "10-a.conf" || defs[0].Label != "a  b" || defs[1].SizeMin != 1<<30 {
		t.Fatalf("%+v", defs)
	}
	writeFile(t, filepath.Join(dir, "40-c.conf"), "[Partition]\nType=srv\n\nLabel=same\n")
	if _, err := ParseDir(dir, "arm64"); err == nil || !strings.Contains(err.Error(), "40-c.conf:4: duplicate definition: Label=same") {
		t.Fatalf("duplicate label: %v", err)
	}
	if _, err := ParseDir(filepath.Join(dir, "nope"), "arm64"); err == nil {
		t.Fatal("missing directory accepted")
	}
}
