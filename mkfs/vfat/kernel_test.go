package vfat

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/piboot/piboot/initrd"
	"github.com/piboot/piboot/internal/qemu"
	"github.com/piboot/piboot/internal/testutil"
)

// TestKernelReadsAndWrites boots Debian's arm64 kernel with two of our filesystems as virtio
// disks (512- and 4096-byte sectors): Linux's vfat driver must see exactly the tree we wrote,
// then create and delete files through its own allocator, after which fsck.vfat must still
// be clean and mtools must read what the kernel wrote.
func TestKernelReadsAndWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	t.Parallel() // mostly waits for QEMU's one CPU: overlap it with the other tests
	testutil.Need(t, "go", "fsck.vfat", "mcopy")
	vmlinuz, modules := testutil.Kernel(t, "arm64")
	dir := t.TempDir()
	start := time.Now()

	init := filepath.Join(dir, "kcheck")
	cmd := exec.Command("go", "build", "-trimpath", "-o", init, "./testdata/kcheck")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the VM's init: %v\n%s", err, out)
	}
	t.Logf("init built after %s", time.Since(start).Round(time.Millisecond))
	rd := filepath.Join(dir, "initrd.zst")
	if _, err := initrd.BuildFile(rd, initrd.Config{Init: init, ModuleTree: modules,
		Modules: []string{"virtio_pci", "virtio_blk", "vfat", "nls_cp437", "nls_utf8"}}); err != nil {
		t.Fatal(err)
	}

	tree := fstest.MapFS{
		"EFI/BOOT/BOOTAA64.EFI":           {Data: pattern(150000, 11)},
		"EFI/Linux/piboot_v0.efi":         {Data: pattern(1<<20+3, 12)},
		"loader/loader.conf":              {Data: []byte("timeout 3\n")},
		"loader/entries":                  {Mode: fs.ModeDir | 0o755},
		"README.TXT":                      {Data: []byte("upper")},
		"readme.md":                       {Data: []byte("lower, case bits only")},
		"Mixed Case Long Name.Conf":       {Data: []byte("mixed")},
		"Ünïcødé ñame.txt":                {Data: []byte("unicode")},
		"日本語のファイル名.efi":                   {Data: []byte("cjk")},
		"emoji 😀 beyond the BMP":          {Data: []byte("surrogate pair")},
		"empty":                           {},
		"delete-me.txt":                   {Data: pattern(70000, 13)},
		strings.Repeat("long", 60) + ".x": {Data: []byte("240+ characters")},
	}
	p := "deep"
	for i := 0; i < 20; i++ {
		p += fmt.Sprintf("/level %d", i)
	}
	tree[p+"/bottom"] = &fstest.MapFile{Data: []byte("bottom")}
	for i := 0; i < 150; i++ {
		tree[fmt.Sprintf("overlays/overlay number %03d.dtbo", i)] = &fstest.MapFile{Data: pattern(i*37, int64(i))}
	}
	want, files, dirs, err := manifest(tree)
	if err != nil {
		t.Fatal(err)
	}

	img512 := filepath.Join(dir, "fat-512.img")
	img4k := filepath.Join(dir, "fat-4096.img")
	for _, d := range []struct {
		path string
		size int64
		ss   int
	}{{img512, 64 << 20, 512}, {img4k, 300 << 20, 4096}} {
		f, err := os.Create(d.path)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(d.size); err != nil {
			t.Fatal(err)
		}
		if err := Format(f, d.size, Options{Root: tree, SectorSize: d.ss, Label: "ESP"}); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}

	t.Logf("initrd and images after %s", time.Since(start).Round(time.Millisecond))
	vm := qemu.Start(t, qemu.Config{
		Kernel: vmlinuz, Initrd: rd, Append: "quiet vfatcheck.disks=vda,vdb",
		Disks: []qemu.Disk{{Path: img512, Bus: qemu.Virtio}},
		Extra: []string{"-drive", "if=none,id=k4,format=raw,file=" + img4k,
			"-device", "virtio-blk-pci,drive=k4,logical_block_size=4096,physical_block_size=4096"},
	})
	wantLine := fmt.Sprintf("files=%d dirs=%d manifest=%x", files, dirs, want)
	for _, disk := range []string{"vda", "vdb"} {
		m := vm.WaitFor(`vfatcheck: (`+disk+` files=.*|error: .*)$`, 90*time.Second)
		if got := strings.TrimPrefix(m[1], disk+" "); got != wantLine {
			t.Fatalf("the kernel sees on %s: %s\nwe wrote: %s", disk, m[1], wantLine)
		}
		vm.WaitFor(`vfatcheck: `+disk+` wrote$`, 60*time.Second)
		t.Logf("%s checked %s after boot", disk, vm.Since().Round(time.Millisecond))
	}
	vm.WaitFor(`vfatcheck: done$`, 30*time.Second)
	vm.Wait(30 * time.Second)
	t.Logf("VM done after %s", time.Since(start).Round(time.Millisecond))

	for _, img := range []string{img512, img4k} {
		fsckClean(t, img)
		out := filepath.Join(t.TempDir(), "k.bin")
		c := exec.Command("mcopy", "-n", "-i", img, "::/written by linux/Kernel File ü.bin", out)
		c.Env = mtoolsEnv()
		if b, err := c.CombinedOutput(); err != nil {
			t.Fatalf("mcopy of the kernel's file: %v\n%s", err, b)
		}
		got, _ := os.ReadFile(out)
		if len(got) != 300000 || got[1000] != byte(1000%251) || got[299999] != byte(299999%251) {
			t.Fatalf("%s: the kernel's file reads back as %d bytes", img, len(got))
		}
	}
}

// manifest is testdata/kcheck's Manifest: a digest of every directory and file of a tree.
func manifest(fsys fs.FS) (sum [32]byte, files, dirs int, err error) {
	h := sha256.New()
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs++
			fmt.Fprintf(h, "D %s\n", p)
			return nil
		}
		f, err := fsys.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		fh := sha256.New()
		n, err := io.Copy(fh, f)
		if err != nil {
			return err
		}
		files++
		fmt.Fprintf(h, "F %s %d %x\n", p, n, fh.Sum(nil))
		return nil
	})
	copy(sum[:], h.Sum(nil))
	return sum, files, dirs, err
}
