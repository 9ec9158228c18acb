package klog

import (
	"testing"
	"time"
)

func TestTime(t *testing.T) {
	for _, tc := range []struct {
		log  string
		want time.Duration
		ok   bool
	}{
		{"<6>[    0.512000] Freeing unused kernel memory\n<6>[    1.234567] Run /init as init process\n<7>[    1.300000] with arguments:\n", 1234567 * time.Microsecond, true},
		// A retried exec (an earlier /init failed) logs the line again: the last counts.
		{"<6>[    1.000000] Run /init as init process\n<3>[    1.1] Failed to execute /init\n<6>[    2.500000] Run /init as init process\n", 2500 * time.Millisecond, true},
		{"<6>[    1.000000] Freeing unused kernel memory\n", 0, false},
		{"<6>Run /init as init process\n", 0, false}, // printk.time=0
		{"<6>[ x ] Run /init as init process\n", 0, false},
		{"<6>[    1.0] other\n<6>] Run /init as init process\n", 0, false}, // '[' of another line
	} {
		got, ok := Time([]byte(tc.log), RunInit)
		if ok != tc.ok || (ok && (got-tc.want).Abs() > time.Microsecond) {
			t.Errorf("%q: got %v %v, want %v %v", tc.log, got, ok, tc.want, tc.ok)
		}
	}
}
