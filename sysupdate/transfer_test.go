package sysupdate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSeedTransfersParseVerbatim(t *testing.T) {
	for _, dir := range []string{"testdata/seed", "testdata/seed-conf"} {
		ts, err := Load([]string{dir}, Specifiers{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) != 2 || ts[0].Name != "10-nix-store" || ts[1].Name != "20-boot-image" {
			t.Fatalf("%s: got %d transfers", dir, len(ts))
		}
		store, uki := ts[0], ts[1]
		if store.Verify || store.InstancesMax != 2 || store.Source.Type != TypeURLFile ||
			store.Source.Path != "http://localhost/" || store.Target.Type != TypePartition ||
			store.Target.Path != "auto" || !*store.Target.ReadOnly ||
			store.Target.PartitionType.String() != "0fc63daf-8483-4772-8e79-3d69d8477de4" {
			t.Errorf("store transfer: %+v", store)
		}
		if p, ok := store.Source.Patterns.Match("trinity_v1.nix-store.raw.zst"); !ok || p.Version != "v1" {
			t.Errorf("store source pattern does not match")
		}
		if p, ok := store.Target.Patterns.Match("nix-store_v0"); !ok || p.Version != "v0" {
			t.Errorf("store target pattern does not match")
		}
		if _, ok := store.Target.Patterns.Match("_empty"); ok {
			t.Errorf("_empty matched as a version")
		}
		if uki.Target.Type != TypeRegularFile || uki.Target.Path != "/EFI/Linux" ||
			uki.Target.PathRelativeTo != "boot" || *uki.Target.Mode != 0o444 || uki.InstancesMax != 2 {
			t.Errorf("uki transfer: %+v", uki.Target)
		}
		if p, ok := uki.Target.Patterns.Match("trinity_v1.efi"); !ok || p.Version != "v1" {
			t.Errorf("uki target pattern does not match")
		}
	}
}

func writeTransfer(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "50-x.transfer")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodTransfer = `[Transfer]
ProtectVersion=%A
[Source]
Type=url-file
Path=https://example.com/%M/
MatchPattern=%M_@v.efi
[Target]
Type=regular-file
Path=/EFI/Linux
PathRelativeTo=boot
MatchPattern=%M_@v+@l-@d.efi \
  %M_@v+@l.efi %M_@v.efi
TriesLeft=3
TriesDone=0
`

func TestParseTransferSpecifiersAndContinuation(t *testing.T) {
	p := writeTransfer(t, goodTransfer)
	tr, err := ParseTransferFile(p, Specifiers{'A': "v7", 'M': "piboot"})
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.ProtectVersion) != 1 || tr.ProtectVersion[0] != "v7" || tr.Source.Path != "https://example.com/piboot/" ||
		len(tr.Target.Patterns) != 3 || tr.Target.Patterns[0].String() != "piboot_@v+@l-@d.efi" ||
		*tr.Target.TriesLeft != 3 || !tr.Verify {
		t.Errorf("parsed: %+v", tr)
	}
}

