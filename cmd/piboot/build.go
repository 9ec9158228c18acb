//go:build !pibootlite

package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/piboot/piboot/images"
)

func init() {
	register("build", runBuild)
}

// setFlags collects repeated --set Section.Key=value overrides.
type setFlags []images.Override

func (s *setFlags) String() string { return fmt.Sprint(*s) }

func (s *setFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	sec, key, ok2 := strings.Cut(k, ".")
	if !ok || !ok2 || sec == "" || key == "" {
		return fmt.Errorf("want Section.Key=value, got %q", v)
	}
	*s = append(*s, images.Override{Section: sec, Key: key, Value: val})
	return nil
}

var _ flag.Value = (*setFlags)(nil)

func runBuild(args []string) int {
	fs := newFlagSet("build", "[-c image.conf] [flags]")
	conf := fs.String("c", "images/demo/image.conf", "image.conf to build")
	out := fs.String("o", "out", "output directory")
	version := fs.String("version", "", "image version (overrides [Image] Version=)")
	fw := fs.String("firmware", "", "RPi4 UEFI firmware zip or directory (overrides [Firmware] RPi4UEFI=)")
	extra := fs.String("cmdline-extra", "", "appended to the kernel command line")
	quiet := fs.Bool("q", false, "print nothing but errors")
	var sets setFlags
	fs.Var(&sets, "set", "override a setting: Section.Key=value (repeatable; an empty value resets a list)")
	fs.Parse(args)
	if fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	var ov []images.Override
	if *version != "" {
		ov = append(ov, images.Override{Section: "Image", Key: "Version", Value: *version})
	}
	if *fw != "" {
		ov = append(ov, images.Override{Section: "Firmware", Key: "RPi4UEFI", Value: *fw})
	}
	ov = append(ov, sets...)
	if strings.TrimSpace(*extra) != "" {
		ov = append(ov, images.Override{Section: "Kernel", Key: "CommandLine", Value: *extra})
	}
	c, err := images.LoadConfig(*conf, ov)
	if err == nil {
		// Before anything is written: a missing input is named with its image.conf line.
		err = c.CheckInputs()
	}
	if err != nil {
		return fail("build", err)
	}
	var p *images.Progress
	if !*quiet {
		p = images.AutoProgress("piboot build: ")
	}
	res, err := images.Build(c, images.Options{OutDir: *out, Progress: p})
	if err != nil {
		return fail("build", err)
	}
	if !*quiet {
		fmt.Fprintf(os.Stderr, "piboot build: %s (%d MiB, %d partitions)\n", res.Image, res.Size>>20, len(res.Partitions))
		for _, pl := range res.Partitions {
			fmt.Fprintf(os.Stderr, "  %d %-14s %8d MiB at %d MiB\n", pl.Index, pl.Label, pl.Size>>20, pl.Offset>>20)
		}
		fmt.Fprintf(os.Stderr, "piboot build: command line: %s\n", res.Cmdline)
	}
	return 0
}
