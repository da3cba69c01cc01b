//! Starts the processes init and join leave running (fake API server, local
//! etcd) so they outlive kubeadm: a runtime systemd unit on a node, or a
//! detached process with a pid file under the root in tier-1 tests.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::{Refused, Result, Root};
use crate::refuse;

/// A long-running process; `name` names its unit, pid file and log.
pub struct Service<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub program: String,
    pub args: Vec<String>,
}

/// The pid file of a detached service, a node path.
pub fn pid_file(name: &str) -> String {
    format!("/run/{name}.pid")
}

pub fn start(root: &Root, service: &Service) -> Result<()> {
    if root.dir.is_none() && std::path::Path::new("/run/systemd/system").is_dir() {
        start_unit(service)
    } else {
        detach(root, service)
    }
}

fn start_unit(service: &Service) -> Result<()> {
    let unit = format!("{}.service", service.name);
    let text = format!(
        "[Unit]\nDescription={} (kubeadm stand-in, tests only)\n\n[Service]\nExecStart={} {}\nRestart=on-failure\n",
        service.description,
        service.program,
        service.args.join(" ")
    );
    let path = format!("/run/systemd/system/{unit}");
    std::fs::write(&path, text).map_err(|e| Refused(format!("writing {path}: {e}")))?;
    for args in [&["daemon-reload"][..], &["start", &unit]] {
        let status = Command::new("systemctl").args(args).status();
        if !status.is_ok_and(|s| s.success()) {
            refuse!("systemctl {} failed for {path}", args.join(" "));
        }
    }
    Ok(())
}

fn detach(root: &Root, service: &Service) -> Result<()> {
    let log_path = root.path(&format!("/var/log/{}.log", service.name));
    let pid_path = root.path(&pid_file(service.name));
    for dir in [log_path.parent(), pid_path.parent()].into_iter().flatten() {
        let _ = std::fs::create_dir_all(dir);
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Refused(format!("opening {}: {e}", log_path.display())))?;
    // Its own process group: the caller's terminal signals must not reach it.
    let child = Command::new(&service.program)
        .args(&service.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| Refused(format!("starting {}: {e}", service.program)))?;
    std::fs::write(&pid_path, format!("{}\n", child.id()))
        .map_err(|e| Refused(format!("writing {}: {e}", pid_path.display())))
}
