// Package stack grows the main goroutine's stack once, while the program initialises, to the
// 16 KiB that piboot's commands use, instead of letting the runtime grow it 2 -> 4 -> 8 KiB on
// the way.
//
// Why: the runtime takes each small stack from a pool that it fills by carving a fresh
// 32 KiB span into stacks of that size and writing a free-list link into every one, so the
// first 4 KiB stack faults in 8 pages and the first 8 KiB stack 4 more, for 2 KiB of use
// each. 16 KiB stacks come from the pool the runtime already filled for its threads' g0
// stacks. On a card's first boot (piboot-init) and in `piboot repart` this is 11-14 page
// faults fewer, each about 17 us on the machine the benchmarks run on: `piboot repart` took
// 0.3-0.9 ms less (15.0-16.0 vs 16.0-16.3 ms, bench/repart.sh's setup, two builds of each).
//
// It only works if it runs before the first growth, which internal/godebug's initialisation
// (imported by os, through time) causes: packages initialise in import-path order once their
// imports have, and this one imports nothing, so "github.com/..." comes before "internal/...".
// Import it for its side effect from a command's main package.
package stack

// never is never set: grow's frame is reserved (and checked by its prologue, which is what
// makes the runtime grow the stack to fit it) but never touched, so no page is faulted in.
var never int

// frame makes grow's frame need a 16 KiB stack: more than fits in 8 KiB with what init
// already uses, less than 16 KiB with the runtime's guard.
const frame = 10 << 10

func init() { grow() }

//go:noinline
func grow() byte {
	if never > 0 {
		var buf [frame]byte
		buf[never%frame] = 1
		return buf[never%frame/2]
	}
	return 0
}
