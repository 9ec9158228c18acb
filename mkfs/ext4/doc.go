// Package ext4 writes an empty ext4 filesystem the way a current mkfs.ext4 lays it out, but
// writes only the metadata that must be on disk, so that formatting a 128 GiB SD card on first
// boot costs a few MiB of writes instead of hundreds.
//
// # Layout
//
// 4 KiB blocks, 32768 blocks per group, 256-byte inodes, 64-byte group descriptors and the
// features mkfs.ext4 1.47 enables by default: has_journal, ext_attr, resize_inode, dir_index,
// filetype, extent, 64bit, flex_bg (16 groups), sparse_super, large_file, huge_file, dir_nlink,
// extra_isize and metadata_csum. The superblock and descriptor backups sit in groups 0, 1 and
// the powers of 3, 5 and 7; every backup group also keeps room for the reserved descriptor
// blocks that the resize inode (inode 7) maps, sized like mke2fs does (growth to 1024 times
// the size, at most 2^32 blocks), so resize2fs and the kernel's online resize can grow the
// filesystem later. The journal (inode 8) is sized like mkfs.ext4 sizes it (4 MiB to 1 GiB)
// and placed in the middle group, as mke2fs does. Besides the root directory and a 16 KiB
// lost+found, Options.Root can fill the filesystem from an fs.FS (like mkfs.ext4 -d):
// directories (linear, no htree), regular files (contiguous where possible, extent trees with
// leaf blocks when needed), fast and slow symlinks, device nodes, FIFOs, sockets, hard links,
// owners and modification times; extended attributes are not copied.
//
// # What is written
//
// Block 0 (superblock, with the old boot sector and any old signature there wiped), the
// primary descriptors and their backups with the backup superblocks, the primary reserved
// descriptor blocks (they are the resize inode's indirect blocks, so they must not hold stale
// block numbers: 4 MiB from 8 GiB up, most of what is written; Options.ResizeLimit reserves
// fewer, like mke2fs -E resize=), the block bitmaps of the
// groups that hold metadata, group 0's inode bitmap and first inode-table block, the three
// directory blocks of the root and lost+found, the resize inode's double-indirect block, the
// journal superblock and, for journals split into more than four extents, their leaf block;
// with Options.Root also the files' data, directories and inode-table blocks. Like mke2fs,
// it also zeroes the free blocks among the last 128 KiB of the partition (old MD RAID
// superblocks; this also fails early on a device smaller than the size given), and the
// block at 64 KiB if it holds nothing of ours (an old btrfs superblock), so that blkid finds
// only the new filesystem.
// Everything else keeps whatever the device held: every other group is marked
// BLOCK_UNINIT/INODE_UNINIT with correct checksums, so the kernel and e2fsck compute its
// bitmaps instead of reading them. Nothing is discarded. At 128 GiB this is about 5 MiB.
//
// # Why the unwritten journal is safe
//
// The journal superblock says the log is empty (s_start = 0), so nothing is replayed at the
// first mount. The kernel then logs transactions from the journal's first block on, numbered
// from s_sequence. After a crash, recovery walks the log from the oldest live transaction and
// stops at the first block that is not a descriptor or commit block carrying exactly the next
// expected sequence number. Our log is contiguous, so the only way stale data from an earlier
// filesystem on a reused card could be replayed is a stale block right after the last real
// commit that carries the JBD2 magic and precisely that next number. mkfs.ext4 starts every
// journal at sequence 1, which old journals are full of; we start at a random 32-bit number
// (as e2fsck does when it resets a journal), and we enable the v3 journal checksums from the
// start (the kernel would switch them on at mount anyway), whose seed is our new filesystem
// UUID: a stale block would have to match both a random sequence number and a CRC32C keyed by
// a UUID it has never seen.
//
// # Why the inode tables are not zeroed, and by default not by the kernel either
//
// mkfs.ext4 -E lazy_itable_init=1 leaves the tables for the kernel's ext4lazyinit thread,
// which zeroes them in the background after the first mount: 2 GiB at 128 GiB with the
// default inode ratio, minutes of an SD card's write bandwidth right when the system boots.
// Readers never need that zeroing while the group descriptors are intact: the kernel and
// e2fsck read only the inodes below inodes_per_group - bg_itable_unused, a field covered by
// the descriptor checksum; the kernel allocates the lowest free inode of a group first, so
// that watermark only grows over inodes it has allocated, and it clears every newly
// allocated on-disk inode before its first write (EXT4_STATE_NEW). The zeroing only guards
// the case where a corrupted descriptor makes e2fsck scan a whole table and meet stale inodes
// of an earlier filesystem; those also fail their metadata_csum checksum, which is keyed by
// our new UUID. So by default every group is marked ITABLE_ZEROED and the kernel writes
// nothing in the background. Options.DeferInodeTableZeroing restores mkfs.ext4's lazy
// behaviour for who prefers it, and the inode ratio (Options.InodeRatio: mke2fs's 16 KiB, 4 KiB
// below 512 MiB) keeps the table to zero in that case as small as mkfs.ext4's.
package ext4
