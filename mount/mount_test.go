package mount

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/uuid"
)

// fakeSysfs builds /sys/class/block for disks name→size in bytes, with partitions
// given as "name:N".
func fakeSysfs(t *testing.T, disks map[string]int64, parts ...string) string {
	t.Helper()
	root := t.TempDir()
	w := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	i := 0
	for name, size := range disks {
		d := filepath.Join(root, "class", "block", name)
		w(filepath.Join(d, "size"), fmt.Sprint(size/512))
		w(filepath.Join(d, "dev"), fmt.Sprintf("179:%d", i*8))
		w(filepath.Join(d, "removable"), "0")
		w(filepath.Join(d, "queue", "logical_block_size"), "512")
		i++
	}
	for _, p := range parts {
		name, n, _ := strings.Cut(p, ":")
		disk := strings.TrimRight(strings.TrimSuffix(name, "p"+n), "0123456789")
		for dn := range disks {
			if strings.HasPrefix(name, dn) {
				disk = dn
			}
		}
		w(filepath.Join(root, "class", "block", name, "partition"), n)
		w(filepath.Join(root, "class", "block", name, "size"), "2048")
		w(filepath.Join(root, "class", "block", disk, name, "partition"), n)
	}
	return root
}

func TestScanDisks(t *testing.T) {
	sys := fakeSysfs(t, map[string]int64{"mmcblk0": 32 << 30, "sda": 8 << 30, "loop0": 1 << 20, "mmcblk1": 0, "mmcblk2boot0": 4 << 20},
		"mmcblk0p1:1", "sda1:1")
	disks, err := ScanDisks(sys)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range disks {
		names = append(names, d.Name)
	}
	if got := strings.Join(names, ","); got != "mmcblk0,sda" {
		t.Fatalf("disks = %s", got)
	}
	if disks[0].Size != 32<<30 || disks[0].SectorSize != 512 {
		t.Fatalf("mmcblk0 = %+v", disks[0])
	}
	if _, err := ScanDisks(filepath.Join(sys, "nope")); err == nil {
		t.Fatal("no error for missing sysfs")
	}
}

func TestPartitionName(t *testing.T) {
	sys := fakeSysfs(t, map[string]int64{"mmcblk0": 1 << 30, "sda": 1 << 30}, "mmcblk0p1:1")
	for _, tc := range []struct {
		disk string
		n    int
		want string
	}{
		{"mmcblk0", 1, "mmcblk0p1"}, {"mmcblk0", 4, "mmcblk0p4"}, {"sda", 2, "sda2"},
		{"nvme0n1", 3, "nvme0n1p3"}, {"vda", 1, "vda1"},
	} {
		if got := PartitionName(sys, tc.disk, tc.n); got != tc.want {
			t.Errorf("PartitionName(%s, %d) = %s, want %s", tc.disk, tc.n, got, tc.want)
		}
	}
}

var (
	uESP   = uuid.MustParse("11111111-1111-1111-1111-111111111111")
	uStore = uuid.MustParse("22222222-2222-2222-2222-222222222222")
	uOther = uuid.MustParse("33333333-3333-3333-3333-333333333333")
)

func ours(name string) scanned {
	return scanned{Disk: Disk{BlockDev: BlockDev{Name: name}, Parts: []Part{
		{Index: 1, Label: "esp", UUID: uESP}, {Index: 2, Label: "nix-store_v0", UUID: uStore}}}}
}

func foreign(name string) scanned {
	return scanned{Disk: Disk{BlockDev: BlockDev{Name: name}, Parts: []Part{{Index: 1, Label: "data", UUID: uOther}}}}
}

