package mount

import (
	"bytes"
	"strings"
)

// Uevent is one kernel uevent as NETLINK_KOBJECT_UEVENT delivers it.
type Uevent struct {
	Action    string // "add", "remove", "change", "bind", ...
	DevPath   string // below /sys, e.g. "/devices/platform/.../mmcblk0"
	Subsystem string // "block", "pci", "usb", "scsi", ...
	DevType   string // "disk", "partition", "usb_interface", ...
	Modalias  string // MODALIAS=, when the device has one
	Env       map[string]string
}

// ParseUevent parses a kernel uevent message: "action@devpath" and then KEY=VALUE
// strings, each NUL-terminated. Messages from udev (which start "libudev") and
// malformed ones are rejected.
func ParseUevent(b []byte) (Uevent, bool) {
	fields := bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})
	if len(fields) < 2 {
		return Uevent{}, false
	}
	action, devpath, ok := strings.Cut(string(fields[0]), "@")
	if !ok || action == "" || !strings.HasPrefix(devpath, "/") {
		return Uevent{}, false
	}
	e := Uevent{Action: action, DevPath: devpath, Env: map[string]string{}}
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(string(f), "=")
		if !ok {
			continue
		}
		e.Env[k] = v
	}
	if a := e.Env["ACTION"]; a != "" && a != action {
		return Uevent{}, false
	}
	e.Subsystem, e.DevType, e.Modalias = e.Env["SUBSYSTEM"], e.Env["DEVTYPE"], e.Env["MODALIAS"]
	return e, true
}
