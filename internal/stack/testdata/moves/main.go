// Command moves reports whether the main goroutine's stack moved (was copied to a larger one)
// during a call chain using about 6 KiB of stack, as the disk tools' deepest paths do. With
// the stack package imported (build tag grown), it must not.
package main

import (
	"fmt"
	"unsafe"
)

//go:noinline
func deep(n int) int {
	var pad [512]byte
	pad[n%512] = byte(n)
	if n == 0 {
		return int(pad[0])
	}
	return deep(n-1) + int(pad[n%512])
}

func main() {
	var x int
	before := uintptr(unsafe.Pointer(&x))
	deep(12) // 13 frames of a little over 512 bytes
	after := uintptr(unsafe.Pointer(&x))
	fmt.Println(before != after, x)
}
