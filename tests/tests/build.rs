//! `kiln build` end to end: the PKI checked by openssl, least privilege in
//! worker artifacts, key permissions, reproducibility, the secrets folder's
//! guarantees and the all-or-nothing output.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use kiln_e2e::artifacts::{ignition_files, layer_build, tarball_files, Build, PayloadFile};
use kiln_e2e::{kiln, profile, run, run_ok};

const ROLES: [&str; 3] = ["etcd", "master", "worker"];

fn openssl(args: &[&str]) -> String {
    run_ok(Command::new("openssl").args(args))
}

/// `openssl x509 -noout -ext ...` of a certificate file.
fn extensions(cert: &Path) -> String {
    openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-ext",
        "basicConstraints,keyUsage,extendedKeyUsage,subjectAltName",
    ])
}

fn verify(ca: &Path, leaf: &Path) {
    let out = openssl(&[
        "verify",
        "-CAfile",
        ca.to_str().unwrap(),
        leaf.to_str().unwrap(),
    ]);
    assert!(out.trim().ends_with(": OK"), "{out}");
}

#[test]
fn every_leaf_verifies_against_its_ca_with_the_runbook_usages() {
    let build = Build::new();
    build.ok(&profile("example.toml"));
    let s = build.secrets();
    for ca in ["etcd/ca.crt", "ca.crt", "front-proxy-ca.crt"] {
        let ext = extensions(&s.join(ca));
        assert!(ext.contains("CA:TRUE, pathlen:0"), "{ca}: {ext}");
        assert!(ext.contains("Certificate Sign"), "{ca}: {ext}");
    }
    for client in [
        "apiserver-etcd-client.crt",
        "etcd/operator.crt",
        "etcd/kiln-agent.crt",
    ] {
        verify(&s.join("etcd/ca.crt"), &s.join(client));
        let ext = extensions(&s.join(client));
        assert!(ext.contains("TLS Web Client Authentication"), "{ext}");
        assert!(
            !ext.contains("TLS Web Server Authentication"),
            "client only: {ext}"
        );
        assert!(ext.contains("CA:FALSE"), "{ext}");
    }
    for (name, ip) in [
        ("etcd1", "10.10.0.11"),
        ("etcd2", "10.10.0.12"),
        ("etcd3", "10.10.0.13"),
    ] {
        for kind in ["server", "peer"] {
            let cert = s.join(format!("etcd/members/{name}/{kind}.crt"));
            verify(&s.join("etcd/ca.crt"), &cert);
            let ext = extensions(&cert);
            assert!(
                ext.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
                "{name} {kind}: {ext}"
            );
            assert_eq!(
                sans_of(&cert),
                format!(
                    "DNS:{name}, DNS:{name}.cluster.example, DNS:localhost, \
                     IP Address:{ip}, IP Address:127.0.0.1"
                ),
                "{name} {kind} SANs"
            );
        }
    }
}

