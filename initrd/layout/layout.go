// Package layout names the paths inside a piboot initramfs that the builder (package
// initrd) writes and piboot-init reads. It is a leaf: piboot-init imports it instead of
// initrd, whose builder pulls in the Go toolchain libraries (for the u-root busybox) and
// would cost every boot their package initialisation.
package layout

import (
	"path/filepath"
	"strings"
)

// Paths inside the initramfs.
const (
	ModulesDir = "/lib/modules" // + /<kernel version>/<relative path>, and the load list
	RepartDir  = "/etc/repart.d"
	BusyboxBin = "/bbin/bb"
	ShellPath  = "/bin/gosh"
	// LoadList is the file in ModulesDir/<kernel version> that lists the modules
	// piboot-init loads, one per line, dependencies first: the module's path relative to
	// the module directory, then (separated by spaces) the paths of the modules it needs
	// loaded before it.
	LoadList = "piboot.load"
	// AliasList is the file beside LoadList in the kernel's modules.alias format ("alias
	// <pattern> <module name>" per line): every alias= of the modules shipped, so that
	// piboot-init loads a device driver only when a device's modalias matches it.
	AliasList = "modules.alias"
)

// ModName normalizes a module name or file name the way the kernel does ('-' is '_').
func ModName(s string) string {
	s = filepath.Base(s)
	for _, ext := range []string{".zst", ".xz", ".gz"} {
		s = strings.TrimSuffix(s, ext)
	}
	s = strings.TrimSuffix(s, ".ko")
	return strings.ReplaceAll(s, "-", "_")
}
