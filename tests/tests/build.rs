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
    for key in ["ca.key", "etcd/ca.key", "sa.key", "etcd/kiln-agent.key"] {
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
    kiln_e2e::artifacts::holds_private_key(bytes)
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
    // The etcd role carries the etcd CA key (every member mints its own
    // serving and peer pair with it) and the agent's key, and no other: no
    // member's key is in the config, the secrets folder or the manifest.
    let secret = |k: &str| fs::read(build.secrets().join(k)).unwrap();
    let mut etcd_keys: Vec<Vec<u8>> = all_payloads(&out, "etcd")
        .into_iter()
        .filter(|(_, f)| is_private_key(&f.bytes))
        .map(|(_, f)| f.bytes)
        .collect();
    etcd_keys.sort();
    etcd_keys.dedup();
    let mut expected = vec![secret("etcd/ca.key"), secret("etcd/kiln-agent.key")];
    expected.sort();
    assert_eq!(etcd_keys, expected, "the etcd artifacts' private keys");
    assert!(!build.secrets().join("etcd/members").exists());
    let manifest = fs::read_to_string(out.join("manifest.json")).unwrap();
    assert!(!manifest.contains("PRIVATE KEY"), "{manifest}");
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

/// A secrets folder from before members minted their own certificates
/// still holds etcd/members/: a build keeps it byte for byte (no secret is
/// deleted), bakes none of it, and `kiln certs` does not judge those
/// unused files (an expired one does not make it exit 1).
#[test]
fn an_older_folders_member_certificates_are_kept_unused_and_unlisted() {
    let build = Build::new();
    build.ok(&profile("example.toml"));
    let s = build.secrets();
    let old = s.join("etcd/members/etcd1");
    fs::create_dir_all(&old).unwrap();
    // A leaf of the etcd CA as an older build left it, expired by now.
    let pem = |f: &str| fs::read_to_string(s.join(f)).unwrap();
    let ca = kiln_node::pki::Authority::load(&pem("etcd/ca.crt"), &pem("etcd/ca.key")).unwrap();
    let leaf = ca
        .issue(&kiln_node::pki::LeafSpec {
            common_name: "etcd1".into(),
            organization: None,
            usage: kiln_node::pki::Usage::Server,
            dns_names: vec!["etcd1".into()],
            ips: vec![],
            algorithm: kiln_node::pki::KeyAlgorithm::EcdsaP256,
            validity_seconds: 1,
        })
        .unwrap();
    let (cert, key) = (old.join("server.crt"), old.join("server.key"));
    fs::write(&cert, &leaf.cert_pem).unwrap();
    fs::write(&key, &leaf.key_pem).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(!valid_for(&cert, 0), "the old leaf has expired");
    let before = digests(&s);
    build.ok(&profile("example.toml"));
    assert_eq!(digests(&s), before, "the build changed the secrets folder");
    let old_key = fs::read(&key).unwrap();
    assert!(
        !all_payloads(&build.out(), "etcd")
            .iter()
            .any(|(_, f)| f.bytes == old_key),
        "the old member key was baked"
    );
    let certs = run(kiln()
        .arg("certs")
        .arg(profile("example.toml"))
        .arg("--secrets")
        .arg(&s));
    let table = String::from_utf8_lossy(&certs.stdout);
    assert!(
        certs.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&certs.stderr)
    );
    assert!(!table.contains("etcd/members"), "{table}");
    assert!(String::from_utf8_lossy(&certs.stderr).contains("older kiln"));
}

/// User-data of constant size: with 7 etcd members, 7 masters and 20 extra
/// names on each, every role's config fits EC2's 16 KiB (members mint their
/// own certificates, so no member adds a key). A limit one byte under the
/// largest config refuses the build (exit 2, naming the role, its size and
/// the fix) and leaves the previous output as it was; the exact size passes.
#[test]
fn every_config_of_a_seven_member_cluster_fits_16_kib_and_the_limit_is_enforced() {
    let build = Build::new();
    let large = kiln_e2e::fixture("profiles/seven-members-seven-masters.toml");
    build.ok(&large);
    let out = build.out();
    let sizes: Vec<(&str, u64)> = ROLES
        .iter()
        .map(|role| {
            let ign = out.join(format!("{role}/{role}.ign"));
            (*role, fs::metadata(&ign).unwrap().len())
        })
        .collect();
    for (role, size) in &sizes {
        assert!(*size <= 16 * 1024, "{role}.ign is {size} bytes");
    }
    let (role, largest) = *sizes.iter().max_by_key(|(_, size)| *size).unwrap();
    let text = fs::read_to_string(&large).unwrap();
    let with_limit = |limit: u64| {
        let path = build.dir.path().join(format!("limit-{limit}.toml"));
        let edited = text.replacen(
            "[images]\n",
            &format!("[images]\nuser_data_limit = {limit}\n"),
            1,
        );
        assert_ne!(edited, text, "the fixture has an [images] table");
        fs::write(&path, edited).unwrap();
        path
    };
    let before = digests(&out);
    let refused = build.run(&with_limit(largest - 1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!(
            "images.user_data_limit: the {role} Ignition config is {largest} bytes"
        )),
        "{said}"
    );
    assert!(said.contains("help: make the config smaller"), "{said}");
    assert_eq!(digests(&out), before, "a refused build changed the output");
    build.ok(&with_limit(largest));
}
