#!/usr/bin/env bash
# bench/squashfs.sh: piboot's squashfs writer against mksquashfs on the same ~450 MB tree
# (/usr/share/doc plus /usr/lib/x86_64-linux-gnu's first entries, hardlinked into a
# scratch directory), zstd on both sides, 2 compressing threads each. Prints wall time
# and size of each and the ratios piboot/mksquashfs (goals: size <= 1.02, time <= 1.0).
#
#   LEVELS="15:11 3:3"  pairs ours:theirs — piboot's zstd level (15 = klauspost's best,
#                       which its docs put near zstd 11) and mksquashfs' -Xcompression-level
#   BENCH_DIR           scratch directory (default /tmp/squashfs-bench)
#   TREE_MB             tree size (default 450)
#   RUNS                runs of each tool; the best time counts (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${BENCH_DIR:-/tmp/squashfs-bench}
TREE_MB=${TREE_MB:-450}
RUNS=${RUNS:-2}
LEVELS=${LEVELS:-"15:11 15:15 3:3"}
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

# best wall time of RUNS runs, in seconds
best() {
	local b="" t
	for _ in $(seq "$RUNS"); do
		local s=$(date +%s.%N)
		"$@" >/dev/null
		t=$(echo "$(date +%s.%N) - $s" | bc)
		if [ -z "$b" ] || [ "$(echo "$t < $b" | bc)" = 1 ]; then b=$t; fi
	done
	echo "$b"
}

printf '%-28s %10s %12s %10s %12s %8s %8s\n' "levels (piboot:mksquashfs)" "piboot s" "piboot B" "mksq s" "mksq B" "time x" "size x"
for pair in $LEVELS; do
	ours=${pair%%:*} theirs=${pair##*:}
	t1=$(best "$W/piboot" mkfs squashfs --compression zstd --level "$ours" --processors 2 --mtime 0 "$tree" "$W/ours.sqfs")
	t2=$(best mksquashfs "$tree" "$W/theirs.sqfs" -noappend -no-progress -quiet -comp zstd -Xcompression-level "$theirs" -processors 2 -mkfs-time 0)
	s1=$(stat -c %s "$W/ours.sqfs") s2=$(stat -c %s "$W/theirs.sqfs")
	printf '%-28s %10.2f %12d %10.2f %12d %8.3f %8.3f\n' "zstd $ours:$theirs" "$t1" "$s1" "$t2" "$s2" \
		"$(echo "$t1 / $t2" | bc -l)" "$(echo "$s1 / $s2" | bc -l)"
	# Both images must hold the same files.
	if ! diff <(unsquashfs -lln "$W/ours.sqfs" | tail -n +4 | awk '{print $1, $2, (substr($1,1,1)=="d" ? "-" : $3), $NF}' | sort) \
		<(unsquashfs -lln "$W/theirs.sqfs" | tail -n +4 | awk '{print $1, $2, (substr($1,1,1)=="d" ? "-" : $3), $NF}' | sort) >/dev/null; then
		echo "  warning: the two images list different files"
	fi
done
rm -f "$W/ours.sqfs" "$W/theirs.sqfs"
