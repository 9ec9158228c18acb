package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/piboot/piboot/internal/uuid"
	"golang.org/x/sys/unix"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/initrd/layout"
	"github.com/piboot/piboot/mkfs"
	"github.com/piboot/piboot/mount"
	"github.com/piboot/piboot/repart"
)

const newRoot = "/sysroot"

// espType is the EFI system partition's type GUID.
var espType = uuid.MustParse("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")

// execStarted says fromExec was started (it closes execKnown).
var execStarted bool

// mounted lists what this attempt mounted, so a retry starts from a clean /sysroot.
var (
	mounted   []string
	mountedMu sync.Mutex // the store and the ESP mount concurrently
)

func undoMounts() {
	mountedMu.Lock()
	defer mountedMu.Unlock()
	for i := len(mounted) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounted[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			logf("retry", "unmount %s: %v", mounted[i], err)
		}
	}
	mounted = nil
}

// goSafe runs f in a goroutine and delivers its error; a panic becomes an error (a panic
// outside safeBoot's goroutine would end PID 1).
func goSafe(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				ch <- fmt.Errorf("internal error (panic): %v\n%s", r, debug.Stack())
			}
		}()
		ch <- f()
	}()
	return ch
}

// doMount mounts dev on target after its filesystem's module is in and returns the
// console line saying so (the caller prints the lines in a fixed order).
func doMount(dev, target, fstype string, flags uintptr, data, what string) (string, error) {
	if fstype == "" {
		f, err := os.Open(dev)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		fstype, err = mount.ProbeFS(f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("%s: %s: %w", what, dev, err)
		}
	}
	if modules != nil {
		modules.ensureFS(fstype)
	}
	want := fstype
	fstype, err := mount.Mount(dev, target, fstype, flags, data)
	if err != nil && modules != nil && fstype == "vfat" && modules.loadDeferred(func(j *modJob) bool { return fsOf(j.path) == "nls" }, "vfat") > 0 {
		// A character set this kernel's FAT uses by default was not loaded eagerly.
		fstype, err = mount.Mount(dev, target, fstype, flags, data)
	}
	if err != nil {
		// The kernel says only "invalid argument"; say what is on the partition.
		if want != "" {
			if f, oerr := os.Open(dev); oerr == nil {
				found, perr := mount.ProbeFS(f)
				f.Close()
				switch {
				case perr != nil:
					err = fmt.Errorf("%w (the partition holds no %s superblock: %v)", err, want, perr)
				case found != want:
					err = fmt.Errorf("%w (the partition holds %s, not %s)", err, found, want)
				}
			}
		}
		return "", fmt.Errorf("%s: %w", what, err)
	}
	mountedMu.Lock()
	mounted = append(mounted, target)
	mountedMu.Unlock()
	ro := ""
	if flags&unix.MS_RDONLY != 0 {
		ro = ", read-only"
	}
	in := strings.TrimPrefix(target, newRoot)
	if in == "" {
		in = "/"
	}
	tracef("mounted %s", dev)
	return fmt.Sprintf("%s (%s, %s%s) on %s", dev, what, fstype, ro, in), nil
}

