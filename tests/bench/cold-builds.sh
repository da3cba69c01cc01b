#!/usr/bin/env bash
# Reproducibility from nothing: PROFILE built twice, back to back, each time
# with its own empty cache (so the Debian bases, the etcd packages and the
# deflate cache are all made anew from the mirror), into two folders with one
# secrets folder. Every artifact of the two builds must be byte-identical.
# Prints each build's time and one line per artifact; exits 1 on the first
# difference, naming it. Too slow for the suite (two cold base builds per
# role): run weekly, and after changes to the base recipe. Needs root.
# Usage: tests/bench/cold-builds.sh [PROFILE] [KILN]
set -euo pipefail
cd "$(dirname "$0")/../.."
profile=${1:-profiles/local.toml}
kiln=${2:-target/release/kiln}
[ -x "$kiln" ] || { echo "$kiln missing: run cargo build --release" >&2; exit 2; }

work=$(mktemp -d /var/tmp/kiln-cold.XXXXXX)
trap 'rm -rf "$work"' EXIT
for run in a b; do
  start=$(date +%s.%N)
  "$kiln" build "$profile" --base debian --formats ignition,rootfs,raw \
    --cache "$work/cache-$run" --secrets "$work/secrets" --out "$work/out-$run" >"$work/log-$run" 2>&1 ||
    { cat "$work/log-$run" >&2; exit 1; }
  end=$(date +%s.%N)
  awk -v r="$run" -v s="$start" -v e="$end" 'BEGIN { printf "cold build %s: %.1f s\n", r, e - s }'
done
status=0
while IFS= read -r rel; do
  a=$(sha256sum "$work/out-a/$rel" | cut -d' ' -f1)
  b=$(sha256sum "$work/out-b/$rel" | cut -d' ' -f1)
  if [ "$a" = "$b" ]; then
    echo "same   $rel $a"
  else
    echo "DIFFER $rel $a $b"
    status=1
  fi
done < <(cd "$work/out-a" && find . -type f ! -name '.kiln*' | sed 's|^\./||' | sort)
exit $status
