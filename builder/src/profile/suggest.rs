//! Fix-it help: "did you mean" for misspelled keys and values, and an
//! example line for every field of the profile.

/// The name in `candidates` closest to `typo`, if any is close enough to be
/// what the user meant.
pub fn did_you_mean<'c>(typo: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let typo_lower = typo.to_ascii_lowercase().replace('-', "_");
    candidates
        .iter()
        .map(|c| {
            let c_norm = c.to_ascii_lowercase().replace('-', "_");
            let distance = strsim::damerau_levenshtein(&typo_lower, &c_norm);
            let similarity = strsim::jaro_winkler(&typo_lower, &c_norm);
            (*c, distance, similarity)
        })
        .filter(|(c, distance, similarity)| {
            *distance <= (c.len() / 3).max(1) || *similarity >= 0.85
        })
        .min_by(|a, b| a.1.cmp(&b.1).then(b.2.total_cmp(&a.2)))
        .map(|(c, _, _)| c)
}

/// The backquoted names serde lists after "expected" in an unknown field or
/// variant error: "unknown field `nmae`, expected `name` or `ip`".
pub fn expected_names(message: &str) -> Vec<&str> {
    let Some((_, list)) = message.split_once("expected") else {
        return Vec::new();
    };
    list.split('`').skip(1).step_by(2).collect()
}

/// The first backquoted word of a serde message: the offending key or variant.
pub fn quoted(message: &str) -> Option<&str> {
    message.split('`').nth(1)
}

/// An example TOML line for a field, keyed by its last path component.
pub fn example(field: &str) -> Option<&'static str> {
    let key = field.rsplit('.').next().unwrap_or(field);
    let key = key.split('[').next().unwrap_or(key);
    EXAMPLES
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, line)| *line)
}

