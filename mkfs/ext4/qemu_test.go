package ext4

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/piboot/piboot/initrd"
	"github.com/piboot/piboot/internal/qemu"
	"github.com/piboot/piboot/internal/testutil"
)

// TestOnlineResizeInVM grows a mounted filesystem from 1 GiB to 16 GiB with the kernel's own
// online resize (EXT4_IOC_RESIZE_FS, as resize2fs on a mounted filesystem), in Debian's arm64
// kernel under QEMU: the host here lacks CAP_SYS_RESOURCE for it. The growth needs a second
// descriptor block, which must come from the resize inode's reserved blocks.
func TestOnlineResizeInVM(t *testing.T) {
	testutil.Need(t, "go", "e2fsck", "dumpe2fs", qemu.Binary("arm64"))
	vmlinuz, modules := testutil.Kernel(t, "arm64")
	dir := t.TempDir()
	bin := filepath.Join(dir, "resizeinit")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./testdata/resizeinit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build resizeinit: %v\n%s", err, out)
	}
	img := filepath.Join(dir, "initrd.cpio.zst")
	if _, err := initrd.BuildFile(img, initrd.Config{Init: bin, ModuleTree: modules,
		Modules: []string{"virtio_pci", "virtio_blk", "ext4"}, RepartD: map[string][]byte{}}); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "keep"), []byte("kept"), 0o644)
	disk := filepath.Join(dir, "disk.img")
	f, err := os.Create(disk)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(16 << 30)
	if err := Format(f, 1<<30, Options{Root: os.DirFS(src)}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	before := dumpe2fs(t, disk)

	vm := qemu.Start(t, qemu.Config{Kernel: vmlinuz, Initrd: img, Append: "panic=-1 quiet",
		Disks: []qemu.Disk{{Path: disk, Bus: qemu.Virtio}}})
	m := vm.WaitFor(`^resizeinit: (ok|error: .*)$`, time.Duration(240*qemu.TimeoutScale())*time.Second)
	if m[1] != "ok" {
		t.Fatalf("in the VM: %s\n%s", m[1], vm.Log())
	}
	vm.Wait(time.Duration(60*qemu.TimeoutScale()) * time.Second)
	if !strings.Contains(vm.Log(), "resizeinit: resized") {
		t.Fatalf("no resize line:\n%s", vm.Log())
	}
	fsck(t, disk)
	after := dumpe2fs(t, disk)
	if after["Block count"] != "4194304" {
		t.Errorf("after online resize: %s blocks, want 4194304", after["Block count"])
	}
	if after["Reserved GDT blocks"] == before["Reserved GDT blocks"] || strings.Contains(after["Filesystem features"], "meta_bg") {
		t.Errorf("the kernel did not grow through the reserved descriptor blocks: reserved %s -> %s, features %s",
			before["Reserved GDT blocks"], after["Reserved GDT blocks"], after["Filesystem features"])
	}
}
