package repart_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/testutil"
	"github.com/piboot/piboot/internal/uuid"
	"github.com/piboot/piboot/mkfs"
	"github.com/piboot/piboot/repart"
)

const MiB = 1 << 20

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// extract copies partition n of img into its own sparse file.
func extract(t *testing.T, img string, n int) string {
	t.Helper()
	f, _ := os.Open(img)
	defer f.Close()
	fi, _ := f.Stat()
	tab, err := gpt.Read(f, fi.Size(), 0)
	if err != nil {
		t.Fatal(err)
	}
	p := tab.Partition(n)
	if p == nil {
		t.Fatalf("%s has no partition %d", img, n)
	}
	out := img + fmt.Sprintf(".p%d", n)
	run(t, "dd", "if="+img, "of="+out, "bs=1M", "iflag=skip_bytes,count_bytes", "conv=sparse", "status=none",
		fmt.Sprintf("skip=%d", p.FirstLBA*512), fmt.Sprintf("count=%d", (p.LastLBA-p.FirstLBA+1)*512))
	return out
}

func blkid(t *testing.T, p, tag string) string {
	t.Helper()
	return strings.TrimSpace(run(t, "blkid", "-p", "-s", tag, "-o", "value", p))
}

// TestFormatLikeSystemdRepart formats a new root partition through piboot repart (with the
// project's mkfs.ForRepart) and through systemd-repart 252 (mkfs.ext4) from the same seed:
// same partition, same file system UUID and label, and e2fsck finds ours clean.
func TestFormatLikeSystemdRepart(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.Need(t, "systemd-repart", "sgdisk", "e2fsck", "blkid", "mkfs.ext4")
	dir := t.TempDir()
	img := filepath.Join(dir, "sd.img")
	f, _ := os.Create(img)
	tab, _ := gpt.New(64*MiB, 512, uuid.MustParse("5d1f2b0e-7c1a-4b51-9a47-3f0b1c2d3e4f"))
	tab.Partitions = []gpt.Partition{{Index: 1, Type: gpt.TypeESP, UUID: uuid.New(), FirstLBA: 2048, LastLBA: 2048 + 16*2048 - 1, Name: "boot"}}
	f.Truncate(64 * MiB)
	if err := gpt.Write(f, 64*MiB, tab); err != nil {
		t.Fatal(err)
	}
	f.Truncate(256 * MiB)
	f.Close()
	ours := filepath.Join(dir, "ours.img")
	run(t, "cp", "--sparse=always", img, ours)
	defs := filepath.Join(dir, "defs")
	os.Mkdir(defs, 0o755)
	os.WriteFile(filepath.Join(defs, "10-root.conf"), []byte("[Partition]\nType=root-x86-64\nFormat=ext4\nLabel=root\n"), 0o644)
	seed := "c0ffee00-1234-4abc-8def-0123456789ab"

	run(t, "systemd-repart", "--dry-run=no", "--discard=no", "--no-pager", "--json=short", "--seed="+seed, "--definitions="+defs, img)
	l, err := repart.Run(repart.Options{Target: ours, Definitions: defs, Seed: seed, Arch: "x86-64", Format: mkfs.ForRepart})
	if err != nil {
		t.Fatal(err)
	}
	var root repart.Partition
	for _, p := range l.Partitions {
		if p.Action == repart.Create {
			root = p
		}
	}
	theirs, mine := extract(t, img, 2), extract(t, ours, 2)
	if u := blkid(t, theirs, "UUID"); u != root.FSUUID.String() {
		t.Errorf("systemd-repart made file system UUID %s, we derived %s", u, root.FSUUID)
	}
	if u := blkid(t, mine, "UUID"); u != root.FSUUID.String() {
		t.Errorf("our file system UUID is %s, want %s", u, root.FSUUID)
	}
	if a, b := blkid(t, theirs, "LABEL"), blkid(t, mine, "LABEL"); a != "root" || b != "root" {
		t.Errorf("labels: systemd-repart %q, ours %q", a, b)
	}
	run(t, "e2fsck", "-fn", mine)
}
