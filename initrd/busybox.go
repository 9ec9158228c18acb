package initrd

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// URootVersion is the u-root release whose shell and core commands go into the
// emergency busybox.
const URootVersion = "v0.16.0"

// ShellCommands are the u-root commands of the emergency shell: gosh plus what a person
// needs to look at disks, partitions, filesystems, modules and logs.
var ShellCommands = []string{
	"gosh", "cat", "cp", "dd", "df", "dmesg", "echo", "find", "grep", "head", "hexdump",
	"insmod", "ln", "losetup", "ls", "lsmod", "mkdir", "mknod", "more", "mount", "mv",
	"poweroff", "ps", "pwd", "readlink", "rm", "sleep", "sync", "tail", "umount", "uname",
	"wc", "shutdown", "blkid", "gpt", "ip",
}

// shellTags are the build tags of the busybox.
// goshsmall: gosh's plain "$ " prompt on the kernel's line discipline. Its default
// full-screen editor queries the terminal (colors, cursor position) and waits for answers
// a serial console never gives.
var shellTags = []string{"goshsmall"}

// The busybox is compiled by gobusybox's makebb run as a separate tool, not linked as a
// library: the library brings go/types, go/packages and x/tools into every piboot binary,
// which made each start of `piboot repart` page in and initialize them. makebb is built
// once per Go toolchain from the module in makebb.mod/makebb.sum (exact versions, checked
// sums) and kept next to the busybox binaries.
const makebbPackage = "github.com/u-root/gobusybox/src/cmd/makebb"

var (
	//go:embed makebb.mod
	makebbMod []byte
	//go:embed makebb.sum
	makebbSum []byte
)

// goToolchain is what Busybox needs to know about the `go` command on PATH.
type goToolchain struct {
	version, root, hostOS, hostArch string
}

func lookupGo() (goToolchain, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("go", "env", "GOVERSION", "GOROOT", "GOHOSTOS", "GOHOSTARCH")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return goToolchain{}, fmt.Errorf("go env: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	f := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(f) != 4 {
		return goToolchain{}, fmt.Errorf("go env GOVERSION GOROOT GOHOSTOS GOHOSTARCH: unexpected output %q", out)
	}
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	return goToolchain{version: f[0], root: f[1], hostOS: f[2], hostArch: f[3]}, nil
}

// uRootDir returns the module cache directory of u-root URootVersion, downloading the
// module when needed.
func uRootDir() (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/u-root/u-root@"+URootVersion)
	cmd.Dir = os.TempDir() // outside any module: the exact version, whatever go.mod says
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GO111MODULE=on")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download u-root@%s: %v: %s", URootVersion, err, stderr.String())
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil {
		return "", fmt.Errorf("go mod download u-root: %v", err)
	}
	if m.Error != "" || m.Dir == "" {
		return "", fmt.Errorf("go mod download u-root@%s: %s", URootVersion, m.Error)
	}
	// The commands are compiled against u-root's own go.mod: fetch its dependencies
	// (once; the module cache keeps them).
	dl := exec.Command("go", "mod", "download")
	dl.Dir = m.Dir
	dl.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if out, err := dl.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go mod download in %s: %v: %s", m.Dir, err, out)
	}
	return m.Dir, nil
}

// makebb returns makebb built for the host by toolchain gt, building it into cacheDir
// when it is not there yet.
func makebb(gt goToolchain, cacheDir string) (string, error) {
	h := sha256.New()
	for _, b := range [][]byte{makebbMod, makebbSum, []byte(gt.version), []byte(gt.hostOS + "/" + gt.hostArch)} {
		fmt.Fprintf(h, "%d\n", len(b))
		h.Write(b)
	}
	bin := filepath.Join(cacheDir, "makebb-"+gt.hostOS+"-"+gt.hostArch+"-"+hex.EncodeToString(h.Sum(nil)[:8]))
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	// A scratch module of its own: piboot's go.mod is not needed (nor present where the
	// piboot binary runs), and the sums in makebb.sum pin every dependency.
	mod, err := os.MkdirTemp(cacheDir, "makebb-mod-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(mod)
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), makebbMod, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(mod, "go.sum"), makebbSum, 0o644); err != nil {
		return "", err
	}
	tmp := filepath.Join(mod, "makebb")
	cmd := exec.Command("go", "build", "-trimpath", "-o", tmp, makebbPackage)
	cmd.Dir = mod
	// The tool runs here, whatever GOOS/GOARCH the caller's environment targets; those
	// go to makebb's own environment only (see Busybox).
	cmd.Env = append(os.Environ(), "GOOS="+gt.hostOS, "GOARCH="+gt.hostArch, "CGO_ENABLED=0",
		"GOFLAGS=-mod=readonly", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s (versions in initrd/makebb.mod): %v: %s", makebbPackage, err, tail(out))
	}
	// Rename is atomic: a concurrent Busybox sees no binary or a whole one.
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}

// tail returns the end of a tool's output, enough for its error messages.
func tail(out []byte) string {
	const max = 4096
	s := strings.TrimSpace(string(out))
	if len(s) > max {
		s = "..." + s[len(s)-max:]
	}
	return s
}

// busyboxName is the cache file name of a busybox; cmds must be sorted. The key covers
// the u-root version, arch, tags, Go toolchain and commands, so a stale binary is never
// reused.
func busyboxName(arch, goVersion string, cmds []string) string {
	h := sha256.Sum256([]byte(strings.Join([]string{URootVersion, arch, strings.Join(shellTags, ","), goVersion, strings.Join(cmds, ",")}, "\n")))
	return "busybox-" + arch + "-" + hex.EncodeToString(h[:8])
}

// Busybox builds (or takes from cacheDir) one static binary holding the given u-root
// core commands, for GOARCH arch. The cache key covers the version, arch, commands and
// Go toolchain, so a stale binary is never reused. The build is reproducible: the same
// inputs give the same bytes.
func Busybox(arch string, cmds []string, cacheDir string) (string, error) {
	cmds = append([]string(nil), cmds...)
	sort.Strings(cmds)
	gt, err := lookupGo()
	if err != nil {
		return "", err
	}
	out := filepath.Join(cacheDir, busyboxName(arch, gt.version, cmds))
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	dir, err := uRootDir()
	if err != nil {
		return "", err
	}
	var paths []string
	for _, c := range cmds {
		p := filepath.Join(dir, "cmds", "core", c)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("u-root %s has no core command %q", URootVersion, c)
		}
		paths = append(paths, p)
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	tool, err := makebb(gt, cacheDir)
	if err != nil {
		return "", err
	}
	work, err := os.MkdirTemp(cacheDir, "bbsrc-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	tmp := filepath.Join(work, "bb")
	args := []string{"-o", tmp, "-gen-dir", filepath.Join(work, "gen")}
	for _, t := range shellTags {
		args = append(args, "-go-build-tags", t)
	}
	cmd := exec.Command(tool, append(args, paths...)...)
	// The commands' packages resolve against u-root's own go.mod.
	cmd.Dir = dir
	// GOROOT: makebb finds the compiler through it; the toolchain on PATH is the one the
	// cache key names (a makebb built with -trimpath knows no GOROOT of its own).
	cmd.Env = append(os.Environ(), "GOROOT="+gt.root, "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build u-root busybox for %s: %v: %s", arch, err, tail(out))
	}
	return out, os.Rename(tmp, out)
}
