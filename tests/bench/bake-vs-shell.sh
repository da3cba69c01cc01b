#!/usr/bin/env bash
# Benchmark (not a test): baking the etcd role's public disk.raw + disk.qcow2
# from a cached Debian base with kiln, side by side with a plain shell
# pipeline doing the same work by hand: copy the tree, lay the role's image
# files over it, mkfs.erofs, veritysetup format, a GPT by sfdisk, the ESP by
# mkfs.vfat + mcopy, an empty ext4 state partition, qemu-img convert. Needs
# root. Prints median wall times over RUNS runs and the ratios, with the load
# average before and after.
# Usage: tests/bench/bake-vs-shell.sh [RUNS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
# kiln's own tools come with its build packages; the shell pipeline also needs sfdisk.
tests/install-packages build
command -v sfdisk >/dev/null || { echo "installing fdisk (sfdisk)"; apt-get install -y -qq fdisk >/dev/null; }
cargo build --release --workspace --quiet
kiln=$PWD/target/release/kiln
cache=${KILN_TEST_CACHE:-$PWD/target/kiln-cache}
mkdir -p "$cache"
work=$(mktemp -d -p "$cache")
trap 'rm -rf "$work"' EXIT

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { awk -v ns="$1" 'BEGIN {printf "%.2f", ns/1e9}'; }
build() { "$kiln" build profiles/local.toml --out "$work/out" --secrets "$work/secrets" \
            --formats "$1" --base debian --cache "$cache" >/dev/null; }

# Warm: the base is built (or found) once, the secrets exist, the layer is known.
build rootfs
# The base kiln just used: the newest complete one of an etcd role (its
# etcd comes from another suite's packages, synced in from etcd-tree).
base=$(dirname "$(ls -td "$cache"/base/*/complete | while read -r c; do
  [ -d "$(dirname "$c")/etcd-tree" ] && grep -qx ignition "$c" && echo "$c"; done | head -n1)")/rootfs
# The role's image files as kiln lays them over the base (the tarball is
# the disk's whole OS tree; these are the paths the image adds to it).
mkdir "$work/layer" && tar -xpzf "$work/out/etcd/rootfs.tar.gz" -C "$work/layer" \
  etc/systemd usr/bin/kiln-firstboot usr/lib/kiln etc/selinux

