//! Network namespaces for tests: a bridge in its own namespace and one
//! namespace per host on 10.77.<subnet>.0/24, torn down (processes killed by
//! PID, namespaces deleted) when the lab is dropped, on success or failure.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// One host: a network namespace with one address on the lab's bridge.
#[derive(Debug, Clone)]
pub struct Host {
    pub netns: String,
    pub ip: Ipv4Addr,
}

impl Host {
    /// A command that runs inside this host's namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns, program]);
        cmd
    }
}

/// A bridge namespace and the hosts plugged into it.
pub struct Lab {
    prefix: String,
    subnet: u8,
    bridge: String,
    namespaces: Mutex<Vec<String>>,
    children: Mutex<Vec<(String, Child)>>,
}

/// Runs `ip ARGS`, failing the test with its error output.
pub(crate) fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Links namespace `netns` to `br0` of `bridge_ns` by a veth pair: `ve0`
/// inside `netns` (with `mac` if given), `port` on the bridge; `lo` comes up.
pub(crate) fn plug_into_bridge(netns: &str, bridge_ns: &str, port: &str, mac: Option<&str>) {
    let mut args = vec!["link", "add", "ve0"];
    if let Some(mac) = mac {
        args.extend(["address", mac]);
    }
    args.extend([
        "netns", netns, "type", "veth", "peer", "name", port, "netns", bridge_ns,
    ]);
    ip(&args);
    ip(&["-n", bridge_ns, "link", "set", port, "master", "br0"]);
    ip(&["-n", bridge_ns, "link", "set", port, "up"]);
    ip(&["-n", netns, "link", "set", "lo", "up"]);
}

impl Lab {
    /// Creates the bridge namespace for subnet 10.77.`subnet`.0/24. `tag`
    /// and the test process's PID make the names unique.
    pub fn new(tag: &str, subnet: u8) -> Lab {
        let prefix = format!("k{}{tag}", std::process::id());
        let bridge = format!("{prefix}-br");
        let lab = Lab {
            prefix,
            subnet,
            bridge: bridge.clone(),
            namespaces: Mutex::new(vec![]),
            children: Mutex::new(vec![]),
        };
        ip(&["netns", "add", &bridge]);
        lab.namespaces.lock().unwrap().push(bridge.clone());
        for args in [
            &["link", "add", "br0", "type", "bridge"][..],
            &["link", "set", "br0", "up"],
            &["link", "set", "lo", "up"],
        ] {
            ip(&[&["-n", &bridge][..], args].concat());
        }
        lab
    }

    /// The address `10.77.<subnet>.<last>`.
    pub fn addr(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, last)
    }

    /// Gives the bridge itself an address, for services such as DNS.
    pub fn bridge_host(&self, last: u8) -> Host {
        let cidr = format!("{}/24", self.addr(last));
        ip(&["-n", &self.bridge, "addr", "add", &cidr, "dev", "br0"]);
        Host {
            netns: self.bridge.clone(),
            ip: self.addr(last),
        }
    }

    /// Creates a host namespace with address 10.77.<subnet>.<last>.
    pub fn host(&self, last: u8) -> Host {
        let netns = format!("{}-h{last}", self.prefix);
        ip(&["netns", "add", &netns]);
        self.namespaces.lock().unwrap().push(netns.clone());
        plug_into_bridge(&netns, &self.bridge, &format!("vb{last}"), None);
        let cidr = format!("{}/24", self.addr(last));
        ip(&["-n", &netns, "addr", "add", &cidr, "dev", "ve0"]);
        ip(&["-n", &netns, "link", "set", "ve0", "up"]);
        Host {
            netns,
            ip: self.addr(last),
        }
    }

    /// Deletes a host's namespace (its processes must be gone already).
    pub fn remove_host(&self, host: &Host) {
        ip(&["netns", "del", &host.netns]);
        self.namespaces.lock().unwrap().retain(|n| n != &host.netns);
    }

    /// Starts a long-running process, killed with SIGKILL when the lab drops.
    /// Returns its PID; `label` names it for [`Lab::kill`].
    pub fn spawn(&self, label: &str, mut cmd: Command) -> u32 {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let pid = child.id();
        self.children
            .lock()
            .unwrap()
            .push((label.to_owned(), child));
        pid
    }

    /// Kills (SIGKILL) and reaps every process started under `label`.
    pub fn kill(&self, label: &str) {
        let mut children = self.children.lock().unwrap();
        for (_, child) in children.iter_mut().filter(|(l, _)| l == label) {
            let _ = child.kill();
            let _ = child.wait();
        }
        children.retain(|(l, _)| l != label);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Ok(children) = self.children.get_mut() {
            for (_, child) in children.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Ok(namespaces) = self.namespaces.get_mut() {
            for ns in namespaces.iter().rev() {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }
}
