#!/bin/bash
# bench/mkfs-ext4.sh: piboot's ext4 writer vs mkfs.ext4 at 8, 32 and 128 GiB.
#
# For each size and each formatter: wall time, bytes written to the (loop) device while
# formatting, then bytes the kernel writes in the first MOUNT_SECONDS (default 60) after
# mounting the result (ext4lazyinit zeroing inode tables, journal setup). "written" comes from
# /sys/block/loopN/stat (sectors written, including write-zeroes requests; discards are
# counted apart), "stored" is what the sparse backing file holds afterwards (du). They differ
# for systemd-repart, which formats through a second loop device stacked on ours: its
# discards arrive at ours as write-zeroes requests that count as written sectors but only
# punch holes in the file.
# Formatters:
#   piboot      piboot mkfs ext4 (this repository; its default reserve of descriptor blocks is
#               for online growth to 2 TiB, mkfs.ext4's for 1024 times the size, see README);
#               "inproc" after it is ext4.Format (mkfs.ext4's reserve) plus
#               fsync timed inside one process (bench/mkfs-ext4), as piboot-init runs it
#               on first boot, without the CLI's process start
#   repart      mkfs.ext4 with systemd-repart 252's arguments (zeroes the journal, discards)
#   lazy        mkfs.ext4 -E lazy_itable_init=1,lazy_journal_init=1
# With REPART=1 (default when cmd/piboot/repart.go exists) it also runs piboot repart vs
# systemd-repart adding a Format=ext4 root to the same 128 GiB loop device.
# Needs root. Usage: bench/mkfs-ext4.sh [sizes in GiB...]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${*:-8 32 128}
MOUNT_SECONDS=${MOUNT_SECONDS:-60}
work=$(mktemp -d /tmp/bench-mkfs-ext4.XXXXXX)
loopdev=""
cleanup() {
	mountpoint -q "$work/mnt" 2>/dev/null && umount "$work/mnt"
	[ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
# As `make cli` ships it: the front door (mkfs and repart built in) and piboot-full.
CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-buildid= -s -w' -tags pibootlite -o "$work/piboot" ./cmd/piboot
CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-buildid= -s -w' -o "$work/piboot-full" ./cmd/piboot
go build -o "$work/inproc" ./bench/mkfs-ext4
mkdir -p "$work/mnt"
uuid=8f3c1a52-3b59-4e3c-a6c3-3c0d9c2f8a11

written() { awk '{printf "%.0f\n", $7 * 512}' "/sys/block/$(basename "$loopdev")/stat"; }
# Bash's own clock, in nanoseconds: $(date +%s%N) would add a fork and exec of date to every
# tool's time. The decimal point (a comma in some locales) is taken out.
now() { local t=$EPOCHREALTIME; echo "${t/[.,]/}000"; }
stored() { du -B1 "$1" | cut -f1; }
mib() { awk -v b="$1" 'BEGIN{printf "%.2f", b/1048576}'; }

printf '%-6s %-8s %10s %14s %12s %18s   %s\n' size tool "wall ms" "written MiB" "stored MiB" "kernel ${MOUNT_SECONDS}s MiB" "(each run's ms)"
# format TOOL: formats $loopdev with TOOL; inproc reports its own milliseconds in $inproc_ms.
format() {
	case $1 in
	piboot) "$work/piboot" mkfs ext4 --label root --uuid $uuid "$loopdev" ;;
	inproc) inproc_ms=$("$work/inproc" "$loopdev") ;;
	repart) mkfs.ext4 -q -L root -U $uuid -I 256 -O has_journal -m 0 -E discard,lazy_itable_init=1 -T default "$loopdev" ;;
	lazy) mkfs.ext4 -q -F -L root -U $uuid -m 0 -E lazy_itable_init=1,lazy_journal_init=1,nodiscard "$loopdev" ;;
	esac
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Wall time is the median of RUNS (default 5) formats of a fresh file, the tools taking turns;
# the last run of each tool is also the one whose bytes and first minute mounted are measured.
declare -A T W K S MS
# timed TOOL GIB: formats a fresh GIB GiB file on $loopdev with TOOL and adds its milliseconds
# to MS; $w0 and $w1 are the device's written bytes before and after.
timed() {
	img="$work/disk.img"
	rm -f "$img"
	truncate -s "${2}G" "$img"
	loopdev=$(losetup -f --show "$img")
	sync
	w0=$(written); t0=$(now)
	format "$1"
	sync
	t1=$(now); w1=$(written)
	MS[$2,$1]+="$([ "$1" = inproc ] && echo "$inproc_ms" || echo $(( (t1 - t0) / 1000000 ))) "
}
for gib in $SIZES; do
	for i in $(seq $((${RUNS:-5} - 1))); do
		for tool in piboot inproc repart lazy; do
			timed $tool "$gib"
			losetup -d "$loopdev"; loopdev=""
		done
	done
	for tool in piboot inproc repart lazy; do
		timed $tool "$gib"
		s1=$(stored "$img")
		e2fsck -fn "$img" >/dev/null 2>&1 || { echo "e2fsck failed right after $tool at ${gib}G" >&2; exit 1; }
		mount "$loopdev" "$work/mnt"
		sleep "$MOUNT_SECONDS"
		sync
		w2=$(written)
		umount "$work/mnt"
		e2fsck -fn "$loopdev" >/dev/null 2>&1 || { echo "e2fsck failed after $tool at ${gib}G" >&2; exit 1; }
		losetup -d "$loopdev"; loopdev=""
		rm -f "$img"
		T[$gib,$tool]=$(median ${MS[$gib,$tool]})
		W[$gib,$tool]=$((w1 - w0)); K[$gib,$tool]=$((w2 - w1))
		printf '%-6s %-8s %10d %14s %12s %18s   (%s)\n' "${gib}G" $tool "${T[$gib,$tool]}" "$(mib $((w1 - w0)))" "$(mib "$s1")" "$(mib $((w2 - w1)))" "${MS[$gib,$tool]% }"
	done
