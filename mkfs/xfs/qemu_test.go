package xfs_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/initrd"
	"github.com/piboot/piboot/internal/e2e"
	"github.com/piboot/piboot/internal/qemu"
	"github.com/piboot/piboot/internal/testutil"
)

// The seed's first-boot definition with Format=xfs instead of ext4.
const xfsRootConf = "[Partition]\nType=root\nFormat=xfs\nLabel=root\nWeight=1000\n"

// TestFirstBootXFS boots Debian's arm64 kernel with piboot-init on a freshly flashed 32 GiB
// SD card whose first-boot repart.d asks for an XFS root: piboot-init must create the root
// partition over the rest of the card, format it with this package (no xfsprogs in the
// initramfs), mount it and start the demo; a second boot changes nothing on the card but the
// demo's boot counter.
func TestFirstBootXFS(t *testing.T) {
	testutil.NeedRoot(t) // losetup and mount to check the partition
	testutil.Need(t, "go", "mksquashfs", "sgdisk", "xfs_repair", "losetup", qemu.Binary("arm64"))
	vmlinuz, modules := testutil.Kernel(t, "arm64")
	dir := t.TempDir()
	build := func(pkg string) string {
		out := filepath.Join(dir, filepath.Base(pkg))
		cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
		return out
	}
	init := build("github.com/piboot/piboot/cmd/piboot-init")
	demo := build("github.com/piboot/piboot/cmd/piboot-demo")
	rd := filepath.Join(dir, "initrd.cpio.zst")
	st, err := initrd.BuildFile(rd, initrd.Config{Init: init, ModuleTree: modules,
		Modules: initrd.DefaultModules["arm64"], RepartD: map[string][]byte{"50-root.conf": []byte(xfsRootConf)}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(st.Modules, " "), "/xfs.ko") {
		t.Fatalf("the initramfs lacks the xfs module: %v", st.Modules)
	}

	const size = 32 << 30
	card := filepath.Join(dir, "card.img")
	e2e.MakeCard(t, card, e2e.CardSpec{Size: size}, demo)
	wait := time.Duration(240*qemu.TimeoutScale()) * time.Second
	boot := func() *qemu.VM {
		return qemu.Start(t, qemu.Config{Kernel: vmlinuz, Initrd: rd, Disks: []qemu.Disk{{Path: card, Bus: qemu.SD}},
			Append: "quiet panic=-1 piboot.store=nix-store_v0 init=/nix/store/bin/piboot-demo piboot.demo.poweroff"})
	}
	demoLine := func(n int) string {
		return fmt.Sprintf(`^piboot-demo: version=v0 root=/dev/mmcblk0p4 rootsize=(\d+) boots=%d$`, n)
	}

	vm := boot()
	vm.WaitFor(`^piboot-init: repart: created /dev/mmcblk0p4 \("root", \d+ bytes, xfs\)`, wait)
	vm.WaitFor(`^piboot-init: mount: /dev/mmcblk0p4 \(root, xfs\) on /$`, wait)
	m := vm.WaitFor(demoLine(1), wait)
	vm.Wait(wait)
	for _, l := range strings.Split(vm.Log(), "\n") {
		if strings.Contains(l, "piboot-init: repart") || strings.Contains(l, "switch_root") || strings.Contains(l, "piboot-demo:") {
			t.Logf("first boot: %s", strings.TrimSpace(l))
		}
	}
	rootsize, _ := strconv.ParseInt(m[1], 10, 64)

	f, err := os.Open(card)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := gpt.Read(f, size, 512)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	root := tab.Partition(4)
	if root == nil || root.Name != "root" || root.Size(512) != rootsize {
		t.Fatalf("partition 4 after first boot: %+v (the demo saw %d bytes)", root, rootsize)
	}
	if rest := int64(size - 193<<20); rootsize > rest || rootsize < rest-2<<20 {
		t.Errorf("root is %d bytes, want the rest of the card (about %d)", rootsize, rest)
	}
	checkXFS(t, card, int64(root.FirstLBA)*512, rootsize, 1)
	if out, err := exec.Command("sgdisk", "-v", card).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}
	gptHash := hash(t, card, 0, 34*512) + hash(t, card, size-33*512, 33*512)

	vm = boot()
	vm.WaitFor(`^piboot-init: repart: no changes`, wait)
	vm.WaitFor(`^piboot-init: mount: /dev/mmcblk0p4 \(root, xfs\) on /$`, wait)
	vm.WaitFor(demoLine(2), wait)
	vm.Wait(wait)
	if hash(t, card, 0, 34*512)+hash(t, card, size-33*512, 33*512) != gptHash {
		t.Error("the second boot changed the partition table")
	}
	checkXFS(t, card, int64(root.FirstLBA)*512, rootsize, 2)
}

// checkXFS checks the filesystem at [off, off+n) of img: the demo powers the VM off with the
// root still mounted, so its log holds the last transactions; the host kernel replays them
// (mount, unmount), then xfs_repair -n must find nothing, and the filesystem must span its
// partition.
func checkXFS(t *testing.T, img string, off, n int64, boots int) {
	t.Helper()
	out, err := exec.Command("losetup", "-f", "--show", "--offset", fmt.Sprint(off), "--sizelimit", fmt.Sprint(n), img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", dev).Run()
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "xfs", dev, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mounting the root partition on the host: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "var/lib/piboot-demo/boots")); err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(boots) {
		t.Errorf("boot counter on the root: %q (%v), want %d", b, err, boots)
	}
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v\n%s", err, out)
	}
	if out, err := exec.Command("xfs_repair", "-n", dev).CombinedOutput(); err != nil {
		t.Fatalf("xfs_repair -n on the root partition: %v\n%s", err, out)
	}
	out, err = exec.Command("xfs_db", "-r", "-c", "sb 0", "-c", "print dblocks fname", dev).Output()
	if err != nil {
		t.Fatal(err)
	}
	var dblocks int64
	fmt.Sscanf(string(out), "dblocks = %d", &dblocks)
	if dblocks*4096 > n || dblocks*4096 < n-(16<<20) || !strings.Contains(string(out), `fname = "root`) {
		t.Errorf("the root filesystem does not fill its %d-byte partition or lacks its label:\n%s", n, out)
	}
}

func hash(t *testing.T, path string, off, n int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, off, n)); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
