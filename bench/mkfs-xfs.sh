#!/bin/bash
# bench/mkfs-xfs.sh: piboot's XFS writer vs mkfs.xfs with systemd-repart 252's arguments
# (-L root -m uuid=U -m reflink=1) at 8, 32 and 128 GiB.
#
# Each formatter runs on a loop device (direct I/O, so reads reach the backing file as they
# would reach a card) over a sparse file in one of three states:
#   zeroed   a fresh (sparse) card
#   dirty    the area where the log goes holds random data (a reused card)
#   old-xfs  an XFS made by mkfs.xfs, filled and shut down with its log not clean
# "written" is what the loop device was asked to write (/sys/block/loopN/stat, sectors
# written, which includes mkfs.xfs's BLKZEROOUT of the log: a card without write-zeroes
# support gets those as real writes); "stored" is the growth of the sparse backing file (du).
# "format ms" is, for piboot, the time inside xfs.Format as the CLI reports it (what
# piboot-init spends, without the process start of a large binary); for mkfs.xfs, its wall time.
# Times are the median of REPEAT runs (default 5); bytes and checks are from the last run.
# After each run the result is mounted read-write and unmounted ("mount" column) and checked
# with xfs_repair -n ("repair" column).
# Needs root. Usage: bench/mkfs-xfs.sh [sizes in GiB...]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${*:-8 32 128}
REPEAT=${REPEAT:-5} # runs per case; times are medians (this machine is shared and noisy)
work=$(mktemp -d /tmp/bench-mkfs-xfs.XXXXXX)
loopdev=""
detach() { [ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null; loopdev=""; }
cleanup() {
	mountpoint -q "$work/mnt" 2>/dev/null && umount "$work/mnt"
	detach
	rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/piboot" ./cmd/piboot
mkdir -p "$work/mnt"
uuid=3b1f7c2e-9d4a-4e6b-8a51-6c0f2d9e7b13

written() { awk '{printf "%.0f\n", $7 * 512}' "/sys/block/$(basename "$loopdev")/stat"; }
now() { date +%s%N; }
stored() { du -B1 "$1" | cut -f1; }
mib() { awk -v b="$1" 'BEGIN{printf "%.2f", b/1048576}'; }

# prepare IMG GIB STATE: make the card.
prepare() {
	local img=$1 gib=$2 state=$3
	rm -f "$img"
	truncate -s "${gib}G" "$img"
	case $state in
	dirty)
		# The log starts 6 blocks into AG agcount/2 = 2 of 4; cover it and a margin.
		local agsize logblocks
		agsize=$(mkfs.xfs -N -f "$img" | sed -n 's/.*agsize=\([0-9]*\).*/\1/p' | head -1)
		logblocks=$(mkfs.xfs -N -f "$img" | sed -n 's/^log .*blocks=\([0-9]*\).*/\1/p')
		dd if="$work/random" of="$img" bs=4096 seek=$((2 * agsize)) count=$((logblocks + 16)) \
			conv=notrunc,fsync status=none
		;;
	old-xfs)
		mkfs.xfs -q -f -L old "$img"
		local dev
		dev=$(losetup -f --show "$img")
		mount "$dev" "$work/mnt"
		for i in $(seq 1 200); do head -c 20000 "$work/random" >"$work/mnt/f$i"; done
		xfs_io -x -c "shutdown -f" "$work/mnt"
		umount "$work/mnt"
		losetup -d "$dev"
		;;
	esac
	sync
}

head -c $((80 << 20)) /dev/urandom >"$work/random" # covers the log up to 320 GiB (64 MiB)

printf '%-5s %-8s %-8s %9s %10s %12s %11s %6s %6s\n' GiB state tool "wall ms" "format ms" "written MiB" "stored MiB" mount repair
# median of the arguments
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

declare -A T F W
for gib in $SIZES; do
	for state in zeroed dirty old-xfs; do
		for tool in piboot mkfs.xfs; do
			mss=() fmss=()
			for run in $(seq 1 "$REPEAT"); do
				img="$work/card.img"
				prepare "$img" "$gib" "$state"
				s0=$(stored "$img")
				loopdev=$(losetup -f --show --direct-io=on "$img")
				w0=$(written)
				t0=$(now)
				case $tool in
				piboot) out=$("$work/piboot" mkfs xfs --force --label root --uuid "$uuid" "$loopdev") ;;
				mkfs.xfs) mkfs.xfs -q -f -L root -m uuid="$uuid" -m reflink=1 "$loopdev" ;;
				esac
				t1=$(now)
				w1=$(written)
				s1=$(stored "$img")
				ms=$(((t1 - t0) / 1000000))
				fms=$ms
				[ $tool = piboot ] && fms=$(sed -n 's/.* in \([0-9]*\) ms$/\1/p' <<<"$out")
				mss+=("$ms") fmss+=("$fms")
				mounted=no
				if mount -t xfs "$loopdev" "$work/mnt" 2>/dev/null; then
					echo ok >"$work/mnt/probe" && umount "$work/mnt" && mounted=yes
				fi
				repair=no
				xfs_repair -n "$loopdev" >/dev/null 2>&1 && repair=yes
				detach
				rm -f "$img"
			done
			ms=$(median "${mss[@]}") fms=$(median "${fmss[@]}")
			T[$gib.$state.$tool]=$ms
			F[$gib.$state.$tool]=$fms
			W[$gib.$state.$tool]=$((w1 - w0))
			printf '%-5s %-8s %-8s %9d %10d %12s %11s %6s %6s\n' "$gib" "$state" "$tool" "$ms" "$fms" \
				"$(mib $((w1 - w0)))" "$(mib $((s1 - s0)))" "$mounted" "$repair"
		done
	done
done

echo
echo "ratios piboot / mkfs.xfs (wall time, format time, bytes written):"
for gib in $SIZES; do
	for state in zeroed dirty old-xfs; do
		awk -v g="$gib" -v s="$state" -v tp="${T[$gib.$state.piboot]}" -v tm="${T[$gib.$state.mkfs.xfs]}" \
			-v fp="${F[$gib.$state.piboot]}" -v wp="${W[$gib.$state.piboot]}" -v wm="${W[$gib.$state.mkfs.xfs]}" \
			'BEGIN{printf "%4s GiB %-8s wall %.2f  format %.2f  written %.4f\n", g, s, tm ? tp/tm : 0, tm ? fp/tm : 0, wm ? wp/wm : 0}'
	done
done
