#!/bin/bash
# bench/repart.sh: first-boot repartitioning, piboot repart vs systemd-repart 252.
#
# The seed's layout (ESP 200 MiB "boot", 256 MiB "nix-store_v0", 256 MiB "_empty") is flashed
# onto 8/32/128 GiB sparse files; each tool grows it on a loop device of that file with the
# first-boot definition (Type=root, Weight=1000: a root partition filling the card). Printed:
# wall time of each tool (median of RUNS), the ratio, and the bytes each wrote (growth of
# `du` of the sparse file). A second table does the same with Format=ext4 (systemd-repart
# runs mkfs.ext4, piboot its own writer). The tools run in alternating order; the load
# average before and after is printed. Needs root (loop devices).
set -euo pipefail

RUNS=${RUNS:-9}
SIZES=${SIZES:-"8 32 128"}
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/bench-repart.XXXXXX)
loop=
cleanup() {
	[ -n "$loop" ] && losetup -d "$loop" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

for t in systemd-repart sgdisk losetup; do
	command -v $t >/dev/null || { echo "bench/repart.sh: needs $t (make deps)"; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench/repart.sh: needs root for loop devices"; exit 1; }

# Built as `make cli` ships it: static, stripped; piboot is the front door (repart built in),
# piboot-full the complete CLI next to it.
build() { CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-buildid= -s -w' "$@"; }
build -tags pibootlite -o "$work/piboot" ./cmd/piboot
build -o "$work/piboot-full" ./cmd/piboot
build -o "$work/repartrun" ./bench/repartrun
seed=c0ffee00-1234-4abc-8def-0123456789ab

# The flashed image: GPT by sgdisk, some content in the ESP and the store.
img=$work/seed.raw
truncate -s 720M "$img"
sgdisk -n 1:2048:+200M -t 1:EF00 -c 1:boot -n 2:0:+256M -t 2:8300 -c 2:nix-store_v0 \
	-n 3:0:+256M -t 3:8300 -c 3:_empty "$img" >/dev/null
dd if=/dev/urandom of="$img" bs=1M seek=1 count=16 conv=notrunc status=none
dd if=/dev/urandom of="$img" bs=1M seek=201 count=64 conv=notrunc status=none

mkdir -p "$work/plain" "$work/ext4"
printf '[Partition]\nType=root-arm64\nWeight=1000\n' >"$work/plain/10-root.conf"
printf '[Partition]\nType=root-arm64\nWeight=1000\nFormat=ext4\n' >"$work/ext4/10-root.conf"

du_bytes() { du --block-size=1 "$1" | cut -f1; }

# tool_cmd TOOL DEFS DEVICE: one tool's first-boot run, as a user would type it.
tool_cmd() {
	case $1 in
	systemd) systemd-repart --dry-run=no --no-pager --seed=$seed --definitions="$2" "$3" ;;
	piboot) "$work/piboot" repart --seed=$seed --definitions="$2" "$3" ;;
	repartrun) "$work/repartrun" --seed=$seed --definitions="$2" --report="$work/us" "$3" ;;
	esac
}

# run TOOL DEFS GIB: one first boot on a fresh flash; prints "<ms> <bytes written>".
run() {
	local tool=$1 defs=$2 gib=$3 disk=$work/disk.raw
	cp --sparse=always "$img" "$disk"
	truncate -s "${gib}G" "$disk"
	sync
	local before; before=$(du_bytes "$disk")
	loop=$(losetup -f --show "$disk")
	# $EPOCHREALTIME is read by bash itself: $(date +%s%N) forked and exec'd date on both
	# sides of the tool, adding its start-up (a few ms, more under load) to every tool's time.
	# Both tools write to /dev/null while timed: a redirection to a file makes bash create or
	# truncate it before the exec, inside the timed span (0.5-0.7 ms on this machine's ext4
	# /tmp). A tool that fails is run once more, untimed, on a new copy of the flash, to show why.
	local t0 t1 rc=0
	t0=$EPOCHREALTIME
	tool_cmd "$tool" "$defs" "$loop" >/dev/null 2>&1 || rc=$?
	t1=$EPOCHREALTIME
	sync
	losetup -d "$loop"
	loop=
	if [ "$rc" != 0 ]; then
		echo "bench/repart.sh: $tool exited $rc on ${gib} GiB; again, with its output:" >&2
		cp --sparse=always "$img" "$disk"
		truncate -s "${gib}G" "$disk"
		loop=$(losetup -f --show "$disk")
		tool_cmd "$tool" "$defs" "$loop" >&2 || true
		# run's caller reads it through a pipe: this is a subshell, without the EXIT trap.
		losetup -d "$loop"
		exit 1
	fi
	sgdisk -v "$disk" | grep -q "No problems found" || { echo "bench/repart.sh: $tool left a bad GPT on ${gib} GiB" >&2; exit 1; }
	# Microseconds: the decimal point (a comma in some locales) taken out.
	local ms; ms=$(awk -v us=$((${t1/[.,]/} - ${t0/[.,]/})) 'BEGIN {printf "%.1f", us / 1000}')
	[ "$tool" = repartrun ] && ms=$(awk '{printf "%.1f", $1 / 1000}' "$work/us")
	echo "$ms $(($(du_bytes "$disk") - before))"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }

bench() {
	local defs=$1 title=$2
	echo "$title (median of $RUNS runs)"
	printf '%-8s %13s %13s %11s %6s %6s %14s %14s
' card systemd-repart "piboot repart" in-process ratio "ratio" \
		"systemd wrote" "piboot wrote"
	for gib in $SIZES; do
		local sd_t=() pb_t=() rr_t=() sd_b pb_b rr_b
		for i in $(seq "$RUNS"); do
			# Alternate the order, so that a tool does not always run right after the
			# same other one (page cache, writeback of the previous run, load changes).
			local order="systemd piboot repartrun"
			[ $((i % 2)) = 0 ] && order="repartrun piboot systemd"
			for tool in $order; do
				read -r ms b < <(run "$tool" "$defs" "$gib")
				case $tool in
				systemd) sd_t+=("$ms"); sd_b=$b ;;
				piboot) pb_t+=("$ms"); pb_b=$b ;;
				repartrun) rr_t+=("$ms"); rr_b=$b ;;
				esac
			done
		done
		local sd pb rr
		sd=$(printf '%s\n' "${sd_t[@]}" | median)
		pb=$(printf '%s\n' "${pb_t[@]}" | median)
		rr=$(printf '%s\n' "${rr_t[@]}" | median)
		[ "$pb_b" = "$rr_b" ] || echo "bench/repart.sh: CLI wrote $pb_b B, in-process $rr_b B" >&2
		printf '%-8s %10s ms %10s ms %8s ms %6s %6s %12s B %12s B\n' "${gib} GiB" "$sd" "$pb" "$rr" \
			"$(ratio "$pb" "$sd")" "$(ratio "$rr" "$sd")" "$sd_b" "$pb_b"
	done
	echo "(ratios: piboot time / systemd-repart time, for the piboot CLI process and for repart.Run"
	echo " in-process as piboot-init calls it, i.e. without starting a process)"
	echo
}

# Timings are only comparable on a quiet machine: say how busy it was.
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
bench "$work/plain" "grow: root partition, no file system"
bench "$work/ext4" "grow: root partition with Format=ext4"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
