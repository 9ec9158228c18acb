package repart

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/sha2"
	"github.com/piboot/piboot/internal/uuid"
)

// Sizes systemd-repart 252 works with.
const (
	defaultMinSize = 10 << 20 // SizeMinBytes= when not given
	hardMinSize    = 4096
)

// minimalFSSize mirrors systemd's minimal_size_by_fs_name.
func minimalFSSize(format string) uint64 {
	switch format {
	case "ext4":
		return 1 << 20
	case "xfs":
		return 14 << 20
	case "btrfs":
		return 256 << 20
	}
	return Unset
}

// Disk is what Plan needs to know about the target: its size and its current table.
type Disk struct {
	Size  int64      // bytes
	Table *gpt.Table // from gpt.Read; carries the sector size
}

// Action says what Apply does with a partition.
type Action string

// Actions.
const (
	Create    Action = "create"
	Grow      Action = "resize"
	Unchanged Action = "unchanged"
)

// Partition is one partition of the planned table.
type Partition struct {
	Index      int       // 1-based partition number
	Type       uuid.UUID // type GUID
	TypeName   string    // systemd's name for Type, or the GUID
	Label      string
	UUID       uuid.UUID
	Offset     int64 // bytes from the start of the disk
	Size       int64 // bytes after the change
	OldSize    int64 // bytes before (0 for a new partition)
	Padding    int64 // free bytes planned after the partition
	OldPadding int64
	Attributes uint64
	Action     Action
	// Definition is the file that matched (nil for a foreign partition, never touched).
	Definition *Definition
	// Format and FSUUID are set for a new partition that gets a file system.
	Format string
	FSUUID uuid.UUID
}

// Layout is the outcome of Plan: the new table and what changes.
type Layout struct {
	DiskSize   int64
	SectorSize int
	Seed       uuid.UUID
	Partitions []Partition // in systemd's order: definitions first, then foreign partitions
	Dropped    []*Definition
	Old, New   *gpt.Table
	// Changed is systemd's notion: a partition is added or grows.
	Changed bool
	// Repair lists GPT problems a write fixes even when nothing else changes (a damaged copy).
	Repair []string
}

// Empty reports whether Apply has nothing to write.
func (p *Layout) Empty() bool { return !p.Changed && len(p.Repair) == 0 }

// part is systemd's struct Partition, the working state of planning.
type part struct {
	def      *Definition // nil: foreign
	typ      uuid.UUID
	exists   bool
	dropped  bool
	priority int32

	weight, paddingWeight                    uint64
	curSize, newSize                         uint64
	sizeMin, sizeMax, paddingMin, paddingMax uint64
	curPadding, newPadding                   uint64
	partno, offset                           uint64
	paddingArea, allocatedTo                 *area
	copyBlocksSize                           uint64

	curUUID, newUUID   uuid.UUID
	newUUIDSet         bool
	curLabel, newLabel string
	newLabelSet        bool
	format             string
	flags              uint64
	noAuto, ro, growfs Tristate
	existing           *gpt.Partition
}

type area struct {
	after           *part
	size, allocated uint64
}

type planner struct {
	parts       []*part
	areas       []*area
	start, end  uint64
	grain       uint64
	sectorSize  uint64
	seed        uuid.UUID
	largestFree uint64
}

