//! Kubernetes host preparation on masters and workers (kernel modules,
//! sysctls, swap off, containerd with the systemd cgroup driver), and
//! kubeadm, kubelet and kubectl from the profile's binaries folder.

use std::path::Path;

use anyhow::{Context, Result};

use kiln_node::layout::kube::{KUBEADM_DROP_IN, KUBELET_UNIT, MASKED_UNITS};

use super::{Contents, Meta, RoleLayer, Unit, SYSTEMD_DIR};
use crate::profile::{KubernetesSource, LoadedProfile};

const MODULES_FILE: &str = "/etc/modules-load.d/kiln-kubernetes.conf";
/// overlay for containerd's snapshotter, br_netfilter so bridged pod traffic
/// passes iptables (kube-proxy's rules).
const MODULES: &str = "# kiln: kernel modules Kubernetes nodes need.\noverlay\nbr_netfilter\n";

const SYSCTL_FILE: &str = "/etc/sysctl.d/90-kiln-kubernetes.conf";
const SYSCTLS: &str = "# kiln: kubeadm's preflight checks these.\n\
net.bridge.bridge-nf-call-iptables = 1\n\
net.bridge.bridge-nf-call-ip6tables = 1\n\
net.ipv4.ip_forward = 1\n";

const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";

/// The configuration format the image's containerd reads: version 2 for
/// containerd 1.6 and 1.7 (Debian 12 and 13), version 3 for 2.x, which moved
/// the CRI plugin's settings to `io.containerd.cri.v1.*` (containerd's
/// docs/PLUGINS.md and its 2.0 release notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerdConfig {
    V2,
    V3,
}

impl ContainerdConfig {
    /// The format of containerd `major` (unknown: Debian 13's 1.7).
    pub fn for_major(major: Option<u32>) -> ContainerdConfig {
        match major {
            Some(major) if major >= 2 => ContainerdConfig::V3,
            _ => ContainerdConfig::V2,
        }
    }

    /// runc on the systemd cgroup driver, which kubeadm configures kubelet
    /// for: two cgroup managers on one node make pods unstable under
    /// pressure; the sandbox (pause) image of the cluster's Kubernetes minor,
    /// as kubeadm pulls it. In version 2, CNI plugins are looked up where
    /// Kubernetes network add-ons install them (Debian's default differs);
    /// version 3's defaults are those already.
    fn render(self, pause_image: &str) -> String {
        let head = "# kiln: containerd for kubelet with the systemd cgroup driver.\n";
        match self {
            ContainerdConfig::V2 => format!(
                r#"{head}version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{pause_image}"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/opt/cni/bin"
      conf_dir = "/etc/cni/net.d"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
"#
            ),
            ContainerdConfig::V3 => format!(
                r#"{head}version = 3

[plugins]
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{pause_image}"
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      SystemdCgroup = true
"#
            ),
        }
    }
}

/// kubelet refuses to run with swap on. Masking swap.target keeps systemd
/// from activating any swap (fstab entries and GPT swap partitions are all
/// pulled in through it); this unit turns off whatever was activated some
/// other way before kubeadm's preflight looks. Containers cannot change the
/// host's swap, so it stays out of their way.
const SWAPOFF_UNIT: &str = "[Unit]\n\
Description=kiln: keep swap off, as kubelet requires\n\
ConditionVirtualization=!container\n\
Before=kubelet.service kiln-firstboot.service\n\
\n\
[Service]\n\
Type=oneshot\n\
RemainAfterExit=yes\n\
ExecStart=/sbin/swapoff -a\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n";

const BIN_DIR: &str = "/usr/bin";
/// Also installed when the binaries folder holds it: kubeadm's preflight
/// wants crictl on the PATH.
const OPTIONAL_BINARIES: [&str; 1] = ["crictl"];

/// kubelet's unit as the Kubernetes packages ship it: restarted until
/// kubeadm init or join has written its configuration.
const KUBELET_UNIT_FILE: &str = "[Unit]\n\
Description=kubelet: The Kubernetes Node Agent\n\
Documentation=https://kubernetes.io/docs/\n\
Wants=network-online.target\n\
After=network-online.target\n\
\n\
[Service]\n\
ExecStart=/usr/bin/kubelet\n\
Restart=always\n\
StartLimitInterval=0\n\
RestartSec=10\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n";

/// The packages' kubeadm drop-in: flags from kubeadm (kubeadm-flags.env)
/// and the node's own (/etc/default/kubelet, where the agent puts node-ip).
const KUBEADM_DROP_IN_FILE: &str = "[Service]\n\
Environment=\"KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf\"\n\
Environment=\"KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml\"\n\
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env\n\
EnvironmentFile=-/etc/default/kubelet\n\
ExecStart=\n\
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS\n";

