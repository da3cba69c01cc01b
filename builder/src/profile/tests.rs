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
kubernetes_version = "1.31.2"
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
        .replace("1.31.2", "1.26.0")
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
/// `load()` so the library's output is pinned even without the CLI.
#[test]
fn bad_profile_fixtures_report_their_expected_lines() {
    let cases = fixtures("bad-profiles");
    assert!(cases.len() >= 30, "only {} fixtures", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| match load(case) {
            Ok(_) => Some(format!("{} loaded without errors", case.display())),
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
