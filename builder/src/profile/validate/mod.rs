//! Semantic checks of a deserialized profile. Every check runs, so one
//! `kiln validate` lists every problem; each names its field and the fix.

mod cluster;
mod images;
mod kubernetes;
mod nodes;
mod snapshots;

use std::path::Path;

use kiln_node::renewal;

use super::diagnostic::{Diagnostic, Severity};
use super::locate::SourceMap;
use super::model::{PkiSection, Profile};

/// Collects diagnostics, positioning each at its field.
pub struct Checker<'a> {
    map: &'a SourceMap<'a>,
    /// Folder that relative paths in the profile are resolved against.
    pub base_dir: &'a Path,
    found: Vec<Diagnostic>,
}

impl Checker<'_> {
    pub fn error(
        &mut self,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.report(Severity::Error, field.into(), message.into(), hint.into());
    }

    pub fn warn(
        &mut self,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.report(Severity::Warning, field.into(), message.into(), hint.into());
    }

    /// Refuses every item of the list `field` that repeats an earlier one.
    pub fn no_repeats<T: PartialEq>(
        &mut self,
        field: &str,
        items: &[T],
        message: &str,
        hint: &str,
    ) {
        for (j, item) in items.iter().enumerate() {
            if items[..j].contains(item) {
                self.error(format!("{field}[{j}]"), message, hint);
            }
        }
    }

    /// Whether the user wrote `field` (rather than leaving its default).
    pub fn is_written(&self, field: &str) -> bool {
        self.map.has(field)
    }

    fn report(&mut self, severity: Severity, field: String, message: String, hint: String) {
        let diagnostic = self.map.at_field(severity, field, message, hint);
        self.found.push(diagnostic);
    }
}

pub fn validate(profile: &Profile, map: &SourceMap<'_>, base_dir: &Path) -> Vec<Diagnostic> {
    let mut check = Checker {
        map,
        base_dir,
        found: Vec::new(),
    };
    cluster::check(profile, &mut check);
    nodes::check(profile, &mut check);
    snapshots::check(&profile.etcd, &mut check);
    check_pki(&profile.pki, &mut check);
    images::check(&profile.images, &mut check);
    kubernetes::check(profile, &mut check);
    check.found
}

/// A hundred years: longer lives are typing errors, and past year 9999 an
/// X.509 validity cannot even be written.
const MAX_VALIDITY_DAYS: u32 = 36_500;

fn check_pki(pki: &PkiSection, check: &mut Checker<'_>) {
    for (field, days) in [
        ("pki.ca_validity_days", pki.ca_validity_days),
        ("pki.leaf_validity_days", pki.leaf_validity_days),
    ] {
        if days > MAX_VALIDITY_DAYS {
            check.error(
                field,
                format!("{days} days is over {MAX_VALIDITY_DAYS} (a hundred years)"),
                "give a lifetime in days of at most 36500, like 3650 for a CA or 365 for a leaf",
            );
        }
    }
    if pki.leaf_validity.is_some() && check.is_written("pki.leaf_validity_days") {
        check.error(
            "pki.leaf_validity",
            "both leaf_validity and leaf_validity_days are set",
            "keep one: leaf_validity = \"365d\" (a span) or leaf_validity_days = 365",
        );
    }
    let leaf = pki.leaf_validity_seconds();
    if pki.leaf_validity.is_some_and(|s| s.as_secs() < 60) {
        check.error(
            "pki.leaf_validity",
            format!("a leaf valid for {leaf} seconds expires before it can be renewed"),
            "give at least a minute, like leaf_validity = \"10m\" (tests) or \"365d\"",
        );
    } else if leaf > u64::from(MAX_VALIDITY_DAYS) * 86_400 {
        check.error(
            "pki.leaf_validity",
            format!("{leaf} seconds is over {MAX_VALIDITY_DAYS} days (a hundred years)"),
            "give a lifetime of at most a hundred years, like leaf_validity = \"365d\"",
        );
    }
    let window = pki.renew_before_seconds();
    if window < renewal::MIN_WINDOW && leaf >= 60 {
        let field = if pki.renew_before.is_some() {
            "pki.renew_before"
        } else {
            "pki.leaf_validity"
        };
        check.error(
            field,
            format!(
                "a renewal window of {window} s is shorter than {} s: nodes look at their \
                 certificates every {} s at the shortest, and a master needs three looks (its \
                 request, an etcd node's signature, its install)",
                renewal::MIN_WINDOW,
                renewal::SHORTEST_PERIOD
            ),
            "give renew_before at least \"2m\" (the default is a third of the leaf validity, so \
             leaf_validity = \"6m\" or more works alone)",
        );
    }
    if let Some(renew) = pki.renew_before {
        if renew.as_secs() == 0 || renew.as_secs() >= leaf {
            check.error(
                "pki.renew_before",
                format!(
                    "renew_before {renew} must be more than 0 and less than the leaf validity ({leaf} seconds)"
                ),
                "leave it out for a third of the leaf validity, or set a shorter span, like renew_before = \"30d\"",
            );
        }
    }
    if pki.ca_validity_days == 0 {
        check.error(
            "pki.ca_validity_days",
            "a CA valid for 0 days expires before any node boots",
            "set ca_validity_days to a positive number, like 3650",
        );
    }
    if pki.leaf_validity_days == 0 {
        check.error(
            "pki.leaf_validity_days",
            "a certificate valid for 0 days is already expired",
            "set leaf_validity_days to a positive number, like 365",
        );
    } else if leaf > u64::from(pki.ca_validity_days) * 86_400 && pki.ca_validity_days > 0 {
        check.error(
            if pki.leaf_validity.is_some() {
                "pki.leaf_validity"
            } else {
                "pki.leaf_validity_days"
            },
            format!(
                "leaf certificates ({} days) would outlive the CA that signs them ({} days)",
                leaf.div_ceil(86_400),
                pki.ca_validity_days
            ),
            "set leaf_validity_days at most ca_validity_days, like 365",
        );
    }
}

/// An RFC 1123 label as Kubernetes accepts it: 1-63 lowercase letters,
/// digits and '-', starting and ending with a letter or digit.
pub fn is_dns_label(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&s.len())
        && s.chars().all(|c| alnum(c) || c == '-')
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// An RFC 1123 DNS name: dot-separated labels, at most 253 characters.
pub fn is_dns_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

pub const DNS_LABEL_RULE: &str =
    "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_and_names_follow_rfc_1123() {
        for good in ["a", "etcd1", "prod-eu1", "1node"] {
            assert!(is_dns_label(good), "{good}");
        }
        for bad in ["", "-a", "a-", "Etcd1", "a_b", "a.b", &"x".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(is_dns_name("kiln.test"));
        assert!(is_dns_name("etcd1.cluster.example"));
        for bad in [
            "kiln..test",
            ".kiln",
            "kiln.",
            "under_score.test",
            "bad domain",
        ] {
            assert!(!is_dns_name(bad), "{bad}");
        }
    }
}
