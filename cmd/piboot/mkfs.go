package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/piboot/piboot/internal/uuid"

	"github.com/piboot/piboot/mkfs"
	"github.com/piboot/piboot/mkfs/ext4"
	"github.com/piboot/piboot/mkfs/vfat"
)

func init() {
	register("mkfs", runMkfs)
}

// mkfsOther holds the mkfs subcommands whose code lives in their own files
// (cmd/piboot/mkfs_<type>.go); each such file adds one line here.
var mkfsOther = map[string]func(args []string) int{
	"squashfs": mkfsSquashfs,
}

// mkfsPlanned are the types that have no subcommand yet; they answer "not available yet".
var mkfsPlanned = []string{"xfs"}

func mkfsTypes() string {
	t := []string{"ext4", "vfat"}
	for k := range mkfsOther {
		t = append(t, k)
	}
	for _, k := range mkfsPlanned {
		if mkfsOther[k] == nil {
			t = append(t, k)
		}
	}
	sort.Strings(t)
	return strings.Join(t, "|")
}

func runMkfs(args []string) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(os.Stderr, "usage: piboot mkfs %s [flags] TARGET [TREE]\n", mkfsTypes())
		return 2
	}
	typ := args[0]
	switch typ {
	case "ext4", "vfat":
		return mkfsNative(typ, args[1:])
	}
	if run := mkfsOther[typ]; run != nil {
		return run(args[1:])
	}
	for _, k := range mkfsPlanned {
		if k == typ {
			return fail("mkfs", fmt.Errorf("%s: not available yet", typ))
		}
	}
	fmt.Fprintf(os.Stderr, "piboot mkfs: unknown filesystem type %q (want %s)\n", typ, mkfsTypes())
	return 2
}

func mkfsNative(typ string, args []string) int {
	name := "mkfs " + typ
	flags := newFlagSet(name, "TARGET [TREE]")
	label := flags.String("label", "", "filesystem label")
	uuidFlag := flags.String("uuid", "", "filesystem UUID (default: random; vfat: its first 4 bytes are the volume id)")
	sizeFlag := flags.String("size", "", "filesystem size, e.g. 512M, 8G: creates or extends a file; on a device, uses only that much")
	sectorFlag := flags.Int("sector-size", 0, "logical sector size, 512 or 4096 (default: the device's, 512 for files)")
	force := flags.Bool("force", false, "overwrite a target that already holds a filesystem or partition table")
	reserved := flags.Float64("reserved", 0, "ext4: percentage of blocks reserved for root")
	resizeFlag := flags.String("resize-limit", "", "ext4: the size up to which reserved descriptor blocks let it grow online, e.g. 16T (mkfs.ext4 -E resize=; default: 2T from 2G to 1T, else 1024 times the size, at most 16T)")
	flags.Parse(mkfsReorderFlags(args))
	if flags.NArg() < 1 || flags.NArg() > 2 {
		flags.Usage()
		return 2
	}
	target := flags.Arg(0)
	var tree fs.FS
	if flags.NArg() == 2 {
		st, err := os.Stat(flags.Arg(1))
		if err != nil {
			return fail(name, fmt.Errorf("TREE: %w", err))
		}
		if !st.IsDir() {
			return fail(name, fmt.Errorf("TREE %s is not a directory", flags.Arg(1)))
		}
		tree = os.DirFS(flags.Arg(1))
	}
	var id uuid.UUID
	if *uuidFlag != "" {
		var err error
		if id, err = uuid.Parse(*uuidFlag); err != nil {
			return fail(name, fmt.Errorf("--uuid %q: %v", *uuidFlag, err))
		}
	}
	var want int64
	if *sizeFlag != "" {
		var err error
		if want, err = mkfsParseBytes(*sizeFlag); err != nil || want <= 0 {
			return fail(name, fmt.Errorf("--size %q: want a positive number of bytes with an optional K, M, G or T suffix", *sizeFlag))
		}
	}
	var resizeLimit int64 // 0: repart's first-boot layout (mkfs.Ext4ResizeLimit)
	if *resizeFlag != "" {
		var err error
		if typ != "ext4" {
			return fail(name, fmt.Errorf("--resize-limit is for ext4 only"))
		}
		if resizeLimit, err = mkfsParseBytes(*resizeFlag); err != nil || resizeLimit <= 0 {
			return fail(name, fmt.Errorf("--resize-limit %q: want a positive number of bytes with an optional K, M, G or T suffix", *resizeFlag))
		}
		// "16T" means as far as ext4 with 4 KiB blocks goes, which is one block less.
		resizeLimit = min(resizeLimit, ext4.MaxSize)
	}
	_, statErr := os.Stat(target)
	created := errors.Is(statErr, fs.ErrNotExist)
	f, size, sector, err := mkfsOpenTarget(target, want)
	if err != nil {
		return fail(name, err)
	}
	defer f.Close()
	// A file this command created is removed again if formatting fails.
	cleanup := func() {
		if created {
			f.Close()
			os.Remove(target)
		}
	}
	if *sectorFlag != 0 {
		sector = *sectorFlag
	}
	if !*force && size > 0 {
		if what := mkfsExistingSignature(f); what != "" {
			return fail(name, fmt.Errorf("%s already holds %s; use --force to overwrite it", target, what))
		}
	}
	ts := time.Time{}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fail(name, fmt.Errorf("SOURCE_DATE_EPOCH %q is not a number of seconds", s))
		}
		ts = time.Unix(n, 0).UTC()
	}
	switch typ {
	case "ext4":
		if resizeLimit == 0 {
			resizeLimit = mkfs.Ext4ResizeLimit(size)
		}
		err = ext4.Format(f, size, ext4.Options{Label: *label, UUID: id, ReservedPercent: *reserved, ResizeLimit: resizeLimit, SectorSize: sector, Time: ts, Root: tree})
	case "vfat":
		err = vfat.Format(f, size, vfat.Options{Label: *label, UUID: id, SectorSize: sector, Time: ts, Root: tree})
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		cleanup()
		return fail(name, fmt.Errorf("%s: %w", target, err))
	}
	return 0
}

