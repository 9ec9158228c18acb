package vfat

import "fmt"

// FAT limits. The cluster-count thresholds are the ones dosfstools' mkfs.fat uses: they keep
// every reader (Windows, Linux, mtools, UEFI) agreeing on the FAT type, which readers derive
// from the cluster count alone.
const (
	minClusters16 = 4085           // fewer and readers take the FAT for FAT12
	maxClusters16 = 1<<16 - 16 - 2 // mkfs.fat's MAX_CLUST_16 minus the two reserved entries
	minClusters32 = 65529          // mkfs.fat's MIN_CLUST_32 (the spec says 65525; Windows wants more)
	maxClusters32 = 1<<28 - 16     // the top 4 bits of a FAT32 entry are reserved

	numFATs          = 2
	reserved32       = 32  // sectors before the first FAT on FAT32 (boot, FSInfo, backups)
	reserved16       = 1   // sectors before the first FAT on FAT16
	rootEntries16    = 512 // FAT16 root directory slots, as mkfs.fat makes them
	maxClusterBytes  = 64 << 10
	alignMinSectors  = 8192 // mkfs.fat does not align structures of floppy-sized filesystems
	fat32BackupBoot  = 6
	fat32FSInfo      = 1
	fat32RootCluster = 2
)

// geometry is the on-disk layout of one filesystem; all counts are in logical sectors unless
// named otherwise.
type geometry struct {
	fatType       int // 16 or 32
	sectorSize    int
	totalSectors  uint32
	secPerCluster int
	reserved      int
	fatLength     uint32 // sectors per FAT copy
	rootEntries   int    // FAT16 only: slots in the fixed root directory
	rootSectors   int    // FAT16 only
	clusters      uint32 // data clusters, numbered 2..clusters+1
}

func (g geometry) clusterBytes() int64 { return int64(g.secPerCluster) * int64(g.sectorSize) }

func (g geometry) fatStart(i int) int64 {
	return (int64(g.reserved) + int64(i)*int64(g.fatLength)) * int64(g.sectorSize)
}

func (g geometry) rootStart() int64 { return g.fatStart(numFATs) }

func (g geometry) dataStart() int64 {
	return g.rootStart() + int64(g.rootSectors)*int64(g.sectorSize)
}

func (g geometry) clusterOffset(c uint32) int64 {
	return g.dataStart() + int64(c-2)*g.clusterBytes()
}

func (g geometry) String() string {
	return fmt.Sprintf("FAT%d, %d-byte sectors, %d-byte clusters, %d clusters", g.fatType,
		g.sectorSize, g.clusterBytes(), g.clusters)
}

// fat32ClusterBytes is the cluster size Microsoft's format and mkfs.fat -F 32 choose for a
// filesystem of size bytes (fatgen103, p. 20): 512 B up to 260 MiB, 4 KiB up to 8 GiB, then
// doubling up to 32 KiB above 32 GiB.
func fat32ClusterBytes(size int64) int {
	mb := (size + 1<<20 - 1) >> 20 // mkfs.fat rounds up to whole MiB
	switch {
	case mb > 32<<10:
		return 32 << 10
	case mb > 16<<10:
		return 16 << 10
	case mb > 8<<10:
		return 8 << 10
	case mb > 260:
		return 4 << 10
	default:
		return 512
	}
}

func alignUp(n, to uint64) uint64 { return (n + to - 1) / to * to }

func cdiv(a, b uint64) uint64 { return (a + b - 1) / b }

// checkSizes validates a sector size and a cluster size (0: automatic).
func checkSizes(sectorSize, clusterBytes int) error {
	switch sectorSize {
	case 512, 1024, 2048, 4096:
	default:
		return fmt.Errorf("sector size %d: want 512, 1024, 2048 or 4096", sectorSize)
	}
	if clusterBytes != 0 && (clusterBytes < sectorSize || clusterBytes > maxClusterBytes ||
		clusterBytes&(clusterBytes-1) != 0) {
		return fmt.Errorf("cluster size %d: want a power of two from the sector size (%d) to %d",
			clusterBytes, sectorSize, maxClusterBytes)
	}
	return nil
}

