package sysupdate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
)

// LoaderVendor is the EFI vendor GUID of systemd-boot's variables.
const LoaderVendor = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"

// EFIVars is where efivarfs is mounted.
const EFIVars = "/sys/firmware/efi/efivars"

// ErrNoBootCounting is returned by Bless when the running entry is not boot-counted
// (systemd-boot did not set LoaderBootCountPath): nothing to do.
var ErrNoBootCounting = errors.New("not booted with boot counting in effect")

// counterRE is compiled on first use, not at init: every piboot subcommand links this
// package, and only bless and update read boot counters.
var counterRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(.*)\+([0-9]+)(?:-([0-9]+))?(\.[^.+]*)?$`)
})

// BootCounter splits a Boot Loader Spec file name "name+LEFT-DONE.ext" into the name
// without counter ("name.ext"), tries left and done (missing DONE is 0). ok is false when
// the name has no counter.
func BootCounter(file string) (plain string, left, done uint64, ok bool) {
	m := counterRE().FindStringSubmatch(file)
	if m == nil {
		return file, 0, 0, false
	}
	left, err := strconv.ParseUint(m[2], 10, 64)
	if err != nil {
		return file, 0, 0, false
	}
	if m[3] != "" {
		if done, err = strconv.ParseUint(m[3], 10, 64); err != nil {
			return file, 0, 0, false
		}
	}
	return m[1] + m[4], left, done, true
}

// ReadBootCountPath reads LoaderBootCountPath from efivars: 4 attribute bytes, then a
// UTF-16LE path relative to the ESP with backslashes. It returns the path with slashes.
func ReadBootCountPath(efivars string) (string, error) {
	data, err := os.ReadFile(filepath.Join(efivars, "LoaderBootCountPath-"+LoaderVendor))
	if errors.Is(err, fs.ErrNotExist) {
		return "", ErrNoBootCounting
	}
	if err != nil {
		return "", err
	}
	if len(data) < 4 || len(data)%2 != 0 {
		return "", fmt.Errorf("LoaderBootCountPath: malformed (%d bytes)", len(data))
	}
	u := make([]uint16, 0, (len(data)-4)/2)
	for i := 4; i+1 < len(data); i += 2 {
		c := binary.LittleEndian.Uint16(data[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	p := strings.ReplaceAll(string(utf16.Decode(u)), `\`, "/")
	if p == "" || strings.Contains(p, "..") {
		return "", fmt.Errorf("LoaderBootCountPath: unusable path %q", p)
	}
	return p, nil
}

// WriteBootCountPath writes the variable the way systemd-boot does (for tests and for
// firmware-less setups): attributes NV+BS+RT.
func WriteBootCountPath(efivars, path string) error {
	u := utf16.Encode([]rune(strings.ReplaceAll(path, "/", `\`)))
	b := make([]byte, 4, 4+2*len(u)+2)
	binary.LittleEndian.PutUint32(b, 7)
	for _, c := range u {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	b = append(b, 0, 0)
	return os.WriteFile(filepath.Join(efivars, "LoaderBootCountPath-"+LoaderVendor), b, 0o644)
}

// Bless marks the running boot entry good (good=true: rename it to the name without
// counter) or bad (rename to +0-DONE), as systemd-bless-boot does. esp is where the ESP is
// mounted. It returns the old and new paths.
func Bless(efivars, esp string, good bool) (from, to string, err error) {
	rel, err := ReadBootCountPath(efivars)
	if err != nil {
		return "", "", err
	}
	from = filepath.Join(esp, rel)
	plain, _, done, ok := BootCounter(filepath.Base(rel))
	if !ok {
		return from, from, ErrNoBootCounting
	}
	if good {
		to = filepath.Join(filepath.Dir(from), plain)
	} else {
		ext := filepath.Ext(plain)
		to = filepath.Join(filepath.Dir(from), strings.TrimSuffix(plain, ext)+fmt.Sprintf("+0-%d", done)+ext)
	}
	if _, err := os.Stat(from); err != nil {
		if _, err2 := os.Stat(to); err2 == nil {
			return to, to, nil // already done (e.g. a second call)
		}
		return from, to, fmt.Errorf("boot entry from LoaderBootCountPath: %w", err)
	}
	restore, err := makeWritable(filepath.Dir(from))
	if err != nil {
		return from, to, err
	}
	if restore != nil {
		defer func() {
			if rerr := restore(); rerr != nil && err == nil {
				err = rerr
			}
		}()
	}
	if err := renameNoReplace(from, to); err != nil {
		return from, to, err
	}
	if err := syncDir(filepath.Dir(to)); err != nil {
		return from, to, err
	}
	return from, to, syncFS(to)
}