func noGPT(name string) scanned {
	return scanned{Disk: Disk{BlockDev: BlockDev{Name: name}}, err: fmt.Errorf("no GPT")}
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name    string
		disks   []scanned
		loader  uuid.UUID
		cands   []string
		elapsed time.Duration
		final   bool
		want    string // "disk how", "" to wait, "error: substring"
	}{
		{name: "first card", disks: []scanned{ours("mmcblk0")}, want: "mmcblk0 piboot.disk=mmcblk0"},
		{name: "ours second behind foreign", disks: []scanned{foreign("mmcblk0"), ours("mmcblk1")}, want: "mmcblk1 piboot.disk=mmcblk1"},
		{name: "ours first, foreign second", disks: []scanned{ours("mmcblk0"), foreign("mmcblk1")}, want: "mmcblk0 piboot.disk=mmcblk0"},
		{name: "foreign only, mmcblk1 not yet there", disks: []scanned{foreign("mmcblk0")}, want: ""},
		{name: "foreign only, timeout", disks: []scanned{foreign("mmcblk0")}, final: true, want: ""},
		{name: "usb stick waits for candidates", disks: []scanned{foreign("mmcblk0"), ours("sda")}, elapsed: time.Second, want: ""},
		{name: "usb stick after settle", disks: []scanned{foreign("mmcblk0"), ours("sda")}, elapsed: 3 * time.Second, want: "sda store label"},
		{name: "usb stick, candidates all present", disks: []scanned{foreign("mmcblk0"), foreign("mmcblk1"), ours("sda")}, want: "sda store label"},
		{name: "auto", disks: []scanned{ours("sdb"), ours("mmcblk0")}, cands: []string{}, want: "sdb store label"},
		{name: "no GPT never chosen", disks: []scanned{noGPT("mmcblk0"), noGPT("mmcblk1")}, final: true, want: ""},
		{name: "loader disk", disks: []scanned{ours("mmcblk0"), ours("sda")}, loader: uESP, want: "mmcblk0 LoaderDevicePartUUID"},
		{name: "loader waits", disks: []scanned{ours("mmcblk0")}, loader: uuid.New(), want: ""},
		{name: "loader missing, fallback at timeout", disks: []scanned{ours("mmcblk0")}, loader: uuid.New(), final: true, want: "mmcblk0 piboot.disk=mmcblk0"},
		{name: "loader on a foreign disk", disks: []scanned{foreign("sda"), ours("mmcblk0")}, loader: uOther, want: `error: disk sda holds the loader's partition`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &Options{StoreLabel: "nix-store_v0", LoaderPartUUID: tc.loader, Candidates: tc.cands, Settle: 2 * time.Second}
			if o.Candidates == nil {
				o.Candidates = DefaultCandidates
			}
			f, err := decide(tc.disks, o, tc.elapsed, tc.final)
			got := ""
			if err != nil {
				got = "error: " + err.Error()
			} else if f != nil {
				got = f.Disk.Name + " " + f.How
			}
			if !strings.HasPrefix(got, tc.want) || (tc.want == "" && got != "") {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFindBootDiskWaitsAndTimesOut(t *testing.T) {
	sys := fakeSysfs(t, map[string]int64{"mmcblk0": 1 << 30})
	now := time.Unix(0, 0)
	calls := 0
	read := func(d BlockDev) ([]Part, error) {
		calls++
		return foreign(d.Name).Parts, nil
	}
	o := Options{SysfsDir: sys, StoreLabel: "nix-store_v0", Timeout: time.Second, ReadTable: read,
		now: func() time.Time { return now }, sleep: func(d time.Duration) {
			now = now.Add(d)
			if now.Sub(time.Unix(0, 0)) == 200*time.Millisecond {
				// mmcblk1 shows up late, with our store.
				os.MkdirAll(filepath.Join(sys, "class", "block", "mmcblk1"), 0o755)
				os.WriteFile(filepath.Join(sys, "class", "block", "mmcblk1", "size"), []byte("2048\n"), 0o644)
			}
		}}
	o.ReadTable = func(d BlockDev) ([]Part, error) {
		calls++
		if d.Name == "mmcblk1" {
			return ours(d.Name).Parts, nil
		}
		return read(d)
	}
	f, err := FindBootDisk(o)
	if err != nil || f.Disk.Name != "mmcblk1" {
		t.Fatalf("FindBootDisk = %+v, %v", f, err)
	}
	if calls > 3 {
		t.Errorf("tables read %d times; successful reads must be cached", calls)
	}
	// Without our disk: an error after the timeout that says what was seen.
	os.RemoveAll(filepath.Join(sys, "class", "block", "mmcblk1"))
	now = time.Unix(100, 0)
	o.ReadTable = read
	o.sleep = func(d time.Duration) { now = now.Add(d) }
	_, err = FindBootDisk(o)
	if err == nil || !strings.Contains(err.Error(), `no disk has a partition labelled "nix-store_v0" after 1s`) || !strings.Contains(err.Error(), `mmcblk0: 1:"data"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestNormalizeCandidates(t *testing.T) {
	for in, want := range map[string]string{"": "mmcblk0,mmcblk1", "auto": "", "/dev/sda, mmcblk2": "sda,mmcblk2"} {
		if got := strings.Join(NormalizeCandidates(in), ","); got != want {
			t.Errorf("NormalizeCandidates(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoaderDevicePartUUID(t *testing.T) {
	s := "A1B2C3D4-0000-4000-8000-0123456789AB"
	b := []byte{6, 0, 0, 0}
	for _, c := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	b = append(b, 0, 0)
	dir := t.TempDir()
	if _, ok, err := LoaderDevicePartUUID(dir); ok || err != nil {
		t.Fatalf("unset variable: ok=%v err=%v", ok, err)
	}
	os.WriteFile(filepath.Join(dir, LoaderVar), b, 0o644)
	id, ok, err := LoaderDevicePartUUID(dir)
	if err != nil || !ok || id.String() != strings.ToLower(s) {
		t.Fatalf("got %v %v %v", id, ok, err)
	}
	if _, err := ParseLoaderDevicePartUUID([]byte{6, 0, 0, 0, 'x', 0}); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestProbeFS(t *testing.T) {
	mk := func(f func(b []byte)) *bytes.Reader {
		b := make([]byte, 128<<10)
		f(b)
		return bytes.NewReader(b)
	}
	for want, r := range map[string]*bytes.Reader{
		"squashfs": mk(func(b []byte) { copy(b, "hsqs") }),
		"xfs":      mk(func(b []byte) { copy(b, "XFSB") }),
		"ext4":     mk(func(b []byte) { binary.LittleEndian.PutUint16(b[1024+56:], 0xEF53) }),
		"erofs":    mk(func(b []byte) { binary.LittleEndian.PutUint32(b[1024:], 0xE0F5E1E2) }),
		"vfat":     mk(func(b []byte) { b[510], b[511] = 0x55, 0xAA; copy(b[0x52:], "FAT32   ") }),
	} {
		if got, err := ProbeFS(r); got != want || err != nil {
			t.Errorf("ProbeFS = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := ProbeFS(mk(func([]byte) {})); err == nil {
		t.Error("zeros probed as a filesystem")
	}
}

func TestPartLinks(t *testing.T) {
	sys := fakeSysfs(t, map[string]int64{"mmcblk1": 1 << 30}, "mmcblk1p1:1")
	dev := t.TempDir()
	d := Disk{BlockDev: BlockDev{Name: "mmcblk1"}, Parts: []Part{{Index: 1, Label: "esp", UUID: uESP}, {Index: 4, Label: "a/b", UUID: uStore}}}
	for i := 0; i < 2; i++ { // twice: links are replaced
		if _, err := PartLinks(dev, sys, d); err != nil {
			t.Fatal(err)
		}
	}
	for link, want := range map[string]string{
		"disk/by-partlabel/esp":               "../../mmcblk1p1",
		`disk/by-partlabel/a\x2fb`:            "../../mmcblk1p4",
		"disk/by-partuuid/" + uStore.String(): "../../mmcblk1p4",
	} {
		if got, err := os.Readlink(filepath.Join(dev, link)); err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", link, got, err, want)
		}
	}
}

func TestReadGPT(t *testing.T) {
	dir := t.TempDir()
	size := int64(64 << 20)
	f, err := os.Create(filepath.Join(dir, "card"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(size)
	tab, err := gpt.New(size, 512, uuid.New())
	if err != nil {
		t.Fatal(err)
	}
	tab.Partitions = append(tab.Partitions, gpt.Partition{Index: 1, Type: uuid.New(), UUID: uStore, FirstLBA: 2048, LastLBA: 4095, Name: "nix-store_v0"})
	if err := gpt.Write(f, size, tab); err != nil {
		t.Fatal(err)
	}
	parts, err := ReadGPT(dir)(BlockDev{Name: "card", Size: size, SectorSize: 512})
	if err != nil || len(parts) != 1 || parts[0].Label != "nix-store_v0" || parts[0].UUID != uStore || parts[0].Start != 1<<20 || parts[0].Size != 1<<20 {
		t.Fatalf("ReadGPT = %+v, %v", parts, err)
	}
	if _, err := ReadGPT(dir)(BlockDev{Name: "missing", Size: size, SectorSize: 512}); err == nil {
		t.Fatal("missing device read")
	}
	f.WriteAt(make([]byte, 34*512), 0)
	f.WriteAt(make([]byte, 33*512), size-33*512)
	if _, err := ReadGPT(dir)(BlockDev{Name: "card", Size: size, SectorSize: 512}); err == nil || !strings.Contains(err.Error(), "card") {
		t.Fatalf("wiped disk: %v", err)
	}
}

// TestFindBootDiskChanged: with Changed, a disk that appears is looked at when the event
// comes, not at the next poll (here an hour away: without the event the scan would time
// out first).
func TestFindBootDiskChanged(t *testing.T) {
	sys := fakeSysfs(t, map[string]int64{"mmcblk0": 1 << 30})
	changed := make(chan struct{}, 1)
	o := Options{SysfsDir: sys, StoreLabel: "nix-store_v0", Timeout: time.Minute, Poll: time.Hour, Changed: changed,
		ReadTable: func(d BlockDev) ([]Part, error) {
			if d.Name == "mmcblk1" {
				return ours(d.Name).Parts, nil
			}
			return foreign(d.Name).Parts, nil
		}}
	go func() {
		time.Sleep(50 * time.Millisecond)
		os.MkdirAll(filepath.Join(sys, "class", "block", "mmcblk1"), 0o755)
		os.WriteFile(filepath.Join(sys, "class", "block", "mmcblk1", "size"), []byte("2048\n"), 0o644)
		changed <- struct{}{}
	}()
	f, err := FindBootDisk(o)
	if err != nil || f.Disk.Name != "mmcblk1" {
		t.Fatalf("FindBootDisk = %+v, %v", f, err)
	}
}

func TestNextWait(t *testing.T) {
	o := Options{Poll: 250 * time.Millisecond, Settle: 2 * time.Second, Timeout: 10 * time.Second}
	for _, c := range []struct{ elapsed, want time.Duration }{
		{0, 250 * time.Millisecond},
		{1900 * time.Millisecond, 100 * time.Millisecond}, // wake when the settle period ends
		{2 * time.Second, 250 * time.Millisecond},
		{9900 * time.Millisecond, 100 * time.Millisecond}, // and at the timeout
		{11 * time.Second, 0},
	} {
		if got := nextWait(&o, c.elapsed); got != c.want {
			t.Errorf("nextWait(%v) = %v, want %v", c.elapsed, got, c.want)
		}
	}
}

func TestParseUevent(t *testing.T) {
	msg := "add@/devices/pci0000:00/0000:00:01.0/mmc_host/mmc0/mmc0:0001/block/mmcblk0\x00ACTION=add\x00DEVPATH=/devices/pci0000:00/0000:00:01.0/mmc_host/mmc0/mmc0:0001/block/mmcblk0\x00SUBSYSTEM=block\x00MAJOR=179\x00MINOR=0\x00DEVNAME=mmcblk0\x00DEVTYPE=disk\x00SEQNUM=1234\x00"
	e, ok := ParseUevent([]byte(msg))
	if !ok || e.Action != "add" || e.Subsystem != "block" || e.DevType != "disk" || e.Env["DEVNAME"] != "mmcblk0" ||
		e.DevPath != "/devices/pci0000:00/0000:00:01.0/mmc_host/mmc0/mmc0:0001/block/mmcblk0" {
		t.Fatalf("ParseUevent = %+v, %v", e, ok)
	}
	e, ok = ParseUevent([]byte("add@/devices/pci0000:00/0000:00:02.0\x00ACTION=add\x00SUBSYSTEM=pci\x00MODALIAS=pci:v00001AF4d00001042sv00001AF4sd00001100bc01sc00i00\x00"))
	if !ok || e.Modalias != "pci:v00001AF4d00001042sv00001AF4sd00001100bc01sc00i00" || e.Subsystem != "pci" {
		t.Fatalf("ParseUevent = %+v, %v", e, ok)
	}
	for _, bad := range []string{"", "libudev\x00\xfe\xed", "add@\x00ACTION=add\x00", "add@/x\x00ACTION=remove\x00", "add/x\x00A=b\x00"} {
		if e, ok := ParseUevent([]byte(bad)); ok {
			t.Errorf("ParseUevent(%q) = %+v, want rejected", bad, e)
		}
	}
}

func TestModaliases(t *testing.T) {
	sys := t.TempDir()
	dev := func(bus, name, alias string, bound bool) {
		// As in sysfs: bus/<bus>/devices/<name> links to the device under devices/.
		real := filepath.Join(sys, "devices", bus, name)
		os.MkdirAll(real, 0o755)
		if alias != "" {
			os.WriteFile(filepath.Join(real, "modalias"), []byte(alias+"\n"), 0o444)
		}
		if bound {
			os.Symlink("../../bus/"+bus+"/drivers/x", filepath.Join(real, "driver"))
		}
		os.MkdirAll(filepath.Join(sys, "bus", bus, "devices"), 0o755)
		os.Symlink(real, filepath.Join(sys, "bus", bus, "devices", name))
	}
	dev("pci", "0000:00:01.0", "pci:v00001B36d00000007sv00001AF4sd00001100bc08sc05i01", false)
	dev("pci", "0000:00:00.0", "pci:v00001B36d00000008sv00001AF4sd00001100bc06sc00i00", true)
	dev("virtio", "virtio0", "virtio:d00000002v00001AF4", false)
	dev("platform", "serial", "", false)
	os.MkdirAll(filepath.Join(sys, "bus", "empty"), 0o755)
	got, err := Modaliases(sys)
	if err != nil {
		t.Fatal(err)
	}
	want := "pci:v00001B36d00000007sv00001AF4sd00001100bc08sc05i01 virtio:d00000002v00001AF4"
	if strings.Join(got, " ") != want {
		t.Fatalf("Modaliases = %q, want %q", got, want)
	}
	if _, err := Modaliases(filepath.Join(sys, "nope")); err == nil {
		t.Fatal("no error for a missing sysfs")
	}
	// In two passes, storage buses first: together the same devices, each once.
	dev("usb", "1-1:1.0", "usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00", false)
	var storage, rest []string
	n1, err := EachModaliasOn(sys, StorageBus, func(a string) { storage = append(storage, a) })
	if err != nil {
		t.Fatal(err)
	}
	n2, err := EachModaliasOn(sys, func(b string) bool { return !StorageBus(b) }, func(a string) { rest = append(rest, a) })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(storage, " ") != want || len(rest) != 1 || !strings.HasPrefix(rest[0], "usb:") || n1 != 4 || n2 != 1 {
		t.Fatalf("storage buses: %q (%d devices), the rest: %q (%d devices); want %q (4), one usb: (1)", storage, n1, rest, n2, want)
	}
}
