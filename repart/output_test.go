package repart

import "testing"

// TestPartitionNode: the names systemd-repart 252 prints (through libfdisk's fdisk_partname).
func TestPartitionNode(t *testing.T) {
	for _, c := range []struct {
		disk string
		n    int
		want string
	}{
		{"/dev/sda", 3, "/dev/sda3"},
		{"/dev/mmcblk0", 4, "/dev/mmcblk0p4"},
		{"/dev/nvme0n1", 2, "/dev/nvme0n1p2"},
		{"/dev/loop7", 1, "/dev/loop7p1"},
		{"/dev/disk/by-id/usb-Generic_STORAGE_DEVICE-0:0", 3, "/dev/disk/by-id/usb-Generic_STORAGE_DEVICE-0:0-part3"},
		{"/dev/disk/by-path/platform-fe340000.mmc", 1, "/dev/disk/by-path/platform-fe340000.mmc-part1"},
		{"/tmp/card.img", 3, "/tmp/card.img3"},
		{"card2", 3, "card2p3"}, // "card23" would read as partition 23 of card
	} {
		if got := PartitionNode(c.disk, c.n); got != c.want {
			t.Errorf("PartitionNode(%q, %d) = %q, want %q", c.disk, c.n, got, c.want)
		}
	}
}
