// Package e2e holds piboot's end-to-end boot tests: piboot-init in Debian's arm64 kernel
// under QEMU, on SD card images made with the project's own gpt and vfat packages and a
// store squashfs from the host's mksquashfs (until the image builder is used instead).
package e2e

import (
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/piboot/piboot/internal/uuid"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/initrd"
	"github.com/piboot/piboot/internal/testutil"
	"github.com/piboot/piboot/mkfs/vfat"
)

// Partition type GUIDs used by the test cards.
var (
	espType     = uuid.MustParse("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
	genericType = uuid.MustParse("0fc63daf-8483-4772-8e79-3d69d8477de4")
)

// Artifacts are the boot inputs shared by all tests of one run.
type Artifacts struct {
	Kernel, Initrd string
	Demo           string // static arm64 piboot-demo
	InitrdStats    initrd.Stats
}

var (
	artOnce sync.Once
	art     Artifacts
	artErr  error
	artDir  string
)

// goBuild builds a static arm64 command of this module.
func goBuild(out, pkg string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// Build returns the kernel, an initramfs (piboot-init, busybox, the default modules,
// default repart.d) and piboot-demo, built once per test binary.
func Build(t testing.TB) Artifacts {
	t.Helper()
	testutil.Need(t, "go")
	vmlinuz, modules := testutil.Kernel(t, "arm64")
	artOnce.Do(func() {
		artDir, artErr = os.MkdirTemp("", "piboot-e2e-")
		if artErr != nil {
			return
		}
		init := filepath.Join(artDir, "piboot-init")
		art.Demo = filepath.Join(artDir, "piboot-demo")
		if artErr = goBuild(init, "github.com/piboot/piboot/cmd/piboot-init"); artErr != nil {
			return
		}
		if artErr = goBuild(art.Demo, "github.com/piboot/piboot/cmd/piboot-demo"); artErr != nil {
			return
		}
		bb, err := initrd.Busybox("arm64", initrd.ShellCommands, filepath.Join(testutil.Cache(), "arm64"))
		if err != nil {
			artErr = err
			return
		}
		art.Kernel = vmlinuz
		art.Initrd = filepath.Join(artDir, "initrd.cpio.zst")
		art.InitrdStats, artErr = initrd.BuildFile(art.Initrd, initrd.Config{
			Init: init, Busybox: bb, BusyboxCommands: initrd.ShellCommands,
			ModuleTree: modules, Modules: initrd.DefaultModules["arm64"],
		})
	})
	if artErr != nil {
		t.Fatal(artErr)
	}
	return art
}

// Cleanup removes the shared artifacts; TestMain calls it.
func Cleanup() {
	if artDir != "" {
		os.RemoveAll(artDir)
	}
}

// CardSpec describes a test SD card: ESP, store and an empty slot, as a freshly flashed
// piboot image, flashed onto a card of Size bytes.
type CardSpec struct {
	Size       int64  // the card (a power of two for QEMU)
	ImageSize  int64  // the flashed image: its backup GPT sits here, not at the card's end
	StoreLabel string // default nix-store_v0
	StoreTree  string // directory packed by mksquashfs as the store
	NoStore    bool   // leave out the store partition (a card without the label)
}

// Layout of a test card (bytes).
const (
	mib       = 1 << 20
	espStart  = 1 * mib
	espSize   = 64 * mib
	partSize  = 64 * mib
	imageSize = 256 * mib
)

// MakeCard writes a card image to path and returns its partitions' byte ranges
// (partition 1..3) for later comparison.
func MakeCard(t testing.TB, path string, spec CardSpec, demo string) {
	t.Helper()
	testutil.Need(t, "mksquashfs")
	if spec.StoreLabel == "" {
		spec.StoreLabel = "nix-store_v0"
	}
	if spec.ImageSize == 0 {
		spec.ImageSize = imageSize
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(spec.ImageSize); err != nil {
		t.Fatal(err)
	}
	// Something in the gap between the GPT and partition 1 (boot code, say): first boot
	// must leave it alone.
	gap := make([]byte, espStart-34*512)
	rand.Read(gap)
	if _, err := f.WriteAt(gap, 34*512); err != nil {
		t.Fatal(err)
	}
	tab, err := gpt.New(spec.ImageSize, 512, uuid.New())
	if err != nil {
		t.Fatal(err)
	}
	add := func(idx int, typ uuid.UUID, label string, start, size int64) {
		tab.Partitions = append(tab.Partitions, gpt.Partition{Index: idx, Type: typ, UUID: uuid.New(),
			FirstLBA: uint64(start / 512), LastLBA: uint64((start+size)/512 - 1), Name: label})
	}
	add(1, espType, "boot", espStart, espSize)
	if err := vfat.Format(io.NewOffsetWriter(f, espStart), espSize, vfat.Options{Label: "BOOT", HiddenSectors: espStart / 512}); err != nil {
		t.Fatal(err)
	}
	storeStart := int64(espStart + espSize)
	if !spec.NoStore {
		add(2, genericType, spec.StoreLabel, storeStart, partSize)
		sq := path + ".store.sqfs"
		tree := spec.StoreTree
		if tree == "" {
			tree = StoreTree(t, demo)
		}
		out, err := exec.Command("mksquashfs", tree, sq, "-noappend", "-quiet", "-all-root", "-comp", "zstd").CombinedOutput()
		if err != nil {
			t.Fatalf("mksquashfs: %v\n%s", err, out)
		}
		b, err := os.ReadFile(sq)
		os.Remove(sq)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > partSize {
			t.Fatalf("store squashfs is %d bytes, more than its %d-byte partition", len(b), partSize)
		}
		if _, err := f.WriteAt(b, storeStart); err != nil {
			t.Fatal(err)
		}
	}
	add(3, genericType, "_empty", storeStart+partSize, partSize)
	if err := gpt.Write(f, spec.ImageSize, tab); err != nil {
		t.Fatal(err)
	}
	// "Flash" onto the larger card.
	if err := f.Truncate(spec.Size); err != nil {
		t.Fatal(err)
	}
}

// StoreTree returns a store directory holding bin/piboot-demo.
func StoreTree(t testing.TB, demo string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(demo)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "piboot-demo"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