// mkfsOpenTarget opens a file or block device for writing and returns the size to format and the
// device's logical sector size. A file is created or extended to want bytes; a device (or a
// larger file) is only used up to want.
func mkfsOpenTarget(path string, want int64) (*os.File, int64, int, error) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if want == 0 {
			return nil, 0, 0, fmt.Errorf("%s does not exist; give --size to create it", path)
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return nil, 0, 0, err
		}
		if err := f.Truncate(want); err != nil {
			f.Close()
			return nil, 0, 0, err
		}
		return f, want, 512, nil
	case err != nil:
		return nil, 0, 0, err
	}
	if st.Mode()&fs.ModeDevice != 0 {
		// O_EXCL on a block device fails while it is mounted or otherwise claimed.
		f, err := os.OpenFile(path, os.O_RDWR|os.O_EXCL, 0)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("opening device: %w (mounted or in use?)", err)
		}
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			f.Close()
			return nil, 0, 0, fmt.Errorf("%s: size: %w", path, err)
		}
		if want > size {
			f.Close()
			return nil, 0, 0, fmt.Errorf("--size %d is larger than %s (%d bytes)", want, path, size)
		}
		if want == 0 {
			want = size
		}
		return f, want, deviceSectorSize(f), nil
	}
	if !st.Mode().IsRegular() {
		return nil, 0, 0, fmt.Errorf("%s is neither a regular file nor a block device", path)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, 0, 0, err
	}
	size := st.Size()
	if want > size {
		if err := f.Truncate(want); err != nil {
			f.Close()
			return nil, 0, 0, err
		}
		size = want
	}
	if want != 0 {
		size = want
	}
	if size == 0 {
		f.Close()
		return nil, 0, 0, fmt.Errorf("%s is empty; give --size", path)
	}
	return f, size, 512, nil
}

// mkfsExistingSignature names what the start of f already holds, so that mkfs does not silently
// destroy a filesystem or partition table.
func mkfsExistingSignature(f *os.File) string {
	buf := make([]byte, 68<<10)
	n, _ := f.ReadAt(buf, 0)
	buf = buf[:n]
	at := func(off int, magic string) bool {
		return off+len(magic) <= len(buf) && string(buf[off:off+len(magic)]) == magic
	}
	switch {
	case at(1080, "\x53\xef"):
		return "an ext2/3/4 filesystem"
	case at(0, "XFSB"):
		return "an XFS filesystem"
	case at(0, "hsqs"):
		return "a squashfs filesystem"
	case at(512, "EFI PART") || at(4096, "EFI PART"):
		return "a GPT partition table"
	case at(0, "LUKS\xba\xbe"):
		return "a LUKS volume"
	case at(65600, "_BHRfS_M"):
		return "a btrfs filesystem"
	case at(510, "\x55\xaa") && (at(0x52, "FAT32") || at(0x36, "FAT1")):
		return "a FAT filesystem"
	case at(510, "\x55\xaa"):
		return "a boot sector or MBR partition table"
	}
	return ""
}

// mkfsReorderFlags moves flags after the positional arguments to the front, so that
// `piboot mkfs ext4 disk.img --size 1G` works like the flags-first form.
func mkfsReorderFlags(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			flags = append(flags, a)
			if !strings.Contains(a, "=") && i+1 < len(args) && !mkfsIsBoolFlag(a) {
				flags = append(flags, args[i+1])
				i++
			}
		default:
			pos = append(pos, a)
		}
	}
	return append(flags, pos...)
}

func mkfsIsBoolFlag(a string) bool {
	a = strings.TrimLeft(a, "-")
	return a == "force" || a == "h" || a == "help"
}

// mkfsParseBytes reads a size like 1048576, 512K, 64M, 8G or 1T (powers of 1024).
func mkfsParseBytes(s string) (int64, error) {
	mult := int64(1)
	if s != "" {
		switch strings.ToUpper(s[len(s)-1:]) {
		case "K":
			mult = 1 << 10
		case "M":
			mult = 1 << 20
		case "G":
			mult = 1 << 30
		case "T":
			mult = 1 << 40
		}
		if mult != 1 {
			s = s[:len(s)-1]
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n > (1<<62)/mult {
		return 0, errors.New("too large")
	}
	return n * mult, nil
}
