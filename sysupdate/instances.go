package sysupdate

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/uuid"
)

// App IDs from which systemd (v260+) derives the partition types that mark a slot being
// written ("partial") and a slot written but not yet installed ("pending").
var (
	partialAppID = uuid.MustParse("accfa0c2-da24-460a-9fc9-0bb8fc785219")
	pendingAppID = uuid.MustParse("80f3d61e-2383-43b9-81f5-ce3793f47d4c")
)

// appSpecific is sd_id128_get_app_specific: HMAC-SHA256 keyed with base, over app, cut to 16
// bytes and stamped as a v4 UUID. uuid.UUID holds the bytes in string order, as sd_id128_t.
func appSpecific(base, app uuid.UUID) uuid.UUID {
	m := hmac.New(sha256.New, base[:])
	m.Write(app[:])
	var u uuid.UUID
	copy(u[:], m.Sum(nil))
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// PartialType and PendingType are the derived partition types of a slot of type t while it
// is written, and once written but not installed.
func PartialType(t uuid.UUID) uuid.UUID { return appSpecific(t, partialAppID) }

// PendingType: see PartialType.
func PendingType(t uuid.UUID) uuid.UUID { return appSpecific(t, pendingAppID) }

// State of an instance on the target.
type State int

// Instance states.
const (
	Installed State = iota
	Partial         // being written, or cut while written: never a version
	Pending         // written and checked, not yet installed
)

func (s State) String() string {
	return [...]string{"installed", "partial", "pending"}[s]
}

// Instance is one version on a target: a partition or a file.
type Instance struct {
	Version string
	Name    string // partition label or file name
	State   State
	Props   Properties
	// Partition targets.
	Index int
	Size  int64
	// File targets.
	Path string
}

// EmptyLabel marks a free partition slot.
const EmptyLabel = "_empty"

// partitionScan is what a partition target holds.
type partitionScan struct {
	instances []Instance
	free      []Instance // slots labelled _empty with the real type, smallest first
}

func scanPartitions(tbl *gpt.Table, r *Resource) partitionScan {
	var s partitionScan
	partial, pending := PartialType(r.PartitionType), PendingType(r.PartitionType)
	for _, p := range tbl.Partitions {
		var st State
		switch p.Type {
		case r.PartitionType:
			st = Installed
		case partial:
			st = Partial
		case pending:
			st = Pending
		default:
			continue
		}
		in := Instance{Name: p.Name, State: st, Index: p.Index, Size: p.Size(tbl.SectorSize)}
		if st == Installed && p.Name == EmptyLabel {
			s.free = append(s.free, in)
			continue
		}
		props, ok := r.Patterns.Match(p.Name)
		if !ok {
			if st == Installed {
				continue // some other partition of the same type (not ours)
			}
			// A derived type is only ever set by an update: a leftover, whatever its label.
		}
		in.Version, in.Props = props.Version, props
		s.instances = append(s.instances, in)
	}
	sort.SliceStable(s.free, func(i, j int) bool { return s.free[i].Size < s.free[j].Size })
	return s
}

// File leftovers of the rename ladder: .sysupdate.partial.<name>, .sysupdate.pending.<name>,
// and older systemd's .#sysupdate<name><random>.
const (
	partialPrefix = ".sysupdate.partial."
	pendingPrefix = ".sysupdate.pending."
	oldTmpPrefix  = ".#"
)

// scanFiles lists the instances in a file target's directory: regular files, or
// directories for directory targets, and the leftovers of either.
func scanFiles(dir string, r *Resource, dirs bool) ([]Instance, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Instance
	for _, e := range ents {
		n := e.Name()
		st, base := Installed, n
		switch {
		case strings.HasPrefix(n, partialPrefix):
			st, base = Partial, strings.TrimPrefix(n, partialPrefix)
		case strings.HasPrefix(n, pendingPrefix):
			st, base = Pending, strings.TrimPrefix(n, pendingPrefix)
		case strings.HasPrefix(n, oldTmpPrefix):
			st, base = Partial, strings.TrimPrefix(n, oldTmpPrefix)
		}
		props, ok := r.Patterns.Match(base)
		if !ok {
			if st == Installed || !strings.HasPrefix(base, "sysupdate") {
				continue
			}
		}
		if st == Installed && (dirs && !e.IsDir() || !dirs && !e.Type().IsRegular()) {
			continue
		}
		out = append(out, Instance{Version: props.Version, Name: n, State: st, Props: props, Path: filepath.Join(dir, n)})
	}
	return out, nil
}

// vacuumPlan picks the instances to remove so that at most keep installed ones remain:
// first every partial or pending one, then the oldest, never a protected version, and never
// the last installed one.
func vacuumPlan(instances []Instance, keep int, protected map[string]bool) (remove []Instance, remain int) {
	var installed []Instance
	for _, in := range instances {
		if in.State != Installed {
			remove = append(remove, in)
			continue
		}
		installed = append(installed, in)
	}
	sort.SliceStable(installed, func(i, j int) bool {
		return CompareVersions(installed[i].Version, installed[j].Version) < 0
	})
	remain = len(installed)
	for _, in := range installed {
		if remain <= keep || remain <= 1 {
			break
		}
		if protected[in.Version] {
			continue
		}
		remove = append(remove, in)
		remain--
	}
	return remove, remain
}

// describe lists instance versions for messages.
func describe(ins []Instance) string {
	var s []string
	for _, in := range ins {
		v := in.Version
		if v == "" {
			v = "?"
		}
		if in.State != Installed {
			v += " (" + in.State.String() + ")"
		}
		s = append(s, fmt.Sprintf("%s [%s]", v, in.Name))
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
