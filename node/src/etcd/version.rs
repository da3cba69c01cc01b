//! etcd's versions: what the node's etcd binary says it is, which settings
//! each minor release takes, and which cluster a member of a version may join.
//! (The version type itself, shared with Kubernetes', is [`crate::versions::Version`].)

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::layout::{under_root, ETCD_BINARY, ETCD_VERSION_FILE};
use crate::versions::Version;

impl Version {
    /// The version in the first line `etcd --version` prints
    /// (`etcd Version: 3.5.30`).
    pub fn from_version_output(text: &str) -> Option<Version> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix("etcd Version:"))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Runs the etcd binary at `binary` with `--version`.
    pub fn of_binary(binary: &Path) -> Result<Version> {
        let out = Command::new(binary)
            .arg("--version")
            .output()
            .with_context(|| format!("running {} --version", binary.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        match Version::from_version_output(&text) {
            Some(v) if out.status.success() => Ok(v),
            _ => bail!(
                "{} --version printed no \"etcd Version:\" line (exit {}): {}",
                binary.display(),
                out.status,
                text.trim()
            ),
        }
    }

    /// The version of the etcd installed on the node under `root`: what
    /// the image's build recorded beside the binary, else what the binary
    /// says (an image built by hand, or a file that does not parse).
    pub fn installed(root: &Path) -> Result<Version> {
        let recorded = std::fs::read_to_string(under_root(root, Path::new(ETCD_VERSION_FILE)));
        if let Some(version) = recorded.ok().and_then(|text| text.trim().parse().ok()) {
            return Ok(version);
        }
        Version::of_binary(&under_root(root, Path::new(ETCD_BINARY)))
            .context("finding out which etcd this node runs")
    }
}

/// Why a member of version `member` cannot join a cluster running at
/// `cluster`, if it cannot. etcd upgrades one minor release at a time: a
/// member may be at the cluster's minor or one above it (the cluster version
/// rises once every member runs the newer one), never below (etcd refuses a
/// downgrade of the cluster version) nor two above.
pub fn join_refusal(member: Version, cluster: Version) -> Option<String> {
    let (mine, theirs) = (member.minor_release(), cluster.minor_release());
    if member.major != cluster.major {
        Some(format!(
            "this node runs etcd {member} and the cluster runs {theirs}: etcd upgrades within \
             one major release only; build this image with etcd {theirs} (images.etcd in the profile)"
        ))
    } else if member.minor < cluster.minor {
        Some(format!(
            "this node runs etcd {member}, older than the cluster's version {theirs}: etcd cannot \
             downgrade a cluster; build this image with etcd {theirs} or newer \
             (images.etcd in the profile)"
        ))
    } else if member.minor > cluster.minor + 1 {
        Some(format!(
            "this node runs etcd {member}, more than one minor release ahead of the cluster's \
             version {theirs}: etcd upgrades one minor at a time; first replace every member \
             with an image of etcd {}.{}, then with {mine}",
            cluster.major,
            cluster.minor + 1
        ))
    } else {
        None
    }
}

/// The version a running cluster is at, from its members' `/version`
/// answers (their own release, the cluster's version if decided). etcd
/// starts a new cluster at 3.0 and raises it to its oldest member's minor
/// within seconds, so that minor counts even before etcd wrote it down.
pub fn cluster_version(answers: &[(Version, Option<Version>)]) -> Option<Version> {
    let oldest = answers.iter().map(|(server, _)| *server).min();
    let decided = answers.iter().filter_map(|(_, cluster)| *cluster).max();
    decided.max(oldest.map(|v| Version::new(v.major, v.minor, 0)))
}

/// The `ETCD_*` settings that differ between minor releases. kubeadm runs
/// its own (stacked) etcd with the initial corruption check and a 5 s watch
/// progress notify interval (cmd/kubeadm/app/phases/etcd/local.go); the API
/// server's watch cache relies on the progress notifications. etcd 3.6 moved
/// the corruption check behind `--feature-gates` and dropped the
/// `experimental-` prefix of the interval (etcd's upgrade guide to 3.6).
pub fn version_settings(version: Version) -> Vec<(&'static str, String)> {
    const INTERVAL: &str = "5s";
    if (version.major, version.minor) >= (3, 6) {
        vec![
            ("ETCD_FEATURE_GATES", "InitialCorruptCheck=true".to_owned()),
            ("ETCD_WATCH_PROGRESS_NOTIFY_INTERVAL", INTERVAL.to_owned()),
        ]
    } else {
        vec![
            ("ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", "true".to_owned()),
            (
                "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
                INTERVAL.to_owned(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_version_is_read_without_running_etcd() {
        let root = tempfile::tempdir().unwrap();
        let file = under_root(root.path(), Path::new(ETCD_VERSION_FILE));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        // No binary at all: only the file can answer.
        std::fs::write(&file, "3.5.30\n").unwrap();
        assert_eq!(
            Version::installed(root.path()).unwrap(),
            Version::new(3, 5, 30)
        );
        std::fs::write(&file, "not a version\n").unwrap();
        let err = format!("{:#}", Version::installed(root.path()).unwrap_err());
        assert!(err.contains("--version"), "falls back to the binary: {err}");
    }

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn parses_binaries_output_and_kubeadms_form() {
        let out = "etcd Version: 3.5.30\nGit SHA: Not provided\nGo Version: go1.24\n";
        assert_eq!(Version::from_version_output(out), Some(v("3.5.30")));
        assert_eq!(v("3.5.24-0"), Version::new(3, 5, 24));
        assert_eq!(v("v3.6.0"), Version::new(3, 6, 0));
        for bad in ["3.5", "latest", "+3.+5.+1", "3.5.x", ""] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?}");
        }
        assert!(v("3.5.9") < v("3.5.24"));
    }

    #[test]
    fn members_join_at_the_cluster_minor_or_one_above() {
        assert_eq!(join_refusal(v("3.5.30"), v("3.4.0")), None);
        assert_eq!(join_refusal(v("3.5.30"), v("3.5.0")), None);
        let down = join_refusal(v("3.4.23"), v("3.5.0")).unwrap();
        assert!(down.contains("cannot downgrade"), "{down}");
        let ahead = join_refusal(v("3.6.1"), v("3.4.0")).unwrap();
        assert!(
            ahead.contains("one minor at a time") && ahead.contains("3.5"),
            "{ahead}"
        );
    }

    #[test]
    fn a_fresh_clusters_version_is_its_oldest_members_minor() {
        let fresh = [(v("3.5.30"), Some(v("3.0.0"))), (v("3.5.30"), None)];
        assert_eq!(cluster_version(&fresh), Some(v("3.5.0")));
        let mixed = [
            (v("3.4.23"), Some(v("3.4.0"))),
            (v("3.5.30"), Some(v("3.4.0"))),
        ];
        assert_eq!(cluster_version(&mixed), Some(v("3.4.0")));
        assert_eq!(cluster_version(&[]), None);
    }

    #[test]
    fn settings_follow_the_minor() {
        let names =
            |s: &str| -> Vec<&str> { version_settings(v(s)).into_iter().map(|(k, _)| k).collect() };
        assert!(names("3.4.23").contains(&"ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK"));
        assert!(names("3.5.30").contains(&"ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL"));
        let six = names("3.6.5");
        assert!(six.contains(&"ETCD_FEATURE_GATES"));
        assert!(six.iter().all(|k| !k.contains("EXPERIMENTAL")), "{six:?}");
    }
}
