package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/piboot/piboot/mount"
)

// config is what the kernel command line asks of piboot-init (DESIGN.md's contract).
type config struct {
	Store      string        // piboot.store=: the store's partition label (required)
	Init       string        // init=: the program to execute in the new root
	Disks      []string      // piboot.disk=: candidates, in order (empty: auto)
	Root       string        // piboot.root=: the root partition's label
	StoreMount string        // piboot.storemount=: where the store is mounted in the new root
	Shell      bool          // piboot.shell: stop in the emergency shell before switch_root
	Trace      bool          // piboot.trace: a "trace:" line per step and per module (boot time)
	Timeout    time.Duration // piboot.timeout=: how long to wait for late devices
}

const defaultInit = "/sbin/init"

// parseCmdline reads the piboot.* parameters and init= from the kernel command line.
func parseCmdline(cmdline string) (config, error) {
	c := config{Init: defaultInit, Disks: mount.DefaultCandidates, Root: "root", StoreMount: "/nix/store", Timeout: 10 * time.Second}
	for _, f := range splitCmdline(cmdline) {
		k, v, hasV := strings.Cut(f, "=")
		switch k {
		case "piboot.store":
			c.Store = v
		case "init":
			c.Init = v
		case "piboot.disk":
			c.Disks = mount.NormalizeCandidates(v)
		case "piboot.root":
			c.Root = v
		case "piboot.storemount":
			c.StoreMount = v
		case "piboot.shell":
			c.Shell = !hasV || v == "1" || v == "yes" || v == "true"
		case "piboot.trace":
			c.Trace = !hasV || v == "1" || v == "yes" || v == "true"
		case "piboot.timeout":
			s, err := strconv.ParseFloat(strings.TrimSuffix(v, "s"), 64)
			if err != nil || s < 0 || s > 3600 {
				return c, fmt.Errorf("piboot.timeout=%q: want seconds between 0 and 3600", v)
			}
			c.Timeout = time.Duration(s * float64(time.Second))
		}
	}
	switch {
	case c.Store == "":
		return c, fmt.Errorf("no piboot.store= on the kernel command line (the store's partition label, e.g. piboot.store=nix-store_v0)")
	case c.Root == "":
		return c, fmt.Errorf("piboot.root= is empty")
	case !strings.HasPrefix(c.Init, "/"):
		return c, fmt.Errorf("init=%q: want an absolute path in the new root", c.Init)
	case !strings.HasPrefix(c.StoreMount, "/") || c.StoreMount == "/":
		return c, fmt.Errorf("piboot.storemount=%q: want an absolute directory below /", c.StoreMount)
	case c.Store == c.Root:
		return c, fmt.Errorf("piboot.store= and piboot.root= both name %q", c.Store)
	}
	return c, nil
}

// splitCmdline splits like the kernel: on spaces, with double quotes grouping.
func splitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, have = !inQuote, true
		case (r == ' ' || r == '\t' || r == '\n') && !inQuote:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}
