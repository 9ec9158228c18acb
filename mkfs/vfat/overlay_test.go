package vfat

import (
	"archive/zip"
	"bytes"
	"strings"
	"testing"
	"testing/fstest"
)

func TestOverlay(t *testing.T) {
	// A firmware zip, as the rpi4-uefi release ships it.
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	for name, data := range map[string]string{
		"RPI_EFI.fd": "firmware", "config.txt": "arm_64bit=1\n", "overlays/miniuart-bt.dtbo": "dtbo",
	} {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(data))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(zb.Bytes()), int64(zb.Len()))
	if err != nil {
		t.Fatal(err)
	}
	boot := fstest.MapFS{"usr/lib/systemd/boot/efi/systemd-bootaa64.efi": {Data: []byte("sd-boot")}}

	o := NewOverlay()
	steps := []error{
		o.Mount("/", zr),
		o.MountFile("EFI/BOOT/BOOTAA64.EFI", boot, "usr/lib/systemd/boot/efi/systemd-bootaa64.efi"),
		o.MountFile("EFI/systemd/systemd-bootaa64.efi", boot, "usr/lib/systemd/boot/efi/systemd-bootaa64.efi"),
		o.AddFile("EFI/Linux/piboot_v0.efi", []byte("uki")),
		o.AddFile("loader/loader.conf", []byte("timeout 0\n")),
		o.Mkdir("loader/entries"),
		o.Mount("overlays", fstest.MapFS{"extra.dtbo": {Data: []byte("merged")}}),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := fstest.TestFS(o, "RPI_EFI.fd", "config.txt", "overlays/miniuart-bt.dtbo", "overlays/extra.dtbo",
		"EFI/BOOT/BOOTAA64.EFI", "EFI/systemd/systemd-bootaa64.efi", "EFI/Linux/piboot_v0.efi",
		"loader/loader.conf", "loader/entries"); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		err  error
		want string
	}{
		{o.AddFile("config.txt", []byte("again")), "config.txt from memory conflicts with config.txt from config.txt (mounted at /)"},
		{o.Mount("/", fstest.MapFS{"loader/loader.conf": {}}), "loader/loader.conf"},
		{o.AddFile("config.txt/x", nil), "config.txt from config.txt (mounted at /) is a file"},
		{o.AddFile("../x", nil), "invalid file path"},
		{o.AddFile("/x", nil), "invalid file path"},
		{o.AddFile("x/", nil), "invalid file path"},
		{o.AddFile("./x", nil), "invalid file path"},
		{o.AddFile("a//x", nil), "invalid file path"},
		{o.Mkdir("/abs"), `invalid path "/abs"`},
		{o.Mount("../up", fstest.MapFS{}), `invalid path "../up"`},
		{o.MountFile("/x", boot, "usr/lib/systemd/boot/efi/systemd-bootaa64.efi"), "invalid file path"},
		// A path that would be both a file and a directory, in either order.
		{o.AddFile("loader/entries", nil), "loader/entries from memory is a file, and a directory from"},
		{o.AddFile("loader/loader.conf/x", nil), "loader/loader.conf from memory is a file, memory needs it to be a directory"},
		{o.Mkdir("EFI/Linux/piboot_v0.efi/sub"), "EFI/Linux/piboot_v0.efi from memory is a file"},
		{o.Mount("EFI", fstest.MapFS{"BOOT": {Data: []byte("file over a dir")}}), "EFI/BOOT from BOOT (mounted at /EFI) is a file, and a directory"},
		{o.Mount("", fstest.MapFS{"config.txt/x": {}}), "config.txt from config.txt (mounted at /) is a file"},
		{o.MountFile("x", boot, "missing"), "missing"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("error %v, want %q", tc.err, tc.want)
		}
	}

	img := build(t, 64<<20, Options{Root: o, Label: "ESP"})
	fsckClean(t, img)
	readBack(t, img, o)
}
