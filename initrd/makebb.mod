// The module that builds gobusybox's makebb, the tool initrd.Busybox runs to compile the
// emergency shell. It is written to a scratch directory as go.mod (with makebb.sum as go.sum)
// so that piboot itself links none of the Go toolchain libraries makebb needs.
// The versions are those piboot linked when it used gobusybox as a library, so the busybox
// binaries (and their cache keys) are unchanged; x/tools must stay new enough for the Go
// toolchain in use (v0.18.0, gobusybox's own minimum, no longer compiles with Go 1.26).
module piboot.invalid/makebb

go 1.26.0

require github.com/u-root/gobusybox/src v0.0.0-20250101170133-2e884e4509c7

require (
	github.com/dustin/go-humanize v1.0.1 // indirect
	github.com/u-root/uio v0.0.0-20240224005618-d2acac8f3701 // indirect
	golang.org/x/exp v0.0.0-20250305212735-054e65f0b394 // indirect
	golang.org/x/mod v0.29.0 // indirect
	golang.org/x/sync v0.18.0 // indirect
	golang.org/x/tools v0.38.0 // indirect
	mvdan.cc/sh/v3 v3.11.0 // indirect
)
