package qemu

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/piboot/piboot/internal/testutil"
)

func TestArgs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c       Config
		want    []string // substrings of the joined command line, in order
		wantErr string
	}{
		{name: "direct arm64 two cards",
			c: Config{Kernel: "k", Initrd: "i", Append: "quiet", Disks: []Disk{{Path: "a.img"}, {Path: "b.img"}}},
			want: []string{"-M virt -cpu cortex-a72 -accel tcg", "-kernel k -initrd i -append console=ttyAMA0 quiet",
				"-device sdhci-pci,id=sdhci0 -drive if=none,id=disk0,format=raw,file=a.img -device sd-card,drive=disk0",
				"-device sdhci-pci,id=sdhci1 -drive if=none,id=disk1,format=raw,file=b.img -device sd-card,drive=disk1"}},
		{name: "console kept",
			c:    Config{Kernel: "k", Append: "console=ttyAMA0,115200 x"},
			want: []string{"-append console=ttyAMA0,115200 x"}},
		{name: "uefi usb virtio net",
			c: Config{UEFI: true, Net: true, Disks: []Disk{{Path: "s.img", Bus: USB}, {Path: "v.img", Bus: Virtio, ReadOnly: true}}},
			want: []string{"if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd",
				"if=pflash,format=raw,unit=1,file=VARS", "-device qemu-xhci,id=xhci",
				"usb-storage,bus=xhci.0,drive=disk0", "file=v.img,readonly=on -device virtio-blk-pci,drive=disk1",
				"-netdev user,id=net0 -device virtio-net-pci,netdev=net0"}},
		{name: "amd64", c: Config{Arch: "amd64", Kernel: "k"}, want: []string{"-M q35", "console=ttyS0"}},
		{name: "both", c: Config{Kernel: "k", UEFI: true}, wantErr: "exactly one"},
		{name: "neither", c: Config{}, wantErr: "exactly one"},
		{name: "arch", c: Config{Arch: "riscv64", Kernel: "k"}, wantErr: "unknown arch"},
		{name: "comma", c: Config{Kernel: "k", Disks: []Disk{{Path: "a,b"}}}, wantErr: "comma"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args, err := tc.c.Args("VARS")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			line := strings.Join(args, " ")
			rest := line
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("%q missing (or out of order) in\n%s", w, line)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestCheckSDSize(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "card.img")
	if err := os.WriteFile(p, make([]byte, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Config{Kernel: p, Disks: []Disk{{Path: p}}}.check()
	if err == nil || !strings.Contains(err.Error(), "power of two") || !strings.Contains(err.Error(), p) {
		t.Fatalf("err = %v, want power-of-two error naming %s", err, p)
	}
	if err := os.Truncate(p, 4<<20); err != nil {
		t.Fatal(err)
	}
	if err := (Config{Kernel: p, Disks: []Disk{{Path: p}}}).check(); err != nil {
		t.Fatal(err)
	}
}

func TestMatchLines(t *testing.T) {
	out := []byte("one\ntwo 2\nthree 3\n$ ")
	re := regexp.MustCompile(`(\w+) (\d)`)
	m, end := matchLines(re, out, 0, true)
	if m == nil || m[1] != "two" || end != len("one\ntwo 2") {
		t.Fatalf("got %q end %d", m, end)
	}
	m, end = matchLines(re, out, end, true)
	if m == nil || m[1] != "three" {
		t.Fatalf("second match %q", m)
	}
	if m, _ := matchLines(regexp.MustCompile(`^\$ $`), out, end, false); m != nil {
		t.Fatal("unfinished line matched without partial")
	}
	if m, _ := matchLines(regexp.MustCompile(`^\$ $`), out, end, true); m == nil {
		t.Fatal("prompt without newline not matched")
	}
	if m, _ := matchLines(regexp.MustCompile(`one`), out, end, true); m != nil {
		t.Fatal("matched before the cursor")
	}
	// A line still arriving ("echo: hello w" of "echo: hello world\n") must not match a
	// pattern anchored at its end until it is complete.
	if m, _ := matchLines(regexp.MustCompile(`^echo: (hello \w+)$`), []byte("echo: hello w"), 0, false); m != nil {
		t.Fatal("partial line matched")
	}
}

// TestBootEcho boots Debian's arm64 kernel with a one-binary initramfs and talks to it
// through the serial console: output, input, power-off and exit.
func TestBootEcho(t *testing.T) {
	testutil.Need(t, "cpio", "go")
	vmlinuz, _ := testutil.Kernel(t, "arm64")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(root, "init"), "./testdata/echoinit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build echoinit: %v\n%s", err, out)
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	pack := exec.Command("sh", "-c", "cd "+root+" && echo init | cpio -o -H newc -R 0:0 > "+initrd)
	if out, err := pack.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v\n%s", err, out)
	}
	vm := Start(t, Config{Kernel: vmlinuz, Initrd: initrd, Append: "panic=-1 quiet"})
	vm.WaitFor(`^echoinit: ready$`, 90*time.Second)
	vm.Send("hello world\n")
	if m := vm.WaitFor(`^echo: (hello \w+)$`, 30*time.Second); m[1] != "hello world" {
		t.Fatalf("echo answered %q", m[1])
	}
	vm.Send("poweroff\n")
	vm.WaitFor(`echoinit: bye`, 30*time.Second)
	vm.Wait(60 * time.Second)
	if _, err := vm.Expect(regexp.MustCompile(`never printed`), time.Second); err == nil {
		t.Fatal("Expect matched after exit")
	}
}
