#!/usr/bin/env bash
# boot.sh: piboot-init's figures in QEMU (TCG, Debian's arm64 kernel): switch_root after N ms
# on the first and second boot of a 32 GiB card, module loading stated separately, and the
# initramfs size with and without kernel modules.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -count=1 -run '^$' -bench 'BenchmarkBoot|BenchmarkInitrdSize' -benchtime=1x -timeout 30m ./internal/e2e |
  awk '/^Benchmark/ { for (i = 3; i < NF; i += 2) printf "%-22s %-28s %s\n", $1, $(i+1), $i; next } { print }'
