// Command piboot builds bootable images and manages them, on the host and on the device.
//
// Each subcommand lives in its own file and registers itself in init, so that the
// subcommands stay thin shells over one package each.
//
// Built with the tag pibootlite, piboot is a front door that contains only the disk tools
// (repart, mkfs) and hands every other subcommand to piboot-full, the build without the tag,
// found next to it. A Go program pays for the initialization of every package it links
// before main runs: the update and build tools link net/http, OpenPGP and the image builder,
// which made `piboot repart` start about 7 ms slower than it does without them, several times
// the work it has to do on a card. The build without the tag is complete on its own.
package main

import (
	"flag"
	"fmt"
	"os"

	_ "github.com/piboot/piboot/internal/stack" // first: grows main's stack once, see there
)

// subcommand is one subcommand of any build: run gets the arguments after its name and
// returns the process exit code; it is nil in a build that does not contain the subcommand
// (the front door hands those on to piboot-full).
type subcommand struct {
	name, summary string
	run           func(args []string) int
}

// subcommands lists every subcommand of every build, sorted by name, so that the front door
// (pibootlite) lists and hands on the ones it does not contain. A slice, not a map: it is
// laid out by the linker, where a map would be built at every start.
var subcommands = []subcommand{
	{name: "bless", summary: "mark the running boot entry good (or bad), as systemd-bless-boot"},
	{name: "build", summary: "build the flashable image, its split files and update directory"},
	{name: "initrd", summary: "build the initramfs: piboot-init, emergency shell, kernel modules, repart.d"},
	{name: "inspect", summary: "show an image's (or disk's) partitions, filesystems, versions and UKI command lines"},
	{name: "keygen", summary: "make an OpenPGP key pair for signing update directories"},
	{name: "mkfs", summary: "make a filesystem (ext4, vfat, squashfs, xfs) in a file or on a device"},
	{name: "repart", summary: "grow a GPT disk or image to match repart.d definitions (systemd-repart semantics)"},
	{name: "uki", summary: "build a Unified Kernel Image from a systemd EFI stub and a kernel"},
	{name: "update", summary: "list, check for, install and vacuum versions (systemd-sysupdate's contract)"},
}

func lookup(name string) *subcommand {
	for i := range subcommands {
		if subcommands[i].name == name {
			return &subcommands[i]
		}
	}
	return nil
}

func register(name string, run func(args []string) int) {
	c := lookup(name)
	if c == nil {
		panic("piboot: subcommand without a summary: " + name)
	}
	if c.run != nil {
		panic("piboot: subcommand registered twice: " + name)
	}
	c.run = run
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: piboot <command> [flags] [args]\n\ncommands:\n")
	for _, c := range subcommands {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", c.name, c.summary)
	}
}

// newFlagSet returns a flag set whose errors exit with status 2 and whose usage line names
// the subcommand.
func newFlagSet(name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet("piboot "+name, flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: piboot %s [flags] %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// fail prints an error the way every subcommand does and returns exit code 1.
func fail(name string, err error) int {
	fmt.Fprintf(os.Stderr, "piboot %s: %v\n", name, err)
	return 1
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	c := lookup(os.Args[1])
	if c == nil || c.run == nil {
		if c != nil {
			os.Exit(handOn(os.Args[1]))
		}
		fmt.Fprintf(os.Stderr, "piboot: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	os.Exit(c.run(os.Args[2:]))
}
