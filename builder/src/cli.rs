//! Command-line interface of `kiln`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::build::{build, BuildOptions, BuildReport};
use crate::profile;
use crate::progress::Progress;

/// Bakes role-specific node images (etcd, master, worker) for a highly
/// available Kubernetes cluster from one cluster profile.
#[derive(Parser, Debug)]
#[command(name = "kiln", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build the cluster's PKI, Ignition configs, root filesystems and disks.
    Build(BuildOptions),
    /// Show every etcd member, its state and the cluster's health.
    Health {
        /// The cluster profile (TOML).
        profile: PathBuf,
        /// Secrets folder with the etcd client certificate
        /// [default: images/<cluster>/secrets].
        #[arg(long, value_name = "DIR")]
        secrets: Option<PathBuf>,
        /// Client URLs to ask instead of the profile's members, comma
        /// separated (e.g. after a node came back on a new address).
        #[arg(long, value_name = "URLS", value_delimiter = ',')]
        endpoints: Vec<String>,
        /// Keep checking until every member is started, voting and healthy;
        /// fail with the reason after DURATION (90s, 5m).
        #[arg(long, value_name = "DURATION", value_parser = profile::Span::parse_or_seconds)]
        wait: Option<profile::Span>,
        /// Print JSON for machines.
        #[arg(long)]
        json: bool,
    },
    /// Stream a verified etcd snapshot from the live cluster into FILE.
    Backup {
        /// The cluster profile (TOML).
        profile: PathBuf,
        /// Where to write the snapshot (0600; holds every secret in etcd).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
        /// Secrets folder with the etcd client certificate
        /// [default: images/<cluster>/secrets].
        #[arg(long, value_name = "DIR")]
        secrets: Option<PathBuf>,
        /// Client URLs to ask instead of the profile's members, comma
        /// separated; they are tried in order.
        #[arg(long, value_name = "URLS", value_delimiter = ',')]
        endpoints: Vec<String>,
    },
    /// List every certificate of the secrets folder (and, with --endpoints,
    /// the members' serving certificates) with its expiry; exit 1 when one
    /// is inside the renewal window or expired.
    Certs {
        /// The cluster profile (TOML).
        profile: PathBuf,
        /// Secrets folder [default: images/<cluster>/secrets].
        #[arg(long, value_name = "DIR")]
        secrets: Option<PathBuf>,
        /// Client URLs of live members whose serving certificates to show,
        /// comma separated (e.g. https://10.10.0.11:2379).
        #[arg(long, value_name = "URLS", value_delimiter = ',')]
        endpoints: Vec<String>,
        /// Print JSON for machines.
        #[arg(long)]
        json: bool,
    },
    /// Check a profile and report every problem with its position.
    Validate {
        /// The cluster profile (TOML).
        profile: PathBuf,
    },
    /// Recheck a build's output folder against its manifest.json: every
    /// artifact's size and SHA-256, private ones still private, nothing
    /// unlisted; exit 1 naming what does not match.
    Verify {
        /// The output folder of `kiln build` (e.g. images/example).
        dir: PathBuf,
    },
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build(options) => {
            let report = build(&options, &Progress::detect())?;
            print_summary(&report);
            Ok(())
        }
        Command::Health {
            profile,
            secrets,
            endpoints,
            wait,
            json,
        } => {
            let (loaded, secrets) = load_with_secrets(&profile, secrets)?;
            let wait = wait.map(profile::Span::as_duration);
            let check = crate::health::HealthCheck::new(&loaded, &secrets, endpoints)?;
            let health = check.wait(wait);
            let urls: Vec<String> = health
                .members
                .iter()
                .filter_map(|m| m.client_url.clone())
                .collect();
            let window = loaded.profile.pki.renew_before_seconds();
            for warning in crate::certs::expiry_warnings(&secrets, &urls, window) {
                tracing::warn!("{warning}");
            }
            crate::health::report(&health, json, wait)
        }
        Command::Backup {
            profile,
            out,
            force,
            secrets,
            endpoints,
        } => {
            let (loaded, secrets) = load_with_secrets(&profile, secrets)?;
            let client = crate::health::operator_client(&secrets)?;
            let endpoints = crate::health::endpoints_or_listed(&loaded, endpoints);
            let report = crate::operator_backup::backup(&client, &endpoints, &out, force)?;
            println!("{}", crate::operator_backup::summary(&out, &report));
            Ok(())
        }
        Command::Certs {
            profile,
            secrets,
            endpoints,
            json,
        } => {
            let (loaded, secrets) = load_with_secrets(&profile, secrets)?;
            let now = time::OffsetDateTime::now_utc();
            let window = loaded.profile.pki.renew_before_seconds();
            let mut rows = crate::certs::folder_rows(&secrets, now, window)?;
            let ca = secrets.join("etcd/ca.crt");
            rows.extend(crate::certs::endpoint_rows(&ca, &endpoints, now, window)?);
            if !crate::certs::report(&rows, json)? {
                anyhow::bail!(
                    "some certificates are inside the renewal window ({}) or expired: \
                     rebuild with `kiln build` to reissue the folder's, and check that the nodes' \
                     kiln-renew.timer runs",
                    crate::certs::span_text(i64::try_from(window).unwrap_or(i64::MAX))
                );
            }
            Ok(())
        }
        Command::Verify { dir } => {
            let manifest = crate::verify::read_manifest(&dir)?;
            let findings = crate::verify::verify(&dir, &manifest)?;
            for finding in &findings {
                println!("{finding}");
            }
            let bad = findings.iter().filter(|f| !f.is_match()).count();
            if bad > 0 {
                anyhow::bail!(
                    "{bad} of {} entries of {} do not match its manifest.json",
                    findings.len(),
                    dir.display()
                );
            }
            println!("{} matches its manifest.json", dir.display());
            Ok(())
        }
        Command::Validate { profile } => {
            let loaded = profile::load(&profile)?;
            profile::resolve::check_local(&loaded)?;
            for warning in &loaded.warnings {
                tracing::warn!("{}", warning.located());
            }
            let roles: Vec<_> = loaded.profile.roles().iter().map(|r| r.as_str()).collect();
            println!(
                "profile {} is valid: roles {}",
                profile.display(),
                roles.join(", ")
            );
            Ok(())
        }
    }
}

