package images

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/qemu"
	"github.com/piboot/piboot/internal/testutil"
)

// The boot tests share one set of arm64 binaries, one initramfs and two images (v0, v1),
// built once per test binary.
var (
	bootOnce sync.Once
	bootErr  error
	bootDir  string
	bootOut  = map[string]*Outputs{}
)

// goBuild cross-compiles a command the way `make image` does: static, reproducible.
func goBuild(out, pkg string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-buildid= -s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// bootImages builds piboot-init's initramfs and the demo image in versions v0 and v1, with
// systemd-boot's menu timeout 0 and piboot.demo.poweroff so that each boot ends by itself.
func bootImages(t *testing.T) (dir string, out map[string]*Outputs) {
	t.Helper()
	_, modules := testutil.Kernel(t, "arm64")
	testutil.SystemdBoot(t, "arm64")
	bootOnce.Do(func() {
		bootDir, bootErr = os.MkdirTemp("", "piboot-images-boot-")
		if bootErr != nil {
			return
		}
		store := filepath.Join(bootDir, "store")
		for _, b := range []struct{ out, pkg string }{
			{filepath.Join(bootDir, "piboot-init"), "../cmd/piboot-init"},
			{filepath.Join(store, "bin", "piboot-demo"), "../cmd/piboot-demo"},
			{filepath.Join(store, "bin", "piboot"), "../cmd/piboot"},
		} {
			if bootErr = goBuild(b.out, b.pkg); bootErr != nil {
				return
			}
		}
		conf, _ := filepath.Abs("demo/image.conf")
		for _, v := range []string{"v0", "v1"} {
			var c *Config
			c, bootErr = LoadConfig(conf, []Override{
				// The initramfs is built by piboot build itself, from [Initrd].
				{"Image", "Version", v}, {"Initrd", "Init", filepath.Join(bootDir, "piboot-init")}, {"Initrd", "Modules", modules},
				{"Store", "Tree", store},
				{"Kernel", "CommandLine", "piboot.demo.poweroff"}, {"Boot", "LoaderConf", ""}, {"Boot", "LoaderConf", "timeout 0"},
			})
			if bootErr != nil {
				return
			}
			if bootOut[v], bootErr = Build(c, Options{OutDir: filepath.Join(bootDir, "out"), ZstdLevel: zstd.SpeedFastest}); bootErr != nil {
				return
			}
		}
	})
	if bootErr != nil {
		t.Fatal(bootErr)
	}
	return bootDir, bootOut
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bootDir != "" {
		os.RemoveAll(bootDir)
	}
	os.Exit(code)
}

// disk copies the v0 image to a scratch file of size bytes (a larger "card", so the
// first boot has room to create root).
func disk(t *testing.T, img string, size int64) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "disk.raw")
	run(t, "cp", "--sparse=always", img, d)
	if err := os.Truncate(d, size); err != nil {
		t.Fatal(err)
	}
	return d
}

// demoLine matches the demo's contract line, or the init's first error (to fail at once).
var demoLine = regexp.MustCompile(`piboot-demo: version=(\S+) root=(\S+) rootsize=(\d+) boots=(\d+)|piboot-init: error: .*`)

