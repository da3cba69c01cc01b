//! A cloud-like network for booted images (containers and VMs): a bridge in
//! its own namespace, dnsmasq on it handing out fixed leases by MAC, and
//! etcd checks run from the bridge with the cluster's client certificate.
//! Everything is torn down by PID and by name when dropped.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{ip, plug_into_bridge};

/// The bridge namespace with dnsmasq serving 10.77.0.0/24.
pub struct BootNet {
    pub prefix: String,
    pub bridge_ns: String,
    dir: tempfile::TempDir,
    dnsmasq: Option<Child>,
    namespaces: Vec<String>,
}

/// A node's MAC on the lab network: 52:54:00:77:00:<last>.
pub fn mac(last: u8) -> String {
    format!("52:54:00:77:00:{last:02x}")
}

/// The address 10.77.0.<last>.
pub fn addr(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, last)
}

impl BootNet {
    /// `leases`: (MAC's last byte, address's last byte, hostname).
    pub fn new(tag: &str, leases: &[(u8, u8, &str)]) -> BootNet {
        let prefix = format!("k{}{tag}", std::process::id());
        let bridge_ns = format!("{prefix}-br");
        ip(&["netns", "add", &bridge_ns]);
        let mut net = BootNet {
            prefix,
            bridge_ns: bridge_ns.clone(),
            dir: tempfile::tempdir().expect("creating a temporary folder"),
            dnsmasq: None,
            namespaces: vec![bridge_ns.clone()],
        };
        for args in [
            &["link", "add", "br0", "type", "bridge"][..],
            &["link", "set", "br0", "up"],
            &["link", "set", "lo", "up"],
            &["addr", "add", "10.77.0.1/24", "dev", "br0"],
        ] {
            ip(&[&["-n", &bridge_ns][..], args].concat());
        }
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &bridge_ns,
            "dnsmasq",
            "--keep-in-foreground",
        ])
        .args(["--conf-file=/dev/null", "--port=0", "--bind-interfaces"])
        .args(["--interface=br0", "--except-interface=lo"])
        .arg("--dhcp-range=10.77.0.100,10.77.0.199,255.255.255.0,1h")
        .arg("--dhcp-authoritative")
        .arg(format!(
            "--dhcp-leasefile={}",
            net.dir.path().join("leases").display()
        ))
        .arg(format!(
            "--pid-file={}",
            net.dir.path().join("dnsmasq.pid").display()
        ))
        .arg("--log-dhcp")
        .arg(format!(
            "--log-facility={}",
            net.dir.path().join("dnsmasq.log").display()
        ));
        for (mac_last, ip_last, hostname) in leases {
            cmd.arg(format!(
                "--dhcp-host={},{},{hostname}",
                mac(*mac_last),
                addr(*ip_last)
            ));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting dnsmasq: {e}"));
        net.dnsmasq = Some(child);
        net
    }

    /// A namespace holding one veth `ve0` with MAC `mac(mac_last)`, plugged
    /// into the bridge and up, without an address (DHCP gives it one).
    pub fn host_ns(&mut self, name: &str, mac_last: u8) -> String {
        let netns = format!("{}-{name}", self.prefix);
        ip(&["netns", "add", &netns]);
        self.namespaces.push(netns.clone());
        let port = format!("vb{name}");
        let mac = mac(mac_last);
        plug_into_bridge(&netns, &self.bridge_ns, &port, Some(&mac));
        netns
    }

    /// A tap device on the bridge, inside the bridge namespace, for qemu.
    pub fn tap(&self, name: &str) -> String {
        let tap = format!("tap{name}");
        ip(&[
            "-n",
            &self.bridge_ns,
            "tuntap",
            "add",
            "dev",
            &tap,
            "mode",
            "tap",
        ]);
        ip(&["-n", &self.bridge_ns, "link", "set", &tap, "master", "br0"]);
        ip(&["-n", &self.bridge_ns, "link", "set", &tap, "up"]);
        tap
    }

    /// Deletes the namespace [`BootNet::host_ns`] made for `name` (its
    /// processes must be gone already) and its veth pair, at once, so the
    /// name can be used again right away.
    pub fn remove_host_ns(&mut self, name: &str) {
        let netns = format!("{}-{name}", self.prefix);
        ip(&["-n", &self.bridge_ns, "link", "del", &format!("vb{name}")]);
        ip(&["netns", "del", &netns]);
        self.namespaces.retain(|n| n != &netns);
    }

    /// dnsmasq's log, for failure messages.
    pub fn dhcp_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default()
    }

    /// `etcdctl` from the bridge with the operator client certificate of
    /// the secrets folder.
    pub fn etcdctl(&self, secrets: &Path, endpoints: &[Ipv4Addr], args: &[&str]) -> Output {
        let eps: Vec<String> = endpoints
            .iter()
            .map(|ip| format!("https://{ip}:2379"))
            .collect();
        let file = |f: &str| -> PathBuf { secrets.join("etcd").join(f) };
        let etcdctl = crate::etcd::Release::Primary.tool("etcdctl");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.bridge_ns])
            .arg(etcdctl)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", eps.join(",")))
            .arg("--cacert")
            .arg(file("ca.crt"))
            .arg("--cert")
            .arg(file("kiln-agent.crt"))
            .arg("--key")
            .arg(file("kiln-agent.key"))
            .arg("--command-timeout=5s")
            .args(args);
        crate::run(&mut cmd)
    }

    /// The value of `key` as read through `endpoints` ("" when absent).
    pub fn get(&self, secrets: &Path, endpoints: &[Ipv4Addr], key: &str) -> String {
        let out = self.etcdctl(secrets, endpoints, &["get", key, "--print-value-only"]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `kiln health profiles/local.toml --json` from the bridge, asking
    /// `endpoints`, waiting up to `wait`.
    pub fn kiln_health(&self, secrets: &Path, endpoints: &[Ipv4Addr], wait: &str) -> Output {
        let urls: Vec<String> = endpoints
            .iter()
            .map(|ip| format!("https://{ip}:2379"))
            .collect();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.bridge_ns])
            .arg(crate::binary("kiln"))
            .arg("health")
            .arg(crate::profile("local.toml"))
            .arg("--secrets")
            .arg(secrets)
            .arg(format!("--endpoints={}", urls.join(",")))
            .args(["--wait", wait, "--json"]);
        crate::run(&mut cmd)
    }

    /// The member list (JSON `members`), from any of `endpoints`.
    pub fn members(&self, secrets: &Path, endpoints: &[Ipv4Addr]) -> Vec<serde_json::Value> {
        let out = self.etcdctl(secrets, endpoints, &["member", "list", "-w", "json"]);
        assert!(
            out.status.success(),
            "etcdctl member list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        value["members"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until every endpoint is healthy and the cluster has exactly
    /// `endpoints.len()` started voting members; `describe` explains a
    /// timeout (console logs).
    pub fn wait_cluster(
        &self,
        secrets: &Path,
        endpoints: &[Ipv4Addr],
        within: Duration,
        describe: &dyn Fn() -> String,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let health = self.etcdctl(secrets, endpoints, &["endpoint", "health"]);
            if health.status.success() {
                let out = self.etcdctl(secrets, endpoints, &["member", "list", "-w", "json"]);
                let members: serde_json::Value =
                    serde_json::from_slice(&out.stdout).unwrap_or_default();
                let list = members["members"].as_array().cloned().unwrap_or_default();
                let voting = list
                    .iter()
                    .filter(|m| {
                        m["name"].as_str().is_some_and(|n| !n.is_empty())
                            && !m["isLearner"].as_bool().unwrap_or(false)
                    })
                    .count();
                if list.len() == endpoints.len() && voting == endpoints.len() {
                    return start.elapsed();
                }
            }
            if start.elapsed() > within {
                panic!(
                    "cluster {endpoints:?} not healthy with {} voting members after {within:?}:\n\
                     {}{}\n--- dhcp ---\n{}\n{}",
                    endpoints.len(),
                    String::from_utf8_lossy(&health.stdout),
                    String::from_utf8_lossy(&health.stderr),
                    self.dhcp_log(),
                    describe()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for BootNet {
    fn drop(&mut self) {
        if let Some(child) = &mut self.dnsmasq {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
