//! Unit tests of `load()`: the shipped profiles, and bad profiles written to
//! a temporary folder, checking the diagnostics a user would read.

use std::path::{Path, PathBuf};

use sha2::Digest as _;

use super::*;

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../profiles")
        .join(name)
}

/// Writes `text` as a profile in a fresh folder and loads it.
fn load_text(text: &str) -> (tempfile::TempDir, Result<LoadedProfile, ProfileError>) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("p.toml");
    std::fs::write(&path, text).expect("writing the profile");
    let loaded = load(&path);
    (dir, loaded)
}

fn errors_of(text: &str) -> Vec<Diagnostic> {
    match load_text(text).1 {
        Ok(_) => panic!("profile loaded but should not:\n{text}"),
        Err(e) => e.diagnostics,
    }
}

fn find<'d>(diagnostics: &'d [Diagnostic], field: &str) -> &'d Diagnostic {
    diagnostics
        .iter()
        .find(|d| d.field == field)
        .unwrap_or_else(|| panic!("no diagnostic for {field} in {diagnostics:#?}"))
}

const BASE: &str = r#"
[cluster]
name = "local"
domain = "kiln.test"
kubernetes_version = "1.36.2"
node_subnets = ["10.77.0.0/24"]

[etcd]
[[etcd.members]]
name = "etcd1"
ip = "10.77.0.11"
"#;

