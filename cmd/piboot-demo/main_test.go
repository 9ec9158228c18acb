package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestVersion(t *testing.T) {
	for cmdline, want := range map[string]string{
		"console=ttyAMA0 piboot.store=nix-store_v0 init=/x": "v0",
		"piboot.store=nix-store_2.1":                        "2.1",
		"piboot.store=store":                                "store",
		"quiet":                                             "unknown",
	} {
		if got := version(cmdline); got != want {
			t.Errorf("version(%q) = %q, want %q", cmdline, got, want)
		}
	}
	if !hasFlag("a piboot.demo.poweroff b", "piboot.demo.poweroff") || hasFlag("piboot.demo.poweroffx", "piboot.demo.poweroff") {
		t.Error("hasFlag")
	}
}

func TestRootDevice(t *testing.T) {
	mi := `1 1 0:2 / / rw - rootfs rootfs rw
22 1 179:4 / / rw,relatime shared:1 - ext4 /dev/mmcblk0p4 rw
23 22 7:0 / /nix/store ro,relatime - squashfs /dev/mmcblk0p3 ro
24 22 0:5 / /dev rw - devtmpfs devtmpfs rw
`
	if got, err := rootDevice(mi); err != nil || got != "/dev/mmcblk0p4" {
		t.Fatalf("rootDevice = %q, %v", got, err)
	}
	if _, err := rootDevice("24 22 0:5 / /dev rw - devtmpfs devtmpfs rw\n"); err == nil {
		t.Fatal("no error without a / mount")
	}
}

func TestCountBoot(t *testing.T) {
	p := filepath.Join(t.TempDir(), "var", "lib", "boots")
	for want := 1; want <= 3; want++ {
		n, err := countBoot(p)
		if err != nil || n != want {
			t.Fatalf("countBoot = %d, %v; want %d", n, err, want)
		}
	}
	if b, _ := os.ReadFile(p); string(b) != "3\n" {
		t.Fatalf("file holds %q", b)
	}
	os.WriteFile(p, []byte("garbage"), 0o644)
	if _, err := countBoot(p); err == nil {
		t.Fatal("garbage counter accepted")
	}
}