// layout computes the geometry of a filesystem of size bytes. fatType 0 picks FAT32 whenever
// the size allows it (systemd-repart runs `mkfs.vfat -F 32`), FAT16 below that.
// clusterBytes 0 picks the cluster size mkfs.fat picks. minRoot is the number of root
// directory slots the content needs (FAT16 grows its fixed root directory to hold them).
//
// The arithmetic follows mkfs.fat (dosfstools 4.2): reserved sectors, FAT length and, on
// FAT16, the root directory are rounded up to whole clusters so that every cluster is
// aligned to its own size within the partition.
func layout(size int64, sectorSize, fatType, clusterBytes, minRoot int) (geometry, error) {
	if err := checkSizes(sectorSize, clusterBytes); err != nil {
		return geometry{}, err
	}
	if size < 0 {
		return geometry{}, fmt.Errorf("negative size %d", size)
	}
	n := uint64(size) / uint64(sectorSize)
	if n > 0xFFFFFFFF {
		n = 0xFFFFFFFF // FAT counts sectors in 32 bits; the rest of a huge partition stays unused
	}
	ss := uint64(sectorSize)
	align := func(v, cs uint64) uint64 {
		if n <= alignMinSectors {
			return v
		}
		return alignUp(v, cs)
	}

	var err32 error
	if fatType == 0 || fatType == 32 {
		cb := clusterBytes
		if cb == 0 {
			cb = max(fat32ClusterBytes(size), sectorSize)
		}
		for ; cb <= maxClusterBytes; cb *= 2 {
			cs := uint64(cb / sectorSize)
			res := align(reserved32, cs)
			if res >= n {
				err32 = fmt.Errorf("%d bytes is too small for FAT32", size)
				break
			}
			data := n - res
			clust := (data*ss + numFATs*8) / (cs*ss + numFATs*4)
			fatLen := align(cdiv((clust+2)*4, ss), cs)
			if numFATs*fatLen >= data {
				err32 = fmt.Errorf("%d bytes is too small for FAT32", size)
				break
			}
			clust = (data - numFATs*fatLen) / cs
			if clust+2 > fatLen*ss/4 {
				clust = fatLen*ss/4 - 2
			}
			if clust > maxClusters32 {
				if clusterBytes != 0 {
					err32 = fmt.Errorf("%d bytes needs %d clusters of %d bytes, FAT32 allows %d",
						size, clust, cb, maxClusters32)
					break
				}
				continue
			}
			if clust < minClusters32 {
				err32 = fmt.Errorf("%d bytes gives %d clusters of %d bytes, FAT32 needs at least %d",
					size, clust, cb, minClusters32)
				break
			}
			return geometry{fatType: 32, sectorSize: sectorSize, totalSectors: uint32(n),
				secPerCluster: int(cs), reserved: int(res), fatLength: uint32(fatLen),
				clusters: uint32(clust)}, nil
		}
		if fatType == 32 {
			return geometry{}, err32
		}
	}

	// FAT16: mkfs.fat starts at 4 sectors per cluster and doubles until the count fits. If
	// even the start is too coarse for a small filesystem, finer clusters are tried too.
	entries := max(rootEntries16, minRoot)
	rootSecs := cdiv(uint64(entries)*32, ss)
	// The BPB counts root entries in 16 bits, in whole sectors (whole clusters once aligned).
	if maxRoot := 0xFFFF / (ss / 32) * (ss / 32); uint64(entries) > maxRoot {
		msg := fmt.Sprintf("the root directory needs %d entries, a FAT16 root holds at most %d", entries, maxRoot)
		if err32 != nil {
			msg += " (and FAT32: " + err32.Error() + ")"
		}
		return geometry{}, fmt.Errorf("%s", msg)
	}
	rootTooBig := false
	try := func(cs uint64) (geometry, uint64, bool) {
		res := align(reserved16, cs)
		root := align(rootSecs, cs)
		if root*ss/32 > 0xFFFF {
			rootTooBig = true
			return geometry{}, 0, false
		}
		if res+root >= n {
			return geometry{}, 0, false
		}
		data := n - res - root
		clust := (data*ss + numFATs*4) / (cs*ss + numFATs*2)
		fatLen := align(cdiv((clust+2)*2, ss), cs)
		if numFATs*fatLen >= data {
			return geometry{}, 0, false
		}
		clust = (data - numFATs*fatLen) / cs
		if clust+2 > fatLen*ss/2 {
			clust = fatLen*ss/2 - 2
		}
		g := geometry{fatType: 16, sectorSize: sectorSize, totalSectors: uint32(n),
			secPerCluster: int(cs), reserved: int(res), fatLength: uint32(fatLen),
			rootEntries: int(root * ss / 32), rootSectors: int(root), clusters: uint32(clust)}
		return g, clust, clust >= minClusters16 && clust <= maxClusters16
	}
	var sizes []int
	if clusterBytes != 0 {
		sizes = []int{clusterBytes}
	} else {
		for cb := 4 * sectorSize; cb <= maxClusterBytes; cb *= 2 {
			sizes = append(sizes, cb)
		}
		for cb := 2 * sectorSize; cb >= sectorSize; cb /= 2 {
			sizes = append(sizes, cb)
		}
	}
	var lastClust uint64
	for _, cb := range sizes {
		g, clust, ok := try(uint64(cb / sectorSize))
		if ok {
			return g, nil
		}
		lastClust = clust
	}
	msg := fmt.Sprintf("%d bytes with %d-byte sectors fits neither FAT16 (%d to %d clusters) nor FAT32 (at least %d clusters)",
		size, sectorSize, minClusters16, maxClusters16, minClusters32)
	if fatType == 16 {
		msg = fmt.Sprintf("%d bytes with %d-byte sectors does not fit FAT16 (%d to %d clusters; got %d)",
			size, sectorSize, minClusters16, maxClusters16, lastClust)
	}
	if rootTooBig {
		msg += fmt.Sprintf("; a %d-entry FAT16 root directory rounded to whole clusters exceeds the 65535 entries FAT16 can count", entries)
	}
	return geometry{}, fmt.Errorf("%s", msg)
}