// boot starts the VM from d under UEFI and returns the demo line's fields after poweroff.
func boot(t *testing.T, d string, bus qemu.Bus, vars string) (version, root string, rootsize int64, boots int) {
	t.Helper()
	vm := qemu.Start(t, qemu.Config{UEFI: true, Vars: vars, Disks: []qemu.Disk{{Path: d, Bus: bus}}})
	defer vm.Kill()
	m, err := vm.Expect(demoLine, 240*time.Second)
	if err == nil && m[1] == "" {
		err = fmt.Errorf("%s", m[0])
	}
	if err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, tail(vm.Log(), 4000))
	}
	if err := vm.WaitExit(60 * time.Second); err != nil {
		t.Fatalf("after the demo line: %v\nconsole:\n%s", err, tail(vm.Log(), 2000))
	}
	log := vm.Log()
	// systemd-boot found the disk, and the init used LoaderDevicePartUUID to find it.
	if !regexp.MustCompile(`piboot-init: disk: /dev/\S+ \(LoaderDevicePartUUID\)`).MatchString(log) {
		t.Errorf("piboot-init did not report finding the disk through LoaderDevicePartUUID:\n%s", tail(log, 3000))
	}
	rootsize, _ = strconv.ParseInt(m[3], 10, 64)
	boots, _ = strconv.Atoi(m[4])
	t.Logf("%s boot: version=%s root=%s rootsize=%d boots=%d after %s", bus, m[1], m[2], rootsize, boots, vm.Since().Round(time.Millisecond))
	return m[1], m[2], rootsize, boots
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestBootUSB: AAVMF → systemd-boot from our ESP → our UKI → piboot-init finds the USB
// disk through LoaderDevicePartUUID, creates root → demo v0, boots=1; then boots=2. Then
// v1 goes in as sysupdate would put it (store into the _empty slot, UKI onto the ESP):
// systemd-boot boots the newest (v1, with its own store); with loader.conf's default set
// to v0, v0 boots with its store.
func TestBootUSB(t *testing.T) {
	testutil.Need(t, "mcopy")
	_, out := bootImages(t)
	v0, v1 := out["v0"], out["v1"]
	d := disk(t, v0.Image, 2<<30)
	vars := filepath.Join(t.TempDir(), "vars.fd")
	code, tmpl := qemu.Firmware("arm64")
	testutil.Need(t, code, tmpl)
	run(t, "cp", tmpl, vars)

	ver, root, size, n := boot(t, d, qemu.USB, vars)
	if ver != "v0" || n != 1 || !strings.HasPrefix(root, "/dev/sd") || size < 1<<30 {
		t.Fatalf("first boot: version=%s root=%s rootsize=%d boots=%d; want v0 on /dev/sdX, root grown past 1 GiB, boots=1", ver, root, size, n)
	}
	if ver, _, _, n = boot(t, d, qemu.USB, vars); ver != "v0" || n != 2 {
		t.Fatalf("second boot: version=%s boots=%d; want v0, 2", ver, n)
	}

	// Install v1: its store into slot B (the _empty partition, relabelled), its UKI onto the ESP.
	f, err := os.OpenFile(d, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	tbl, err := gpt.Read(f, st.Size(), 512)
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	slot := tbl.ByName("_empty")
	if slot == nil {
		f.Close()
		t.Fatalf("no _empty partition after first boot: %+v", tbl.Partitions)
	}
	store, err := os.ReadFile(v1.Split[0])
	if err == nil {
		_, err = f.WriteAt(store, int64(slot.FirstLBA)*512)
	}
	if err == nil {
		slot.Name = v1.StoreLabel
		slot.Attributes |= gpt.AttrReadOnly
		err = gpt.Write(f, st.Size(), tbl)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	esp := fmt.Sprintf("%s@@%d", d, v0.Partitions[0].Offset)
	run(t, "mcopy", "-i", esp, v1.UKI, "::/EFI/Linux/piboot_v1.efi")
	if ver, _, _, n = boot(t, d, qemu.USB, vars); ver != "v1" || n != 3 {
		t.Fatalf("with v0 and v1 on the ESP: version=%s boots=%d; want the newest, v1, and boots=3", ver, n)
	}

	// Choose v0 through loader.conf's default.
	conf := filepath.Join(t.TempDir(), "loader.conf")
	os.WriteFile(conf, []byte("timeout 0\ndefault piboot_v0.efi\n"), 0o644)
	run(t, "mcopy", "-o", "-i", esp, conf, "::/loader/loader.conf")
	if ver, _, _, n = boot(t, d, qemu.USB, vars); ver != "v0" || n != 4 {
		t.Fatalf("with default piboot_v0.efi: version=%s boots=%d; want v0, 4", ver, n)
	}
}

// TestBootVirtio: the same image from a virtio disk, which is /dev/vda, not mmcblk: the
// init still finds it through LoaderDevicePartUUID.
func TestBootVirtio(t *testing.T) {
	_, out := bootImages(t)
	d := disk(t, out["v0"].Image, 1<<30)
	ver, root, size, n := boot(t, d, qemu.Virtio, "")
	if ver != "v0" || n != 1 || !strings.HasPrefix(root, "/dev/vda") || size < 512<<20 {
		t.Fatalf("virtio boot: version=%s root=%s rootsize=%d boots=%d", ver, root, size, n)
	}
}
