//go:build !pibootlite

package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/piboot/piboot/internal/testutil"
)

// captureImage runs f with stdout and stderr going to a pipe and returns what it printed.
func captureImage(t *testing.T, f func() int) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = w, w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	code := f()
	os.Stdout, os.Stderr = oldOut, oldErr
	w.Close()
	return code, <-done
}

// TestUKIBuildInspectCommands drives `piboot uki`, `piboot build` and `piboot inspect` the
// way a user does, on Debian's arm64 kernel and systemd-boot.
func TestUKIBuildInspectCommands(t *testing.T) {
	vmlinuz, _ := testutil.Kernel(t, "arm64")
	_, stub := testutil.SystemdBoot(t, "arm64")
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	initrd := write("initrd", "an initramfs")
	osrel := write("os-release", "ID=x\nIMAGE_VERSION=v9\n")
	efi := filepath.Join(dir, "x.efi")

	code, out := captureImage(t, func() int {
		return runUKI([]string{"--stub", stub, "--linux", vmlinuz, "--initrd", initrd, "--osrel", osrel, "--cmdline", "quiet x=1", "-o", efi})
	})
	if code != 0 {
		t.Fatalf("piboot uki: exit %d\n%s", code, out)
	}
	code, out = captureImage(t, func() int { return runInspect([]string{efi}) })
	for _, w := range []string{"PE image for arm64", ".linux", ".initrd", "checksum: ok", " v9\n", "cmdline: quiet x=1", "kernel: 6."} {
		if !strings.Contains(out, w) {
			t.Errorf("piboot inspect UKI: missing %q in\n%s", w, out)
		}
	}
	if code != 0 {
		t.Errorf("piboot inspect: exit %d", code)
	}
	// A missing input fails with the file named; a kernel that is not a PE is refused.
	code, out = captureImage(t, func() int {
		return runUKI([]string{"--stub", stub, "--linux", filepath.Join(dir, "nope"), "-o", efi})
	})
	if code != 1 || !strings.Contains(out, filepath.Join(dir, "nope")) {
		t.Errorf("missing kernel: exit %d, %q", code, out)
	}
	code, out = captureImage(t, func() int { return runUKI([]string{"--stub", stub, "--linux", initrd, "-o", efi}) })
	if code != 1 || !strings.Contains(out, "not an EFI-stub image") {
		t.Errorf("bad kernel: exit %d, %q", code, out)
	}

	// piboot build with the demo definitions and a tiny store, then inspect the image.
	store := filepath.Join(dir, "store")
	os.Chmod(write("store/bin/piboot-demo", "demo"), 0o755) // the init: piboot build checks it is executable
	conf, err := filepath.Abs("../../images/demo/image.conf")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	outDir := filepath.Join(dir, "out")
	code, out = captureImage(t, func() int {
		return runBuild([]string{"-c", conf, "-o", outDir, "-q", "--version", "v7", "--set", "Kernel.Initrd=" + initrd,
			"--set", "Store.Tree=" + store, "--set", "Update.SigningKey=", "--cmdline-extra", "extra=1"})
	})
	if code != 0 {
		t.Fatalf("piboot build: exit %d\n%s", code, out)
	}
	img := filepath.Join(outDir, "piboot_v7.raw")
	code, out = captureImage(t, func() int { return runInspect([]string{img}) })
	for _, w := range []string{"nix-store_v7", "squashfs", "vfat", "_empty", "uki: /EFI/Linux/piboot_v7.efi", "extra=1 piboot.store=nix-store_v7 init=/nix/store/bin/piboot-demo"} {
		if !strings.Contains(out, w) {
			t.Errorf("piboot inspect image: missing %q in\n%s", w, out)
		}
	}
	if code != 0 {
		t.Errorf("piboot inspect: exit %d", code)
	}
	code, out = captureImage(t, func() int { return runInspect([]string{"-json", img}) })
	if code != 0 || !strings.Contains(out, `"label": "nix-store_v7"`) || !strings.Contains(out, `"filesystem": "squashfs"`) {
		t.Errorf("piboot inspect -json: exit %d\n%s", code, out)
	}
	// A bad setting is an error naming it.
	code, out = captureImage(t, func() int {
		return runBuild([]string{"-c", conf, "-o", outDir, "--set", "Image.Colour=red"})
	})
	if code != 1 || !strings.Contains(out, "override Image.Colour: unknown setting") {
		t.Errorf("bad --set: exit %d, %q", code, out)
	}
}
