// Command kcheck is the /init of TestKernelReadsAndWrites: it mounts each disk named in
// vfatcheck.disks= with the kernel's vfat driver, prints a manifest digest of everything it
// sees, writes and deletes a file through the kernel, unmounts and powers off.
package main

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if err := run(); err != nil {
		fmt.Printf("vfatcheck: error: %v\n", err)
	}
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

func run() error {
	for _, m := range [][3]string{{"devtmpfs", "/dev", "devtmpfs"}, {"proc", "/proc", "proc"}} {
		_ = os.MkdirAll(m[1], 0o755)
		if err := unix.Mount(m[0], m[1], m[2], 0, ""); err != nil {
			return fmt.Errorf("mount %s: %w", m[1], err)
		}
	}
	lists, _ := filepath.Glob("/lib/modules/*/piboot.load")
	for _, l := range lists {
		f, err := os.Open(l)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// Each line is a module's path, then the paths it depends on; the list
			// is in dependency order, so loading first fields in turn suffices.
			fields := strings.Fields(sc.Text())
			if len(fields) == 0 {
				continue
			}
			p := filepath.Join(filepath.Dir(l), fields[0])
			m, err := os.Open(p)
			if err != nil {
				return err
			}
			if err := unix.FinitModule(int(m.Fd()), "", 0); err != nil && err != unix.EEXIST {
				return fmt.Errorf("load %s: %w", p, err)
			}
			m.Close()
		}
		f.Close()
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	var disks []string
	for _, f := range strings.Fields(string(cmdline)) {
		if v, ok := strings.CutPrefix(f, "vfatcheck.disks="); ok {
			disks = strings.Split(v, ",")
		}
	}
	for _, d := range disks {
		if err := check(d); err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
	}
	fmt.Println("vfatcheck: done")
	return nil
}

func check(disk string) error {
	dev := "/dev/" + disk
	for i := 0; ; i++ {
		if _, err := os.Stat(dev); err == nil {
			break
		}
		if i == 200 {
			return fmt.Errorf("%s did not appear", dev)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mnt := "/mnt/" + disk
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, mnt, "vfat", 0, "iocharset=utf8,codepage=437,errors=remount-ro"); err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	sum, files, dirs, err := Manifest(os.DirFS(mnt))
	if err != nil {
		return err
	}
	fmt.Printf("vfatcheck: %s files=%d dirs=%d manifest=%x\n", disk, files, dirs, sum)

	// Write through the kernel: its allocator starts from our FSInfo and FAT.
	dir := filepath.Join(mnt, "written by linux")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "Kernel File ü.bin"), Pattern(300000), 0o644); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(mnt, "delete-me.txt")); err != nil {
		return err
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		return fmt.Errorf("umount: %w", err)
	}
	fmt.Printf("vfatcheck: %s wrote\n", disk)
	return nil
}

// Manifest digests a tree: every directory and every file's size and SHA-256, in WalkDir's
// (lexical) order. The test computes the same over the tree it wrote.
func Manifest(fsys fs.FS) (sum [32]byte, files, dirs int, err error) {
	h := sha256.New()
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs++
			fmt.Fprintf(h, "D %s\n", p)
			return nil
		}
		f, err := fsys.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		fh := sha256.New()
		n, err := io.Copy(fh, f)
		if err != nil {
			return err
		}
		files++
		fmt.Fprintf(h, "F %s %d %x\n", p, n, fh.Sum(nil))
		return nil
	})
	copy(sum[:], h.Sum(nil))
	return sum, files, dirs, err
}

// Pattern is the content of the file the kernel writes.
func Pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}
