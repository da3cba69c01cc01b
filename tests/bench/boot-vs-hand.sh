#!/usr/bin/env bash
# Benchmark (not a test): three qemu VMs booted from kiln's etcd disk.raw to a
# healthy three-member cluster, against the same three VMs configured by hand
# (tests/bench/hand-etcd-disk.sh: static etcd files, no agent); RUNS rounds,
# interleaved. Needs root; the VMs' bridge and dnsmasq live in network
# namespaces the benchmark makes and removes. Prints a summary table.
# Usage: tests/bench/boot-vs-hand.sh [RUNS]   (default 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/install-packages test
# The harness runs the debug kiln (build, health); the image gets the
# release agent, as users ship it.
cargo build --workspace --quiet
cargo build --release -p kiln-firstboot --quiet
export KILN_TEST_CACHE=${KILN_TEST_CACHE:-$PWD/target/kiln-cache}
KILN_FIRSTBOOT_BIN=$PWD/target/release/kiln-firstboot BOOT_BENCH_RUNS=${1:-2} \
  cargo test --quiet -p kiln-e2e --test boot_bench -- --ignored --nocapture
