//go:build !linux

package uuid

import "crypto/rand"

// fill uses crypto/rand where there is no getrandom(2) wrapper of our own.
func fill(b []byte) error {
	_, err := rand.Read(b)
	return err
}