/// `(key, example)`: a line the profile accepts where the key belongs
/// (tests run each through validation), or for a table what it holds.
const EXAMPLES: [(&str, &str); 51] = [
    ("cluster", "[cluster] with name, domain, kubernetes_version and node_subnets"),
    ("etcd", "[etcd] (members are listed as [[etcd.members]] tables)"),
    ("name", "name = \"etcd1\""),
    ("domain", "domain = \"cluster.example\""),
    ("kubernetes_version", "kubernetes_version = \"1.36.2\""),
    ("node_subnets", "node_subnets = [\"10.10.0.0/24\"]"),
    ("pod_subnet", "pod_subnet = \"10.244.0.0/16\""),
    ("service_subnet", "service_subnet = \"10.96.0.0/12\""),
    ("topology", "topology = \"external\" (or \"stacked\")"),
    ("client_port", "client_port = 2379"),
    ("peer_port", "peer_port = 2380"),
    ("data_dir", "data_dir = \"/var/lib/etcd\""),
    ("discovery", "discovery = [\"static\", \"dns-srv\"]"),
    ("size", "size = 3"),
    ("replace_dead_after", "replace_dead_after = \"2m\""),
    ("members", "[[etcd.members]] with name and ip"),
    ("ip", "ip = \"10.10.0.11\""),
    ("dns_names", "dns_names = [\"etcd1.cluster.example\"]"),
    ("endpoint", "endpoint = \"10.10.0.100:6443\""),
    ("vip", "vip = { address = \"10.10.0.100\", interface = \"eth0\" }"),
    ("address", "address = \"10.10.0.100\""),
    ("interface", "interface = \"eth0\""),
    ("masters", "[[control_plane.masters]] with name and ip"),
    ("nodes", "[[workers.nodes]] with name and ip"),
    ("key_algorithm", "key_algorithm = \"ecdsa-p256\" (or \"ecdsa-p384\")"),
    ("ca_validity_days", "ca_validity_days = 3650"),
    ("leaf_validity_days", "leaf_validity_days = 365"),
    ("formats", "formats = [\"ignition\", \"rootfs\"]"),
    ("source_date_epoch", "source_date_epoch = 1700000000"),
    ("url", "url = \"https://github.com/etcd-io/etcd/releases/download/v3.5.30/etcd-v3.5.30-linux-amd64.tar.gz\""),
    ("base", "base = \"rootfs/debian.tar.gz\" (relative to the profile)"),
    ("packages", "packages = [\"chrony\"]"),
    ("files", "[[images.<role>.files]] with path and contents"),
    ("units", "[[images.<role>.units]] with name"),
    ("path", "path = \"/etc/motd\""),
    ("contents", "contents = { inline = \"hello\\n\" } (or { local = \"files/motd\" })"),
    ("inline", "inline = \"text of the file\""),
    ("kubernetes", "kubernetes = { binaries = \"bin/\" } (or apt = { repository, key })"),
    ("apt", "apt = { repository = \"https://pkgs.k8s.io/core:/stable:/v1.36/deb/\", key = \"keys/kubernetes.asc\" }"),
    ("repository", "repository = \"https://pkgs.k8s.io/core:/stable:/v1.36/deb/\""),
    ("key", "key = \"keys/kubernetes.asc\" (relative to the profile)"),
    ("binaries", "binaries = \"bin/\" (a folder with kubeadm, kubelet and kubectl)"),
    ("token_ttl", "token_ttl = \"24h\" (leave it out: never expires)"),
    ("virtual_router_id", "virtual_router_id = 51"),
    ("unicast", "unicast = true"),
    ("local", "local = \"files/motd\" (relative to the profile)"),
    ("mode", "mode = 0o644"),
    ("uid", "uid = 0"),
    ("gid", "gid = 0"),
    ("enabled", "enabled = true"),
    ("dropins", "dropins = [{ name = \"50-site.conf\", contents = \"[Service]\\n...\" }]"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_key() {
        let keys = ["name", "ip", "dns_names"];
        assert_eq!(did_you_mean("nmae", &keys), Some("name"));
        assert_eq!(did_you_mean("dns-names", &keys), Some("dns_names"));
        assert_eq!(did_you_mean("address", &keys), None);
        let cluster = ["name", "domain", "kubernetes_version", "node_subnets"];
        assert_eq!(
            did_you_mean("kubernetes_versoin", &cluster),
            Some("kubernetes_version")
        );
        assert_eq!(did_you_mean("node_subnet", &cluster), Some("node_subnets"));
        assert_eq!(did_you_mean("ip", &["ip", "id"]), Some("ip"));
    }

    #[test]
    fn reads_names_from_serde_messages() {
        let msg = "unknown field `nmae`, expected one of `name`, `ip`, `dns_names`";
        assert_eq!(quoted(msg), Some("nmae"));
        assert_eq!(expected_names(msg), ["name", "ip", "dns_names"]);
        let msg = "unknown variant `qcow2`, expected `ignition` or `rootfs`";
        assert_eq!(expected_names(msg), ["ignition", "rootfs"]);
        assert!(expected_names("missing field `ip`").is_empty());
    }

    /// A profile that validates, with the VIP as a table so that its keys
    /// can be replaced one at a time.
    const HOST: &str = "[cluster]\nname = \"example\"\ndomain = \"kiln.test\"\n\
        kubernetes_version = \"1.36.2\"\nnode_subnets = [\"10.10.0.0/24\"]\n\n\
        [etcd]\n\n[[etcd.members]]\nname = \"etcd1\"\nip = \"10.10.0.11\"\n\n\
        [control_plane]\nendpoint = \"10.10.0.100:6443\"\n\n\
        [[control_plane.masters]]\nname = \"master1\"\nip = \"10.10.0.21\"\n\n\
        [control_plane.vip]\naddress = \"10.10.0.100\"\ninterface = \"eth0\"\n";

    /// The TOML of an example: all of it, or what comes before a closing
    /// remark in parentheses; `None` for a table's description.
    fn toml_of(example: &str) -> Option<&str> {
        if example.starts_with('[') {
            return None;
        }
        let ends =
            std::iter::once(example.len()).chain(example.rmatch_indices(" (").map(|(i, _)| i));
        let line = ends
            .map(|end| &example[..end])
            .find(|line| line.parse::<toml::Table>().is_ok());
        Some(line.unwrap_or_else(|| panic!("{example:?} holds no TOML line")))
    }

    /// HOST with `line`, the example of `key`, where the key belongs.
    fn placed(key: &str, line: &str) -> String {
        let after = |anchor: &str| HOST.replacen(anchor, &format!("{anchor}{line}\n"), 1);
        let table = |header: &str, rest: &str| format!("{HOST}\n{header}\n{line}\n{rest}");
        if let Some(old) = HOST.lines().find(|l| l.starts_with(&format!("{key} = "))) {
            return HOST.replacen(old, line, 1);
        }
        match key {
            "vip" => HOST
                .replace(
                    "\n[control_plane.vip]\naddress = \"10.10.0.100\"\ninterface = \"eth0\"\n",
                    "",
                )
                .replace("[control_plane]\n", &format!("[control_plane]\n{line}\n")),
            "pod_subnet" | "service_subnet" => after("[cluster]\n"),
            "topology" | "client_port" | "peer_port" | "data_dir" | "discovery" | "size"
            | "replace_dead_after" => after("[etcd]\n"),
            "dns_names" => after("[[etcd.members]]\n"),
            "token_ttl" => after("[control_plane]\n"),
            "virtual_router_id" | "unicast" => after("[control_plane.vip]\n"),
            "key_algorithm" | "ca_validity_days" | "leaf_validity_days" => table("[pki]", ""),
            "formats" | "source_date_epoch" | "kubernetes" => table("[images]", ""),
            "url" => table(
                "[images.etcd.release]",
                &format!("sha256 = \"{}\"\n", "a".repeat(64)),
            ),
            "base" | "packages" => table("[images.worker]", ""),
            "path" => table("[[images.worker.files]]", "contents = { inline = \"x\" }\n"),
            "contents" => table("[[images.worker.files]]", "path = \"/etc/motd\"\n"),
            "mode" | "uid" | "gid" => table(
                "[[images.worker.files]]",
                "path = \"/etc/motd\"\ncontents = { inline = \"x\" }\n",
            ),
            "inline" | "local" => format!(
                "{HOST}\n[[images.worker.files]]\npath = \"/etc/motd\"\n\n\
                 [images.worker.files.contents]\n{line}\n"
            ),
            "apt" | "binaries" => table("[images.kubernetes]", ""),
            "repository" => table("[images.kubernetes.apt]", "key = \"keys/kubernetes.asc\"\n"),
            "key" => table(
                "[images.kubernetes.apt]",
                "repository = \"https://pkgs.k8s.io/core:/stable:/v1.36/deb/\"\n",
            ),
            "enabled" | "dropins" => table(
                "[[images.worker.units]]",
                "name = \"site.service\"\ncontents = \"[Unit]\\n\"\n",
            ),
            _ => panic!("no place for the example of {key}: add one to placed()"),
        }
    }

    /// What the examples name in the profile's folder.
    fn profile_folder() -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temporary folder");
        let root = dir.path();
        for folder in ["rootfs", "keys", "bin", "files"] {
            std::fs::create_dir(root.join(folder)).expect("creating a folder");
        }
        for file in ["rootfs/debian.tar.gz", "keys/kubernetes.asc", "files/motd"] {
            std::fs::write(root.join(file), "x").expect("writing a file");
        }
        for name in ["kubeadm", "kubelet", "kubectl"] {
            let path = root.join("bin").join(name);
            std::fs::write(&path, "#!/bin/sh\n").expect("writing a binary");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .expect("making it executable");
        }
        dir
    }

    #[test]
    fn every_example_validates_where_it_belongs() {
        let dir = profile_folder();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, HOST).expect("writing the profile");
        crate::profile::load(&path).unwrap_or_else(|e| panic!("the host profile: {e}"));
        for (j, (key, example)) in EXAMPLES.iter().enumerate() {
            assert!(
                !EXAMPLES[..j].iter().any(|(k, _)| k == key),
                "{key} has two examples"
            );
            let Some(line) = toml_of(example) else {
                continue;
            };
            let text = placed(key, line);
            std::fs::write(&path, &text).expect("writing the profile");
            match crate::profile::load(&path) {
                Ok(loaded) => assert!(
                    loaded.warnings.is_empty(),
                    "{key}: {:?}\n{text}",
                    loaded.warnings
                ),
                Err(e) => panic!("the example of {key}, {line:?}, is refused:\n{e}\n{text}"),
            }
        }
    }

    #[test]
    fn examples_follow_the_last_path_component() {
        assert_eq!(example("etcd.members[1].ip"), Some("ip = \"10.10.0.11\""));
        assert!(example("images.etcd.files[0].mode")
            .unwrap()
            .contains("0o644"));
        assert_eq!(example("nonsense"), None);
        // The one url of the profile is an etcd release's tarball.
        let url = example("images.etcd.release.url").unwrap();
        assert!(
            url.contains("/etcd-v") && url.ends_with(".tar.gz\""),
            "{url}"
        );
    }
}
