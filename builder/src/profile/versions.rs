//! The Kubernetes minor releases kiln knows, in one table: how long each is
//! supported, the oldest external etcd its kubeadm accepts, its pause image
//! and the kubeadm config API kiln writes for it. Validation, the image
//! layers and the agent's config all read these rows; change a value here.

use kiln_node::versions::ApiVersion;
use kiln_node::versions::Version;

/// One Kubernetes minor release, `1.<minor>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Minor {
    pub minor: u32,
    /// Last day of patch support, `YYYY-MM-DD`.
    pub end_of_support: &'static str,
    /// Whether `end_of_support` is an estimate from the release policy
    /// (about 14 months after the release, usually the 28th) rather than a
    /// date the Kubernetes project published.
    pub estimated: bool,
    /// Still supported upstream: kiln builds every known minor, but warns
    /// about the others.
    pub supported: bool,
    /// kubeadm's `MinExternalEtcdVersion` of this minor (its preflight
    /// `ExternalEtcdVersion` refuses an older external etcd).
    pub min_external_etcd: &'static str,
    /// The tag of `registry.k8s.io/pause` (kubeadm's `PauseVersion`).
    pub pause: &'static str,
    /// The kubeadm config API the agent writes for this minor.
    pub api: ApiVersion,
}

const fn row(
    minor: u32,
    end_of_support: &'static str,
    estimated: bool,
    min_external_etcd: &'static str,
    pause: &'static str,
) -> Minor {
    Minor {
        minor,
        end_of_support,
        estimated,
        // Upstream supports the three newest minors (kubernetes.io/releases,
        // as of 2026-12-02: 1.35, 1.36 and 1.37).
        supported: minor >= 35,
        min_external_etcd,
        pause,
        api: ApiVersion::for_minor(minor),
    }
}

/// Sources, per column:
/// - `end_of_support`: kubernetes/website data/releases/eol.yaml (@0637786b)
///   for 1.27-1.31 (the day of the final patch release); 1.32 from
///   endoflife.date (products/kubernetes.md @1852097c, the planned date);
///   1.33-1.37 are ESTIMATED from the policy in kubernetes/website
///   content/en/releases/patch-releases.md (12 months of support plus about
///   2 months of maintenance, ending on the 28th). Check them against
///   https://kubernetes.io/releases/ when adding a minor.
/// - `min_external_etcd`: `MinExternalEtcdVersion` in kubernetes
///   cmd/kubeadm/app/constants/constants.go of each branch: "3.5.11-0" in
///   the 1.31 copy (@3301161c), "3.5.24-0" in the release-1.32 patch copy
///   (@00886ac0) and on master for 1.36 and later (@8a84988b, @4d7ca868);
///   1.33-1.35 got the same 3.5.24 bump (kubernetes PRs #134779, #135018).
///   1.28 set "3.4.13-4" (kubernetes PR #118733, milestone v1.28); 1.29 and
///   1.30 are assumed to keep it and 1.27 to have the older "3.2.18"
///   (UNVERIFIED: no stored copy of those branches).
/// - `pause`: `PauseVersion` in the same constants.go copies ("3.10" in
///   1.31 and 1.32, "3.10.1" on master for 1.36, "3.10.2" after 1.36);
///   1.27-1.30 "3.9" as `kubeadm config images list` reports it
///   (kubernetes/minikube pkg/minikube/constants/constants_kubeadm_images.go);
///   1.33 "3.10", 1.34 and 1.35 "3.10.1" are UNVERIFIED.
const MINORS: [Minor; 11] = [
    row(27, "2024-07-16", false, "3.2.18", "3.9"),
    row(28, "2024-10-22", false, "3.4.13-4", "3.9"),
    row(29, "2025-02-28", false, "3.4.13-4", "3.9"),
    row(30, "2025-07-15", false, "3.4.13-4", "3.9"),
    row(31, "2025-11-11", false, "3.5.11-0", "3.10"),
    row(32, "2026-02-28", false, "3.5.24-0", "3.10"),
    row(33, "2026-06-28", true, "3.5.24-0", "3.10"),
    row(34, "2026-10-28", true, "3.5.24-0", "3.10.1"),
    row(35, "2027-02-28", true, "3.5.24-0", "3.10.1"),
    row(36, "2027-06-28", true, "3.5.24-0", "3.10.1"),
    row(37, "2027-10-28", true, "3.5.24-0", "3.10.2"),
];

/// Every minor kiln knows, oldest first.
pub fn known() -> &'static [Minor] {
    &MINORS
}

/// The row of `version`'s minor; None for a minor kiln does not know.
pub fn minor(version: Version) -> Option<&'static Minor> {
    (version.major == 1)
        .then(|| MINORS.iter().find(|m| m.minor == version.minor))
        .flatten()
}

