package main

// The update cycle of the demo: after a healthy start the running boot entry is blessed
// (Boot Loader Spec boot counting), and with piboot.demo.update=<URL> on the command line
// the network comes up (QEMU user networking: 10.0.2.15/24 via 10.0.2.2), the update runs,
// and a newly installed version is booted at once.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/piboot/piboot/gpt"
	"github.com/piboot/piboot/sysupdate"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func init() {
	addHook(50, "bless", func(st *state) error { return demoBless() })
	addHook(60, "update", demoUpdate)
}

func flagValue(cmdline, key string) string {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

func demoBless() error {
	if _, err := os.Stat("/sys/firmware/efi"); err != nil {
		return nil // direct kernel boot: no boot loader, no boot counting
	}
	if err := ensureEFIVars(); err != nil {
		return err
	}
	esp, err := ensureESP()
	if err != nil {
		return err
	}
	_, to, err := sysupdate.Bless(sysupdate.EFIVars, esp, true)
	if errors.Is(err, sysupdate.ErrNoBootCounting) {
		logf("bless: nothing to do (%v)", err)
		return nil
	}
	if err != nil {
		return err
	}
	logf("bless: marked good: %s", strings.TrimPrefix(to, esp))
	return nil
}

func ensureEFIVars() error {
	if mounted(sysupdate.EFIVars) {
		return nil
	}
	if err := unix.Mount("efivarfs", sysupdate.EFIVars, "efivarfs", 0, ""); err != nil {
		return fmt.Errorf("mount efivarfs: %w", err)
	}
	return nil
}

// ensureESP returns where the ESP is mounted, mounting it at /boot when piboot-init did not.
func ensureESP() (string, error) {
	if esp, err := sysupdate.FindESP("/"); err == nil {
		return esp, nil
	}
	disk, err := sysupdate.RootDisk("/")
	if err != nil {
		return "", err
	}
	f, err := os.Open(disk)
	if err != nil {
		return "", err
	}
	size, _ := f.Seek(0, 2)
	tbl, err := gpt.Read(f, size, 0)
	f.Close()
	if err != nil {
		return "", fmt.Errorf("%s: %w", disk, err)
	}
	for _, p := range tbl.Partitions {
		if p.Type != gpt.TypeESP {
			continue
		}
		dev, err := partitionDevice(disk, p.Index)
		if err != nil {
			return "", err
		}
		os.MkdirAll("/boot", 0o755)
		if err := unix.Mount(dev, "/boot", "vfat", 0, ""); err != nil {
			return "", fmt.Errorf("mount ESP %s at /boot: %w", dev, err)
		}
		return "/boot", nil
	}
	return "", fmt.Errorf("%s has no ESP", disk)
}

// partitionDevice finds partition n of disk in sysfs and makes its node if devtmpfs lacks it.
func partitionDevice(disk string, n int) (string, error) {
	base := filepath.Base(disk)
	ents, _ := os.ReadDir("/sys/class/block/" + base)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/sys/class/block", base, e.Name(), "partition"))
		if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(n) {
			continue
		}
		dev := "/dev/" + e.Name()
		if _, err := os.Stat(dev); err == nil {
			return dev, nil
		}
		d, err := os.ReadFile(filepath.Join("/sys/class/block", e.Name(), "dev"))
		if err != nil {
			return "", err
		}
		var maj, min uint32
		fmt.Sscanf(strings.TrimSpace(string(d)), "%d:%d", &maj, &min)
		if err := unix.Mknod(dev, unix.S_IFBLK|0o600, int(unix.Mkdev(maj, min))); err != nil {
			return "", err
		}
		return dev, nil
	}
	return "", fmt.Errorf("partition %d of %s not in sysfs", n, disk)
}

// netUp configures the first Ethernet interface statically, as QEMU user networking
// expects, unless it already has an address.
func netUp() error {
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		netlink.LinkSetUp(lo)
	}
	var link netlink.Link
	for i := 0; i < 100 && link == nil; i++ {
		links, _ := netlink.LinkList()
		for _, l := range links {
			if l.Type() == "device" && l.Attrs().Name != "lo" && len(l.Attrs().HardwareAddr) == 6 {
				link = l
				break
			}
		}
		if link == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if link == nil {
		return fmt.Errorf("no network interface (is virtio_net loaded?)")
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("%s up: %w", link.Attrs().Name, err)
	}
	addrs, _ := netlink.AddrList(link, netlink.FAMILY_V4)
	if len(addrs) == 0 {
		addr, _ := netlink.ParseAddr("10.0.2.15/24")
		if err := netlink.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("%s: add 10.0.2.15/24: %w", link.Attrs().Name, err)
		}
		gw := net.ParseIP("10.0.2.2")
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	logf("update: network %s up", link.Attrs().Name)
	return nil
}

type prefixWriter struct{}

func (prefixWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		logf("update: %s", l)
	}
	return len(p), nil
}

func demoUpdate(st *state) error {
	url := flagValue(st.Cmdline, "piboot.demo.update")
	if url == "" {
		return nil
	}
	if err := netUp(); err != nil {
		return err
	}
	esp, err := ensureESP()
	if err != nil {
		return err
	}
	store := flagValue(st.Cmdline, "piboot.storemount")
	if store == "" {
		store = "/nix/store"
	}
	dev := sysupdate.DeviceDefaults("/", store, st.Version)
	ts, err := sysupdate.Load(dev.Dirs, dev.Spec)
	if err != nil {
		return err
	}
	src, err := sysupdate.OpenSource(url)
	if err != nil {
		return err
	}
	u := &sysupdate.Updater{Transfers: ts, Source: src, Root: "/", ESP: esp, Booted: st.Version, Keyring: dev.Keyring, Log: prefixWriter{}}
	logf("update: checking %s (running %s)", url, st.Version)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	v, err := u.Update(ctx, "")
	if err != nil {
		return err
	}
	if v == "" {
		logf("update: up to date")
		return nil
	}
	logf("update: installed %s, rebooting", v)
	unix.Sync()
	if os.Getpid() == 1 {
		// As before power-off: a clean root for the next boot.
		if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			logf("error: remount / read-only: %v", err)
		}
		unix.Sync()
		if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
			return fmt.Errorf("reboot: %w", err)
		}
	}
	return nil
}
