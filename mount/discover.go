package mount

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/piboot/piboot/internal/uuid"
)

// Part is one partition of a disk, as its GPT describes it.
type Part struct {
	Index int
	Label string
	UUID  uuid.UUID
	Type  uuid.UUID
	Start int64 // bytes
	Size  int64 // bytes
}

// Disk is a whole disk with its partitions.
type Disk struct {
	BlockDev
	Parts []Part
}

// ByLabel returns the partition labelled label; GPT labels are unique on a piboot disk,
// and the first one wins if they are not.
func (d *Disk) ByLabel(label string) (Part, bool) {
	for _, p := range d.Parts {
		if p.Label == label {
			return p, true
		}
	}
	return Part{}, false
}

// ByUUID returns the partition with PARTUUID id.
func (d *Disk) ByUUID(id uuid.UUID) (Part, bool) {
	for _, p := range d.Parts {
		if p.UUID == id {
			return p, true
		}
	}
	return Part{}, false
}

// ErrNotOurs is wrapped by FindBootDisk's error when the disk the firmware booted from
// lacks the store label: waiting longer cannot help.
var ErrNotOurs = errors.New("not touching it")

// TableReader reads the partitions of a disk.
type TableReader func(d BlockDev) ([]Part, error)

// DefaultCandidates is piboot.disk's default: the Raspberry Pi's SD card shows up as
// mmcblk0 or mmcblk1 depending on the kernel and the device tree.
var DefaultCandidates = []string{"mmcblk0", "mmcblk1"}

// Options steer FindBootDisk.
type Options struct {
	SysfsDir   string // default "/sys"
	StoreLabel string // required: the partition label that marks our disk
	// LoaderPartUUID is systemd-boot's LoaderDevicePartUUID (uuid.Nil if unset).
	LoaderPartUUID uuid.UUID
	// Candidates are tried in order after the loader's disk (nil: DefaultCandidates;
	// "auto" alone: none, only the store label decides).
	Candidates []string
	// Timeout bounds the wait for late devices (default 10 s); Settle is how long
	// candidates keep priority over other labelled disks while some are still missing
	// (default 2 s, at most Timeout); Poll is the rescan interval (default 20 ms, or
	// 250 ms with Changed).
	Timeout, Settle, Poll time.Duration
	// Changed, when set, receives a value whenever block devices may have changed (a
	// uevent of the block subsystem): the scan waits for it instead of polling, so a disk
	// is looked at as soon as the kernel adds it. Poll then only covers a lost event.
	Changed <-chan struct{}
	// Start is when Timeout and Settle begin to count (default: now); a caller that was
	// still loading drivers when it first looked passes the time they were all in.
	Start     time.Time
	ReadTable TableReader // default: the GPT through /dev
	Logf      func(format string, args ...any)
	now       func() time.Time
	sleep     func(time.Duration)
}

// Found is the chosen boot disk.
type Found struct {
	Disk Disk
	// How names the rule that chose it: "LoaderDevicePartUUID", "piboot.disk=<name>" or
	// "store label".
	How string
	// Others lists other disks that also hold the store label (ignored, but worth a
	// line on the console).
	Others []string
}

// scanned is one disk with its table or the reason it has none.
type scanned struct {
	Disk
	err error
}

