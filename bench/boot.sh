#!/usr/bin/env bash
# boot.sh: piboot-init's figures in QEMU (TCG, Debian's arm64 kernel) on the first and
# second boot of a 32 GiB card: switch_root after N ms (N counts from the kernel's exec of
# /init, Go's start-up included), module loading, switch_root less module loading, disk
# discovery, repart, mounts, piboot-init's CPU time (since main's package initialization)
# and Go's start-up (exec to main's package initialization); the same start-up of a Go /init
# that does nothing (BenchmarkGoFloor: the floor under every figure here); then the
# initramfs size with and without kernel modules.
#
# One boot step by step: PIBOOT_E2E_TIMELINE=1 PIBOOT_BENCH_APPEND=piboot.trace go test -v
#   -run '^$' -bench 'BenchmarkBoot$' -benchtime=1x ./internal/e2e  (a "trace:" line per
#   step and per module; add initcall_debug to see each module's init function).
#
#   bench/boot.sh               one pair of boots
#   RUNS=5 bench/boot.sh        five pairs; each figure's median, min and max
#   PIBOOT_E2E_CPUS=2 bench/boot.sh   the guest with 2 CPUs (a Pi 4 has 4; more vCPUs than
#                               host cores only adds contention under TCG)
#   BEFORE=<rev> RUNS=5 bench/boot.sh  the same for the tree at git revision <rev> (exported
#                               with git archive), the two alternating run by run so that
#                               both see the same load; a table for each
#
# TCG makes the guest 10-50x slower than a Pi 4 and a loaded host slower still: compare
# figures measured at similar load averages (printed), and read "without modules".
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-1}
out=$(mktemp)
before_out=$(mktemp)
before_dir=
trap 'rm -f "$out" "$before_out"; [ -z "$before_dir" ] || rm -rf "$before_dir"' EXIT
if [ -n "${BEFORE:-}" ]; then
	before_dir=$(mktemp -d)
	git archive "$BEFORE" | tar -x -C "$before_dir"
fi
bench() { # dir output-file
	(cd "$1" && go test -count=1 -run '^$' -bench 'BenchmarkBoot$|BenchmarkGoFloor$' -benchtime=1x -timeout 30m ./internal/e2e) >"$2.run" || { cat "$2.run"; exit 1; }
	cat "$2.run" >>"$2"
	rm -f "$2.run"
}
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((i = 0; i < runs; i++)); do
	# Alternate which tree goes first.
	if [ -n "$before_dir" ] && ((i % 2 == 0)); then bench "$before_dir" "$before_out"; fi
	bench . "$out"
	if [ -n "$before_dir" ] && ((i % 2 == 1)); then bench "$before_dir" "$before_out"; fi
done
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
table() {
awk -v runs="$runs" '
/^Benchmark(Boot|GoFloor)-/ { for (i = 3; i < NF; i += 2) v[$(i+1)] = v[$(i+1)] " " $i }
# "median (min-max)" of the values reported under name, "-" if none.
function stat(name,   n, i, j, t, xs, med) {
	n = split(v[name], xs, " ")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (xs[j] + 0 < xs[i] + 0) { t = xs[i]; xs[i] = xs[j]; xs[j] = t }
	med = (n % 2 ? xs[(n + 1) / 2] : (xs[n / 2] + xs[n / 2 + 1]) / 2)
	return n ? sprintf("%d (%d-%d)", med, xs[1], xs[n]) : "-"
}
END {
	split("switch_root-ms modules-ms without-modules-ms finit_module-ms modules-loaded disk-ms repart-ms mounts-ms cpu-user-ms cpu-system-ms kernel-ms go-startup-ms", keys, " ")
	printf "%-22s %20s %20s   (median of %d; min-max)\n", "", "first boot", "second boot", runs
	for (k = 1; k in keys; k++)
		printf "%-22s %20s %20s\n", keys[k], stat("first-" keys[k]), stat("second-" keys[k])
	# BenchmarkGoFloor: a Go /init that only reaches main, same kernel and machine.
	printf "%-22s %20s   (exec to main of a Go /init doing nothing)\n", "go-startup floor", stat("floor-go-startup-ms")
}' "$1"
}
if [ -n "$before_dir" ]; then
	echo "before ($BEFORE):"
	table "$before_out"
	echo "after (this tree):"
fi
table "$out"
go test -count=1 -run '^$' -bench 'BenchmarkInitrdSize' -benchtime=1x -timeout 30m ./internal/e2e |
  awk '/^BenchmarkInitrdSize/ { for (i = 3; i < NF; i += 2) printf "%-22s %s\n", $(i+1), $i }'
