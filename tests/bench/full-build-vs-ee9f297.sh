#!/usr/bin/env bash
# Benchmark (not a test): the whole example build (3 roles x ignition,
# rootfs, raw, qcow2) from a cached base, by this checkout's kiln and by
# kiln at commit ee9f297 (the build before parallel gzip and parallel
# roles), side by side, alternating, each with its own example profile and
# its own cached base in one cache folder (the two commits' bases differ:
# Debian 12 then, 13 now). This checkout's kiln runs twice per round: with
# the deflate data its earlier builds kept in the cache (what a rebuild
# from a cached base does), and with that emptied first (the first build
# after a new base or a new kiln). Needs root. Prints median wall times over
# RUNS runs, the ratios, and the load average before and after.
# Usage: tests/bench/full-build-vs-ee9f297.sh [RUNS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
here=$PWD
old=${KILN_BENCH_OLD:-$here/target/bench-ee9f297}
cache=${KILN_TEST_CACHE:-$here/target/kiln-cache}
mkdir -p "$cache"
work=$(mktemp -d -p "$cache")
trap 'rm -rf "$work"' EXIT

echo "building this checkout's kiln and kiln at ee9f297 (in $old)"
cargo build --release --workspace --quiet
if [ ! -x "$old/target/release/kiln" ]; then
  [ -d "$old" ] || git worktree add --detach "$old" ee9f297 >/dev/null
  (cd "$old" && cargo build --release --workspace --quiet)
fi

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { awk -v ns="$1" 'BEGIN {printf "%.1f", ns/1e9}'; }
build() { # tree name
  rm -rf "$work/$2-out"
  (cd "$1" && ./target/release/kiln build profiles/example.toml --out "$work/$2-out" \
     --secrets "$work/$2-secrets" --cache "$cache" >/dev/null 2>&1)
}

echo "warming: each commit builds (or finds) its base and its secrets once"
build "$here" new
build "$old" old
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -a t_new t_cold t_old
for i in $(seq "$runs"); do
  a=$(now); build "$here" new; b=$(now); build "$old" old; c=$(now)
  rm -rf "$cache/deflate"; d=$(now); build "$here" new; e=$(now)
  t_new+=($((b - a))); t_old+=($((c - b))); t_cold+=($((e - d)))
  echo "run $i: now $(secs $((b - a))) s, ee9f297 $(secs $((c - b))) s, now without kept deflate data $(secs $((e - d))) s"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
new=$(printf '%s\n' "${t_new[@]}" | median)
old_t=$(printf '%s\n' "${t_old[@]}" | median)
cold=$(printf '%s\n' "${t_cold[@]}" | median)
echo "median of $runs runs on $(nproc) cores: now $(secs "$new") s, ee9f297 $(secs "$old_t") s, now without kept deflate data $(secs "$cold") s"
awk -v n="$new" -v o="$old_t" -v c="$cold" 'BEGIN {
  printf "ratio now / ee9f297: %.2f (target <= 0.33)\n", n/o
  printf "ratio now without kept deflate data / ee9f297: %.2f\n", c/o }'
