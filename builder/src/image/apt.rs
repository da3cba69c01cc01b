//! The Kubernetes apt repository of master and worker bases: read from the
//! profile, verified by apt with its own key at build time, and left in the
//! node's sources.list with that key so apt keeps working on the node.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::profile::{KubernetesSource, LoadedProfile};

/// Where the node keeps the repository's key.
const KEYRINGS: &str = "/etc/apt/keyrings";

/// An apt repository of Kubernetes packages and its signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesApt {
    /// https URL of a flat repository (suite `/`), like pkgs.k8s.io's.
    pub repository: String,
    /// The key's bytes, ASCII-armoured or a binary keyring.
    pub key: Vec<u8>,
    pub packages: Vec<String>,
}

/// What mmdebstrap needs for the repository: hooks (options, before the
/// suite) and mirrors (after the target).
pub struct Sources {
    pub hooks: Vec<String>,
    pub mirrors: Vec<String>,
}

impl KubernetesApt {
    /// `images.kubernetes.apt` of the profile, with its key read.
    pub fn from_profile(loaded: &LoadedProfile) -> Result<Option<KubernetesApt>> {
        let Some(KubernetesSource::Apt(apt)) = &loaded.profile.images.kubernetes else {
            return Ok(None);
        };
        let path = loaded.resolve(&apt.key);
        let key = fs::read(&path)
            .with_context(|| format!("reading {} (images.kubernetes.apt.key)", path.display()))?;
        Ok(Some(KubernetesApt {
            repository: apt.repository.clone(),
            key,
            packages: apt.packages.clone(),
        }))
    }

    /// apt reads a keyring by its extension: `.asc` armoured, `.gpg` binary.
    pub fn key_name(&self) -> &'static str {
        if self.key.trim_ascii_start().starts_with(b"-----BEGIN PGP") {
            "kiln-kubernetes.asc"
        } else {
            "kiln-kubernetes.gpg"
        }
    }

    /// apt runs on the build host while mmdebstrap builds, so the build's
    /// `signed-by` names the key's copy in `key_dir` there; a setup hook puts
    /// the key into the tree, and a customize hook then writes the node's
    /// sources.list naming it where the node has it.
    /// `debian` are the base suite's own sources: naming any mirror drops
    /// mmdebstrap's defaults, so they are listed with the repository.
    pub fn sources(&self, key_dir: &Path, debian: &[String]) -> Sources {
        let build_key = key_dir.join(self.key_name());
        let node_key = Path::new(KEYRINGS).join(self.key_name());
        let setup = format!(
            "--setup-hook=mkdir -p \"$1{KEYRINGS}\" && cp {} \"$1{node}\" && chmod 644 \"$1{node}\"",
            sh_quote(&build_key.to_string_lossy()),
            node = node_key.display(),
        );
        let node_lines: Vec<String> = debian
            .iter()
            .map(|l| sh_quote(l))
            .chain([sh_quote(&self.source_line(&node_key))])
            .collect();
        let customize = format!(
            "--customize-hook=printf '%s\\n' {} > \"$1/etc/apt/sources.list\"",
            node_lines.join(" ")
        );
        let mirrors = debian
            .iter()
            .cloned()
            .chain([self.source_line(&build_key)])
            .collect();
        Sources {
            hooks: vec![setup, customize],
            mirrors,
        }
    }

    fn source_line(&self, key: &Path) -> String {
        format!("deb [signed-by={}] {} /", key.display(), self.repository)
    }
}

/// `s` as one single-quoted shell word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn pkgs_k8s_io() -> KubernetesApt {
        KubernetesApt {
            repository: "https://pkgs.k8s.io/core:/stable:/v1.36/deb/".into(),
            key: b"-----BEGIN PGP PUBLIC KEY BLOCK-----\nmQ\n".to_vec(),
            packages: vec!["kubelet".into(), "kubeadm".into(), "kubectl".into()],
        }
    }

    #[test]
    fn a_binary_keyring_keeps_apts_other_extension() {
        assert_eq!(pkgs_k8s_io().key_name(), "kiln-kubernetes.asc");
        let binary = KubernetesApt {
            key: vec![0x99, 0x01],
            ..pkgs_k8s_io()
        };
        assert_eq!(binary.key_name(), "kiln-kubernetes.gpg");
        let debian = ["deb http://mirror.test/debian trixie main".to_owned()];
        let sources = binary.sources(Path::new("/c"), &debian);
        assert!(sources.mirrors[1].starts_with("deb [signed-by=/c/kiln-kubernetes.gpg] "));
    }

    #[test]
    fn shell_quoting_survives_spaces_and_quotes() {
        assert_eq!(sh_quote("/a b/it's"), "'/a b/it'\\''s'");
    }
}