/// The supported minors as "1.35, 1.36 and 1.37" (with `last` = "and"),
/// for messages.
pub fn supported_list(last_word: &str) -> String {
    let names: Vec<String> = MINORS
        .iter()
        .filter(|m| m.supported)
        .map(|m| format!("1.{}", m.minor))
        .collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} {last_word} {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The oldest external etcd kubeadm of `version` accepts; None for an
/// unknown minor.
pub fn min_external_etcd(version: Version) -> Option<Version> {
    let row = minor(version)?;
    Some(
        row.min_external_etcd
            .parse()
            .expect("the table holds valid etcd versions"),
    )
}

/// `registry.k8s.io/pause:<tag>` of `version`; for a minor kiln does not
/// know, the nearest known one's (as kubeadm falls back for its etcd map).
pub fn pause_image(version: Version) -> String {
    let (first, last) = (&MINORS[0], &MINORS[MINORS.len() - 1]);
    // The rows are contiguous: a version without one is below or above them.
    let row = minor(version).unwrap_or(if (version.major, version.minor) > (1, last.minor) {
        last
    } else {
        first
    });
    format!("registry.k8s.io/pause:{}", row.pause)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn rows_are_contiguous_and_dated() {
        let minors: Vec<u32> = known().iter().map(|m| m.minor).collect();
        assert_eq!(minors, (27..=37).collect::<Vec<_>>());
        for pair in known().windows(2) {
            assert!(pair[0].end_of_support < pair[1].end_of_support, "{pair:?}");
        }
        for m in known() {
            let d = m.end_of_support.as_bytes();
            assert!(
                d.len() == 10 && d[4] == b'-' && d[7] == b'-',
                "{}",
                m.end_of_support
            );
        }
        assert_eq!(supported_list("and"), "1.35, 1.36 and 1.37");
        assert_eq!(supported_list("or"), "1.35, 1.36 or 1.37");
    }

    #[test]
    fn unknown_minors_have_no_row() {
        assert!(minor(v("1.26.15")).is_none());
        assert!(minor(v("1.38.0")).is_none());
        assert!(minor(v("2.36.0")).is_none());
        assert_eq!(minor(v("1.27.0")).map(|m| m.minor), Some(27));
        assert_eq!(minor(v("1.37.9")).map(|m| m.minor), Some(37));
        assert!(min_external_etcd(v("1.99.0")).is_none());
    }

    #[test]
    fn external_etcd_minimum_follows_kubeadm() {
        let min = |s| min_external_etcd(v(s)).unwrap();
        assert_eq!(min("1.31.2"), Version::new(3, 5, 11));
        assert_eq!(min("1.32.0"), Version::new(3, 5, 24));
        assert_eq!(min("1.36.2"), Version::new(3, 5, 24));
        assert_eq!(min("1.37.0"), Version::new(3, 5, 24));
        assert_eq!(min("1.28.0"), Version::new(3, 4, 13));
        for m in known() {
            assert!(m.min_external_etcd.parse::<Version>().is_ok(), "{m:?}");
        }
    }

    #[test]
    fn pause_images_per_minor() {
        assert_eq!(pause_image(v("1.30.6")), "registry.k8s.io/pause:3.9");
        assert_eq!(pause_image(v("1.31.2")), "registry.k8s.io/pause:3.10");
        assert_eq!(pause_image(v("1.36.2")), "registry.k8s.io/pause:3.10.1");
        assert_eq!(pause_image(v("1.37.0")), "registry.k8s.io/pause:3.10.2");
        // Unknown minors take the nearest row.
        assert_eq!(pause_image(v("1.40.0")), "registry.k8s.io/pause:3.10.2");
        assert_eq!(pause_image(v("2.0.0")), "registry.k8s.io/pause:3.10.2");
        assert_eq!(pause_image(v("1.20.0")), "registry.k8s.io/pause:3.9");
    }

    #[test]
    fn only_the_three_newest_are_supported() {
        let supported: Vec<u32> = known()
            .iter()
            .filter(|m| m.supported)
            .map(|m| m.minor)
            .collect();
        assert_eq!(supported, [35, 36, 37]);
        assert!(!minor(v("1.34.9")).unwrap().supported);
    }

    /// The agent picks the API from the version string itself; the table
    /// must agree with it at both ends (1.30 / 1.31) and for 1.36+.
    #[test]
    fn api_column_matches_the_agent() {
        for m in known() {
            let agent = ApiVersion::for_kubernetes(&format!("1.{}.0", m.minor)).unwrap();
            assert_eq!(agent, m.api, "1.{}", m.minor);
        }
        assert_eq!(minor(v("1.30.6")).unwrap().api, ApiVersion::V1beta3);
        assert_eq!(minor(v("1.31.0")).unwrap().api, ApiVersion::V1beta4);
        assert_eq!(minor(v("1.36.0")).unwrap().api, ApiVersion::V1beta4);
    }
}
