package qemu

import (
	"testing"
	"time"
)

// TestSlots: with two slots, a third VM waits until one of the first two ends, and a
// wait that runs out lets the VM start without a slot.
func TestSlots(t *testing.T) {
	dir := t.TempDir()
	a, _ := acquireSlot(dir, 2, time.Minute)
	b, _ := acquireSlot(dir, 2, time.Minute)
	if a == nil || b == nil {
		t.Fatalf("two free slots: got %v, %v", a, b)
	}
	if c, waited := acquireSlot(dir, 2, 50*time.Millisecond); c != nil || waited < 50*time.Millisecond {
		t.Fatalf("third VM with both slots taken: slot %v after %s, want none after the wait", c, waited)
	}
	got := make(chan time.Duration)
	go func() {
		c, waited := acquireSlot(dir, 2, time.Minute)
		if c == nil {
			waited = -1
		} else {
			defer c.Close()
		}
		got <- waited
	}()
	select {
	case w := <-got:
		t.Fatalf("third VM got a slot (waited %s) while both were taken", w)
	case <-time.After(300 * time.Millisecond):
	}
	b.Close()
	select {
	case w := <-got:
		if w < 300*time.Millisecond {
			t.Fatalf("third VM waited %s, want at least until the slot was freed", w)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("third VM did not get the freed slot")
	}
	a.Close()
}
