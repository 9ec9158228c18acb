#!/bin/bash
# bench/update.sh: `piboot update` applying a 256 MiB store (zstd) from a local HTTP server
# to a loop device, against `curl | zstd -d | dd` of the same file. Goal: <= 1.2x.
# Both include fsync of the target; piboot also hashes (SHA-256), edits the GPT three times
# and installs the UKI. piboot writes whole blocks with O_DIRECT (no page-cache copy);
# a dd with oflag=direct is timed too, for reference. Needs root (loop device), curl, zstd, python3, sgdisk.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${BENCH_DIR:-/tmp/bench-update.$$}
RUNS=${RUNS:-6}
SIZE_MIB=${SIZE_MIB:-256}
mkdir -p "$W/upd" "$W/defs" "$W/esp/EFI/Linux" "$W/root"
LOOP=""; SRV=""
cleanup() {
	[ -n "$SRV" ] && kill "$SRV" 2>/dev/null || true
	[ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT

if [ -n "${PIBOOT:-}" ]; then cp "$PIBOOT" "$W/piboot"; else go build -o "$W/piboot" ./cmd/piboot; fi

# A store that compresses like a real one: half machine code and text, half incompressible.
{ (tar -cf - /usr/lib/x86_64-linux-gnu /usr/share 2>/dev/null || true) | head -c $((SIZE_MIB / 2))M
  head -c $((SIZE_MIB / 2))M /dev/urandom; } >"$W/store.raw"
[ "$(stat -c %s "$W/store.raw")" -eq $((SIZE_MIB * 1024 * 1024)) ]
zstd -q -T0 -3 "$W/store.raw" -o "$W/upd/piboot_v1.nix-store.raw.zst"
head -c 1M /dev/urandom >"$W/upd/piboot_v1.efi"
(cd "$W/upd" && sha256sum piboot_v1.* >SHA256SUMS)
echo "store: ${SIZE_MIB} MiB raw, $(du -m "$W/upd/piboot_v1.nix-store.raw.zst" | cut -f1) MiB zstd"

cat >"$W/defs/10-nix-store.transfer" <<EOT
[Transfer]
Verify=no
[Source]
Type=url-file
Path=http://127.0.0.1/
MatchPattern=piboot_@v.nix-store.raw.zst
[Target]
Type=partition
Path=auto
MatchPattern=nix-store_@v
ReadOnly=yes
EOT
cat >"$W/defs/20-boot-image.transfer" <<EOT
[Transfer]
Verify=no
[Source]
Type=url-file
Path=http://127.0.0.1/
MatchPattern=piboot_@v.efi
[Target]
Type=regular-file
Path=/EFI/Linux
PathRelativeTo=boot
MatchPattern=piboot_@v+@l-@d.efi piboot_@v.efi
TriesLeft=3
TriesDone=0
EOT

slot=$((SIZE_MIB + 8))
truncate -s $((2 * slot + 4))M "$W/disk.img"
sgdisk -n1:1M:+${slot}M -t1:8300 -c1:nix-store_v0 -n2:0:+${slot}M -t2:8300 -c2:_empty "$W/disk.img" >/dev/null
LOOP=$(losetup -f --show "$W/disk.img")
# No udev here to make partition nodes: both sides write to the disk at the slot's offset.
OFF=$(( $(sgdisk -i2 "$LOOP" | sed -n 's/^First sector: \([0-9]*\).*/\1/p') * 512 ))

PORT=$((20000 + $$ % 20000))
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$W/upd" >/dev/null 2>&1 &
SRV=$!
URL=http://127.0.0.1:$PORT
for _ in $(seq 50); do curl -sf "$URL/SHA256SUMS" >/dev/null && break; sleep 0.1; done

reset_slot() {
	sgdisk -c2:_empty -t2:8300 "$LOOP" >/dev/null 2>&1
	rm -f "$W"/esp/EFI/Linux/*
	sync
}

now() { date +%s.%N; }
run_base() {
	reset_slot
	local t0 t1
	t0=$(now)
	curl -sf "$URL/piboot_v1.nix-store.raw.zst" | zstd -q -d | dd of="$LOOP" bs=4M seek="$OFF" oflag=seek_bytes conv=fsync,notrunc status=none
	t1=$(now)
	base+=("$(echo "$t1 - $t0" | bc)")
}
# For reference (not the goal): dd bypassing the page cache too, as piboot does for whole
# blocks (O_DIRECT).
run_direct() {
	reset_slot
	local t0 t1
	t0=$(now)
	curl -sf "$URL/piboot_v1.nix-store.raw.zst" | zstd -q -d | dd of="$LOOP" bs=4M iflag=fullblock seek="$OFF" oflag=seek_bytes,direct conv=fsync,notrunc status=none
	t1=$(now)
	direct+=("$(echo "$t1 - $t0" | bc)")
}
run_ours() {
	reset_slot
	local t0 t1
	t0=$(now)
	"$W/piboot" update --quiet --definitions "$W/defs" --source "$URL" --disk "$LOOP" \
		--esp "$W/esp" --booted v0 --root "$W/root" update v1 >/dev/null
	t1=$(now)
	ours+=("$(echo "$t1 - $t0" | bc)")
	cmp -n $((SIZE_MIB * 1024 * 1024)) -i 0:"$OFF" "$W/store.raw" "$LOOP" || { echo "data differs"; exit 1; }
	sgdisk -i2 "$LOOP" | grep -q "nix-store_v1" || { echo "label not set"; exit 1; }
}
base=(); ours=(); direct=()
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
# Alternate which goes first: on a shared machine the order matters as much as the tools.
for i in $(seq "$RUNS"); do
	if [ $((i % 2)) = 1 ]; then run_base; run_ours; else run_ours; run_base; fi
	run_direct
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
b=$(median "${base[@]}"); o=$(median "${ours[@]}")
echo "curl | zstd -d | dd conv=fsync: ${base[*]} s (median $b)"
echo "piboot update:                  ${ours[*]} s (median $o)"
echo "(reference) dd oflag=direct:     ${direct[*]} s (median $(median "${direct[@]}"))"
minimum() { printf '%s\n' "$@" | sort -n | head -1; }
echo "ratio piboot/baseline: median $(echo "scale=2; $o / $b" | bc), best-of-$RUNS $(echo "scale=2; $(minimum "${ours[@]}") / $(minimum "${base[@]}")" | bc) (goal <= 1.2)"
