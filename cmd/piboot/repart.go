package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/mkfs"
	"github.com/piboot/piboot/repart"
)

func init() {
	register("repart", runRepart)
}

func runRepart(args []string) int {
	fs := newFlagSet("repart", "TARGET")
	defs := fs.String("definitions", "/etc/repart.d", "directory of repart.d `files` (*.conf)")
	dryRun := new(yesNo)
	fs.Var(dryRun, "dry-run", "print the plan, write nothing (also --dry-run=yes|no)")
	seedFlag := fs.String("seed", "", "`UUID` seeding partition UUIDs, or random (default: /etc/machine-id, else the disk GUID)")
	asJSON := jsonMode("off")
	fs.Var(&asJSON, "json", "print the plan as JSON: pretty (also plain --json), short or off")
	factoryReset := new(yesNo)
	fs.Var(factoryReset, "factory-reset", "erase and recreate the partitions whose definition has FactoryReset=yes")
	canFactoryReset := fs.Bool("can-factory-reset", false, "exit 0 if a partition on TARGET would be erased by --factory-reset, else 1")
	arch := fs.String("architecture", gpt.NormalizeArch(runtime.GOARCH), "architecture for Type=root/usr (arm64, x86-64, ...)")
	machineID := fs.String("machine-id", "/etc/machine-id", "machine ID `file` for the default seed")
	empty := fs.String("empty", "refuse", "a disk without partition table: refuse, allow (create a GPT), require (only such a disk), force (replace any table), create (a new image file of --size)")
	size := fs.String("size", "", "grow the image file TARGET to `BYTES` first (K, M, G, T suffixes as in repart.d)")
	discard := new(yesNo)
	fs.Var(discard, "discard", "accepted for systemd-repart compatibility; piboot never discards (it writes only new partitions and the GPT)")
	fs.Bool("no-pager", false, "accepted for systemd-repart compatibility (piboot never pages)")
	fs.Parse(args)
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	target := fs.Arg(0)
	create := *empty == "create"
	if create {
		*empty = string(repart.EmptyForce)
	}
	mode, err := repart.ParseEmptyMode(*empty)
	if err != nil {
		return fail("repart", fmt.Errorf("%w (or create)", err))
	}
	if *canFactoryReset {
		return canReset(target, *defs, *arch)
	}
	var out io.Writer = os.Stdout
	var short bytes.Buffer
	if asJSON == "short" {
		out = &short
	}
	o := repart.Options{
		Target: target, Definitions: *defs, DryRun: bool(*dryRun), Seed: *seedFlag, MachineID: *machineID,
		Arch: *arch, JSON: asJSON != "off", FactoryReset: bool(*factoryReset), Format: mkfs.ForRepart, Out: out, Err: os.Stderr,
	}
	if create {
		if err := createImage(target, *size, o.DryRun); err != nil {
			return fail("repart", err)
		}
		if o.DryRun {
			defer os.Remove(target) // planned on an empty file of that size, which goes again
		}
	}
	if *size != "" {
		if err := growImage(target, *size, o.DryRun); err != nil {
			return fail("repart", err)
		}
	}
	// repart.Run refuses a read-only device itself, on the descriptor it writes through;
	// --empty= other than refuse may write before Run, so it is checked here first.
	if !o.DryRun && mode != repart.EmptyRefuse {
		if err := repart.CheckWritable(target); err != nil {
			return fail("repart", err)
		}
	}
	seed, done, err := repart.Empty(o, mode)
	if err == nil && !done {
		o.Seed = seed
		_, err = repart.Run(o)
	}
	if asJSON == "short" && short.Len() > 0 {
		var b bytes.Buffer
		if json.Compact(&b, short.Bytes()) == nil {
			b.WriteByte('\n')
			os.Stdout.Write(b.Bytes())
		} else {
			os.Stdout.Write(short.Bytes())
		}
	}
	if err != nil {
		return fail("repart", err)
	}
	return 0
}

// canReset is --can-factory-reset: whether an existing partition matches a definition with
// FactoryReset=yes.
func canReset(target, defsDir, arch string) int {
	defs, err := repart.ParseDir(defsDir, arch)
	if err != nil {
		return fail("repart", err)
	}
	f, err := os.Open(target)
	if err != nil {
		return fail("repart", err)
	}
	defer f.Close()
	size, ss, err := repart.DeviceSize(f)
	if err != nil {
		return fail("repart", err)
	}
	t, err := gpt.Read(f, size, ss)
	if err != nil {
		return fail("repart", fmt.Errorf("%s: %w", target, err))
	}
	if _, erased := repart.FactoryReset(t, defs); len(erased) > 0 {
		return 0
	}
	return 1
}

// createImage is --empty=create: a new (sparse) image file of --size= bytes, which then gets
// a new table as with --empty=force. An existing file is refused rather than overwritten.
func createImage(target, s string, dryRun bool) error {
	if s == "" {
		return fmt.Errorf("--empty=create needs --size=")
	}
	want, err := repart.ParseSize(s)
	if err != nil {
		return fmt.Errorf("--size=%s: %w", s, err)
	}
	f, err := os.OpenFile(target, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("--empty=create: %w (it creates a new image file)", err)
	}
	if err := f.Truncate(int64(want)); err != nil {
		f.Close()
		os.Remove(target)
		return err
	}
	return f.Close()
}

// growImage is --size=: an image file grows (sparse) to the given size; it never shrinks.
func growImage(target, s string, dryRun bool) error {
	want, err := repart.ParseSize(s)
	if err != nil {
		return fmt.Errorf("--size=%s: %w", s, err)
	}
	fi, err := os.Stat(target)
	if err != nil {
		return err
	}
	switch {
	case !fi.Mode().IsRegular():
		return fmt.Errorf("--size=%s: %s is not an image file", s, target)
	case uint64(fi.Size()) > want:
		return fmt.Errorf("--size=%s: %s is already %d bytes, larger (images are never shrunk)", s, target, fi.Size())
	case uint64(fi.Size()) == want:
		return nil
	case dryRun:
		return fmt.Errorf("--size=%s: growing %s writes to it, which --dry-run does not", s, target)
	}
	return os.Truncate(target, int64(want))
}

// yesNo is a boolean flag that also takes systemd's spellings (--dry-run=no).
type yesNo bool

func (b *yesNo) String() string   { return strconv.FormatBool(bool(*b)) }
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

// jsonMode is --json: systemd-repart's pretty|short|off, and plain --json for pretty.
type jsonMode string

func (j *jsonMode) String() string   { return string(*j) }
func (j *jsonMode) IsBoolFlag() bool { return true }
func (j *jsonMode) Set(s string) error {
	switch s {
	case "true", "pretty":
		*j = "pretty"
	case "short", "off":
		*j = jsonMode(s)
	case "false":
		*j = "off"
	default:
		return fmt.Errorf("%q: want pretty, short or off", s)
	}
	return nil
}
