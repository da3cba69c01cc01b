//! Metadata lockdown on masters and workers: the cloud's instance metadata
//! service (169.254.169.254 on AWS, GCP, Azure and OpenStack, fd00:ec2::254
//! on AWS) serves the user-data, and so the cluster's keys, to anything that
//! reaches it. The image drops what pods send there, from the first boot;
//! the host's own processes (Ignition, the agent) still reach it.

use kiln_node::layout::{METADATA_RULES, METADATA_UNIT};

use super::{Contents, Meta, RoleLayer, Unit};
use crate::profile::MetadataAccess;

/// Pods' traffic is forwarded by the host (from a veth or bridge), the
/// host's own leaves by the output hook: a drop in the forward hook stops
/// the first and never touches the second. A drop in any base chain is
/// final whatever other tables (kube-proxy's, the CNI's) accept, so the
/// priority only orders the counters. Replacing the table makes a reload
/// idempotent.
const RULES: &str = "#!/usr/sbin/nft -f
# kiln: pods may not reach the instance metadata service (docs/booting.md).
table inet kiln_metadata
delete table inet kiln_metadata
table inet kiln_metadata {
\tchain forward {
\t\ttype filter hook forward priority filter - 10; policy accept;
\t\tip daddr 169.254.169.254 counter drop
\t\tip6 daddr fd00:ec2::254 counter drop
\t}
}
";

/// Before anything runs a pod, and required by kubelet: no kubelet runs
/// without the rules.
fn unit_file() -> String {
    format!(
        "[Unit]
Description=kiln: keep pods from the instance metadata service
DefaultDependencies=no
Before=network-pre.target containerd.service kubelet.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f {METADATA_RULES}

[Install]
WantedBy=sysinit.target
RequiredBy=kubelet.service
"
    )
}

/// The rules and their unit, in the image, unless the profile opens the
/// metadata service to pods.
pub fn add(layer: &mut RoleLayer, access: MetadataAccess) {
    if access == MetadataAccess::Open {
        return;
    }
    layer.in_image(|image| {
        let rules = Contents::Inline(RULES.as_bytes().to_vec());
        image.add_file(METADATA_RULES, Meta::root(0o644), rules);
        let unit = Unit {
            name: METADATA_UNIT.to_owned(),
            contents: Some(unit_file()),
            dropins: vec![],
        };
        image.add_unit(unit, true);
    });
}
