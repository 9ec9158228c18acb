package initrd

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/gobusybox/src/pkg/bb"
	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/uio/ulog"
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
var shellTags = []string{"goshsmall"}

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

// Busybox builds (or takes from cacheDir) one static binary holding the given u-root
// core commands, for GOARCH arch. The cache key covers the version, arch, commands and
// Go toolchain, so a stale binary is never reused.
func Busybox(arch string, cmds []string, cacheDir string) (string, error) {
	cmds = append([]string(nil), cmds...)
	sort.Strings(cmds)
	goVersion, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOVERSION: %v", err)
	}
	h := sha256.Sum256([]byte(strings.Join([]string{URootVersion, arch, strings.Join(shellTags, ","), strings.TrimSpace(string(goVersion)), strings.Join(cmds, ",")}, "\n")))
	out := filepath.Join(cacheDir, "busybox-"+arch+"-"+hex.EncodeToString(h[:8]))
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
	gen, err := os.MkdirTemp(cacheDir, "bbsrc-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(gen)
	env := golang.Default(golang.DisableCGO(), golang.WithGOARCH(arch), golang.WithGOOS("linux"), golang.WithWorkingDir(dir),
		// goshsmall: gosh's plain "$ " prompt on the kernel's line discipline. Its
		// default full-screen editor queries the terminal (colors, cursor position) and
		// waits for answers a serial console never gives.
		golang.WithBuildTag(shellTags...))
	tmp := out + ".tmp"
	err = bb.BuildBusybox(ulog.Null, &bb.Opts{
		Env:          env,
		GenSrcDir:    gen,
		CommandPaths: paths,
		BinaryPath:   tmp,
		GoBuildOpts:  &golang.BuildOpts{},
	})
	if err != nil {
		return "", fmt.Errorf("build u-root busybox: %w", err)
	}
	return out, os.Rename(tmp, out)
}
