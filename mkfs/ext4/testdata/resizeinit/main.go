// Command resizeinit is PID 1 of the ext4 package's online-resize test: it loads the modules
// in the initramfs's load list, mounts /dev/vda, grows the filesystem to the whole disk with
// EXT4_IOC_RESIZE_FS (what resize2fs does on a mounted filesystem), checks a file, and
// powers off. Every result is a console line starting with "resizeinit:".
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const ext4IocResizeFS = 0x40086610 // _IOW('f', 16, __u64)

func main() {
	if err := run(); err != nil {
		fmt.Printf("resizeinit: error: %v\n", err)
	}
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

func run() error {
	os.MkdirAll("/dev", 0o755)
	os.MkdirAll("/proc", 0o755)
	if err := unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, ""); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", 0, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	// the initrd package writes its module load order next to the modules
	lists, _ := filepath.Glob("/lib/modules/*/piboot.load")
	if len(lists) != 1 {
		return fmt.Errorf("module load list: found %v", lists)
	}
	list := lists[0]
	f, err := os.Open(list)
	if err != nil {
		return fmt.Errorf("module list: %w", err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "module deps...": lines come dependencies first, so the first field is enough
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		p := filepath.Join(filepath.Dir(list), fields[0])
		mf, err := os.Open(p)
		if err != nil {
			return err
		}
		if err := unix.FinitModule(int(mf.Fd()), "", 0); err != nil && err != unix.EEXIST {
			return fmt.Errorf("loading %s: %w", p, err)
		}
		mf.Close()
	}
	for i := 0; ; i++ {
		if _, err := os.Stat("/dev/vda"); err == nil {
			break
		}
		if i > 300 {
			return fmt.Errorf("no /dev/vda")
		}
		time.Sleep(100 * time.Millisecond)
	}
	os.MkdirAll("/mnt", 0o755)
	if err := unix.Mount("/dev/vda", "/mnt", "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount /dev/vda: %w", err)
	}
	var st unix.Statfs_t
	unix.Statfs("/mnt", &st)
	fmt.Printf("resizeinit: mounted blocks=%d\n", st.Blocks)
	dev, err := os.Open("/dev/vda")
	if err != nil {
		return err
	}
	size, _ := dev.Seek(0, 2)
	newBlocks := uint64(size / 4096)
	root, err := os.Open("/mnt")
	if err != nil {
		return err
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, root.Fd(), ext4IocResizeFS, uintptr(unsafe.Pointer(&newBlocks))); e != 0 {
		return fmt.Errorf("EXT4_IOC_RESIZE_FS to %d blocks: %w", newBlocks, e)
	}
	root.Close()
	dev.Close()
	unix.Statfs("/mnt", &st)
	fmt.Printf("resizeinit: resized blocks=%d\n", st.Blocks)
	b, err := os.ReadFile("/mnt/keep")
	if err != nil || string(b) != "kept" {
		return fmt.Errorf("/mnt/keep after resize: %q %v", b, err)
	}
	if err := os.WriteFile("/mnt/after", []byte(strconv.Itoa(int(newBlocks))), 0o644); err != nil {
		return err
	}
	if err := unix.Unmount("/mnt", 0); err != nil {
		return fmt.Errorf("umount: %w", err)
	}
	fmt.Println("resizeinit: ok")
	return nil
}