/// The SAN line of `openssl x509 -ext` for a certificate.
fn sans_of(cert: &Path) -> String {
    extensions(cert)
        .lines()
        .skip_while(|l| !l.contains("Subject Alternative Name"))
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// etcd.endpoint, added to a cluster's profile: the next build reissues
/// every listed member's server and peer certificates with their keys,
/// naming the endpoint's host, so clients reaching a member through the
/// load balancer verify it.
#[test]
fn adding_etcd_endpoint_reissues_the_member_certificates_naming_its_host() {
    let build = Build::new();
    build.ok(&profile("example.toml"));
    let s = build.secrets();
    let text = fs::read_to_string(profile("example.toml")).unwrap();
    for (host, san) in [
        ("etcd.cluster.example", "DNS:etcd.cluster.example"),
        ("10.10.0.50", "IP Address:10.10.0.50"),
    ] {
        let with_endpoint = build.dir.path().join(format!("endpoint-{host}.toml"));
        let edited = text.replacen(
            "[etcd]\n",
            &format!("[etcd]\nendpoint = \"{host}:2379\"\n"),
            1,
        );
        assert_ne!(edited, text, "example.toml has an [etcd] table");
        fs::write(&with_endpoint, edited).unwrap();
        let before = digests(&s);
        let out = build.run(&with_endpoint);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let after = digests(&s);
        for name in ["etcd1", "etcd2", "etcd3"] {
            for kind in ["server", "peer"] {
                let stem = format!("etcd/members/{name}/{kind}");
                let cert = s.join(format!("{stem}.crt"));
                verify(&s.join("etcd/ca.crt"), &cert);
                let sans = sans_of(&cert);
                assert!(sans.contains(san), "{stem}: {sans}");
                assert!(stderr.contains(&format!("reissued {stem}.crt")), "{stderr}");
                let key = format!("{stem}.key");
                assert_eq!(before[&key], after[&key], "{key} changed");
            }
        }
    }
}

#[test]
fn ca_is_backdated_and_keys_are_ecdsa_that_openssl_loads() {
    let build = Build::new();
    build.ok(&profile("example.toml"));
    let s = build.secrets();
    let not_before = openssl(&[
        "x509",
        "-in",
        s.join("ca.crt").to_str().unwrap(),
        "-noout",
        "-startdate",
    ]);
    let date = not_before.trim().trim_start_matches("notBefore=");
    let epoch = run_ok(Command::new("date").args(["-u", "-d", date, "+%s"]));
    let now = run_ok(Command::new("date").arg("+%s"));
    let skew: i64 = now.trim().parse::<i64>().unwrap() - epoch.trim().parse::<i64>().unwrap();
    assert!(skew >= 30 * 60, "CA NotBefore is only {skew} s in the past");
    for key in [
        "ca.key",
        "etcd/ca.key",
        "sa.key",
        "etcd/members/etcd1/server.key",
    ] {
        let text = openssl(&[
            "pkey",
            "-in",
            s.join(key).to_str().unwrap(),
            "-noout",
            "-text",
        ]);
        assert!(
            text.contains("ASN1 OID: prime256v1"),
            "{key} is not ECDSA P-256: {text}"
        );
    }
}

#[test]
fn discovery_hash_matches_openssl() {
    let build = Build::new();
    build.ok(&profile("example.toml"));
    let ca = build.secrets().join("ca.crt");
    let pipeline = format!(
        "openssl x509 -pubkey -noout -in {} | openssl pkey -pubin -outform der | sha256sum",
        ca.display()
    );
    let expected = run_ok(Command::new("sh").arg("-c").arg(&pipeline));
    let expected = format!("sha256:{}", expected.split_whitespace().next().unwrap());
    for role in ["master", "worker"] {
        let files = ignition_files(&build.out().join(format!("{role}/{role}.ign")));
        let node = files
            .iter()
            .find(|f| f.path == "/etc/kiln/node.toml")
            .expect("node.toml is in the config");
        let text = String::from_utf8_lossy(&node.bytes);
        assert!(
            text.contains(&format!("discovery_hash = \"{expected}\"")),
            "{role} node.toml lacks {expected}:\n{text}"
        );
    }
}

#[test]
fn masters_node_toml_carries_the_node_subnets() {
    let build = Build::new();
    build.ok(&profile("example.toml"));
    let files = ignition_files(&build.out().join("master/master.ign"));
    let node = files
        .iter()
        .find(|f| f.path == "/etc/kiln/node.toml")
        .expect("node.toml is in the config");
    let path = build.dir.path().join("master-node.toml");
    std::fs::write(&path, &node.bytes).unwrap();
    let config = kiln_node::NodeConfig::load(&path)
        .expect("the master's node.toml loads as the agent reads it");
    let subnets: Vec<String> = config
        .control_plane
        .expect("a master's control plane")
        .node_subnets
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        subnets,
        ["10.10.0.0/24"],
        "profiles/example.toml's cluster.node_subnets"
    );
}

