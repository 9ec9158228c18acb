//go:build !pibootlite

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/piboot/piboot/images"
	"github.com/piboot/piboot/sysupdate"
)

func init() {
	register("update", runUpdate)
}

func runUpdate(args []string) int {
	fs := newFlagSet("update", "list | check-new | update [VERSION] | vacuum")
	defs := fs.String("definitions", "", "directory of *.transfer/*.conf files (default: /etc, /run, /usr/local/lib, /usr/lib sysupdate.d below --root, then below --store)")
	source := fs.String("source", "", "update source, URL or directory, replacing every transfer's Path=")
	root := fs.String("root", "/", "file system to operate on (keyring, os-release, transfer directories)")
	disk := fs.String("disk", "", "block device or image that Path=auto means (default: the disk holding --root)")
	esp := fs.String("esp", "", "where the ESP is mounted (default: /efi, /boot/efi or /boot)")
	booted := fs.String("booted", "", "the running version, never removed (default: IMAGE_VERSION, else piboot.store= on the kernel command line)")
	keyring := fs.String("keyring", "", "OpenPGP keyring to verify SHA256SUMS against (default: systemd's import-pubring paths below --root, then --store)")
	store := fs.String("store", "/nix/store", "where the image's store is mounted (it carries sysupdate.d, the keyring and os-release), relative to --root")
	caFile := fs.String("ca-file", "", "PEM certificates trusted for https:// sources besides the system's (SSL_CERT_FILE replaces the system's bundle)")
	quiet := fs.Bool("quiet", false, "no progress bar, no step messages")
	fs.Parse(args)
	if fs.NArg() < 1 {
		fs.Usage()
		return 2
	}
	verb := fs.Arg(0)
	if *booted == "" {
		*booted = sysupdate.BootedVersion(*root, *store)
	}
	dev := sysupdate.DeviceDefaults(*root, *store, *booted)
	dirs := dev.Dirs
	if *defs != "" {
		dirs = []string{*defs}
	}
	if *keyring == "" {
		*keyring = dev.Keyring
	}
	spec := dev.Spec
	ts, err := sysupdate.Load(dirs, spec)
	if err != nil {
		return fail("update", err)
	}
	u := &sysupdate.Updater{Transfers: ts, Root: *root, Disk: *disk, ESP: *esp, Booted: *booted, Keyring: *keyring,
		SourceOptions: sysupdate.SourceOptions{CAFile: *caFile}}
	if !*quiet {
		u.Log = os.Stderr
		if p := images.AutoProgress(""); p.Terminal {
			u.Progress = p.Bytes
		}
	}
	if *source != "" {
		if u.Source, err = sysupdate.OpenSourceWith(*source, u.SourceOptions); err != nil {
			return fail("update", err)
		}
	}
	// The install is a three-stage pipeline (download and hash, decompress, write): give
	// it three threads even on a two-core machine, or a busy core stalls all of it.
	if runtime.GOMAXPROCS(0) < 3 {
		runtime.GOMAXPROCS(3)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch verb {
	case "list":
		av, err := u.FetchAvailable(ctx)
		if err != nil {
			fmt.Fprintf(os.Stderr, "piboot update: sources not available (%v); showing installed versions only\n", err)
			av = nil
		}
		list, err := u.List(av)
		if err != nil {
			return fail("update", err)
		}
		fmt.Printf("%-20s %s\n", "VERSION", "STATE")
		for _, vi := range list {
			var st []string
			for _, f := range []struct {
				on   bool
				name string
			}{{vi.Booted, "booted"}, {vi.Installed, "installed"}, {vi.Bad, "bad (no boot tries left)"}, {vi.Partial, "partial"}, {vi.Available, "available"}, {vi.Protected, "protected"}} {
				if f.on {
					st = append(st, f.name)
				}
			}
			fmt.Printf("%-20s %s\n", vi.Version, strings.Join(st, ", "))
		}
	case "check-new":
		v, _, err := u.CheckNew(ctx)
		if err != nil {
			return fail("update", err)
		}
		if v == "" {
			fmt.Fprintln(os.Stderr, "no new version available")
			return 1 // systemd-sysupdate's convention: 0 means "there is one"
		}
		fmt.Println(v)
	case "update":
		v, err := u.Update(ctx, fs.Arg(1))
		if err != nil {
			return fail("update", explain(err))
		}
		if v == "" {
			fmt.Println("up to date")
		} else {
			fmt.Printf("installed %s\n", v)
		}
	case "vacuum":
		n, err := u.Vacuum()
		if err != nil {
			return fail("update", err)
		}
		fmt.Printf("removed %d instances\n", n)
	default:
		fmt.Fprintf(os.Stderr, "piboot update: unknown verb %q\n", verb)
		fs.Usage()
		return 2
	}
	return 0
}

// explain adds what the user can do about the errors that need a decision.
func explain(err error) error {
	switch {
	case errors.Is(err, sysupdate.ErrSignature), errors.Is(err, sysupdate.ErrUntrusted):
		return fmt.Errorf("%w\nnothing was written; the update is refused", err)
	case errors.Is(err, sysupdate.ErrNoSpace):
		return fmt.Errorf("%w\nnothing was written; `piboot update vacuum` or a lower ProtectVersion= frees a slot", err)
	case errors.Is(err, sysupdate.ErrHashMismatch), errors.Is(err, sysupdate.ErrTooLarge):
		return fmt.Errorf("%w\nthe slot stays marked partial (never booted); installed versions are untouched and the next update reuses it", err)
	}
	return err
}
