// Package klog reads timestamps out of a dump of the kernel's log (syslog(2)
// SYSLOG_ACTION_READ_ALL), for the boot figures of piboot-init and of the boot benchmark's
// floor program.
package klog

import (
	"bytes"
	"strconv"
	"time"
)

// RunInit is what the kernel logs just before it executes the initramfs's /init (at info
// level, so it is in the log even under quiet), from "]" on.
var RunInit = []byte("] Run /init as init process")

// Time returns the timestamp of the last "[<seconds>.<micro>]<msg>" line in log; msg
// starts with the ']'. ok is false when there is no such line or it carries no time
// (printk.time=0).
func Time(log, msg []byte) (t time.Duration, ok bool) {
	i := bytes.LastIndex(log, msg)
	if i < 0 {
		return 0, false
	}
	j := bytes.LastIndexByte(log[:i], '[')
	if j < 0 || bytes.IndexByte(log[j:i], '\n') >= 0 {
		return 0, false
	}
	secs, err := strconv.ParseFloat(string(bytes.TrimSpace(log[j+1:i])), 64)
	if err != nil || secs < 0 {
		return 0, false
	}
	return time.Duration(secs * float64(time.Second)), true
}
