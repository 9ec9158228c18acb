package sysupdate

import "testing"

// The cases are systemd's own (src/test/test-string-util.c), so our ordering is theirs.
func TestCompareVersionsOrderedList(t *testing.T) {
	versions := []string{"~1", "", "ab", "abb", "abc", "0001", "002", "12", "122", "122.9",
		"123~rc1", "123", "123-a", "123-a.1", "123-a1", "123-a1.1", "123-3", "123-3.1",
		"123^patch1", "123^1", "123.a-1", "123.1-1", "123a-1", "124"}
	for i, older := range versions {
		for _, newer := range versions[i+1:] {
			checkNewer(t, older, newer)
		}
	}
}

func checkNewer(t *testing.T, older, newer string) {
	t.Helper()
	if r := CompareVersions(older, newer); r != -1 {
		t.Errorf("CompareVersions(%q, %q) = %d, want -1", older, newer, r)
	}
	if r := CompareVersions(newer, older); r != 1 {
		t.Errorf("CompareVersions(%q, %q) = %d, want 1", newer, older, r)
	}
	if CompareVersions(older, older) != 0 || CompareVersions(newer, newer) != 0 {
		t.Errorf("%q or %q not equal to itself", older, newer)
	}
}

func TestCompareVersionsPairs(t *testing.T) {
	for _, p := range [][2]string{
		{"123.45-67.88", "123.45-67.89"}, {"123.45-67.89", "123.45-67.89a"},
		{"123.45-67.ab", "123.45-67.89"}, {"123.45-67.9", "123.45-67.89"},
		{"123.45-67", "123.45-67.89"}, {"123.45-66.89", "123.45-67.89"},
		{"123.45-9.99", "123.45-67.89"}, {"123.42-99.99", "123.45-67.89"},
		{"123-99.99", "123.45-67.89"},
		{"123~rc1-99.99", "123.45-67.89"}, {"123~rc1-99.99", "123-45.67.89"},
		{"123~rc1-99.99", "123~rc2-67.89"}, {"123~rc1-99.99", "123^aa2-67.89"},
		{"123~rc1-99.99", "123aa2-67.89"},
		{"123-99.99", "123^aa2-67.89"}, {"123-99.99", "123aa2-67.89"},
		{"123^45-67.89", "123.45-67.89"}, {"123^aa1-99.99", "123^aa2-67.89"},
		{"123^aa2-67.89", "123aa2-67.89"},
		{"123.aa2-67.89", "123aa2-67.89"}, {"123.aa2-67.89", "123.ab2-67.89"},
		// piboot's own versions.
		{"v0", "v1"}, {"v9", "v10"}, {"v1", "v1.1"}, {"v2~rc1", "v2"},
	} {
		checkNewer(t, p[0], p[1])
	}
}

func TestCompareVersionsTable(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"123_aa2-67.89", "123aa+2-67.89", 0},
		{"123.", "123", 1}, {"12_3", "123", -1}, {"12_3", "12", 1}, {"12_3", "12.3", 1},
		{"123.0", "123", 1}, {"123_0", "123", 1}, {"123..0", "123.0", -1},
		{"0_", "0", 0}, {"_0_", "0", 0}, {"_0", "0", 0}, {"0", "0___", 0},
		{"", "_", 0}, {"_", "", 0}, {"_", "_", 0}, {"", "~", 1}, {"~", "", -1}, {"~", "~", 0},
		// rpm's suite as systemd runs it.
		{"1.0", "1.0", 0}, {"1.0", "2.0", -1}, {"2.0.1", "2.0", 1}, {"2.0.1a", "2.0.1", 1},
		{"5.5p1", "5.5p2", -1}, {"5.5p10", "5.5p1", 1}, {"10xyz", "10.1xyz", 1},
		{"xyz10", "xyz10.1", -1}, {"xyz.4", "8", -1}, {"2", "xyz.4", 1}, {"5.5p2", "5.6p1", -1},
		{"6.0.rc1", "6.0", 1}, {"10b2", "10a1", 1}, {"1.0a", "1.0aa", -1},
		{"10.0001", "10.1", 0}, {"10.0001", "10.0039", -1}, {"4.999.9", "5.0", -1},
		{"20101121", "20101122", -1}, {"2.0", "2_0", -1}, {"2_0", "2.0", 1},
		{"a+", "a_", 0}, {"+a", "_a", 0}, {"_+", "+_", 0}, {"+", "_", 0},
		{"1.0~rc1", "1.0", -1}, {"1.0~rc1", "1.0~rc2", -1}, {"1.0~rc1~git123", "1.0~rc1", -1},
		{"1.0^", "1.0", 1}, {"1.0^git1", "1.0^git2", -1}, {"1.0^git1", "1.01", -1},
		{"1.0^20160101", "1.0.1", -1}, {"1.0^20160102", "1.0^20160101^git1", 1},
		{"1.0~rc1^git1", "1.0~rc1", 1}, {"1.0^git1", "1.0^git1~pre", 1},
		{"1b.fc17", "1.fc17", 1}, {"1g.fc17", "1.fc17", 1},
		{"1.1.α", "1.1.β", 0}, {"1.1.ββ", "1.1.αα", 0},
	} {
		if got := CompareVersions(c.a, c.b); got != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestValidVersion(t *testing.T) {
	for s, want := range map[string]bool{"v1": true, "1.2_3,4+5-6": true, "": false,
		"a/b": false, "a b": false, "v1~rc": false, "ä": false} {
		if ValidVersion(s) != want {
			t.Errorf("ValidVersion(%q) = %v", s, !want)
		}
	}
}
