//! The two renderings of a role layer agree: the real Ignition applying the
//! `.ign` of a layer to an empty root writes exactly the files, folders,
//! links, modes, owners and contents that the rootfs tarball of the same
//! layer holds, and `ignition-validate` accepts the config. A build splits
//! each role's layer between the two: the tarball is the public image (the
//! agent and the units every cluster's nodes share), the `.ign` the rest,
//! and the real Ignition applying it over the tarball makes the node.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{ensure, Result};
use kiln::layer::{Contents, Meta, RoleLayer, Unit};
use kiln::render::{render_ignition, render_rootfs};
use kiln_e2e::artifacts::{ignition_files, tarball_files, Build};
use kiln_e2e::{ignition, profile, tree};
use kiln_node::node_config::Role;

/// A layer using every feature both renderers must carry, with file
/// contents that take each of the three data URL encodings.
fn feature_layer() -> RoleLayer {
    let mut layer = RoleLayer::new(Role::Etcd);
    let text = |s: &str| Contents::Inline(s.as_bytes().to_vec());
    layer.add_file(
        "/etc/kiln/node.toml",
        Meta::root(0o644),
        text("role = \"etcd\"\n# url?query#frag 100% ; done\n"),
    );
    layer.add_secret(
        "/etc/kiln/pki/etcd-ca.key",
        "-----BEGIN PRIVATE KEY-----\nMIGH\n",
    );
    layer.add_file(
        "/etc/kiln/empty",
        Meta::root(0o644),
        Contents::Inline(Vec::new()),
    );
    layer.add_file(
        "/etc/kiln/repetitive.conf",
        Meta::root(0o644),
        text(&"option = value\n".repeat(400)),
    );
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise = (0..700)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    layer.add_file(
        "/opt/kiln/deep/er/noise.bin",
        Meta::root(0o640),
        Contents::Inline(noise),
    );
    layer.add_file(
        "/usr/local/bin/hello",
        Meta::root(0o755),
        text("#!/bin/sh\necho hello\n"),
    );
    layer.add_link("/usr/local/bin/hi", "hello");
    // Longer than a ustar name field, to exercise GNU long names.
    let long = format!("/opt/kiln/{}/file", "long-folder-name".repeat(8));
    layer.add_file(&long, Meta::root(0o644), text("deep\n"));
    layer.add_link(format!("{long}.link"), &long);
    layer.add_link("/etc/localtime", "/usr/share/zoneinfo/UTC");
    let app = Meta {
        mode: 0o750,
        uid: 1000,
        gid: 1000,
    };
    layer.add_dir("/var/lib/app", app);
    layer.add_file(
        "/var/lib/app/state.json",
        Meta { mode: 0o640, ..app },
        text("{}\n"),
    );
    layer.add_unit(
        Unit {
            name: "kiln-hello.service".into(),
            contents: Some(
                "[Unit]\nDescription=hello\n[Service]\nExecStart=/usr/local/bin/hello\n\
                 [Install]\nWantedBy=multi-user.target\n"
                    .into(),
            ),
            dropins: vec![(
                "10-env.conf".into(),
                "[Service]\nEnvironment=GREETING=hi\n".into(),
            )],
        },
        true,
    );
    // A drop-in for a unit the base image ships (Debian's etcd.service).
    layer.add_unit(
        Unit {
            name: "etcd.service".into(),
            contents: None,
            dropins: vec![("20-kiln.conf".into(), "[Service]\nExecStart=\n".into())],
        },
        false,
    );
    layer
}

/// The paths of a built role's image, which its tarball holds (with their
/// folders, and nothing else) and its Ignition config does not; `binaries`
/// when the profile names a folder of Kubernetes binaries.
fn image_paths(role: &str, binaries: bool) -> Vec<String> {
    let units = "etc/systemd/system";
    let unit = |name: &str| {
        [
            format!("{units}/{name}"),
            format!("{units}/multi-user.target.wants/{name}"),
        ]
    };
    let mut paths = vec!["usr/bin/kiln-firstboot".to_owned()];
    paths.extend(unit("kiln-firstboot.service"));
    if role == "etcd" {
        paths.extend(unit("kiln-firstboot-settle.service"));
        paths.extend(unit("kiln-watch.service"));
        paths.push(format!("{units}/etcd.service.d/05-kiln-gate.conf"));
    }
    if role != "etcd" {
        // The metadata lockdown: on from the first boot, required by kubelet.
        let lockdown = "kiln-metadata-lockdown.service";
        paths.push("usr/lib/kiln/metadata-lockdown.nft".to_owned());
        paths.push(format!("{units}/{lockdown}"));
        paths.push(format!("{units}/sysinit.target.wants/{lockdown}"));
        paths.push(format!("{units}/kubelet.service.requires/{lockdown}"));
    }
    if binaries && role != "etcd" {
        paths.extend(["kubeadm", "kubelet", "kubectl"].map(|b| format!("usr/bin/{b}")));
        paths.extend(unit("kubelet.service"));
        paths.push(format!("{units}/kubelet.service.d/10-kubeadm.conf"));
    }
    paths
}

