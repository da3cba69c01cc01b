//! Bad input through the real `kiln` binary: every fixture in
//! tests/fixtures/bad-profiles makes `kiln validate` and `kiln build` exit 2
//! with the positioned diagnostics of its `.expected` file, and a build
//! writes nothing. Warning-only fixtures and the shipped profiles validate.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use kiln_e2e::{fixture, kiln, profile, run};

/// The `<case>.toml` files of a fixture folder, sorted.
fn cases(folder: &str) -> Vec<PathBuf> {
    let dir = fixture(folder);
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("listing fixtures").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    cases
}

/// The lines `<case>.expected` requires in the output.
fn expected_lines(case: &Path) -> Vec<String> {
    let path = case.with_extension("expected");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(!lines.is_empty(), "{} is empty", path.display());
    lines
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Problems with one run, or nothing when it exited `code` and its stderr
/// holds every expected line.
fn mismatch(what: &str, out: &Output, code: i32, expected: &[String]) -> Option<String> {
    let stderr = text(&out.stderr);
    let missing: Vec<&String> = expected.iter().filter(|l| !stderr.contains(*l)).collect();
    (out.status.code() != Some(code) || !missing.is_empty()).then(|| {
        format!(
            "{what}: exit {:?} (want {code}), missing {missing:?}\nstdout:\n{}\nstderr:\n{stderr}",
            out.status.code(),
            text(&out.stdout)
        )
    })
}

#[test]
fn bad_profiles_are_rejected_with_positions_and_fixes() {
    let cases = cases("bad-profiles");
    assert!(
        cases.len() >= 30,
        "only {} bad-profile fixtures",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let expected = expected_lines(case);
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();

        let out = run(kiln().arg("validate").arg(case));
        failures.extend(mismatch(
            &format!("kiln validate {name}"),
            &out,
            2,
            &expected,
        ));

        let tmp = tempfile::tempdir().expect("temporary folder");
        let (out_dir, secrets) = (tmp.path().join("out"), tmp.path().join("secrets"));
        let out = run(kiln()
            .arg("build")
            .arg(case)
            .arg("--out")
            .arg(&out_dir)
            .arg("--secrets")
            .arg(&secrets));
        failures.extend(mismatch(&format!("kiln build {name}"), &out, 2, &expected));
        if out_dir.exists() || secrets.exists() {
            failures.push(format!(
                "kiln build {name} created its output or secrets folder"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn warnings_alone_do_not_reject_a_profile() {
    let cases = cases("warn-profiles");
    assert!(!cases.is_empty(), "no warn-profile fixtures");
    for case in &cases {
        let out = run(kiln().arg("validate").arg(case));
        if let Some(failure) = mismatch("kiln validate", &out, 0, &expected_lines(case)) {
            panic!("{}: {failure}", case.display());
        }
        assert!(
            text(&out.stdout).contains("is valid"),
            "{}",
            text(&out.stdout)
        );
    }
}

#[test]
fn shipped_profiles_validate_cleanly() {
    for (name, roles) in [
        ("example.toml", "roles etcd, master, worker"),
        ("local.toml", "roles etcd"),
    ] {
        let path = profile(name);
        let out = run(kiln().arg("validate").arg(&path));
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{name}: {stdout}{stderr}");
        assert!(
            stdout.contains(&format!("profile {} is valid: {roles}", path.display())),
            "{name}: {stdout}"
        );
        assert!(!stderr.contains("warning"), "{name} warns: {stderr}");
    }
}

#[test]
fn a_missing_profile_is_bad_input() {
    let tmp = tempfile::tempdir().expect("temporary folder");
    let path = tmp.path().join("absent.toml");
    let out = run(kiln().arg("validate").arg(&path));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("absent.toml: profile: cannot read the profile"));
}
