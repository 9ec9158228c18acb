package sysupdate

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/piboot/piboot/internal/testutil"
)

// TestUpdateToLoopDevice: a store whose size is not a multiple of the block size goes to
// a real block device (loop): whole blocks through O_DIRECT, the tail through the page
// cache; both read back right, through the device and through its backing file.
func TestUpdateToLoopDevice(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.Need(t, "losetup")
	f := newFixture(t, true)
	out, err := exec.Command("losetup", "-f", "--show", f.img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { testutil.DetachLoop(dev, f.img) })

	// The device's bytes under the slot are not zero: the tail must replace, not pad.
	p := f.part(3)
	fh, _ := os.OpenFile(dev, os.O_RDWR, 0)
	fh.WriteAt(bytes.Repeat([]byte{0xa5}, int(slotSize)), int64(p.FirstLBA)*512)
	fh.Close()

	store := payload("odd store", 5*mib-4096+777)
	f.stores["v1"], f.ukis["v1"] = store, payload("uki v1", 4096)
	enc, _ := zstd.NewWriter(nil)
	os.WriteFile(filepath.Join(f.upd, "piboot_v1.nix-store.raw.zst"), enc.EncodeAll(store, nil), 0o644)
	os.WriteFile(filepath.Join(f.upd, "piboot_v1.efi"), f.ukis["v1"], 0o644)
	if err := Publish(f.upd, f.signer); err != nil {
		t.Fatal(err)
	}
	var direct int64
	u := f.updater("v0")
	u.Disk = dev
	u.writeStats = func(d *diskWriter) { direct = d.directBytes }
	if got, err := u.Update(context.Background(), ""); err != nil || got != "v1" {
		t.Fatalf("Update = %q, %v", got, err)
	}
	if want := int64(len(store)) / 512 * 512; direct != want {
		t.Errorf("%d bytes went through O_DIRECT, want %d (all whole blocks)", direct, want)
	}
	got := make([]byte, len(store)+512)
	fh, _ = os.Open(dev)
	fh.ReadAt(got, int64(p.FirstLBA)*512)
	fh.Close()
	if !bytes.Equal(got[:len(store)], store) {
		t.Fatal("the store read through the device differs")
	}
	if !bytes.Equal(got[len(store):], bytes.Repeat([]byte{0xa5}, 512)) {
		t.Fatal("bytes after the store's end changed")
	}
	exec.Command("losetup", "-d", dev).Run()
	f.checkVersion(3, "v1")
}
