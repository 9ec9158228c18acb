package main

import (
	"fmt"
	"slices"
	"sync"
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
			s.acquire(0) // held while the others queue
			var mu sync.Mutex
			var got []int
			var wg sync.WaitGroup
			for i, p := range tc.prios {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.acquire(p)
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
			s.acquire(i % 5)
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
