package xfs_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/testutil"
	"github.com/piboot/piboot/internal/uuid"
	"github.com/piboot/piboot/mkfs"
	"github.com/piboot/piboot/mkfs/xfs"
	"github.com/piboot/piboot/repart"
)

// TestRepartFormatXFS runs the same Format=xfs definition through systemd-repart 252 (which
// calls mkfs.xfs) and through repart.Apply with mkfs.ForRepart, and compares the new
// partitions' filesystems byte for byte (inode timestamps aside). The label is longer than
// XFS allows: both must cut it to the same 12 bytes without splitting a character.
func TestRepartFormatXFS(t *testing.T) {
	testutil.NeedRoot(t) // systemd-repart formats through a loop device
	testutil.Need(t, "systemd-repart", "sgdisk", "mkfs.xfs", "xfs_repair")
	dir := t.TempDir()
	defs := filepath.Join(dir, "repart.d")
	os.Mkdir(defs, 0o755)
	if err := os.WriteFile(filepath.Join(defs, "50-root.conf"), []byte("[Partition]\nType=root\nFormat=xfs\nLabel=äverylonglabel123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const size = 3<<30 + 5<<20 // not a power of two: AG size is not either
	seed := "0e2a4e56-4a1f-4d3b-8f5e-0c9a7d6b5e4f"
	var imgs []string
	for _, name := range []string{"systemd.img", "piboot.img"} {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(size)
		f.Close()
		if out, err := exec.Command("sgdisk", "-o", p).CombinedOutput(); err != nil {
			t.Fatalf("sgdisk: %v\n%s", err, out)
		}
		imgs = append(imgs, p)
	}
	if out, err := exec.Command("systemd-repart", "--dry-run=no", "--seed="+seed, "--definitions="+defs,
		"--discard=no", imgs[0]).CombinedOutput(); err != nil {
		t.Fatalf("systemd-repart: %v\n%s", err, out)
	}

	parsed, err := repart.ParseDir(defs, gpt.NormalizeArch(runtime.GOARCH))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(imgs[1], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	table, err := gpt.Read(f, size, 512)
	if err != nil {
		t.Fatal(err)
	}
	l, err := repart.Plan(repart.Disk{Size: size, Table: table}, parsed, uuid.MustParse(seed))
	if err != nil {
		t.Fatal(err)
	}
	if err := repart.Apply(f, size, l, mkfs.ForRepart); err != nil {
		t.Fatal(err)
	}

	var part gpt.Partition
	for _, p := range l.Partitions {
		if p.Format == "xfs" {
			part = *l.New.Partition(p.Index)
		}
	}
	start, psize := int64(part.FirstLBA)*512, part.Size(512)
	ref, err := os.Open(imgs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	reft, err := gpt.Read(ref, size, 512)
	if err != nil {
		t.Fatal(err)
	}
	rp := reft.ByName(part.Name)
	if rp == nil || rp.FirstLBA != part.FirstLBA || rp.Size(512) != psize {
		t.Fatalf("systemd-repart placed the partition elsewhere: %+v vs %+v", rp, part)
	}
	if _, err := xfs.Plan(psize, 512); err != nil {
		t.Fatal(err)
	}
	xfs.CompareFS(t, imgs[0], imgs[1], start, psize, 512)
}
