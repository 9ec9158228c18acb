// Package testutil finds the external tools, kernels and firmware that piboot's tests use.
//
// A missing piece skips the test when run by hand, but fails it under `make test`, which sets
// PIBOOT_REQUIRE_ALL=1 after installing everything: CI can never pass by skipping.
package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Cache is the download cache that scripts/deps.sh fills.
func Cache() string {
	if c := os.Getenv("PIBOOT_CACHE"); c != "" {
		return c
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "piboot")
}

// Missing skips t (or fails it under PIBOOT_REQUIRE_ALL=1) because of what.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("PIBOOT_REQUIRE_ALL") == "1" {
		t.Fatalf("missing %s (make deps installs it)", what)
	}
	t.Skipf("missing %s (run make deps)", what)
}

// Need checks that each command is on PATH (or, for an absolute path, exists).
func Need(t testing.TB, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		if strings.HasPrefix(c, "/") {
			if _, err := os.Stat(c); err != nil {
				Missing(t, c)
			}
			continue
		}
		if _, err := exec.LookPath(c); err != nil {
			Missing(t, "command "+c)
		}
	}
}

// NeedRoot checks that the test runs as root (loop devices, kernel mounts).
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root privileges")
	}
}

// Kernel returns Debian's kernel image and module tree for arch ("arm64", "amd64").
func Kernel(t testing.TB, arch string) (vmlinuz, modules string) {
	t.Helper()
	dir := filepath.Join(Cache(), arch)
	vmlinuz, modules = filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "modules")
	for _, p := range []string{vmlinuz, modules} {
		if _, err := os.Stat(p); err != nil {
			Missing(t, "Debian "+arch+" kernel at "+p)
		}
	}
	return vmlinuz, modules
}

// SystemdBoot returns Debian's systemd-boot EFI binary and the UKI stub for arch.
func SystemdBoot(t testing.TB, arch string) (bootEFI, stub string) {
	t.Helper()
	efiArch := map[string]string{"arm64": "aa64", "amd64": "x64"}[arch]
	dir := filepath.Join(Cache(), arch, "boot", "usr", "lib", "systemd", "boot", "efi")
	bootEFI = filepath.Join(dir, "systemd-boot"+efiArch+".efi")
	stub = filepath.Join(dir, "linux"+efiArch+".efi.stub")
	for _, p := range []string{bootEFI, stub} {
		if _, err := os.Stat(p); err != nil {
			Missing(t, "systemd-boot for "+arch+" at "+p)
		}
	}
	return bootEFI, stub
}

// DetachLoop detaches loop device dev if it is still backed by file. Tests that detach a
// device early and again in a cleanup must use it for the cleanup: packages run in
// parallel, and between the two detaches another test may have attached the same
// /dev/loopN to its own file (seen in CI: a gpt test read EOF from a device detached
// under it).
func DetachLoop(dev, file string) {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file"))
	if err != nil {
		return // detached already
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return
	}
	got := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
	if got != abs {
		if r, err := filepath.EvalSymlinks(abs); err != nil || r != got {
			return
		}
	}
	exec.Command("losetup", "-d", dev).Run()
}
