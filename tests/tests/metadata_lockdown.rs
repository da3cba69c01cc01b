//! The metadata lockdown of masters and workers (issue 29), with the rules
//! the built image carries: a metadata server of the test's own on
//! 169.254.169.254 and fd00:ec2::254 in one namespace, a "node" namespace
//! that routes to it with the image's rules loaded, and a "pod" namespace
//! behind the node on a veth, as a CNI plugs a pod in. The pod cannot
//! connect; a process of the node can. No traffic leaves the test's
//! namespaces. Run as root.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use kiln_e2e::artifacts::{tarball_files, Build};
use kiln_e2e::fixture;

const RULES: &str = "/usr/lib/kiln/metadata-lockdown.nft";
const UNIT: &str = "kiln-metadata-lockdown.service";

/// The test's three namespaces and its metadata server, removed by name
/// and PID on drop, whether the test passed or not.
struct Net {
    prefix: String,
    server: Option<Child>,
}

impl Net {
    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn exec(&self, ns: &str, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(ns)])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {args:?} in {ns}: {e}"))
    }

    fn ok(&self, ns: &str, args: &[&str]) {
        let out = self.exec(ns, args);
        assert!(
            out.status.success(),
            "{args:?} in {ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// meta <-> node <-> pod, IPv4 and IPv6, the node forwarding.
    fn new() -> Net {
        let net = Net {
            prefix: format!("k{}md", std::process::id()),
            server: None,
        };
        for ns in ["meta", "node", "pod"] {
            run_ip(&["netns", "add", &net.ns(ns)]);
            net.ok(ns, &["ip", "link", "set", "lo", "up"]);
            // No duplicate address detection (link-local addresses too):
            // a tentative address would fail the first connections.
            for conf in ["all", "default"] {
                net.ok(
                    ns,
                    &[
                        "sysctl",
                        "-qw",
                        &format!("net.ipv6.conf.{conf}.accept_dad=0"),
                    ],
                );
            }
        }
        net.ok("node", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        net.ok("node", &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        // v0 in the far namespace, its peer in the node named after it.
        let link = |far: &str| {
            let (far_ns, node_ns, peer) = (net.ns(far), net.ns("node"), format!("v{far}"));
            run_ip(&[
                "link", "add", "v0", "netns", &far_ns, "type", "veth", "peer", "name", &peer,
                "netns", &node_ns,
            ]);
        };
        link("meta");
        link("pod");
        let addr = |ns: &str, dev: &str, cidr: &str| {
            net.ok(ns, &["ip", "addr", "add", cidr, "dev", dev]);
        };
        addr("meta", "v0", "169.254.169.254/16");
        addr("node", "vmeta", "169.254.0.1/16");
        addr("meta", "v0", "fd00:ec2::254/64");
        addr("node", "vmeta", "fd00:ec2::1/64");
        addr("pod", "v0", "10.99.0.2/24");
        addr("node", "vpod", "10.99.0.1/24");
        addr("pod", "v0", "fd99::2/64");
        addr("node", "vpod", "fd99::1/64");
        for (ns, dev) in [
            ("meta", "v0"),
            ("node", "vmeta"),
            ("node", "vpod"),
            ("pod", "v0"),
        ] {
            net.ok(ns, &["ip", "link", "set", dev, "up"]);
        }
        net.ok(
            "pod",
            &["ip", "route", "add", "default", "via", "10.99.0.1"],
        );
        net.ok(
            "pod",
            &["ip", "-6", "route", "add", "default", "via", "fd99::1"],
        );
        net.ok(
            "meta",
            &["ip", "route", "add", "10.99.0.0/24", "via", "169.254.0.1"],
        );
        net.ok(
            "meta",
            &[
                "ip",
                "-6",
                "route",
                "add",
                "fd99::/64",
                "via",
                "fd00:ec2::1",
            ],
        );
        net.ok("node", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        net.ok("node", &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        net
    }

    /// An HTTP server on port 80 of both metadata addresses.
    fn serve(&mut self) {
        let script = "import http.server, socket\n\
class V6(http.server.HTTPServer):\n    address_family = socket.AF_INET6\n\
class Quiet(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        self.send_response(200); self.end_headers(); self.wfile.write(b'user-data')\n    def log_message(self, *a): pass\n\
import threading\n\
v4 = http.server.HTTPServer(('169.254.169.254', 80), Quiet)\n\
threading.Thread(target=v4.serve_forever, daemon=True).start()\n\
V6(('fd00:ec2::254', 80), Quiet).serve_forever()\n";
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns("meta"), "python3", "-c", script])
            .stdin(Stdio::null())
            .spawn()
            .expect("starting the metadata server");
        self.server = Some(child);
        for url in ["http://169.254.169.254/", "http://[fd00:ec2::254]/"] {
            let up = (0..50).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(100));
                self.reaches("meta", url)
            });
            assert!(up, "the metadata server did not come up on {url}");
        }
    }

    fn reaches(&self, ns: &str, url: &str) -> bool {
        let out = self.exec(ns, &["curl", "-sS", "-g", "--max-time", "3", url]);
        out.status.success() && out.stdout == b"user-data"
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in ["meta", "node", "pod"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(ns)])
                .status();
        }
    }
}

