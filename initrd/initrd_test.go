package initrd

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/piboot/piboot/internal/testutil"
)

func TestArchiveOrderAndErrors(t *testing.T) {
	a := NewArchive()
	must(t, a.Bytes("etc/repart.d/50-root.conf", []byte("x"), 0o644))
	must(t, a.Symlink("bin/sh", "gosh"))
	must(t, a.Bytes("etc-x", nil, 0o644))
	got := strings.Join(a.Paths(), " ")
	want := "bin bin/sh etc etc/repart.d etc/repart.d/50-root.conf etc-x"
	if got != want {
		t.Fatalf("order\n got %s\nwant %s", got, want)
	}
	if err := a.Bytes("bin/sh", nil, 0o644); err == nil {
		t.Fatal("duplicate accepted")
	}
	if err := a.Bytes("etc-x/y", nil, 0o644); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("file under a file: %v", err)
	}
	if err := a.File("nope", "/nonexistent/file", 0o644); err == nil || !strings.Contains(err.Error(), "/nonexistent/file") {
		t.Fatalf("missing source: %v", err)
	}
}

// TestCPIOExtract has GNU cpio unpack the archive and compares what comes out.
func TestCPIOExtract(t *testing.T) {
	testutil.Need(t, "cpio")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.WriteFile(src, bytes.Repeat([]byte("0123456789"), 1001), 0o644)
	a := NewArchive()
	must(t, a.File("bbin/bb", src, 0o755))
	must(t, a.Symlink("bin/ls", "../bbin/bb"))
	must(t, a.Bytes("etc/a", []byte("abc"), 0o600))
	must(t, a.Dir("empty", 0o700))
	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	cmd := exec.Command("cpio", "-idm", "--quiet", "--no-absolute-filenames")
	cmd.Dir, cmd.Stdin = out, bytes.NewReader(buf.Bytes())
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v\n%s", err, b)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "bbin/bb")); len(b) != 10010 {
		t.Fatalf("bbin/bb: %d bytes", len(b))
	}
	if l, _ := os.Readlink(filepath.Join(out, "bin/ls")); l != "../bbin/bb" {
		t.Fatalf("bin/ls -> %q", l)
	}
	st, err := os.Stat(filepath.Join(out, "etc/a"))
	if err != nil || st.Mode().Perm() != 0o600 || st.ModTime().Unix() != 0 {
		t.Fatalf("etc/a: %v %v", st, err)
	}
	list := exec.Command("cpio", "-itv", "--quiet")
	list.Stdin = bytes.NewReader(buf.Bytes())
	b, err := list.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(l); len(f) < 4 || f[2] != "root" || f[3] != "root" {
			t.Errorf("not owned by root: %s", l)
		}
	}
}

func TestModulesDebian(t *testing.T) {
	_, modules := testutil.Kernel(t, "arm64")
	tree, err := OpenModuleTree(modules)
	if err != nil {
		t.Fatal(err)
	}
	files, err := tree.Resolve(DefaultModules["arm64"])
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, f := range files {
		pos[ModName(f)] = i
	}
	// Each pair: the first must be loaded before the second.
	for _, p := range [][2]string{
		{"jbd2", "ext4"}, {"mbcache", "ext4"}, {"crc16", "ext4"}, {"crc32c_generic", "ext4"},
		{"libcrc32c", "xfs"}, {"crc32c_generic", "libcrc32c"}, {"sdhci", "sdhci_pci"}, {"sdhci", "sdhci_iproc"},
		{"fat", "vfat"}, {"usbcore", "usb_storage"}, {"xhci_hcd", "xhci_pci"}, {"scsi_mod", "sd_mod"},
		{"virtio_pci", "virtio_blk"}, {"usb_storage", "uas"},
	} {
		a, oka := pos[p[0]]
		b, okb := pos[p[1]]
		if !oka || !okb || a > b {
			t.Errorf("%s (at %d, %v) must come before %s (at %d, %v) in %v", p[0], a, oka, p[1], b, okb, files)
		}
	}
	mods, err := tree.ResolveDeps([]string{"ext4"})
	if err != nil {
		t.Fatal(err)
	}
	last := mods[len(mods)-1]
	var deps []string
	for _, d := range last.Deps {
		deps = append(deps, ModName(d))
	}
	if ModName(last.File) != "ext4" || strings.Join(deps, " ") != "crc32c_generic jbd2 mbcache crc16" {
		t.Errorf("ext4 = %s after %v; want after crc32c_generic (softdep) jbd2 mbcache crc16", last.File, deps)
	}
	if _, ok := pos["mmc_block"]; ok {
		t.Error("built-in mmc_block listed as a module")
	}
	if _, err := tree.Resolve([]string{"no_such_module"}); err == nil || !strings.Contains(err.Error(), "no_such_module") {
		t.Fatalf("unknown module: %v", err)
	}
}

