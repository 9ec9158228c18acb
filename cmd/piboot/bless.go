//go:build !pibootlite

package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/piboot/piboot/sysupdate"
)

func init() {
	register("bless", runBless)
}

func runBless(args []string) int {
	fs := newFlagSet("bless", "[good|bad|status]")
	efivars := fs.String("efivars", sysupdate.EFIVars, "where efivarfs is mounted")
	esp := fs.String("esp", "", "where the ESP is mounted (default: /efi, /boot/efi or /boot)")
	fs.Parse(args)
	verb := "good"
	if fs.NArg() > 0 {
		verb = fs.Arg(0)
	}
	if *esp == "" {
		e, err := sysupdate.FindESP("/")
		if err != nil {
			return fail("bless", err)
		}
		*esp = e
	}
	switch verb {
	case "status":
		p, err := sysupdate.ReadBootCountPath(*efivars)
		if errors.Is(err, sysupdate.ErrNoBootCounting) {
			fmt.Println("clean (no boot counting in effect)")
			return 0
		}
		if err != nil {
			return fail("bless", err)
		}
		if _, err := os.Stat(*esp + "/" + p); err != nil {
			fmt.Printf("%s: already marked (entry renamed)\n", p)
			return 0
		}
		_, left, done, _ := sysupdate.BootCounter(p)
		fmt.Printf("%s: indeterminate, %d tries left, %d done\n", p, left, done)
	case "good", "bad":
		from, to, err := sysupdate.Bless(*efivars, *esp, verb == "good")
		if errors.Is(err, sysupdate.ErrNoBootCounting) {
			fmt.Println("nothing to do: not booted with boot counting in effect")
			return 0
		}
		if err != nil {
			return fail("bless", err)
		}
		if from == to {
			fmt.Printf("%s: already marked\n", to)
		} else {
			fmt.Printf("marked %s: %s -> %s\n", verb, from, to)
		}
	default:
		fs.Usage()
		return 2
	}
	return 0
}
