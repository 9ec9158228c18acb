// Command piboot builds bootable images and manages them, on the host and on the device.
//
// Each subcommand lives in its own file and registers itself in init, so that the
// subcommands stay thin shells over one package each.
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
)

// command is one subcommand: run gets the arguments after the subcommand's name and
// returns the process exit code.
type command struct {
	summary string
	run     func(args []string) int
}

var commands = map[string]command{}

func register(name, summary string, run func(args []string) int) {
	if _, dup := commands[name]; dup {
		panic("piboot: subcommand registered twice: " + name)
	}
	commands[name] = command{summary: summary, run: run}
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: piboot <command> [flags] [args]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, commands[n].summary)
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
	c, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "piboot: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	os.Exit(c.run(os.Args[2:]))
}