// Plan computes, without any I/O, how disk must change to satisfy defs, as systemd-repart 252
// does: existing partitions are matched to definitions by type in order (the rest are foreign
// and never touched), new partitions go into free areas, space is shared by Weight and
// PaddingWeight within the size and padding limits on a 4096-byte grain, Priority groups are
// dropped when things do not fit, and new partitions get labels and UUIDs derived from seed.
func Plan(disk Disk, defs []Definition, seed uuid.UUID) (*Layout, error) {
	if disk.Table == nil {
		return nil, fmt.Errorf("repart: the disk has no GPT partition table")
	}
	old := disk.Table
	ss := uint64(old.SectorSize)
	if disk.Size < 0 || uint64(disk.Size) < 3*ss {
		return nil, fmt.Errorf("repart: a disk of %d bytes has no room for a GPT", disk.Size)
	}
	// An image file need not end on a sector boundary: like libfdisk, use the whole sectors
	// and leave the bytes after them alone.
	t := old.Clone()
	lastLBA := uint64(disk.Size)/ss - 1
	var repair []string
	if old.Status.BackupLBA != lastLBA {
		// As libfdisk does on open: the backup goes to the end of the device and the usable
		// area grows with it.
		if err := t.Resize(disk.Size); err != nil {
			return nil, fmt.Errorf("repart: %w", err)
		}
	}
	if !old.Status.PrimaryValid {
		repair = append(repair, "primary GPT is damaged: rewriting it from the backup")
	} else if !old.Status.BackupValid {
		repair = append(repair, "backup GPT is damaged or missing: rewriting it")
	}
	if !old.Status.MBRValid {
		// Without it the kernel does not read the GPT (unless booted with "gpt"): the
		// partitions piboot-init mounts would not appear.
		repair = append(repair, "protective MBR missing: writing one")
	}
	if t.DiskGUID == uuid.Nil {
		t.DiskGUID = deriveUUID(seed, "disk-uuid")
		repair = append(repair, "disk GUID is null: setting "+t.DiskGUID.String())
	}

	grain := max(ss, 4096)
	pl := &planner{grain: grain, sectorSize: ss, seed: seed}
	// One allocation for all the parts (a partition is matched to a definition or is foreign):
	// on a card's first boot every fresh heap page is a page fault.
	parts := make([]part, 0, len(defs)+len(t.Partitions))
	pl.parts = make([]*part, 0, cap(parts))
	for i := range defs {
		d := &defs[i]
		parts = append(parts, part{
			def: d, typ: d.Type, priority: d.Priority,
			weight: uint64(d.Weight), paddingWeight: uint64(d.PaddingWeight),
			curSize: Unset, newSize: Unset, curPadding: Unset, newPadding: Unset,
			sizeMin: d.SizeMin, sizeMax: d.SizeMax, paddingMin: d.PaddingMin, paddingMax: d.PaddingMax,
			partno: Unset, offset: Unset, copyBlocksSize: d.CopyBlocksSize,
			newUUID: d.UUID, newUUIDSet: d.UUIDSet, newLabel: d.Label, newLabelSet: d.LabelSet,
			format: d.Format, flags: d.Flags, noAuto: d.NoAuto, ro: d.ReadOnly, growfs: d.GrowFileSystem,
		})
		p := &parts[len(parts)-1]
		if d.CopyBlocks == "" {
			p.copyBlocksSize = Unset
		}
		pl.parts = append(pl.parts, p)
	}

	// Existing partitions, in slot order, each to the first unmatched definition of its type.
	leftBoundary := uint64(Unset)
	for i := range t.Partitions {
		e := &t.Partitions[i]
		start := e.FirstLBA * ss
		size := (e.LastLBA - e.FirstLBA + 1) * ss
		leftBoundary = min(leftBoundary, start)
		var match *part
		for _, p := range pl.parts {
			if p.def != nil && p.typ == e.Type && !p.exists {
				match = p
				break
			}
		}
		if match == nil {
			parts = append(parts, part{typ: e.Type, weight: 1000, newSize: Unset, newPadding: Unset,
				sizeMin: Unset, sizeMax: Unset, paddingMin: Unset, paddingMax: Unset, copyBlocksSize: Unset})
			match = &parts[len(parts)-1]
			pl.parts = append(pl.parts, match)
		}
		match.exists = true
		match.existing = e
		match.curUUID, match.curSize, match.offset = e.UUID, size, start
		match.partno = uint64(e.Index - 1)
		match.curLabel = e.Name
		match.curPadding = currentPadding(t, e, ss, grain)
		if match.curPadding > 0 {
			pl.addArea(match.curPadding, match)
		}
	}
	first := t.FirstUsableLBA * ss
	last := (t.LastUsableLBA + 1) * ss
	if leftBoundary == Unset {
		first, last = roundUp(first, grain), roundDown(last, grain)
		if last > first {
			pl.addArea(last-first, nil)
		}
	} else {
		first, lb := roundUp(first, grain), roundDown(leftBoundary, grain)
		last = roundDown(last, grain)
		if lb > first {
			pl.addArea(lb-first, nil)
		}
	}
	pl.start, pl.end = first, last

	for !pl.allocate() {
		if !pl.dropOnePriority() {
			return nil, pl.noFitError()
		}
	}
	pl.grow()
	pl.place()
	pl.acquireUUIDsAndLabels()

	plan := &Layout{DiskSize: disk.Size, SectorSize: int(ss), Seed: seed, Old: old, Repair: repair}
	for _, p := range pl.parts {
		if p.dropped {
			continue
		}
		if !p.exists || p.newSize != p.curSize {
			plan.Changed = true
		}
	}
	if plan.Changed && old.Status.BackupLBA != lastLBA {
		plan.Repair = append(plan.Repair, fmt.Sprintf("backup GPT moves to the end of the disk (LBA %d)", lastLBA))
	}
	newT := t.Clone()
	newT.Status = gpt.Status{}
	newT.Partitions = slices.Grow(newT.Partitions, len(pl.parts)-len(newT.Partitions))
	plan.Partitions = make([]Partition, 0, len(pl.parts))
	for _, p := range pl.parts {
		if p.dropped {
			if p.def != nil {
				plan.Dropped = append(plan.Dropped, p.def)
			}
			continue
		}
		q := Partition{
			Index: int(p.partno) + 1, Type: p.typ, TypeName: gpt.TypeName(p.typ),
			Offset: int64(p.offset), Size: int64(p.newSize), Padding: int64(p.newPadding),
			Definition: p.def, Action: Unchanged, Label: p.newLabel, UUID: p.newUUID,
		}
		if p.exists {
			q.OldSize, q.OldPadding, q.Attributes = int64(p.curSize), int64(p.curPadding), p.existing.Attributes
			if p.newSize != p.curSize {
				q.Action = Grow
			}
			if !plan.Changed {
				// systemd writes nothing, so labels/UUIDs of existing partitions stay as they are.
				q.Label, q.UUID = p.curLabel, p.curUUID
			}
			e := newT.Partition(int(p.partno) + 1)
			e.LastLBA = (p.offset+p.newSize)/ss - 1
			e.Name, e.UUID = q.Label, q.UUID
		} else {
			q.Action = Create
			q.Attributes = mergeFlags(p)
			if p.format != "" {
				q.Format = p.format
				q.FSUUID = deriveUUID(p.newUUID, "file-system-uuid")
			}
			if q.Index > int(newT.EntryCount) {
				return nil, fmt.Errorf("repart: %s: partition number %d exceeds the %d entries of the GPT", p.def.Path, q.Index, newT.EntryCount)
			}
			newT.Partitions = append(newT.Partitions, gpt.Partition{
				Index: q.Index, Type: p.typ, UUID: p.newUUID, Name: p.newLabel, Attributes: q.Attributes,
				FirstLBA: p.offset / ss, LastLBA: (p.offset+p.newSize)/ss - 1,
			})
		}
		plan.Partitions = append(plan.Partitions, q)
	}
	slices.SortFunc(newT.Partitions, func(a, b gpt.Partition) int { return a.Index - b.Index })
	if !plan.Changed {
		// Nothing to add or grow: the table stays as it is (moved to the end of the disk only
		// if it needs a repair anyway).
		newT = t.Clone()
		newT.Status = gpt.Status{}
	}
	plan.New = newT
	return plan, nil
}

