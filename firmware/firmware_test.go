package firmware

import (
	"archive/zip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/piboot/piboot/internal/testutil"
)

var rpi4Set = map[string]string{
	"RPI_EFI.fd": "efi", "config.txt": "arm_64bit=1\n", "start4.elf": "gpu", "fixup4.dat": "fix",
	"bcm2711-rpi-4-b.dtb": "dtb", "bcm2711-rpi-400.dtb": "dtb400", "overlays/miniuart-bt.dtbo": "ov",
	"Readme.md": "readme",
}

func writeZip(t *testing.T, files map[string]string, prefix string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fw.zip")
	f, _ := os.Create(p)
	zw := zip.NewWriter(f)
	for name, data := range files {
		w, err := zw.Create(prefix + name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(data))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func writeDir(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func check(t *testing.T, got map[string][]byte, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d files %v, want %d", len(got), Paths(got), len(want))
	}
	for p, w := range want {
		if string(got[p]) != w {
			t.Errorf("%s = %q, want %q", p, got[p], w)
		}
	}
}

func TestRPi4Sources(t *testing.T) {
	dir := t.TempDir()
	writeDir(t, dir, rpi4Set)
	for name, src := range map[string]string{
		"zip": writeZip(t, rpi4Set, ""), "wrapped zip": writeZip(t, rpi4Set, "RPi4_UEFI_Firmware_v1.50/"), "dir": dir,
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Files(Config{RPi4UEFI: src})
			if err != nil {
				t.Fatal(err)
			}
			check(t, got, rpi4Set)
		})
	}
	got, err := Files(Config{RPi4UEFI: dir, ConfigTxt: []byte("mine\n")})
	if err != nil || string(got["config.txt"]) != "mine\n" {
		t.Errorf("ConfigTxt override: %v %q", err, got["config.txt"])
	}
}

func TestRPi4Errors(t *testing.T) {
	partial := map[string]string{"RPI_EFI.fd": "x", "config.txt": "y"}
	bad := map[string]string{"../evil": "x"}
	clash := map[string]string{"start4.elf": "a", "START4.ELF": "b"}
	for k, v := range rpi4Set {
		clash[k] = v
	}
	notzip := filepath.Join(t.TempDir(), "fw.zip")
	os.WriteFile(notzip, []byte("not a zip"), 0o644)
	for _, c := range []struct{ name, src, want string }{
		{"missing", writeZip(t, partial, ""), "missing start4.elf, fixup4.dat, bcm2711-rpi-4-b.dtb"},
		{"unsafe", writeZip(t, bad, ""), `unsafe path "../evil"`},
		{"case clash", writeZip(t, clash, ""), "same file on FAT"},
		{"not zip", notzip, "neither a directory nor a zip"},
		{"absent", "/nonexistent/fw.zip", "no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Files(Config{RPi4UEFI: c.src})
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.src) {
				t.Fatalf("err = %v, want %q naming %s", err, c.want, c.src)
			}
		})
	}
}

// TestRaspiFirmwareDeb builds a real .deb with dpkg-deb and reads its firmware back, merged
// under the UEFI set (whose start4.elf wins).
func TestRaspiFirmwareDeb(t *testing.T) {
	testutil.Need(t, "dpkg-deb")
	pkg := t.TempDir()
	deb := map[string]string{"bootcode.bin": "boot", "start4.elf": "debian-gpu", "fixup4.dat": "debian-fix", "LICENCE.broadcom": "lic"}
	writeDir(t, filepath.Join(pkg, "usr/lib/raspi-firmware"), deb)
	writeDir(t, pkg, map[string]string{
		"usr/share/doc/raspi-firmware/copyright": "c",
		"DEBIAN/control":                         "Package: raspi-firmware\nVersion: 1.0\nArchitecture: arm64\nMaintainer: t <t@t>\nDescription: test\n",
	})
	debFile := filepath.Join(t.TempDir(), "raspi-firmware_1.0_arm64.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-Zxz", "--build", pkg, debFile).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, out)
	}
	got, err := Files(Config{RaspiFirmware: debFile})
	if err != nil {
		t.Fatal(err)
	}
	check(t, got, deb)
	// The unpacked tree gives the same.
	got, err = Files(Config{RaspiFirmware: pkg})
	if err != nil {
		t.Fatal(err)
	}
	check(t, got, deb)

	dir := t.TempDir()
	writeDir(t, dir, rpi4Set)
	got, err = Files(Config{RaspiFirmware: debFile, RPi4UEFI: dir})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"bootcode.bin": "boot", "LICENCE.broadcom": "lic"}
	for k, v := range rpi4Set {
		want[k] = v
	}
	check(t, got, want)

	if _, err := Files(Config{RaspiFirmware: writeZip(t, rpi4Set, "")}); err == nil || !strings.Contains(err.Error(), "not a .deb") {
		t.Errorf("zip as .deb: err = %v", err)
	}
}
