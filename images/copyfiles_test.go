package images

import (
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/piboot/piboot/mkfs/vfat"
)

// TestCopyFilesSources: file sources land at their target path (ESP and store), %U in
// SplitName= is the partition's real UUID, and the ESP's split file stays out of update/.
func TestCopyFilesSources(t *testing.T) {
	esp := "[Partition]\nType=esp\nFormat=vfat\nLabel=boot\nSizeMinBytes=4M\nSplitName=esp\n" +
		"CopyFiles=/boot/EFI:/EFI\nCopyFiles=/boot/loader/loader.conf:/loader/loader.conf\n"
	store := "[Partition]\nType=linux-generic\nFormat=squashfs\nLabel=nix-store_%A\nSizeMinBytes=2M\nSizeMaxBytes=2M\n" +
		"ReadOnly=yes\nSplitName=nix-store-%U\nCopyFiles=/nix/store:/\nCopyFiles=/nix/store/bin/init:/init2\n"
	q := newQAImage(t, "arm64", map[string]string{"10-esp.conf": esp, "20-store.conf": store})
	outDir := filepath.Join(q.dir, "out")
	out, err := q.build(t, outDir)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, out)

	// The ESP: loader.conf a file at its target, not a directory holding it.
	f, err := os.Open(out.Image)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := out.Partitions[0]
	v, err := vfat.Open(io.NewSectionReader(f, p.Offset, p.Size), p.Size)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"loader/loader.conf"} {
		st, err := fs.Stat(v, name)
		if err != nil {
			t.Fatalf("ESP %s: %v", name, err)
		}
		if st.IsDir() {
			t.Errorf("ESP %s is a directory", name)
		}
	}
	if _, err := fs.Stat(v, "EFI/BOOT/BOOTAA64.EFI"); err != nil {
		t.Errorf("ESP: %v", err)
	}

	// The store: the file source is a file at /init2.
	ls, err := exec.Command("unsquashfs", "-o", "0", "-lls", out.Split[1]).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs: %v\n%s", err, ls)
	}
	if !strings.Contains(string(ls), "squashfs-root/init2\n") || !strings.Contains(string(ls), "squashfs-root/bin/init\n") {
		t.Errorf("store listing:\n%s", ls)
	}

	// %U: the UUID the store got in the table.
	parts := sfdiskJSON(t, out.Image)
	want := "qa_v1.nix-store-" + strings.ToLower(parts[1].UUID) + ".raw"
	if filepath.Base(out.Split[1]) != want {
		t.Errorf("store split file %s, want %s", filepath.Base(out.Split[1]), want)
	}

	// update/: the store and the UKI, not the ESP's split file.
	ents, err := os.ReadDir(out.UpdateDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	got := strings.Join(names, " ")
	if strings.Contains(got, ".esp.raw") || !strings.Contains(got, want+".zst") || !strings.Contains(got, "qa_v1.efi") {
		t.Errorf("update/: %s", got)
	}
	if _, err := os.Stat(filepath.Join(outDir, "qa_v1.esp.raw.zst")); err != nil {
		t.Errorf("out/ lacks the ESP's split file: %v", err)
	}
}
