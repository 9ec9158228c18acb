package main

import (
	"errors"
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
	seedFlag := fs.String("seed", "", "`UUID` seeding partition UUIDs (default: /etc/machine-id, else the disk GUID)")
	asJSON := fs.Bool("json", false, "print the plan as JSON")
	arch := fs.String("architecture", gpt.NormalizeArch(runtime.GOARCH), "architecture for Type=root/usr (arm64, x86-64, ...)")
	machineID := fs.String("machine-id", "/etc/machine-id", "machine ID `file` for the default seed")
	fs.Parse(args)
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	target := fs.Arg(0)
	if err := repartTarget(target, *defs, bool(*dryRun), *seedFlag, *asJSON, *arch, *machineID); err != nil {
		return fail("repart", err)
	}
	return 0
}

func repartTarget(target, defsDir string, dryRun bool, seedFlag string, asJSON bool, arch, machineID string) error {
	defs, err := repart.ParseDir(defsDir, arch)
	if err != nil {
		return err
	}
	mode := os.O_RDWR
	if dryRun {
		mode = os.O_RDONLY
	}
	f, err := os.OpenFile(target, mode, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	size, ss, err := repart.DeviceSize(f)
	if err != nil {
		return err
	}
	t, err := gpt.Read(f, size, ss)
	if errors.Is(err, gpt.ErrNoGPT) {
		return fmt.Errorf("%s has no GPT partition table; nothing written (%v)", target, err)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", target, err)
	}
	for _, p := range t.Status.Problems {
		fmt.Fprintf(os.Stderr, "piboot repart: %s: %s\n", target, p)
	}
	seed, _, err := repart.Seed(seedFlag, machineID, t)
	if err != nil {
		return err
	}
	l, err := repart.Plan(repart.Disk{Size: size, Table: t}, defs, seed)
	if err != nil {
		return fmt.Errorf("%s: %w (nothing written)", target, err)
	}
	if asJSON {
		err = l.WriteJSON(os.Stdout, target)
	} else {
		err = l.WriteTable(os.Stdout, target)
	}
	if err != nil {
		return err
	}
	if dryRun || l.Empty() {
		if dryRun && !l.Empty() && !asJSON {
			fmt.Println("Dry run: nothing written.")
		}
		return nil
	}
	if err := repart.Apply(f, size, l, mkfs.ForRepart); err != nil {
		return fmt.Errorf("%s: %w", target, err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if !asJSON {
		fmt.Println("Applied.")
	}
	return nil
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
