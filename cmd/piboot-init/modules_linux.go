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

	"github.com/piboot/piboot/initrd"
	"github.com/piboot/piboot/mount"
)

// moduleLoader loads the initramfs's modules in the background: disk discovery, which
// waits for SD and USB devices to probe anyway, runs while the filesystem and network
// modules load. Mounting waits for all of them.
type moduleLoader struct {
	done     chan struct{}
	err      error     // set before done closes
	finished time.Time // likewise
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
func startModules() *moduleLoader {
	if modules != nil {
		return modules
	}
	modules = &moduleLoader{done: make(chan struct{})}
	go func() {
		defer close(modules.done)
		defer func() { modules.finished = time.Now() }()
		defer func() {
			if r := recover(); r != nil {
				modules.err = fmt.Errorf("modules: internal error: %v", r)
			}
		}()
		modules.err = loadModules()
	}()
	return modules
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

// wait blocks until every module was tried.
func (m *moduleLoader) wait() error {
	<-m.done
	return m.err
}

// loadModules loads the modules listed in the initramfs's load list. Each line names a
// module and the modules it needs first; independent modules load in parallel, one per
// CPU (the kernel verifies and relocates each, which takes a while on a Pi). A module
// that fails to load is reported and skipped: the disk may still be found without it,
// and if not, the error about the missing disk or filesystem follows.
func loadModules() error {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return err
	}
	release := unix.ByteSliceToString(uts.Release[:])
	dir := filepath.Join(initrd.ModulesDir, release)
	list := filepath.Join(dir, initrd.LoadList)
	b, err := os.ReadFile(list)
	if errors.Is(err, os.ErrNotExist) {
		others, _ := filepath.Glob(filepath.Join(initrd.ModulesDir, "*", initrd.LoadList))
		if len(others) > 0 {
			return fmt.Errorf("modules: this initramfs holds modules for %s, but the kernel is %s", filepath.Base(filepath.Dir(others[0])), release)
		}
		logf("modules", "none in this initramfs")
		return nil
	}
	if err != nil {
		return err
	}
	type job struct {
		path string
		deps []string
		done chan struct{}
	}
	var jobs []*job
	byPath := map[string]*job{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		j := &job{path: f[0], deps: f[1:], done: make(chan struct{})}
		jobs = append(jobs, j)
		byPath[j.path] = j
	}
	t0 := time.Now()
	var mu sync.Mutex
	n, failed, skipped := 0, 0, 0
	sem := make(chan struct{}, runtime.NumCPU())
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(j.done)
			for _, d := range j.deps {
				if dj := byPath[d]; dj != nil {
					<-dj.done
				}
			}
			sem <- struct{}{}
			err := finitModule(filepath.Join(dir, j.path))
			<-sem
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				n++
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
	logf("modules", "loaded %d in %d ms (%d not needed here, %d failed)", n, time.Since(t0).Milliseconds(), skipped, failed)
	return nil
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
