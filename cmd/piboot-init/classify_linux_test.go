package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/piboot/piboot/initrd/layout"
	"github.com/piboot/piboot/repart"
)

// loadList is the arm64 initramfs's piboot.load, shortened.
const loadList = `kernel/fs/efivarfs/efivarfs.ko
kernel/drivers/mmc/host/sdhci.ko
kernel/drivers/mmc/host/cqhci.ko
kernel/drivers/mmc/host/sdhci-pci.ko kernel/drivers/mmc/host/sdhci.ko kernel/drivers/mmc/host/cqhci.ko
kernel/crypto/crc32c_generic.ko
kernel/fs/squashfs/squashfs.ko
kernel/fs/jbd2/jbd2.ko kernel/crypto/crc32c_generic.ko
kernel/fs/mbcache.ko
kernel/lib/crc16.ko
kernel/fs/ext4/ext4.ko kernel/crypto/crc32c_generic.ko kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko kernel/lib/crc16.ko
kernel/lib/libcrc32c.ko kernel/crypto/crc32c_generic.ko
kernel/fs/xfs/xfs.ko kernel/lib/libcrc32c.ko
kernel/fs/fat/fat.ko
kernel/fs/fat/vfat.ko kernel/fs/fat/fat.ko
kernel/fs/nls/nls_cp437.ko
kernel/fs/nls/nls_ascii.ko
kernel/fs/nls/nls_utf8.ko
kernel/fs/nls/nls_iso8859-1.ko
`

const aliasList = `alias pci:v*d*sv*sd*bc08sc05i* sdhci_pci
`

func TestClassify(t *testing.T) {
	cfg, err := parseCmdline("piboot.store=s")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		root          string // the root's Format= ("" none: probed, every module eager)
		eager, defer_ string
	}{
		{root: "ext4",
			eager:  "efivarfs crc32c_generic squashfs jbd2 mbcache crc16 ext4 fat vfat nls_cp437 nls_ascii",
			defer_: "libcrc32c xfs nls_utf8 nls_iso8859_1"},
		{root: "xfs",
			eager:  "efivarfs crc32c_generic squashfs libcrc32c xfs fat vfat nls_cp437 nls_ascii",
			defer_: "jbd2 mbcache crc16 ext4 nls_utf8 nls_iso8859_1"},
		{root: "",
			eager:  "efivarfs crc32c_generic squashfs jbd2 mbcache crc16 ext4 libcrc32c xfs fat vfat nls_cp437 nls_ascii nls_utf8 nls_iso8859_1",
			defer_: ""},
	} {
		defs := []repart.Definition{{Label: "root", Format: tc.root}}
		m := &moduleLoader{byPath: map[string]*modJob{}, keepFS: keepFS(cfg, nil, defs, nil), mountFS: mountOrder(cfg, defs)}
		m.aliases, err = parseAliases(strings.NewReader(aliasList), "modules.alias")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(loadList), "\n") {
			f := strings.Fields(line)
			j := &modJob{path: f[0], deps: f[1:]}
			m.jobs = append(m.jobs, j)
			m.byPath[j.path] = j
		}
		m.classify()
		var eager, deferred, drivers []string
		for _, j := range m.jobs {
			n := layout.ModName(filepath.Base(j.path))
			switch {
			case j.driver:
				drivers = append(drivers, n)
			case j.deferred:
				deferred = append(deferred, n)
			default:
				eager = append(eager, n)
			}
		}
		if got := strings.Join(eager, " "); got != tc.eager {
			t.Errorf("root %q: eager %q, want %q", tc.root, got, tc.eager)
		}
		if got := strings.Join(deferred, " "); got != tc.defer_ {
			t.Errorf("root %q: deferred %q, want %q", tc.root, got, tc.defer_)
		}
		if !slices.Equal(drivers, []string{"sdhci", "cqhci", "sdhci_pci"}) {
			t.Errorf("root %q: drivers %q", tc.root, drivers)
		}
		// The order loads by name queue in: efivarfs (discovery reads it), then by
		// mount: the root's filesystem with what it needs, the store's, the ESP's.
		named := slices.DeleteFunc(slices.Clone(m.jobs), func(j *modJob) bool { return j.driver || j.deferred })
		slices.SortStableFunc(named, func(a, b *modJob) int { return a.prio - b.prio })
		var order []string
		for _, j := range named {
			order = append(order, layout.ModName(filepath.Base(j.path)))
		}
		want := map[string]string{
			"ext4": "efivarfs crc32c_generic jbd2 mbcache crc16 ext4 squashfs fat vfat nls_cp437 nls_ascii",
			"xfs":  "efivarfs crc32c_generic libcrc32c xfs squashfs fat vfat nls_cp437 nls_ascii",
			// Root probed: its filesystem is unknown, so every one comes after the ESP's.
			"": "efivarfs squashfs fat vfat nls_cp437 nls_ascii nls_utf8 nls_iso8859_1 crc32c_generic jbd2 mbcache crc16 ext4 libcrc32c xfs",
		}[tc.root]
		if got := strings.Join(order, " "); got != want {
			t.Errorf("root %q: load order by name %q, want %q", tc.root, got, want)
		}
	}
}
