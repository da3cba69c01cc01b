//! Issue 33: kiln's clients against a hostile server on loopback that
//! speaks TLS with a certificate of the cluster's CA and then sends one
//! line that never ends. `kiln backup` (the gateway's snapshot stream),
//! the gateway's JSON answers and the API server's /healthz probe each
//! stop at their cap with an error that names it, in bounded memory.

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_node::etcd::client::EtcdClient;
use kiln_node::pki::{Authority, KeyAlgorithm, LeafSpec, Usage};
use kiln_node::tls::ClusterTls;

/// Answers every request with a 200 and an endless body of 'A's, no newline.
const ENDLESS_LINE_SERVER: &str = r#"
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
def serve(c):
    try:
        t = ctx.wrap_socket(c, server_side=True)
        request = b""
        while b"\r\n\r\n" not in request:
            more = t.recv(4096)
            if not more:
                return
            request += more
        t.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
        chunk = b"A" * 65536
        while True:
            t.sendall(chunk)
    except Exception:
        pass
    finally:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// The hostile server; killed by PID when dropped.
struct Hostile {
    child: Child,
    port: u16,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A secrets folder as `kiln build` leaves it (the etcd CA and the agent's
/// client certificate), a minimal profile, and the hostile server with a
/// serving certificate of that CA for 127.0.0.1.
fn setup(dir: &Path) -> Hostile {
    let (ca, ca_files) =
        Authority::generate("kiln-test-etcd-ca", KeyAlgorithm::EcdsaP256, 30).expect("a test CA");
    let leaf = |name: &str, usage| {
        ca.issue(&LeafSpec {
            common_name: name.into(),
            organization: None,
            usage,
            dns_names: vec!["localhost".into()],
            ips: vec![IpAddr::from([127, 0, 0, 1])],
            algorithm: KeyAlgorithm::EcdsaP256,
            validity_seconds: 86_400,
        })
        .expect("a test certificate")
    };
    let etcd = dir.join("secrets/etcd");
    std::fs::create_dir_all(&etcd).unwrap();
    let client = leaf("kiln-agent", Usage::Client);
    let server = leaf("hostile", Usage::Server);
    for (name, pem) in [
        ("ca.crt", &ca_files.cert_pem),
        ("kiln-agent.crt", &client.cert_pem),
        ("kiln-agent.key", &client.key_pem),
        ("hostile.crt", &server.cert_pem),
        ("hostile.key", &server.key_pem),
    ] {
        std::fs::write(etcd.join(name), pem).unwrap();
    }
    std::fs::write(
        dir.join("cluster.toml"),
        "[cluster]\nname = \"kiln-test\"\ndomain = \"kiln.test\"\n\
         kubernetes_version = \"1.36.2\"\nnode_subnets = [\"10.77.126.0/24\"]\n\n\
         [etcd]\nmembers = [{ name = \"etcd1\", ip = \"10.77.126.11\" }]\n",
    )
    .unwrap();
    let mut child = Command::new("python3")
        .args(["-c", ENDLESS_LINE_SERVER])
        .arg(etcd.join("hostile.crt"))
        .arg(etcd.join("hostile.key"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the server's port");
    Hostile { child, port }
}

#[test]
fn kiln_backup_stops_at_the_line_cap_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = setup(dir.path());
    let out = dir.path().join("prod.db");
    // The peak RSS of `kiln backup`, as its parent sees it once it is reaped.
    let measure = "import resource, subprocess, sys\n\
                   r = subprocess.run(sys.argv[1:], capture_output=True, timeout=120)\n\
                   sys.stdout.buffer.write(r.stderr)\n\
                   print('maxrss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
                   sys.exit(r.returncode)\n";
    let start = Instant::now();
    let result = kiln_e2e::run(
        Command::new("python3")
            .args(["-c", measure])
            .arg(kiln_e2e::binary("kiln"))
            .arg("backup")
            .arg(dir.path().join("cluster.toml"))
            .arg("--secrets")
            .arg(dir.path().join("secrets"))
            .arg("--out")
            .arg(&out)
            .arg("--endpoints")
            .arg(format!("https://127.0.0.1:{}", hostile.port)),
    );
    let said = String::from_utf8_lossy(&result.stdout);
    assert!(!result.status.success(), "kiln backup succeeded: {said}");
    assert!(
        said.contains("a line of the snapshot stream is longer than 4 MiB"),
        "{said}"
    );
    let peak_kib: u64 = said
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kib "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the peak RSS");
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB\n{said}");
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    assert!(!out.exists(), "a refused snapshot left {}", out.display());
}

#[test]
fn endless_json_answers_and_healthz_bodies_stop_at_their_caps() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = setup(dir.path());
    let etcd = dir.path().join("secrets/etcd");
    let client = EtcdClient::new(
        &etcd.join("ca.crt"),
        &etcd.join("kiln-agent.crt"),
        &etcd.join("kiln-agent.key"),
    )
    .unwrap();
    let base = format!("https://127.0.0.1:{}", hostile.port);
    let err = format!("{:#}", client.member_list(&base).unwrap_err());
    assert!(
        err.contains("/v3/cluster/member/list answered 200 OK with a body over 4 MiB"),
        "{err}"
    );
    let tls = ClusterTls::new(&etcd.join("ca.crt")).unwrap();
    let endpoint = format!("127.0.0.1:{}", hostile.port);
    let err = format!("{:#}", tls.healthz(&endpoint).unwrap_err());
    assert!(
        err.contains("answered GET /healthz with over 64 KiB"),
        "{err}"
    );
}
