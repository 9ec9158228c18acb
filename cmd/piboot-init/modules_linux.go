package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/piboot/piboot/initrd/layout"
	"github.com/piboot/piboot/mount"
)

// moduleLoader loads the initramfs's modules in the background while the disk is found.
// Device drivers (modules with device aliases in modules.alias) load only for hardware
// that is there: for each device's modalias, first those sysfs lists (coldplug), then
// those the kernel announces in uevents as drivers probe and new devices appear (a USB
// stick behind xHCI; its SCSI disk behind usb-storage). Modules needed by name (the
// filesystems, crc32c) start once the coldplug scan is over and queue for the CPU slots
// behind the drivers it found, so the disk's driver gets the CPU first; filesystems this boot does not mount (xfs under an ext4 root, say) are
// deferred: loaded on demand (ensureFS) or before the emergency shell.
type moduleLoader struct {
	ready    chan struct{} // closed once the list was read: the fields below are set
	done     chan struct{} // closed once the named modules and the coldplug drivers were tried
	err      error         // set before done closes
	finished time.Time     // likewise

	dir     string
	jobs    []*modJob // in list order: dependencies first
	byPath  map[string]*modJob
	byName  map[string]*modJob
	aliases *aliasTable // nil without modules.alias: every module loads by name
	efi     bool        // efivarfs is worth loading
	// keepFS says whether a module under kernel/fs/<fs>/ loads eagerly.
	keepFS func(fs, name string) bool
	// mountFS lists the kernel/fs directories of what the boot mounts, in mount order
	// (the root's filesystem, squashfs, fat): their modules load in that order, right
	// after the drivers, so the first mount waits least.
	mountFS []string
	sem     *slots // one finit_module per CPU, drivers first
	t0      time.Time

	mu      sync.Mutex
	idle    *sync.Cond // signalled when pending drops to 0
	pending int        // loads started for devices and names, not finished
	seen    map[string]bool
	n       int // loaded
	skipped int // ENODEV: nothing to drive here
	failed  int
	devices []string  // loaded for devices, in order
	last    time.Time // when the last module was in
	drivers time.Time // when the coldplugged devices' drivers were in
	// coldplugged is set once the coldplug scan is over (drivers counts from then).
	coldplugged bool
	// storageScanned is set once the storage buses were scanned: loads by name wait for
	// it (and for the drivers it found) before they take a slot (gateLocked).
	storageScanned bool
	inKernel       time.Duration // inside finit_module, summed over threads
	reported       bool          // the summary line is out; later loads get a line each

	deferMu sync.Mutex // serializes on-demand loading
}

type modJob struct {
	path     string
	deps     []string
	driver   bool // loads for a device (a driver, or a library only drivers need)
	deferred bool // a filesystem this boot does not mount
	prio     int  // for a free slot when loaded by name: lower first (see prioritize)
	once     sync.Once
	urgent   atomic.Bool // a driver being loaded needs it: it goes through the closed gate (gateLocked)
	loaded   bool
	tried    bool
}

var modules *moduleLoader

// finishedBefore reports whether the named modules and coldplug drivers were in by t.
func (m *moduleLoader) finishedBefore(t time.Time) bool {
	select {
	case <-m.done:
		return !m.finished.After(t)
	default:
		return false
	}
}

// startModules starts loading once per boot of the machine (a retried attempt reuses it).
// ev, when not nil, delivers the kernel's uevents; efi says whether the firmware is UEFI;
// mountFS is the kernel/fs directories of the filesystems the boot mounts, in order.
func startModules(keepFS func(fs, name string) bool, mountFS []string, ev *hotplug, efi bool) *moduleLoader {
	if modules != nil {
		return modules
	}
	m := &moduleLoader{ready: make(chan struct{}), done: make(chan struct{}), keepFS: keepFS, mountFS: mountFS, efi: efi,
		seen: map[string]bool{}, sem: newSlots(runtime.NumCPU()), t0: time.Now()}
	m.sem.setOpen(false) // until the storage buses were scanned
	m.idle = sync.NewCond(&m.mu)
	modules = m
	go func() {
		defer close(m.done)
		defer func() { m.finished = time.Now() }()
		defer func() {
			if r := recover(); r != nil {
				m.err = fmt.Errorf("modules: internal error: %v", r)
			}
		}()
		m.err = m.load(ev)
	}()
	return m
}

