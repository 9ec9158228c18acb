// Package iszero answers one question the image writers ask on their hot paths: is this
// buffer all zero bytes? Sparse copies skip such blocks (images), squashfs stores them as
// holes, and the FAT writer leaves them unwritten on a zeroed target.
package iszero

import "encoding/binary"

// Bytes reports whether every byte of b is zero (true for an empty b). It reads eight bytes
// at a time, ORed together in four words so the loop is not one long dependency chain.
func Bytes(b []byte) bool {
	for len(b) >= 32 {
		if binary.LittleEndian.Uint64(b)|binary.LittleEndian.Uint64(b[8:])|
			binary.LittleEndian.Uint64(b[16:])|binary.LittleEndian.Uint64(b[24:]) != 0 {
			return false
		}
		b = b[32:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
