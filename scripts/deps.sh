#!/usr/bin/env bash
# deps.sh installs what piboot's build and tests need on a fresh Debian 12 machine and
# caches the foreign-architecture packages (kernel, systemd-boot) under ~/.cache/piboot.
#
#   scripts/deps.sh host          apt packages for tests (qemu, gdisk, e2fsprogs, ...)
#   scripts/deps.sh arch ARCH     kernel + systemd-boot for ARCH (arm64|amd64), unpacked;
#                                 prints nothing, leaves $CACHE/ARCH/{kernel,boot}
#
# Idempotent and quiet when everything is there already.
set -euo pipefail
CACHE=${PIBOOT_CACHE:-$HOME/.cache/piboot}
mkdir -p "$CACHE"

host_packages=(qemu-system-arm qemu-efi-aarch64 qemu-system-x86 ovmf gdisk fdisk dosfstools mtools
  e2fsprogs xfsprogs squashfs-tools zstd cpio binutils binutils-aarch64-linux-gnu osslsigncode util-linux kmod gpgv curl bc)
host_commands=(qemu-system-aarch64 /usr/share/AAVMF/AAVMF_CODE.fd qemu-system-x86_64 /usr/share/OVMF/OVMF_CODE.fd
  sgdisk sfdisk fsck.vfat mcopy e2fsck xfs_repair unsquashfs zstd cpio objdump aarch64-linux-gnu-objdump osslsigncode systemd-repart losetup depmod gpgv)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

host() {
  local missing=0 c
  for c in "${host_commands[@]}"; do
    if [[ $c == /* ]]; then [ -e "$c" ] || missing=1; else command -v "$c" >/dev/null || missing=1; fi
  done
  [ $missing = 0 ] && return 0
  echo "deps: installing Debian packages: ${host_packages[*]}" >&2
  as_root apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends "${host_packages[@]}" >&2
}

# arch ARCH: the Debian kernel and systemd-boot for ARCH, without enabling a foreign dpkg
# architecture: a private apt state directory lists only ARCH's packages.
arch() {
  local a=$1 dir=$CACHE/$1
  [ -f "$dir/.done" ] && return 0
  echo "deps: fetching Debian's $a kernel and systemd-boot into $dir" >&2
  local lists=$CACHE/apt-$a
  mkdir -p "$lists/partial" "$dir/debs"
  local o=(-q -oAPT::Architecture="$a" -oAPT::Architectures="$a" -oDir::State::Lists="$lists" -oDir::Cache="$lists/cache")
  mkdir -p "$lists/cache/archives/partial"
  apt-get "${o[@]}" update >&2
  local meta real
  meta=linux-image-$a
  real=$(apt-cache "${o[@]}" depends "$meta" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -1)
  [ -n "$real" ] || { echo "deps: cannot resolve $meta to a kernel package" >&2; exit 1; }
  ( cd "$dir/debs" && rm -f ./*.deb && apt-get "${o[@]}" download "$real" systemd-boot-efi >&2 )
  rm -rf "$dir/kernel" "$dir/boot"
  dpkg -x "$dir"/debs/linux-image-*.deb "$dir/kernel"
  dpkg -x "$dir"/debs/systemd-boot-efi_*.deb "$dir/boot"
  # Stable names for the Makefile and tests.
  local kver
  kver=$(ls "$dir/kernel/lib/modules" | head -1)
  echo "$kver" > "$dir/kernel-version"
  ln -sfn "kernel/boot/vmlinuz-$kver" "$dir/vmlinuz"
  ln -sfn "kernel/lib/modules/$kver" "$dir/modules"
  touch "$dir/.done"
}

case ${1:-} in
  host) host ;;
  arch) arch "${2:?arch needs arm64 or amd64}" ;;
  *) echo "usage: $0 host | arch ARCH" >&2; exit 2 ;;
esac
