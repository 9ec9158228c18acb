package main

import (
	"strings"
	"testing"
)

func TestGlobMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, s string
		want       bool
	}{
		{"pci:v*d*sv*sd*bc08sc05i*", "pci:v00001B36d00000007sv00001AF4sd00001100bc08sc05i01", true},
		{"pci:v*d*sv*sd*bc08sc05i*", "pci:v00001B36d00000007sv00001AF4sd00001100bc08sc06i01", false},
		{"pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00001AF4d00001042sv00001AF4sd00001100bc01sc00i00", true},
		{"pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00001AF5d00001042sv00001AF4sd00001100bc01sc00i00", false},
		{"of:N*T*Cbrcm,bcm2711-emmc2", "of:NmmcT(null)Cbrcm,bcm2711-emmc2", true},
		{"of:N*T*Cbrcm,bcm2711-emmc2C*", "of:NmmcT(null)Cbrcm,bcm2711-emmc2Cbrcm,sdhci-iproc", true},
		{"of:N*T*Cbrcm,bcm2711-emmc2", "of:NmmcT(null)Cbrcm,bcm2711-emmc2Cbrcm,sdhci-iproc", false},
		{"scsi:t-0x00*", "scsi:t-0x00", true},
		{"scsi:t-0x0e*", "scsi:t-0x00", false},
		{"a*b", "a/x/b", true}, // no FNM_PATHNAME: '*' crosses '/'
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*", "", true},
		{"", "", true},
		{"", "x", false},
		{"a[0-9]c", "a5c", true},
		{"a[0-9]c", "aXc", false},
		{"a[!0-9]c", "aXc", true},
		{"a[^0-9]c", "a5c", false},
		{"a[]]c", "a]c", true},
		{"a[x", "a[x", true}, // unterminated class: '[' is literal
		{`a\*c`, "a*c", true},
		{`a\*c`, "abc", false},
		{"*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
		{"usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*", "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00", true},
		{"usb:v*p*d*dc*dsc*dp*ic08isc06ip62in*", "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00", false},
	} {
		if got := globMatch(c.pattern, c.s); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
}

const testAliases = `alias fs-ext4 ext4
alias crypto-crc32c crc32c_generic
alias devname:fuse fuse
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias pci:v*d*sv*sd*bc08sc05i* sdhci_pci
alias pci:v00001B36d00000007sv*sd*bc*sc*i* sdhci_pci
# comment

alias of:N*T*Cbrcm,bcm2711-emmc2 sdhci_iproc
alias of:N*T*Cbrcm,bcm2711-emmc2C* sdhci_iproc
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* uas
alias scsi:t-0x00* sd_mod
alias acpi*:PNP0A03:* pci_root
alias virtio:d00000002v* virtio_blk
`

func TestAliasTable(t *testing.T) {
	tab, err := parseAliases(strings.NewReader(testAliases), "modules.alias")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ modalias, want string }{
		{"pci:v00001B36d00000007sv00001AF4sd00001100bc08sc05i01", "sdhci_pci"},
		{"pci:v00001AF4d00001042sv00001AF4sd00001100bc01sc00i00", "virtio_pci"},
		{"pci:v00001B36d00000008sv00001AF4sd00001100bc06sc00i00", ""},
		{"of:NmmcT(null)Cbrcm,bcm2711-emmc2", "sdhci_iproc"},
		{"usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00", "usb_storage uas"},
		{"scsi:t-0x00", "sd_mod"},
		{"virtio:d00000002v00001AF4", "virtio_blk"},
		{"acpi:PNP0A03:", "pci_root"},
		{"fs-ext4", ""}, // names are not device aliases
		{"platform:serial8250", ""},
	} {
		if got := strings.Join(tab.match(c.modalias), " "); got != c.want {
			t.Errorf("match(%q) = %q, want %q", c.modalias, got, c.want)
		}
	}
	for m, want := range map[string]bool{"sdhci_pci": true, "uas": true, "ext4": false, "crc32c_generic": false, "fuse": false} {
		if tab.drivers[m] != want {
			t.Errorf("drivers[%s] = %v, want %v", m, tab.drivers[m], want)
		}
	}
	if _, err := parseAliases(strings.NewReader("alias a b\nalias x\n"), "/lib/modules/6.1/modules.alias"); err == nil ||
		!strings.Contains(err.Error(), "/lib/modules/6.1/modules.alias:2:") {
		t.Fatalf("bad line: %v", err)
	}
}