#[test]
fn shipped_profiles_load_without_warnings() {
    let example = load(&shipped("example.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(example.warnings.is_empty(), "{:?}", example.warnings);
    assert_eq!(
        example.profile.roles(),
        [Role::Etcd, Role::Master, Role::Worker]
    );
    assert_eq!(example.profile.etcd.members.len(), 3);
    assert_eq!(example.profile.workers.nodes.len(), 2);

    let local = load(&shipped("local.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(local.warnings.is_empty(), "{:?}", local.warnings);
    assert_eq!(local.profile.roles(), [Role::Etcd]);
    assert!(local.digest.starts_with("sha256:") && local.digest.len() == 7 + 64);
    assert_eq!(
        local.resolve(Path::new("files/motd")),
        shipped("local.toml").parent().unwrap().join("files/motd")
    );
}

#[test]
fn digest_is_sha256_of_the_file_bytes() {
    let (_dir, loaded) = load_text(BASE);
    let loaded = loaded.expect("base profile loads");
    let expected: String = sha2::Sha256::digest(BASE.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(loaded.digest, format!("sha256:{expected}"));
}

#[test]
fn a_missing_file_names_the_path() {
    let err = load(Path::new("/nonexistent/kiln.toml")).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("/nonexistent/kiln.toml: profile: cannot read the profile"),
        "{text}"
    );
}

#[test]
fn syntax_errors_have_positions() {
    let d = errors_of("[cluster]\nname = example\n");
    assert_eq!(
        (d[0].field.as_str(), d[0].line, d[0].column),
        ("syntax", 2, 8)
    );
}

#[test]
fn every_schema_error_is_reported_at_once() {
    let text = BASE
        .replace("name = \"etcd1\"", "nmae = \"etcd1\"")
        .replace(
            "[etcd]",
            "[etcd]\nclient_port = \"2379\"\n\n[pki]\nkey_algorithm = \"ed25519\"",
        );
    let d = errors_of(&text);
    let unknown = find(&d, "etcd.members[0].nmae");
    assert!(unknown.hint.contains("did you mean `name`?"), "{unknown}");
    assert_eq!((unknown.line, unknown.column), (14, 1));
    assert!(find(&d, "etcd.client_port")
        .message
        .starts_with("wrong type"));
    assert!(find(&d, "pki.key_algorithm").hint.contains("ecdsa-p256"));
}

#[test]
fn a_missing_field_points_at_its_table() {
    let d = errors_of(&BASE.replace("domain = \"kiln.test\"\n", ""));
    let missing = find(&d, "cluster.domain");
    assert_eq!((missing.line, missing.column), (2, 1));
    assert!(
        missing.hint.contains("domain = \"cluster.example\""),
        "{missing}"
    );
}

#[test]
fn every_semantic_error_is_reported_at_once() {
    let text = BASE
        .replace("\"local\"", "\"Local_Cluster\"")
        .replace("1.36.2", "1.26.0")
        .replace("10.77.0.11", "10.78.0.11")
        + "\n[[etcd.members]]\nname = \"etcd1\"\nip = \"10.77.0.12\"\n\n[pki]\nleaf_validity_days = 4000\n";
    let d = errors_of(&text);
    for field in [
        "cluster.name",
        "cluster.kubernetes_version",
        "etcd.members[0].ip",
        "etcd.members[1].name",
        "pki.leaf_validity_days",
    ] {
        find(&d, field);
    }
    let outside = find(&d, "etcd.members[0].ip");
    assert_eq!((outside.line, outside.column), (11, 6));
    assert!(outside
        .message
        .contains("outside every node subnet (10.77.0.0/24)"));
    // Two members also trip the even-count warning; it comes last.
    assert_eq!(d.last().map(|w| w.severity), Some(Severity::Warning));
}

#[test]
fn an_even_member_count_only_warns() {
    let text = BASE.to_owned() + "\n[[etcd.members]]\nname = \"etcd2\"\nip = \"10.77.0.12\"\n";
    let (_dir, loaded) = load_text(&text);
    let loaded = loaded.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(loaded.warnings[0].field, "etcd.members");
    assert!(loaded.warnings[0].to_string().starts_with("warning: "));
}

#[test]
fn local_files_resolve_against_the_profile_folder() {
    let text = BASE.to_owned()
        + "\n[[images.etcd.files]]\npath = \"/etc/motd\"\ncontents = { local = \"motd\" }\n";
    let (dir, loaded) = load_text(&text);
    let d = loaded.expect_err("motd does not exist yet").diagnostics;
    let missing = find(&d, "images.etcd.files[0].contents.local");
    assert!(missing
        .message
        .contains(&dir.path().join("motd").display().to_string()));
    std::fs::write(dir.path().join("motd"), "hi\n").expect("writing motd");
    load(&dir.path().join("p.toml")).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn roles_follow_topology_and_control_plane() {
    let (_dir, loaded) = load_text(
        &(BASE.replace("[etcd]\n[[etcd.members]]\nname = \"etcd1\"\nip = \"10.77.0.11\"\n", "[etcd]\ntopology = \"stacked\"\n")
            + "\n[control_plane]\nendpoint = \"10.77.0.21:6443\"\n[[control_plane.masters]]\nname = \"m1\"\nip = \"10.77.0.21\"\n"),
    );
    let loaded = loaded.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.profile.roles(), [Role::Master, Role::Worker]);
}

/// BASE with a control plane on 10.77.0.21: `keys` go into
/// [control_plane], `after` follows the master's table.
fn with_control_plane(keys: &str, after: &str) -> String {
    format!(
        "{BASE}\n[control_plane]\nendpoint = \"10.77.0.21:6443\"\n{keys}\
         [[control_plane.masters]]\nname = \"m1\"\nip = \"10.77.0.21\"\n{after}"
    )
}

fn warnings_of(text: &str) -> Vec<Diagnostic> {
    let (_dir, loaded) = load_text(text);
    loaded.unwrap_or_else(|e| panic!("{e}")).warnings
}

#[test]
fn the_version_table_decides_errors_and_warnings() {
    for supported in ["1.35.0", "1.36.2", "v1.37.1"] {
        let text = BASE.replace("1.36.2", supported);
        assert!(warnings_of(&text).is_empty(), "{supported}");
    }
    // The oldest and the newest unsupported minors warn with their date.
    for (old, date) in [
        ("1.27.16", "2024-07-16"),
        ("1.34.3", "2026-10-28 (estimated)"),
    ] {
        let w = warnings_of(&BASE.replace("1.36.2", old));
        let w = find(&w, "cluster.kubernetes_version");
        assert!(
            w.message.contains(&format!("end of support on {date}")),
            "{w}"
        );
        assert!(w.hint.contains("1.35, 1.36 or 1.37"), "{w}");
    }
    for unknown in ["1.26.15", "1.38.0", "2.0.0", "0.36.2"] {
        let d = errors_of(&BASE.replace("1.36.2", unknown));
        let e = find(&d, "cluster.kubernetes_version");
        assert!(e.message.contains("not a release kiln knows"), "{e}");
    }
    for malformed in ["latest", "+1.+31.+2", "1.36", "1.36.2-rc.0"] {
        let d = errors_of(&BASE.replace("1.36.2", malformed));
        assert_eq!(
            find(&d, "cluster.kubernetes_version").line,
            5,
            "{malformed}"
        );
    }
}

#[test]
fn subnets_follow_kubeadms_size_rules() {
    // An IPv6 subnet comes with an IPv6 one of the other kind: kiln's
    // clusters are single-stack.
    let with = |field: &str, net: &str| {
        let other = match (field, net.contains(':')) {
            ("service_subnet", true) => "\npod_subnet = \"fd00:244::/56\"",
            ("pod_subnet", true) => "\nservice_subnet = \"fd00:96::/108\"",
            _ => "",
        };
        BASE.replace(
            "node_subnets = [\"10.77.0.0/24\"]",
            &format!("node_subnets = [\"10.77.0.0/24\"]\n{field} = \"{net}\"{other}"),
        )
    };
    // Both ends of each rule: the last accepted and the first refused.
    for good in [
        "10.96.0.0/12",
        "10.96.0.0/28",
        "fd00:96::/108",
        "fd00:96::/124",
    ] {
        assert!(
            warnings_of(&with("service_subnet", good)).is_empty(),
            "{good}"
        );
    }
    for (bad, words) in [
        ("10.96.0.0/11", "too large"),
        ("10.96.0.0/29", "has 8 addresses"),
        ("fd00:96::/107", "too large"),
        ("fd00:96::/125", "has 8 addresses"),
    ] {
        let d = errors_of(&with("service_subnet", bad));
        let e = find(&d, "cluster.service_subnet");
        assert!(e.message.contains(words), "{bad}: {e}");
    }
    for good in [
        "20.0.0.0/8",
        "10.244.0.0/24",
        "fd00:244::/48",
        "fd00:244::/64",
    ] {
        assert!(warnings_of(&with("pod_subnet", good)).is_empty(), "{good}");
    }
    for (bad, words) in [
        ("20.0.0.0/7", "too large"),
        ("10.244.0.0/25", "smaller than the /24"),
        ("10.244.0.0/29", "has 8 addresses"),
        ("fd00::/47", "too large"),
        ("fd00:244::/65", "smaller than the /64"),
    ] {
        let d = errors_of(&with("pod_subnet", bad));
        let e = find(&d, "cluster.pod_subnet");
        assert!(e.message.contains(words), "{bad}: {e}");
    }
}

#[test]
fn token_ttl_fits_a_go_duration() {
    // 2562047h47m16s is the last whole second Go's time.Duration holds.
    let at_most = with_control_plane("token_ttl = \"9223372036s\"\n", "");
    assert!(warnings_of(&at_most).is_empty());
    let d = errors_of(&with_control_plane("token_ttl = \"9223372037s\"\n", ""));
    let e = find(&d, "control_plane.token_ttl");
    assert!(e.message.contains("2562047h47m16.854775807s"), "{e}");
}

#[test]
fn kubeadm_pki_settings_fit_the_kubernetes_version() {
    let p384 = "\n[pki]\nkey_algorithm = \"ecdsa-p384\"\n";
    let old = with_control_plane("", p384).replace("1.36.2", "1.33.5");
    let d = errors_of(&old);
    assert!(find(&d, "pki.key_algorithm").message.contains("1.34"));
    let since = with_control_plane("", p384).replace("1.36.2", "1.34.0");
    assert_eq!(
        warnings_of(&since).len(),
        1,
        "only the end-of-support warning"
    );
    // Without a control plane kubeadm never reads it.
    assert!(load_text(&(BASE.replace("1.36.2", "1.33.5") + p384))
        .1
        .is_ok());

    let days = |n: u32| with_control_plane("", &format!("\n[pki]\nca_validity_days = {n}\n"));
    assert!(warnings_of(&days(36_500)).is_empty());
    let d = errors_of(&days(36_501));
    assert!(find(&d, "pki.ca_validity_days")
        .message
        .contains("is over 36500"));
}

#[test]
fn names_that_become_cert_sans_follow_kubeadm() {
    let bad_san = with_control_plane("", "dns_names = [\"api_1.kiln.test\"]\n");
    let d = errors_of(&bad_san);
    let e = find(&d, "control_plane.masters[0].dns_names[0]");
    assert!(e.message.contains("API server certificate"), "{e}");
    let long = BASE.replace(
        "kiln.test",
        &format!("{}.test", vec!["a".repeat(60); 4].join(".")),
    );
    let d = errors_of(&long);
    assert!(find(&d, "etcd.members[0].name").message.contains("253"));
    let v6 = with_control_plane("", "").replace("10.77.0.21:6443", "fd00::21:6443");
    let d = errors_of(&v6);
    assert!(find(&d, "control_plane.endpoint")
        .message
        .contains("brackets"));
}

/// BASE with etcd1 at `ip` on the single node subnet `subnet`: the message
/// of the error on its address, or `None` when it loads without warnings.
fn address_error(subnet: &str, ip: &str) -> Option<String> {
    let text = BASE
        .replace("10.77.0.0/24", subnet)
        .replace("10.77.0.11", ip);
    match load_text(&text).1 {
        Ok(loaded) => {
            assert!(loaded.warnings.is_empty(), "{ip}: {:?}", loaded.warnings);
            None
        }
        Err(e) => Some(find(&e.diagnostics, "etcd.members[0].ip").to_string()),
    }
}

#[test]
fn node_addresses_are_host_addresses_of_their_subnet() {
    // The first and last host of each subnet pass, the addresses around them
    // fail; a /31 (RFC 3021) and a /32 have no network or broadcast address,
    // an IPv6 /127 (RFC 6164) and /128 no subnet-router anycast.
    for (subnet, good) in [
        ("10.77.0.0/24", "10.77.0.1"),
        ("10.77.0.0/24", "10.77.0.254"),
        ("10.77.0.8/30", "10.77.0.9"),
        ("10.77.0.8/30", "10.77.0.10"),
        ("10.77.0.10/31", "10.77.0.10"),
        ("10.77.0.10/31", "10.77.0.11"),
        ("10.77.0.11/32", "10.77.0.11"),
        ("fd00:77::/64", "fd00:77::1"),
        ("fd00:77::/64", "fd00:77::ffff:ffff:ffff:ffff"),
        ("fd00:77::/126", "fd00:77::3"),
        ("fd00:77::/127", "fd00:77::"),
        ("fd00:77::/127", "fd00:77::1"),
        ("fd00:77::11/128", "fd00:77::11"),
    ] {
        assert_eq!(address_error(subnet, good), None, "{good} in {subnet}");
    }
    for (subnet, bad, words) in [
        (
            "10.77.0.0/24",
            "10.77.0.0",
            "network address of node subnet 10.77.0.0/24",
        ),
        (
            "10.77.0.0/24",
            "10.77.0.255",
            "broadcast address of node subnet 10.77.0.0/24",
        ),
        ("10.77.0.8/30", "10.77.0.8", "network address"),
        ("10.77.0.8/30", "10.77.0.11", "broadcast address"),
        ("fd00:77::/64", "fd00:77::", "subnet-router anycast address"),
        (
            "fd00:77::/126",
            "fd00:77::",
            "subnet-router anycast address",
        ),
    ] {
        let e = address_error(subnet, bad).unwrap_or_else(|| panic!("{bad} in {subnet} passed"));
        assert!(e.contains(words), "{bad} in {subnet}: {e}");
    }
    let e = address_error("10.77.0.0/24", "10.77.0.255").unwrap();
    assert!(
        e.contains("help: use a host address of 10.77.0.0/24, from 10.77.0.1 to 10.77.0.254"),
        "{e}"
    );
}

#[test]
fn link_local_mapped_and_special_addresses_are_refused() {
    // Both ends of 169.254.0.0/16 and fe80::/10, and their neighbours.
    for (subnet, bad) in [
        ("10.77.0.0/24", "169.254.0.1"),
        ("10.77.0.0/24", "169.254.255.254"),
        ("169.254.0.0/16", "169.254.0.12"),
        ("fd00:77::/64", "fe80::1"),
        ("fe80::/64", "fe80::1"),
        ("fd00:77::/64", "febf:ffff::1"),
    ] {
        let e = address_error(subnet, bad).unwrap_or_else(|| panic!("{bad} passed"));
        assert!(e.contains("is a link-local address"), "{bad}: {e}");
    }
    for (subnet, good) in [
        ("169.253.0.0/16", "169.253.255.254"),
        ("169.255.0.0/16", "169.255.0.1"),
        ("fe7f::/64", "fe7f::1"),
        ("fec0::/64", "fec0::1"),
    ] {
        assert_eq!(address_error(subnet, good), None, "{good} in {subnet}");
    }
    // Even inside a node subnet of mapped addresses, the fix is the IPv4 one.
    for subnet in ["10.77.0.0/24", "::ffff:0:0/96"] {
        let e = address_error(subnet, "::ffff:10.77.0.11").expect("mapped address passed");
        assert!(e.contains("IPv4-mapped"), "{e}");
        assert!(
            e.contains("help: write the IPv4 address, \"10.77.0.11\""),
            "{e}"
        );
    }
    assert_eq!(
        address_error("::/96", "::a4d:b"),
        None,
        "IPv4-compatible is not mapped"
    );
    for (subnet, bad) in [
        ("10.77.0.0/24", "0.0.0.0"),
        ("10.77.0.0/24", "127.0.0.1"),
        ("10.77.0.0/24", "224.0.0.1"),
        ("10.77.0.0/24", "255.255.255.255"),
        ("fd00:77::/64", "::"),
        ("fd00:77::/64", "::1"),
        ("fd00:77::/64", "ff02::1"),
    ] {
        let e = address_error(subnet, bad).unwrap_or_else(|| panic!("{bad} passed"));
        assert!(e.contains("cannot be a node address"), "{bad}: {e}");
    }
}

#[test]
fn the_vip_is_a_host_address_too() {
    let vip = |address: &str| {
        with_control_plane(
            &format!("vip = {{ address = \"{address}\", interface = \"eth0\" }}\n"),
            "",
        )
        .replace("10.77.0.21:6443", &format!("{address}:6443"))
    };
    assert!(warnings_of(&vip("10.77.0.254")).is_empty());
    for (bad, words) in [
        ("10.77.0.255", "broadcast address"),
        ("10.77.0.0", "network address"),
        ("169.254.0.100", "link-local"),
        ("::ffff:10.77.0.100", "IPv4-mapped"),
    ] {
        let d = errors_of(&vip(bad));
        let e = find(&d, "control_plane.vip.address");
        assert!(e.message.contains(words), "{bad}: {e}");
    }
}

#[test]
fn a_repeated_list_item_is_named_at_its_index() {
    let text = BASE.replace(
        "[etcd]\n",
        "[etcd]\ndiscovery = [\"static\", \"dns-srv\", \"static\"]\n",
    ) + "[images]\nformats = [\"ignition\", \"ignition\"]\n";
    let d = errors_of(&text);
    let source = find(&d, "etcd.discovery[2]");
    assert_eq!(source.message, "discovery source listed twice");
    assert_eq!(find(&d, "images.formats[1]").hint, "list each format once");
    assert!(!d.iter().any(|e| e.field == "etcd.discovery[1]"), "{d:#?}");
}

#[test]
fn the_data_dir_is_a_folder_of_etcds_own_under_var() {
    let with = |dir: &str| BASE.replace("[etcd]\n", &format!("[etcd]\ndata_dir = \"{dir}\"\n"));
    assert!(warnings_of(BASE).is_empty(), "the default /var/lib/etcd");
    for good in [
        "/var/lib/etcd",
        "/var/etcd",
        "/var/lib/etcd2",
        "/var/lib/kilnx",
        "/var/lib/dpkg-etcd",
        "/var/runner/etcd",
        "/var/log/etcd",
        "/var/opt/etcd",
    ] {
        assert!(warnings_of(&with(good)).is_empty(), "{good}");
    }
    for (bad, words) in [
        ("/etc", "not below /var: the agent chowns data_dir to the etcd user, which would hand /etc to etcd"),
        ("/", "not below /var"),
        ("/variable/etcd", "not below /var"),
        ("/srv/etcd", "not below /var"),
        ("/var", "is /var itself"),
        ("/var/", "not a clean absolute path"),
        ("/var/lib/etcd/", "not a clean absolute path"),
        ("/var//lib/etcd", "not a clean absolute path"),
        ("/var/lib/./etcd", "not a clean absolute path"),
        ("/var/lib/../../etc", "not a clean absolute path"),
        ("/var/lib/et\\u0000cd", "not a clean absolute path"),
        ("var/lib/etcd", "not an absolute path"),
        ("", "not an absolute path"),
        ("/var/lib", "is a system folder"),
        ("/var/log", "is a system folder"),
        ("/var/tmp", "is a system folder"),
        ("/var/cache", "is a system folder"),
        ("/var/run", "is a system folder"),
        ("/var/lib/dpkg", "is a system folder"),
        ("/var/lib/apt", "is a system folder"),
        ("/var/lib/systemd", "is a system folder"),
        ("/var/lib/kiln", "is kiln's state folder"),
        ("/var/lib/kiln/etcd", "inside kiln's state folder /var/lib/kiln"),
        ("/var/run/etcd", "a link into /run"),
        ("/var/lock/etcd", "a link into /run"),
    ] {
        let d = errors_of(&with(bad));
        let e = find(&d, "etcd.data_dir");
        assert!(e.message.contains(words), "{bad:?}: {e}");
        assert_eq!((e.line, e.column), (9, 12), "{bad:?}");
    }
}

fn fixtures(folder: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(folder);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("listing fixtures").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    cases
}

/// The `.expected` lines of a fixture that `output` lacks; all of them
/// when the file is missing or empty.
fn missing_lines(case: &Path, output: &str) -> Option<String> {
    let expected = std::fs::read_to_string(case.with_extension("expected")).unwrap_or_default();
    let missing: Vec<&str> = expected
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !output.contains(l))
        .collect();
    (expected.trim().is_empty() || !missing.is_empty())
        .then(|| format!("{}: missing {missing:?} in:\n{output}\n", case.display()))
}

/// The e2e test runs these through the `kiln` binary; this runs them through
/// `load()` and the resolve pass, as `kiln validate` does, so the library's
/// output is pinned even without the CLI.
#[test]
fn bad_profile_fixtures_report_their_expected_lines() {
    let cases = fixtures("bad-profiles");
    assert!(cases.len() >= 30, "only {} fixtures", cases.len());
    let validate =
        |case: &Path| -> anyhow::Result<()> { super::resolve::check_local(&load(case)?) };
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| match validate(case) {
            Ok(()) => Some(format!("{} loaded without errors", case.display())),
            Err(e) => missing_lines(case, &e.to_string()),
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn warn_profile_fixtures_load_with_their_expected_warnings() {
    let cases = fixtures("warn-profiles");
    assert!(!cases.is_empty());
    for case in &cases {
        let loaded = load(case).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        assert!(
            !loaded.warnings.is_empty(),
            "{} has no warnings",
            case.display()
        );
        let output: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
        if let Some(failure) = missing_lines(case, &output.join("\n")) {
            panic!("{failure}");
        }
    }
}

#[test]
fn extra_files_stay_out_of_the_read_only_os() {
    let with = |path: &str| {
        BASE.to_owned()
            + &format!(
                "\n[[images.etcd.files]]\npath = \"{path}\"\ncontents = {{ inline = \"x\" }}\n"
            )
    };
    for good in [
        "/etc/motd",
        "/var/lib/site/x",
        "/usr/local/bin/site",
        "/opt/site/x",
        "/usrx",
    ] {
        assert!(warnings_of(&with(good)).is_empty(), "{good}");
    }
    for bad in [
        "/usr/share",
        "/usr/share/x",
        "/bin/site",
        "/lib64/x",
        "/usr/localx",
    ] {
        let d = errors_of(&with(bad));
        let e = find(&d, "images.etcd.files[0].path");
        assert!(e.message.contains("is under /usr"), "{bad}: {e}");
        assert!(e.hint.contains("images.etcd.packages"), "{bad}: {e}");
    }
}

#[test]
fn extra_files_stay_out_of_kilns_units_and_systemds_unit_folders() {
    let with = |path: &str| {
        BASE.to_owned()
            + &format!(
                "\n[[images.etcd.files]]\npath = \"{path}\"\ncontents = {{ inline = \"x\" }}\n"
            )
    };
    for (bad, words) in [
        (
            "/etc/systemd/system/kiln-firstboot.service",
            "kiln's unit kiln-firstboot.service",
        ),
        (
            "/etc/systemd/system/timers.target.wants/kiln-renew.timer",
            "enabled through",
        ),
        (
            "/etc/systemd/system/etcd.service.d/05-kiln-gate.conf",
            "kiln's drop-in",
        ),
        (
            "/etc/systemd/system/etcd.service.d/10-kiln.conf",
            "kiln's drop-in",
        ),
        (
            "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
            "kiln's drop-in",
        ),
        (
            "/etc/systemd/system/site.service",
            "a folder of systemd's units",
        ),
        (
            "/etc/systemd/system/site.service.d/50-site.conf",
            "a folder of systemd's units",
        ),
        (
            "/lib/systemd/system/site.service",
            "is in /usr/lib/systemd/system",
        ),
        (
            "/usr/lib/systemd/system/site.service.d/x.conf",
            "a folder of systemd's units",
        ),
        (
            "/run/systemd/system/site.service",
            "a folder of systemd's units",
        ),
        (
            "/usr/local/lib/systemd/system/site.service",
            "a folder of systemd's units",
        ),
        ("/etc/systemd", "holds /etc/systemd/system"),
        ("/etc", "holds /etc/kiln"),
        ("/usr", "holds /usr/"),
        ("/etc/default/kubelet", "kiln's own"),
        ("/usr/lib/kiln/embedded.ign", "under /usr/lib/kiln"),
    ] {
        let d = errors_of(&with(bad));
        let e = find(&d, "images.etcd.files[0].path");
        assert!(e.message.contains(words), "{bad}: {e}");
    }
    for good in [
        "/etc/systemd/network/50-site.network",
        "/etc/systemd/journald.conf.d/x.conf",
    ] {
        assert!(warnings_of(&with(good)).is_empty(), "{good}");
    }
}

#[test]
fn units_keep_off_kilns_units_drop_ins_and_masks() {
    let unit = |role: &str, entry: &str| {
        with_control_plane("", "") + &format!("\n[[images.{role}.units]]\n{entry}\n")
    };
    let swap = "name = \"swap.target\"\ncontents = \"[Unit]\\n\"";
    for role in ["master", "worker"] {
        let d = errors_of(&unit(role, swap));
        let e = find(&d, &format!("images.{role}.units[0].name"));
        assert!(e.message.contains("kiln masks swap.target"), "{e}");
    }
    assert!(
        warnings_of(&unit("etcd", swap)).is_empty(),
        "etcd nodes mask nothing"
    );
    for (name, dropin, words) in [
        (
            "kubelet.service",
            "10-kubeadm.conf",
            "has a drop-in 10-kubeadm.conf",
        ),
        ("etcd.service", "10-kiln.conf", "named *kiln*"),
        ("etcd.service", "05-kiln-gate.conf", "named *kiln*"),
    ] {
        let entry = format!(
            "name = \"{name}\"\ndropins = [{{ name = \"{dropin}\", contents = \"[Service]\\n\" }}]"
        );
        let d = errors_of(&unit("worker", &entry));
        let e = find(&d, "images.worker.units[0].dropins[0].name");
        assert!(e.message.contains(words), "{name} {dropin}: {e}");
    }
    let own = "name = \"kubelet.service\"\ndropins = [{ name = \"50-site.conf\", contents = \"[Service]\\n\" }]";
    assert!(warnings_of(&unit("worker", own)).is_empty());
}

#[test]
fn pods_services_and_masters_share_one_address_family() {
    let v6 = |subnets: &str| {
        with_control_plane("", "")
            .replace("10.77.0.0/24", "fd00:77::/64")
            .replace("10.77.0.11", "fd00:77::11")
            .replace("10.77.0.21:6443", "[fd00:77::21]:6443")
            .replace("10.77.0.21", "fd00:77::21")
            .replace(
                "node_subnets = [\"fd00:77::/64\"]",
                &format!("node_subnets = [\"fd00:77::/64\"]\n{subnets}"),
            )
    };
    let d = errors_of(&v6(""));
    for field in ["cluster.pod_subnet", "cluster.service_subnet"] {
        let e = find(&d, field);
        assert!(e.message.contains("(the default) is IPv4"), "{e}");
        assert!(e.message.contains("fd00:77::21 is IPv6"), "{e}");
        assert!(e.hint.contains("fd00:10:244::/56"), "{e}");
    }
    let both = "pod_subnet = \"fd00:10:244::/56\"\nservice_subnet = \"fd00:10:96::/108\"";
    assert!(warnings_of(&v6(both)).is_empty());
    let mixed = "pod_subnet = \"fd00:10:244::/56\"\nservice_subnet = \"10.96.0.0/12\"";
    let d = errors_of(&v6(mixed));
    assert!(find(&d, "cluster.service_subnet")
        .message
        .contains("is IPv4"));
    assert!(!d.iter().any(|e| e.field == "cluster.pod_subnet"), "{d:#?}");
    // Without masters the pod subnet is the reference.
    let etcd_only = BASE.replace(
        "node_subnets = [\"10.77.0.0/24\"]",
        "node_subnets = [\"10.77.0.0/24\"]\nservice_subnet = \"fd00:10:96::/108\"",
    );
    let d = errors_of(&etcd_only);
    let e = find(&d, "cluster.service_subnet");
    assert!(
        e.message.contains("pod subnet 10.244.0.0/16 is IPv4"),
        "{e}"
    );
    let v6_etcd = BASE
        .replace("10.77.0.0/24", "fd00:77::/64")
        .replace("10.77.0.11", "fd00:77::11");
    assert!(warnings_of(&v6_etcd).is_empty(), "etcd alone runs no pods");
}

#[test]
fn every_cloud_format_is_a_disk_needing_a_base_and_taking_the_embedded_config() {
    for format in ["vhd", "gce", "vmdk", "ova"] {
        let images = format!("\n[images]\nformats = [\"ignition\", \"{format}\"]\n");
        let refused = errors_of(&(BASE.to_owned() + &images));
        let d = find(&refused, "images.formats[1]");
        assert!(
            d.message
                .contains("a bootable disk needs an operating system"),
            "{d:?}"
        );
        let embedded = format!("{images}base = \"debian\"\nembed_config = true\n");
        let (_dir, loaded) = load_text(&(BASE.to_owned() + &embedded));
        let loaded = loaded.unwrap_or_else(|e| panic!("{format}: {e}"));
        assert!(
            loaded.warnings.is_empty(),
            "{format}: {:?}",
            loaded.warnings
        );
    }
    let (_dir, loaded) = load_text(
        &(BASE.to_owned() + "\n[images]\nformats = [\"ignition\"]\nembed_config = true\n"),
    );
    let loaded = loaded.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.warnings[0].field, "images.embed_config");
}