/// Validates `ign`, applies it with the real Ignition to an empty root,
/// extracts `rootfs` into another, and compares the two trees.
fn assert_renderings_agree(label: &str, ign: &Path, rootfs: &Path) -> Result<tree::Tree> {
    ignition::validate(ign)?;
    let roots = tempfile::tempdir()?;
    let (by_ignition, by_tar) = (roots.path().join("ignition"), roots.path().join("tar"));
    fs::create_dir(&by_ignition)?;
    ignition::apply(ign, &by_ignition)?;
    tree::extract(rootfs, &by_tar)?;
    let applied = tree::snapshot(&by_ignition)?;
    let extracted = tree::snapshot(&by_tar)?;
    let diffs = tree::differences("Ignition", &applied, "rootfs.tar.gz", &extracted);
    ensure!(
        diffs.is_empty(),
        "{label}: the two renderings differ in {} entries:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    ensure!(!applied.is_empty(), "{label}: Ignition wrote nothing");
    Ok(applied)
}

#[test]
fn ignition_and_rootfs_of_a_feature_layer_write_the_same_tree() -> Result<()> {
    let layer = feature_layer();
    let dir = tempfile::tempdir()?;
    let (ign, rootfs) = (
        dir.path().join("etcd.ign"),
        dir.path().join("rootfs.tar.gz"),
    );
    let config = render_ignition(&layer)?;
    fs::write(&ign, &config)?;
    render_rootfs(&layer, None, 1_700_000_000, &rootfs)?;
    let tree = assert_renderings_agree("feature layer", &ign, &rootfs)?;

    // Real Ignition decoded every data URL encoding kiln emits.
    let config = String::from_utf8(config)?;
    for encoding in [r#""data:,"#, r#""data:;base64,"#, r#""compression":"gzip""#] {
        assert!(config.contains(encoding), "no {encoding} in {config}");
    }

    // The agreement is about the right tree, not two equally wrong ones.
    let entry = |p: &str| {
        tree.get(Path::new(p))
            .cloned()
            .unwrap_or_else(|| panic!("{p} missing"))
    };
    assert_eq!(entry("etc/kiln/pki/etcd-ca.key").mode, 0o600);
    let app = entry("var/lib/app");
    assert_eq!(
        (app.kind, app.mode, app.uid, app.gid),
        (tree::Kind::Dir, 0o750, 1000, 1000)
    );
    assert_eq!(entry("var/lib/app/state.json").uid, 1000);
    assert_eq!(entry("opt/kiln/deep").mode, 0o755);
    assert_eq!(
        entry("etc/systemd/system/multi-user.target.wants/kiln-hello.service").kind,
        tree::Kind::Link("/etc/systemd/system/kiln-hello.service".into())
    );
    assert_eq!(
        entry("etc/systemd/system/kiln-hello.service.d/10-env.conf").mode,
        0o644
    );
    assert!(tree.contains_key(Path::new("etc/systemd/system/etcd.service.d/20-kiln.conf")));
    assert!(!tree.contains_key(Path::new("etc/systemd/system/etcd.service")));
    assert_eq!(
        entry("usr/local/bin/hi").kind,
        tree::Kind::Link("hello".into())
    );
    Ok(())
}

#[test]
fn the_comparison_catches_a_mode_an_owner_and_a_content_that_differ() -> Result<()> {
    let layer = feature_layer();
    let mut skewed = feature_layer();
    skewed.add_file(
        "/usr/local/bin/hello",
        Meta::root(0o700),
        Contents::Inline(b"#!/bin/sh\necho hello\n".to_vec()),
    );
    skewed.add_dir(
        "/var/lib/app",
        Meta {
            mode: 0o750,
            uid: 1000,
            gid: 0,
        },
    );
    skewed.add_file(
        "/etc/kiln/empty",
        Meta::root(0o644),
        Contents::Inline(b"x".to_vec()),
    );
    let dir = tempfile::tempdir()?;
    let (ign, rootfs) = (
        dir.path().join("etcd.ign"),
        dir.path().join("rootfs.tar.gz"),
    );
    fs::write(&ign, render_ignition(&layer)?)?;
    render_rootfs(&skewed, None, 0, &rootfs)?;
    let err = assert_renderings_agree("skewed", &ign, &rootfs)
        .unwrap_err()
        .to_string();
    assert!(err.contains("differ in 3 entries"), "{err}");
    for path in ["usr/local/bin/hello", "var/lib/app", "etc/kiln/empty"] {
        assert!(
            err.contains(&format!("\n{path}: Ignition has")),
            "{path} not reported: {err}"
        );
    }
    Ok(())
}

/// A built role's two artifacts split its layer: `<role>.ign` passes
/// `ignition-validate`; `rootfs.tar.gz` holds exactly the `image` paths and
/// their folders; Ignition, applying the config to an empty root, writes
/// none of them. Returns the node the real Ignition makes of the config
/// applied over the tarball, as a first boot does.
fn assert_split(out: &Path, role: &str, image: &[String]) -> Result<tempfile::TempDir> {
    let (ign, tgz) = (
        out.join(format!("{role}/{role}.ign")),
        out.join(format!("{role}/rootfs.tar.gz")),
    );
    ignition::validate(&ign)?;
    let node = tempfile::tempdir()?;
    tree::extract(&tgz, node.path())?;
    let mut held: Vec<&Path> = Vec::new();
    let extracted = tree::snapshot(node.path())?;
    for (path, entry) in &extracted {
        if entry.kind != tree::Kind::Dir {
            held.push(path);
        }
    }
    let mut wanted: Vec<&Path> = image.iter().map(Path::new).collect();
    wanted.sort();
    ensure!(
        held == wanted,
        "{role}: the tarball holds {held:?}, not the image {wanted:?}"
    );
    let config_alone = tempfile::tempdir()?;
    ignition::apply(&ign, config_alone.path())?;
    let applied = tree::snapshot(config_alone.path())?;
    for path in &wanted {
        ensure!(
            !applied.contains_key(*path),
            "{role}: the Ignition config carries the image's {}",
            path.display()
        );
    }
    ensure!(
        applied.contains_key(Path::new("etc/kiln/node.toml")),
        "{role}: no /etc/kiln/node.toml in {:?}",
        applied.keys().collect::<Vec<_>>()
    );
    ignition::apply(&ign, node.path())?;
    Ok(node)
}

#[test]
fn every_example_profile_role_splits_into_a_public_tarball_and_its_config() -> Result<()> {
    let build = Build::new();
    build.ok(&profile("example.toml"));
    for role in ["etcd", "master", "worker"] {
        assert_split(&build.out(), role, &image_paths(role, false))?;
    }
    Ok(())
}

/// The example profile with kubeadm, kubelet and kubectl from a folder of
/// stand-in executables, in a private folder.
fn profile_with_binaries(dir: &Path) -> Result<std::path::PathBuf> {
    let bin = dir.join("bin");
    fs::create_dir(&bin)?;
    for name in ["kubeadm", "kubelet", "kubectl"] {
        let path = bin.join(name);
        fs::write(&path, format!("#!/bin/sh\necho {name}\n"))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    }
    let text = fs::read_to_string(profile("example.toml"))?;
    let path = dir.join("binaries.toml");
    fs::write(
        &path,
        format!("{text}\n[images.kubernetes]\nbinaries = \"bin\"\n"),
    )?;
    Ok(path)
}

#[test]
fn master_and_worker_layers_prepare_the_host_and_carry_kubernetes_binaries() -> Result<()> {
    let build = Build::new();
    let path = profile_with_binaries(build.dir.path())?;
    let out = build.run(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "kiln build failed:\n{stderr}");
    ensure!(!stderr.contains("lack kubeadm"), "{stderr}");
    for role in ["master", "worker"] {
        // The whole node: the image, and the config Ignition applied over it.
        let node = assert_split(&build.out(), role, &image_paths(role, true))?;
        let tree = tree::snapshot(node.path())?;
        let file = |p: &str| {
            let path = node.path().join(p.trim_start_matches('/'));
            let mode = fs::metadata(&path).map(|m| m.permissions().mode());
            let mode = mode.unwrap_or_else(|e| panic!("{role}: {p}: {e}"));
            let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{role}: {p}: {e}"));
            (mode & 0o7777, text)
        };
        let link = |p: &str| match tree.get(Path::new(p)).map(|e| &e.kind) {
            Some(tree::Kind::Link(target)) => target.display().to_string(),
            other => panic!("{role}: {p} is {other:?}, not a link"),
        };
        for name in ["kubeadm", "kubelet", "kubectl"] {
            let (mode, text) = file(&format!("/usr/bin/{name}"));
            assert_eq!((mode, text), (0o755, format!("#!/bin/sh\necho {name}\n")));
        }
        let (_, modules) = file("/etc/modules-load.d/kiln-kubernetes.conf");
        assert!(modules.contains("\noverlay\nbr_netfilter\n"), "{modules}");
        let (_, sysctls) = file("/etc/sysctl.d/90-kiln-kubernetes.conf");
        for key in [
            "net.bridge.bridge-nf-call-iptables = 1",
            "net.bridge.bridge-nf-call-ip6tables = 1",
            "net.ipv4.ip_forward = 1",
        ] {
            assert!(sysctls.contains(key), "{role}: {key} missing in {sysctls}");
        }
        let (mode, containerd) = file("/etc/containerd/config.toml");
        assert_eq!(mode, 0o644);
        assert!(containerd.contains("SystemdCgroup = true"), "{containerd}");
        assert_eq!(link("etc/systemd/system/swap.target"), "/dev/null");
        let (_, swapoff) = file("/etc/systemd/system/kiln-swapoff.service");
        assert!(swapoff.contains("ExecStart=/sbin/swapoff -a"), "{swapoff}");
        assert!(swapoff.contains("Before=kubelet.service kiln-firstboot.service"));
        let (_, kubelet) = file("/etc/systemd/system/kubelet.service");
        assert!(
            kubelet.contains("ExecStart=/usr/bin/kubelet\n"),
            "{kubelet}"
        );
        let (_, dropin) = file("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf");
        assert!(dropin.contains("EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env\n"));
        assert!(dropin.contains("EnvironmentFile=-/etc/default/kubelet\n"));
        for unit in [
            "kubelet.service",
            "kiln-swapoff.service",
            "kiln-firstboot.service",
        ] {
            assert_eq!(
                link(&format!(
                    "etc/systemd/system/multi-user.target.wants/{unit}"
                )),
                format!("/etc/systemd/system/{unit}")
            );
        }
        // The agent runs kubeadm, which needs containerd, and restarts
        // kubelet and starts keepalived itself: no Before= on either. It
        // runs before the console's getty, which would cut off its lines.
        let (_, agent) = file("/etc/systemd/system/kiln-firstboot.service");
        assert!(agent.contains("After=network-online.target containerd.service\n"));
        let before: Vec<&str> = agent.lines().filter(|l| l.starts_with("Before=")).collect();
        assert_eq!(before, ["Before=getty-pre.target"], "{agent}");
        // kubeadm finds a master's CA where it keeps it; a worker's join
        // writes it there itself and refuses to run when it exists.
        let (kubeadm_ca, agent_ca) = ("/etc/kubernetes/pki/ca.crt", "/etc/kiln/pki/ca.crt");
        let (_, ca) = file(if role == "master" {
            kubeadm_ca
        } else {
            agent_ca
        });
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        if role == "worker" {
            assert!(
                !tree.contains_key(Path::new(&kubeadm_ca[1..])),
                "{kubeadm_ca}"
            );
        }
    }
    let etcd = build.out().join("etcd");
    let mut files = tarball_files(&etcd.join("rootfs.tar.gz"));
    files.extend(ignition_files(&etcd.join("etcd.ign")));
    assert!(
        !files
            .iter()
            .any(|f| f.path.starts_with("/usr/bin/kube") || f.path.starts_with("/etc/containerd")),
        "the etcd role carries Kubernetes files"
    );
    Ok(())
}

#[test]
fn a_build_without_kubernetes_binaries_says_the_images_lack_them() {
    let build = Build::new();
    let out = build.run(&profile("example.toml"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "warning: no images.kubernetes: the master and worker images will lack kubeadm and kubelet"
        ),
        "{stderr}"
    );
}