func (pl *planner) addArea(size uint64, after *part) {
	a := &area{size: size, after: after}
	pl.areas = append(pl.areas, a)
	if after != nil {
		after.paddingArea = a
	}
}

// currentPadding is systemd's determine_current_padding: the grain-aligned free space between
// e's end and the next partition (or the end of the usable area).
func currentPadding(t *gpt.Table, e *gpt.Partition, ss, grain uint64) uint64 {
	offset := (e.LastLBA + 1) * ss
	next := uint64(Unset)
	for _, q := range t.Partitions {
		start := q.FirstLBA * ss
		if start >= offset && start < next {
			next = start
		}
	}
	if next == Unset {
		next = (t.LastUsableLBA + 1) * ss
	}
	offset, next = roundUp(offset, grain), roundDown(next, grain)
	if next > offset {
		return next - offset
	}
	return 0
}

func (pl *planner) minSize(p *part) uint64 {
	if p.def == nil {
		return p.curSize
	}
	sz := uint64(hardMinSize)
	if p.curSize != Unset {
		sz = p.curSize
	}
	if !p.exists {
		d := uint64(0)
		if p.copyBlocksSize != Unset {
			d += roundUp(p.copyBlocksSize, pl.grain)
		} else if p.format != "" {
			f := minimalFSSize(p.format)
			if f == Unset {
				d += pl.grain
			} else {
				d += roundUp(f, pl.grain)
			}
		}
		sz = max(sz, d)
	}
	m := p.sizeMin
	if m == Unset {
		m = defaultMinSize
	}
	return max(roundUp(m, pl.grain), sz)
}

