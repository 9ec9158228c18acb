package sysupdate

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf16"

	"github.com/klauspost/compress/zstd"
	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/internal/uuid"
	"github.com/ulikunitz/xz"
)

// Updater runs list, check-new, update and vacuum over a set of transfers.
type Updater struct {
	Transfers []*Transfer
	// Source, when set, replaces the Path= of every transfer's source (--source).
	Source Source
	// SourceOptions apply to the transfers' own Path= sources.
	SourceOptions SourceOptions
	// Root is the file system the transfers act on ("" or "/" on the device).
	Root string
	// Disk is the block device or image that Path=auto means; "" finds the disk holding
	// Root's file system.
	Disk string
	// ESP is where the ESP (or XBOOTLDR) is mounted, for PathRelativeTo=esp|boot|xbootldr;
	// "" looks for /efi, /boot/efi and /boot below Root.
	ESP string
	// Booted is the running version, which is never removed.
	Booted string
	// Keyring overrides the keyring search (KeyringPaths below Root).
	Keyring string
	// Log receives one line per step; nil discards.
	Log io.Writer
	// Progress, when set, gets the downloaded (compressed) bytes of each payload.
	Progress func(name string, size int64) io.Writer

	// restore remounts what writable() made read-write.
	restore []func() error
	// locks are the disks locked for this operation.
	locks map[string]*os.File
	// sources are the transfers' sources by Path=, opened once.
	sources map[string]Source

	// step is called before every durable write; an error aborts there, as a power cut
	// would (tests inject crashes through it).
	step func(what string) error
	// writeStats, when set, sees each partition payload's writer after the write (tests).
	writeStats func(*diskWriter)
}

func (u *Updater) logf(format string, a ...any) {
	if u.Log != nil {
		fmt.Fprintf(u.Log, format+"\n", a...)
	}
}

func (u *Updater) doStep(what string) error {
	if u.step != nil {
		return u.step(what)
	}
	return nil
}

// writable makes dir's file system writable for the rest of the operation.
// startInDir prepares j's target directory for a new version: writable, created, the
// step logged (what: a format taking the source file and the final path) and the
// crash-test hook passed; it returns the partial and pending names in it.
func (u *Updater) startInDir(j *job, what string) (partial, pending string, err error) {
	tg := j.tg
	if err := u.writable(tg.dir); err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(tg.dir, 0o755); err != nil {
		return "", "", err
	}
	partial = filepath.Join(tg.dir, partialPrefix+j.name)
	pending = filepath.Join(tg.dir, pendingPrefix+j.name)
	u.logf("%s: "+what, tg.t.Name, j.file, filepath.Join(tg.dir, j.name))
	if err := u.doStep("create " + partial); err != nil {
		return "", "", err
	}
	return partial, pending, nil
}

func (u *Updater) writable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			dir = d
			break
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	r, err := makeWritable(dir)
	if err != nil {
		return err
	}
	if r != nil {
		u.restore = append(u.restore, r)
	}
	return nil
}

// lock locks tg's disk for the rest of the operation (partition targets only).
func (u *Updater) lock(tg *target) error {
	if tg.disk == "" || u.locks[tg.disk] != nil {
		return nil
	}
	f, err := lockDisk(tg.disk)
	if err != nil {
		return err
	}
	if u.locks == nil {
		u.locks = map[string]*os.File{}
	}
	u.locks[tg.disk] = f
	return nil
}

// done puts read-only file systems back and drops the locks; errors join the operation's.
func (u *Updater) done(err *error) {
	for _, f := range u.locks {
		f.Close()
	}
	u.locks = nil
	for i := len(u.restore) - 1; i >= 0; i-- {
		if rerr := u.restore[i](); rerr != nil && *err == nil {
			*err = rerr
		}
	}
	u.restore = nil
}

func (u *Updater) root() string {
	if u.Root == "" {
		return "/"
	}
	return u.Root
}

func (u *Updater) source(t *Transfer) (Source, error) {
	if u.Source != nil {
		return u.Source, nil
	}
	if s := u.sources[t.Source.Path]; s != nil {
		return s, nil
	}
	s, err := OpenSourceWith(t.Source.Path, u.SourceOptions)
	if err != nil {
		return nil, err
	}
	if u.sources == nil {
		u.sources = map[string]Source{}
	}
	u.sources[t.Source.Path] = s
	return s, nil
}

