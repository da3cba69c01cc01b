//! What both programs print when a person or a pipe reads them: no
//! terminal escape codes into a pipe (the journal, CI logs), every error
//! once, and clap's suggestions for a mistyped subcommand or flag.

use std::process::{Command, Output};

use kiln_e2e::etcd::{agent_binary, Fixture};
use kiln_e2e::{kiln, run};
use kiln_node::node_config::DiscoverySource;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_plain(out: &Output) {
    let all = [&out.stdout[..], &out.stderr[..]].concat();
    assert!(
        !all.contains(&0x1b),
        "an escape byte went into a pipe:\n{}",
        String::from_utf8_lossy(&all)
    );
}

#[test]
fn kiln_prints_plain_text_and_each_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let out = run(kiln().arg("build").arg(&missing));
    assert_eq!(out.status.code(), Some(2));
    assert_plain(&out);
    assert_eq!(
        stderr(&out).matches("cannot read the profile").count(),
        1,
        "{}",
        stderr(&out)
    );

    let typo = run(kiln().arg("biuld"));
    assert_eq!(typo.status.code(), Some(2));
    assert!(
        stderr(&typo).contains("similar subcommand exists: 'build'"),
        "{}",
        stderr(&typo)
    );
    let flag = run(kiln().args(["build", "p.toml", "--secret", "s"]));
    assert_eq!(flag.status.code(), Some(2));
    assert!(
        stderr(&flag).contains("similar argument exists: '--secrets'"),
        "{}",
        stderr(&flag)
    );
    assert_plain(&flag);
}

/// The agent in a network namespace of its own (nothing it tries leaves it),
/// waiting for peers it cannot reach until its one-second budget ends.
#[test]
fn the_agent_logs_plain_text_into_a_pipe_and_its_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::new(&["10.77.160.11".parse().unwrap()], DiscoverySource::Static);
    fixture.node_root(dir.path());
    // An address of its own on the namespace's loopback: a node, unlisted.
    let out = run(Command::new("unshare")
        .args(["--net", "sh", "-c"])
        .arg(r#"ip link set lo up && ip addr add 10.77.160.99/24 dev lo && exec "$@""#)
        .arg("sh")
        .arg(agent_binary())
        .arg("--root")
        .arg(dir.path())
        .args(["--no-start", "--timeout", "1", "run"])
        .env_remove("JOURNAL_STREAM"));
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert_plain(&out);
    assert!(said.contains(" INFO "), "no log lines:\n{said}");
    assert_eq!(said.matches("error: ").count(), 1, "{said}");
    let typo = run(Command::new(agent_binary()).arg("plna"));
    assert!(
        stderr(&typo).contains("similar subcommand exists: 'plan'"),
        "{}",
        stderr(&typo)
    );
}