// boot is one attempt; it returns only on failure.
func boot(attempt int) error {
	if attempt > 1 {
		logf("retry", "attempt %d", attempt)
		undoMounts()
	}
	efi, err := mount.KernelFS()
	if err != nil {
		return err
	}
	if attempt == 1 {
		logf("start", "/dev /proc /sys /run mounted")
	}
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	cfg, cfgErr := parseCmdline(string(b))
	tracing = cfg.Trace
	if !execStarted {
		// Once per boot of the machine (an attempt that failed earlier did not get here).
		execStarted = true
		// Reading the kernel's log is for the figures only: off the critical path (it runs
		// while the boot waits for the disk), except under piboot.trace, whose lines need
		// it from the start.
		if !tracing {
			go fromExec()
		} else {
			t := time.Now()
			fromExec()
			if goStartup >= 0 {
				tracef("exec at %d ms of uptime; main's package initialization %d ms later (read from the kernel's log in %d ms)", (startedUptime - goStartup).Milliseconds(), goStartup.Milliseconds(), time.Since(t).Milliseconds())
			} else {
				tracef("exec time unknown (no \"Run /init\" in the kernel's log): counting from main's package initialization")
			}
		}
	}
	// /etc/repart.d, read once: it says which filesystem modules to load and what repart does.
	defs, defsErr := repart.ParseDir(layout.RepartDir, runtime.GOARCH)
	ev := startHotplug()
	mods := startModules(keepFS(cfg, cfgErr, defs, defsErr), mountOrder(cfg, defs), ev, efi)
	tracef("uevents and module loading started")
	if efi {
		if err := mountEFIVars(mods); err != nil {
			logf("start", "no EFI variables: %v", err)
			efi = false
		} else if attempt == 1 {
			logf("start", "efivarfs mounted")
		}
	}
	if cfgErr != nil {
		return cfgErr
	}
	if defsErr != nil {
		return defsErr
	}

	// The boot disk.
	opts := mount.Options{
		StoreLabel: cfg.Store, Candidates: cfg.Disks, Timeout: cfg.Timeout,
		Logf: func(f string, a ...any) { logf("disk", f, a...) },
	}
	if opts.Timeout <= 0 { // piboot.timeout=0: look once, do not wait
		opts.Timeout = time.Nanosecond
	}
	if ev != nil {
		opts.Changed = ev.block
	}
	// The GPTs discovery reads, kept for repart: the table is read once per boot.
	tables := map[string]*gpt.Table{}
	opts.ReadTable = func(d mount.BlockDev) ([]mount.Part, error) {
		t, err := mount.ReadTable("/dev", d)
		if err != nil {
			return nil, err
		}
		tables[fmt.Sprintf("%s %d %d", d.Name, d.Size, d.SectorSize)] = t
		tracef("read the GPT of %s", d.Path("/dev"))
		return mount.PartsOf(t), nil
	}
	if efi {
		id, ok, err := mount.LoaderDevicePartUUID(mount.EFIVarsDir)
		switch {
		case err != nil:
			logf("disk", "ignoring LoaderDevicePartUUID: %v", err)
		case ok:
			logf("disk", "LoaderDevicePartUUID=%s", id)
			opts.LoaderPartUUID = id
		}
	}
	t0 := time.Now()
	found, err := mount.FindBootDisk(opts)
	if err != nil {
		// piboot.timeout counts from when the drivers are all in: if they were still
		// loading, look again for what is left of the timeout after they are.
		loading := !mods.finishedBefore(t0)
		if merr := mods.wait(); merr != nil {
			return merr
		}
		if loading && time.Since(mods.finished) < cfg.Timeout && !errors.Is(err, mount.ErrNotOurs) {
			opts.Start = mods.finished
			found, err = mount.FindBootDisk(opts)
		}
		if err != nil {
			return err
		}
	}
	disk := found.Disk
	devPath := "/dev/" + disk.Name
	diskMs := time.Since(t0).Milliseconds()
	logf("disk", "%s (%s) after %d ms, %d bytes", devPath, found.How, diskMs, disk.Size)
	for _, o := range found.Others {
		logf("disk", "%s also holds a partition labelled %q; ignored", o, cfg.Store)
	}

	// First-boot partitioning.
	tRepart := time.Now()
	table, err := runRepart(devPath, disk.BlockDev, tables[fmt.Sprintf("%s %d %d", disk.Name, disk.Size, disk.SectorSize)], defs)
	repartMs := time.Since(tRepart).Milliseconds()
	if err != nil {
		return err
	}
	disk.Parts = mount.PartsOf(table)
	// The /dev/disk links are for the shell and the new root: made while the mounts run.
	var links []string
	linksDone := goSafe(func() (err error) {
		links, err = mount.PartLinks("/dev", "/sys", disk)
		return err
	})
	linksErr := func() error {
		if linksDone != nil {
			err := <-linksDone
			linksDone = nil
			if err != nil {
				return fmt.Errorf("/dev/disk links: %w", err)
			}
			logf("links", "%d in /dev/disk/by-partlabel", len(links))
			tracef("links made")
		}
		return nil
	}
	defer linksErr() // a failed attempt still joins it before the next one starts

	rootPart, ok := disk.ByLabel(cfg.Root)
	if !ok {
		return fmt.Errorf("%s has no partition labelled %q (piboot.root=); partitions: %s", devPath, cfg.Root, strings.Join(disk.Labels(), ", "))
	}
	storePart, ok := disk.ByLabel(cfg.Store)
	if !ok { // FindBootDisk guarantees it; the table was just rewritten, though
		return fmt.Errorf("%s has no partition labelled %q (piboot.store=)", devPath, cfg.Store)
	}
	var espPart *mount.Part
	for _, p := range disk.Parts {
		if p.Type == espType {
			espPart = &p
			break
		}
	}
	names := mount.PartitionNames("/sys", disk.Name)
	node := func(p mount.Part) (string, error) {
		n := "/dev/" + names.Name(p.Index)
		return n, mount.WaitDevice(n, 5*time.Second)
	}
	// The store and the ESP mount inside the root, so after it; their nodes and modules
	// get ready while the root's module loads and the root mounts.
	// prepare waits for p's node and fstype's modules; the mount's goroutine waits for it.
	prepare := func(dev *string, p mount.Part, fstype string) <-chan error {
		return goSafe(func() (err error) {
			if *dev, err = node(p); err == nil {
				mods.ensureFS(fstype)
			}
			return err
		})
	}
	var storeDev, espDev string
	storeReady := prepare(&storeDev, storePart, "squashfs")
	var espReady <-chan error
	if espPart != nil {
		espReady = prepare(&espDev, *espPart, "vfat")
	}

	// Root, as soon as its filesystem's module is in.
	tMods := time.Now()
	rootDev, err := node(rootPart)
	if err != nil {
		return err
	}
	rootFS := formatOf(defs, rootPart)
	if rootFS != "" {
		mods.ensureFS(rootFS)
	}
	tMount := time.Now()
	modWaitMs := tMount.Sub(tMods).Milliseconds()
	tracef("root's modules in (waited %d ms)", modWaitMs)
	line, err := doMount(rootDev, newRoot, rootFS, 0, "", cfg.Root)
	if err != nil {
		// A module list that could not be loaded says more than the mount's error.
		if merr := mods.wait(); merr != nil {
			return merr
		}
		return err
	}
	logf("mount", "%s", line)
	// Store and ESP together.
	var storeLine string
	storeDone := goSafe(func() (err error) {
		if err = <-storeReady; err == nil {
			storeLine, err = doMount(storeDev, filepath.Join(newRoot, cfg.StoreMount), "squashfs", unix.MS_RDONLY, "", cfg.Store)
		}
		return err
	})
	var espLine string
	espDone := goSafe(func() error {
		if espReady == nil {
			return nil
		}
		if err := <-espReady; err != nil {
			return err
		}
		// Read-only: a read-write FAT mount sets the volume's dirty flag on the card until
		// it is unmounted cleanly, which a Pi losing power never does. Whoever writes
		// the ESP (piboot update) remounts it read-write for just that long.
		var err error
		espLine, err = doMount(espDev, filepath.Join(newRoot, "boot"), "vfat", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "umask=0077", espPart.Label)
		return err
	})
	storeErr, espErr := <-storeDone, <-espDone
	if storeErr != nil {
		return storeErr
	}
	logf("mount", "%s", storeLine)
	if espErr != nil {
		return espErr
	}
	if espLine != "" {
		logf("mount", "%s", espLine)
	}
	if err := linksErr(); err != nil {
		return err
	}
	if err := mods.wait(); err != nil {
		return err
	}
	traceModuleInits()

	if _, err := os.Lstat(filepath.Join(newRoot, cfg.Init)); err != nil {
		return fmt.Errorf("init=%s: not found in the new root (is the store %s intact?): %w", cfg.Init, storeDev, err)
	}
	if cfg.Shell {
		emergencyShell("piboot.shell: leave the shell (exit) to continue with switch_root")
	}
	args := append([]string{cfg.Init}, os.Args[1:]...)
	logf("time", "%s", timeSummary(diskMs, repartMs, modWaitMs, time.Since(tMount).Milliseconds()))
	logf("switch_root", "%s after %d ms", cfg.Init, sinceExec().Milliseconds())
	err = mount.SwitchRoot(newRoot, cfg.Init, args, os.Environ())
	// The kernel filesystems may have moved already: put them back for the shell.
	for _, d := range []string{"/dev", "/proc", "/sys", "/run"} {
		if !mount.IsMountPoint(d) {
			_ = os.MkdirAll(d, 0o755)
			_ = unix.Mount(filepath.Join(newRoot, d), d, "", unix.MS_MOVE, "")
		}
	}
	return fmt.Errorf("switch_root to %s: %w", cfg.Init, err)
}

