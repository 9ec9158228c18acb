package images

import (
	"bytes"
	"strings"
	"testing"
)

func TestProgressPlain(t *testing.T) {
	var b bytes.Buffer
	p := &Progress{W: &b, Prefix: "x: "}
	tk := p.start("squashfs store", 3<<20)
	tk.add(1 << 20)
	tk.done("2.0 MiB")
	u := p.start("zstd", 0)
	u.done("")
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 4 || lines[0] != "x: squashfs store (3.0 MiB)" || !strings.HasPrefix(lines[1], "x: squashfs store: done in ") ||
		!strings.HasSuffix(lines[1], "s: 2.0 MiB") || lines[2] != "x: zstd" || !strings.HasPrefix(lines[3], "x: zstd: done in ") {
		t.Errorf("plain output:\n%s", b.String())
	}
	if strings.Contains(b.String(), "\r") {
		t.Error("plain output redraws a line")
	}
	// No writer, or no Progress at all: nothing happens, nothing panics.
	var none *Progress
	none.start("a", 1).done("b")
	(&Progress{}).start("a", 1).done("b")
}

func TestProgressBar(t *testing.T) {
	var b bytes.Buffer
	p := &Progress{W: &b, Terminal: true, Prefix: "x: "}
	tk := p.start("split", 100)
	if !strings.Contains(b.String(), "\rx: split   0% [>"+strings.Repeat(" ", barWidth-1)+"] 0 B/100 B") {
		t.Errorf("first bar: %q", b.String())
	}
	tk.add(250) // more than announced: the bar stops at 100 %
	tk.done("ok")
	out := b.String()
	last := out[strings.LastIndex(out, "\r"):]
	if !strings.HasPrefix(last, "\rx: split 100% ["+strings.Repeat("=", barWidth)+"] 250 B/100 B") ||
		!strings.Contains(last, " done in ") || !strings.HasSuffix(last, "\nx: split: ok\n") {
		t.Errorf("last bar: %q", last)
	}

	// A shorter redraw blanks what the longer one left.
	b.Reset()
	u := p.start("a-long-step-name", 0)
	u.add(5 << 20)
	u.mu.Lock()
	u.what = "a"
	u.draw()
	u.mu.Unlock()
	draws := strings.Split(b.String(), "\r")[1:]
	if len(draws) < 2 || len([]rune(draws[len(draws)-1])) < len([]rune(draws[len(draws)-2])) {
		t.Errorf("shorter redraw not padded: %q", b.String())
	}

	// Bytes: done exactly once, when the total has arrived.
	b.Reset()
	w := p.Bytes("download", 10)
	w.Write(make([]byte, 6))
	w.Write(make([]byte, 4))
	w.Write(make([]byte, 3))
	if n := strings.Count(b.String(), " done in "); n != 1 {
		t.Errorf("download done %d times: %q", n, b.String())
	}
}