func (pl *planner) maxSize(p *part) uint64 {
	if p.def == nil {
		return p.curSize
	}
	if p.sizeMax == Unset {
		return Unset
	}
	sm := roundDown(p.sizeMax, pl.grain)
	if p.curSize != Unset {
		sm = max(p.curSize, sm)
	}
	return max(pl.minSize(p), sm)
}

func minPadding(p *part) uint64 {
	if p.paddingMin == Unset {
		return 0
	}
	return p.paddingMin
}

func (pl *planner) minSizeWithPadding(p *part) uint64 {
	sz := pl.minSize(p) + minPadding(p)
	if p.exists {
		return roundUp(p.offset+sz, pl.grain) - p.offset
	}
	return roundUp(sz, pl.grain)
}

func (a *area) available() uint64 { return a.size - a.allocated }

func (pl *planner) currentEnd(a *area) uint64 {
	if a.after == nil {
		return a.available()
	}
	return roundUp(a.after.offset+a.after.curSize, pl.grain) + a.available()
}

func (pl *planner) minEnd(a *area) uint64 {
	if a.after == nil {
		return 0
	}
	return roundUp(a.after.offset+pl.minSizeWithPadding(a.after), pl.grain)
}

func (pl *planner) availableForNew(a *area) uint64 {
	return lessBy(pl.currentEnd(a), pl.minEnd(a))
}

func lessBy(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return 0
}

func (pl *planner) chargeSize(total, amount uint64) uint64 {
	return lessBy(total, roundUp(amount, pl.grain))
}

// allocate is systemd's first-fit context_allocate_partitions.
func (pl *planner) allocate() bool {
	for _, a := range pl.areas {
		a.allocated = 0
	}
	// glibc's qsort_r is a stable merge sort for arrays this small.
	sort.SliceStable(pl.areas, func(i, j int) bool {
		return pl.availableForNew(pl.areas[i]) < pl.availableForNew(pl.areas[j])
	})
	pl.largestFree = 0
	if n := len(pl.areas); n > 0 {
		pl.largestFree = pl.availableForNew(pl.areas[n-1])
	}
	for _, a := range pl.areas {
		if pl.currentEnd(a) < pl.minEnd(a) {
			return false
		}
	}
	for _, p := range pl.parts {
		if p.dropped || p.exists {
			continue
		}
		required := pl.minSizeWithPadding(p)
		var fit *area
		for _, a := range pl.areas {
			if pl.availableForNew(a) >= required {
				fit = a
				break
			}
		}
		if fit == nil {
			return false
		}
		p.allocatedTo = fit
		fit.allocated += required
	}
	return true
}

func (pl *planner) dropOnePriority() bool {
	var prio int32
	for _, p := range pl.parts {
		if !p.dropped {
			prio = max(prio, p.priority)
		}
	}
	if prio <= 0 {
		return false
	}
	for _, p := range pl.parts {
		if p.priority < prio || p.dropped || p.def == nil {
			continue
		}
		if p.exists {
			// An existing partition that cannot grow as defined is left alone, like a foreign one.
			*p = part{typ: p.typ, exists: true, existing: p.existing, weight: 1000,
				curSize: p.curSize, newSize: Unset, curPadding: p.curPadding, newPadding: Unset,
				sizeMin: Unset, sizeMax: Unset, paddingMin: Unset, paddingMax: Unset, copyBlocksSize: Unset,
				partno: p.partno, offset: p.offset, paddingArea: p.paddingArea,
				curUUID: p.curUUID, curLabel: p.curLabel}
		} else {
			p.dropped = true
			p.allocatedTo = nil
		}
	}
	return true
}

func (pl *planner) noFitError() error {
	var need uint64
	var names []string
	for _, p := range pl.parts {
		if p.dropped || p.exists {
			continue
		}
		need += pl.minSizeWithPadding(p)
		names = append(names, fmt.Sprintf("%s (%s)", p.def.Name(), formatBytes(pl.minSizeWithPadding(p))))
	}
	for _, a := range pl.areas {
		if pl.currentEnd(a) < pl.minEnd(a) {
			return fmt.Errorf("repart: existing partition %d (%s) cannot grow to its minimum size: %d bytes (%s) missing",
				a.after.partno+1, a.after.curLabel, pl.minEnd(a)-pl.currentEnd(a), formatBytes(pl.minEnd(a)-pl.currentEnd(a)))
		}
	}
	missing := lessBy(need, pl.largestFree)
	if missing == 0 {
		missing = pl.grain // they fit in total, but not each into one free area
	}
	return fmt.Errorf("repart: can't fit the new partitions %s: they need %d bytes (%s), the largest free area has %d bytes (%s): %d bytes (%s) missing",
		strings.Join(names, ", "), need, formatBytes(need), pl.largestFree, formatBytes(pl.largestFree), missing, formatBytes(missing))
}

