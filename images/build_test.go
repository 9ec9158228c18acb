package images

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/testutil"
	"github.com/piboot/piboot/uki"
)

// testConfig returns the demo image.conf with the given initrd and store tree.
func testConfig(t *testing.T, initrd, tree string, extra ...Override) *Config {
	t.Helper()
	testutil.Kernel(t, "arm64")
	testutil.SystemdBoot(t, "arm64")
	conf, err := filepath.Abs("demo/image.conf")
	if err != nil {
		t.Fatal(err)
	}
	ov := append([]Override{{"Kernel", "Initrd", initrd}, {"Store", "Tree", tree}}, extra...)
	c, err := LoadConfig(conf, ov)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fakeStore is a small store tree with a hardlink, a symlink and nested directories.
func fakeStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	os.MkdirAll(filepath.Join(dir, "share/doc"), 0o755)
	os.WriteFile(filepath.Join(dir, "bin/piboot-demo"), bytes.Repeat([]byte("demo binary "), 5000), 0o755)
	os.WriteFile(filepath.Join(dir, "share/doc/README"), []byte("hello\n"), 0o644)
	os.Symlink("../bin/piboot-demo", filepath.Join(dir, "share/link"))
	return dir
}

func hashTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, p)
		m[rel] = hex.EncodeToString(h[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// extract copies a partition out of an image into its own file, for the fsck tools.
func extract(t *testing.T, img string, p Placed) string {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dst := filepath.Join(t.TempDir(), p.Label+".img")
	o, _ := os.Create(dst)
	defer o.Close()
	if _, err := io.Copy(o, io.NewSectionReader(f, p.Offset, p.Size)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestBuildDemo(t *testing.T) {
	testutil.Need(t, "sgdisk", "fsck.vfat", "mtype", "mcopy", "mdir", "unsquashfs", "zstd", "aarch64-linux-gnu-objdump")
	tmp := t.TempDir()
	initrd := filepath.Join(tmp, "initrd.cpio.zst")
	os.WriteFile(initrd, []byte("not really an initrd, but the bytes must arrive unchanged"), 0o644)
	store := fakeStore(t)
	// Pi firmware from a zip, as the seed's rpi4-uefi input.
	fw := filepath.Join(tmp, "RPi4_UEFI_Firmware_v1.50.zip")
	zf, _ := os.Create(fw)
	zw := zip.NewWriter(zf)
	for _, n := range []string{"RPI_EFI.fd", "config.txt", "start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb", "overlays/miniuart-bt.dtbo"} {
		w, _ := zw.Create(n)
		w.Write([]byte("firmware " + n))
	}
	zw.Close()
	zf.Close()

	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	c := testConfig(t, initrd, store, Override{"Firmware", "RPi4UEFI", fw})
	out1, out2 := filepath.Join(tmp, "out1"), filepath.Join(tmp, "out2")
	res, err := Build(c, Options{OutDir: out1, ZstdLevel: zstd.SpeedFastest})
	if err != nil {
		t.Fatal(err)
	}
	// Every contract output exists.
	for _, n := range []string{"piboot_v0.raw", "piboot_v0.raw.zst", "piboot_v0.nix-store.raw", "piboot_v0.nix-store.raw.zst",
		"piboot_v0.efi", "vmlinuz", "initrd.cpio.zst", "cmdline.txt", "update/piboot_v0.nix-store.raw.zst", "update/piboot_v0.efi", "update/SHA256SUMS"} {
		if _, err := os.Stat(filepath.Join(out1, n)); err != nil {
			t.Errorf("missing output: %v", err)
		}
	}
	// GPT: sgdisk finds no problem; labels, types and the read-only flag as defined.
	img := res.Image
	if s := run(t, "sgdisk", "-v", img); !strings.Contains(s, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", s)
	}
	f, _ := os.Open(img)
	st, _ := f.Stat()
	tbl, err := gpt.Read(f, st.Size(), 512)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != res.Size || len(tbl.Partitions) != 3 {
		t.Fatalf("size %d (planned %d), %d partitions", st.Size(), res.Size, len(tbl.Partitions))
	}
	for i, want := range []string{"boot", "nix-store_v0", "_empty"} {
		p := tbl.Partitions[i]
		if p.Name != want || p.Size(512) != res.Partitions[i].Size {
			t.Errorf("partition %d: %q %d bytes", i+1, p.Name, p.Size(512))
		}
	}
	if tbl.Partitions[0].Type != gpt.TypeESP || tbl.Partitions[1].Attributes != gpt.AttrReadOnly {
		t.Errorf("types/flags: %+v", tbl.Partitions)
	}
	// Exactly sized: the backup GPT right after the last partition.
	last := res.Partitions[2]
	if res.Size-(last.Offset+last.Size) > 33*512+4095 {
		t.Errorf("image has %d bytes after the last partition", res.Size-(last.Offset+last.Size))
	}
	// The _empty slot and the unused part of the ESP stay holes: the file is sparse.
	if du := diskUsage(t, img); du > 120<<20 {
		t.Errorf("image uses %d MiB on disk; _empty and free space should be holes", du>>20)
	}

	// ESP: fsck clean, content as assembled.
	esp := extract(t, img, res.Partitions[0])
	if s := run(t, "fsck.vfat", "-n", esp); !strings.Contains(s, "files") || strings.Contains(s, "differ") {
		t.Errorf("fsck.vfat -n:\n%s", s)
	}
	if s := run(t, "mtype", "-i", esp, "::/loader/loader.conf"); s != "timeout 3\n" {
		t.Errorf("loader.conf = %q", s)
	}
	for _, n := range []string{"RPI_EFI.fd", "config.txt", "overlays/miniuart-bt.dtbo"} {
		if s := run(t, "mtype", "-i", esp, "::/"+n); s != "firmware "+n {
			t.Errorf("%s = %q", n, s)
		}
	}
	ukiCopy := filepath.Join(tmp, "uki-from-esp.efi")
	run(t, "mcopy", "-i", esp, "::/EFI/Linux/piboot_v0.efi", ukiCopy)
	bootCopy := filepath.Join(tmp, "boot.efi")
	run(t, "mcopy", "-i", esp, "::/EFI/BOOT/BOOTAA64.EFI", bootCopy)
	sameFile(t, ukiCopy, res.UKI)
	sameFile(t, bootCopy, c.SystemdBoot)

	// UKI: sections readable by objdump, command line with the store label and init.
	if s := run(t, "aarch64-linux-gnu-objdump", "-h", res.UKI); !strings.Contains(s, ".cmdline") || !strings.Contains(s, ".linux") || !strings.Contains(s, ".initrd") {
		t.Errorf("objdump -h:\n%s", s)
	}
	uf, _ := os.Open(res.UKI)
	ust, _ := uf.Stat()
	info, err := uki.Read(uf, ust.Size(), true)
	uf.Close()
	if err != nil {
		t.Fatal(err)
	}
	if want := "console=tty1 console=ttyAMA0,115200 rootwait piboot.store=nix-store_v0 init=/nix/store/bin/piboot-demo"; info.Cmdline() != want {
		t.Errorf("UKI cmdline %q", info.Cmdline())
	}
	if ird, _ := info.Section(".initrd"); !strings.HasPrefix(string(ird), "not really an initrd") {
		t.Errorf(".initrd = %q", ird)
	}
	if info.OSRelease()["IMAGE_VERSION"] != "v0" {
		t.Errorf(".osrel = %v", info.OSRelease())
	}
	if b, _ := os.ReadFile(res.CmdlineFile); string(b) != info.Cmdline()+"\n" {
		t.Errorf("cmdline.txt = %q", b)
	}

	// Store: unsquashfs reads the split file; it equals the partition in the image.
	split := filepath.Join(out1, "piboot_v0.nix-store.raw")
	ls := run(t, "unsquashfs", "-lln", split)
	for _, w := range []string{"squashfs-root/bin/piboot-demo", "squashfs-root/share/link -> ../bin/piboot-demo", "squashfs-root/etc/os-release", "0/0"} {
		if !strings.Contains(ls, w) {
			t.Errorf("unsquashfs -lln lacks %q:\n%s", w, ls)
		}
	}
	if s := run(t, "unsquashfs", "-cat", split, "etc/os-release"); !strings.Contains(s, "IMAGE_VERSION=v0\n") {
		t.Errorf("os-release:\n%s", s)
	}
	sameFile(t, split, extract(t, img, res.Partitions[1]))
	// zstd copies decompress to the raw files.
	for _, n := range []string{"piboot_v0.raw", "piboot_v0.nix-store.raw"} {
		d := filepath.Join(tmp, n+".dec")
		run(t, "zstd", "-q", "-d", "-o", d, filepath.Join(out1, n+".zst"))
		sameFile(t, d, filepath.Join(out1, n))
		os.Remove(d)
	}
	// SHA256SUMS: two-space format over the update directory.
	sums, _ := os.ReadFile(res.Sums)
	if !strings.Contains(string(sums), "  piboot_v0.efi\n") || !strings.Contains(string(sums), "  piboot_v0.nix-store.raw.zst\n") {
		t.Errorf("SHA256SUMS:\n%s", sums)
	}
	cmd := exec.Command("sha256sum", "-c", "SHA256SUMS")
	cmd.Dir = res.UpdateDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c: %v\n%s", err, out)
	}

	// inspect finds partitions, filesystems, versions and the UKI's command line.
	f, _ = os.Open(img)
	rep, err := Inspect(f, res.Size)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	rep.Format(&text)
	for _, w := range []string{"vfat (FAT32", "nix-store_v0       v0        squashfs (4.0, zstd", "[read-only]", "_empty", "empty",
		"loader: /EFI/BOOT/BOOTAA64.EFI", "loader.conf: timeout 3", "uki: /EFI/Linux/piboot_v0.efi", "checksum ok", "piboot version v0, kernel 6.1.0-",
		"cmdline: " + info.Cmdline()} {
		if !strings.Contains(text.String(), w) {
			t.Errorf("inspect output lacks %q:\n%s", w, text.String())
		}
	}

	// A second build of the same inputs: the same bytes for every output.
	if _, err := Build(c, Options{OutDir: out2, ZstdLevel: zstd.SpeedFastest}); err != nil {
		t.Fatal(err)
	}
	h1, h2 := hashTree(t, out1), hashTree(t, out2)
	if len(h1) != len(h2) {
		t.Errorf("outputs differ: %v vs %v", h1, h2)
	}
	for n, h := range h1 {
		if h2[n] != h {
			t.Errorf("%s differs between two builds", n)
		}
	}
}

func diskUsage(t *testing.T, p string) int64 {
	t.Helper()
	s := run(t, "du", "--block-size=1", p)
	var n int64
	for _, c := range strings.Fields(s)[0] {
		n = n*10 + int64(c-'0')
	}
	return n
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	x, err1 := os.ReadFile(a)
	y, err2 := os.ReadFile(b)
	if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
		t.Errorf("%s and %s differ (%v %v, %d vs %d bytes)", a, b, err1, err2, len(x), len(y))
	}
}

func TestBuildErrors(t *testing.T) {
	tmp := t.TempDir()
	initrd := filepath.Join(tmp, "initrd")
	os.WriteFile(initrd, []byte("x"), 0o644)
	store := t.TempDir()
	// Random bytes do not compress: 3 MiB cannot fit a 1 MiB store partition.
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i*7919 + i>>8*31 + i>>16*131)
	}
	h := sha256.New()
	for i := 0; i < len(big); i += 32 {
		h.Write(big[i : i+32])
		copy(big[i:], h.Sum(nil))
	}
	os.WriteFile(filepath.Join(store, "blob"), big, 0o644)
	defs := writeDefs(t, map[string]string{
		"10-esp.conf":   "[Partition]\nType=esp\nFormat=vfat\nCopyFiles=/boot:/\n",
		"20-store.conf": "[Partition]\nType=linux-generic\nFormat=squashfs\nLabel=nix-store_%A\nSizeMaxBytes=1M\nCopyFiles=/nix/store:/\n",
	})
	c := testConfig(t, initrd, store, Override{"Partitions", "Definitions", defs})
	_, err := Build(c, Options{OutDir: filepath.Join(tmp, "out")})
	if err == nil || !strings.Contains(err.Error(), "20-store.conf:5: the store does not fit in SizeMaxBytes=1048576") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "out", "piboot_v0.raw")); err == nil {
		t.Error("a failed build left an image behind")
	}

	noStore := writeDefs(t, map[string]string{"10-esp.conf": "[Partition]\nType=esp\nFormat=vfat\nCopyFiles=/boot:/\n"})
	c = testConfig(t, initrd, store, Override{"Partitions", "Definitions", noStore})
	if _, err := Build(c, Options{OutDir: filepath.Join(tmp, "out")}); err == nil || !strings.Contains(err.Error(), "no squashfs partition has CopyFiles=/nix/store:/") {
		t.Errorf("err = %v", err)
	}
	c = testConfig(t, filepath.Join(tmp, "nonexistent"), store)
	if _, err := Build(c, Options{OutDir: filepath.Join(tmp, "out")}); err == nil || !strings.Contains(err.Error(), "[Kernel] Initrd") {
		t.Errorf("err = %v", err)
	}
}
