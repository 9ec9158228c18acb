package repart

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"text/tabwriter"
)

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

// TestWriteColumns: the plan table's layout is text/tabwriter's (padding 1, cells ended by a
// tab, the last of a row not), which WriteTable used until writeColumns replaced it: random
// rows of empty, ASCII and multi-byte cells (→, Σ, labels in UTF-8) give the same bytes.
func TestWriteColumns(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	words := []string{"", "-", "esp", "root-arm64", "→ 3.5G", "Σ = 7.9G", "ÉSP☃", "1048576", "a-very-long-label-for-columns", "create"}
	for n := 0; n < 500; n++ {
		cols := 1 + r.IntN(10)
		rows := make([][]string, 1+r.IntN(8))
		var want bytes.Buffer
		tw := tabwriter.NewWriter(&want, 0, 0, 1, ' ', 0)
		for i := range rows {
			rows[i] = make([]string, cols)
			for j := range rows[i] {
				rows[i][j] = words[r.IntN(len(words))]
			}
			tw.Write([]byte(strings.Join(rows[i], "\t") + "\n"))
		}
		tw.Flush()
		var got bytes.Buffer
		if err := writeColumns(&got, rows); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Fatalf("rows %q:\ngot\n%s\nwant (tabwriter)\n%s", rows, got.String(), want.String())
		}
	}
}
