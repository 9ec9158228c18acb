package xfs

import "testing"

// CompareFS lets the external tests compare the XFS at [base, base+size) of two images, as
// the golden test does.
func CompareFS(t *testing.T, want, got string, base, size int64, sectSize int) {
	t.Helper()
	g, err := planGeometry(size, sectSize)
	if err != nil {
		t.Fatal(err)
	}
	compareRange(t, &g, want, got, base, size)
}
