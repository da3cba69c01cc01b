//! Shared harness of kiln's end-to-end tests: where the binaries and fixtures
//! are, and how to run them.

pub mod artifacts;
pub mod bootnet;
pub mod cluster;
pub mod etcd;
pub mod formats;
pub mod ignition;
pub mod kubeadm;
pub mod netns;
pub mod nspawn;
pub mod tree;
pub mod vm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace's top folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_owned()
}

/// A binary built from this workspace (`tests/run` builds them first).
pub fn binary(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = dir.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` first (tests/run does it)",
        path.display()
    );
    path
}

/// `kiln` with its agent binary found beside it.
pub fn kiln() -> Command {
    Command::new(binary("kiln"))
}

/// A file under tests/fixtures/.
pub fn fixture(rel: &str) -> PathBuf {
    workspace_root().join("tests/fixtures").join(rel)
}

/// A profile under profiles/.
pub fn profile(name: &str) -> PathBuf {
    workspace_root().join("profiles").join(name)
}

/// profiles/local.toml as another cluster in `dir`: named `cluster` (so
/// another CA), one member, etcd1, at `ip`, with `images` lines (such as
/// `embed_config = true`) in its `[images]` table.
pub fn one_member_profile(dir: &Path, cluster: &str, ip: &str, images: &str) -> PathBuf {
    let text = std::fs::read_to_string(profile("local.toml")).expect("reading local.toml");
    let (head, rest) = (text.split_once("\n[[etcd.members]]\nname = \"etcd2\""))
        .expect("local.toml lists etcd2 after etcd1");
    let (_, tail) = rest
        .split_once("\n# etcd 3.5")
        .expect("local.toml's etcd comment");
    let other = format!("{head}\n[images]\n{images}\n\n# etcd 3.5{tail}")
        .replace("name = \"local\"", &format!("name = \"{cluster}\""))
        .replace("ip = \"10.77.0.11\"", &format!("ip = \"{ip}\""));
    assert!(
        other.contains(&format!("name = \"{cluster}\"")) && !other.contains("etcd2"),
        "{other}"
    );
    let path = dir.join(format!("{cluster}.toml"));
    std::fs::write(&path, other).expect("writing the profile");
    path
}

/// Runs a command, failing the test with its output if it cannot start.
/// Every file under `dir` (links not followed) whose bytes hold `needle`.
pub fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => found.extend(files_holding(&path, needle)),
            Ok(t) if t.is_file() => {
                let bytes = std::fs::read(&path).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path);
                }
            }
            _ => {}
        }
    }
    found
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
