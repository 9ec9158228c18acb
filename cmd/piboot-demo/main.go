// Command piboot-demo is the payload init of the default image and of piboot's boot tests.
// Started by piboot-init after switch_root, it prints the demo contract line
//
//	piboot-demo: version=<v> root=<device> rootsize=<bytes> boots=<n>
//
// counts boots in a file on the root filesystem (durably: fsync of file and directory),
// runs the post-start hooks other files register (in order), and powers the machine off
// when the kernel command line holds piboot.demo.poweroff.
package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// BootsFile counts the boots of this root filesystem.
const BootsFile = "/var/lib/piboot-demo/boots"

// state is what the hooks get: the facts of this boot.
type state struct {
	Cmdline  string
	Version  string
	Root     string // block device mounted at /
	RootSize int64
	Boots    int
}

// hook runs after the contract line; a failing hook is reported on the console but does
// not stop the later ones (a demo that cannot update must still power off).
type hook struct {
	order int
	name  string
	run   func(*state) error
}

var hooks []hook

// addHook registers a post-start hook; files other than this one call it from init().
// Lower order runs first.
func addHook(order int, name string, run func(*state) error) {
	hooks = append(hooks, hook{order, name, run})
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stdout, "piboot-demo: "+format+"\n", args...)
}

func main() {
	if err := ensureKernelFS(); err != nil {
		logf("error: %v", err)
	}
	st, err := collect()
	if err != nil {
		logf("error: %v", err)
	} else {
		logf("version=%s root=%s rootsize=%d boots=%d", st.Version, st.Root, st.RootSize, st.Boots)
		sort.SliceStable(hooks, func(i, j int) bool { return hooks[i].order < hooks[j].order })
		for _, h := range hooks {
			if err := h.run(st); err != nil {
				logf("error: %s: %v", h.name, err)
			}
		}
	}
	cmdline := ""
	if st != nil {
		cmdline = st.Cmdline
	}
	if hasFlag(cmdline, "piboot.demo.poweroff") {
		logf("powering off")
		powerOff()
	}
	if os.Getpid() != 1 {
		if err != nil {
			os.Exit(1)
		}
		return
	}
	logf("running (add piboot.demo.poweroff to the kernel command line to power off)")
	idle()
}

// collect gathers the contract line's facts and counts this boot.
func collect() (*state, error) {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return nil, err
	}
	st := &state{Cmdline: strings.TrimSpace(string(b))}
	st.Version = version(st.Cmdline)
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return st, err
	}
	st.Root, err = rootDevice(string(mi))
	if err != nil {
		return st, err
	}
	if st.RootSize, err = deviceSize(st.Root); err != nil {
		return st, err
	}
	if st.Boots, err = countBoot(BootsFile); err != nil {
		return st, fmt.Errorf("count boots in %s: %w", BootsFile, err)
	}
	return st, nil
}

// version is the suffix of piboot.store=nix-store_<v>, or "unknown".
func version(cmdline string) string {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "piboot.store="); ok {
			if i := strings.LastIndexByte(v, '_'); i >= 0 && i+1 < len(v) {
				return v[i+1:]
			}
			return v
		}
	}
	return "unknown"
}

func hasFlag(cmdline, flag string) bool {
	for _, f := range strings.Fields(cmdline) {
		if f == flag || strings.HasPrefix(f, flag+"=") {
			return true
		}
	}
	return false
}

// rootDevice finds the source of the topmost mount at / in a mountinfo text.
func rootDevice(mountinfo string) (string, error) {
	dev := ""
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || f[4] != "/" {
			continue
		}
		for i := 6; i+2 < len(f); i++ {
			if f[i] == "-" {
				dev = f[i+2]
				break
			}
		}
	}
	if dev == "" {
		return "", fmt.Errorf("no mount at / in /proc/self/mountinfo")
	}
	return dev, nil
}

// countBoot increments the counter in path and makes it durable before returning the new
// count: write a new file, fsync it, rename it over the old one, fsync the directory.
func countBoot(path string) (int, error) {
	n := 0
	if b, err := os.ReadFile(path); err == nil {
		if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d", &n); err != nil {
			return 0, fmt.Errorf("%s: not a number: %q", path, strings.TrimSpace(string(b)))
		}
	} else if !os.IsNotExist(err) {
		return 0, err
	}
	n++
	dir := path[:strings.LastIndexByte(path, '/')]
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	_, err = fmt.Fprintf(f, "%d\n", n)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, err
	}
	d, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	return n, d.Sync()
}

// idle keeps PID 1 alive, reaping orphans.
func idle() {
	for {
		reap()
		time.Sleep(time.Second)
	}
}
