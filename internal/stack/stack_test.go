package stack

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/piboot/piboot/internal/testutil"
)

// TestNoGrowthAfterInit builds a program whose main goroutine runs a 6 KiB-deep call chain
// and reports whether its stack moved: without this package it does (the control, which shows
// that the check can tell), with it it does not.
func TestNoGrowthAfterInit(t *testing.T) {
	testutil.Need(t, "go")
	for _, c := range []struct {
		tags  string
		moved string
	}{{"", "true"}, {"grown", "false"}} {
		bin := filepath.Join(t.TempDir(), "moves")
		build := exec.Command("go", "build", "-tags="+c.tags, "-o", bin, "./testdata/moves")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build -tags=%q: %v\n%s", c.tags, err, out)
		}
		out, err := exec.Command(bin).Output()
		if err != nil {
			t.Fatalf("%s: %v", bin, err)
		}
		if got := strings.Fields(string(out)); len(got) == 0 || got[0] != c.moved {
			t.Errorf("tags %q: stack moved = %q, want %s", c.tags, out, c.moved)
		}
	}
}
