//! systemd-nspawn containers booted from a role's root filesystem, each in
//! a network namespace of a [`crate::bootnet::BootNet`], with the console
//! captured through a PTY. Dropping a container kills its whole process
//! tree by PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Debian base cache every boot test shares (kiln locks it, so
/// parallel tests build it once): `$KILN_TEST_CACHE` or target/kiln-cache.
pub fn base_cache() -> PathBuf {
    std::env::var_os("KILN_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target/kiln-cache"))
}

pub struct Container {
    pub name: String,
    pub log: PathBuf,
    child: Child,
}

impl Container {
    /// Boots `root`, a role's public OS tree, read-only with a private
    /// writable overlay, so several containers share one tree and each
    /// starts from the image's state; `/usr` is the image's, read-only, as
    /// on a node's verified OS. `config` (the role's `.ign`) is handed in
    /// as the systemd credential `kiln.ign`, which the image's first-boot
    /// Ignition run applies, as a VM's applies its user-data.
    /// nspawn withholds CAP_NET_ADMIN with --network-namespace-path, and
    /// systemd-networkd (the image's DHCP client) needs it.
    pub fn boot(root: &Path, config: &Path, name: &str, netns: &str, log: &Path) -> Container {
        Container::boot_with(root, Some(config), name, netns, log, "")
    }

    /// [`Container::boot`] with more nspawn options, like `--bind=SRC:DST`,
    /// or with no config at all.
    pub fn boot_with(
        root: &Path,
        config: Option<&Path>,
        name: &str,
        netns: &str,
        log: &Path,
        extra: &str,
    ) -> Container {
        let credential = config
            .map(|c| format!("--load-credential=kiln.ign:{}", c.display()))
            .unwrap_or_default();
        let nspawn = format!(
            "systemd-nspawn -D {root} --register=no --keep-unit --volatile=overlay \
             --bind-ro={root}/usr:/usr {credential} --capability=CAP_NET_ADMIN -M {name} \
             --network-namespace-path=/run/netns/{netns} {extra} -b",
            root = root.display()
        );
        let child = Command::new("setsid")
            .args(["script", "-qfec", &nspawn])
            .arg(log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {nspawn}: {e}"));
        Container {
            name: name.to_owned(),
            log: log.to_owned(),
            child,
        }
    }

    /// The container's init (PID 1 inside): its `/proc/PID/root` is the
    /// container's file system as its processes see it.
    pub fn init_pid(&self) -> Option<u32> {
        let mut tree = vec![self.child.id()];
        let mut i = 0;
        while i < tree.len() {
            let pid = tree[i];
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if i > 0 && comm.trim() == "systemd" {
                return Some(pid);
            }
            tree.extend(children(pid));
            i += 1;
        }
        None
    }

    pub fn console(&self) -> String {
        console_text(&self.log)
    }

    /// Runs `command` (through sh) inside the running container's mount
    /// namespace, as its root.
    pub fn exec(&self, command: &str) -> std::process::Output {
        let pid = self.init_pid().expect("the container's init");
        crate::run(Command::new("nsenter").args([
            "-t",
            &pid.to_string(),
            "-m",
            "-p",
            "--",
            "sh",
            "-c",
            command,
        ]))
    }

    /// Kills the container (its init and everything under it) at once, as
    /// a lost node disappears.
    pub fn kill(&mut self) {
        kill_tree(self.child.id());
        let _ = self.child.wait();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A console log without terminal escapes.
pub fn console_text(log: &Path) -> String {
    let raw = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            out.push(c);
        }
    }
    out
}

/// Waits until `log` contains `needle`; returns how long it took.
pub fn wait_console(log: &Path, needle: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if console_text(log).contains(needle) {
            return start.elapsed();
        }
        if start.elapsed() > within {
            let text = console_text(log);
            let tail: String = text
                .lines()
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            panic!(
                "{} did not show {needle:?} within {within:?}; last lines:\n{tail}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// SIGKILLs `pid` and all its descendants, children first found from
/// /proc, so nothing of a container or VM outlives its test.
pub fn kill_tree(pid: u32) {
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        tree.extend(children(tree[i]));
        i += 1;
    }
    for pid in tree.iter().rev() {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // The command name may hold spaces: fields resume after ')'.
                    let rest = stat.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}
