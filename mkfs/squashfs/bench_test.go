package squashfs

import (
	"os"
	"strconv"
	"testing"
)

// BenchmarkWriteDir writes the tree named by $SQUASHFS_BENCH_TREE (bench/squashfs.sh
// builds one) to a scratch file; without it, the benchmark is skipped.
func BenchmarkWriteDir(b *testing.B) {
	dir := os.Getenv("SQUASHFS_BENCH_TREE")
	if dir == "" {
		b.Skip("set SQUASHFS_BENCH_TREE to a directory")
	}
	f, err := os.CreateTemp("", "squashfs-bench-*.sqfs")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	for b.Loop() {
		n, err := WriteDir(f, dir, Options{Level: benchLevel()}, DirOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(n), "bytes")
	}
}

func benchLevel() int {
	l, _ := strconv.Atoi(os.Getenv("SQUASHFS_BENCH_LEVEL"))
	return l
}
