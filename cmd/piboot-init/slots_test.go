package main

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSlotsOrder: with the only slot taken, waiters get it by priority, then by arrival.
func TestSlotsOrder(t *testing.T) {
	for _, tc := range []struct {
		prios []int // in arrival order
		want  []int // indexes into prios, in the order they get the slot
	}{
		{prios: []int{3, 1, 2}, want: []int{1, 2, 0}},
		{prios: []int{2, 2, 2}, want: []int{0, 1, 2}},
		{prios: []int{4, 0, 4, 0, 1}, want: []int{1, 3, 4, 0, 2}},
		{prios: []int{1}, want: []int{0}},
	} {
		t.Run(fmt.Sprint(tc.prios), func(t *testing.T) {
			s := newSlots(1)
			s.acquire(0, nil) // held while the others queue
			var mu sync.Mutex
			var got []int
			var wg sync.WaitGroup
			for i, p := range tc.prios {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.acquire(p, nil)
					mu.Lock()
					got = append(got, i)
					mu.Unlock()
					s.release()
				}()
				// Arrival order is the test's input: wait until this one is queued.
				waitQueued(t, s, i+1)
			}
			s.release()
			wg.Wait()
			if !slices.Equal(got, tc.want) {
				t.Fatalf("served %v, want %v", got, tc.want)
			}
			if s.free != 1 || len(s.waiters) != 0 {
				t.Fatalf("after all released: free %d, waiters %d; want 1, 0", s.free, len(s.waiters))
			}
		})
	}
}

func waitQueued(t *testing.T, s *slots, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		s.mu.Lock()
		q := len(s.waiters)
		s.mu.Unlock()
		if q >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters queued, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSlotsConcurrency: never more holders than slots, and every waiter is served.
func TestSlotsConcurrency(t *testing.T) {
	s := newSlots(3)
	var mu sync.Mutex
	holders, most := 0, 0
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.acquire(i%5, nil)
			mu.Lock()
			holders++
			most = max(most, holders)
			mu.Unlock()
			time.Sleep(10 * time.Microsecond)
			mu.Lock()
			holders--
			mu.Unlock()
			s.release()
		}()
	}
	wg.Wait()
	if most > 3 || most < 1 {
		t.Fatalf("at most %d holders at once, want 1..3", most)
	}
	if s.free != 3 || len(s.waiters) != 0 {
		t.Fatalf("after all released: free %d, waiters %d; want 3, 0", s.free, len(s.waiters))
	}
}

// TestSlotsGate: a closed gate serves only priority 0 (and waiters made urgent); opening
// it serves the rest in order.
func TestSlotsGate(t *testing.T) {
	s := newSlots(1)
	s.setOpen(false)
	got := make(chan string, 4)
	var urgent atomic.Bool
	var wg sync.WaitGroup
	for i, name := range []string{"ext4", "vfat", "crc16"} {
		var u *atomic.Bool
		if name == "crc16" {
			u = &urgent
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.acquire(1+i, u)
			got <- name
			s.release()
		}()
		waitQueued(t, s, i+1)
	}
	select {
	case n := <-got:
		t.Fatalf("%s served through a closed gate", n)
	case <-time.After(20 * time.Millisecond):
	}
	// A driver needs crc16: it goes through the closed gate.
	urgent.Store(true)
	s.wake()
	if n := <-got; n != "crc16" {
		t.Fatalf("served %s, want the urgent crc16", n)
	}
	// A driver: served at once, gate or not.
	s.acquire(0, nil)
	s.release()
	s.setOpen(true)
	wg.Wait()
	close(got)
	var rest []string
	for n := range got {
		rest = append(rest, n)
	}
	if !slices.Equal(rest, []string{"ext4", "vfat"}) {
		t.Fatalf("after opening: %v, want [ext4 vfat]", rest)
	}
}
