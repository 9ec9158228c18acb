package main

import (
	"sync"
	"sync/atomic"
)

// slots is a counting semaphore whose waiters are served by priority (lower first), in
// arrival order within one priority, with a gate that, while closed, serves only
// priority 0. Module loading uses one slot per CPU: the kernel does a module's work in
// the loading thread, so more concurrent loads only slow each other down, and the order
// matters: the disk's driver first, then the root filesystem's modules (the first mount
// waits for them), then the store's, then the ESP's. The gate stays closed while drivers
// are being found and loaded. A plain channel would hand the slot to whichever goroutine
// the scheduler happened to run first.
type slots struct {
	mu      sync.Mutex
	free    int
	closed  bool
	seq     uint64
	waiters []*slotWaiter
}

type slotWaiter struct {
	prio   int
	urgent *atomic.Bool // when set (and true), the waiter counts as priority 0
	seq    uint64
	ch     chan struct{}
}

func (w *slotWaiter) effPrio() int {
	if w.urgent != nil && w.urgent.Load() {
		return 0
	}
	return w.prio
}

func newSlots(n int) *slots { return &slots{free: max(n, 1)} }

// acquire blocks until it is served a slot. urgent, if not nil, can raise the waiter
// to priority 0 while it waits (the loader calls wake after setting it).
func (s *slots) acquire(prio int, urgent *atomic.Bool) {
	s.mu.Lock()
	s.seq++
	w := &slotWaiter{prio: prio, urgent: urgent, seq: s.seq, ch: make(chan struct{})}
	s.waiters = append(s.waiters, w)
	s.dispatchLocked()
	s.mu.Unlock()
	<-w.ch
}

// release frees a slot for the next waiter.
func (s *slots) release() {
	s.mu.Lock()
	s.free++
	s.dispatchLocked()
	s.mu.Unlock()
}

// setOpen opens or closes the gate.
func (s *slots) setOpen(open bool) {
	s.mu.Lock()
	s.closed = !open
	s.dispatchLocked()
	s.mu.Unlock()
}

// wake re-examines the waiters (an urgent flag changed).
func (s *slots) wake() {
	s.mu.Lock()
	s.dispatchLocked()
	s.mu.Unlock()
}

func (s *slots) dispatchLocked() {
	for s.free > 0 && len(s.waiters) > 0 {
		best := 0
		for i, w := range s.waiters[1:] {
			b := s.waiters[best]
			if p, bp := w.effPrio(), b.effPrio(); p < bp || (p == bp && w.seq < b.seq) {
				best = i + 1
			}
		}
		w := s.waiters[best]
		if s.closed && w.effPrio() > 0 {
			return
		}
		s.waiters = append(s.waiters[:best], s.waiters[best+1:]...)
		s.free--
		close(w.ch)
	}
}
