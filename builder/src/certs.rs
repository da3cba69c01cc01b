//! `kiln certs`: every certificate of the secrets folder and, when asked,
//! the serving certificates the live members present, each with subject,
//! issuer, expiry and time left, judged against the renewal window.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kiln_node::pki::CertInfo;
use kiln_node::tls::ClusterTls;
use serde::Serialize;
use time::OffsetDateTime;

/// How a certificate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Standing {
    Valid,
    /// Less than `renew_before` left: the next build (or the node) renews it.
    Renew,
    Expired,
    /// An endpoint presented a certificate the etcd CA did not sign.
    Untrusted,
    /// An endpoint did not answer TLS.
    Unreachable,
}

/// One certificate as `kiln certs` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CertRow {
    /// The file, relative to the secrets folder, or the endpoint.
    pub source: String,
    pub subject: String,
    pub issuer: String,
    /// RFC 3339.
    pub not_after: String,
    pub seconds_left: i64,
    pub standing: Standing,
}

impl CertRow {
    fn of(source: String, info: &CertInfo, now: OffsetDateTime, renew_before: u64) -> CertRow {
        let seconds_left = info.seconds_left(now);
        let standing = if seconds_left <= 0 {
            Standing::Expired
        } else if info.inside_window(now, renew_before) {
            Standing::Renew
        } else {
            Standing::Valid
        };
        CertRow {
            source,
            subject: info.subject.clone(),
            issuer: info.issuer.clone(),
            not_after: info
                .not_after
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            seconds_left,
            standing,
        }
    }
}

/// Where earlier kiln builds kept every listed member's serving and peer pair.
/// Members mint their own now; a folder that still has these keeps them (a
/// build deletes no secret), but they are used by nothing and renewed by
/// nothing, so they are not listed.
pub const OLD_MEMBER_CERTS: &str = "etcd/members";

/// Every `*.crt` below the secrets folder, sorted by path, but those of
/// [`OLD_MEMBER_CERTS`].
pub fn folder_rows(dir: &Path, now: OffsetDateTime, renew_before: u64) -> Result<Vec<CertRow>> {
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    let old = dir.join(OLD_MEMBER_CERTS);
    if old.is_dir() {
        files.retain(|f| !f.starts_with(&old));
        tracing::info!(
            "{} holds member certificates of an older kiln, unused now that members mint their \
             own: kept, not listed; `kiln certs --endpoints` shows what the members present",
            old.display()
        );
    }
    files.sort();
    files
        .iter()
        .map(|path| {
            let pem =
                fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let info = CertInfo::from_pem(&pem).with_context(|| path.display().to_string())?;
            let rel = path.strip_prefix(dir).unwrap_or(path).display().to_string();
            Ok(CertRow::of(rel, &info, now, renew_before))
        })
        .collect()
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "crt") {
            files.push(path);
        }
    }
    Ok(())
}

/// The serving certificate each client URL (`https://host:port`) presents,
/// verified against the etcd CA; an endpoint that does not answer, or
/// presents another CA's certificate, is a row saying so.
pub fn endpoint_rows(
    etcd_ca: &Path,
    endpoints: &[String],
    now: OffsetDateTime,
    renew_before: u64,
) -> Result<Vec<CertRow>> {
    let tls = ClusterTls::new(etcd_ca)?;
    let ca_pem =
        fs::read_to_string(etcd_ca).with_context(|| format!("reading {}", etcd_ca.display()))?;
    Ok(endpoints
        .iter()
        .map(|url| {
            let endpoint = url.trim_start_matches("https://").trim_end_matches('/');
            let presented = tls.presented_certificate(endpoint).and_then(|der| {
                let info = CertInfo::from_der(&der)?;
                Ok((der, info))
            });
            match presented {
                Ok((der, info)) => {
                    let mut row = CertRow::of(url.clone(), &info, now, renew_before);
                    let trusted = kiln_node::pki::verify_chain_der(&ca_pem, &der);
                    if trusted.is_err() && row.standing != Standing::Expired {
                        row.standing = Standing::Untrusted;
                    }
                    row
                }
                Err(e) => CertRow {
                    source: url.clone(),
                    subject: format!("{e:#}"),
                    issuer: String::new(),
                    not_after: String::new(),
                    seconds_left: 0,
                    standing: Standing::Unreachable,
                },
            }
        })
        .collect())
}

