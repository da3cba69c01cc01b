//! Records every invocation: a JSON line in /var/log/kubeadm-standin.jsonl and
//! a `KUBEADM-STANDIN <verb> <ok|refused> <reason>` console line tests grep;
//! and every argv it is started with, its servers' too, in [`ARGV_LOG`], so
//! tests see what /proc/PID/cmdline showed.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::{Refused, Root};

pub const LOG: &str = "/var/log/kubeadm-standin.jsonl";
/// One JSON array per start of the stand-in: its argv.
pub const ARGV_LOG: &str = "/var/log/kubeadm-standin-argv.jsonl";

/// Appends `argv` to [`ARGV_LOG`].
pub fn argv(root: &Root, argv: &[String]) {
    append(root, ARGV_LOG, &json!(argv));
}

fn append(root: &Root, node_path: &str, line: &serde_json::Value) {
    let log = root.path(node_path);
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = appended {
        eprintln!("kubeadm stand-in: cannot append to {}: {e}", log.display());
    }
}

/// Appends the record and prints the console line.
pub fn invocation(
    root: &Root,
    argv: &[String],
    verb: &str,
    node: Option<&str>,
    result: Result<&str, &Refused>,
) {
    let (outcome, reason) = match result {
        Ok(reason) => ("ok", reason.to_owned()),
        Err(refused) => ("refused", refused.0.clone()),
    };
    // Refusals often come before the config named the node: use the hostname.
    let node = node.map(str::to_owned).or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
    });
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let line = json!({
        "argv": argv,
        "verb": verb,
        "result": outcome,
        "reason": reason,
        "node": node,
        "time": time,
    });
    append(root, LOG, &line);
    console(&format!("KUBEADM-STANDIN {verb} {outcome} {reason}"));
}

/// Prints `line` on stderr and, on a node (not in tier-1 tests, where the
/// host's console is not ours), on the console tests read.
pub fn console(line: &str) {
    eprintln!("{line}");
    if Root::from_env().dir.is_none() {
        if let Ok(mut tty) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
            let _ = writeln!(tty, "{line}");
        }
    }
}