fn all_payloads(out: &Path, role: &str) -> Vec<(String, PayloadFile)> {
    let ign = ignition_files(&out.join(format!("{role}/{role}.ign")));
    let tar = tarball_files(&out.join(format!("{role}/rootfs.tar.gz")));
    ign.into_iter()
        .map(|f| (format!("{role}.ign"), f))
        .chain(tar.into_iter().map(|f| ("rootfs.tar.gz".to_owned(), f)))
        .collect()
}

fn is_private_key(bytes: &[u8]) -> bool {
    String::from_utf8_lossy(bytes).contains("PRIVATE KEY-----")
}

#[test]
fn worker_artifacts_hold_no_private_key_and_every_key_is_0600() {
    let build = Build::new();
    build.ok(&profile("example.toml"));
    let out = build.out();
    let ca_keys: Vec<Vec<u8>> = ["ca.key", "etcd/ca.key", "front-proxy-ca.key"]
        .iter()
        .map(|k| fs::read(build.secrets().join(k)).unwrap())
        .collect();
    for role in ROLES {
        let payloads = all_payloads(&out, role);
        assert!(
            payloads.len() > 3,
            "{role}: artifacts decoded to {} files",
            payloads.len()
        );
        for (artifact, file) in &payloads {
            if role == "worker" {
                assert!(
                    !is_private_key(&file.bytes),
                    "worker {artifact} carries a private key at {}",
                    file.path
                );
                assert!(!ca_keys.contains(&file.bytes), "worker holds a CA key");
            }
            if is_private_key(&file.bytes) || file.path.ends_with("bootstrap-token") {
                assert_eq!(
                    file.mode & 0o7777,
                    0o600,
                    "{role} {artifact} {} is {:o}",
                    file.path,
                    file.mode
                );
            }
        }
        let token = payloads.iter().any(|(_, f)| {
            f.path == "/etc/kiln/pki/bootstrap-token" || f.path.ends_with("bootstrap-token")
        });
        assert_eq!(token, role != "etcd", "{role}: bootstrap token presence");
    }
    // The etcd role carries the etcd CA key (dynamic members mint their own
    // certificates) but never the cluster or front-proxy CA keys.
    let etcd = all_payloads(&out, "etcd");
    assert!(etcd.iter().any(|(_, f)| f.bytes == ca_keys[1]));
    assert!(!etcd
        .iter()
        .any(|(_, f)| f.bytes == ca_keys[0] || f.bytes == ca_keys[2]));
}

