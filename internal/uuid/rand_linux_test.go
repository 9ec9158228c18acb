package uuid

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fillFrom is the path for kernels without getrandom(2).
func TestFillFrom(t *testing.T) {
	b := make([]byte, 64)
	if err := fillFrom("/dev/urandom", b); err != nil {
		t.Fatalf("/dev/urandom: %v", err)
	}
	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := fillFrom(short, make([]byte, 10)); err != nil {
		t.Errorf("10 bytes from a 10-byte file: %v", err)
	}
	if err := fillFrom(short, make([]byte, 11)); err == nil {
		t.Error("11 bytes from a 10-byte file: no error")
	}
	if err := fillFrom(filepath.Join(t.TempDir(), "missing"), b); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
}
