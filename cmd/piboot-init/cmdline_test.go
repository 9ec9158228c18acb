package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseCmdline(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "console=ttyAMA0 piboot.store=nix-store_v0 init=/nix/store/bin/piboot-demo",
			want: "store=nix-store_v0 init=/nix/store/bin/piboot-demo disks=mmcblk0,mmcblk1 root=root mount=/nix/store shell=false timeout=10s"},
		{in: `piboot.store=s piboot.disk=auto piboot.root=data piboot.storemount=/store piboot.shell piboot.timeout=2.5 x="a b"`,
			want: "store=s init=/sbin/init disks= root=data mount=/store shell=true timeout=2.5s"},
		{in: "piboot.store=s piboot.disk=/dev/sda,mmcblk2 piboot.shell=0", want: "store=s init=/sbin/init disks=sda,mmcblk2 root=root mount=/nix/store shell=false timeout=10s"},
		{in: "console=ttyAMA0", err: "no piboot.store="},
		{in: "piboot.store=s piboot.timeout=soon", err: `piboot.timeout="soon"`},
		{in: "piboot.store=s init=demo", err: `init="demo"`},
		{in: "piboot.store=s piboot.storemount=/", err: "piboot.storemount"},
		{in: "piboot.store=root", err: "both name"},
	} {
		c, err := parseCmdline(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		got := "store=" + c.Store + " init=" + c.Init + " disks=" + strings.Join(c.Disks, ",") + " root=" + c.Root +
			" mount=" + c.StoreMount + " shell=" + map[bool]string{true: "true", false: "false"}[c.Shell] + " timeout=" + c.Timeout.String()
		if got != tc.want {
			t.Errorf("%q:\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
	if c, _ := parseCmdline("piboot.store=s piboot.trace"); !c.Trace {
		t.Errorf("piboot.trace not set")
	}
	if c, _ := parseCmdline("piboot.store=s piboot.trace=0"); c.Trace {
		t.Errorf("piboot.trace=0 set")
	}
	if c, _ := parseCmdline("piboot.store=s piboot.timeout=0"); c.Timeout != 0 {
		t.Errorf("timeout 0 = %v", c.Timeout)
	}
	_ = time.Second
}

func TestSplitCmdline(t *testing.T) {
	got := strings.Join(splitCmdline(` a  b="c d"  "e f" `), "|")
	if got != "a|b=c d|e f" {
		t.Fatalf("got %q", got)
	}
}
