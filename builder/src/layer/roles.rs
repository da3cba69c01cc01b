//! What each role adds to a node: the files, units and secrets it needs and no
//! more. Workers never receive a CA private key.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use kiln_node::etcd::config as etcd_config;
use kiln_node::layout::kube::{
    CLUSTER_CA, CLUSTER_CA_KEY, ETCD_CA, ETCD_CA_KEY, ETCD_CLIENT_CERT, ETCD_CLIENT_KEY,
    FRONT_PROXY_CA, FRONT_PROXY_CA_KEY, SERVICE_ACCOUNT_KEY, SERVICE_ACCOUNT_PUB,
};
use kiln_node::layout::{self, pki};
use kiln_node::node_config::{Role, Topology};

use super::{kube, Contents, Meta, RoleLayer, Unit};
use crate::node_toml::node_config;
use crate::profile::{FileSource, LoadedProfile, RoleImage};
use crate::secrets::{Pair, Secrets};

/// Everything the role layers are made from.
pub struct LayerInputs<'a> {
    pub profile: &'a LoadedProfile,
    pub secrets: &'a Secrets,
    /// The kiln-firstboot binary.
    pub agent: &'a Arc<[u8]>,
}

/// Builds the layer of `role`; `containerd` is the configuration format
/// of the base's containerd (masters and workers).
pub fn build_layer(
    role: Role,
    inputs: &LayerInputs,
    containerd: kube::ContainerdConfig,
) -> Result<RoleLayer> {
    let mut layer = RoleLayer::new(role);
    add_common(&mut layer, inputs);
    let stacked = inputs.profile.profile.etcd.topology == Topology::Stacked;
    match role {
        Role::Etcd => {
            add_etcd_member_pki(&mut layer, inputs.secrets);
            super::snapshots::add(&mut layer, inputs.profile)?;
        }
        Role::Master => add_master_pki(&mut layer, inputs.secrets, stacked),
        Role::Worker => add_worker_pki(&mut layer, inputs.secrets),
    }
    // Workers hold no kiln-issued leaf: kubelet renews its own.
    if role != Role::Worker {
        let renew_before = inputs.profile.profile.pki.renew_before_seconds();
        super::add_renew_timer(&mut layer, renew_before);
    }
    // The same on every etcd node; on masters it depends on the topology.
    if role == Role::Etcd {
        layer.in_image(add_watch_unit);
    } else if role == Role::Master && stacked {
        add_watch_unit(&mut layer);
    }
    let unicast_vip = (inputs.profile.profile.control_plane.as_ref())
        .and_then(|cp| cp.vip.as_ref())
        .is_some_and(|vip| vip.unicast);
    if role == Role::Master && unicast_vip {
        add_vip_peers_unit(&mut layer);
    }
    if role != Role::Etcd {
        let version = inputs.profile.profile.cluster.kubernetes_version;
        let pause = crate::profile::versions::pause_image(version);
        kube::add_host_preparation(&mut layer, containerd, &pause);
        kube::add_binaries(&mut layer, inputs.profile)?;
        super::metadata::add(&mut layer, inputs.profile.profile.images.metadata_access);
    }
    add_extras(
        &mut layer,
        inputs.profile,
        inputs.profile.profile.images.role(role),
    )?;
    Ok(layer)
}

/// The agent, its unit and the node configuration: on every role.
fn add_common(layer: &mut RoleLayer, inputs: &LayerInputs) {
    let profile = &inputs.profile.profile;
    let config = node_config(profile, layer.role, &inputs.secrets.discovery_hash);
    layer.add_file(
        layout::NODE_CONFIG,
        Meta::root(0o644),
        Contents::Inline(config.to_toml().into_bytes()),
    );
    let agent = Contents::Shared(Arc::clone(inputs.agent));
    layer.add_file(layout::AGENT_BINARY, Meta::root(0o755), agent);
    layer.mark_image([layout::AGENT_BINARY]);
    layer.add_dir(layout::PKI_DIR, Meta::root(0o700));
    layer.add_image_unit(
        Unit {
            name: layout::AGENT_UNIT.to_owned(),
            contents: Some(agent_unit(layer.role)),
            dropins: vec![],
        },
        true,
    );
    if layer.role == Role::Etcd {
        add_etcd_boot_order(layer);
    }
}

/// `kiln-watch.service` on every etcd member: reports, every beat, which
/// members answer, so that a new node can tell a member dead to the cluster
/// from one only it cannot reach. It beats until the node is a member, and
/// systemd restarts it if it ever exits.
fn add_watch_unit(layer: &mut RoleLayer) {
    add_agent_service(
        layer,
        "kiln-watch.service",
        "report which etcd members answer (how the cluster tells who is dead)",
        &format!("After={} etcd.service", layout::AGENT_UNIT),
        "watch",
    );
}

