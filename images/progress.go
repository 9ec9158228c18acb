package images

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
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

// task is one step in progress.
type task struct {
	p     *Progress
	what  string
	start time.Time
	bar   *progressbar.ProgressBar
	mu    sync.Mutex
	n     int64
}

func (p *Progress) start(what string, total int64) *task {
	t := &task{p: p, what: what, start: time.Now()}
	if p == nil || p.W == nil {
		return t
	}
	if p.Terminal {
		t.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(p.W),
			progressbar.OptionSetDescription(p.Prefix+what),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.W) }),
		)
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
	if t.bar != nil {
		t.bar.Add(n)
	}
	t.mu.Unlock()
}

func (t *task) done(result string) {
	if t == nil || t.p == nil || t.p.W == nil {
		return
	}
	if t.bar != nil {
		t.bar.Finish()
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

type countingReader struct {
	r io.Reader
	t *task
}

func (c countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
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
