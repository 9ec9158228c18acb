#!/usr/bin/env bash
# bench/build.sh: `piboot build` against systemd-repart 252 for the same three-partition layout
# (ESP 200 MiB, store 128 MiB squashfs, _empty 128 MiB) and the same ~60 MB store tree.
#
# systemd-repart cannot put files into vfat without mounting it, so its ESP is made the way one
# has to without root: mkfs.vfat + mtools into a file, then CopyBlocks=. Its store is
# Format=squashfs + CopyFiles= (it runs mksquashfs with its defaults). Its image and split store
# are then compressed as the seed's NixOS image is: nixpkgs' image/repart.nix runs the zstd CLI
# on all cores at its default level, 3 (`zstd -T0 -3`). That pipeline is the reference for
# both goals. The same outputs compressed at -11, about the effort of piboot's encoder
# (klauspost's "best"), are timed and sized too and printed below it.
# The UKI is built once by piboot and given to both sides (Debian 12 has no ukify).
#
# Prints wall times and the ratios the issue asks for: time (goal <= 0.5x) and compressed
# image size (goal <= 0.9x).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${PIBOOT_CACHE:-$HOME/.cache/piboot}
EFI=$CACHE/arm64/boot/usr/lib/systemd/boot/efi
for c in systemd-repart mkfs.vfat mcopy mmd zstd cpio; do
  command -v $c >/dev/null || { echo "bench/build: missing $c (make deps)" >&2; exit 1; }
done
[ -f "$CACHE/arm64/vmlinuz" ] || { echo "bench/build: no arm64 kernel in $CACHE (make deps)" >&2; exit 1; }

W=$(mktemp -d /tmp/bench-build.XXXXXX)
trap 'rm -rf "$W"' EXIT
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }

echo "bench/build: preparing the store tree and inputs in $W"
go build -o "$W/piboot" ./cmd/piboot
S=$W/src/nix/store
mkdir -p "$S/bin" "$S/lib/modules"
for p in piboot-demo piboot; do
  CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -trimpath -buildvcs=false -ldflags='-buildid= -s -w' -o "$S/bin/$p" ./cmd/$p
done
cp -a "$CACHE/arm64/modules/kernel/fs" "$CACHE/arm64/modules/kernel/sound" "$CACHE/arm64/modules/kernel/crypto" "$S/lib/modules/"
(cd "$S" && find bin | sort | cpio -o -H newc --quiet | zstd -q -19) > "$W/initrd.cpio.zst"
echo "bench/build: store tree $(du -sm "$S" | cut -f1) MB in $(find "$S" -type f | wc -l) files"

# piboot's inputs.
mkdir -p "$W/defs-piboot"
cat > "$W/image.conf" <<EOF
[Image]
Id=bench
Version=v0
[Kernel]
Linux=$CACHE/arm64/vmlinuz
Initrd=$W/initrd.cpio.zst
Stub=$EFI/linuxaa64.efi.stub
CommandLine=console=ttyAMA0
[Boot]
SystemdBoot=$EFI/systemd-bootaa64.efi
LoaderConf=timeout 3
[Store]
Tree=$S
Init=/nix/store/bin/piboot-demo
[Partitions]
Definitions=$W/defs-piboot
EOF
printf '[Partition]\nType=esp\nFormat=vfat\nLabel=boot\nSizeMinBytes=200M\nSplitName=-\nCopyFiles=/boot:/\n' > "$W/defs-piboot/10-esp.conf"
printf '[Partition]\nType=linux-generic\nFormat=squashfs\nLabel=nix-store_%%A\nSizeMinBytes=128M\nSizeMaxBytes=128M\nReadOnly=yes\nSplitName=nix-store\nCopyFiles=/nix/store:/\n' > "$W/defs-piboot/20-nix-store.conf"
printf '[Partition]\nType=linux-generic\nLabel=_empty\nSizeMinBytes=128M\nSizeMaxBytes=128M\nSplitName=-\n' > "$W/defs-piboot/30-empty.conf"

# systemd-repart's inputs.
mkdir -p "$W/defs-sd" "$W/out-sd"
# CopyBlocks= and CopyFiles= sources are relative to --root.
printf '[Partition]\nType=esp\nLabel=boot\nCopyBlocks=/esp.img\nSizeMinBytes=200M\nSplitName=-\n' > "$W/defs-sd/10-esp.conf"
printf '[Partition]\nType=linux-generic\nFormat=squashfs\nLabel=nix-store_v0\nSizeMinBytes=128M\nSizeMaxBytes=128M\nReadOnly=yes\nSplitName=nix-store\nCopyFiles=/nix/store:/\n' > "$W/defs-sd/20-nix-store.conf"
printf '[Partition]\nType=linux-generic\nLabel=_empty\nSizeMinBytes=128M\nSizeMaxBytes=128M\nSplitName=-\n' > "$W/defs-sd/30-empty.conf"
echo "timeout 3" > "$W/loader.conf"

