//! Certificate checks and minting through the openssl command line, so the
//! stand-in judges kiln's PKI with a tool independent of kiln's rcgen code.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

/// Runs `openssl ARGS` with `stdin`; stdout, or stderr as the error.
fn openssl(args: &[&str], stdin: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running openssl (is it installed?): {e}"))?;
    if let Some(mut input) = child.stdin.take() {
        // openssl may exit before reading everything it does not need.
        let _ = input.write_all(stdin);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for openssl: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

/// The SHA-256 of the DER SubjectPublicKeyInfo of a PEM certificate: the
/// value of kubeadm's `--discovery-token-ca-cert-hash sha256:...`.
pub fn spki_sha256(cert_pem: &[u8]) -> Result<String, String> {
    let public = openssl(&["x509", "-pubkey", "-noout"], cert_pem)?;
    let der = openssl(&["pkey", "-pubin", "-outform", "der"], &public)?;
    Ok(Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// `openssl verify -CAfile ca cert`.
pub fn verify(ca: &Path, cert: &Path) -> Result<(), String> {
    openssl(&["verify", "-CAfile", p(ca), p(cert)], b"").map(drop)
}

/// A self-signed certificate with basicConstraints CA:TRUE.
pub fn is_self_signed_ca(cert: &Path) -> Result<(), String> {
    verify(cert, cert).map_err(|e| format!("not self-signed: {e}"))?;
    let ext = openssl(
        &["x509", "-in", p(cert), "-noout", "-ext", "basicConstraints"],
        b"",
    )?;
    if String::from_utf8_lossy(&ext).contains("CA:TRUE") {
        Ok(())
    } else {
        Err("basicConstraints lacks CA:TRUE".into())
    }
}

/// The PEM public key of a certificate.
pub fn cert_public_key(cert: &Path) -> Result<Vec<u8>, String> {
    openssl(&["x509", "-in", p(cert), "-pubkey", "-noout"], b"")
}

/// The PEM public key of a private key.
pub fn key_public_key(key: &Path) -> Result<Vec<u8>, String> {
    openssl(&["pkey", "-in", p(key), "-pubout"], b"")
}

/// The PEM public key as openssl re-encodes a public key file.
pub fn public_key(public: &Path) -> Result<Vec<u8>, String> {
    openssl(&["pkey", "-pubin", "-in", p(public), "-pubout"], b"")
}

/// What a minted leaf certificate is for.
#[derive(Debug, Clone, Copy)]
pub enum Eku {
    Server,
    Client,
    /// etcd members: serving and dialing peers with one certificate.
    Both,
}

/// A self-signed certificate for `cn` with a fresh P-256 key (the system
/// configuration makes it a CA): another cluster's CA, or a stranger's
/// client certificate.
pub fn self_signed(cn: &str, (cert, key): (&Path, &Path)) -> Result<(), String> {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-days",
            "1",
            "-keyout",
            p(key),
            "-out",
            p(cert),
        ],
        b"",
    )
    .map(drop)
}

/// Issues a leaf certificate for `sans` (IPs or DNS names) from the CA, with
/// a fresh P-256 key, into `cert` and `key`.
pub fn mint(
    (ca_cert, ca_key): (&Path, &Path),
    cn: &str,
    eku: Eku,
    sans: &[String],
    (cert, key): (&Path, &Path),
) -> Result<(), String> {
    let alt: Vec<String> = sans
        .iter()
        .map(|s| match s.parse::<std::net::IpAddr>() {
            Ok(_) => format!("IP:{s}"),
            Err(_) => format!("DNS:{s}"),
        })
        .collect();
    // A private config: the system one would make an -x509 certificate a CA.
    let conf = format!(
        "[req]\ndistinguished_name = dn\nx509_extensions = ext\nprompt = no\n[dn]\nCN = {cn}\n\
         [ext]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage = {}\n{}",
        match eku {
            Eku::Server => "serverAuth",
            Eku::Client => "clientAuth",
            Eku::Both => "serverAuth,clientAuth",
        },
        if alt.is_empty() { String::new() } else { format!("subjectAltName = {}\n", alt.join(",")) }
    );
    let dir = cert.parent().unwrap_or(Path::new("."));
    let conf_path = dir.join(format!("openssl-{cn}.cnf"));
    std::fs::write(&conf_path, conf)
        .map_err(|e| format!("writing {}: {e}", conf_path.display()))?;
    let result = openssl(
        &[
            "req",
            "-x509",
            "-new",
            "-config",
            p(&conf_path),
            "-CA",
            p(ca_cert),
            "-CAkey",
            p(ca_key),
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            p(key),
            "-out",
            p(cert),
            "-days",
            "30",
        ],
        b"",
    );
    let _ = std::fs::remove_file(&conf_path);
    result.map(drop)
}