echo "base $base; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
mib=$((1024 * 1024))
sectors() { echo $(( ($1 + mib - 1) / mib * 2048 )); }
shell() { # copy-flags: the pipeline by hand, into $work/disk.raw and disk.qcow2
  rm -rf "$work/tree" "$work/esp" "$work"/os.* "$work"/disk.*
  cp "$@" "$base" "$work/tree"
  # Unlink before writing: with hard links, writing in place would edit the base.
  cp -a --remove-destination "$work/layer/." "$work/tree/"
  mkfs.erofs -T0 --quiet "$work/os.erofs" "$work/tree"
  hash=$(veritysetup format "$work/os.erofs" "$work/os.verity" | sed -n 's/^Root hash:[[:space:]]*//p')
  mkdir -p "$work/esp/EFI/BOOT" "$work/esp/loader/entries"
  cp "$work/tree/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$work/esp/EFI/BOOT/BOOTX64.EFI"
  cp -L "$work/tree/vmlinuz" "$work/esp/vmlinuz"; cp -L "$work/tree/initrd.img" "$work/esp/initrd.img"
  printf 'default kiln.conf\ntimeout 0\n' >"$work/esp/loader/loader.conf"
  printf 'title kiln\nlinux /vmlinuz\ninitrd /initrd.img\noptions root=/dev/mapper/kiln-os ro roothash=%s\n' \
    "$hash" >"$work/esp/loader/entries/kiln.conf"
  local esp os ver state
  esp=$(sectors $(( $(du -sb "$work/esp" | cut -f1) * 3 / 2 + 32 * mib )))
  os=$(sectors "$(stat -c %s "$work/os.erofs")"); ver=$(sectors "$(stat -c %s "$work/os.verity")")
  state=$(sectors $(( 2 * $(du -sb "$work/tree/var" | cut -f1) + 2048 * mib )))
  truncate -s $(( (2048 + esp + os + ver + state + 2048) * 512 )) "$work/disk.raw"
  printf 'label: gpt\nstart=2048,size=%s,type=U\nsize=%s,type=4f68bce3-e8cd-4db1-96e7-fbcaf984b709\nsize=%s,type=2c7357ed-ebd2-46d9-aec1-23d437ec2bf5\nsize=%s,type=4d21b016-b534-45c2-a9fb-5c16e091fd2d\n' \
    "$esp" "$os" "$ver" "$state" | sfdisk -q "$work/disk.raw"
  # The file systems before the OS data, as kiln does: mkfs.vfat and
  # mkfs.ext4 fsync the whole file when done.
  mkfs.vfat -F 32 -s 1 --offset=2048 "$work/disk.raw" $(( esp / 2 )) >/dev/null 2>&1
  MTOOLS_SKIP_CHECK=1 mcopy -i "$work/disk.raw@@$(( 2048 * 512 ))" -s -m -Q \
    "$work/esp/EFI" "$work/esp/loader" "$work/esp/vmlinuz" "$work/esp/initrd.img" ::/
  mkfs.ext4 -q -F -E offset=$(( (2048 + esp + os + ver) * 512 )) "$work/disk.raw" "$(( state / 2 ))k"
  dd if="$work/os.erofs" of="$work/disk.raw" bs=1M seek=$(( (2048 + esp) / 2048 )) conv=notrunc,sparse status=none
  dd if="$work/os.verity" of="$work/disk.raw" bs=1M seek=$(( (2048 + esp + os) / 2048 )) conv=notrunc status=none
  qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$work/disk.qcow2"
  # The two disks on disk, as kiln syncs its artifacts (not the whole file
  # system, which would also write back the temporary tree and OS image).
  sync "$work/disk.raw" "$work/disk.qcow2"
}
kiln_ns=(); shell_ns=(); linked_ns=(); hashed_ns=()
for _ in $(seq "$runs"); do
  t=$(now); build raw,qcow2; kiln_ns+=($(( $(now) - t )))
  t=$(now); shell -a; shell_ns+=($(( $(now) - t )))
  t=$(now); shell -al; linked_ns+=($(( $(now) - t )))
  # kiln also records both disks' SHA-256 in manifest.json (openssl: SHA-NI).
  openssl dgst -sha256 "$work/disk.raw" "$work/disk.qcow2" >/dev/null
  hashed_ns+=($(( $(now) - t )))
done
k=$(printf '%s\n' "${kiln_ns[@]}" | median)
s=$(printf '%s\n' "${shell_ns[@]}" | median)
l=$(printf '%s\n' "${linked_ns[@]}" | median)
h=$(printf '%s\n' "${hashed_ns[@]}" | median)
echo "bake etcd disk.raw+disk.qcow2 from a cached base, median of $runs on $(nproc) cores:"
echo "  kiln build --formats raw,qcow2 (hard links, manifest):            $(secs "$k") s"
echo "  shell: cp -a, overlay, erofs, verity, GPT, ESP, state, qemu-img:  $(secs "$s") s"
echo "  the same shell pipeline with cp -al (hard links, like kiln):      $(secs "$l") s"
echo "  shell with cp -al, then openssl sha256 of both disks:             $(secs "$h") s"
awk -v k="$k" -v s="$s" -v l="$l" -v h="$h" 'BEGIN {
  printf "  ratio kiln/shell: %.2fx (target <= 1.1); kiln/(cp -al): %.2fx; kiln/(cp -al + sha256): %.2fx\n",
    k/s, k/l, k/h }'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