// Available holds what the sources offer.
type Available struct {
	Manifests map[string]Manifest // by source
	// Files[i] maps version → file name for transfer i.
	Files []map[string]string
	// Versions offered by every transfer, newest first.
	Versions []string
}

// FetchAvailable reads each transfer's manifest (verifying its signature unless the
// transfer says Verify=no) and finds the versions every transfer can supply.
func (u *Updater) FetchAvailable(ctx context.Context) (*Available, error) {
	av := &Available{Manifests: map[string]Manifest{}}
	verify := map[string]bool{}
	srcs := make([]Source, len(u.Transfers))
	for i, t := range u.Transfers {
		if listed(t.Source.Type) {
			continue
		}
		s, err := u.source(t)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.File, err)
		}
		srcs[i] = s
		verify[s.String()] = verify[s.String()] || t.Verify
	}
	keyring := u.Keyring
	for i, t := range u.Transfers {
		if listed(t.Source.Type) {
			files, err := u.listSource(t)
			if err != nil {
				return nil, err
			}
			av.Files = append(av.Files, files)
			continue
		}
		key := srcs[i].String()
		if _, done := av.Manifests[key]; !done {
			if verify[key] && keyring == "" {
				k, err := FindKeyring(u.root())
				if err != nil {
					return nil, err
				}
				keyring = k
			}
			m, err := FetchManifest(ctx, srcs[i], verify[key], keyring)
			if err != nil {
				return nil, err
			}
			av.Manifests[key] = m
		}
		files := map[string]string{}
		for name := range av.Manifests[key] {
			props, ok := t.Source.Patterns.Match(name)
			if !ok || (t.MinVersion != "" && CompareVersions(props.Version, t.MinVersion) < 0) {
				continue
			}
			if prev, dup := files[props.Version]; dup && prev < name {
				continue // two files for one version: take a stable choice
			}
			files[props.Version] = name
		}
		av.Files = append(av.Files, files)
	}
	if len(av.Files) > 0 {
		for v := range av.Files[0] {
			all := true
			for _, f := range av.Files[1:] {
				if _, ok := f[v]; !ok {
					all = false
				}
			}
			if all {
				av.Versions = append(av.Versions, v)
			}
		}
	}
	sortNewestFirst(av.Versions)
	return av, nil
}

// localDir is where a listed (local) source's versions are: Path= below Root, or the
// --source directory.
func (u *Updater) localDir(t *Transfer) (string, error) {
	if u.Source != nil {
		d, ok := u.Source.(dirSource)
		if !ok {
			return "", fmt.Errorf("%s: [Source] Type=%s reads a local directory, not %s", t.File, t.Source.Type, u.Source)
		}
		return string(d), nil
	}
	return filepath.Join(u.root(), t.Source.Path), nil
}

// listSource maps version → name for a local source: the files (regular-file, tar) or
// directories (directory, subvolume) in its directory that match its patterns.
func (u *Updater) listSource(t *Transfer) (map[string]string, error) {
	dir, err := u.localDir(t)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: [Source] Path=: %w", t.File, err)
	}
	wantDir := t.Source.Type == TypeDirectory || t.Source.Type == TypeSubvolume
	files := map[string]string{}
	for _, e := range ents {
		props, ok := t.Source.Patterns.Match(e.Name())
		if !ok || (t.MinVersion != "" && CompareVersions(props.Version, t.MinVersion) < 0) {
			continue
		}
		st, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil || st.IsDir() != wantDir || (!wantDir && !st.Mode().IsRegular()) {
			continue
		}
		if prev, dup := files[props.Version]; dup && prev < e.Name() {
			continue
		}
		files[props.Version] = e.Name()
	}
	return files, nil
}

func sortNewestFirst(vs []string) {
	sort.SliceStable(vs, func(i, j int) bool { return CompareVersions(vs[i], vs[j]) > 0 })
}

// target is one transfer's view of its target.
type target struct {
	t   *Transfer
	dir string // file targets

	disk string // partition targets
	tbl  *gpt.Table
	size int64
	scan partitionScan

	instances []Instance
}

