//! What is inside a role's image, as an SPDX 2.3 JSON document: every
//! Debian package the base installed (dpkg's status, so also the kernel),
//! etcd where it did not come from a package, and the agent with the crates
//! of its Cargo.lock. Written beside the disk and into the image at
//! /usr/share/spdx/, and listed in manifest.json with its hash.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use kiln_node::node_config::Role;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::profile::{EtcdSource, LoadedProfile};
use kiln_node::versions::Version;

/// Where the image carries its own SBOM.
pub const IMAGE_DIR: &str = "/usr/share/spdx";
/// The workspace's lock: the agent's crates, as built.
const CARGO_LOCK: &str = include_str!("../../Cargo.lock");

/// The SBOM of `role`'s image on the Debian base at `base`; `created` is
/// the build's SOURCE_DATE_EPOCH, so the document is reproducible too.
pub fn for_role(
    loaded: &LoadedProfile,
    role: Role,
    base: &Path,
    unpackaged_etcd: Option<Version>,
    created: u64,
) -> Result<Vec<u8>> {
    let status = base.join("var/lib/dpkg/status");
    let text = std::fs::read_to_string(&status)
        .with_context(|| format!("reading {} for the SBOM", status.display()))?;
    let suite = loaded.profile.images.suite.as_str();
    let mut packages: Vec<Value> = installed(&text)
        .into_iter()
        .map(|p| {
            let purl = format!(
                "pkg:deb/debian/{}@{}?arch={}&distro={suite}",
                p.name,
                encode(&p.version),
                p.arch
            );
            package(
                &format!("deb-{}", p.name),
                &p.name,
                &p.version,
                &p.supplier,
                &purl,
            )
        })
        .collect();
    if role == Role::Etcd {
        packages.extend(unpackaged_etcd.map(|v| etcd_package(loaded, v)));
    }
    let agent = crate_closure("kiln-firstboot");
    for (name, version) in &agent {
        let purl = format!("pkg:cargo/{name}@{version}");
        let supplier = if name.starts_with("kiln") {
            "kiln"
        } else {
            "the crate's authors"
        };
        packages.push(package(
            &format!("crate-{name}-{version}"),
            name,
            version,
            supplier,
            &purl,
        ));
    }
    let ids: Vec<String> = packages
        .iter()
        .map(|p| p["SPDXID"].as_str().unwrap_or_default().to_owned())
        .collect();
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-image",
    })];
    relationships.extend(ids.iter().map(|id| {
        json!({"spdxElementId": "SPDXRef-image", "relationshipType": "CONTAINS", "relatedSpdxElement": id})
    }));
    let image = json!({
        "SPDXID": "SPDXRef-image",
        "name": format!("kiln {role} image"),
        "versionInfo": env!("CARGO_PKG_VERSION"),
        "supplier": "Organization: kiln",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "OPERATING-SYSTEM",
    });
    let body = serde_json::to_vec(&(&packages, &relationships)).unwrap_or_default();
    let digest = kiln_node::hex::hex(&Sha256::digest(&body)[..16]);
    let created = time::OffsetDateTime::from_unix_timestamp(created as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting the SBOM's creation time")?;
    let document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("kiln-{role}-image"),
        "documentNamespace": format!("https://spdx.kiln.invalid/{role}/{digest}"),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: kiln-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": std::iter::once(image).chain(packages).collect::<Vec<_>>(),
        "relationships": relationships,
    });
    let mut bytes = serde_json::to_vec_pretty(&document).context("writing the SBOM")?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// One SPDX package: no license or copyright claims kiln cannot make.
fn package(id: &str, name: &str, version: &str, supplier: &str, purl: &str) -> Value {
    json!({
        "SPDXID": format!("SPDXRef-{}", spdx_id(id)),
        "name": name,
        "versionInfo": version,
        "supplier": format!("Organization: {supplier}"),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl,
        }],
    })
}