/// `kiln-vip-peers.service` on masters with a unicast VIP: registers the
/// master as a keepalived peer in etcd and keeps keepalived's peers at the
/// listed and registered masters, so a master on a new address joins the
/// VIP. It runs beside the agent from boot on: a master on an unlisted
/// address waits for the others to know it before its keepalived starts.
fn add_vip_peers_unit(layer: &mut RoleLayer) {
    add_agent_service(
        layer,
        "kiln-vip-peers.service",
        "register this master as a keepalived peer and learn the others",
        "Wants=network-online.target\nAfter=network-online.target",
        "vip-peers",
    );
}

/// An enabled service that runs `kiln-firstboot <command>` for as long as
/// the node lives, restarted when it stops; `order` holds its `[Unit]`
/// ordering lines.
fn add_agent_service(
    layer: &mut RoleLayer,
    name: &str,
    description: &str,
    order: &str,
    command: &str,
) {
    layer.add_unit(
        Unit {
            name: name.to_owned(),
            contents: Some(format!(
                "[Unit]\n\
                 Description=kiln: {description}\n\
                 {order}\n\
                 ConditionPathExists={config}\n\
                 \n\
                 [Service]\n\
                 ExecStart={agent} {command}\n\
                 Restart=always\n\
                 RestartSec=5\n\
                 \n\
                 [Install]\n\
                 WantedBy=multi-user.target\n",
                agent = layout::AGENT_BINARY,
                config = layout::NODE_CONFIG,
            )),
            dropins: vec![],
        },
        true,
    );
}

/// The unit that finishes an etcd node's first boot once etcd runs.
const SETTLE_UNIT: &str = "kiln-firstboot-settle.service";

/// First boot of an etcd node, as systemd orders it: kiln-firstboot writes
/// etcd's configuration (it never starts etcd itself: a oneshot ordered
/// before etcd.service that waited for etcd would deadlock), then
/// etcd.service starts, then the settle unit promotes a learner and leaves
/// the done marker. Debian enables etcd.service with a single-node
/// localhost default; the gate drop-in keeps it from ever starting
/// unconfigured, and points it at kiln's environment file from the start
/// so no `daemon-reload` is needed for the agent's own drop-in to apply.
fn add_etcd_boot_order(layer: &mut RoleLayer) {
    layer.add_image_unit(
        Unit {
            name: layout::etcd::UNIT.to_owned(),
            contents: None,
            dropins: vec![(
                layout::etcd::GATE_DROP_IN.to_owned(),
                format!(
                    "# Debian's etcd.service runs only once kiln-firstboot configured it.\n\
                     [Unit]\n\
                     ConditionPathExists={env}\n\
                     After={agent}\n\
                     \n\
                     {service}",
                    env = layout::etcd::ENV_FILE,
                    agent = layout::AGENT_UNIT,
                    service = etcd_config::service_settings(),
                ),
            )],
        },
        false,
    );
    layer.add_image_unit(
        Unit {
            name: SETTLE_UNIT.to_owned(),
            contents: Some(agent_oneshot(
                &format!(
                    "Description=kiln first-boot agent: promote and confirm this etcd member\n\
                     Wants=etcd.service\n\
                     After=etcd.service {}\n",
                    layout::AGENT_UNIT
                ),
                "settle",
            )),
            dropins: vec![],
        },
        true,
    );
}

/// Ordered after the network is up (discovery needs addresses); its
/// decisions go to the serial console too, so an operator watching a VM boot
/// sees them. On etcd nodes it runs before etcd.service, which it configures.
/// On masters and workers it runs after containerd (kubeadm's preflight
/// needs the runtime) and deliberately not before kubelet.service or
/// keepalived.service: kubeadm restarts kubelet, and the agent starts
/// keepalived, from within the agent's own start job, and a oneshot ordered
/// before those units would wait on itself. kubelet restarts until kubeadm
/// configures it; keepalived.service stays idle until the agent wrote its
/// configuration (Debian's unit has ConditionFileNotEmpty on it).
fn agent_unit(role: Role) -> String {
    let (order, start) = match role {
        Role::Etcd => (
            "Wants=network-online.target\n\
             After=network-online.target\n\
             Before=etcd.service\n",
            "--no-start run",
        ),
        Role::Master | Role::Worker => (
            "Wants=network-online.target containerd.service\n\
             After=network-online.target containerd.service\n",
            "run",
        ),
    };
    agent_oneshot(
        &format!("Description=kiln first-boot agent: join or form the {role} cluster\n{order}"),
        start,
    )
}

/// A oneshot unit running `kiln-firstboot ARGS` until the node converged,
/// with its output on the console too; `unit` holds the `[Unit]` lines.
/// Ordered before getty-pre.target: a getty hangs up the console when it
/// starts (vhangup), and every later write of a unit that had it open is
/// lost, so the agent's decisions would vanish from the console of a node
/// whose agent was still waiting for its peers. No login is possible on a
/// node anyway (root has no password); the prompt waits for the agent.
/// It runs once Ignition gave the node its config (kiln's Debian base
/// applies it at first boot: kiln-ignition.service), and not without one.
fn agent_oneshot(unit: &str, args: &str) -> String {
    format!(
        "[Unit]\n\
         {unit}\
         After={ignition}\n\
         Wants=getty-pre.target\n\
         Before=getty-pre.target\n\
         ConditionPathExists=!{done}\n\
         ConditionPathExists={config}\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={agent} {args}\n\
         StandardOutput=journal+console\n\
         StandardError=journal+console\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        done = layout::DONE_MARKER,
        agent = layout::AGENT_BINARY,
        config = layout::NODE_CONFIG,
        ignition = layout::IGNITION_UNIT,
    )
}

