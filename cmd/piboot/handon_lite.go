//go:build pibootlite

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// fullName is the complete build that the front door hands subcommands to.
const fullName = "piboot-full"

// handedOn marks a process started by the front door: a piboot-full that turns out to be a
// front door itself reports that instead of handing the subcommand on again, forever.
const handedOn = "PIBOOT_HANDED_ON"

// handOn replaces this process with piboot-full running the same subcommand, so that its
// exit status, signals and terminal (progress bars) are those of a direct start.
func handOn(name string) int {
	if os.Getenv(handedOn) != "" {
		fmt.Fprintf(os.Stderr, "piboot: %s: %s was started as %s but does not contain it either\n", name, os.Args[0], fullName)
		return 2
	}
	full, err := findFull()
	if err != nil {
		fmt.Fprintf(os.Stderr, "piboot: %s is in %s, not in this front door: %v\n", name, fullName, err)
		return 2
	}
	err = syscall.Exec(full, append([]string{full}, os.Args[1:]...), append(os.Environ(), handedOn+"=1"))
	fmt.Fprintf(os.Stderr, "piboot: %s: running %s: %v\n", name, full, err)
	return 2
}

// findFull looks next to this executable first (how `make cli` and `go install ./cmd/...`
// place the two), then in $PATH.
func findFull() (string, error) {
	self, err := os.Executable()
	if err == nil {
		if self, err = filepath.EvalSymlinks(self); err == nil {
			p := filepath.Join(filepath.Dir(self), fullName)
			if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	p, err := exec.LookPath(fullName)
	if err == nil {
		return p, nil
	}
	dir := "its directory"
	if self != "" {
		dir = filepath.Dir(self)
	}
	if errors.Is(err, exec.ErrNotFound) {
		return "", fmt.Errorf("no %s in %s or in $PATH (make cli builds both)", fullName, dir)
	}
	return "", err
}
