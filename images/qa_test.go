package images

import (
	"strings"
	"testing"
)

// TestVersionsAndIDs pins which version and id strings an image.conf accepts: they become
// file names, GPT labels (nix-store_<v> in 36 UTF-16 units) and sysupdate @v values.
func TestVersionsAndIDs(t *testing.T) {
	for _, c := range []struct {
		key, val, want string // want "": accepted
	}{
		{"Version", "v1", ""},
		{"Version", "1.2.3", ""},
		{"Version", "2026-11-26", ""},
		{"Version", "1.0+git.3-rc1", ""},
		{"Version", "1,2", ""},
		{"Version", "1_2", "Version=1_2: must not contain '_'"},
		{"Version", "1~rc1", "Version=1~rc1: a sysupdate version"},
		{"Version", "-1", "Version=-1: a sysupdate version"},
		{"Version", ".1", "Version=.1"},
		{"Version", "v 1", "Version=v 1"},
		{"Version", "v/1", "Version=v/1"},
		{"Version", "vé", "Version=vé"},
		{"Id", "my-image.x_1", ""},
		{"Id", "_x", "Id=_x: only letters"},
		{"Id", "a+b", "Id=a+b"},
		{"Id", "a b", "Id=a b"},
		{"Architecture", "arm64", ""},
		{"Architecture", "amd64", ""},
		{"Architecture", "x86-64", "Architecture=x86-64: unknown"},
	} {
		text := strings.Replace(goodConf, "[Image]\n", "[Image]\n"+c.key+"="+c.val+"\n", 1)
		_, err := ParseConfig("image.conf", []byte(text), nil)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s=%s: %v", c.key, c.val, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), "image.conf:3: "+c.want)):
			t.Errorf("%s=%s: err = %v, want %q", c.key, c.val, err, c.want)
		}
	}
}