// runRepart applies /etc/repart.d to the disk and returns the table now on the disk.
// table is the GPT disk discovery read from it (nil: read it here); the device is
// opened for writing only when there is something to write.
func runRepart(devPath string, disk mount.BlockDev, table *gpt.Table, defs []repart.Definition) (*gpt.Table, error) {
	t0 := time.Now()
	size := disk.Size
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	open := func() error {
		var err error
		if f, err = os.OpenFile(devPath, os.O_RDWR, 0); err != nil {
			return err
		}
		sz, ss, err := repart.DeviceSize(f)
		if err != nil {
			return err
		}
		if sz != size || (table != nil && ss != table.SectorSize) {
			// The device changed since discovery looked (a card swapped?): plan again
			// from what is there now.
			table, size = nil, sz
		}
		if table == nil {
			if table, err = gpt.Read(f, sz, ss); err != nil {
				return fmt.Errorf("%s: %w", devPath, err)
			}
		}
		return nil
	}
	if table == nil {
		if err := open(); err != nil {
			return nil, err
		}
	}
	for _, p := range table.Status.Problems {
		logf("repart", "%s: %s", devPath, p)
	}
	plan := func() (*repart.Layout, error) {
		seed, _, err := repart.Seed("", "/etc/machine-id", table)
		if err != nil {
			return nil, err
		}
		l, err := repart.Plan(repart.Disk{Size: size, Table: table}, defs, seed)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", devPath, err)
		}
		return l, nil
	}
	layout, err := plan()
	if err != nil {
		return nil, err
	}
	if layout.Empty() {
		logf("repart", "no changes (%d definitions) in %d ms", len(defs), time.Since(t0).Milliseconds())
		return table, nil
	}
	if f == nil {
		old := table
		if err := open(); err != nil {
			return nil, err
		}
		if table != old { // re-read: plan for what is there now
			if layout, err = plan(); err != nil {
				return nil, err
			}
			if layout.Empty() {
				logf("repart", "no changes (%d definitions) in %d ms", len(defs), time.Since(t0).Milliseconds())
				return table, nil
			}
		}
	}
	// Formatting is most of a first boot's writes (seconds on a slow card, XFS's log):
	// a line before it says what the console waits for.
	format := func(w io.WriterAt, size int64, req repart.FormatRequest) error {
		logf("repart", "%s: formatting %s as %s (%d bytes)", devPath, req.Name, req.Format, size)
		return mkfs.ForRepart(w, size, req)
	}
	if err := repart.Apply(f, size, layout, format); err != nil {
		return nil, fmt.Errorf("%s: %w", devPath, err)
	}
	for _, p := range layout.Partitions {
		switch p.Action {
		case repart.Create:
			fs := ""
			if p.Format != "" {
				fs = ", " + p.Format
			}
			logf("repart", "created %s (%q, %d bytes%s)", repart.PartitionNode(devPath, p.Index), p.Label, p.Size, fs)
		case repart.Grow:
			logf("repart", "grew %s (%q) from %d to %d bytes", repart.PartitionNode(devPath, p.Index), p.Label, p.OldSize, p.Size)
		}
	}
	for _, r := range layout.Repair {
		logf("repart", "repaired: %s", r)
	}
	logf("repart", "done in %d ms", time.Since(t0).Milliseconds())
	return layout.New, nil
}

