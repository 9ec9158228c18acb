package iszero

import "testing"

func TestBytes(t *testing.T) {
	for n := 0; n <= 100; n++ {
		b := make([]byte, n)
		if !Bytes(b) {
			t.Fatalf("%d zero bytes: not all zero", n)
		}
		for i := 0; i < n; i++ {
			b[i] = 0x80
			if Bytes(b) {
				t.Fatalf("%d bytes with byte %d set: all zero", n, i)
			}
			b[i] = 0
		}
	}
}

func BenchmarkBytes(b *testing.B) {
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if !Bytes(buf) {
			b.Fatal("not zero")
		}
	}
}