func (u *Updater) openTarget(t *Transfer) (*target, error) {
	tg := &target{t: t}
	switch t.Target.Type {
	case TypePartition:
		disk := t.Target.Path
		if disk == "auto" {
			disk = u.Disk
			if disk == "" {
				d, err := RootDisk(u.root())
				if err != nil {
					return nil, fmt.Errorf("%s: Path=auto: %w", t.File, err)
				}
				disk = d
			}
		}
		tg.disk = disk
		f, err := os.Open(disk)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.File, err)
		}
		defer f.Close()
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			return nil, fmt.Errorf("%s: size of %s: %w", t.File, disk, err)
		}
		tbl, err := gpt.Read(f, size, 0)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", t.File, disk, err)
		}
		tg.tbl, tg.size = tbl, size
		tg.scan = scanPartitions(tbl, &t.Target)
		tg.instances = tg.scan.instances
	case TypeRegularFile, TypeDirectory:
		dir, err := u.targetDir(t)
		if err != nil {
			return nil, err
		}
		tg.dir = dir
		if tg.instances, err = scanFiles(dir, &t.Target, t.Target.Type == TypeDirectory); err != nil {
			return nil, fmt.Errorf("%s: %w", t.File, err)
		}
	}
	return tg, nil
}

func (u *Updater) targetDir(t *Transfer) (string, error) {
	switch t.Target.PathRelativeTo {
	case "", "root":
		return filepath.Join(u.root(), t.Target.Path), nil
	}
	esp := u.ESP
	if esp == "" {
		var err error
		if esp, err = FindESP(u.root()); err != nil {
			return "", fmt.Errorf("%s: PathRelativeTo=%s: %w (pass --esp)", t.File, t.Target.PathRelativeTo, err)
		}
	}
	return filepath.Join(esp, t.Target.Path), nil
}

// keep is InstancesMax for this target: the transfer's, else the number of slots for
// partitions and 3 for files.
func (tg *target) keep() int {
	if tg.t.InstancesMax > 0 {
		return tg.t.InstancesMax
	}
	if tg.t.Target.Type == TypePartition {
		return max(2, len(tg.scan.free)+len(tg.instances))
	}
	return 3
}

func (tg *target) installed(v string) bool {
	for _, in := range tg.instances {
		if in.State == Installed && in.Version == v {
			return true
		}
	}
	return false
}

// Installed returns, per transfer, what its target holds.
func (u *Updater) Installed() ([][]Instance, error) {
	var out [][]Instance
	for _, t := range u.Transfers {
		tg, err := u.openTarget(t)
		if err != nil {
			return nil, err
		}
		out = append(out, tg.instances)
	}
	return out, nil
}

// VersionInfo is one line of `piboot update list`.
type VersionInfo struct {
	Version   string
	Available bool // every transfer's source offers it
	Installed bool // every transfer's target holds it
	Partial   bool // some target holds a partial or pending instance of it
	Booted    bool
	Protected bool
	// Bad: a boot-counted entry with no tries left (systemd-boot skips it).
	Bad bool
}

// List combines what the sources offer (if reachable; av may be nil) and what is installed,
// newest first.
func (u *Updater) List(av *Available) ([]VersionInfo, error) {
	inst, err := u.Installed()
	if err != nil {
		return nil, err
	}
	byV := map[string]*VersionInfo{}
	get := func(v string) *VersionInfo {
		if byV[v] == nil {
			byV[v] = &VersionInfo{Version: v, Booted: v == u.Booted}
		}
		return byV[v]
	}
	if av != nil {
		for _, v := range av.Versions {
			get(v).Available = true
		}
	}
	count := map[string]int{}
	for _, ins := range inst {
		seen := map[string]bool{}
		for _, in := range ins {
			if in.Version == "" {
				continue
			}
			if in.State != Installed {
				get(in.Version).Partial = true
				continue
			}
			if in.Props.TriesLeft != nil && *in.Props.TriesLeft == 0 {
				get(in.Version).Bad = true
			}
			if !seen[in.Version] {
				seen[in.Version] = true
				count[in.Version]++
			}
		}
	}
	for v, n := range count {
		get(v).Installed = n == len(inst)
	}
	for _, t := range u.Transfers {
		for _, p := range t.ProtectVersion {
			if vi := byV[p]; vi != nil {
				vi.Protected = true
			}
		}
	}
	var out []VersionInfo
	for _, vi := range byV {
		out = append(out, *vi)
	}
	sort.Slice(out, func(i, j int) bool { return CompareVersions(out[i].Version, out[j].Version) > 0 })
	return out, nil
}

