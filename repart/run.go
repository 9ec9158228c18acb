package repart

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/piboot/piboot/gpt"
)

// Options are the settings of one repart run on a disk, as `piboot repart` takes them.
type Options struct {
	Target      string // image file or block device
	Definitions string // repart.d directory
	DryRun      bool
	Seed        string // UUID; empty: MachineID, else the disk GUID
	MachineID   string // machine ID file, e.g. /etc/machine-id; empty: none
	Arch        string // for Type=root/usr
	JSON        bool
	// FactoryReset erases the partitions whose definition has FactoryReset=yes first, so
	// that they are created anew (systemd-repart --factory-reset=yes).
	FactoryReset bool
	Format       Formatter // writes new file systems; nil refuses Format=
	Out, Err     io.Writer // plan and notes; nil: discarded
}

// Run reads the target's GPT, plans the definitions against it, prints the plan and, unless
// it is a dry run or there is nothing to do, applies it. It returns the layout it planned.
func Run(o Options) (*Layout, error) {
	out, errw := o.Out, o.Err
	if out == nil {
		out = io.Discard
	}
	if errw == nil {
		errw = io.Discard
	}
	mode := os.O_RDWR
	if o.DryRun {
		mode = os.O_RDONLY
	}
	f, err := os.OpenFile(o.Target, mode, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, ss, err := DeviceSize(f)
	if err != nil {
		return nil, err
	}
	// The disk reads the table while the definitions are parsed.
	prefetchGPT(f, size)
	defs, err := ParseDir(o.Definitions, o.Arch)
	if err != nil {
		return nil, err
	}
	// Like systemd-repart: an exclusive BSD lock keeps udev from probing the disk while the
	// table changes under it.
	if err := lock(f, !o.DryRun); err != nil {
		return nil, fmt.Errorf("%s: lock: %w", o.Target, err)
	}
	// A read-only device opens for writing; only the first write would fail, after the plan.
	if !o.DryRun {
		if err := checkWritable(f, o.Target); err != nil {
			return nil, err
		}
	}
	t, err := gpt.Read(device{f}, size, ss)
	if errors.Is(err, gpt.ErrNoGPT) {
		return nil, fmt.Errorf("%s has no GPT partition table, nothing written (%v)", o.Target, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Target, err)
	}
	for _, p := range t.Status.Problems {
		fmt.Fprintf(errw, "%s: note: %s\n", o.Target, p)
	}
	seed, _, err := Seed(o.Seed, o.MachineID, t)
	if err != nil {
		return nil, err
	}
	if o.FactoryReset {
		if t, err = factoryReset(f, size, t, defs, o, errw); err != nil {
			return nil, err
		}
	}
	l, err := Plan(Disk{Size: size, Table: t}, defs, seed)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (nothing written)", o.Target, err)
	}
	// The table is printed in many small pieces: one write of it (to piboot-init's console,
	// one system call instead of about a hundred), before the work starts.
	bw := bufio.NewWriter(out)
	if o.JSON {
		err = l.WriteJSON(bw, o.Target)
	} else {
		err = l.WriteTable(bw, o.Target)
	}
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return l, err
	}
	if o.DryRun || l.Empty() {
		if o.DryRun && !l.Empty() && !o.JSON {
			fmt.Fprintln(out, "Dry run: nothing written.")
		}
		return l, nil
	}
	if err := Apply(f, size, l, o.Format); err != nil {
		return l, fmt.Errorf("%s: %w", o.Target, err)
	}
	if !o.JSON {
		fmt.Fprintln(out, "Applied.")
	}
	return l, f.Close()
}

// factoryReset writes the table without the partitions to erase (unless it is a dry run,
// where the plan is made on the reduced table in memory) and returns the table to plan on.
func factoryReset(f *os.File, size int64, t *gpt.Table, defs []Definition, o Options, errw io.Writer) (*gpt.Table, error) {
	reduced, erased := FactoryReset(t, defs)
	if len(erased) == 0 {
		fmt.Fprintf(errw, "%s: factory reset: no partition to erase\n", o.Target)
		return t, nil
	}
	for _, p := range erased {
		fmt.Fprintf(errw, "%s: factory reset: erasing partition %d (%q)\n", o.Target, p.Index, p.Name)
	}
	if o.DryRun {
		return reduced, nil
	}
	if last := uint64(size/int64(t.SectorSize)) - 1; t.Status.BackupLBA != last {
		if err := reduced.Resize(size); err != nil { // the backup moves to the end: so does the usable area
			return nil, fmt.Errorf("%s: %w", o.Target, err)
		}
	}
	if err := gpt.Write(f, size, reduced); err != nil {
		return nil, fmt.Errorf("%s: factory reset: %w", o.Target, err)
	}
	nt, err := gpt.Read(f, size, t.SectorSize)
	if err != nil {
		return nil, fmt.Errorf("%s: after the factory reset: %w", o.Target, err)
	}
	return nt, nil
}