// keepFS decides which filesystem modules load eagerly (fs is the directory under
// kernel/fs, name the module): those piboot-init mounts (the store's squashfs, the ESP's
// FAT with the code page and I/O character set it uses by default, efivarfs and the
// root's Format= from /etc/repart.d). Without a root Format= (probed at mount time) or a
// usable command line, all of them.
func keepFS(cfg config, cfgErr error, defs []repart.Definition, defsErr error) func(fs, name string) bool {
	all := func(string, string) bool { return true }
	if cfgErr != nil || defsErr != nil {
		return all
	}
	root := rootFSDir(cfg, defs)
	if root == "" {
		return all
	}
	return func(fs, name string) bool {
		switch fs {
		case "squashfs", "fat", "efivarfs", root:
			return true
		case "nls":
			// FAT's defaults in Debian's kernels (CONFIG_FAT_DEFAULT_CODEPAGE=437,
			// _IOCHARSET="ascii"). A kernel built with others fails the ESP's mount,
			// which loads the rest and mounts again (doMount).
			return name == "nls_cp437" || name == "nls_ascii"
		}
		return false
	}
}

// mountOrder lists the kernel/fs directories of the filesystems boot mounts, in mount
// order: the root's (when /etc/repart.d says), the store's, the ESP's with its character
// sets. Their modules load in this order.
func mountOrder(cfg config, defs []repart.Definition) []string {
	var l []string
	if root := rootFSDir(cfg, defs); root != "" {
		l = append(l, root)
	}
	return append(l, "squashfs", "fat", "nls")
}

