#!/usr/bin/env bash
# bench/mkfs-vfat.sh: piboot's FAT writer against `mkfs.vfat -F 32` + `mcopy -s` (what one
# would otherwise run to fill an ESP image without root) on the same tree, written into a new
# sparse image file. Prints wall time and bytes written (allocated blocks of the sparse image)
# of each and the ratios piboot/reference; both images must pass fsck.vfat -n.
#
#   SIZES       ESP sizes in MiB (default "256 1024 4096")
#   TREE        tree to copy (default: a synthetic ESP built in $BENCH_DIR: systemd-boot,
#               a 40 MiB UKI, Raspberry Pi firmware-like files, 300 overlays, 1000 small files)
#   BENCH_DIR   scratch directory (default /tmp/mkfs-vfat-bench)
#   RUNS        runs of each tool; the best time counts (default 1: mcopy -s takes minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${BENCH_DIR:-/tmp/mkfs-vfat-bench}
SIZES=${SIZES:-"256 1024 4096"}
RUNS=${RUNS:-1}
for c in mkfs.vfat mcopy fsck.vfat; do
	command -v $c >/dev/null || { echo "bench/mkfs-vfat.sh: $c missing (apt-get install dosfstools mtools)"; exit 1; }
done
mkdir -p "$W"
export MTOOLS_SKIP_CHECK=1 LC_ALL=C.UTF-8

tree=${TREE:-$W/tree}
if [ -z "${TREE:-}" ] && [ ! -d "$tree" ]; then
	echo "building a synthetic ESP tree in $tree"
	rm -rf "$tree.tmp" && mkdir -p "$tree.tmp"/{EFI/BOOT,EFI/systemd,EFI/Linux,loader/entries,overlays,docs}
	head -c 120000 /dev/urandom >"$tree.tmp/EFI/BOOT/BOOTAA64.EFI"
	cp "$tree.tmp/EFI/BOOT/BOOTAA64.EFI" "$tree.tmp/EFI/systemd/systemd-bootaa64.efi"
	head -c $((40 << 20)) /dev/urandom >"$tree.tmp/EFI/Linux/piboot_v0.efi"
	printf 'timeout 3\ndefault piboot_v0.efi\n' >"$tree.tmp/loader/loader.conf"
	for f in start4.elf fixup4.dat bootcode.bin RPI_EFI.fd bcm2711-rpi-4-b.dtb bcm2711-rpi-400.dtb bcm2711-rpi-cm4.dtb; do
		head -c $((RANDOM * 64 + 20000)) /dev/urandom >"$tree.tmp/$f"
	done
	printf 'arm_64bit=1\nenable_uart=1\n' >"$tree.tmp/config.txt"
	for i in $(seq 1 300); do head -c $((RANDOM % 4000 + 100)) /dev/urandom >"$tree.tmp/overlays/overlay-$i.dtbo"; done
	for i in $(seq 1 1000); do head -c $((RANDOM % 3000)) /dev/urandom >"$tree.tmp/docs/Document Number $i.txt"; done
	mv "$tree.tmp" "$tree"
fi
echo "tree: $(du -sk "$tree" | cut -f1) KiB, $(find "$tree" | wc -l) entries, $(nproc) cores"

go build -o "$W/mkfs-vfat" ./bench/mkfs-vfat

# run LABEL CMD...: best wall time of RUNS runs of CMD (which gets $img) and bytes allocated
run() {
	local best="" t s e
	for _ in $(seq "$RUNS"); do
		rm -f "$img" && truncate -s "${mib}M" "$img"
		sync
		s=$(date +%s.%N)
		"$@" >/dev/null
		e=$(date +%s.%N)
		t=$(echo "$e - $s" | bc)
		if [ -z "$best" ] || [ "$(echo "$t < $best" | bc)" = 1 ]; then best=$t; fi
	done
	fsck.vfat -n "$img" >/dev/null || { echo "fsck.vfat -n $img failed after: $*"; fsck.vfat -n "$img"; exit 1; }
	echo "$best $(du --block-size=1 "$img" | cut -f1)"
}

ours() { "$W/mkfs-vfat" -zeroed "$img" "$tree"; }
ref() { mkfs.vfat -F 32 -n ESP "$img" && mcopy -s -Q -i "$img" "$tree"/* ::/; }

printf '%-9s %-22s %-22s %s\n' "ESP" "piboot (s, bytes)" "mkfs.vfat+mcopy" "ratio time, bytes"
for mib in $SIZES; do
	img=$W/esp-$mib.img
	read -r ot ob < <(run ours)
	cp --sparse=always "$img" "$W/ours-$mib.img"
	read -r rt rb < <(run ref)
	printf '%-9s %-22s %-22s %.3f, %.3f\n' "${mib}MiB" "$ot $ob" "$rt $rb" \
		"$(echo "$ot / $rt" | bc -l)" "$(echo "$ob / $rb" | bc -l)"
	# The same files must come back from both images.
	for which in ours ref; do
		f=$W/$which-$mib.img
		[ "$which" = ref ] && f=$img
		rm -rf "$W/x-$which" && mkdir "$W/x-$which"
		mcopy -s -n -Q -i "$f" ::/ "$W/x-$which/"
	done
	diff -r "$W/x-ours" "$W/x-ref" >/dev/null || { echo "trees read back differ at ${mib}MiB"; exit 1; }
	diff -r "$W/x-ours" "$tree" >/dev/null || { echo "our image does not read back as the tree"; exit 1; }
	rm -rf "$W/x-ours" "$W/x-ref" "$W/ours-$mib.img" "$img"
done
