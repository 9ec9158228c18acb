package main

import (
	"errors"
	"sync"
	"time"

	"github.com/piboot/piboot/mount"
)

// hotplug dispatches the kernel's uevents: new devices' modaliases to the module loader
// and block device changes to disk discovery, which then needs no polling.
type hotplug struct {
	conn  *mount.UeventConn
	block chan struct{} // a block device was added, removed or changed

	mu       sync.Mutex
	modalias func(string)
}

var events *hotplug

// startHotplug opens the uevent socket once per boot of the machine; nil if the kernel
// refuses (disk discovery then polls, and drivers load for the devices sysfs lists).
func startHotplug() *hotplug {
	if events != nil {
		return events
	}
	c, err := mount.OpenUevents()
	if err != nil {
		logf("start", "no uevents (%v): polling for disks", err)
		return nil
	}
	events = &hotplug{conn: c, block: make(chan struct{}, 1)}
	go events.run()
	return events
}

// onModalias sets the handler for the modaliases of devices added from now on. Devices
// added before are the caller's to find in sysfs (after this call, so none is missed).
func (h *hotplug) onModalias(f func(string)) {
	h.mu.Lock()
	h.modalias = f
	h.mu.Unlock()
}

func (h *hotplug) run() {
	for {
		e, err := h.conn.Read()
		h.mu.Lock()
		f := h.modalias
		h.mu.Unlock()
		switch {
		case errors.Is(err, mount.ErrUeventOverrun):
			// Events were lost: look at everything again.
			h.signalBlock()
			if f != nil {
				if aliases, err := mount.Modaliases("/sys"); err == nil {
					for _, a := range aliases {
						f(a)
					}
				}
			}
			continue
		case err != nil:
			logf("start", "uevents: %v; polling for devices from now on", err)
			if f != nil {
				pollModaliases(f)
			}
			return
		}
		if e.Subsystem == "block" {
			h.signalBlock()
		}
		if e.Action == "add" && e.Modalias != "" && f != nil {
			f(e.Modalias)
		}
	}
}

func (h *hotplug) signalBlock() {
	select {
	case h.block <- struct{}{}:
	default:
	}
}

// pollModaliases stands in for uevents the kernel cannot deliver: it looks at sysfs's
// unbound devices every 100 ms for a minute (a device behind a driver that probes late,
// a USB stick behind xHCI, must still get its driver).
func pollModaliases(f func(string)) {
	for i := 0; i < 600; i++ {
		if aliases, err := mount.Modaliases("/sys"); err == nil {
			for _, a := range aliases {
				f(a)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}
