//go:build !pibootlite

package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/piboot/piboot/initrd"
)

func init() {
	register("initrd", runInitrd)
}

func runInitrd(args []string) int {
	fs := newFlagSet("initrd", "-o initrd.cpio.zst")
	out := fs.String("o", "initrd.cpio.zst", "output `file` (zstd-compressed cpio)")
	arch := fs.String("arch", "arm64", "target architecture (GOARCH): arm64 or amd64")
	initBin := fs.String("init", "", "static piboot-init `binary` for /init (default: go build ./cmd/piboot-init from this source tree)")
	cache := fs.String("cache", defaultCache(), "cache `dir` for the u-root busybox and the default module tree ($PIBOOT_CACHE)")
	modTree := fs.String("modules", "", "kernel module tree `dir` (lib/modules/<version>); default <cache>/<arch>/modules; \"none\" for no modules")
	modList := fs.String("module-list", "", "`file` of module names, one per line (# comments), instead of the default set")
	addMods := fs.String("add-modules", "", "comma-separated module `names` added to the set")
	repartD := fs.String("repart-d", "", "`dir` of repart.d *.conf files for /etc/repart.d (default: root.conf with Type=root, Format=ext4, Weight=1000)")
	shell := fs.Bool("shell", true, "include the u-root emergency shell (gosh and core commands)")
	fs.Parse(args)
	if fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	if _, ok := initrd.DefaultModules[*arch]; !ok {
		return fail("initrd", fmt.Errorf("-arch %q: want arm64 or amd64", *arch))
	}
	cfg := initrd.Config{Init: *initBin}
	if cfg.Init == "" {
		tmp, err := os.MkdirTemp("", "piboot-initrd-")
		if err != nil {
			return fail("initrd", err)
		}
		defer os.RemoveAll(tmp)
		cfg.Init = filepath.Join(tmp, "piboot-init")
		cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-buildid= -s -w", "-o", cfg.Init, "github.com/piboot/piboot/cmd/piboot-init")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+*arch)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fail("initrd", fmt.Errorf("build piboot-init (run inside the piboot source tree, or give -init): %w", err))
		}
	}
	if *shell {
		bb, err := initrd.Busybox(*arch, initrd.ShellCommands, filepath.Join(*cache, *arch))
		if err != nil {
			return fail("initrd", err)
		}
		cfg.Busybox, cfg.BusyboxCommands = bb, initrd.ShellCommands
	}
	if *modTree != "none" {
		cfg.ModuleTree = *modTree
		if cfg.ModuleTree == "" {
			cfg.ModuleTree = filepath.Join(*cache, *arch, "modules")
		}
		cfg.Modules = initrd.DefaultModules[*arch]
		if *modList != "" {
			l, err := readNameList(*modList)
			if err != nil {
				return fail("initrd", err)
			}
			cfg.Modules = l
		}
		for _, m := range strings.Split(*addMods, ",") {
			if m = strings.TrimSpace(m); m != "" {
				cfg.Modules = append(cfg.Modules, m)
			}
		}
	}
	if *repartD != "" {
		ents, err := filepath.Glob(filepath.Join(*repartD, "*.conf"))
		if err != nil {
			return fail("initrd", err)
		}
		if len(ents) == 0 {
			return fail("initrd", fmt.Errorf("-repart-d %s: no *.conf files", *repartD))
		}
		cfg.RepartD = map[string][]byte{}
		for _, e := range ents {
			b, err := os.ReadFile(e)
			if err != nil {
				return fail("initrd", err)
			}
			cfg.RepartD[filepath.Base(e)] = b
		}
	}
	st, err := initrd.BuildFile(*out, cfg)
	if err != nil {
		return fail("initrd", err)
	}
	mods := "no modules"
	if cfg.ModuleTree != "" {
		mods = fmt.Sprintf("%d modules for %s", len(st.Modules), st.KernelVersion)
	}
	fmt.Printf("initrd: %s: %d bytes (cpio %d bytes), %s\n", *out, st.CompressedBytes, st.CPIOBytes, mods)
	return 0
}

func defaultCache() string {
	if c := os.Getenv("PIBOOT_CACHE"); c != "" {
		return c
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "piboot")
}

// readNameList reads names one per line, ignoring blank lines and # comments.
func readNameList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var l []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		s := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(s, '#'); i >= 0 {
			s = strings.TrimSpace(s[:i])
		}
		if s == "" {
			continue
		}
		if strings.ContainsAny(s, " \t/") {
			return nil, fmt.Errorf("%s:%d: %q is not a module name", path, n, s)
		}
		l = append(l, s)
	}
	return l, sc.Err()
}