done
echo
echo "ratios (piboot / mkfs.ext4): time and bytes written while formatting"
for gib in $SIZES; do
	for ref in repart lazy; do
		awk -v g="$gib" -v r="$ref" -v it="${T[$gib,inproc]}" -v pt="${T[$gib,piboot]}" -v rt="${T[$gib,$ref]}" -v pw="${W[$gib,piboot]}" -v rw="${W[$gib,$ref]}" \
			'BEGIN{printf "%4sG vs %-7s time %.2f (in-process %.2f)  bytes %.4f\n", g, r, pt/(rt?rt:1), it/(rt?rt:1), pw/(rw?rw:1)}'
	done
done

# piboot repart vs systemd-repart, once piboot repart exists.
if [ "${REPART:-$([ -f cmd/piboot/repart.go ] && echo 1 || echo 0)}" = 1 ]; then
	echo
	echo "piboot repart vs systemd-repart: add Format=ext4 root to an empty 128 GiB GPT disk (median of ${RUNS:-5} runs)"
	mkdir -p "$work/defs"
	cat >"$work/defs/10-root.conf" <<-CONF
	[Partition]
	Type=root
	Format=ext4
	CONF
	# Median of RUNS (default 5) runs each, alternating which tool goes first.
	declare -A RT
	for i in $(seq "${RUNS:-5}"); do
		order="systemd-repart piboot"
		[ $((i % 2)) = 0 ] && order="piboot systemd-repart"
		for tool in $order; do
			img="$work/disk.img"
			rm -f "$img"
			truncate -s 128G "$img"
			sgdisk -o "$img" >/dev/null
			loopdev=$(losetup -f --show "$img")
			sync
			w0=$(written); t0=$(now)
			case $tool in
			systemd-repart) systemd-repart --dry-run=no --definitions="$work/defs" --seed=$uuid "$loopdev" >/dev/null 2>&1 ;;
			piboot) "$work/piboot" repart --dry-run=no --definitions="$work/defs" --seed=$uuid "$loopdev" >/dev/null ;;
			esac
			sync
			t1=$(now); w1=$(written)
			losetup -d "$loopdev"; loopdev=""
			# the new partition must hold a clean ext4
			read -r start sectors < <(sfdisk -d "$img" | awk -F'[=,]' '/^[^ ]+ : start=/{gsub(/ /,""); print $2, $4; exit}')
			p=$(losetup -f --show -r -o $((start * 512)) --sizelimit $((sectors * 512)) "$img")
			e2fsck -fn "$p" >/dev/null 2>&1 || { echo "$tool: partition 1 (start $start, $sectors sectors) is not a clean ext4" >&2; losetup -d "$p"; exit 1; }
			losetup -d "$p"
			s1=$(stored "$img")
			RT[$tool]+="$(( (t1 - t0) / 1000000 )) "; W[r,$tool]=$((w1 - w0)); S[r,$tool]=$s1
		done
	done
	for tool in systemd-repart piboot; do
		T[r,$tool]=$(median ${RT[$tool]})
		printf '%-15s %8d ms %12s MiB written %12s MiB stored   (runs: %s)\n' $tool "${T[r,$tool]}" "$(mib "${W[r,$tool]}")" "$(mib "${S[r,$tool]}")" "${RT[$tool]% }"
	done
	awk -v pt="${T[r,piboot]}" -v rt="${T[r,systemd-repart]}" -v pw="${W[r,piboot]}" -v rw="${W[r,systemd-repart]}" -v ps="${S[r,piboot]}" -v rs="${S[r,systemd-repart]}" \
		'BEGIN{printf "piboot/systemd-repart: time %.3f (goal <= 0.333), bytes written %.5f, bytes stored %.4f (goal <= 0.02)\n", pt/(rt?rt:1), pw/(rw?rw:1), ps/(rs?rs:1)}'
fi
