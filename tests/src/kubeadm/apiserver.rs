//! The fake API server, the static pod init and control-plane join leave
//! running: TLS with kubeadm's apiserver certificate, read at start, answering the few requests kubeadm
//! discovery and kiln's tests make, backed by the cluster's etcd.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::config::{Cluster, ExternalEtcd, LocalEndpoint};
use super::discovery::{CLUSTER_INFO, ETCD_ENDPOINTS, KUBEADM_CONFIG};
use super::etcd::{self, Etcd};
use super::{certs, kubelet, tokens, Refused, Result, Root};
use crate::refuse;

const DIR: &str = "/etc/kubernetes/kiln-standin";
pub const CONFIG: &str = "/etc/kubernetes/kiln-standin/apiserver.json";
/// The API server's static pod.
pub const NAME: &str = "kube-apiserver";

/// Creates kubeadm's certificates that are missing (the API server's for
/// its SANs), writes the server's config and the static pod manifests of
/// the control plane, starts the kubelet that runs them, and returns once
/// the API server accepts connections.
pub fn start(
    root: &Root,
    node: &str,
    local: &LocalEndpoint,
    cluster: &Cluster,
    ext: &ExternalEtcd,
) -> Result<()> {
    let mut sans: Vec<String> = cluster.cert_sans.clone();
    sans.extend(cluster.endpoint.as_ref().map(|(h, _)| h.clone()));
    sans.extend(local.advertise.clone());
    sans.extend([
        "127.0.0.1".to_owned(),
        node.to_owned(),
        "kubernetes".to_owned(),
    ]);
    sans.sort();
    sans.dedup();
    certs::create_missing(root, cluster, &sans)?;
    std::fs::create_dir_all(root.path(DIR)).map_err(|e| Refused(format!("creating {DIR}: {e}")))?;
    let config = json!({
        "node": node, "port": local.bind_port,
        "cert": "/etc/kubernetes/pki/apiserver.crt", "key": "/etc/kubernetes/pki/apiserver.key",
        "etcd": {"endpoints": ext.endpoints, "caFile": ext.ca_file, "certFile": ext.cert_file, "keyFile": ext.key_file},
    });
    super::write_private(root, CONFIG, &config.to_string())?;
    let exe = std::env::current_exe()
        .map_err(|e| Refused(format!("finding this kubeadm binary: {e}")))?
        .display()
        .to_string();
    let command = [exe.as_str(), "serve-apiserver", "--config", CONFIG]
        .map(String::from)
        .to_vec();
    kubelet::write_manifest(root, NAME, &command)?;
    kubelet::write_component_manifests(root, &exe)?;
    kubelet::start(root)?;
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", local.bind_port)).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            refuse!(
                "the fake API server did not listen on port {} within 10 s",
                local.bind_port
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

struct Server {
    root: Root,
    etcd: ExternalEtcd,
    ca_pem: Vec<u8>,
}

/// `kubeadm serve-apiserver --config FILE`: serves until killed.
pub fn serve(root: &Root, config_path: &str) -> Result<()> {
    let text = std::fs::read_to_string(root.path(config_path))
        .map_err(|e| Refused(format!("reading {config_path}: {e}")))?;
    let config: Value =
        serde_json::from_str(&text).map_err(|e| Refused(format!("{config_path}: {e}")))?;
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let read =
        |f: &str| std::fs::read(root.path(f)).map_err(|e| Refused(format!("reading {f}: {e}")));
    let e = &config["etcd"];
    let server = Arc::new(Server {
        root: root.clone(),
        etcd: ExternalEtcd {
            endpoints: e["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .map(s)
                .collect(),
            ca_file: s(&e["caFile"]),
            cert_file: s(&e["certFile"]),
            key_file: s(&e["keyFile"]),
        },
        ca_pem: read("/etc/kubernetes/pki/ca.crt")?,
    });
    let tls = super::tls::server_config(&read(&s(&config["cert"]))?, &read(&s(&config["key"]))?)?;
    let port = config["port"].as_u64().unwrap_or(6443);
    let listener = TcpListener::bind(("0.0.0.0", port as u16))
        .map_err(|e| Refused(format!("binding 0.0.0.0:{port}: {e}")))?;
    for stream in listener.incoming().flatten() {
        let (server, tls) = (server.clone(), tls.clone());
        std::thread::spawn(move || {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            if let Ok(conn) = rustls::ServerConnection::new(tls) {
                let mut stream = rustls::StreamOwned::new(conn, stream);
                let _ = server.answer(&mut stream);
            }
        });
    }
    Ok(())
}

impl Server {
    fn answer<S: std::io::Read + Write>(&self, stream: &mut S) -> std::io::Result<()> {
        let mut request_line = String::new();
        let mut bearer = None;
        {
            let mut reader = BufReader::new(&mut *stream);
            reader.read_line(&mut request_line)?;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("authorization") {
                        bearer = value.trim().strip_prefix("Bearer ").map(str::to_owned);
                    }
                }
            }
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let (status, body) = self.route(method, path, bearer.as_deref());
        let reason = match status {
            200 => "OK",
            401 => "Unauthorized",
            404 => "Not Found",
            _ => "Error",
        };
        write!(
            stream,
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )?;
        stream.flush()
    }

    fn route(&self, method: &str, path: &str, bearer: Option<&str>) -> (u16, String) {
        let etcd = || Etcd::connect(&self.root, &self.etcd);
        let result: Result<(u16, String)> = (|| match (method, path) {
            ("GET", "/healthz") => Ok((200, "ok".to_owned())),
            ("GET", ETCD_ENDPOINTS) => {
                Ok((200, json!({"endpoints": self.etcd.endpoints}).to_string()))
            }
            ("GET", CLUSTER_INFO) => Ok((200, cluster_info(&self.ca_pem))),
            ("GET", KUBEADM_CONFIG) => Ok(match etcd()?.get(etcd::KUBEADM_CONFIG)? {
                Some(map) => (200, map),
                None => (404, "{}".to_owned()),
            }),
            ("GET", p) if p.starts_with("/kiln-standin/tokens/") => {
                let etcd = etcd()?;
                let id = &p["/kiln-standin/tokens/".len()..];
                match (etcd.get(&tokens::secret_key(id))?, bearer) {
                    (None, _) => Ok((404, "{}".to_owned())),
                    (Some(_), Some(token)) if !tokens::known(&etcd, token)? => {
                        Ok((401, "{}".to_owned()))
                    }
                    (Some(_), _) => Ok((200, "{}".to_owned())),
                }
            }
            ("POST", p) if p.starts_with("/kiln-standin/log/") => {
                let etcd = etcd()?;
                if !bearer.is_some_and(|t| tokens::known(&etcd, t).unwrap_or(false)) {
                    return Ok((401, "{}".to_owned()));
                }
                let name = &p["/kiln-standin/log/".len()..];
                etcd.put(&format!("/registry/kiln-standin/log/{name}"), "ok")?;
                Ok((200, "{}".to_owned()))
            }
            _ => Ok((404, "{}".to_owned())),
        })();
        result.unwrap_or_else(|e| (500, json!({"message": e.0}).to_string()))
    }
}

/// The kube-public/cluster-info ConfigMap: a kubeconfig carrying the CA.
fn cluster_info(ca_pem: &[u8]) -> String {
    use base64::Engine;
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "", "cluster": {
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(ca_pem),
        }}],
    });
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {"kubeconfig": kubeconfig.to_string()},
    })
    .to_string()
}
