package uki

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/piboot/piboot/internal/testutil"
)

// TestBootAAVMF boots a UKI built here as the ESP's default loader (\EFI\BOOT\BOOTAA64.EFI)
// under AAVMF: the systemd stub must start the kernel with the embedded command line and the
// embedded initrd (the kernel says it runs /init only if that file exists in the initramfs).
func TestBootAAVMF(t *testing.T) {
	if testing.Short() {
		t.Skip("QEMU boot in -short mode")
	}
	testutil.Need(t, "qemu-system-aarch64", "mkfs.vfat", "mmd", "mcopy",
		"/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd")
	nonce := make([]byte, 6)
	rand.Read(nonce)
	marker := "uki.test=" + hex.EncodeToString(nonce)
	path, _ := buildReal(t, "arm64", "console=ttyAMA0 panic=-1 "+marker)

	dir := t.TempDir()
	esp := filepath.Join(dir, "esp.img")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run("mkfs.vfat", "-C", esp, "65536")
	run("mmd", "-i", esp, "::EFI", "::EFI/BOOT")
	run("mcopy", "-i", esp, path, "::EFI/BOOT/BOOTAA64.EFI")
	vars := filepath.Join(dir, "vars.fd")
	b, err := os.ReadFile("/usr/share/AAVMF/AAVMF_VARS.fd")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(vars, b, 0o644)

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-m", "1024",
		"-accel", "tcg", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-drive", "if=pflash,format=raw,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd",
		"-drive", "if=pflash,format=raw,file="+vars,
		"-drive", "if=virtio,format=raw,file="+esp)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	want := []string{"Kernel command line: console=ttyAMA0 panic=-1 " + marker, "Run /init as init process"}
	var log strings.Builder
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(want) > 0 {
		line := sc.Text()
		log.WriteString(line + "\n")
		if strings.Contains(line, want[0]) {
			want = want[1:]
		}
	}
	if len(want) > 0 {
		t.Fatalf("console never showed %q (ctx: %v); console:\n%s", want[0], ctx.Err(), tail(log.String(), 3000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