// scaleByWeight is systemd's overflow-safe value*weight/weightSum.
func scaleByWeight(value, weight, weightSum uint64) uint64 {
	for {
		if weight == 0 {
			return 0
		}
		if weight == weightSum {
			return value
		}
		if value <= Unset/weight {
			return value * weight / weightSum
		}
		weightSum = (weightSum + 1) / 2
		weight /= 2
	}
}

func clamp(x, lo, hi uint64) uint64 {
	if x > hi {
		return hi
	}
	if x < lo {
		return lo
	}
	return x
}

const (
	phaseForeign = iota
	phaseOvercharge
	phaseUndercharge
	phaseDistribute
	phaseMax
)

func (pl *planner) growPhase(a *area, phase int, span, weightSum *uint64) bool {
	again := false
	for _, p := range pl.parts {
		if p.allocatedTo != a && p.paddingArea != a {
			continue
		}
		if p.newSize == Unset {
			share := scaleByWeight(*span, p.weight, *weightSum)
			rsz, xsz := pl.minSize(p), pl.maxSize(p)
			charge := false
			switch {
			case phase == phaseForeign && p.def == nil:
				p.newSize = p.curSize
				charge = true
			case phase == phaseOvercharge && rsz > share:
				p.newSize = rsz
				charge, again = true, true
			case phase == phaseUndercharge && xsz < share:
				p.newSize = xsz
				charge, again = true, true
			case phase == phaseDistribute:
				p.newSize = clamp(roundDown(share, pl.grain), rsz, xsz)
				charge = true
			}
			if charge {
				*span = pl.chargeSize(*span, p.newSize)
				*weightSum -= p.weight
			}
		}
		if p.newPadding == Unset {
			share := scaleByWeight(*span, p.paddingWeight, *weightSum)
			rsz, xsz := minPadding(p), p.paddingMax
			charge := false
			switch {
			case phase == phaseOvercharge && rsz > share:
				p.newPadding = rsz
				charge, again = true, true
			case phase == phaseUndercharge && xsz < share:
				p.newPadding = xsz
				charge, again = true, true
			case phase == phaseDistribute:
				p.newPadding = clamp(roundDown(share, pl.grain), rsz, xsz)
				charge = true
			}
			if charge {
				*span = pl.chargeSize(*span, p.newPadding)
				*weightSum -= p.paddingWeight
			}
		}
	}
	return !again
}

func (pl *planner) growOne(a *area, p *part, span *uint64) {
	if *span == 0 || p.allocatedTo != a || p.def == nil {
		return
	}
	m := roundDown(p.newSize+*span, pl.grain)
	m = max(m, p.newSize)
	m = min(m, pl.maxSize(p))
	*span = pl.chargeSize(*span, m-p.newSize)
	p.newSize = m
}

func (pl *planner) grow() {
	for _, a := range pl.areas {
		var weightSum uint64
		for _, p := range pl.parts {
			if p.paddingArea == a || p.allocatedTo == a {
				weightSum += p.weight + p.paddingWeight
			}
		}
		span := a.size
		if a.after != nil {
			span += roundUp(a.after.offset+a.after.curSize, pl.grain) - a.after.offset
		}
		for phase := phaseForeign; phase < phaseMax; {
			if pl.growPhase(a, phase, &span, &weightSum) {
				phase++
			}
		}
		if span > 0 && a.after != nil {
			pl.growOne(a, a.after, &span)
		}
		for _, p := range pl.parts {
			if span == 0 {
				break
			}
			pl.growOne(a, p, &span)
		}
		if span > 0 && a.after != nil {
			a.after.newPadding += span
		}
	}
	for _, p := range pl.parts {
		if p.dropped || !p.exists || p.paddingArea != nil {
			continue
		}
		p.newSize, p.newPadding = p.curSize, p.curPadding
	}
}