/// The profile and the secrets folder of the operator's commands.
fn load_with_secrets(
    profile: &std::path::Path,
    secrets: Option<PathBuf>,
) -> Result<(profile::LoadedProfile, PathBuf)> {
    let loaded = profile::load(profile)?;
    let secrets = secrets.unwrap_or_else(|| default_secrets(&loaded));
    Ok((loaded, secrets))
}

/// `images/<cluster>/secrets`, where `kiln build` puts them by default.
fn default_secrets(loaded: &profile::LoadedProfile) -> PathBuf {
    std::path::Path::new("images")
        .join(&loaded.profile.cluster.name)
        .join("secrets")
}

/// Prints the artifacts, and warns about Ignition configs too large for
/// cloud user-data.
fn print_summary(report: &BuildReport) {
    println!(
        "built cluster {} into {}",
        report.manifest.cluster,
        report.out.display()
    );
    for record in report.manifest.roles.values() {
        for artifact in &record.artifacts {
            let secret = if artifact.carries_secrets {
                "  (holds secrets)"
            } else {
                ""
            };
            println!(
                "  {:<28} {:>12}{secret}",
                artifact.path,
                human_size(artifact.size)
            );
        }
    }
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_bad_format_or_base_is_refused_naming_the_choices() {
        let refused = |args: &[&str]| {
            let err = Cli::try_parse_from([&["kiln", "build", "p.toml"], args].concat())
                .unwrap_err()
                .to_string();
            assert!(err.contains("[possible values: "), "{err}");
            err
        };
        let formats = refused(&["--formats", "ignition,disk"]);
        assert!(
            formats.contains("ignition, rootfs, raw, qcow2, vhd, gce, vmdk, ova"),
            "{formats}"
        );
        let base = refused(&["--base", "ubuntu"]);
        assert!(base.contains("none, debian"), "{base}");
    }
}
