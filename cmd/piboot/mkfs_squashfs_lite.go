//go:build pibootlite

package main

// mkfsSquashfs hands `piboot mkfs squashfs` on to piboot-full: the squashfs writer links the
// zstd, gzip and xz encoders, whose start-up the front door's disk tools should not pay.
func mkfsSquashfs(args []string) int { return handOn("mkfs squashfs") }
