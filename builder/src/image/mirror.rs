//! The Debian mirrors kiln builds from: the ones the build host's apt is
//! configured with (so a build uses the same, possibly internal, mirror as
//! the host and names no host of its own), as `apt-get indextargets` lists them.

use std::process::Command;

use crate::profile::Suite;

/// The archive and security mirrors of the build host's apt configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrors {
    /// `URI` of the Debian archive (label "Debian").
    pub archive: String,
    /// `URI` of the security archive (label "Debian-Security"), if configured.
    pub security: Option<String>,
}

impl Mirrors {
    /// The host's mirrors; `None` on a host without apt or without a Debian
    /// source, where mmdebstrap falls back to its own default.
    pub fn of_host() -> Option<Mirrors> {
        let out = Command::new("apt-get")
            .args(["indextargets", "--format", "$(LABEL) $(REPO_URI)"])
            .output()
            .ok()?;
        Mirrors::from_indextargets(&String::from_utf8_lossy(&out.stdout))
    }

    fn from_indextargets(text: &str) -> Option<Mirrors> {
        let uri = |label: &str| {
            text.lines()
                .filter_map(|l| l.split_once(' '))
                .find(|(l, uri)| *l == label && !uri.trim().is_empty())
                .map(|(_, uri)| uri.trim().to_owned())
        };
        Some(Mirrors {
            archive: uri("Debian")?,
            security: uri("Debian-Security"),
        })
    }

    /// One-line apt sources of `suite`: main, updates and security.
    pub fn sources(&self, suite: Suite) -> Vec<String> {
        let mut lines = vec![
            format!("deb {} {suite} main", self.archive),
            format!("deb {} {suite}-updates main", self.archive),
        ];
        if let Some(security) = &self.security {
            lines.push(format!("deb {security} {suite}-security main"));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_archive_and_security_mirrors() {
        let text = "Debian-Security http://mirror.test/debian-security/\n\
                    Debian http://mirror.test/debian/\nDebian http://mirror.test/debian/\n";
        let mirrors = Mirrors::from_indextargets(text).unwrap();
        assert_eq!(
            mirrors.sources(Suite::Trixie),
            [
                "deb http://mirror.test/debian/ trixie main",
                "deb http://mirror.test/debian/ trixie-updates main",
                "deb http://mirror.test/debian-security/ trixie-security main",
            ]
        );
        assert_eq!(Mirrors::from_indextargets("Other http://x/\n"), None);
    }
}