// newestInstalled is the newest version every target holds ("" if none).
func newestInstalled(list []VersionInfo) string {
	for _, vi := range list {
		if vi.Installed {
			return vi.Version
		}
	}
	return ""
}

// CheckNew returns the newest available version that is newer than every installed one, or
// "" when the system is up to date.
func (u *Updater) CheckNew(ctx context.Context) (string, *Available, error) {
	av, err := u.FetchAvailable(ctx)
	if err != nil {
		return "", nil, err
	}
	list, err := u.List(av)
	if err != nil {
		return "", av, err
	}
	if len(av.Versions) == 0 {
		return "", av, nil
	}
	cur := newestInstalled(list)
	if cur == "" || CompareVersions(av.Versions[0], cur) > 0 {
		return av.Versions[0], av, nil
	}
	return "", av, nil
}

func (u *Updater) protected(t *Transfer, extra ...string) map[string]bool {
	p := map[string]bool{}
	for _, v := range t.ProtectVersion {
		p[v] = true
	}
	if u.Booted != "" {
		p[u.Booted] = true
	}
	for _, v := range extra {
		if v != "" {
			p[v] = true
		}
	}
	return p
}

// ErrNoSpace is wrapped when a target has no room for a new version (no free slot, or
// every instance protected).
var ErrNoSpace = errors.New("no free slot")

// job is one transfer's part of an update, planned before anything is written.
type job struct {
	tg     *target
	file   string // source file name
	sum    string
	remove []Instance
	slot   Instance // partition target
	name   string   // new label or file name
	skip   bool     // already installed
	local  bool     // a listed local source: no manifest, no hash (as in systemd)
	// srcProps are what the source file's name tells (@s: decompressed size, @h: hash...).
	srcProps Properties
}

// Update installs version (the newest available when ""), returning the version installed
// or "" when there was nothing newer. Everything that can be refused (signature, hashes
// listed, no slot, names too long) is refused before the first write.
func (u *Updater) Update(ctx context.Context, version string) (_ string, err error) {
	defer u.done(&err)
	av, err := u.FetchAvailable(ctx)
	if err != nil {
		return "", err
	}
	list, err := u.List(av)
	if err != nil {
		return "", err
	}
	if version == "" {
		if len(av.Versions) == 0 {
			return "", fmt.Errorf("no version is offered by every transfer's source")
		}
		version = av.Versions[0]
		if cur := newestInstalled(list); cur != "" && CompareVersions(version, cur) <= 0 {
			u.logf("up to date: newest available %s, installed %s", version, cur)
			return "", nil
		}
	} else if !ValidVersion(version) {
		return "", fmt.Errorf("%q is not a valid version", version)
	}
	var jobs []*job
	for i, t := range u.Transfers {
		file, ok := av.Files[i][version]
		if !ok {
			return "", fmt.Errorf("%s: version %s is not offered by %s", t.File, version, describeSource(u, t))
		}
		j := &job{file: file, local: listed(t.Source.Type)}
		if !j.local {
			src, _ := u.source(t)
			j.sum = av.Manifests[src.String()][file]
		}
		j.srcProps, _ = t.Source.Patterns.Match(file)
		if j.srcProps.SHA256 != "" && j.sum != "" && j.srcProps.SHA256 != j.sum {
			return "", fmt.Errorf("%s: %s: %w: its name says %s, %s lists %s", t.File, file, ErrHashMismatch, j.srcProps.SHA256, ManifestName, j.sum)
		}
		if j.tg, err = u.openTarget(t); err != nil {
			return "", err
		}
		if err := u.lock(j.tg); err != nil {
			return "", err
		}
		if j.tg.installed(version) {
			u.logf("%s: %s already installed", t.Name, version)
			j.skip = true
			jobs = append(jobs, j)
			continue
		}
		if err := u.plan(j, version); err != nil {
			return "", err
		}
		jobs = append(jobs, j)
	}

	pending := 0
	for _, j := range jobs {
		if !j.skip {
			pending++
		}
	}
	if pending == 0 {
		u.logf("%s is installed already", version)
		return "", nil
	}
	for _, j := range jobs {
		if !j.skip {
			if err := u.vacuum(j.tg, j.remove); err != nil {
				return "", err
			}
		}
	}
	for _, j := range jobs {
		if !j.skip {
			if err := u.acquire(ctx, j, version); err != nil {
				return "", err
			}
		}
	}
	for _, j := range jobs {
		if !j.skip {
			if err := u.install(j); err != nil {
				return "", err
			}
		}
	}
	u.logf("installed %s", version)
	return version, nil
}

