package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/uuid"
)

// capture runs f with os.Stdout and os.Stderr redirected and returns what it printed.
func capture(t *testing.T, f func() int) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = w, w
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); done <- b }()
	rc := f()
	os.Stdout, os.Stderr = oldOut, oldErr
	w.Close()
	return rc, string(<-done)
}

// flashedCard makes dir/card.img, a 64 MiB card with a 16 MiB image flashed onto it (an ESP
// "boot"), and dir/repart.d asking for a root partition that fills the rest.
func flashedCard(dir string) (img, defs string) {
	img = filepath.Join(dir, "card.img")
	f, _ := os.Create(img)
	tab, _ := gpt.New(16<<20, 512, uuid.MustParse("5d1f2b0e-7c1a-4b51-9a47-3f0b1c2d3e4f"))
	tab.Partitions = []gpt.Partition{{Index: 1, Type: gpt.TypeESP, UUID: uuid.MustParse("0e3a6c5e-61f1-4f59-8bd3-8f0a9d5b2c11"), FirstLBA: 2048, LastLBA: 10239, Name: "boot"}}
	f.Truncate(16 << 20)
	gpt.Write(f, 16<<20, tab)
	f.Truncate(64 << 20)
	f.Close()
	defs = filepath.Join(dir, "repart.d")
	os.Mkdir(defs, 0o755)
	os.WriteFile(filepath.Join(defs, "10-root.conf"), []byte("[Partition]\nType=root\nWeight=1000\n"), 0o644)
	return img, defs
}

func TestRepartCLI(t *testing.T) {
	dir := t.TempDir()
	img, defs := flashedCard(dir)
	before, _ := os.ReadFile(img)
	common := []string{"--definitions", defs, "--seed", "c0ffee00-1234-4abc-8def-0123456789ab", "--architecture", "arm64",
		"--machine-id", filepath.Join(dir, "none")}

	rc, out := capture(t, func() int { return runRepart(append(append([]string{"--dry-run"}, common...), img)) })
	after, _ := os.ReadFile(img)
	if rc != 0 || !strings.Contains(out, "root-arm64") || !strings.Contains(out, "create") || !bytes.Equal(before, after) {
		t.Fatalf("--dry-run: exit %d, changed=%v\n%s", rc, !bytes.Equal(before, after), out)
	}
	rc, out = capture(t, func() int { return runRepart(append(append([]string{"--dry-run=no", "--json"}, common...), img)) })
	var j struct {
		Changed    bool
		Partitions []struct {
			Type, Label, Activity string
			Offset                int64
		}
	}
	if i := strings.Index(out, "{"); rc != 0 || i < 0 || json.Unmarshal([]byte(out[i:]), &j) != nil || !j.Changed || len(j.Partitions) != 2 ||
		j.Partitions[0].Type != "root-arm64" || j.Partitions[0].Activity != "create" {
		t.Fatalf("--json: exit %d %+v\n%s", rc, j, out)
	}
	rc, out = capture(t, func() int { return runRepart(append(common, img)) })
	if rc != 0 || !strings.Contains(out, "No changes.") {
		t.Fatalf("second run: exit %d\n%s", rc, out)
	}

	blank := filepath.Join(dir, "blank.img")
	os.WriteFile(blank, make([]byte, 1<<20), 0o644)
	rc, out = capture(t, func() int { return runRepart(append(common, blank)) })
	if rc != 1 || !strings.Contains(out, "has no GPT partition table, nothing written") {
		t.Fatalf("blank disk: exit %d\n%s", rc, out)
	}
	os.WriteFile(filepath.Join(defs, "20-bad.conf"), []byte("[Partition]\nType=home\nSizeMinBytes=lots\n"), 0o644)
	rc, out = capture(t, func() int { return runRepart(append(common, img)) })
	if rc != 1 || !strings.Contains(out, "20-bad.conf:3: SizeMinBytes=lots") {
		t.Fatalf("bad definition: exit %d\n%s", rc, out)
	}
}