fn run_ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The symbolic links of a role's tarball, as `(path, target)`.
fn links(tgz: &Path) -> Vec<(String, String)> {
    let file = fs::File::open(tgz).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut found = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        if entry.header().entry_type() == tar::EntryType::Symlink {
            let path = entry.path().unwrap().display().to_string();
            let target = entry.link_name().unwrap().unwrap().display().to_string();
            found.push((format!("/{}", path.trim_start_matches("./")), target));
        }
    }
    found
}

/// Builds the cluster fixture's layers with `images` lines added.
fn build_with(build: &Build, images: &str) -> std::path::PathBuf {
    let text = fs::read_to_string(fixture("profiles/cluster.toml")).unwrap();
    let edited = text.replacen("[images]\n", &format!("[images]\n{images}"), 1);
    let profile = build.dir.path().join("cluster.toml");
    fs::write(&profile, &edited).unwrap();
    let out = build.dir.path().join(format!("out-{}", images.len()));
    let done = kiln_e2e::run(
        kiln_e2e::kiln()
            .arg("build")
            .arg(&profile)
            .args(["--formats", "rootfs", "--base", "none", "--out"])
            .arg(&out)
            .arg("--secrets")
            .arg(build.secrets()),
    );
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    out
}

#[test]
fn pods_cannot_reach_the_metadata_service_and_the_host_can() {
    let build = Build::new();
    let out = build_with(&build, "");
    let mut rules = None;
    for role in ["master", "worker"] {
        let tgz = out.join(format!("{role}/rootfs.tar.gz"));
        let file = tarball_files(&tgz).into_iter().find(|f| f.path == RULES);
        let file = file.unwrap_or_else(|| panic!("the {role} image lacks {RULES}"));
        let unit = format!("/etc/systemd/system/{UNIT}");
        let enabled = links(&tgz);
        for wanted in ["sysinit.target.wants", "kubelet.service.requires"] {
            let link = format!("/etc/systemd/system/{wanted}/{UNIT}");
            assert!(
                enabled.iter().any(|(p, t)| *p == link && *t == unit),
                "{role}: no {link} -> {unit} in {enabled:?}"
            );
        }
        rules = Some(file.bytes);
    }
    let etcd = tarball_files(&out.join("etcd/rootfs.tar.gz"));
    assert!(
        !etcd.iter().any(|f| f.path == RULES),
        "etcd nodes run no pods"
    );
    let open = build_with(&build, "metadata_access = \"open\"\n");
    let worker = tarball_files(&open.join("worker/rootfs.tar.gz"));
    assert!(!worker.iter().any(|f| f.path == RULES), "open has no rules");

    let mut net = Net::new();
    net.serve();
    let urls = ["http://169.254.169.254/", "http://[fd00:ec2::254]/"];
    // Without the rules the pod gets through: the topology routes.
    for url in urls {
        assert!(
            net.reaches("pod", url),
            "pod cannot reach {url} even without rules"
        );
    }
    let path = build.dir.path().join("metadata-lockdown.nft");
    fs::write(&path, rules.unwrap()).unwrap();
    net.ok("node", &["nft", "-f", path.to_str().unwrap()]);
    // Loading twice is a no-op, as a restarted unit does.
    net.ok("node", &["nft", "-f", path.to_str().unwrap()]);
    for url in urls {
        assert!(!net.reaches("pod", url), "a pod reached {url}");
        assert!(net.reaches("node", url), "the node cannot reach {url}");
    }
}