func describeSource(u *Updater, t *Transfer) string {
	if s, err := u.source(t); err == nil {
		return s.String()
	}
	return t.Source.Path
}

// plan decides, without writing, what goes and where the new version lands.
func (u *Updater) plan(j *job, version string) error {
	tg, t := j.tg, j.tg.t
	keep := tg.keep() - 1
	remove, _ := vacuumPlan(tg.instances, keep, u.protected(t))
	j.remove = remove
	props := Properties{Version: version}
	tr := t.Target
	props.TriesLeft, props.TriesDone = tr.TriesLeft, tr.TriesDone
	if tr.TriesLeft != nil && tr.TriesDone == nil && tr.Patterns[0].Has('d') {
		zero := uint64(0)
		props.TriesDone = &zero
	}
	props.Mode, props.ReadOnly, props.NoAuto, props.GrowFS, props.Flags = tr.Mode, tr.ReadOnly, tr.NoAuto, tr.GrowFS, tr.Flags
	if tr.Patterns[0].Has('t') {
		now := uint64(time.Now().UnixMicro())
		props.MTime = &now
	}
	if tr.Patterns[0].Has('h') {
		props.SHA256 = j.sum
	}
	switch tr.Type {
	case TypePartition:
		var slotUUID uuid.UUID
		free := append([]Instance(nil), tg.scan.free...)
		for _, r := range remove {
			free = append(free, Instance{Index: r.Index, Size: r.Size, Name: EmptyLabel})
		}
		if len(free) == 0 {
			return fmt.Errorf("%s: %w on %s for %s: %d partitions of type %s hold %s and none may go (InstancesMax=%d, protected: booted %q, ProtectVersion %v)",
				t.File, ErrNoSpace, tg.disk, version, len(tg.instances), tr.PartitionType, describe(tg.instances), tg.keep(), u.Booted, t.ProtectVersion)
		}
		sort.SliceStable(free, func(a, b int) bool { return free[a].Size < free[b].Size })
		// The smallest slot that fits the decompressed size, when the source name tells it.
		fit := -1
		for i, f := range free {
			if j.srcProps.Size == nil || uint64(f.Size) >= *j.srcProps.Size {
				fit = i
				break
			}
		}
		if fit < 0 {
			return fmt.Errorf("%s: %w on %s for %s: %s needs %d bytes, the largest free slot holds %d",
				t.File, ErrNoSpace, tg.disk, version, j.file, *j.srcProps.Size, free[len(free)-1].Size)
		}
		j.slot = free[fit]
		if p := tg.tbl.Partition(j.slot.Index); p != nil {
			slotUUID = p.UUID
		}
		if tr.PartitionUUID != nil {
			slotUUID = *tr.PartitionUUID
		}
		props.UUID = &slotUUID
		name, err := tr.Patterns[0].Format(props)
		if err != nil {
			return fmt.Errorf("%s: %w", t.File, err)
		}
		if n := len(utf16.Encode([]rune(name))); n > 36 {
			return fmt.Errorf("%s: partition label %q is %d UTF-16 units long; GPT allows 36", t.File, name, n)
		}
		j.name = name
	case TypeRegularFile, TypeDirectory:
		name, err := tr.Patterns[0].Format(props)
		if err != nil {
			return fmt.Errorf("%s: %w", t.File, err)
		}
		if err := checkManifestName(name); err != nil {
			return fmt.Errorf("%s: target name: %w", t.File, err)
		}
		j.name = name
	}
	return nil
}

