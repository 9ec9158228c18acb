package main

import (
	"sort"
	"sync"
)

// slots is a counting semaphore whose waiters are served by priority (lower first), in
// arrival order within one priority. Module loading uses one slot per CPU: the kernel
// does a module's work in the loading thread, so more concurrent loads only slow each
// other down, and the order matters: the disk's driver first, then the root
// filesystem's modules (the first mount waits for them), then the store's, then the
// ESP's. A plain channel would hand the slot to whichever goroutine the scheduler
// happened to run first.
type slots struct {
	mu      sync.Mutex
	free    int
	seq     uint64
	waiters []*slotWaiter // sorted by (prio, seq)
}

type slotWaiter struct {
	prio int
	seq  uint64
	ch   chan struct{}
}

func newSlots(n int) *slots { return &slots{free: max(n, 1)} }

// acquire blocks until a slot is free and no waiter of a lower priority number, or of
// the same one that came earlier, is still waiting.
func (s *slots) acquire(prio int) {
	s.mu.Lock()
	if s.free > 0 && len(s.waiters) == 0 {
		s.free--
		s.mu.Unlock()
		return
	}
	s.seq++
	w := &slotWaiter{prio: prio, seq: s.seq, ch: make(chan struct{})}
	i := sort.Search(len(s.waiters), func(i int) bool {
		o := s.waiters[i]
		return o.prio > w.prio || (o.prio == w.prio && o.seq > w.seq)
	})
	s.waiters = append(s.waiters, nil)
	copy(s.waiters[i+1:], s.waiters[i:])
	s.waiters[i] = w
	s.mu.Unlock()
	<-w.ch
}

// release frees a slot, handing it straight to the first waiter if there is one.
func (s *slots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.waiters) == 0 {
		s.free++
		return
	}
	w := s.waiters[0]
	s.waiters = s.waiters[1:]
	close(w.ch)
}