func TestBuildReproducible(t *testing.T) {
	testutil.Need(t, "zstd", "cpio")
	dir := t.TempDir()
	init := filepath.Join(dir, "init")
	os.WriteFile(init, []byte("#!/bin/false\n"), 0o755)
	cfg := Config{Init: init, RepartD: nil}
	var b1, b2 bytes.Buffer
	st, err := Build(&b1, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Build(&b2, cfg); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1.Bytes(), b2.Bytes()) || st.CompressedBytes != int64(b1.Len()) {
		t.Fatal("two builds differ")
	}
	cmd := exec.Command("sh", "-c", "zstd -dc | cpio -it --quiet")
	cmd.Stdin = &b1
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"init", "dev/console", "etc/repart.d/50-root.conf"} {
		if !strings.Contains("\n"+string(out), "\n"+want+"\n") {
			t.Errorf("%s missing from\n%s", want, out)
		}
	}
	if _, err := Build(&b1, Config{Init: init, RepartD: map[string][]byte{"a/b.conf": nil}}); err == nil {
		t.Error("bad repart.d name accepted")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestModulesAlias builds an initramfs with Debian's arm64 modules and compares the
// modules.alias it ships with what modinfo(8) reads from each original module.
func TestModulesAlias(t *testing.T) {
	testutil.Need(t, "zstd", "cpio", "modinfo")
	_, modules := testutil.Kernel(t, "arm64")
	dir := t.TempDir()
	init := filepath.Join(dir, "init")
	os.WriteFile(init, []byte("#!/bin/false\n"), 0o755)
	var b bytes.Buffer
	st, err := Build(&b, Config{Init: init, ModuleTree: modules, Modules: DefaultModules["arm64"]})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	cmd := exec.Command("sh", "-c", "zstd -dc | cpio -idm --quiet --no-absolute-filenames")
	cmd.Dir, cmd.Stdin = out, &b
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unpack: %v\n%s", err, o)
	}
	got, err := os.ReadFile(filepath.Join(out, ModulesDir, st.KernelVersion, "modules.alias"))
	if err != nil {
		t.Fatal(err)
	}
	tree, err := OpenModuleTree(modules)
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, m := range st.Modules {
		src := filepath.Join(tree.Dir, tree.files[ModName(m)])
		o, err := exec.Command("modinfo", "-F", "alias", src).Output()
		if err != nil {
			t.Fatalf("modinfo %s: %v", src, err)
		}
		for _, a := range strings.Fields(string(o)) {
			want.WriteString("alias " + a + " " + ModName(m) + "\n")
		}
	}
	if string(got) != want.String() {
		t.Fatalf("modules.alias differs from modinfo:\n got %d bytes\nwant %d bytes", len(got), want.Len())
	}
	for _, l := range []string{"alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n", "alias of:N*T*Cbrcm,bcm2711-emmc2 sdhci_iproc\n",
		"alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage\n", "alias fs-ext4 ext4\n"} {
		if !strings.Contains(string(got), l) {
			t.Errorf("modules.alias lacks %q", l)
		}
	}
}
