//go:build !pibootlite

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/piboot/piboot/internal/testutil"
)

// TestInspectFiles: `piboot inspect` on what a user has at hand besides the image: the
// .raw.zst (decompressed to a sparse temporary file, removed afterwards), a split partition
// file, a truncated download, a directory.
func TestInspectFiles(t *testing.T) {
	boot, stub := testutil.SystemdBoot(t, "amd64")
	dir := t.TempDir()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	files := map[string]string{
		"vmlinuz":    "MZ" + strings.Repeat("\x00", 4094) + "Linux version 6.1.0-qa (qa@host) #1\n",
		"initrd":     "initrd",
		"store/init": "#!/bin/sh\n",
		"image.conf": "[Image]\nId=qa\nVersion=1.2.3\nArchitecture=amd64\n[Kernel]\nLinux=vmlinuz\nInitrd=initrd\nStub=" + stub +
			"\n[Boot]\nSystemdBoot=" + boot + "\n[Store]\nTree=store\nInit=/nix/store/init\n[Partitions]\nDefinitions=d\n",
		"d/10-esp.conf":   "[Partition]\nType=esp\nFormat=vfat\nSizeMinBytes=4M\nSplitName=-\nCopyFiles=/boot:/\n",
		"d/20-store.conf": "[Partition]\nType=linux-generic\nFormat=squashfs\nLabel=nix-store_%A\nSizeMinBytes=1M\nSizeMaxBytes=1M\nSplitName=nix-store\nCopyFiles=/nix/store:/\n",
	}
	for n, s := range files {
		p := filepath.Join(dir, n)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "out")
	if code, msg := captureImage(t, func() int { return runBuild([]string{"-q", "-c", filepath.Join(dir, "image.conf"), "-o", out}) }); code != 0 {
		t.Fatalf("piboot build: exit %d\n%s", code, msg)
	}
	zst, err := os.ReadFile(filepath.Join(out, "qa_1.2.3.raw.zst"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "cut.raw.zst"), zst[:len(zst)/2], 0o644)
	for _, c := range []struct {
		file string
		code int
		want []string
	}{
		{"out/qa_1.2.3.raw.zst", 0, []string{"(zstd, ", "nix-store_1.2.3", "uki: /EFI/Linux/qa_1.2.3.efi", "piboot.store=nix-store_1.2.3"}},
		{"out/qa_1.2.3.nix-store.raw", 0, []string{"no partition table; the file system of the whole file is squashfs (4.0, zstd"}},
		{"out/qa_1.2.3.nix-store.raw.zst", 0, []string{"(zstd, 1048576 bytes decompressed): no partition table; the file system of the whole file is squashfs"}},
		{"cut.raw.zst", 1, []string{"cut.raw.zst: zstd: unexpected EOF"}},
		{"out", 1, []string{"out is a directory"}},
		{"initrd", 1, []string{"initrd: gpt: no GPT partition table: device of 6 bytes is too small"}},
	} {
		code, msg := captureImage(t, func() int { return runInspect([]string{filepath.Join(dir, c.file)}) })
		if code != c.code {
			t.Errorf("piboot inspect %s: exit %d, want %d\n%s", c.file, code, c.code, msg)
		}
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("piboot inspect %s: missing %q in\n%s", c.file, w, msg)
			}
		}
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("inspect left %d temporary files", len(ents))
	}
}