sync
echo "bench/build: piboot build"
t0=$(now)
"$W/piboot" build -q -c "$W/image.conf" -o "$W/out-piboot"
t1=$(now)
tp=$(secs "$t0" "$t1")

echo "bench/build: systemd-repart 252 (ESP by mkfs.vfat + mtools, CopyBlocks=; store Format=squashfs)"
UKI=$W/out-piboot/bench_v0.efi
t0=$(now)
truncate -s 200M "$W/src/esp.img"
mkfs.vfat -F 32 -n BOOT "$W/src/esp.img" >/dev/null
mmd -i "$W/src/esp.img" ::EFI ::EFI/BOOT ::EFI/Linux ::loader
mcopy -i "$W/src/esp.img" "$EFI/systemd-bootaa64.efi" ::EFI/BOOT/BOOTAA64.EFI
mcopy -i "$W/src/esp.img" "$UKI" ::EFI/Linux/bench_v0.efi
mcopy -i "$W/src/esp.img" "$W/loader.conf" ::loader/loader.conf
t1=$(now)
systemd-repart --empty=create --size=auto --dry-run=no --no-pager --definitions="$W/defs-sd" --root="$W/src" \
  --seed=0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d --split=yes "$W/out-sd/bench_v0.raw" >/dev/null
t2=$(now)
zstd -q -T0 -3 "$W/out-sd/bench_v0.raw" -o "$W/out-sd/bench_v0.raw.zst"
zstd -q -T0 -3 "$W/out-sd/bench_v0.nix-store.raw" -o "$W/out-sd/bench_v0.nix-store.raw.zst"
t3=$(now)
zstd -q -T0 -11 "$W/out-sd/bench_v0.raw" -o "$W/out-sd/bench_v0.raw.zst11"
zstd -q -T0 -11 "$W/out-sd/bench_v0.nix-store.raw" -o "$W/out-sd/bench_v0.nix-store.raw.zst11"
t4=$(now)
tesp=$(secs "$t0" "$t1"); trep=$(secs "$t1" "$t2"); tzst=$(secs "$t2" "$t3"); ts=$(secs "$t0" "$t3")
tz11=$(secs "$t3" "$t4"); ts11=$(echo "$ts - $tzst + $tz11" | bc)

size() { stat -c %s "$1"; }
pz=$(size "$W/out-piboot/bench_v0.raw.zst"); sz=$(size "$W/out-sd/bench_v0.raw.zst")
pst=$(size "$W/out-piboot/bench_v0.nix-store.raw.zst"); sst=$(size "$W/out-sd/bench_v0.nix-store.raw.zst")
sz11=$(size "$W/out-sd/bench_v0.raw.zst11"); sst11=$(size "$W/out-sd/bench_v0.nix-store.raw.zst11")
praw=$(size "$W/out-piboot/bench_v0.raw"); sraw=$(size "$W/out-sd/bench_v0.raw")
squ=$(od -An -t u8 -j 40 -N 8 "$W/out-piboot/bench_v0.nix-store.raw" | tr -d ' ')
ssq=$(od -An -t u8 -j 40 -N 8 "$W/out-sd/bench_v0.nix-store.raw" | tr -d ' ')
echo
printf '%-34s %12s %14s\n' "" "piboot" "systemd-repart"
printf '%-34s %12.2f %14.2f   (ESP %.2f + repart %.2f + zstd -3 %.2f)\n' "wall time, s" "$tp" "$ts" "$tesp" "$trep" "$tzst"
printf '%-34s %12d %14d\n' "image .raw, bytes" "$praw" "$sraw"
printf '%-34s %12d %14d\n' "image .raw.zst, bytes" "$pz" "$sz"
printf '%-34s %12d %14d\n' "store squashfs, bytes used" "$squ" "$ssq"
printf '%-34s %12d %14d\n' "store .raw.zst, bytes" "$pst" "$sst"
echo
echo "against the seed's pipeline (systemd-repart + zstd -T0 -3):"
printf '  time ratio piboot/systemd-repart:            %.2fx (goal <= 0.5x)\n' "$(echo "$tp / $ts" | bc -l)"
printf '  compressed image ratio piboot/systemd-repart: %.2fx (goal <= 0.9x)\n' "$(echo "$pz / $sz" | bc -l)"
printf '  compressed store ratio piboot/systemd-repart: %.2fx\n' "$(echo "$pst / $sst" | bc -l)"
echo "the same outputs at zstd -T0 -11 (zstd %.2f s; image %d B, store %d B):" | sed "s/%.2f/$tz11/; s/%d B, store %d B/$sz11 B, store $sst11 B/"
printf '  time ratio:                                  %.2fx\n' "$(echo "$tp / $ts11" | bc -l)"
printf '  compressed image ratio:                      %.2fx\n' "$(echo "$pz / $sz11" | bc -l)"
printf '  compressed store ratio:                      %.2fx\n' "$(echo "$pst / $sst11" | bc -l)"
echo "load average (1, 5, 15 min): $(cut -d' ' -f1-3 /proc/loadavg)"