fn add_pair(layer: &mut RoleLayer, cert: &Path, key: Option<&Path>, pair: &Pair) {
    layer.add_file(
        cert,
        Meta::root(0o644),
        Contents::Inline(pair.cert.clone().into_bytes()),
    );
    if let Some(key) = key {
        layer.add_secret(key, pair.key.clone());
    }
}

/// etcd's CA, whose key lets every member mint its own serving and peer
/// certificates at first boot (no member's key is in the config), and the
/// agent's client certificate.
fn add_etcd_member_pki(layer: &mut RoleLayer, secrets: &Secrets) {
    add_pair(
        layer,
        &pki::etcd_ca_cert(),
        Some(&pki::etcd_ca_key()),
        &secrets.etcd_ca,
    );
    add_etcd_agent_client(layer, secrets);
}

fn add_etcd_agent_client(layer: &mut RoleLayer, secrets: &Secrets) {
    add_pair(
        layer,
        &pki::etcd_agent_client_cert(),
        Some(&pki::etcd_agent_client_key()),
        &secrets.etcd_agent_client,
    );
}

/// The control-plane PKI kubeadm expects, pre-placed so that
/// `kubeadm join --control-plane` needs no uploaded certificates; with
/// `stacked` etcd also the etcd CA's key.
fn add_master_pki(layer: &mut RoleLayer, secrets: &Secrets, stacked: bool) {
    for (cert, key, pair) in [
        (CLUSTER_CA, CLUSTER_CA_KEY, &secrets.cluster_ca),
        (FRONT_PROXY_CA, FRONT_PROXY_CA_KEY, &secrets.front_proxy_ca),
        (
            ETCD_CLIENT_CERT,
            ETCD_CLIENT_KEY,
            &secrets.apiserver_etcd_client,
        ),
    ] {
        add_pair(layer, Path::new(cert), Some(Path::new(key)), pair);
    }
    layer.add_secret(SERVICE_ACCOUNT_KEY, secrets.service_account.key.clone());
    layer.add_file(
        SERVICE_ACCOUNT_PUB,
        Meta::root(0o644),
        Contents::Inline(secrets.service_account.cert.clone().into_bytes()),
    );
    // Stacked: kubeadm signs each master's etcd member certificates itself.
    let etcd_ca_key = stacked.then_some(Path::new(ETCD_CA_KEY));
    add_pair(layer, Path::new(ETCD_CA), etcd_ca_key, &secrets.etcd_ca);
    add_pair(layer, &pki::etcd_ca_cert(), None, &secrets.etcd_ca);
    add_etcd_agent_client(layer, secrets);
    layer.add_secret(
        pki::bootstrap_token(),
        format!("{}\n", secrets.bootstrap_token),
    );
}

/// CA certificate and token only: a worker can be stolen without the CA.
fn add_worker_pki(layer: &mut RoleLayer, secrets: &Secrets) {
    // Not at /etc/kubernetes/pki/ca.crt: kubeadm's worker preflight
    // (FileAvailable--etc-kubernetes-pki-ca.crt) refuses a join when that
    // file exists, and writes it itself from discovery.
    add_pair(layer, &pki::cluster_ca_cert(), None, &secrets.cluster_ca);
    layer.add_secret(
        pki::bootstrap_token(),
        format!("{}\n", secrets.bootstrap_token),
    );
}

/// The profile's extra files and units for this role.
fn add_extras(layer: &mut RoleLayer, profile: &LoadedProfile, image: &RoleImage) -> Result<()> {
    for file in &image.files {
        let bytes = match &file.contents {
            FileSource::Inline(text) => text.clone().into_bytes(),
            FileSource::Local(local) => {
                let path = profile.resolve(local);
                std::fs::read(&path).with_context(|| {
                    format!(
                        "reading {} (images.{}.files, path {})",
                        path.display(),
                        layer.role,
                        file.path
                    )
                })?
            }
        };
        layer.add_file(
            &file.path,
            Meta {
                mode: file.mode,
                uid: file.uid,
                gid: file.gid,
            },
            Contents::Inline(bytes),
        );
    }
    for unit in &image.units {
        // Keep kiln's own drop-ins (etcd.service's gate) beside the profile's.
        let mut dropins = layer
            .units
            .get(&unit.name)
            .map(|u| u.dropins.clone())
            .unwrap_or_default();
        dropins.extend(
            unit.dropins
                .iter()
                .map(|d| (d.name.clone(), d.contents.clone())),
        );
        layer.add_unit(
            Unit {
                name: unit.name.clone(),
                contents: unit.contents.clone(),
                dropins,
            },
            unit.enabled,
        );
    }
    Ok(())
}
