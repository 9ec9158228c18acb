package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/mkfs"
	"github.com/piboot/piboot/repart"
)

func init() {
	register("repart", "grow a GPT disk or image to match repart.d definitions (systemd-repart semantics)", runRepart)
}

func runRepart(args []string) int {
	fs := newFlagSet("repart", "TARGET")
	defs := fs.String("definitions", "/etc/repart.d", "directory of repart.d `files` (*.conf)")
	dryRun := new(yesNo)
	fs.Var(dryRun, "dry-run", "print the plan, write nothing (also --dry-run=yes|no)")
	seedFlag := fs.String("seed", "", "`UUID` seeding partition UUIDs, or random (default: /etc/machine-id, else the disk GUID)")
	asJSON := fs.Bool("json", false, "print the plan as JSON")
	factoryReset := new(yesNo)
	fs.Var(factoryReset, "factory-reset", "erase and recreate the partitions whose definition has FactoryReset=yes")
	arch := fs.String("architecture", gpt.NormalizeArch(runtime.GOARCH), "architecture for Type=root/usr (arm64, x86-64, ...)")
	machineID := fs.String("machine-id", "/etc/machine-id", "machine ID `file` for the default seed")
	fs.Parse(args)
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	_, err := repart.Run(repart.Options{
		Target: fs.Arg(0), Definitions: *defs, DryRun: bool(*dryRun), Seed: *seedFlag, MachineID: *machineID,
		Arch: *arch, JSON: *asJSON, FactoryReset: bool(*factoryReset), Format: mkfs.ForRepart, Out: os.Stdout, Err: os.Stderr,
	})
	if err != nil {
		return fail("repart", err)
	}
	return 0
}

// yesNo is a boolean flag that also takes systemd's spellings (--dry-run=no).
type yesNo bool

func (b *yesNo) String() string   { return fmt.Sprint(bool(*b)) }
func (b *yesNo) IsBoolFlag() bool { return true }
func (b *yesNo) Set(s string) error {
	switch s {
	case "1", "yes", "y", "true", "t", "on":
		*b = true
	case "0", "no", "n", "false", "f", "off":
		*b = false
	default:
		return fmt.Errorf("%q is not a boolean", s)
	}
	return nil
}
