package images

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Progress reports the build's long steps: bars on a terminal, one line per step otherwise
// (logs, CI), nothing when W is nil.
type Progress struct {
	W        io.Writer
	Terminal bool
	Prefix   string
}

// AutoProgress writes to stderr, with bars when stderr is a terminal.
func AutoProgress(prefix string) *Progress {
	return &Progress{W: os.Stderr, Terminal: term.IsTerminal(int(os.Stderr.Fd())), Prefix: prefix}
}

// The bar is drawn here rather than by github.com/schollz/progressbar: that package and
// its dependencies (colorstring's regexps, uniseg's tables) ran their initializers at every
// start of piboot, also for `piboot repart`, where start-up is most of the time a user waits.

// barWidth is the bar's width in cells; barEvery bounds how often it is redrawn.
const (
	barWidth = 30
	barEvery = 100 * time.Millisecond
)

// task is one step in progress.
type task struct {
	p     *Progress
	what  string
	start time.Time
	total int64 // bytes expected; 0 when unknown
	bar   bool  // drawing a bar (a terminal)
	mu    sync.Mutex
	n     int64
	drawn time.Time // last redraw
	width int       // cells of the last line drawn, blanked by a shorter one
}

func (p *Progress) start(what string, total int64) *task {
	t := &task{p: p, what: what, start: time.Now(), total: total}
	if p == nil || p.W == nil {
		return t
	}
	if p.Terminal {
		t.bar = true
		t.draw()
		return t
	}
	if total > 0 {
		fmt.Fprintf(p.W, "%s%s (%s)\n", p.Prefix, what, human(total))
	} else {
		fmt.Fprintf(p.W, "%s%s\n", p.Prefix, what)
	}
	return t
}

func (t *task) add(n int) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.n += int64(n)
	if t.bar && time.Since(t.drawn) >= barEvery {
		t.draw()
	}
	t.mu.Unlock()
}

// draw rewrites the terminal line: "prefix what  45% [=============>     ] 12.3 MiB/27.0 MiB
// (8.1 MiB/s)", or without percentage and bar when the total is unknown. t.mu is held or t
// is not shared yet.
func (t *task) draw() {
	t.drawn = time.Now()
	var b strings.Builder
	b.WriteString("\r")
	b.WriteString(t.p.Prefix + t.what)
	if t.total > 0 {
		n := min(t.n, t.total)
		full := int(n * barWidth / t.total)
		head := ""
		if full < barWidth {
			head = ">"
		}
		fmt.Fprintf(&b, " %3d%% [%s%s%s] %s/%s", n*100/t.total, strings.Repeat("=", full), head,
			strings.Repeat(" ", barWidth-full-len(head)), human(t.n), human(t.total))
	} else {
		fmt.Fprintf(&b, " %s", human(t.n))
	}
	if secs := t.drawn.Sub(t.start).Seconds(); secs >= 1 {
		fmt.Fprintf(&b, " (%s/s)", human(int64(float64(t.n)/secs)))
	}
	line := b.String()
	w := len([]rune(line)) - 1
	if w < t.width {
		line += strings.Repeat(" ", t.width-w)
	}
	t.width = w
	io.WriteString(t.p.W, line)
}

func (t *task) done(result string) {
	if t == nil || t.p == nil || t.p.W == nil {
		return
	}
	if t.bar {
		t.mu.Lock()
		t.draw()
		t.mu.Unlock()
		fmt.Fprintf(t.p.W, " done in %.1fs\n", time.Since(t.start).Seconds())
		if result != "" {
			fmt.Fprintf(t.p.W, "%s%s: %s\n", t.p.Prefix, t.what, result)
		}
		return
	}
	if result != "" {
		result = ": " + result
	}
	fmt.Fprintf(t.p.W, "%s%s: done in %.1fs%s\n", t.p.Prefix, t.what, time.Since(t.start).Seconds(), result)
}

// Bytes returns a writer that only counts: a step of total bytes (total <= 0: unknown)
// whose progress is what is written to it, for callers that see the bytes flow past, such
// as piboot update's downloads. The step is done when total bytes have arrived.
func (p *Progress) Bytes(what string, total int64) io.Writer {
	return &bytesTask{t: p.start(what, total)}
}

type bytesTask struct {
	t    *task
	once sync.Once
}

func (b *bytesTask) Write(p []byte) (int, error) {
	b.t.add(len(p))
	if b.t.total > 0 {
		b.t.mu.Lock()
		complete := b.t.n >= b.t.total
		b.t.mu.Unlock()
		if complete {
			b.once.Do(func() { b.t.done("") })
		}
	}
	return len(p), nil
}

// info prints a plain line.
func (p *Progress) info(format string, args ...any) {
	if p == nil || p.W == nil {
		return
	}
	fmt.Fprintf(p.W, p.Prefix+format+"\n", args...)
}

// countingWriterAt counts the bytes written through it into a task.
type countingWriterAt struct {
	w io.WriterAt
	t *task
}

func (c countingWriterAt) WriteAt(b []byte, off int64) (int, error) {
	n, err := c.w.WriteAt(b, off)
	c.t.add(n)
	return n, err
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
