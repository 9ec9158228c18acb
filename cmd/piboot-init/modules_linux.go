package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/piboot/piboot/initrd"
)

// modulesDone is set once every module has been loaded: a retried boot skips the step.
var modulesDone bool

// loadModules loads the modules listed in the initramfs's load list, in its order
// (dependencies first, as initrd.Build resolved them). A module that fails to load is
// reported and skipped: the disk may still be found without it, and if not, the error
// about the missing disk follows.
func loadModules() error {
	if modulesDone {
		return nil
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return err
	}
	release := unix.ByteSliceToString(uts.Release[:])
	dir := filepath.Join(initrd.ModulesDir, release)
	list := filepath.Join(dir, initrd.LoadList)
	f, err := os.Open(list)
	if errors.Is(err, os.ErrNotExist) {
		others, _ := filepath.Glob(filepath.Join(initrd.ModulesDir, "*", initrd.LoadList))
		if len(others) > 0 {
			return fmt.Errorf("modules: this initramfs holds modules for %s, but the kernel is %s", filepath.Base(filepath.Dir(others[0])), release)
		}
		logf("modules", "none in this initramfs")
		modulesDone = true
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	t0 := time.Now()
	n, failed, skipped := 0, 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rel := strings.TrimSpace(sc.Text())
		if rel == "" || strings.HasPrefix(rel, "#") {
			continue
		}
		if err := finitModule(filepath.Join(dir, rel)); err != nil {
			if errors.Is(err, unix.ENODEV) {
				// The module's init found nothing to drive (efivarfs without UEFI).
				skipped++
				continue
			}
			logf("modules", "%s: %v", rel, err)
			failed++
			continue
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", list, err)
	}
	logf("modules", "loaded %d in %d ms (%d not needed here, %d failed)", n, time.Since(t0).Milliseconds(), skipped, failed)
	modulesDone = true
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
