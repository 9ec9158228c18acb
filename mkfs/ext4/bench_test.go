package ext4

import (
	"fmt"
	"testing"
)

type discard struct{}

func (discard) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }

// BenchmarkFormat measures the writer's own CPU time, without any device.
func BenchmarkFormat(b *testing.B) {
	for _, size := range []int64{8 << 30, 128 << 30, 2 << 40} {
		b.Run(fmt.Sprintf("%dGiB", size>>30), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if err := Format(discard{}, size, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
