#!/usr/bin/env bash
# Benchmark (not a test): kiln's PKI generation and whole cluster build for the
# example profile, side by side with the runbook's cfssl procedure (CA, one
# client certificate, server and peer certificates for three etcd members).
# Prints median wall times over RUNS runs and the ratios.
# Usage: tests/bench/build-vs-cfssl.sh [RUNS]   (default 7)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-7}
command -v cfssl >/dev/null || { echo "installing golang-cfssl"; apt-get install -y -qq golang-cfssl >/dev/null; }
cargo build --release --workspace --quiet
kiln=$PWD/target/release/kiln
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { awk -v ns="$1" 'BEGIN {printf "%.1f", ns/1e6}'; }

# The runbook's cfssl files: one CA, cfssl's classic signing profiles.
cat > "$work/ca-config.json" <<'JSON'
{"signing": {"default": {"expiry": "8760h"}, "profiles": {
  "server": {"expiry": "8760h", "usages": ["signing", "key encipherment", "server auth", "client auth"]},
  "peer":   {"expiry": "8760h", "usages": ["signing", "key encipherment", "server auth", "client auth"]},
  "client": {"expiry": "8760h", "usages": ["signing", "key encipherment", "client auth"]}}}}
JSON
csr() { # name algo size hosts...
  local name=$1 algo=$2 size=$3; shift 3
  local hosts=""; for h in "$@"; do hosts="$hosts\"$h\","; done
  echo "{\"CN\": \"$name\", \"hosts\": [${hosts%,}], \"key\": {\"algo\": \"$algo\", \"size\": $size}}"
}
cfssl_procedure() { # algo size
  local d=$work/cfssl-$RANDOM; mkdir -p "$d"; cd "$d"
  csr etcd-ca "$1" "$2" > ca-csr.json
  cfssl gencert -initca ca-csr.json 2>/dev/null | cfssljson -bare ca
  csr client "$1" "$2" > client.json
  cfssl gencert -ca=ca.pem -ca-key=ca-key.pem -config=../ca-config.json -profile=client client.json 2>/dev/null | cfssljson -bare client
  for i in 1 2 3; do
    csr "etcd$i" "$1" "$2" "etcd$i" "etcd$i.cluster.example" localhost "10.10.0.1$i" 127.0.0.1 > member.json
    for p in server peer; do
      cfssl gencert -ca=ca.pem -ca-key=ca-key.pem -config=../ca-config.json -profile=$p member.json 2>/dev/null | cfssljson -bare "etcd$i-$p"
    done
  done
  cd - >/dev/null
}
kiln_fresh() { "$kiln" build profiles/example.toml --formats ignition,rootfs --base none --out "$work/k$1" --secrets "$work/s$1" >/dev/null 2>&1; }
kiln_rebuild() { "$kiln" build profiles/example.toml --formats ignition,rootfs --base none --out "$work/k$1" --secrets "$work/s$1" >/dev/null 2>&1; }

declare -a t_fresh t_rebuild t_rsa t_ec
for i in $(seq "$runs"); do
  a=$(now); kiln_fresh "$i"; b=$(now); kiln_rebuild "$i"; c=$(now)
  cfssl_procedure rsa 2048; d=$(now); cfssl_procedure ecdsa 256; e=$(now)
  t_fresh+=($((b - a))); t_rebuild+=($((c - b))); t_rsa+=($((d - c))); t_ec+=($((e - d)))
done
fresh=$(printf '%s\n' "${t_fresh[@]}" | median)
rebuild=$(printf '%s\n' "${t_rebuild[@]}" | median)
rsa=$(printf '%s\n' "${t_rsa[@]}" | median)
ec=$(printf '%s\n' "${t_ec[@]}" | median)
pki=$((fresh > rebuild ? fresh - rebuild : 0))
echo "median of $runs runs on $(nproc) cores"
echo "kiln whole build, new secrets (PKI + 3 roles x Ignition + tarball): $(ms "$fresh") ms"
echo "kiln rebuild reusing secrets:                                     $(ms "$rebuild") ms"
echo "kiln PKI generation (difference of the two):                      $(ms "$pki") ms"
echo "cfssl procedure, RSA 2048 (the runbook's csr):                    $(ms "$rsa") ms"
echo "cfssl procedure, ECDSA P-256:                                     $(ms "$ec") ms"
awk -v f="$fresh" -v r="$rsa" -v e="$ec" -v p="$pki" 'BEGIN {
  printf "ratio kiln whole build / cfssl RSA:   %.3f (target <= 0.05)\n", f/r
  printf "ratio kiln whole build / cfssl ECDSA: %.3f\n", f/e
  printf "ratio kiln PKI / cfssl ECDSA:         %.3f\n", p/e }'
