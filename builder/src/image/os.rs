//! What kiln's Debian base needs on top of the role layer to boot as a cloud
//! VM: DHCP on any ethernet, a fresh machine identity per node, the
//! hostname DHCP hands out. Added to the layer only when kiln built the base, so a layer
//! over a user's own base stays exactly what the role asks for.

use std::path::Path;

use kiln_node::layout;

use crate::layer::{Contents, Meta, RoleLayer, Unit};

const NETWORK_FILE: &str = "/etc/systemd/network/80-kiln-dhcp.network";
const UNITS: &str = layout::SYSTEMD_DIR;
const PACKAGE_UNITS: &str = "/lib/systemd/system";

/// DHCP on every ethernet link. The client identifier is the MAC, so a
/// replacement node with the same MAC gets the same lease even though its
/// machine-id (the default DUID source) is new.
const NETWORK: &str = "[Match]\nType=ether\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\n\
IPv6AcceptRA=no\n\n[DHCPv4]\nClientIdentifier=mac\n";

/// networkd passes the DHCP hostname to hostnamed asynchronously, often
/// after network-online.target; kiln-firstboot must see it first, since a
/// node on a new address joins under that name. So the name is taken from
/// networkd's lease, as root, before the agent runs (`$$` is systemd's `$`).
const HOSTNAME_UNIT: &str = "[Unit]\n\
Description=kiln: take the hostname DHCP handed out before kiln-firstboot runs\n\
Wants=network-online.target\n\
After=network-online.target\n\
Before=kiln-firstboot.service\n\
\n\
[Service]\n\
Type=oneshot\n\
RemainAfterExit=yes\n\
ExecStart=/bin/sh -c 'name=$$(sed -n \"s/^HOSTNAME=//p\" /run/systemd/netif/leases/* 2>/dev/null | head -n 1); \
if [ -n \"$$name\" ]; then hostname \"$$name\"; fi'\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n";

/// Applies the node's Ignition config at first boot (see the script), before
/// the hostname and the agent, and only while the node has no config.
const IGNITION_UNIT: &str = "[Unit]\n\
Description=kiln: apply this node's Ignition config (first boot)\n\
Wants=network-online.target\n\
After=network-online.target\n\
Before=kiln-dhcp-hostname.service getty-pre.target\n\
Wants=getty-pre.target\n\
ConditionPathExists=!/etc/kiln/node.toml\n\
\n\
[Service]\n\
Type=oneshot\n\
RemainAfterExit=yes\n\
ImportCredential=kiln.ign\n\
ExecStart=/usr/lib/kiln/ignition-firstboot\n\
StandardOutput=journal+console\n\
StandardError=journal+console\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n";

/// What the first boot's Ignition run needs: the script, a `setfiles` that
/// does nothing (Debian's Ignition relabels for SELinux after writing files
/// whether SELinux is on or not) and the SELinux config Ignition reads, which
/// says it is off.
const IGNITION_FILES: [(&str, u32, &[u8]); 3] = [
    (
        "/usr/lib/kiln/ignition-firstboot",
        0o755,
        include_bytes!("ignition-firstboot"),
    ),
    (
        "/usr/lib/kiln/ignition-bin/setfiles",
        0o755,
        b"#!/bin/sh\n# SELinux is off on kiln's nodes: Ignition's relabeling does nothing.\nexit 0\n",
    ),
    (
        "/etc/selinux/config",
        0o644,
        b"SELINUX=disabled\nSELINUXTYPE=targeted\n",
    ),
];

/// Adds the OS settings of kiln's Debian base to `layer`, all of them part
/// of the role's image.
pub fn add_os_files(layer: &mut RoleLayer) {
    layer.in_image(add_boot_files);
}

fn add_boot_files(layer: &mut RoleLayer) {
    layer.add_unit(
        Unit {
            name: layout::IGNITION_UNIT.to_owned(),
            contents: Some(IGNITION_UNIT.to_owned()),
            dropins: vec![],
        },
        true,
    );
    for (path, mode, bytes) in IGNITION_FILES {
        layer.add_file(path, Meta::root(mode), Contents::Inline(bytes.to_vec()));
    }
    layer.add_unit(
        Unit {
            name: "kiln-dhcp-hostname.service".to_owned(),
            contents: Some(HOSTNAME_UNIT.to_owned()),
            dropins: vec![],
        },
        true,
    );
    layer.add_file(
        NETWORK_FILE,
        Meta::root(0o644),
        Contents::Inline(NETWORK.as_bytes().to_vec()),
    );
    // `systemctl enable systemd-networkd`, done at bake time because an
    // empty machine-id (below) means no preset run on first boot.
    for (wants, unit) in [
        ("multi-user.target.wants", "systemd-networkd.service"),
        ("sockets.target.wants", "systemd-networkd.socket"),
        (
            "network-online.target.wants",
            "systemd-networkd-wait-online.service",
        ),
    ] {
        layer.add_link(
            Path::new(UNITS).join(wants).join(unit),
            Path::new(PACKAGE_UNITS).join(unit),
        );
    }
    layer.add_link(
        Path::new(UNITS).join("dbus-org.freedesktop.network1.service"),
        Path::new(PACKAGE_UNITS).join("systemd-networkd.service"),
    );
    // Empty, not "uninitialized": systemd then generates a new machine-id on
    // every node's boot (commits it where / is writable) without treating the
    // boot as a first boot, which would run preset-all and enable every
    // packaged unit Debian's preset allows. Identical images, distinct nodes.
    layer.add_file(
        "/etc/machine-id",
        Meta::root(0o444),
        Contents::Inline(Vec::new()),
    );
    // mmdebstrap copies the build host's hostname. Empty means "no static
    // hostname", so the one DHCP hands out applies (an unlisted node's name).
    layer.add_file(
        "/etc/hostname",
        Meta::root(0o644),
        Contents::Inline(Vec::new()),
    );
}
