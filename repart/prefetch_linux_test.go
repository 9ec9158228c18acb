package repart

import (
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"github.com/piboot/piboot/internal/testutil"
	"golang.org/x/sys/unix"
)

// resident counts the pages of f's range [off, off+n) in the page cache.
func resident(t *testing.T, f *os.File, off, n int64) int {
	t.Helper()
	m, err := unix.Mmap(int(f.Fd()), off, int(n), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (n+4095)/4096)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(n), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	c := 0
	for _, v := range vec {
		c += int(v & 1)
	}
	return c
}

// droppedImage writes an image of size bytes in dir and drops its pages from the page cache;
// nil if the file system keeps them (tmpfs).
func droppedImage(t *testing.T, dir string, size int64) *os.File {
	t.Helper()
	d, err := os.MkdirTemp(dir, "prefetch-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	f, err := os.Create(filepath.Join(d, "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	for off := int64(0); off < size; off += int64(len(chunk)) {
		if _, err := f.WriteAt(chunk, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	unix.Fadvise(int(f.Fd()), 0, size, unix.FADV_DONTNEED)
	if resident(t, f, 0, gptSpan) > 0 || resident(t, f, size-gptSpan, gptSpan) > 0 {
		return nil
	}
	return f
}

// TestPrefetchGPT: prefetchGPT makes the kernel read both ends of a disk (here an image file
// whose pages were dropped from the cache) without anyone reading them, and nothing between.
func TestPrefetchGPT(t *testing.T) {
	const size = 64 << 20
	// The image must be on a file system that drops clean pages when asked: the test's
	// temporary directory, or, where that is tmpfs, one in the package's directory.
	var f *os.File
	for _, dir := range []string{t.TempDir(), "."} {
		if f = droppedImage(t, dir, size); f != nil {
			break
		}
	}
	if f == nil {
		testutil.Missing(t, "a file system that drops cached pages (the temporary and the source directory keep them)")
	}
	prefetchGPT(f, size)
	deadline := time.Now().Add(5 * time.Second)
	for resident(t, f, 0, gptSpan) < gptSpan/4096 || resident(t, f, size-gptSpan, gptSpan) < gptSpan/4096 {
		if time.Now().After(deadline) {
			t.Fatalf("after 5 s: %d and %d of %d pages at the start and the end read", resident(t, f, 0, gptSpan),
				resident(t, f, size-gptSpan, gptSpan), gptSpan/4096)
		}
		time.Sleep(time.Millisecond)
	}
	if mid := resident(t, f, size/2-1<<20, 2<<20); mid > 0 {
		t.Errorf("%d pages in the middle of the disk read too", mid)
	}
}
