#!/usr/bin/env bash
# bench/squashfs.sh: piboot's squashfs writer against mksquashfs on the same ~450 MB tree
# (/usr/share/doc plus /usr/lib/x86_64-linux-gnu's first entries, hardlinked into a
# scratch directory), zstd on both sides, 2 compressing threads each. Prints wall time
# and size of each and the ratios piboot/mksquashfs (goals: size <= 1.02, time <= 1.0).
#
#   LEVELS              pairs ours:theirs of piboot's zstd level and mksquashfs'
#                       -Xcompression-level. piboot's levels map onto klauspost/compress's
#                       four encoders (1-2 fastest, 3-5 default, 6-9 better, 10-22 best);
#                       its docs put "best" near zstd 11, "default" near 3. Default pairs:
#                       15:11 and 3:3 (nominal) and 15:7, 9:3 (closest image sizes).
#   BENCH_DIR           scratch directory (default /tmp/squashfs-bench)
#   TREE_MB             tree size (default 450)
#   RUNS                runs of each tool; the best time counts (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${BENCH_DIR:-/tmp/squashfs-bench}
TREE_MB=${TREE_MB:-450}
RUNS=${RUNS:-2}
LEVELS=${LEVELS:-"15:11 15:7 9:3 3:3"}
command -v mksquashfs >/dev/null || { echo "bench/squashfs.sh: mksquashfs missing (apt-get install squashfs-tools)"; exit 1; }
mkdir -p "$W"

tree=$W/tree-$TREE_MB
if [ ! -d "$tree" ]; then
	echo "building a ${TREE_MB} MB tree in $tree (hardlinks, no copies)"
	rm -rf "$tree.tmp" && mkdir -p "$tree.tmp/lib"
	cp -al /usr/share/doc "$tree.tmp/doc"
	total=$(du -sm "$tree.tmp" | cut -f1)
	for e in $(ls /usr/lib/x86_64-linux-gnu | LC_ALL=C sort); do
		[ "$total" -ge "$TREE_MB" ] && break
		cp -al "/usr/lib/x86_64-linux-gnu/$e" "$tree.tmp/lib/"
		total=$(du -sm "$tree.tmp" | cut -f1)
	done
	mv "$tree.tmp" "$tree"
fi
echo "tree: $(du -sm "$tree" | cut -f1) MB, $(find "$tree" | wc -l) entries, $(nproc) cores"

go build -o "$W/piboot" ./cmd/piboot

# "wall cpu" seconds of the run with the best wall time out of RUNS
best() {
	local b="" c="" w u sy
	for _ in $(seq "$RUNS"); do
		/usr/bin/time -o "$W/time" -f "%e %U %S" "$@" >/dev/null
		read -r w u sy <"$W/time"
		if [ -z "$b" ] || [ "$(echo "$w < $b" | bc)" = 1 ]; then b=$w c=$(echo "$u + $sy" | bc); fi
	done
	echo "$b $c"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (wall times on a shared machine vary; CPU times less)"
printf '%-14s %9s %9s %11s | %9s %9s %11s | %7s %7s %7s\n' "piboot:mksq" "wall s" "cpu s" "bytes" "wall s" "cpu s" "bytes" "wall x" "cpu x" "size x"
for pair in $LEVELS; do
	ours=${pair%%:*} theirs=${pair##*:}
	read -r w1 c1 < <(best "$W/piboot" mkfs squashfs --compression zstd --level "$ours" --processors 2 --mtime 0 "$tree" "$W/ours.sqfs")
	read -r w2 c2 < <(best mksquashfs "$tree" "$W/theirs.sqfs" -noappend -no-progress -quiet -comp zstd -Xcompression-level "$theirs" -processors 2 -mkfs-time 0)
	s1=$(stat -c %s "$W/ours.sqfs") s2=$(stat -c %s "$W/theirs.sqfs")
	printf '%-14s %9.2f %9.2f %11d | %9.2f %9.2f %11d | %7.3f %7.3f %7.3f\n' "zstd $ours:$theirs" "$w1" "$c1" "$s1" "$w2" "$c2" "$s2" \
		"$(echo "$w1 / $w2" | bc -l)" "$(echo "$c1 / $c2" | bc -l)" "$(echo "$s1 / $s2" | bc -l)"
	# Both images must hold the same files (directory sizes depend on header layout).
	if ! diff <(unsquashfs -lln "$W/ours.sqfs" | tail -n +4 | awk '{print $1, $2, (substr($1,1,1)=="d" ? "-" : $3), $NF}' | sort) \
		<(unsquashfs -lln "$W/theirs.sqfs" | tail -n +4 | awk '{print $1, $2, (substr($1,1,1)=="d" ? "-" : $3), $NF}' | sort) >/dev/null; then
		echo "  error: the two images list different files"
		exit 1
	fi
done
rm -f "$W/ours.sqfs" "$W/theirs.sqfs"