func (pl *planner) place() {
	var partno uint64
	for _, p := range pl.parts {
		if p.exists && p.partno >= partno {
			partno = p.partno + 1
		}
	}
	for _, a := range pl.areas {
		start := pl.start
		if a.after != nil {
			start = a.after.offset + a.after.newSize + a.after.newPadding
		}
		start = roundUp(start, pl.grain)
		for _, p := range pl.parts {
			if p.allocatedTo != a {
				continue
			}
			p.offset, p.partno = start, partno
			partno++
			start += p.newSize + p.newPadding
		}
	}
}

func (pl *planner) acquireUUIDsAndLabels() {
	for i, p := range pl.parts {
		if p.def == nil {
			p.newUUID, p.newLabel = p.curUUID, p.curLabel
			continue
		}
		if p.curUUID != uuid.Nil {
			p.newUUID = p.curUUID
		} else if !p.newUUIDSet {
			p.newUUID = pl.partitionUUID(i)
			p.newUUIDSet = true
		}
		if p.curLabel != "" {
			p.newLabel = p.curLabel
		} else if !p.newLabelSet {
			p.newLabel = pl.partitionLabel(i)
			p.newLabelSet = true
		}
	}
}

// partitionUUID is HMAC-SHA256(seed, type GUID [|| LE64 instance]) made a v4 UUID, where the
// instance counts earlier partitions of the same type.
func (pl *planner) partitionUUID(i int) uuid.UUID {
	p := pl.parts[i]
	var k uint64
	for _, q := range pl.parts[:i] {
		if q.typ == p.typ {
			k++
		}
	}
	msg := append([]byte(nil), p.typ[:]...)
	if k > 0 {
		msg = binary.LittleEndian.AppendUint64(msg, k)
	}
	id := hmacUUID(pl.seed, msg)
	for j, q := range pl.parts {
		if j != i && (id == q.curUUID || (q.newUUIDSet && id == q.newUUID)) {
			// systemd falls back to a random UUID when the derived one is taken.
			return uuid.New()
		}
	}
	return id
}

func (pl *planner) partitionLabel(i int) string {
	p := pl.parts[i]
	prefix := "linux"
	if t, ok := gpt.TypeByGUID(p.typ); ok {
		prefix = t.Name
	}
	label := prefix
	for k := 1; ; {
		taken := false
		for _, q := range pl.parts[:i] {
			if label == q.curLabel || label == q.newLabel {
				taken = true
				break
			}
		}
		if !taken {
			return label
		}
		k++
		label = fmt.Sprintf("%s-%d", prefix, k)
	}
}

func hmacUUID(key uuid.UUID, msg []byte) uuid.UUID {
	sum := sha2.HMAC256(key[:], msg)
	var id uuid.UUID
	copy(id[:], sum[:])
	id[6] = id[6]&0x0F | 0x40
	id[8] = id[8]&0x3F | 0x80
	return id
}

// deriveUUID is systemd's derive_uuid: HMAC-SHA256 keyed by base over token, as a v4 UUID.
// The file system UUID of a new partition is deriveUUID(partition UUID, "file-system-uuid").
func deriveUUID(base uuid.UUID, token string) uuid.UUID { return hmacUUID(base, []byte(token)) }

// FileSystemUUID returns the file system UUID systemd-repart gives a new partition.
func FileSystemUUID(partitionUUID uuid.UUID) uuid.UUID {
	return deriveUUID(partitionUUID, "file-system-uuid")
}

func mergeFlags(p *part) uint64 {
	f := p.flags
	set := func(bit uint64, t Tristate) {
		if t == Yes {
			f |= bit
		} else if t == No {
			f &^= bit
		}
	}
	if knowsNoAuto(p.typ) {
		set(gpt.AttrNoAuto, p.noAuto)
	}
	if knowsReadOnly(p.typ) {
		set(gpt.AttrReadOnly, p.ro)
	}
	if knowsGrowFS(p.typ) {
		set(gpt.AttrGrowFS, p.growfs)
	}
	return f
}

// formatBytes prints sizes the way systemd's FORMAT_BYTES does: 1024-based, one truncated
// decimal.
func formatBytes(b uint64) string {
	units := []string{"E", "P", "T", "G", "M", "K"}
	for i, u := range units {
		f := uint64(1) << (10 * (len(units) - i))
		if b >= f {
			return fmt.Sprintf("%d.%d%s", b/f, b*10/f%10, u)
		}
	}
	return fmt.Sprintf("%dB", b)
}
