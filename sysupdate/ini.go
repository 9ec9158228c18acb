package sysupdate

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// iniEntry is one Key=Value assignment with its position, so errors can name file:line.
// coreos/go-systemd's unit parser drops line numbers, which our error messages need.
type iniEntry struct {
	Section, Key, Value string
	Line                int
}

// parseINI reads systemd's INI dialect: [Section] headers, Key=Value lines, '#' and ';'
// comments, trailing-backslash continuations (joined with a space, as systemd does).
func parseINI(r io.Reader, file string) ([]iniEntry, error) {
	var out []iniEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	section := ""
	lineNo := 0
	var cont strings.Builder
	contStart := 0
	for sc.Scan() {
		lineNo++
		raw := sc.Text()
		if lineNo == 1 {
			raw = strings.TrimPrefix(raw, "\ufeff")
		}
		line := strings.TrimSpace(raw)
		if cont.Len() > 0 {
			// Comment lines inside a continuation are skipped, as systemd does.
			if strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
				continue
			}
		} else {
			if line == "" || line[0] == '#' || line[0] == ';' {
				continue
			}
			contStart = lineNo
		}
		if strings.HasSuffix(line, "\\") {
			cont.WriteString(strings.TrimSuffix(line, "\\"))
			cont.WriteByte(' ')
			continue
		}
		if cont.Len() > 0 {
			cont.WriteString(line)
			line = strings.TrimSpace(cont.String())
			cont.Reset()
		}
		at := contStart
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") || len(line) < 3 {
				return nil, fmt.Errorf("%s:%d: bad section header %q", file, at, line)
			}
			section = line[1 : len(line)-1]
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: missing '=' in %q", file, at, line)
		}
		k = strings.TrimSpace(k)
		if k == "" {
			return nil, fmt.Errorf("%s:%d: empty key in %q", file, at, line)
		}
		if section == "" {
			return nil, fmt.Errorf("%s:%d: assignment %q outside of any section", file, at, k)
		}
		out = append(out, iniEntry{Section: section, Key: k, Value: strings.TrimSpace(v), Line: at})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if cont.Len() > 0 {
		return nil, fmt.Errorf("%s:%d: file ends inside a continued line", file, contStart)
	}
	return out, nil
}
