#!/usr/bin/env bash
# Benchmark (not a test): baking the etcd role's disk.raw + disk.qcow2 from a
# cached Debian base with kiln, side by side with a plain shell pipeline doing
# the same work by hand (copy the tree, lay the role's files over it,
# mkfs.ext4 -d, qemu-img convert). Needs root. Prints median wall times over
# RUNS runs and the ratios, with the load average before and after.
# Usage: tests/bench/bake-vs-shell.sh [RUNS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
cargo build --release --workspace --quiet
kiln=$PWD/target/release/kiln
cache=${KILN_TEST_CACHE:-$PWD/target/kiln-cache}
work=$(mktemp -d -p "$cache")
trap 'rm -rf "$work"' EXIT

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { awk -v ns="$1" 'BEGIN {printf "%.2f", ns/1e9}'; }
build() { "$kiln" build profiles/local.toml --out "$work/out" --secrets "$work/secrets" \
            --formats "$1" --base debian --cache "$cache" >/dev/null; }

# Warm: the base is built (or found) once, the secrets exist, the layer is known.
build rootfs
# The base kiln just used: the newest complete one with the etcd packages.
base=$(dirname "$(ls -td "$cache"/base/*/complete | while read -r c; do
  grep -qx etcd-server "$c" && grep -qx polkitd "$c" && echo "$c"; done | head -n1)")/rootfs
mkdir "$work/layer" && tar -xpzf "$work/out/etcd/rootfs.tar.gz" -C "$work/layer" \
  etc/kiln etc/systemd usr/local/bin

echo "base $base; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
shell() { # copy-flags: the pipeline by hand, into $work/root.img and root.qcow2
  rm -rf "$work/tree" "$work/root.img" "$work/root.qcow2"
  cp "$@" "$base" "$work/tree"
  # Unlink before writing: with hard links, writing in place would edit the base.
  cp -a --remove-destination "$work/layer/." "$work/tree/"
  mkfs.ext4 -q -F -L root -d "$work/tree" "$work/root.img" 2100M >/dev/null
  qemu-img convert -f raw -O qcow2 "$work/root.img" "$work/root.qcow2"
  sync -f "$work/root.qcow2"
}
kiln_ns=(); shell_ns=(); linked_ns=(); hashed_ns=()
for _ in $(seq "$runs"); do
  t=$(now); build raw,qcow2; kiln_ns+=($(( $(now) - t )))
  t=$(now); shell -a; shell_ns+=($(( $(now) - t )))
  t=$(now); shell -al; linked_ns+=($(( $(now) - t )))
  # kiln also records both disks' SHA-256 in manifest.json (openssl: SHA-NI).
  openssl dgst -sha256 "$work/root.img" "$work/root.qcow2" >/dev/null
  hashed_ns+=($(( $(now) - t )))
done
k=$(printf '%s\n' "${kiln_ns[@]}" | median)
s=$(printf '%s\n' "${shell_ns[@]}" | median)
l=$(printf '%s\n' "${linked_ns[@]}" | median)
h=$(printf '%s\n' "${hashed_ns[@]}" | median)
echo "bake etcd disk.raw+disk.qcow2 from a cached base, median of $runs on $(nproc) cores:"
echo "  kiln build --formats raw,qcow2 (hard links, ESP, GPT, manifest): $(secs "$k") s"
echo "  shell: cp -a, overlay, mkfs.ext4 -d, qemu-img convert:           $(secs "$s") s"
echo "  the same shell pipeline with cp -al (hard links, like kiln):      $(secs "$l") s"
echo "  shell with cp -al, then openssl sha256 of both disks:             $(secs "$h") s"
awk -v k="$k" -v s="$s" -v l="$l" -v h="$h" 'BEGIN {
  printf "  ratio kiln/shell: %.2fx (target <= 1.1); kiln/(cp -al): %.2fx; kiln/(cp -al + sha256): %.2fx\n",
    k/s, k/l, k/h }'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
