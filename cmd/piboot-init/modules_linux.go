package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/piboot/piboot/initrd/layout"
	"github.com/piboot/piboot/mount"
)

// moduleLoader loads the initramfs's modules in the background: disk discovery, which
// waits for SD and USB devices to probe anyway, runs while the filesystem and network
// modules load. Mounting waits for all of them. Filesystem modules this boot does not
// mount (xfs under an ext4 root, say) are deferred: loaded on demand (ensureFS) or before
// the emergency shell, so they cost nothing on a normal boot.
type moduleLoader struct {
	done     chan struct{}
	err      error     // set before done closes
	finished time.Time // likewise

	dir  string
	jobs []*modJob // in list order: dependencies first
	// keepFS says whether modules under kernel/fs/<name>/ load eagerly.
	keepFS func(name string) bool

	mu sync.Mutex // serializes on-demand loading
}

type modJob struct {
	path     string
	deps     []string
	deferred bool
	loaded   bool
	done     chan struct{} // closed once an eager module was tried
}

// finishedBefore reports whether loading had ended by t.
func (m *moduleLoader) finishedBefore(t time.Time) bool {
	select {
	case <-m.done:
		return !m.finished.After(t)
	default:
		return false
	}
}

var modules *moduleLoader

// startModules starts loading once per boot of the machine (a retried attempt reuses it).
func startModules(keepFS func(string) bool) *moduleLoader {
	if modules != nil {
		return modules
	}
	modules = &moduleLoader{done: make(chan struct{}), keepFS: keepFS}
	go func() {
		defer close(modules.done)
		defer func() { modules.finished = time.Now() }()
		defer func() {
			if r := recover(); r != nil {
				modules.err = fmt.Errorf("modules: internal error: %v", r)
			}
		}()
		modules.err = modules.load()
	}()
	return modules
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

// mountEFIVars mounts efivarfs as soon as its module is in: it retries while the
// kernel does not know the filesystem and modules are still loading.
func mountEFIVars(m *moduleLoader) error {
	for {
		err := mount.EFIVarFS()
		if err == nil || !errors.Is(err, unix.ENODEV) {
			return err
		}
		select {
		case <-m.done:
			return mount.EFIVarFS()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// wait blocks until every eager module was tried.
func (m *moduleLoader) wait() error {
	<-m.done
	return m.err
}

// load reads the initramfs's load list: each line names a module and the modules it
// needs first. Eager modules load in parallel, one per CPU, each after its
// dependencies (the kernel verifies and relocates each, which takes a while on a Pi). A
// module that fails to load is reported and skipped: the disk may still be found without
// it, and if not, the error about the missing disk or filesystem follows.
func (m *moduleLoader) load() error {
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
	byPath := map[string]*modJob{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		j := &modJob{path: f[0], deps: f[1:], done: make(chan struct{})}
		m.jobs = append(m.jobs, j)
		byPath[j.path] = j
	}
	// Eager: every module except unneeded filesystems, plus whatever those need.
	eager := map[string]bool{}
	var need func(p string)
	need = func(p string) {
		if eager[p] {
			return
		}
		eager[p] = true
		if j := byPath[p]; j != nil {
			for _, d := range j.deps {
				need(d)
			}
		}
	}
	for _, j := range m.jobs {
		if fs := fsOf(j.path); fs == "" || m.keepFS == nil || m.keepFS(fs) {
			need(j.path)
		}
	}
	var deferred []string
	for _, j := range m.jobs {
		if !eager[j.path] {
			j.deferred = true
			deferred = append(deferred, filepath.Base(j.path))
		}
	}
	t0 := time.Now()
	var mu sync.Mutex
	n, failed, skipped := 0, 0, 0
	sem := make(chan struct{}, runtime.NumCPU())
	var wg sync.WaitGroup
	for _, j := range m.jobs {
		if j.deferred {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(j.done)
			for _, d := range j.deps {
				if dj := byPath[d]; dj != nil && !dj.deferred {
					<-dj.done
				}
			}
			sem <- struct{}{}
			err := finitModule(filepath.Join(m.dir, j.path))
			<-sem
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				n++
				j.loaded = true
			case errors.Is(err, unix.ENODEV):
				// The module's init found nothing to drive (efivarfs without UEFI).
				skipped++
			default:
				logf("modules", "%s: %v", j.path, err)
				failed++
			}
		}()
	}
	wg.Wait()
	extra := ""
	if len(deferred) > 0 {
		extra = "; loaded when needed: " + strings.Join(deferred, " ")
	}
	logf("modules", "loaded %d in %d ms (%d not needed here, %d failed%s)", n, time.Since(t0).Milliseconds(), skipped, failed, extra)
	return nil
}

// ensureFS loads the deferred module of filesystem fstype and its deferred
// dependencies, in list order, if it has not been loaded yet.
func (m *moduleLoader) ensureFS(fstype string) {
	if err := m.wait(); err != nil {
		return
	}
	m.loadDeferred(func(j *modJob) bool { return layout.ModName(j.path) == fstype }, fstype)
}

// loadAll loads every deferred module (before the emergency shell: a person there may
// want any filesystem).
func (m *moduleLoader) loadAll() {
	select {
	case <-m.done:
	default:
		return // still loading; the deferred ones are few
	}
	m.loadDeferred(func(*modJob) bool { return true }, "the emergency shell")
}

func (m *moduleLoader) loadDeferred(want func(*modJob) bool, why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	byPath := map[string]*modJob{}
	for _, j := range m.jobs {
		byPath[j.path] = j
	}
	todo := map[string]bool{}
	var need func(p string)
	need = func(p string) {
		j := byPath[p]
		if j == nil || !j.deferred || j.loaded || todo[p] {
			return
		}
		todo[p] = true
		for _, d := range j.deps {
			need(d)
		}
	}
	for _, j := range m.jobs {
		if j.deferred && !j.loaded && want(j) {
			need(j.path)
		}
	}
	if len(todo) == 0 {
		return
	}
	t0 := time.Now()
	var names []string
	for _, j := range m.jobs { // list order: dependencies first
		if !todo[j.path] {
			continue
		}
		if err := finitModule(filepath.Join(m.dir, j.path)); err != nil && !errors.Is(err, unix.ENODEV) {
			logf("modules", "%s: %v", j.path, err)
			continue
		}
		j.loaded = true
		names = append(names, filepath.Base(j.path))
	}
	logf("modules", "for %s: %s in %d ms", why, strings.Join(names, " "), time.Since(t0).Milliseconds())
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
