//go:build !pibootlite

package main

import (
	"fmt"
	"os"
)

// handOn is never reached in the complete build, which registers every subcommand
// (TestEverySubcommandBuiltIn).
func handOn(name string) int {
	fmt.Fprintf(os.Stderr, "piboot: %s is listed but not built in\n", name)
	return 2
}
