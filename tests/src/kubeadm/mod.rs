//! The kubeadm stand-in: parses configs strictly, runs kubeadm's preflight
//! file checks, records init/join in etcd so double inits are detectable and
//! serves a fake API server, so kiln's agent is tested without Kubernetes.

pub mod apiserver;
pub mod bootstrap_token;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod discovery;
pub mod etcd;
pub mod kubelet;
pub mod networking;
pub mod openssl;
pub mod preflight;
pub mod record;
pub mod rules;
pub mod schema;
pub mod service;
pub mod stacked;
pub mod tls;
pub mod tokens;
mod verbs;
pub mod yaml;

use std::path::PathBuf;

/// Environment variable that prefixes every node path (tier-1 tests).
pub const ROOT_ENV: &str = "KUBEADM_STANDIN_ROOT";

/// Where node paths live: `/` inside a container, a folder in tier-1 tests.
#[derive(Debug, Clone)]
pub struct Root {
    pub dir: Option<PathBuf>,
}

impl Root {
    pub fn from_env() -> Root {
        Root {
            dir: std::env::var_os(ROOT_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }

    /// The host path of an absolute node path.
    pub fn path(&self, node_path: &str) -> PathBuf {
        match &self.dir {
            Some(dir) => dir.join(node_path.trim_start_matches('/')),
            None => PathBuf::from(node_path),
        }
    }
}

/// A refusal: the stand-in exits non-zero with this reason, as kubeadm would.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

pub type Result<T> = std::result::Result<T, Refused>;

/// Builds a [`Refused`] from a format string.
#[macro_export]
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err($crate::kubeadm::Refused(format!($($arg)*)))
    };
}

/// Runs the stand-in with `argv` (program name first); returns the exit code.
pub fn main(argv: &[String]) -> i32 {
    let root = Root::from_env();
    record::argv(&root, argv);
    let command = match cli::parse(&argv[1..]) {
        Ok(command) => command,
        Err(e) => {
            record::invocation(&root, argv, "cli", None, Err(&e));
            eprintln!("error: {e}");
            return 2;
        }
    };
    verbs::run(&root, argv, command)
}

/// Writes a node file 0600 from the start (it may hold a token or a key).
pub fn write_private(root: &Root, node_path: &str, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = root.path(node_path);
    let fail = |e: std::io::Error| Refused(format!("writing {node_path}: {e}"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    std::fs::rename(&tmp, &path).map_err(fail)
}