/// Modules, sysctls, swap off and containerd's configuration.
pub fn add_host_preparation(
    layer: &mut RoleLayer,
    containerd: ContainerdConfig,
    pause_image: &str,
) {
    let text = |s: &str| Contents::Inline(s.as_bytes().to_vec());
    layer.add_file(MODULES_FILE, Meta::root(0o644), text(MODULES));
    layer.add_file(SYSCTL_FILE, Meta::root(0o644), text(SYSCTLS));
    layer.add_file(
        CONTAINERD_CONFIG,
        Meta::root(0o644),
        text(&containerd.render(pause_image)),
    );
    for unit in MASKED_UNITS {
        layer.add_link(Path::new(SYSTEMD_DIR).join(unit), "/dev/null");
    }
    layer.add_unit(
        Unit {
            name: "kiln-swapoff.service".to_owned(),
            contents: Some(SWAPOFF_UNIT.to_owned()),
            dropins: vec![],
        },
        true,
    );
}

/// kubeadm, kubelet and kubectl (and crictl, if there) from
/// `images.kubernetes.binaries`, with kubelet's unit and kubeadm drop-in.
pub fn add_binaries(layer: &mut RoleLayer, profile: &LoadedProfile) -> Result<()> {
    let Some(KubernetesSource::Binaries(folder)) = &profile.profile.images.kubernetes else {
        return Ok(());
    };
    let dir = profile.resolve(folder);
    for name in KubernetesSource::BINARIES {
        add_binary(layer, &dir, name)?;
    }
    for name in OPTIONAL_BINARIES {
        if dir.join(name).is_file() {
            add_binary(layer, &dir, name)?;
        }
    }
    layer.add_image_unit(
        Unit {
            name: KUBELET_UNIT.to_owned(),
            contents: Some(KUBELET_UNIT_FILE.to_owned()),
            dropins: vec![(KUBEADM_DROP_IN.to_owned(), KUBEADM_DROP_IN_FILE.to_owned())],
        },
        true,
    );
    Ok(())
}

fn add_binary(layer: &mut RoleLayer, dir: &Path, name: &str) -> Result<()> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path)
        .with_context(|| format!("reading {} (images.kubernetes.binaries)", path.display()))?;
    let path = Path::new(BIN_DIR).join(name);
    layer.add_file(&path, Meta::root(0o755), Contents::Inline(bytes));
    layer.mark_image([path]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAUSE: &str = "registry.k8s.io/pause:3.10.1";

    #[test]
    fn containerd_1_config_is_version_2_with_the_systemd_cgroup_driver() {
        assert_eq!(ContainerdConfig::for_major(Some(1)), ContainerdConfig::V2);
        assert_eq!(ContainerdConfig::for_major(None), ContainerdConfig::V2);
        let config: toml::Table = toml::from_str(&ContainerdConfig::V2.render(PAUSE)).unwrap();
        assert_eq!(config["version"].as_integer(), Some(2));
        let cri = &config["plugins"]["io.containerd.grpc.v1.cri"];
        let runc = &cri["containerd"]["runtimes"]["runc"];
        assert_eq!(runc["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
        assert_eq!(runc["options"]["SystemdCgroup"].as_bool(), Some(true));
        assert_eq!(cri["sandbox_image"].as_str(), Some(PAUSE));
    }

    #[test]
    fn containerd_2_config_is_version_3_with_the_cri_plugins_new_names() {
        assert_eq!(ContainerdConfig::for_major(Some(2)), ContainerdConfig::V3);
        let config: toml::Table = toml::from_str(&ContainerdConfig::V3.render(PAUSE)).unwrap();
        assert_eq!(config["version"].as_integer(), Some(3));
        let plugins = &config["plugins"];
        let runc = &plugins["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"];
        assert_eq!(runc["options"]["SystemdCgroup"].as_bool(), Some(true));
        let images = &plugins["io.containerd.cri.v1.images"];
        assert_eq!(images["pinned_images"]["sandbox"].as_str(), Some(PAUSE));
        assert!(plugins.get("io.containerd.grpc.v1.cri").is_none());
    }

    #[test]
    fn the_drop_in_passes_kubeadm_and_node_flags_to_kubelet() {
        let exec = KUBEADM_DROP_IN_FILE.lines().last().unwrap();
        for var in ["$KUBELET_KUBEADM_ARGS", "$KUBELET_EXTRA_ARGS"] {
            assert!(exec.contains(var), "{exec}");
        }
        assert!(exec.starts_with("ExecStart=/usr/bin/kubelet "));
    }
}
