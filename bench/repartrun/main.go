// Command repartrun is `piboot repart` without the rest of piboot: the same repart.Run and
// mkfs.ForRepart, as piboot-init calls them in-process on first boot, so that bench/repart.sh
// measures repartitioning rather than the start-up of the whole piboot binary.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/piboot/piboot/mkfs"
	"github.com/piboot/piboot/repart"
)

func main() {
	defs := flag.String("definitions", "/etc/repart.d", "repart.d directory")
	seed := flag.String("seed", "", "seed UUID")
	arch := flag.String("architecture", "arm64", "architecture for Type=root")
	report := flag.String("report", "", "write the microseconds spent in repart.Run to this `file`")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: repartrun [--definitions DIR] [--seed UUID] TARGET")
		os.Exit(2)
	}
	start := time.Now()
	_, err := repart.Run(repart.Options{Target: flag.Arg(0), Definitions: *defs, Seed: *seed, Arch: *arch,
		Format: mkfs.ForRepart, Out: os.Stdout})
	if err != nil {
		fmt.Fprintln(os.Stderr, "repartrun:", err)
		os.Exit(1)
	}
	if *report != "" {
		// The time piboot-init spends, which is already running: no process start-up.
		os.WriteFile(*report, []byte(fmt.Sprintf("%d\n", time.Since(start).Microseconds())), 0o644)
	}
}