func TestParseTransferErrors(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{"[Transfer]\nVerfy=no\n", "50-x.transfer:2: Verfy=no: unknown key"},
		{"[Transfer]\nVerify=maybe\n", ":2: Verify=maybe: not a boolean"},
		{"Verify=no\n", ":1: assignment \"Verify\" outside"},
		{"[Source]\nType=url-tar\n[Target]\nType=subvolume\n", "50-x.transfer:4: Type=subvolume: not supported: a subvolume target needs btrfs"},
		{"[Source]\nType=floppy\n", ":2: Type=floppy: unknown type"},
		{"[Source]\nType=url-tar\nPath=http://h/\nMatchPattern=a_@v.tar.xz\n[Target]\nType=partition\nMatchPattern=a_@v\n", "50-x.transfer:6: [Target] Type=partition cannot take [Source] Type=url-tar (line 2): that goes to a directory target"},
		{"[Source]\nType=url-file\nPath=http://h/\nMatchPattern=a_@v\n[Target]\nType=directory\nPath=/x\nMatchPattern=a_@v\n", ":6: [Target] Type=directory cannot take [Source] Type=url-file (line 2): that goes to a partition or regular-file target"},
		{"[Source]\nType=tar\nPath=rel\nMatchPattern=a_@v.tar\n[Target]\nType=directory\nPath=/x\nMatchPattern=a_@v\n", "Type=tar reads a local directory: Path=rel is not absolute"},
		{"\n[Source]\nType=partition\nPath=/x\nMatchPattern=a_@v\n[Target]\nType=partition\nMatchPattern=a_@v\n", ":3: [Source] Type=partition: partitions are only targets"},
		{"[Source]\nType=url-file\nPath=http://h/\nMatchPattern=a_@v\n[Target]\nType=partition\nMatchPattern=a_@v\nCurrentSymlink=cur\n", "CurrentSymlink= only applies to regular-file and directory targets"},
		{"[Target]\nRemoveTemporary=perhaps\n", ":2: RemoveTemporary=perhaps: not a boolean"},
		{"[Source]\n\n# c\nMatchPattern=foo\n", ":4: MatchPattern=foo: pattern \"foo\" lacks the version"},
		{"[Target]\nMode=999\n", ":2: Mode=999: not an octal"},
		{"[Source]\nMode=0444\n", ":2: Mode=0444: only allowed in [Target]"},
		{"[Target]\nInstancesMax=1\n", ":2: InstancesMax=1: must be a number of at least 2"},
		{"[Transfer]\nProtectVersion=%Q\n", "specifier %Q"},
		{"[Target]\nMatchPartitionType=bogus\n", "unknown partition type"},
		{"[Wat]\nA=b\n", "unknown section [Wat]"},
		{"[Transfer\n", ":1: bad section header"},
		{"[Transfer]\nnonsense\n", ":2: missing '='"},
		{"[Source]\nType=url-file\nPath=x\nMatchPattern=a_@v\n", "[Target] lacks Type="},
		{"[Source]\nType=url-file\nPath=x\nMatchPattern=a_@v\n[Target]\nType=partition\nMatchPattern=a_@v_@s\n", "@s is not allowed for partitions"},
		{"[Source]\nType=url-file\nPath=x\nMatchPattern=a_@v\n[Target]\nType=regular-file\nPath=/x\nMatchPattern=a_@v\nTriesLeft=3\n", "first MatchPattern=a_@v has no @l"},
		{"[Source]\nType=url-file\nPath=x\nMatchPattern=a_@v\n[Target]\nType=regular-file\nPath=rel\nMatchPattern=a_@v\n", "not absolute"},
	} {
		_, err := ParseTransferFile(writeTransfer(t, c.body), Specifiers{'A': "v1"})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("body %q: error %v, want %q", c.body, err, c.want)
		}
	}
}

func TestLoadMasking(t *testing.T) {
	etc, usr := t.TempDir(), t.TempDir()
	for _, n := range []string{"10-a.transfer", "20-b.conf", "30-c.transfer", "30-c.conf"} {
		os.WriteFile(filepath.Join(usr, n), []byte(goodTransfer), 0o644)
	}
	os.Symlink("/dev/null", filepath.Join(etc, "10-a.transfer"))
	os.WriteFile(filepath.Join(etc, "README"), []byte("not a transfer"), 0o644)
	ts, err := Load([]string{etc, usr}, Specifiers{'A': "v1", 'M': "p"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].Name != "20-b" || ts[1].File != filepath.Join(usr, "30-c.transfer") {
		t.Errorf("got %d transfers", len(ts))
	}
	if _, err := Load([]string{t.TempDir()}, nil); err == nil {
		t.Error("empty dir accepted")
	}
}

func TestParseOSRelease(t *testing.T) {
	m := ParseOSRelease("ID=piboot\nIMAGE_ID=\"piboot\"\n# c\nIMAGE_VERSION='v3'\n")
	if m["ID"] != "piboot" || m["IMAGE_ID"] != "piboot" || m["IMAGE_VERSION"] != "v3" {
		t.Errorf("%v", m)
	}
}
