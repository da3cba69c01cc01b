//! Is a real API server of this cluster there? A TLS handshake verified
//! against the cluster CA as the only root, and the health check keepalived
//! runs, so neither a port that merely accepts connections nor another
//! cluster's API server counts.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};

use crate::node_config::{endpoint_host, endpoint_port};

const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// An API server answers /healthz with a status line, a few headers and
/// "ok": what a hostile or broken endpoint sends past this is not read.
const MAX_HEALTHZ_ANSWER: u64 = 64 << 10;

/// What a probe of an endpoint found.
#[derive(Debug)]
pub enum Probe {
    /// A certificate chain to the cluster CA, for the endpoint's name.
    Trusted,
    /// It answered TLS with a certificate the cluster CA did not sign (or
    /// not for this name): the sentence says whose it was.
    Untrusted(String),
    /// Nothing usable answered (yet).
    Down(String),
}

/// Remembers the certificate the server presented, for the error message.
#[derive(Debug)]
struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(end_entity.to_vec());
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A TLS client trusting only the CA in `ca_file`.
pub struct ClusterTls {
    ca_file: String,
    ca_subject: String,
    verifier: Arc<Recording>,
    config: Arc<ClientConfig>,
}

impl ClusterTls {
    pub fn new(ca_file: &Path) -> Result<ClusterTls> {
        let pem =
            std::fs::read(ca_file).with_context(|| format!("reading {}", ca_file.display()))?;
        let ca = CertificateDer::from_pem_slice(&pem)
            .with_context(|| format!("{} is not a PEM certificate", ca_file.display()))?;
        let ca_subject = subject_and_issuer(&ca).0;
        let mut roots = RootCertStore::empty();
        roots
            .add(ca)
            .with_context(|| format!("{} is not a usable CA certificate", ca_file.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .context("building the certificate verifier")?;
        let verifier = Arc::new(Recording {
            inner,
            seen: Mutex::new(None),
        });
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("setting up TLS")?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        // Every probe must see the certificate: a resumed session shows none.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(ClusterTls {
            ca_file: ca_file.display().to_string(),
            ca_subject,
            verifier,
            config: Arc::new(config),
        })
    }

    /// Handshakes with `endpoint` (`host:port`) and says what answered.
    pub fn probe(&self, endpoint: &str) -> Probe {
        match self.connect(endpoint) {
            Ok(_) => Probe::Trusted,
            Err(e) => self.classify(endpoint, e),
        }
    }

    /// `GET /healthz` over a verified connection: true when it answers "ok".
    pub fn healthz(&self, endpoint: &str) -> Result<bool> {
        let (mut conn, mut sock) = match self.connect(endpoint) {
            Ok(pair) => pair,
            Err(e) => anyhow::bail!("{}", self.describe(endpoint, e)),
        };
        let host = endpoint_host(endpoint);
        let request = format!("GET /healthz HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        tls.write_all(request.as_bytes())
            .with_context(|| format!("sending GET /healthz to {endpoint}"))?;
        let mut answer = Vec::new();
        // Servers often close without close_notify; what arrived is enough.
        let _ = tls.take(MAX_HEALTHZ_ANSWER + 1).read_to_end(&mut answer);
        if answer.len() as u64 > MAX_HEALTHZ_ANSWER {
            anyhow::bail!(
                "{endpoint} answered GET /healthz with over {} KiB, the cap on that answer \
                 (an API server's is a status line, a few headers and \"ok\")",
                MAX_HEALTHZ_ANSWER >> 10
            );
        }
        let answer = String::from_utf8_lossy(&answer);
        let status_ok = answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        Ok(status_ok && body.trim() == "ok")
    }

    /// The certificate `endpoint` presents in its handshake (DER), verified
    /// or not: the handshake may go on to fail for want of a client
    /// certificate, and the server's has been seen by then.
    pub fn presented_certificate(&self, endpoint: &str) -> Result<Vec<u8>> {
        let outcome = self.connect(endpoint);
        let seen = self.verifier.seen.lock().ok().and_then(|mut s| s.take());
        match (seen, outcome) {
            (Some(der), _) => Ok(der),
            (None, Err(e)) => anyhow::bail!("{endpoint}: {e}"),
            (None, Ok(_)) => anyhow::bail!("{endpoint} presented no certificate"),
        }
    }

    fn connect(&self, endpoint: &str) -> std::io::Result<(ClientConnection, TcpStream)> {
        if let Ok(mut seen) = self.verifier.seen.lock() {
            *seen = None;
        }
        let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
        let host = endpoint_host(endpoint);
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| invalid(format!("{host:?} is neither an address nor a DNS name")))?;
        let addr = (host, endpoint_port(endpoint))
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| invalid(format!("{host} resolves to no address")))?;
        let mut sock = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        sock.set_read_timeout(Some(IO_TIMEOUT))?;
        sock.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut conn =
            ClientConnection::new(self.config.clone(), name).map_err(|e| invalid(e.to_string()))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        Ok((conn, sock))
    }

    fn classify(&self, endpoint: &str, error: std::io::Error) -> Probe {
        let rejected = error
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)));
        let sentence = self.describe(endpoint, error);
        if rejected {
            Probe::Untrusted(sentence)
        } else {
            Probe::Down(sentence)
        }
    }

    fn describe(&self, endpoint: &str, error: std::io::Error) -> String {
        let seen = self.verifier.seen.lock().ok().and_then(|mut s| s.take());
        match seen {
            Some(der) => {
                let (subject, issuer) = subject_and_issuer(&CertificateDer::from(der));
                format!(
                    "{endpoint} presented a certificate for {subject} issued by {issuer}, \
                     which the cluster CA ({}, from {}) does not vouch for: {error}",
                    self.ca_subject, self.ca_file
                )
            }
            None => format!("{endpoint}: {error}"),
        }
    }
}

/// The subject and issuer of a certificate, as `CN=...` text.
fn subject_and_issuer(der: &CertificateDer<'_>) -> (String, String) {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => (cert.subject().to_string(), cert.issuer().to_string()),
        Err(_) => ("(unparsable certificate)".into(), "(unknown)".into()),
    }
}
