package sysupdate_test

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/images"
	"github.com/piboot/piboot/initrd"
	"github.com/piboot/piboot/internal/qemu"
	"github.com/piboot/piboot/internal/testutil"
	"github.com/piboot/piboot/sysupdate"
)

func goBuild(t *testing.T, out, pkg string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

// demoLine is the demo's contract line, or the init's first error.
var demoLine = regexp.MustCompile(`piboot-demo: version=(\S+) root=\S+ rootsize=\d+ boots=(\d+)|piboot-init: error: .*`)

// TestQEMUUpdateAndRollback is the device-side cycle under AAVMF and systemd-boot: v0 is
// flashed and boots, fetches v1 over HTTP from the host (10.0.2.2) and loses power while
// writing it; v0 boots again, completes the update and reboots; v1 boots and blesses
// itself; v0's store and UKI stay, and with loader.conf's default v0 boots again, with its
// store. That boot installs a v2 whose store cannot boot (vacuum keeps the booted v0 and
// reuses v1's slot): systemd-boot tries v2 three times and then boots v0 by itself.
func TestQEMUUpdateAndRollback(t *testing.T) {
	if testing.Short() {
		t.Skip("QEMU boots")
	}
	testutil.Need(t, "mdir", "sgdisk")
	_, modules := testutil.Kernel(t, "arm64")
	testutil.SystemdBoot(t, "arm64")
	dir := t.TempDir()

	// The host serves out/update on 127.0.0.1, which the guest reaches as 10.0.2.2.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	os.MkdirAll(filepath.Join(out, "update"), 0o755)
	srv := &http.Server{Handler: http.FileServer(http.Dir(filepath.Join(out, "update")))}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	url := fmt.Sprintf("http://10.0.2.2:%d/", ln.Addr().(*net.TCPAddr).Port)

	store := filepath.Join(dir, "store")
	goBuild(t, filepath.Join(dir, "piboot-init"), "../cmd/piboot-init")
	goBuild(t, filepath.Join(store, "bin", "piboot-demo"), "../cmd/piboot-demo")
	ird := filepath.Join(dir, "initrd.cpio.zst")
	if _, err := initrd.BuildFile(ird, initrd.Config{
		Init: filepath.Join(dir, "piboot-init"), ModuleTree: modules, Modules: initrd.DefaultModules["arm64"],
	}); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "signing.key")
	conf, _ := filepath.Abs("../images/demo/image.conf")
	build := func(v string, extra ...images.Override) *images.Outputs {
		t.Helper()
		ov := append([]images.Override{
			{Section: "Image", Key: "Version", Value: v}, {Section: "Kernel", Key: "Initrd", Value: ird},
			{Section: "Store", Key: "Tree", Value: store},
			{Section: "Kernel", Key: "CommandLine", Value: "piboot.demo.poweroff piboot.demo.update=" + url},
			{Section: "Boot", Key: "LoaderConf", Value: ""}, {Section: "Boot", Key: "LoaderConf", Value: "timeout 0"},
			{Section: "Update", Key: "SigningKey", Value: key}, {Section: "Update", Key: "URL", Value: url},
		}, extra...)
		c, err := images.LoadConfig(conf, ov)
		if err != nil {
			t.Fatal(err)
		}
		res, err := images.Build(c, images.Options{OutDir: out})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	v0 := build("v0")
	disk := filepath.Join(dir, "disk.raw")
	if b, err := exec.Command("cp", "--sparse=always", v0.Image, disk).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, b)
	}
	os.Truncate(disk, 1<<30)
	build("v1")
	vars := filepath.Join(dir, "vars.fd")
	_, tmpl := qemu.Firmware("arm64")
	testutil.Need(t, tmpl)
	if b, err := exec.Command("cp", tmpl, vars).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, b)
	}

	boot := func(what string) (version string, log string) {
		t.Helper()
		vm := qemu.Start(t, qemu.Config{UEFI: true, Vars: vars, Net: true, Disks: []qemu.Disk{{Path: disk, Bus: qemu.Virtio}}})
		defer vm.Kill()
		m, err := vm.Expect(demoLine, 300*time.Second)
		if err == nil && m[1] == "" {
			err = fmt.Errorf("%s", m[0])
		}
		if err != nil {
			t.Fatalf("%s: %v\nconsole:\n%s", what, err, tail(vm.Log(), 5000))
		}
		if err := vm.WaitExit(300 * time.Second); err != nil {
			t.Fatalf("%s: no poweroff or reboot: %v\nconsole:\n%s", what, err, tail(vm.Log(), 5000))
		}
		t.Logf("%s: version=%s after %s", what, m[1], vm.Since().Round(time.Second))
		return m[1], vm.Log()
	}
	espFiles := func() string {
		b, err := exec.Command("mdir", "-b", "-i", fmt.Sprintf("%s@@%d", disk, v0.Partitions[0].Offset), "::/EFI/Linux").CombinedOutput()
		if err != nil {
			t.Fatalf("mdir: %v\n%s", err, b)
		}
		var names []string
		for _, l := range strings.Fields(string(b)) {
			names = append(names, filepath.Base(l))
		}
		return strings.Join(names, " ")
	}
	// setLoaderConf replaces loader.conf on the card's ESP between boots, as a user would.
	setLoaderConf := func(body string) {
		t.Helper()
		conf := filepath.Join(dir, "loader.conf")
		os.WriteFile(conf, []byte(body), 0o644)
		img := fmt.Sprintf("%s@@%d", disk, v0.Partitions[0].Offset)
		if b, err := exec.Command("mcopy", "-o", "-i", img, conf, "::/loader/loader.conf").CombinedOutput(); err != nil {
			t.Fatalf("mcopy loader.conf: %v\n%s", err, b)
		}
	}
	labels := func() string {
		f, _ := os.Open(disk)
		defer f.Close()
		st, _ := f.Stat()
		tbl, err := gpt.Read(f, st.Size(), 0)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, p := range tbl.Partitions {
			s = append(s, p.Name)
		}
		return strings.Join(s, " ")
	}

	// Power cut: QEMU is killed while v0's update writes v1's store. v0 stays what boots,
	// and nothing of v1 is taken for a version.
	vm := qemu.Start(t, qemu.Config{UEFI: true, Vars: vars, Net: true, Disks: []qemu.Disk{{Path: disk, Bus: qemu.Virtio}}})
	_, err = vm.Expect(regexp.MustCompile(`piboot-demo: update: 10-nix-store: writing`), 300*time.Second)
	vm.Kill()
	if err != nil {
		t.Fatalf("first boot: no update started: %v\n%s", err, tail(vm.Log(), 5000))
	}
	t.Logf("power cut during the store write after %s", vm.Since().Round(time.Second))
	{
		f, _ := os.Open(disk)
		st, _ := f.Stat()
		tbl, err := gpt.Read(f, st.Size(), 0)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if p := tbl.ByName("nix-store_v0"); p == nil || p.Type != gpt.TypeLinuxGeneric {
			t.Fatalf("after the power cut v0's store is not intact: %+v", tbl.Partitions)
		}
		if p := tbl.ByName("nix-store_v1"); p != nil && p.Type == gpt.TypeLinuxGeneric {
			t.Fatalf("after the power cut a half-written v1 store looks installed")
		}
		if got := espFiles(); strings.Contains(got, "piboot_v1") {
			t.Fatalf("after the power cut the ESP holds %s", got)
		}
	}

	// v0 boots again, completes the update (reusing the partial slot), reboots.
	ver, log := boot("boot after the power cut")
	if ver != "v0" || !strings.Contains(log, "piboot-demo: update: installed v1, rebooting") {
		t.Fatalf("boot after the power cut: version %s\n%s", ver, tail(log, 5000))
	}
	if got := labels(); !strings.Contains(got, "nix-store_v0") || !strings.Contains(got, "nix-store_v1") {
		t.Fatalf("partitions after the update: %s", got)
	}
	if got := espFiles(); !strings.Contains(got, "piboot_v1+3-0.efi") || !strings.Contains(got, "piboot_v0.efi") {
		t.Fatalf("ESP after the update: %s", got)
	}
	// v1 boots (systemd-boot picks the newest and counts a try), blesses itself, finds
	// nothing newer.
	ver, log = boot("v1 boot")
	if ver != "v1" || !strings.Contains(log, "piboot-demo: bless: marked good: /EFI/Linux/piboot_v1.efi") ||
		!strings.Contains(log, "piboot-demo: update: up to date") {
		t.Fatalf("v1 boot: version %s\n%s", ver, tail(log, 5000))
	}
	if got := espFiles(); got != "piboot_v0.efi piboot_v1.efi" {
		t.Fatalf("ESP after v1 blessed itself: %s", got)
	}
	// v0 is still there: chosen through loader.conf's default, it boots with its own store.
	// A v2 whose store cannot boot (its image is garbage, but listed and signed) is
	// published first, so this boot also shows vacuum at work: the booted v0 is kept, v1
	// goes, and v2 lands in v1's slot.
	setLoaderConf("timeout 0\ndefault piboot_v0.efi\n")
	build("v2")
	garbage := make([]byte, 3<<20)
	rand.Read(garbage)
	enc, _ := zstd.NewWriter(nil)
	os.WriteFile(filepath.Join(out, "update", "piboot_v2.nix-store.raw.zst"), enc.EncodeAll(garbage, nil), 0o644)
	signer, err := sysupdate.LoadSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := sysupdate.Publish(filepath.Join(out, "update"), signer); err != nil {
		t.Fatal(err)
	}
	ver, log = boot("v0 chosen in loader.conf")
	if ver != "v0" || !regexp.MustCompile(`piboot-init: mount: \S+ \(nix-store_v0, squashfs`).MatchString(log) ||
		!strings.Contains(log, "piboot-demo: update: installed v2, rebooting") {
		t.Fatalf("v0 chosen in loader.conf: version %s\n%s", ver, tail(log, 5000))
	}
	if got := labels(); !strings.Contains(got, "nix-store_v0") || strings.Contains(got, "nix-store_v1") || !strings.Contains(got, "nix-store_v2") {
		t.Fatalf("partitions after installing v2 from v0: %s (want v0 kept as booted, v1's slot reused)", got)
	}
	if got := espFiles(); got != "piboot_v0.efi piboot_v2+3-0.efi" {
		t.Fatalf("ESP after installing v2: %s", got)
	}
	setLoaderConf("timeout 0\n")
	// v2 fails three times (systemd-boot counts down), then v0 boots by itself.
	// The first try runs into piboot-init's error on v2's store; the later ones, which fail
	// the same way, end once the kernel has v2's command line (systemd-boot has counted).
	v2Cmdline := regexp.MustCompile(`Kernel command line: .*piboot\.store=nix-store_(\S+)`)
	for i, want := range []string{"piboot_v0.efi piboot_v2+2-1.efi", "piboot_v0.efi piboot_v2+1-2.efi", "piboot_v0.efi piboot_v2+0-3.efi"} {
		vm := qemu.Start(t, qemu.Config{UEFI: true, Vars: vars, Net: true, Disks: []qemu.Disk{{Path: disk, Bus: qemu.Virtio}}})
		m, err := vm.Expect(v2Cmdline, 300*time.Second)
		if err == nil && m[1] != "v2" {
			err = fmt.Errorf("booted %s", m[1])
		}
		if err == nil && i == 0 {
			if m, err = vm.Expect(demoLine, 300*time.Second); err == nil && m[1] != "" {
				err = fmt.Errorf("v2 started: %s", m[0])
			}
		}
		vm.Kill()
		if err != nil {
			t.Fatalf("v2 try %d: want systemd-boot choosing v2 and v2 failing: %v\n%s", i+1, err, tail(vm.Log(), 5000))
		}
		t.Logf("v2 try %d: %s after %s", i+1, m[0], vm.Since().Round(time.Second))
		if got := espFiles(); got != want {
			t.Fatalf("ESP after v2 try %d: %s, want %s", i+1, got, want)
		}
	}
	ver, log = boot("after three failed tries")
	if ver != "v0" || !strings.Contains(log, "piboot-demo: update: up to date") {
		t.Fatalf("after v2 failed three times: version %s\n%s", ver, tail(log, 5000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
