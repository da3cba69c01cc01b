#!/usr/bin/env bash
# The comparison point of boot-vs-hand.sh: one etcd member's bootable disk
# configured by hand, the runbook's way, without kiln. The same Debian base
# kiln bakes on; /etc/default/etcd with this member's name, the full static
# --initial-cluster of profiles/local.toml and state new; Debian's own
# etcd.service (enabled by the package); networkd with DHCP; no kiln agent.
# The member's TLS certificates are minted by hand with openssl from the
# etcd CA of a kiln build's secrets folder (the runbook's cfssl step).
# The disk is a GPT disk.raw with an ESP (systemd-boot, kernel, initrd) and
# the root made by mkfs.ext4 -d, put together with sfdisk, mkfs.vfat, mcopy.
# Needs root (file owners).
# Usage: tests/bench/hand-etcd-disk.sh BASE SECRETS etcdN OUT.raw
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: $0 BASE SECRETS etcdN OUT.raw" >&2; exit 2; }
base=$1 secrets=$2 name=$3 out=$4
case $name in etcd[123]) ;; *) echo "$name: expected etcd1, etcd2 or etcd3" >&2; exit 2 ;; esac
ip=10.77.0.1${name#etcd}
cluster=etcd1=https://10.77.0.11:2380,etcd2=https://10.77.0.12:2380,etcd3=https://10.77.0.13:2380
[ -f "$secrets/etcd/ca.key" ] || { echo "$secrets/etcd/ca.key missing: run kiln build first" >&2; exit 1; }

work=$(mktemp -d -p "$(dirname "$out")")
trap 'rm -rf "$work"' EXIT
certs=$work/certs
mkdir -m 0700 "$certs"
# A private config: the system one would make an -x509 certificate a CA.
cat > "$certs/leaf.cnf" <<EOF
[req]
distinguished_name = dn
x509_extensions = leaf
prompt = no
[dn]
CN = $name
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:$name,DNS:localhost,IP:$ip,IP:127.0.0.1
EOF
for kind in server peer; do
  openssl req -x509 -config "$certs/leaf.cnf" -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -nodes -days 365 -CA "$secrets/etcd/ca.crt" -CAkey "$secrets/etcd/ca.key" \
    -keyout "$certs/$kind.key" -out "$certs/$kind.crt" 2>/dev/null
done
tree=$work/tree
# Hard links when on the base's file system (as kiln does), else a copy.
cp -al "$base" "$tree" 2>/dev/null || { rm -rf "$tree"; cp -a "$base" "$tree"; }
# New inodes only: writing into a hard-linked file would edit the base.
put() { rm -f "$tree/$1"; mkdir -p "$(dirname "$tree/$1")"; cat > "$tree/$1"; }

put etc/hostname <<<"$name"
put etc/systemd/network/80-dhcp.network <<'EOF'
[Match]
Type=ether

[Network]
DHCP=ipv4

[DHCPv4]
ClientIdentifier=mac
EOF
systemctl --root="$tree" enable systemd-networkd.service >/dev/null 2>&1

# Listening on every address: etcd.service is only ordered after
# network.target, and DHCP may not have handed out the address yet.
put etc/default/etcd <<EOF
ETCD_NAME=$name
ETCD_DATA_DIR=/var/lib/etcd/default
ETCD_LISTEN_PEER_URLS=https://0.0.0.0:2380
ETCD_LISTEN_CLIENT_URLS=https://0.0.0.0:2379
ETCD_INITIAL_ADVERTISE_PEER_URLS=https://$ip:2380
ETCD_ADVERTISE_CLIENT_URLS=https://$ip:2379
ETCD_INITIAL_CLUSTER=$cluster
ETCD_INITIAL_CLUSTER_STATE=new
ETCD_INITIAL_CLUSTER_TOKEN=etcd-by-hand
ETCD_CLIENT_CERT_AUTH=true
ETCD_TRUSTED_CA_FILE=/etc/etcd/pki/ca.crt
ETCD_CERT_FILE=/etc/etcd/pki/server.crt
ETCD_KEY_FILE=/etc/etcd/pki/server.key
ETCD_PEER_CLIENT_CERT_AUTH=true
ETCD_PEER_TRUSTED_CA_FILE=/etc/etcd/pki/ca.crt
ETCD_PEER_CERT_FILE=/etc/etcd/pki/peer.crt
ETCD_PEER_KEY_FILE=/etc/etcd/pki/peer.key
EOF
owner=$(awk -F: '$1 == "etcd" {print $3 ":" $4}' "$tree/etc/passwd")
[ -n "$owner" ] || { echo "$base has no etcd user: is etcd-server installed?" >&2; exit 1; }
install -d -m 0700 -o "${owner%:*}" -g "${owner#*:}" "$tree/etc/etcd/pki"
install -m 0644 "$secrets/etcd/ca.crt" "$certs/server.crt" "$certs/peer.crt" "$tree/etc/etcd/pki/"
install -m 0600 -o "${owner%:*}" -g "${owner#*:}" "$certs/server.key" "$certs/peer.key" \
  "$tree/etc/etcd/pki/"

# GPT: a 64 MiB ESP and a 2100 MiB root, the disk 1 MiB longer for the backup table.
root_uuid=$(cat /proc/sys/kernel/random/uuid)
rm -f "$out"
truncate -s 2166M "$out"
sfdisk -q "$out" <<EOF
label: gpt
start=2048, size=131072, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=ESP
start=133120, size=4300800, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=$root_uuid, name=root
EOF

esp=$work/esp
mkdir -p "$esp/EFI/BOOT" "$esp/loader/entries"
cp "$tree/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$esp/EFI/BOOT/BOOTX64.EFI"
cp "$tree/$(readlink "$tree/vmlinuz")" "$esp/vmlinuz"
cp "$tree/$(readlink "$tree/initrd.img")" "$esp/initrd.img"
printf 'default hand.conf\ntimeout 0\n' >"$esp/loader/loader.conf"
printf 'title etcd by hand\nlinux /vmlinuz\ninitrd /initrd.img\noptions root=PARTUUID=%s rw console=tty0 console=ttyS0,115200\n' \
  "$root_uuid" >"$esp/loader/entries/hand.conf"
# (It warns that the file is larger than the file system it is asked to make.)
mkfs.vfat -F 32 -s 1 -n ESP --offset=2048 "$out" 65536 >/dev/null 2>&1 || { echo "mkfs.vfat failed" >&2; exit 1; }
MTOOLS_SKIP_CHECK=1 mcopy -i "$out@@1M" -s -m -Q "$esp/EFI" "$esp/loader" "$esp/vmlinuz" "$esp/initrd.img" ::/
mkfs.ext4 -q -F -L root -E offset=$((133120 * 512)) -d "$tree" "$out" 2100M >/dev/null
