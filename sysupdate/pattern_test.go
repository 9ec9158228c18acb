package sysupdate

import (
	"strings"
	"testing"
)

func TestParsePatternErrors(t *testing.T) {
	for pat, want := range map[string]string{
		"":             "empty",
		"foo":          "lacks the version",
		"foo_@v@u":     "need literal text",
		"@v_@v":        "twice",
		"foo_@x":       "unknown wildcard",
		"foo_@v@":      "lone",
		"a@v.b@l@d.c":  "need literal text",
		"x_@v_@s_@m_@": "lone",
	} {
		_, err := ParsePattern(pat)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParsePattern(%q) = %v, want error containing %q", pat, err, want)
		}
	}
}

func TestPatternMatch(t *testing.T) {
	for _, c := range []struct {
		pat, name string
		ok        bool
		check     func(Properties) bool
	}{
		{"trinity_@v.nix-store.raw.zst", "trinity_v1.nix-store.raw.zst", true,
			func(p Properties) bool { return p.Version == "v1" }},
		// Non-greedy: the version stops at the first ".nix-store".
		{"x_@v.raw", "x_1.2.raw", true, func(p Properties) bool { return p.Version == "1.2" }},
		{"x_@v.@s", "x_1.4096", true, func(p Properties) bool { return p.Version == "1" && *p.Size == 4096 }},
		// No backtracking: @v takes "1", then "2.3" is no size.
		{"x_@v.@s", "x_1.2.3", false, nil},
		{"x_@v.raw", "x_1.raw.raw", false, nil},
		{"x_@v", "x_", false, nil},
		{"x_@v", "y_1", false, nil},
		{"x_@v", "x_a/b", false, nil},
		{"piboot_@v+@l-@d.efi", "piboot_v3+3-0.efi", true, func(p Properties) bool {
			return p.Version == "v3" && *p.TriesLeft == 3 && *p.TriesDone == 0
		}},
		{"piboot_@v+@l-@d.efi", "piboot_v3+x-0.efi", false, nil},
		{"piboot_@v+@l-@d.efi", "piboot_v3.efi", false, nil},
		{"@@_@v", "@_7", true, func(p Properties) bool { return p.Version == "7" }},
		{"p_@v_@u_@f_@a_@g_@r_@t_@m_@s_@h", "p_1_0fc63daf-8483-4772-8e79-3d69d8477de4_1f_1_0_1_1700000000_644_4096_" +
			strings.Repeat("ab", 32), true, func(p Properties) bool {
			return p.UUID.String() == "0fc63daf-8483-4772-8e79-3d69d8477de4" && *p.Flags == 0x1f &&
				*p.NoAuto && !*p.GrowFS && *p.ReadOnly && *p.MTime == 1700000000 && *p.Mode == 0o644 &&
				*p.Size == 4096 && p.SHA256 == strings.Repeat("ab", 32)
		}},
		{"p_@v_@m", "p_1_777", false, nil},
		{"p_@v_@a", "p_1_2", false, nil},
		{"p_@v_@h", "p_1_abc", false, nil},
		{"p_@v_@u", "p_1_not-a-uuid", false, nil},
	} {
		p, err := ParsePattern(c.pat)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", c.pat, err)
		}
		props, ok := p.Match(c.name)
		if ok != c.ok || ok && !c.check(props) {
			t.Errorf("%q.Match(%q) = %+v, %v; want ok=%v", c.pat, c.name, props, ok, c.ok)
		}
	}
}

func TestPatternsFirstWins(t *testing.T) {
	var ps Patterns
	for _, s := range []string{"piboot_@v+@l-@d.efi", "piboot_@v+@l.efi", "piboot_@v.efi"} {
		p, err := ParsePattern(s)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	for name, want := range map[string]string{"piboot_v1+2-1.efi": "v1", "piboot_v1+2.efi": "v1",
		"piboot_v1.efi": "v1", "piboot_v1.2.efi": "v1.2"} {
		props, ok := ps.Match(name)
		if !ok || props.Version != want {
			t.Errorf("Match(%q) = %q, %v; want %q", name, props.Version, ok, want)
		}
	}
}

func TestPatternFormat(t *testing.T) {
	p, _ := ParsePattern("piboot_@v+@l-@d.efi")
	three, zero := uint64(3), uint64(0)
	got, err := p.Format(Properties{Version: "v2", TriesLeft: &three, TriesDone: &zero})
	if err != nil || got != "piboot_v2+3-0.efi" {
		t.Errorf("Format = %q, %v", got, err)
	}
	if _, err := p.Format(Properties{Version: "v2"}); err == nil {
		t.Error("Format without @l value succeeded")
	}
	if _, err := p.Format(Properties{Version: "v2+x", TriesLeft: &three, TriesDone: &zero}); err == nil {
		t.Error("Format with '+' in the version succeeded")
	}
}
