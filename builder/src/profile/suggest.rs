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
    Some(match key {
        "cluster" => "[cluster] with name, domain, kubernetes_version and node_subnets",
        "etcd" => "[etcd] (members are listed as [[etcd.members]] tables)",
        "name" => "name = \"etcd1\"",
        "domain" => "domain = \"cluster.example\"",
        "kubernetes_version" => "kubernetes_version = \"1.36.2\"",
        "node_subnets" => "node_subnets = [\"10.10.0.0/24\"]",
        "pod_subnet" => "pod_subnet = \"10.244.0.0/16\"",
        "service_subnet" => "service_subnet = \"10.96.0.0/12\"",
        "topology" => "topology = \"external\" (or \"stacked\")",
        "client_port" => "client_port = 2379",
        "peer_port" => "peer_port = 2380",
        "data_dir" => "data_dir = \"/var/lib/etcd\"",
        "discovery" => "discovery = [\"static\", \"dns-srv\"]",
        "size" => "size = 3",
        "replace_dead_after" => "replace_dead_after = \"2m\"",
        "members" => "[[etcd.members]] with name and ip",
        "ip" => "ip = \"10.10.0.11\"",
        "dns_names" => "dns_names = [\"etcd1.cluster.example\"]",
        "endpoint" => "endpoint = \"10.10.0.100:6443\"",
        "vip" => "vip = { address = \"10.10.0.100\", interface = \"eth0\" }",
        "address" => "address = \"10.10.0.100\"",
        "interface" => "interface = \"eth0\"",
        "masters" => "[[control_plane.masters]] with name and ip",
        "nodes" => "[[workers.nodes]] with name and ip",
        "key_algorithm" => "key_algorithm = \"ecdsa-p256\" (or \"ecdsa-p384\")",
        "ca_validity_days" => "ca_validity_days = 3650",
        "leaf_validity_days" => "leaf_validity_days = 365",
        "formats" => "formats = [\"ignition\", \"rootfs\"]",
        "source_date_epoch" => "source_date_epoch = 1700000000",
        "url" => "url = \"https://downloads.example/kiln-firstboot\"",
        "base" => "base = \"rootfs/debian.tar.gz\" (relative to the profile)",
        "packages" => "packages = [\"chrony\"]",
        "files" => "[[images.<role>.files]] with path and contents",
        "units" => "[[images.<role>.units]] with name",
        "path" => "path = \"/etc/motd\"",
        "contents" => "contents = { inline = \"hello\\n\" } (or { local = \"files/motd\" })",
        "inline" => "inline = \"text of the file\"",
        "kubernetes" => "kubernetes = { binaries = \"bin/\" } (or apt = { repository, key })",
        "apt" => "apt = { repository = \"https://pkgs.k8s.io/core:/stable:/v1.36/deb/\", key = \"keys/kubernetes.asc\" }",
        "repository" => "repository = \"https://pkgs.k8s.io/core:/stable:/v1.36/deb/\"",
        "key" => "key = \"keys/kubernetes.asc\" (relative to the profile)",
        "binaries" => "binaries = \"bin/\" (a folder with kubeadm, kubelet and kubectl)",
        "token_ttl" => "token_ttl = \"24h\" (leave it out: never expires)",
        "virtual_router_id" => "virtual_router_id = 51",
        "unicast" => "unicast = true",
        "local" => "local = \"files/motd\" (relative to the profile)",
        "mode" => "mode = 0o644",
        "uid" | "gid" => "uid = 0",
        "enabled" => "enabled = true",
        "dropins" => "dropins = [{ name = \"10-kiln.conf\", contents = \"[Service]\\n...\" }]",
        _ => return None,
    })
}

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

    #[test]
    fn examples_follow_the_last_path_component() {
        assert_eq!(example("etcd.members[1].ip"), Some("ip = \"10.10.0.11\""));
        assert!(example("images.etcd.files[0].mode")
            .unwrap()
            .contains("0o644"));
        assert_eq!(example("nonsense"), None);
    }
}
