package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/uuid"
)

const goodConf = `# comment
[Image]
Id=demo
Version=v3

[Kernel]
Linux=k/vmlinuz-%a
Initrd=/abs/initrd
Stub=%C/stub-%e
CommandLine=console=ttyAMA0
CommandLine=quiet

[Boot]
SystemdBoot=sd-boot.efi

[Store]
Tree=store
Init=/nix/store/bin/init
OSRelease=VARIANT_ID=test
`

func TestParseConfig(t *testing.T) {
	t.Setenv("PIBOOT_CACHE", "/cache")
	c, err := ParseConfig("/etc/img/image.conf", []byte(goodConf), []Override{{"Image", "Version", "v4"}, {"Kernel", "CommandLine", "x=1"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"ID": c.ID, "v4": c.Version, "/etc/img/k/vmlinuz-arm64": c.Linux, "/abs/initrd": c.Initrd,
		"/cache/stub-aa64": c.Stub, "/etc/img/sd-boot.efi": c.SystemdBoot, "/etc/img/store": c.Tree,
		"/etc/img/repart.d": c.Definitions, "/nix/store": c.MountPoint, "timeout 5": strings.Join(c.LoaderConf, ";"),
	}
	want["demo"] = want["ID"]
	delete(want, "ID")
	for w, got := range want {
		if w != got {
			t.Errorf("got %q, want %q", got, w)
		}
	}
	cl, err := c.Cmdline("nix-store_v4")
	if err != nil || cl != "console=ttyAMA0 quiet x=1 piboot.store=nix-store_v4 init=/nix/store/bin/init" {
		t.Errorf("Cmdline = %q, %v", cl, err)
	}
	osr := string(c.OSReleaseText())
	for _, l := range []string{"IMAGE_ID=demo\n", "IMAGE_VERSION=v4\n", "VARIANT_ID=test\n", `PRETTY_NAME="demo v4"`} {
		if !strings.Contains(osr, l) {
			t.Errorf("os-release lacks %q:\n%s", l, osr)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, c := range []struct{ name, text, want string }{
		{"unknown key", "[Image]\nId=x\n\n[Kernel]\nLinuz=/k\n", "image.conf:5: unknown key Linuz= in [Kernel]"},
		{"unknown section", "[Image]\nId=x\n[Kernal]\nLinux=/k\n", "image.conf:4: unknown section [Kernal]"},
		{"bad version", "# c\n[Image]\nVersion=v 1\n", "image.conf:3: Version=v 1"},
		{"underscore", "[Image]\nVersion=v_1\n", "must not contain '_'"},
		{"bad arch", "[Image]\nArchitecture=sparc\n", "image.conf:2: Architecture=sparc: unknown"},
		{"bad specifier", "[Kernel]\nLinux=%x\n", "image.conf:2: Linux=%x: unknown specifier %x"},
		{"missing", "[Image]\nId=x\n", "[Kernel] Linux= is required"},
		{"no initrd", strings.Replace(goodConf, "Initrd=/abs/initrd\n", "", 1), "[Kernel] Initrd (or [Initrd] Init)= is required"},
		{"shell", goodConf + "[Initrd]\nShell=maybe\n", "image.conf:21: Shell=maybe: not a boolean"},
		{"relative init", strings.Replace(goodConf, "Init=/nix", "Init=nix", 1), "Init=nix/store/bin/init must be an absolute path"},
		{"cmdline store", goodConf + "[Kernel]\nCommandLine=piboot.store=x\n", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			conf, err := ParseConfig("image.conf", []byte(c.text), nil)
			if c.want == "" {
				if err == nil {
					_, err = conf.Cmdline("nix-store_v0")
				}
				if err == nil || !strings.Contains(err.Error(), "must not set piboot.store=x") {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
	if _, err := ParseConfig("image.conf", []byte(goodConf), []Override{{"Image", "Colour", "x"}}); err == nil || !strings.Contains(err.Error(), "override Image.Colour: unknown setting") {
		t.Errorf("bad override: %v", err)
	}
}

func writeDefs(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, s := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadDefinitions(t *testing.T) {
	c := &Config{ID: "demo", Version: "v2", Architecture: "arm64"}
	dir, err := filepath.Abs("demo/repart.d")
	if err != nil {
		t.Fatal(err)
	}
	defs, err := LoadDefinitions(dir, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(defs) != 3 {
		t.Fatalf("%d definitions", len(defs))
	}
	esp, store, empty := defs[0], defs[1], defs[2]
	if esp.Type != gpt.TypeESP || esp.Format != "vfat" || esp.MinSize != 200<<20 || esp.SplitName != "" || esp.CopyFiles[0] != (CopyFile{"/boot", "/"}) {
		t.Errorf("esp = %+v", esp)
	}
	if store.Label != "nix-store_v2" || store.MinSize != 64<<20 || store.MaxSize != 64<<20 || store.Flags != gpt.AttrReadOnly || store.SplitName != "nix-store" {
		t.Errorf("store = %+v", store)
	}
	if empty.Label != "_empty" || empty.Format != "" || empty.Type != uuid.MustParse("0fc63daf-8483-4772-8e79-3d69d8477de4") {
		t.Errorf("empty = %+v", empty)
	}

	for _, cse := range []struct{ name, text, want string }{
		{"unknown key", "[Partition]\nType=esp\nColour=red\n", "10-a.conf:3: Colour=red: unknown key"},
		{"bad weight", "[Partition]\nType=esp\nWeight=x\n", "10-a.conf:3: Weight=x"},
		{"bad size", "[Partition]\nType=esp\n\nSizeMinBytes=12Q\n", "10-a.conf:4: SizeMinBytes=12Q: invalid size"},
		{"min>max", "[Partition]\nType=esp\nSizeMinBytes=2M\nSizeMaxBytes=1M\n", "10-a.conf:3: SizeMinBytes= larger than SizeMaxBytes="},
		{"bad type", "[Partition]\nType=floppy\n", "10-a.conf:2: Type=floppy"},
		{"no type", "[Partition]\nLabel=x\n", "10-a.conf:1: Type= not defined"},
		{"format", "[Partition]\nType=esp\nFormat=xfs\n", "10-a.conf:3: Format=xfs: the image builder writes vfat and squashfs"},
		{"long label", "[Partition]\nType=esp\nLabel=" + strings.Repeat("x", 37) + "\n", "10-a.conf:3: Label=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx: label is 37"},
		{"label spec", "[Partition]\nType=esp\nLabel=a%Z\n", "10-a.conf:3: Label=a%Z: specifier %Z is not supported"},
		{"bool", "[Partition]\nType=esp\nReadOnly=maybe\n", "10-a.conf:3: ReadOnly=maybe: not a boolean"},
		{"minimize", "[Partition]\nType=esp\nMinimize=always\n", "10-a.conf:3: Minimize=always: want off, best or guess"},
		{"copy blocks", "[Partition]\nType=esp\nCopyBlocks=/dev/sda1\n", "10-a.conf:3: CopyBlocks= is not supported by the image builder"},
		{"copy without format", "[Partition]\nType=esp\nCopyFiles=/boot:/\n", "Format=ext4: the image builder writes vfat and squashfs"},
		{"section", "[Partitions]\nType=esp\n", "10-a.conf:1: unknown section [Partitions]"},
		{"compression", "[Partition]\nType=linux-generic\nFormat=squashfs\nCompression=brotli\n", "10-a.conf:4: Compression=brotli: unknown"},
		{"compression level", "[Partition]\nType=linux-generic\nFormat=squashfs\nCompressionLevel=high\n", "10-a.conf:4: CompressionLevel=high: not a level"},
		{"compression vfat", "[Partition]\nType=esp\nFormat=vfat\nCompression=xz\n", "apply to Format=squashfs only"},
	} {
		t.Run(cse.name, func(t *testing.T) {
			_, err := LoadDefinitions(writeDefs(t, map[string]string{"10-a.conf": cse.text}), c)
			if err == nil || !strings.Contains(err.Error(), cse.want) {
				t.Fatalf("err = %v, want %q", err, cse.want)
			}
		})
	}
	xz, err := LoadDefinitions(writeDefs(t, map[string]string{"10-a.conf": "[Partition]\nType=linux-generic\nFormat=squashfs\nCompression=xz\nCompressionLevel=6\nLabel=s\n"}), c)
	if err != nil || xz[0].Compression != "xz" || xz[0].CompressionLevel != 6 || xz[0].Where("Label") != xz[0].File+":6" {
		t.Errorf("Compression=xz: %+v, %v", xz, err)
	}
	_, err = LoadDefinitions(writeDefs(t, map[string]string{"10-a.conf": "[Partition]\nType=esp\nLabel=x\n", "20-b.conf": "[Partition]\nType=esp\nLabel=x\n"}), c)
	if err == nil || !strings.Contains(err.Error(), "20-b.conf:3: Label=x is already used by") {
		t.Errorf("duplicate label: %v", err)
	}
}

func TestPlan(t *testing.T) {
	M := int64(1 << 20)
	parts := []Part{
		{Definition: "esp", MinSize: 200 * M, Need: 40 * M},
		{Definition: "store", MinSize: 64 * M, MaxSize: 64 * M, Need: 5*M + 123},
		{Definition: "empty", MinSize: 64 * M, MaxSize: 64 * M},
		{Definition: "big", MinSize: 10 * M, Need: 30*M + 1},
	}
	placed, size, err := Plan(parts)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ off, size int64 }{{1 * M, 200 * M}, {201 * M, 64 * M}, {265 * M, 64 * M}, {329 * M, 30*M + 4096}}
	for i, w := range want {
		if placed[i].Offset != w.off || placed[i].Size != w.size || placed[i].Index != i+1 {
			t.Errorf("part %d at %d size %d, want %d size %d", i, placed[i].Offset, placed[i].Size, w.off, w.size)
		}
	}
	// Exactly the partitions plus the backup GPT (33 sectors), rounded to 4 KiB.
	if size != 359*M+4096+20480 {
		t.Errorf("image size %d", size)
	}
	_, _, err = Plan([]Part{{Definition: "20-nix-store.conf", MaxSize: 64 * M, Need: 64*M + 1}})
	if err == nil || !strings.Contains(err.Error(), "20-nix-store.conf: content needs 67108865 bytes, more than SizeMaxBytes=67108864") {
		t.Errorf("too big: %v", err)
	}
	if _, _, err := Plan(nil); err == nil {
		t.Error("empty plan accepted")
	}
}

func TestSeedGUIDs(t *testing.T) {
	a, b := NewSeed("piboot_v0"), NewSeed("piboot_v1")
	if a.GUID("disk") != NewSeed("piboot_v0").GUID("disk") {
		t.Error("not deterministic")
	}
	if a.GUID("disk") == b.GUID("disk") || a.GUID("disk") == a.GUID("partition:boot") {
		t.Error("GUIDs collide")
	}
	if g := a.GUID("disk"); g.Version() != 4 || g.Variant() != uuid.RFC4122 {
		t.Errorf("GUID %s is not v4-shaped", g)
	}
}

func TestESPFS(t *testing.T) {
	m, err := espFS(map[string][]byte{"EFI/BOOT/BOOTAA64.EFI": []byte("x"), "loader/loader.conf": []byte("timeout 0\n"), "config.txt": nil})
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(m, "EFI/BOOT/BOOTAA64.EFI", "loader/loader.conf", "config.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := espFS(map[string][]byte{"a": nil, "a/b": nil}); err == nil {
		t.Error("file and directory with one name accepted")
	}
	if _, err := espFS(map[string][]byte{"../a": nil}); err == nil {
		t.Error("invalid path accepted")
	}
}
