package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/piboot/piboot/internal/testutil"
)

func TestMkfsXFS(t *testing.T) {
	testutil.Need(t, "xfs_repair", "xfs_db")
	dir := t.TempDir()
	img := filepath.Join(dir, "x.img")
	if rc := mkfsXFS([]string{"--label", "data", "--uuid", "d5a2e0c4-1b6f-4c3e-9a7d-2f8e1c0b9a77", "--size", "400M", img}); rc != 0 {
		t.Fatalf("exit %d", rc)
	}
	if out, err := exec.Command("xfs_repair", "-n", "-f", img).CombinedOutput(); err != nil {
		t.Fatalf("xfs_repair: %v\n%s", err, out)
	}
	out, err := exec.Command("xfs_db", "-r", "-c", "label", "-c", "uuid", img).Output()
	if err != nil || string(out) != "label = \"data\"\nUUID = d5a2e0c4-1b6f-4c3e-9a7d-2f8e1c0b9a77\n" {
		t.Fatalf("xfs_db: %v %q", err, out)
	}
	// Formatting again needs --force (flags may follow TARGET); a smaller --size is refused.
	if rc := mkfsXFS([]string{img}); rc != 1 {
		t.Fatalf("reformat without --force: exit %d, want 1", rc)
	}
	if rc := mkfsXFS([]string{img, "--force", "--label", "again"}); rc != 0 {
		t.Fatalf("reformat: exit %d", rc)
	}
	if rc := mkfsXFS([]string{"--dry-run", "--size", "2T", filepath.Join(dir, "none")}); rc != 0 {
		t.Fatalf("dry run: exit %d", rc)
	}
	for _, args := range [][]string{
		{"--size", "100M", img},                         // would shrink
		{filepath.Join(dir, "missing")},                 // no --size
		{"--size", "200M", filepath.Join(dir, "small")}, // below 300 MiB
		{"--uuid", "nope", img},
		{"--force", "--label", "much-too-long", img},
		{"--size", "12X", filepath.Join(dir, "y")},
	} {
		if rc := mkfsXFS(args); rc != 1 {
			t.Errorf("%v: exit %d, want 1", args, rc)
		}
	}
	if st, err := os.Stat(img); err != nil || st.Size() != 400<<20 {
		t.Errorf("image changed size: %v %v", st, err)
	}
	for _, p := range []string{"missing", "small", "y", "none"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			t.Errorf("a failed run left %s behind", p)
		}
	}
}

func TestParseXFSSize(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "512M": 512 << 20, "2G": 2 << 30, "2GiB": 2 << 30, "1t": 1 << 40, "300MB": 300 << 20} {
		if got, err := parseXFSSize(in); err != nil || got != want {
			t.Errorf("%q: %d %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "-1M", "1.5G", "9999999T"} {
		if _, err := parseXFSSize(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// A mounted block device is refused (the kernel's exclusive open), an unmounted one formatted.
func TestMkfsXFSBlockDevice(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.Need(t, "losetup", "mount", "umount", "xfs_repair")
	img := filepath.Join(t.TempDir(), "dev.img")
	if rc := mkfsXFS([]string{"--size", "320M", img}); rc != 0 {
		t.Fatalf("exit %d", rc)
	}
	out, err := exec.Command("losetup", "-f", "--show", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	dev := string(out[:len(out)-1])
	defer exec.Command("losetup", "-d", dev).Run()
	mnt := t.TempDir()
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	rc := mkfsXFS([]string{dev})
	exec.Command("umount", mnt).Run()
	if rc != 1 {
		t.Fatalf("formatting a mounted device: exit %d, want 1", rc)
	}
	if rc := mkfsXFS([]string{"--force", "--label", "again", dev}); rc != 0 {
		t.Fatalf("exit %d", rc)
	}
	if out, err := exec.Command("xfs_repair", "-n", dev).CombinedOutput(); err != nil {
		t.Fatalf("xfs_repair: %v\n%s", err, out)
	}
}