fn digests(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn two_builds_are_byte_identical_and_reuse_the_secrets_untouched() {
    let build = Build::new();
    build.ok(&profile("example.toml"));
    let secrets_before = digests(&build.secrets());
    let mtimes = || -> Vec<_> {
        secrets_before
            .keys()
            .map(|k| {
                fs::metadata(build.secrets().join(k))
                    .unwrap()
                    .modified()
                    .unwrap()
            })
            .collect()
    };
    let mtimes_before = mtimes();
    let second = build.dir.path().join("second");
    let out = build.run_into(&profile("example.toml"), &second);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = digests(&build.out());
    let again = digests(&second);
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        again.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &first {
        assert!(bytes == &again[name], "{name} differs between two builds");
    }
    assert_eq!(digests(&build.secrets()), secrets_before, "secrets changed");
    let mtimes_after = mtimes();
    assert_eq!(mtimes_before, mtimes_after, "secrets were rewritten");
}

#[test]
fn manifest_lists_every_artifact_with_its_digest() {
    let build = Build::new();
    build.ok(&profile("example.toml"));
    let out = build.out();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["cluster"], "example");
    assert!(manifest["profile"]["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    for role in ROLES {
        let artifacts = manifest["roles"][role]["artifacts"].as_array().unwrap();
        assert_eq!(artifacts.len(), 2, "{role}");
        for artifact in artifacts {
            let path = out.join(artifact["path"].as_str().unwrap());
            let sha = run_ok(Command::new("sha256sum").arg(&path));
            assert_eq!(
                artifact["sha256"].as_str().unwrap(),
                sha.split_whitespace().next().unwrap()
            );
            assert_eq!(
                artifact["size"].as_u64().unwrap(),
                fs::metadata(&path).unwrap().len()
            );
            // The config holds the keys or the token; the OS tree is public.
            let secret = artifact["path"].as_str().unwrap().ends_with(".ign");
            assert_eq!(artifact["carries_secrets"], secret, "{}", path.display());
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(
                mode,
                if secret { 0o600 } else { 0o644 },
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn secrets_folder_is_private_and_refused_when_it_is_not_or_is_another_clusters() {
    let build = Build::new();
    build.ok(&profile("example.toml"));
    let s = build.secrets();
    assert_eq!(
        fs::metadata(&s).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for (name, _) in digests(&s) {
        if name.ends_with(".key") || name == "bootstrap-token" {
            let mode = fs::metadata(s.join(&name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
    }
    // Another cluster's profile pointed at this folder.
    let other = build.run(&profile("local.toml"));
    assert_eq!(other.status.code(), Some(1));
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(
        err.contains("belongs to cluster \"example\", not \"local\""),
        "{err}"
    );
    // A folder others can read.
    fs::set_permissions(&s, fs::Permissions::from_mode(0o755)).unwrap();
    let open = build.run(&profile("example.toml"));
    assert_eq!(open.status.code(), Some(1));
    let err = String::from_utf8_lossy(&open.stderr);
    assert!(err.contains("accessible to group or others"), "{err}");
    assert!(err.contains("chmod 700"), "{err}");
}

#[test]
fn a_failed_build_leaves_the_previous_output_untouched() {
    let build = Build::new();
    build.ok(&profile("local.toml"));
    let before = digests(&build.out());
    // Same profile, but the etcd base image is not a tarball: rendering fails
    // after secrets and layers were prepared.
    let dir = build.dir.path();
    fs::write(dir.join("broken-base.tar.gz"), b"not a tarball").unwrap();
    let text = fs::read_to_string(profile("local.toml")).unwrap();
    let broken = dir.join("broken.toml");
    let etcd = "\n[images.etcd]\n";
    assert!(text.contains(etcd));
    fs::write(
        &broken,
        text.replace(etcd, &format!("{etcd}base = \"broken-base.tar.gz\"\n")),
    )
    .unwrap();
    // Without --base, so that the profile's base applies.
    let out = run(kiln()
        .arg("build")
        .arg(&broken)
        .arg("--out")
        .arg(build.out())
        .arg("--secrets")
        .arg(build.secrets())
        .args(["--formats", "ignition,rootfs"])
        .env("CI", "true"));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(digests(&build.out()), before, "the previous output changed");
    let leftovers: Vec<_> = fs::read_dir(build.out())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
}

#[test]
fn deleting_the_token_file_rotates_the_bootstrap_token_alone() {
    let build = Build::new();
    build.ok(&profile("example.toml"));
    let s = build.secrets();
    let before = digests(&s);
    let old = fs::read_to_string(s.join("bootstrap-token")).unwrap();
    fs::remove_file(s.join("bootstrap-token")).unwrap();
    let out = build.run(&profile("example.toml"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("generated a new bootstrap token"),
        "{stderr}"
    );
    let after = digests(&s);
    let new = String::from_utf8(after["bootstrap-token"].clone()).unwrap();
    assert_ne!(new, old, "the token was not rotated");
    let (id, secret) = new.trim().split_once('.').unwrap();
    assert_eq!((id.len(), secret.len()), (6, 16), "{new}");
    let mode = fs::metadata(s.join("bootstrap-token"))
        .unwrap()
        .permissions();
    assert_eq!(mode.mode() & 0o777, 0o600);
    for (name, bytes) in &before {
        if name != "bootstrap-token" {
            assert!(bytes == &after[name], "{name} changed with the token");
        }
    }
    for role in ["master", "worker"] {
        let token = all_payloads(&build.out(), role)
            .into_iter()
            .find(|(_, f)| f.path.ends_with("bootstrap-token"))
            .map(|(_, f)| f.bytes);
        assert_eq!(token, Some(new.clone().into_bytes()), "{role} token");
    }
    // The next build keeps it.
    let again = build.run(&profile("example.toml"));
    assert!(!String::from_utf8_lossy(&again.stderr).contains("new bootstrap token"));
    assert_eq!(digests(&s), after);
}

/// `kiln build profiles/example.toml --out OUT --secrets SECRETS`, layer only.
fn build_into(out: &Path, secrets: &Path) -> std::process::Output {
    layer_build(&profile("example.toml"), out, secrets, &[])
}

fn refused_with(out: &std::process::Output, words: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(words), "{stderr}");
}

/// The data-loss cases of earlier builds: the secrets folder as the output
/// folder, inside a role folder of it, or around it; a folder under --out
/// that kiln did not make. Each is refused (exit 2) and leaves every byte.
#[test]
fn builds_never_replace_secrets_or_folders_kiln_did_not_make() {
    let build = Build::new();
    build.ok(&profile("example.toml"));
    let dir = build.dir.path();
    let secrets = build.secrets();
    let before = digests(&secrets);

    refused_with(&build_into(&secrets, &secrets), "same folder");
    assert_eq!(digests(&secrets), before);
    refused_with(
        &build_into(&secrets.join("out"), &secrets),
        "inside the secrets folder",
    );
    assert_eq!(digests(&secrets), before);
    assert!(!secrets.join("out").exists());

    // The secrets folder as <out>/etcd, where the etcd images go.
    let out = dir.join("o2");
    fs::create_dir(&out).unwrap();
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(&secrets)
            .arg(out.join("etcd")),
    );
    refused_with(
        &build_into(&out, &out.join("etcd")),
        "inside the output folder",
    );
    assert_eq!(digests(&out.join("etcd")), before);

    // Someone else's folder where kiln would put the worker images.
    let out = dir.join("o3");
    fs::create_dir_all(out.join("worker")).unwrap();
    fs::write(out.join("worker/notes.txt"), "mine").unwrap();
    refused_with(&build_into(&out, &secrets), "kiln did not make it");
    assert_eq!(
        fs::read_to_string(out.join("worker/notes.txt")).unwrap(),
        "mine"
    );
    assert!(!out.join("manifest.json").exists());
    assert_eq!(digests(&secrets), before);

    // kiln's own output is replaced as before.
    assert!(build_into(&build.out(), &secrets).status.success());
    assert!(build.out().join("etcd/.kiln-output").is_file());
}

/// `kiln build --base none` bakes the layer alone even when the profile
/// names a base folder for a role: a host folder's key never reaches a
/// tarball the command line asked to keep bare.
#[test]
fn the_command_lines_base_beats_the_profiles() {
    let build = Build::new();
    let dir = build.dir.path();
    let base = dir.join("host-root");
    fs::create_dir_all(base.join("root")).unwrap();
    fs::write(
        base.join("root/id_ed25519"),
        "-----BEGIN OPENSSH PRIVATE KEY-----\n",
    )
    .unwrap();
    let text = fs::read_to_string(profile("local.toml")).unwrap();
    let with_base = dir.join("with-base.toml");
    fs::write(
        &with_base,
        text.replace(
            "\n[images.etcd]\n",
            "\n[images.etcd]\nbase = \"host-root\"\n",
        ),
    )
    .unwrap();
    build.ok(&with_base);
    let files = tarball_files(&build.out().join("etcd/rootfs.tar.gz"));
    assert!(
        files.iter().all(|f| !f.path.contains("id_ed25519")),
        "the base folder was baked"
    );
    assert!(files.iter().any(|f| f.path == "/usr/bin/kiln-firstboot"));
}

/// Whether openssl says `cert` is still valid `seconds` from now.
fn valid_for(cert: &Path, seconds: u64) -> bool {
    run(Command::new("openssl")
        .args(["x509", "-noout", "-checkend", &seconds.to_string(), "-in"])
        .arg(cert))
    .status
    .success()
}

/// A rebuild outside the renewal window changes no byte of the secrets; one
/// inside it reissues every leaf with its existing key and keeps the CAs.
#[test]
fn a_rebuild_reissues_the_leaves_inside_the_renewal_window_only() {
    let build = Build::new();
    let dir = build.dir.path();
    let text = fs::read_to_string(profile("example.toml")).unwrap();
    let with_pki = |pki: &str| {
        let path = dir.join(format!("pki-{}.toml", pki.len()));
        let replaced = text.replace("leaf_validity_days = 365", pki);
        assert_ne!(replaced, text, "example.toml has leaf_validity_days = 365");
        fs::write(&path, replaced).unwrap();
        path
    };
    let short = with_pki("leaf_validity = \"10m\"");
    build.ok(&short);
    let s = build.secrets();
    let first = digests(&s);
    let leaves = [
        "apiserver-etcd-client.crt",
        "etcd/operator.crt",
        "etcd/kiln-agent.crt",
        "etcd/members/etcd1/server.crt",
        "etcd/members/etcd2/peer.crt",
    ];
    for leaf in leaves {
        assert!(!valid_for(&s.join(leaf), 1_800), "{leaf} lives 10 minutes");
    }

    let again = build.run(&short);
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stderr).contains("reissued"));
    assert_eq!(
        digests(&s),
        first,
        "a rebuild outside the window changed the secrets"
    );

    let longer = with_pki("leaf_validity = \"1h\"\nrenew_before = \"30m\"");
    // `kiln certs` sees the same: every certificate, each judged against
    // the profile's window, exit 1 when one is due.
    let certs = |profile: &Path, json: bool| {
        let mut cmd = kiln();
        cmd.arg("certs").arg(profile).arg("--secrets").arg(&s);
        if json {
            cmd.arg("--json");
        }
        run(&mut cmd)
    };
    let listed = certs(&short, true);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let crts = first.keys().filter(|n| n.ends_with(".crt")).count();
    assert_eq!(rows.as_array().map(Vec::len), Some(crts));
    assert!(rows
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["standing"] == "valid"));
    let due = certs(&longer, false);
    assert_eq!(due.status.code(), Some(1));
    let table = String::from_utf8_lossy(&due.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("etcd/kiln-agent.crt") && l.contains("RENEW")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("etcd/ca.crt") && l.contains(" ok ")),
        "{table}"
    );
    assert!(String::from_utf8_lossy(&due.stderr).contains("renewal window"));

    let renewed = build.run(&longer);
    let stderr = String::from_utf8_lossy(&renewed.stderr);
    assert!(renewed.status.success(), "{stderr}");
    let after = digests(&s);
    for (name, bytes) in &first {
        let leaf = name.ends_with(".crt") && !name.ends_with("ca.crt");
        if leaf {
            assert_ne!(bytes, &after[name], "{name} was not reissued");
            assert!(
                stderr.contains(&format!("reissued {}", name)),
                "{name}: {stderr}"
            );
        } else {
            assert_eq!(bytes, &after[name], "{name} changed: keys and CAs stay");
        }
    }
    for leaf in leaves {
        assert!(valid_for(&s.join(leaf), 1_800), "{leaf} was not renewed");
        let key = s.join(leaf.replace(".crt", ".key"));
        let pubkey =
            |args: &[&str], file: &Path| run_ok(Command::new("openssl").args(args).arg(file));
        assert_eq!(
            pubkey(&["x509", "-noout", "-pubkey", "-in"], &s.join(leaf)),
            pubkey(&["pkey", "-pubout", "-in"], &key),
            "{leaf} is not for its old key"
        );
    }
}