/// etcd when dpkg does not list it: a release tarball (with its SHA-256),
/// another suite's Debian packages (unpacked, not installed), a folder.
fn etcd_package(loaded: &LoadedProfile, version: Version) -> Value {
    let version = version.to_string();
    match loaded.profile.images.etcd.etcd_source() {
        EtcdSource::Release(release) => {
            let purl = format!("pkg:github/etcd-io/etcd@v{version}");
            let mut value = package("etcd", "etcd", &version, "etcd-io", &purl);
            value["downloadLocation"] = json!(release.url);
            let sha256 = release.sha256.to_ascii_lowercase();
            value["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": sha256}]);
            value
        }
        EtcdSource::DebianSuite(suite) => {
            let purl = format!("pkg:deb/debian/etcd-server?distro={suite}");
            package(
                "etcd",
                "etcd-server",
                &version,
                "Debian Go Packaging Team",
                &purl,
            )
        }
        EtcdSource::Binaries(_) | EtcdSource::BaseSuite => {
            let purl = format!("pkg:generic/etcd@{version}");
            package("etcd", "etcd", &version, "etcd-io", &purl)
        }
    }
}

/// A package dpkg lists as installed.
struct Installed {
    name: String,
    version: String,
    arch: String,
    supplier: String,
}

fn installed(status: &str) -> Vec<Installed> {
    let mut found = Vec::new();
    for paragraph in status.split("\n\n") {
        let field = |key: &str| {
            paragraph
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        };
        if field("Status").as_deref() != Some("install ok installed") {
            continue;
        }
        let (Some(name), Some(version)) = (field("Package"), field("Version")) else {
            continue;
        };
        let maintainer = field("Maintainer").unwrap_or_default();
        let supplier = maintainer.split(" <").next().unwrap_or("Debian").to_owned();
        found.push(Installed {
            name,
            version,
            arch: field("Architecture").unwrap_or_else(|| "all".into()),
            supplier,
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// `root` and every crate it depends on in Cargo.lock (build and dev
/// dependencies too: the lock does not tell them apart), by name and version.
fn crate_closure(root: &str) -> BTreeSet<(String, String)> {
    let lock: toml::Value = toml::from_str(CARGO_LOCK).unwrap_or(toml::Value::Integer(0));
    let mut by_name: BTreeMap<String, Vec<(String, Vec<String>)>> = BTreeMap::new();
    for p in lock
        .get("package")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
    {
        let text = |k: &str| {
            p.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let deps = (p
            .get("dependencies")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten())
        .filter_map(|d| d.as_str().map(str::to_owned))
        .collect();
        by_name
            .entry(text("name"))
            .or_default()
            .push((text("version"), deps));
    }
    let mut seen = BTreeSet::new();
    let mut queue = vec![root.to_owned()];
    while let Some(spec) = queue.pop() {
        let mut parts = spec.split(' ');
        let name = parts.next().unwrap_or_default();
        let wanted = parts.next();
        let Some(versions) = by_name.get(name) else {
            continue;
        };
        let Some((version, deps)) = versions.iter().find(|(v, _)| wanted.is_none_or(|w| w == v))
        else {
            continue;
        };
        if seen.insert((name.to_owned(), version.clone())) {
            queue.extend(deps.iter().cloned());
        }
    }
    seen
}

/// An SPDX identifier's characters are letters, digits, `.` and `-`.
fn spdx_id(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A Debian version in a PURL: `:` and `+` percent-encoded.
fn encode(version: &str) -> String {
    version
        .replace('%', "%25")
        .replace(':', "%3A")
        .replace('+', "%2B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_gives_installed_packages_only() {
        let status = "Package: b\nStatus: install ok installed\nVersion: 1:2.0+x\nArchitecture: amd64\nMaintainer: Deb <d@x>\n\n\
                      Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n\
                      Package: a\nStatus: install ok installed\nVersion: 3\nArchitecture: all\n";
        let found: Vec<(String, String)> = installed(status)
            .into_iter()
            .map(|p| (p.name, p.version))
            .collect();
        assert_eq!(
            found,
            [("a".into(), "3".into()), ("b".into(), "1:2.0+x".into())]
        );
        assert_eq!(encode("1:2.0+x"), "1%3A2.0%2Bx");
        assert_eq!(spdx_id("deb-libstdc++6"), "deb-libstdc--6");
    }

    #[test]
    fn the_agents_crates_come_from_the_lock() {
        let crates = crate_closure("kiln-firstboot");
        let names: BTreeSet<&str> = crates.iter().map(|(n, _)| n.as_str()).collect();
        for needed in ["kiln-firstboot", "kiln-node", "rustls", "serde"] {
            assert!(names.contains(needed), "{needed} missing: {names:?}");
        }
        // The builder's own dependencies are not the agent's.
        assert!(!names.contains("kiln"), "{names:?}");
        assert!(!names.contains("indicatif"), "{names:?}");
    }
}