// editTable applies edit to a fresh read of the target disk's table and writes it back
// crash-safely (the gpt package orders the writes so a cut leaves the old or new table).
func (u *Updater) editTable(tg *target, what string, edit func(*gpt.Table) error) error {
	if err := u.doStep("table: " + what); err != nil {
		return err
	}
	f, err := os.OpenFile(tg.disk, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	tbl, err := gpt.Read(f, tg.size, tg.tbl.SectorSize)
	if err != nil {
		return fmt.Errorf("%s: %w", tg.disk, err)
	}
	if err := edit(tbl); err != nil {
		return err
	}
	if err := gpt.Write(f, tg.size, tbl); err != nil {
		return fmt.Errorf("%s: %s: %w", tg.disk, what, err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	tg.tbl = tbl
	return f.Close()
}

func (u *Updater) vacuum(tg *target, remove []Instance) error {
	if len(remove) == 0 {
		return nil
	}
	u.logf("%s: removing %s", tg.t.Name, describe(remove))
	switch tg.t.Target.Type {
	case TypePartition:
		return u.editTable(tg, "vacuum", func(tbl *gpt.Table) error {
			for _, r := range remove {
				p := tbl.Partition(r.Index)
				if p == nil {
					return fmt.Errorf("%s: partition %d vanished", tg.disk, r.Index)
				}
				p.Type, p.Name = tg.t.Target.PartitionType, EmptyLabel
			}
			return nil
		})
	default:
		if err := u.writable(tg.dir); err != nil {
			return err
		}
		for _, r := range remove {
			if err := u.doStep("remove " + r.Name); err != nil {
				return err
			}
			if tg.t.Target.Type == TypeDirectory {
				if err := removeTree(tg.dir, r.Name); err != nil {
					return fmt.Errorf("%s: remove %s: %w", tg.t.File, r.Path, err)
				}
				continue
			}
			if err := os.Remove(r.Path); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
		return syncDir(tg.dir)
	}
}

// acquire downloads one payload into its place: a partition (marked partial while written,
// pending once checked) or a hidden file in the target directory.
func (u *Updater) acquire(ctx context.Context, j *job, version string) error {
	tg, t := j.tg, j.tg.t
	var src Source
	var err error
	if j.local {
		var dir string
		dir, err = u.localDir(t)
		src = dirSource(dir)
	} else {
		src, err = u.source(t)
	}
	if err != nil {
		return err
	}
	switch t.Target.Type {
	case TypeDirectory:
		return u.acquireTree(ctx, src, j)
	case TypePartition:
		slot := j.slot
		u.logf("%s: writing %s to partition %d of %s (%d bytes) as %s", t.Name, j.file, slot.Index, tg.disk, slot.Size, j.name)
		if err := u.editTable(tg, "claim slot", func(tbl *gpt.Table) error {
			p := tbl.Partition(slot.Index)
			p.Name, p.Type = j.name, PartialType(t.Target.PartitionType)
			return nil
		}); err != nil {
			return err
		}
		p := tg.tbl.Partition(slot.Index)
		off := int64(p.FirstLBA) * int64(tg.tbl.SectorSize)
		f, err := os.OpenFile(tg.disk, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		dw := newDiskWriter(f, tg.disk)
		defer dw.Close()
		if _, err := u.fetch(ctx, src, j, &boundedWriter{w: dw, off: off, size: slot.Size,
			what: fmt.Sprintf("partition %d of %s", slot.Index, tg.disk)}); err != nil {
			return err
		}
		if u.writeStats != nil {
			u.writeStats(dw)
		}
		// One flush, after the whole payload and before the table says "pending".
		if err := f.Sync(); err != nil {
			return err
		}
		return u.editTable(tg, "mark pending", func(tbl *gpt.Table) error {
			p := tbl.Partition(slot.Index)
			p.Type = PendingType(t.Target.PartitionType)
			return nil
		})
	default:
		partial, pending, err := u.startInDir(j, "writing %s to %s")
		if err != nil {
			return err
		}
		os.Remove(partial)
		f, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := u.fetch(ctx, src, j, &boundedWriter{w: f, size: -1, what: partial}); err != nil {
			return err
		}
		if t.Target.Mode != nil {
			// Best effort: FAT has no modes beyond a read-only bit.
			_ = f.Chmod(os.FileMode(*t.Target.Mode))
		}
		if err := f.Sync(); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := u.doStep("rename to " + pending); err != nil {
			return err
		}
		if err := os.Rename(partial, pending); err != nil {
			return err
		}
		return syncDir(tg.dir)
	}
}

// install makes a pending instance the real one: the real partition type (and flags), or
// the final file name.
func (u *Updater) install(j *job) error {
	tg, t := j.tg, j.tg.t
	switch t.Target.Type {
	case TypePartition:
		return u.editTable(tg, "install", func(tbl *gpt.Table) error {
			p := tbl.Partition(j.slot.Index)
			p.Type, p.Name = t.Target.PartitionType, j.name
			if t.Target.PartitionUUID != nil {
				p.UUID = *t.Target.PartitionUUID
			}
			if t.Target.Flags != nil {
				p.Attributes = *t.Target.Flags
			}
			setBit := func(b *bool, bit uint64) {
				if b != nil {
					if *b {
						p.Attributes |= bit
					} else {
						p.Attributes &^= bit
					}
				}
			}
			setBit(t.Target.ReadOnly, gpt.AttrReadOnly)
			setBit(t.Target.NoAuto, gpt.AttrNoAuto)
			setBit(t.Target.GrowFS, gpt.AttrGrowFS)
			return nil
		})
	default:
		pending := filepath.Join(tg.dir, pendingPrefix+j.name)
		final := filepath.Join(tg.dir, j.name)
		if err := u.doStep("rename to " + final); err != nil {
			return err
		}
		if err := os.Rename(pending, final); err != nil {
			return err
		}
		u.logf("%s: installed %s", t.Name, final)
		if err := syncDir(tg.dir); err != nil {
			return err
		}
		if t.Target.Type == TypeDirectory && t.Target.ReadOnly != nil && *t.Target.ReadOnly {
			if err := setImmutable(final, true); err != nil {
				return fmt.Errorf("%s: ReadOnly=yes: set the immutable attribute of %s: %w", t.File, final, err)
			}
		}
		if l := t.Target.CurrentSymlink; l != "" {
			if err := u.doStep("symlink " + l); err != nil {
				return err
			}
			if err := pointSymlink(tg.dir, l, j.name); err != nil {
				return fmt.Errorf("%s: CurrentSymlink=%s: %w", t.File, l, err)
			}
		}
		return nil
	}
}

// boundedWriter writes a stream sequentially at off, refusing to pass size (-1: no bound).
type boundedWriter struct {
	w    io.WriterAt
	off  int64
	n    int64
	size int64
	what string
}

// ErrTooLarge is wrapped when a payload does not fit its partition.
var ErrTooLarge = errors.New("payload larger than its target")

func (b *boundedWriter) Write(p []byte) (int, error) {
	if b.size >= 0 && b.n+int64(len(p)) > b.size {
		return 0, fmt.Errorf("%w: %s holds %d bytes", ErrTooLarge, b.what, b.size)
	}
	n, err := b.w.WriteAt(p, b.off+b.n)
	b.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("write %s at byte %d: %w", b.what, b.off+b.n, err)
	}
	return n, nil
}

// ErrHashMismatch is wrapped when a payload's SHA-256 differs from the manifest's.
var ErrHashMismatch = errors.New("SHA-256 mismatch")

const chunk = 4 << 20

// fetch streams the source file through SHA-256 and the decompressor matched by its magic
// into w, one pass, no temporary copy. The hash is of the bytes as downloaded.
func (u *Updater) fetch(ctx context.Context, src Source, j *job, w io.Writer) (int64, error) {
	if j.sum == "" && !j.local {
		return 0, fmt.Errorf("%s is not listed in %s", j.file, ManifestName)
	}
	rc, size, err := src.Open(ctx, j.file)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	h := sha256.New()
	var in io.Reader = rc
	if u.Progress != nil {
		in = io.TeeReader(in, u.Progress(j.file, size))
	}
	counted := &countReader{r: io.TeeReader(in, h)}
	// Downloading and hashing run in their own goroutine, ahead of the decoder: with the
	// writer, three stages run at once, as in curl | zstd -d | dd.
	pf := newPrefetcher(counted, 1<<20, 8)
	defer pf.Close()
	br := bufio.NewReaderSize(pf, 1<<20)
	if tree(j.tg.t.Source.Type) {
		if err := checkArchiveName(j.file, br); err != nil {
			return 0, err
		}
	}
	dec, closeDec, err := decompressor(br)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", j.file, err)
	}
	defer closeDec()
	// Writing overlaps decoding: a writer goroutine takes filled buffers while the next one
	// is decoded (curl | zstd -d | dd gets the same from three processes).
	free, full := make(chan []byte, 3), make(chan []byte, 3)
	for range 3 {
		free <- alignedBuf(chunk)
	}
	werr := make(chan error, 1)
	var failed atomic.Bool
	go func() {
		var err error
		for b := range full {
			if err == nil {
				if err = u.doStep("write data"); err == nil {
					if _, err = w.Write(b); err != nil {
						err = fmt.Errorf("%s: %w", j.file, err)
					}
				}
				failed.Store(err != nil)
			}
			free <- b[:cap(b)]
		}
		werr <- err
	}()
	finish := func() error {
		close(full)
		return <-werr
	}
	var total int64
	for {
		buf := <-free
		if failed.Load() {
			return total, finish()
		}
		n, rerr := io.ReadFull(dec, buf)
		if n > 0 {
			full <- buf[:n]
			total += int64(n)
		} else {
			free <- buf
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			if err := finish(); err != nil {
				return total, err
			}
			// Tell a damaged download from a damaged publication: hash what is left.
			io.Copy(io.Discard, br)
			if got := hex.EncodeToString(h.Sum(nil)); !j.local && got != j.sum {
				return total, fmt.Errorf("%s: %w (tampered or truncated: %d bytes downloaded, decompression failed: %v)", j.file, ErrHashMismatch, counted.n, rerr)
			}
			return total, fmt.Errorf("%s: %w (after %d compressed bytes)", j.file, rerr, counted.n)
		}
	}
	if err := finish(); err != nil {
		return total, err
	}
	// Whatever follows the compressed stream is part of the file and of its hash.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return total, fmt.Errorf("%s: %w", j.file, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); !j.local && got != j.sum {
		return total, fmt.Errorf("%s: %w: %s lists %s, the download (%d bytes) has %s", j.file, ErrHashMismatch, ManifestName, j.sum, counted.n, got)
	}
	if size >= 0 && counted.n != size {
		return total, fmt.Errorf("%s: got %d of %d bytes", j.file, counted.n, size)
	}
	return total, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// decompressor picks zstd, xz, gzip or bzip2 by magic; anything else passes through.
func decompressor(br *bufio.Reader) (io.Reader, func(), error) {
	magic, _ := br.Peek(6)
	switch {
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		// One decoding goroutine: measured here, the concurrent stream decoder is half as
		// fast (its goroutines fight over the cores with the download and the writes).
		d, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<30))
		if err != nil {
			return nil, nil, err
		}
		return d, d.Close, nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		d, err := xz.NewReader(br)
		return d, func() {}, err
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		d, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		d.Multistream(true)
		return d, func() { d.Close() }, nil
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzip2.NewReader(br), func() {}, nil
	}
	return br, func() {}, nil
}

// Vacuum removes partial and pending leftovers and the oldest versions beyond InstancesMax,
// never a protected or the booted version.
func (u *Updater) Vacuum() (removed int, err error) {
	defer u.done(&err)
	for _, t := range u.Transfers {
		tg, err := u.openTarget(t)
		if err != nil {
			return removed, err
		}
		if err := u.lock(tg); err != nil {
			return removed, err
		}
		remove, _ := vacuumPlan(tg.instances, tg.keep(), u.protected(t))
		if err := u.vacuum(tg, remove); err != nil {
			return removed, err
		}
		removed += len(remove)
	}
	return removed, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !strings.Contains(err.Error(), "invalid argument") {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// prefetcher reads r in its own goroutine into a few buffers ahead of the consumer, so that
// a download overlaps the decompression that consumes it.
type prefetcher struct {
	ch   chan []byte
	free chan []byte
	err  error  // set before ch is closed
	buf  []byte // the buffer being consumed
	cur  []byte // its unread rest
	stop chan struct{}
}

func newPrefetcher(r io.Reader, size, n int) *prefetcher {
	p := &prefetcher{ch: make(chan []byte, n), free: make(chan []byte, n+1), stop: make(chan struct{})}
	for range n + 1 {
		p.free <- make([]byte, size)
	}
	go func() {
		defer close(p.ch)
		for {
			var b []byte
			select {
			case b = <-p.free:
			case <-p.stop:
				return
			}
			n, err := io.ReadFull(r, b)
			if n > 0 {
				select {
				case p.ch <- b[:n]:
				case <-p.stop:
					return
				}
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				p.err = io.EOF
				return
			}
			if err != nil {
				p.err = err
				return
			}
		}
	}()
	return p
}

func (p *prefetcher) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		if p.buf != nil {
			p.free <- p.buf[:cap(p.buf)]
			p.buf = nil
		}
		c, ok := <-p.ch
		if !ok {
			return 0, p.err
		}
		p.buf, p.cur = c, c
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// Close stops the reading goroutine after its current read, which closing the source
// (done by the caller next) cuts short.
func (p *prefetcher) Close() {
	close(p.stop)
}