// NormalizeCandidates turns a piboot.disk value into device names ("auto" → none).
func NormalizeCandidates(v string) []string {
	if v == "" {
		return DefaultCandidates
	}
	var out []string
	for _, c := range strings.Split(v, ",") {
		c = strings.TrimPrefix(strings.TrimSpace(c), "/dev/")
		if c == "auto" {
			return []string{}
		}
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

// decide applies DESIGN.md's order to one scan. It returns the disk, or a fatal error
// (a disk that must not be touched was designated), or neither: wait and rescan.
// final is set on the last scan, when waiting is over and fallbacks apply.
func decide(disks []scanned, o *Options, elapsed time.Duration, final bool) (*Found, error) {
	labelled := func(d *scanned) bool {
		if d.err != nil {
			return false
		}
		_, ok := d.ByLabel(o.StoreLabel)
		return ok
	}
	others := func(chosen string) []string {
		var l []string
		for i := range disks {
			if disks[i].Name != chosen && labelled(&disks[i]) {
				l = append(l, disks[i].Name)
			}
		}
		return l
	}
	// (1) The disk systemd-boot was loaded from.
	if o.LoaderPartUUID != uuid.Nil {
		for i := range disks {
			d := &disks[i]
			if d.err != nil {
				continue
			}
			if p, ok := d.ByUUID(o.LoaderPartUUID); ok {
				if !labelled(d) {
					return nil, fmt.Errorf("disk %s holds the loader's partition %s (%d, %q) but no partition labelled %q; %w",
						d.Name, o.LoaderPartUUID, p.Index, p.Label, o.StoreLabel, ErrNotOurs)
				}
				return &Found{Disk: d.Disk, How: "LoaderDevicePartUUID", Others: others(d.Name)}, nil
			}
		}
		if !final {
			return nil, nil
		}
	}
	// (2) The candidates, in order.
	byName := map[string]*scanned{}
	for i := range disks {
		byName[disks[i].Name] = &disks[i]
	}
	missing := false
	for _, c := range o.Candidates {
		d, ok := byName[c]
		if !ok {
			missing = true
			continue
		}
		if labelled(d) {
			return &Found{Disk: d.Disk, How: "piboot.disk=" + c, Others: others(d.Name)}, nil
		}
	}
	// (3) Any disk with the store label, once the candidates had their chance.
	if missing && !final && elapsed < o.Settle {
		return nil, nil
	}
	for i := range disks {
		if labelled(&disks[i]) {
			return &Found{Disk: disks[i].Disk, How: "store label", Others: others(disks[i].Name)}, nil
		}
	}
	return nil, nil
}

// describe lists what a scan saw, for the error after a timeout.
func describe(disks []scanned) string {
	if len(disks) == 0 {
		return "no disks at all"
	}
	var parts []string
	for _, d := range disks {
		if d.err != nil {
			parts = append(parts, fmt.Sprintf("%s: %v", d.Name, d.err))
			continue
		}
		var labels []string
		for _, p := range d.Parts {
			labels = append(labels, fmt.Sprintf("%d:%q", p.Index, p.Label))
		}
		parts = append(parts, fmt.Sprintf("%s: %s", d.Name, strings.Join(labels, " ")))
	}
	return strings.Join(parts, "; ")
}

// FindBootDisk scans until it finds the boot disk (see DESIGN.md: the loader's disk,
// then the candidates, then any disk with the store label) or the timeout passes. A disk
// without a partition labelled StoreLabel is never chosen.
func FindBootDisk(o Options) (*Found, error) {
	if o.StoreLabel == "" {
		return nil, fmt.Errorf("find boot disk: no store label (piboot.store=) given")
	}
	if o.SysfsDir == "" {
		o.SysfsDir = "/sys"
	}
	if o.Candidates == nil {
		o.Candidates = DefaultCandidates
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Settle <= 0 {
		o.Settle = 2 * time.Second
	}
	if o.Settle > o.Timeout {
		o.Settle = o.Timeout
	}
	if o.Poll <= 0 {
		o.Poll = 20 * time.Millisecond
		if o.Changed != nil {
			o.Poll = 250 * time.Millisecond
		}
	}
	if o.ReadTable == nil {
		o.ReadTable = ReadGPT("/dev")
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.sleep == nil {
		o.sleep = time.Sleep
	}
	start := o.Start
	if start.IsZero() {
		start = o.now()
	}
	cache := map[string][]Part{} // successful reads: a table does not change while we wait
	seen := map[string]bool{}
	for {
		elapsed := o.now().Sub(start)
		final := elapsed >= o.Timeout
		devs, err := ScanDisks(o.SysfsDir)
		if err != nil {
			return nil, err
		}
		disks := make([]scanned, 0, len(devs))
		for _, bd := range devs {
			key := fmt.Sprintf("%s %s %d", bd.Name, bd.Dev, bd.Size)
			parts, ok := cache[key]
			var err error
			if !ok {
				if parts, err = o.ReadTable(bd); err == nil {
					cache[key] = parts
				}
			}
			if !seen[key] {
				seen[key] = true
				if err != nil {
					o.Logf("%s: %d bytes, %v", bd.Name, bd.Size, err)
				} else {
					o.Logf("%s: %d bytes, %d partitions", bd.Name, bd.Size, len(parts))
				}
			}
			disks = append(disks, scanned{Disk: Disk{BlockDev: bd, Parts: parts}, err: err})
		}
		f, err := decide(disks, &o, elapsed, final)
		if err != nil || f != nil {
			return f, err
		}
		if final {
			what := fmt.Sprintf("no disk has a partition labelled %q", o.StoreLabel)
			if o.LoaderPartUUID != uuid.Nil {
				what = fmt.Sprintf("the loader's partition %s is on no disk, and %s", o.LoaderPartUUID, what)
			}
			return nil, fmt.Errorf("%s after %s (seen: %s)", what, o.Timeout, describe(disks))
		}
		o.wait(nextWait(&o, elapsed))
	}
}

// nextWait is how long to wait before the next scan: the poll interval, but never past
// the end of the settle period or the timeout, when the rules change.
func nextWait(o *Options, elapsed time.Duration) time.Duration {
	d := o.Poll
	if rem := o.Settle - elapsed; rem > 0 && rem < d {
		d = rem
	}
	if rem := o.Timeout - elapsed; rem < d {
		d = rem
	}
	if d < 0 {
		d = 0
	}
	return d
}

// wait sleeps for d, or less when Changed fires.
func (o *Options) wait(d time.Duration) {
	if o.Changed == nil {
		o.sleep(d)
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-o.Changed:
	case <-t.C:
	}
}

// Labels returns the partition labels of d, sorted, for messages.
func (d *Disk) Labels() []string {
	var l []string
	for _, p := range d.Parts {
		l = append(l, p.Label)
	}
	sort.Strings(l)
	return l
}
