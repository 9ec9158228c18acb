#!/usr/bin/env bash
# boot.sh: piboot-init's figures in QEMU (TCG, Debian's arm64 kernel) on the first and
# second boot of a 32 GiB card: switch_root after N ms (N counts from the kernel's exec of
# /init, Go's start-up included), module loading, switch_root less module loading, disk
# discovery, repart, mounts, piboot-init's CPU time (since main's package initialization)
# and Go's start-up (exec to main's package initialization); then the initramfs size with
# and without kernel modules.
#
# One boot step by step: PIBOOT_E2E_TIMELINE=1 PIBOOT_BENCH_APPEND=piboot.trace go test -v
#   -run '^$' -bench 'BenchmarkBoot$' -benchtime=1x ./internal/e2e  (a "trace:" line per
#   step and per module; add initcall_debug to see each module's init function).
#
#   bench/boot.sh               one pair of boots
#   RUNS=5 bench/boot.sh        five pairs; each figure's median, min and max
#   PIBOOT_E2E_CPUS=2 bench/boot.sh   the guest with 2 CPUs (a Pi 4 has 4; more vCPUs than
#                               host cores only adds contention under TCG)
#
# TCG makes the guest 10-50x slower than a Pi 4 and a loaded host slower still: compare
# figures measured at similar load averages (printed), and read "without modules".
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-1}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
go test -count="$runs" -run '^$' -bench 'BenchmarkBoot$' -benchtime=1x -timeout $((30 * runs))m ./internal/e2e >"$out" || { cat "$out"; exit 1; }
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v runs="$runs" '
/^BenchmarkBoot/ { for (i = 3; i < NF; i += 2) v[$(i+1)] = v[$(i+1)] " " $i }
END {
	split("switch_root-ms modules-ms without-modules-ms finit_module-ms modules-loaded disk-ms repart-ms mounts-ms cpu-user-ms cpu-system-ms kernel-ms go-startup-ms", keys, " ")
	printf "%-22s %20s %20s   (median of %d; min-max)\n", "", "first boot", "second boot", runs
	for (k = 1; k in keys; k++) {
		printf "%-22s", keys[k]
		for (b = 1; b <= 2; b++) {
			name = (b == 1 ? "first-" : "second-") keys[k]
			n = split(v[name], xs, " ")
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (xs[j] + 0 < xs[i] + 0) { t = xs[i]; xs[i] = xs[j]; xs[j] = t }
			med = (n % 2 ? xs[(n + 1) / 2] : (xs[n / 2] + xs[n / 2 + 1]) / 2)
			printf " %20s", n ? sprintf("%d (%d-%d)", med, xs[1], xs[n]) : "-"
		}
		printf "\n"
	}
}' "$out"
go test -count=1 -run '^$' -bench 'BenchmarkInitrdSize' -benchtime=1x -timeout 30m ./internal/e2e |
  awk '/^BenchmarkInitrdSize/ { for (i = 3; i < NF; i += 2) printf "%-22s %s\n", $(i+1), $i }'