// rootFSDir is the kernel/fs directory of the root's filesystem as /etc/repart.d formats it
// (Format=vfat lives in fs/fat), or "" when no definition says (the mount probes it).
func rootFSDir(cfg config, defs []repart.Definition) string {
	for _, d := range defs {
		if d.Label == cfg.Root && d.Format != "" {
			if d.Format == "vfat" {
				return "fat"
			}
			return d.Format
		}
	}
	return ""
}

// formatOf is the Format= of the definition that labels the partition, or "" (probe).
func formatOf(defs []repart.Definition, p mount.Part) string {
	for _, d := range defs {
		if d.Label == p.Label && d.Type == p.Type && d.Format != "" {
			return d.Format
		}
	}
	return ""
}

// timeSummary says where the time since the exec of PID 1 went, for the line before
// switch_root: when the kernel executed us and how long Go took to reach main's
// package initialization (both from the kernel's log), the steps, how long module loading ran
// (overlapping the steps) and piboot-init's own CPU time since main's initialization (module loading's kernel work
// in finit_module counts as its system time).
func timeSummary(diskMs, repartMs, modWaitMs, mountMs int64) string {
	user, sys := cpuSince0()
	mods := ""
	if modules != nil {
		modules.mu.Lock()
		if !modules.last.IsZero() {
			mods = fmt.Sprintf(", modules %d ms (%d ms in finit_module)", modules.last.Sub(modules.t0).Milliseconds(), modules.inKernel.Milliseconds())
		}
		modules.mu.Unlock()
	}
	<-execKnown
	exec, start := startedUptime, "Go start-up unknown"
	if goStartup >= 0 {
		exec, start = startedUptime-goStartup, fmt.Sprintf("Go start-up %d ms", goStartup.Milliseconds())
	}
	return fmt.Sprintf("executed at %d ms of uptime (%s); disk %d ms, repart %d ms, waiting for modules %d ms, mounts %d ms%s; cpu %d ms user, %d ms system",
		exec.Milliseconds(), start, diskMs, repartMs, modWaitMs, mountMs, mods, user.Milliseconds(), sys.Milliseconds())
}