/// Warnings for `kiln health`: the operator's client certificate and the
/// serving certificate of every answering member, when inside the window.
pub fn expiry_warnings(secrets: &Path, client_urls: &[String], renew_before: u64) -> Vec<String> {
    let now = OffsetDateTime::now_utc();
    let mut rows: Vec<CertRow> = folder_rows(secrets, now, renew_before)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.source == "etcd/kiln-agent.crt")
        .collect();
    let ca = secrets.join("etcd/ca.crt");
    for url in client_urls {
        if let Ok(row) = endpoint_rows(&ca, std::slice::from_ref(url), now, renew_before) {
            rows.extend(row);
        }
    }
    rows.iter()
        .filter(|r| matches!(r.standing, Standing::Renew | Standing::Expired))
        .map(|r| {
            format!(
                "the certificate of {} ({}) ends {} ({}), inside the renewal window: \
                 check that kiln-renew.timer runs there, or rebuild for the secrets folder's",
                r.source,
                r.subject,
                r.not_after,
                span_text(r.seconds_left)
            )
        })
        .collect()
}

/// `3 days`, `5 h`, `12 min`, `40 s` (or `expired 2 days ago`).
pub fn span_text(seconds: i64) -> String {
    let amount = seconds.unsigned_abs();
    let text = match amount {
        a if a >= 2 * 86_400 => format!("{} days", a / 86_400),
        a if a >= 2 * 3_600 => format!("{} h", a / 3_600),
        a if a >= 120 => format!("{} min", a / 60),
        a => format!("{a} s"),
    };
    if seconds < 0 {
        format!("expired {text} ago")
    } else {
        text
    }
}

/// Prints the rows as a table (or JSON); returns whether every one is valid.
pub fn report(rows: &[CertRow], as_json: bool) -> Result<bool> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(rows)?);
    } else {
        let width = rows.iter().map(|r| r.source.len()).max().unwrap_or(0);
        for row in rows {
            let standing = match row.standing {
                Standing::Valid => "ok",
                Standing::Renew => "RENEW",
                Standing::Expired => "EXPIRED",
                Standing::Untrusted => "UNTRUSTED",
                Standing::Unreachable => "DOWN",
            };
            println!(
                "{:<width$}  {:<7}  {}  {:>16}  {}  (issuer {})",
                row.source,
                standing,
                row.not_after,
                span_text(row.seconds_left),
                row.subject,
                row.issuer
            );
        }
    }
    Ok(rows.iter().all(|r| r.standing == Standing::Valid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_node::pki::{Authority, KeyAlgorithm, LeafSpec, Usage};

    #[test]
    fn rows_are_judged_against_the_renewal_window() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, material) = Authority::generate("ca", KeyAlgorithm::EcdsaP256, 10).unwrap();
        fs::write(dir.path().join("ca.crt"), &material.cert_pem).unwrap();
        let leaf = ca
            .issue(&LeafSpec {
                common_name: "short".into(),
                organization: None,
                usage: Usage::Client,
                dns_names: vec![],
                ips: vec![],
                algorithm: KeyAlgorithm::EcdsaP256,
                validity_seconds: 3_600,
            })
            .unwrap();
        fs::create_dir(dir.path().join("etcd")).unwrap();
        fs::write(dir.path().join("etcd/short.crt"), &leaf.cert_pem).unwrap();
        let now = OffsetDateTime::now_utc();
        let rows = folder_rows(dir.path(), now, 7_200).unwrap();
        let standing: Vec<(&str, Standing)> = rows
            .iter()
            .map(|r| (r.source.as_str(), r.standing))
            .collect();
        assert_eq!(
            standing,
            [
                ("ca.crt", Standing::Valid),
                ("etcd/short.crt", Standing::Renew)
            ]
        );
        assert!(!report(&rows, true).unwrap());
        let later = now + time::Duration::hours(2);
        let rows = folder_rows(dir.path(), later, 60).unwrap();
        assert_eq!(rows[1].standing, Standing::Expired);
        assert!(rows[1].subject.contains("CN=short") && rows[1].issuer.contains("CN=ca"));
    }

    #[test]
    fn spans_read_like_an_operator_says_them() {
        assert_eq!(span_text(3 * 86_400 + 5), "3 days");
        assert_eq!(span_text(5 * 3_600), "5 h");
        assert_eq!(span_text(600), "10 min");
        assert_eq!(span_text(-3 * 86_400), "expired 3 days ago");
    }
}