// fsOf names the filesystem directory of a module under kernel/fs ("" for others).
func fsOf(path string) string {
	rest, ok := strings.CutPrefix(path, "kernel/fs/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return strings.TrimSuffix(name, ".ko")
}

// mountEFIVars mounts efivarfs, loading its module first if the kernel does not know
// the filesystem yet.
func mountEFIVars(m *moduleLoader) error {
	err := mount.EFIVarFS()
	if err == nil || !errors.Is(err, unix.ENODEV) {
		return err
	}
	m.ensureName("efivarfs")
	return mount.EFIVarFS()
}

// wait blocks until the named modules and every driver load started so far were tried.
func (m *moduleLoader) wait() error {
	<-m.done
	if m.err != nil {
		return m.err
	}
	m.mu.Lock()
	for m.pending > 0 {
		m.idle.Wait()
	}
	m.mu.Unlock()
	return nil
}

// summaryLocked is "loaded N in M ms (...)": M runs from the start of loading to the
// last module in, including the waits for devices to probe in between.
func (m *moduleLoader) summaryLocked() string {
	var b strings.Builder
	end := m.last
	if end.IsZero() {
		end = m.t0
	}
	fmt.Fprintf(&b, "loaded %d in %d ms (", m.n, end.Sub(m.t0).Milliseconds())
	if m.aliases != nil {
		absent := 0
		for _, j := range m.jobs {
			if j.driver && !j.tried {
				absent++
			}
		}
		devs := "none"
		if len(m.devices) > 0 {
			devs = strings.Join(m.devices, " ")
		}
		fmt.Fprintf(&b, "for devices: %s in %d ms; %d for hardware not here; ", devs, m.drivers.Sub(m.t0).Milliseconds(), absent)
	}
	fmt.Fprintf(&b, "%d ms in finit_module; %d not needed here, %d failed", m.inKernel.Milliseconds(), m.skipped, m.failed)
	var deferred []string
	for _, j := range m.jobs {
		if j.deferred && !j.tried {
			deferred = append(deferred, filepath.Base(j.path))
		}
	}
	if len(deferred) > 0 {
		b.WriteString("; loaded when needed: " + strings.Join(deferred, " "))
	}
	b.WriteString(")")
	return b.String()
}

// load reads the initramfs's load list (each line names a module and the modules it
// needs first) and modules.alias, loads the drivers for the devices already there, then
// the modules needed by name. A module that fails to load is reported and skipped: the
// disk may still be found without it, and if not, the error about the missing disk or
// filesystem follows.
func (m *moduleLoader) load(ev *hotplug) error {
	var readyOnce sync.Once
	markReady := func() { readyOnce.Do(func() { close(m.ready) }) }
	defer markReady()
	defer func() {
		// However loading ends (an error, a panic), loads by name must not wait forever.
		m.mu.Lock()
		m.storageScanned = true
		m.gateLocked()
		m.mu.Unlock()
	}()
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return err
	}
	release := unix.ByteSliceToString(uts.Release[:])
	m.dir = filepath.Join(layout.ModulesDir, release)
	list := filepath.Join(m.dir, layout.LoadList)
	b, err := os.ReadFile(list)
	if errors.Is(err, os.ErrNotExist) {
		others, _ := filepath.Glob(filepath.Join(layout.ModulesDir, "*", layout.LoadList))
		if len(others) > 0 {
			return fmt.Errorf("modules: this initramfs holds modules for %s, but the kernel is %s", filepath.Base(filepath.Dir(others[0])), release)
		}
		logf("modules", "none in this initramfs")
		return nil
	}
	if err != nil {
		return err
	}
	m.byPath, m.byName = map[string]*modJob{}, map[string]*modJob{}
	for n, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		j := &modJob{path: f[0], deps: f[1:]}
		for _, d := range j.deps {
			if m.byPath[d] == nil {
				return fmt.Errorf("modules: %s:%d: %s needs %s, which is not listed before it", list, n+1, j.path, d)
			}
		}
		m.jobs = append(m.jobs, j)
		m.byPath[j.path] = j
		m.byName[layout.ModName(j.path)] = j
	}
	aliasFile := filepath.Join(m.dir, layout.AliasList)
	if f, err := os.Open(aliasFile); err == nil {
		m.aliases, err = parseAliases(f, aliasFile)
		f.Close()
		if err != nil {
			return fmt.Errorf("modules: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("modules: %w", err)
	}
	m.classify()
	markReady()
	tracef("module list and aliases read (%d modules)", len(m.jobs))

	// Drivers first: for the devices there now, and (from the uevents) those that appear.
	if ev != nil && m.aliases != nil {
		ev.onModalias(func(a string) { m.device(a) })
	} else if m.aliases != nil {
		go pollModaliases(m.device)
	}
	// The storage buses first: the disk's driver must not queue behind a filesystem.
	m.coldplug(mount.StorageBus, "storage buses")
	m.mu.Lock()
	m.storageScanned = true
	m.gateLocked()
	m.mu.Unlock()

	// Then what is needed by name, queued in priority order (within one priority, the
	// slots serve in arrival order) as soon as the drivers found so far are in: while the
	// card initializes and the other buses are scanned (gateLocked).
	var wg sync.WaitGroup
	named := make([]*modJob, 0, len(m.jobs))
	for _, j := range m.jobs {
		if !j.driver && !j.deferred {
			named = append(named, j)
		}
	}
	sort.SliceStable(named, func(a, b int) bool { return named[a].prio < named[b].prio })
	for _, j := range named {
		if !m.efi && layout.ModName(j.path) == "efivarfs" {
			// Without UEFI its init fails with ENODEV anyway: spare the kernel the work.
			m.mu.Lock()
			j.tried = true
			m.skipped++
			m.mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.ensure(j, false, j.prio)
		}()
		// Let it queue before the next one starts: the scheduler runs the newest
		// goroutine first, which could take a free slot ahead of its betters.
		runtime.Gosched()
	}
	m.coldplug(func(bus string) bool { return !mount.StorageBus(bus) }, "other buses")
	m.mu.Lock()
	m.coldplugged = true
	if m.pending == 0 {
		m.drivers = time.Now()
	}
	m.mu.Unlock()
	wg.Wait()
	// The summary, once what was started is in; drivers for devices that appear later
	// get a line each.
	m.mu.Lock()
	for m.pending > 0 {
		m.idle.Wait()
	}
	m.reported = true
	line := m.summaryLocked()
	m.mu.Unlock()
	logf("modules", "%s", line)
	return nil
}

// classify marks drivers (and the libraries only drivers need) and deferred filesystems.
func (m *moduleLoader) classify() {
	if m.aliases != nil {
		var lib func(j *modJob)
		lib = func(j *modJob) {
			for _, d := range j.deps {
				if dj := m.byPath[d]; dj != nil && !dj.driver {
					dj.driver = true
					lib(dj)
				}
			}
		}
		for _, j := range m.jobs {
			if m.aliases.drivers[layout.ModName(j.path)] {
				j.driver = true
			}
		}
		for _, j := range m.jobs {
			if j.driver {
				lib(j)
			}
		}
	}
	// Needed by name: every other module except unneeded filesystems and libraries
	// (modules others need), plus whatever those need (which may be a library drivers use
	// too: it then loads by name). A library only unneeded filesystems need (libcrc32c for
	// xfs) is deferred with them.
	library := map[string]bool{}
	for _, j := range m.jobs {
		for _, d := range j.deps {
			library[d] = true
		}
	}
	eager := map[string]bool{}
	var need func(p string)
	need = func(p string) {
		if eager[p] {
			return
		}
		eager[p] = true
		if j := m.byPath[p]; j != nil {
			j.driver = false
			for _, d := range j.deps {
				need(d)
			}
		}
	}
	for _, j := range m.jobs {
		if j.driver {
			continue
		}
		fs := fsOf(j.path)
		if fs == "" && library[j.path] {
			continue
		}
		if fs == "" || m.keepFS == nil || m.keepFS(fs, layout.ModName(j.path)) {
			need(j.path)
		}
	}
	for _, j := range m.jobs {
		if !eager[j.path] && !j.driver {
			j.deferred = true
		}
	}
	m.prioritize()
}

// Load priorities (lower first). Drivers for devices always come first: the disk's
// driver starts the card's initialization, the slowest wait of the boot.
const (
	prioDevice = 0
	prioMount  = 1 // + the filesystem's place in mountFS
	prioOther  = 100
)

// prioritize sets the priority of the modules loaded by name: efivarfs with the drivers
// (disk discovery reads LoaderDevicePartUUID through it), then the filesystems in mount
// order with everything they need, then the rest.
func (m *moduleLoader) prioritize() {
	var mark func(j *modJob, p int)
	mark = func(j *modJob, p int) {
		if j.prio <= p {
			return
		}
		j.prio = p
		for _, d := range j.deps {
			if dj := m.byPath[d]; dj != nil {
				mark(dj, p)
			}
		}
	}
	for _, j := range m.jobs {
		j.prio = prioOther + 1
	}
	for _, j := range m.jobs {
		switch {
		case layout.ModName(j.path) == "efivarfs":
			mark(j, prioDevice)
		case fsOf(j.path) != "":
			p := prioOther
			if i := slices.Index(m.mountFS, fsOf(j.path)); i >= 0 {
				p = prioMount + i
			}
			mark(j, p)
		default:
			mark(j, prioOther)
		}
	}
}

// coldplug looks at the devices sysfs lists without a driver on the buses want accepts.
func (m *moduleLoader) coldplug(want func(bus string) bool, what string) {
	if m.aliases == nil {
		return
	}
	// Each driver starts loading as the scan finds its device, not after the scan.
	n, err := mount.EachModaliasOn("/sys", want, m.device)
	if err != nil {
		logf("modules", "coldplug: %v", err)
	}
	tracef("coldplug: %d devices on %s looked at", n, what)
}

// gateLocked opens the slots to loads by name once the storage buses were scanned and
// no driver load is under way (m.mu held): on a machine with one CPU a filesystem
// loading first would delay the card's initialization. A module a driver needs is
// urgent and goes through anyway.
func (m *moduleLoader) gateLocked() {
	m.sem.setOpen(m.storageScanned && m.pending == 0)
}

// markUrgent marks j and everything it needs as needed by a driver (see gateLocked).
func (m *moduleLoader) markUrgent(j *modJob) {
	if j.urgent.Swap(true) {
		return
	}
	for _, d := range j.deps {
		if dj := m.byPath[d]; dj != nil {
			m.markUrgent(dj)
		}
	}
}

// device starts loading the drivers for a modalias, once per modalias.
func (m *moduleLoader) device(modalias string) {
	<-m.ready
	if m.aliases == nil {
		return
	}
	m.mu.Lock()
	if m.seen[modalias] {
		m.mu.Unlock()
		return
	}
	m.seen[modalias] = true
	m.mu.Unlock()
	for _, name := range m.aliases.match(modalias) {
		j := m.byName[name]
		if j == nil {
			continue
		}
		m.mu.Lock()
		m.pending++
		m.markUrgent(j)
		m.gateLocked()
		m.sem.wake() // a load by name this driver needs may be waiting
		m.mu.Unlock()
		go func() {
			m.ensure(j, true, prioDevice)
			m.mu.Lock()
			if m.pending--; m.pending == 0 {
				if m.coldplugged && m.drivers.IsZero() {
					m.drivers = time.Now()
				}
				m.gateLocked()
				m.idle.Broadcast()
			}
			m.mu.Unlock()
		}()
	}
}

// ensure loads j after its dependencies (those in parallel), once; prio is its place in
// the queue for a slot. Concurrent callers wait for the first.
func (m *moduleLoader) ensure(j *modJob, forDevice bool, prio int) {
	j.once.Do(func() {
		var wg sync.WaitGroup
		for _, d := range j.deps {
			if dj := m.byPath[d]; dj != nil {
				wg.Add(1)
				go func() {
					defer wg.Done()
					m.ensure(dj, forDevice, prio)
				}()
			}
		}
		wg.Wait()
		tWait := time.Now()
		m.sem.acquire(prio, &j.urgent)
		t := time.Now()
		err := finitModule(filepath.Join(m.dir, j.path))
		end := time.Now()
		m.sem.release()
		tracef("module %s: %d ms in finit_module (%d ms waiting for a slot before), %v", filepath.Base(j.path), end.Sub(t).Milliseconds(), t.Sub(tWait).Milliseconds(), err)
		m.mu.Lock()
		defer m.mu.Unlock()
		j.tried = true
		m.inKernel += end.Sub(t)
		if end.After(m.last) {
			m.last = end
		}
		switch {
		case err == nil:
			m.n++
			j.loaded = true
			if forDevice {
				m.devices = append(m.devices, filepath.Base(j.path))
			}
			if m.reported && forDevice {
				logf("modules", "for a new device: %s in %d ms", filepath.Base(j.path), end.Sub(t).Milliseconds())
			}
		case errors.Is(err, unix.ENODEV):
			// The module's init found nothing to drive (efivarfs without UEFI).
			m.skipped++
		default:
			logf("modules", "%s: %v", j.path, err)
			m.failed++
		}
	})
}

// ensureName loads the module called name (and what it needs) unless deferred.
func (m *moduleLoader) ensureName(name string) {
	<-m.ready
	if j := m.byName[name]; j != nil && !j.deferred {
		m.ensure(j, false, j.prio)
	}
}

// ensureFS returns once the module of filesystem fstype and what it needs are in (or
// were tried), without waiting for unrelated modules: loaded by name ahead of its turn
// if loading has not got to it, loaded now if it was deferred. A filesystem without a
// module in the list (built into the kernel, or missing) returns at once and the mount
// says what is wrong; so does a list that could not be read (after loading gave up).
func (m *moduleLoader) ensureFS(fstype string) {
	<-m.ready
	if m.byName == nil {
		<-m.done
		return
	}
	j := m.byName[layout.ModName(fstype)]
	switch {
	case j == nil:
	case j.deferred:
		m.loadDeferred(func(j *modJob) bool { return layout.ModName(j.path) == fstype }, fstype)
	default:
		m.ensure(j, false, j.prio)
	}
}

// loadAll loads every deferred module (before the emergency shell: a person there may
// want any filesystem). Drivers keep loading as devices appear.
func (m *moduleLoader) loadAll() {
	select {
	case <-m.done:
	default:
		return // still loading; the deferred ones are few
	}
	m.loadDeferred(func(*modJob) bool { return true }, "the emergency shell")
}

// loadDeferred loads the deferred modules want chooses (and their deferred dependencies)
// and returns how many loaded.
func (m *moduleLoader) loadDeferred(want func(*modJob) bool, why string) int {
	m.deferMu.Lock()
	defer m.deferMu.Unlock()
	m.mu.Lock() // j.tried is written under it
	todo := map[string]bool{}
	var need func(p string)
	need = func(p string) {
		j := m.byPath[p]
		if j == nil || !j.deferred || j.tried || todo[p] {
			return
		}
		todo[p] = true
		for _, d := range j.deps {
			need(d)
		}
	}
	for _, j := range m.jobs {
		if j.deferred && !j.tried && want(j) {
			need(j.path)
		}
	}
	m.mu.Unlock()
	if len(todo) == 0 {
		return 0
	}
	t0 := time.Now()
	var names []string
	for _, j := range m.jobs { // list order: dependencies first
		if todo[j.path] {
			m.ensure(j, false, prioOther)
			if j.loaded {
				names = append(names, filepath.Base(j.path))
			}
		}
	}
	logf("modules", "for %s: %s in %d ms", why, strings.Join(names, " "), time.Since(t0).Milliseconds())
	return len(names)
}

func finitModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}
