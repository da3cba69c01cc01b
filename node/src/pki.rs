//! Certificate issuance: the one routine that mints kiln's CAs and leaf
//! certificates, following the classic cfssl profiles (server and peer
//! certificates are serverAuth+clientAuth, client certificates clientAuth only).

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SignatureAlgorithm,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

/// CAs are valid from a little before their creation, so that nodes whose
/// clock lags the build machine's still accept them.
const CA_BACKDATE: Duration = Duration::hours(1);
const LEAF_BACKDATE: Duration = Duration::minutes(5);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating a {0} key: {1}")]
    KeyGeneration(KeyAlgorithm, rcgen::Error),
    #[error("the private key is not a PEM-encoded ECDSA key etcd and kubeadm accept: {0}")]
    BadKey(rcgen::Error),
    #[error("the CA certificate cannot be parsed: {0}")]
    BadCaCertificate(rcgen::Error),
    #[error("signing the certificate for {0}: {1}")]
    Signing(String, rcgen::Error),
    #[error("invalid DNS name {0:?} for a certificate")]
    BadDnsName(String),
    #[error("the CA certificate cannot be read: {0}")]
    BadCa(Box<PkiError>),
    #[error("not a PEM certificate: {0}")]
    NotPem(String),
    #[error("not an X.509 certificate: {0}")]
    NotX509(String),
    #[error("the CA is not usable: {0}")]
    UnusableCa(String),
    #[error("{0}")]
    Untrusted(rustls::Error),
    #[error("not a PKCS#10 request signed by the key it names: {0}")]
    BadRequest(String),
}

/// Key algorithms that both etcd and kubeadm load (no Ed25519: neither accepts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    #[default]
    EcdsaP256,
    EcdsaP384,
}

impl KeyAlgorithm {
    fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }

    /// Generates a key pair; its PEM form is PKCS#8.
    pub fn generate(self) -> Result<KeyPair, PkiError> {
        KeyPair::generate_for(self.signature_algorithm())
            .map_err(|e| PkiError::KeyGeneration(self, e))
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
        })
    }
}

/// What a leaf certificate is for, after the runbook's cfssl profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A serving certificate (also presented as a client, as cfssl's "server").
    Server,
    /// etcd peer traffic: both ends authenticate.
    Peer,
    /// A client only.
    Client,
}

/// A certificate and its private key, both PEM. The key is a secret.
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What to put in a leaf certificate.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub common_name: String,
    /// Subject organization; kubeadm maps it to a Kubernetes group.
    pub organization: Option<String>,
    pub usage: Usage,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub algorithm: KeyAlgorithm,
    /// How long the certificate is valid from now (never past its CA).
    pub validity_seconds: u64,
}

/// The names an etcd member's certificates carry: its name, FQDN and extra
/// names, localhost, its address and loopback, and the host of the stable
/// client endpoint (`etcd.endpoint`, a load balancer or DNS name) when the
/// profile has one, so clients reaching any member through it verify it.
pub fn member_sans(
    name: &str,
    domain: &str,
    extra_names: &[String],
    ip: IpAddr,
    endpoint_host: Option<&str>,
) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns_names = vec![name.to_owned(), format!("{name}.{domain}")];
    dns_names.extend(extra_names.iter().cloned());
    dns_names.push("localhost".to_owned());
    let mut ips = vec![ip, IpAddr::from([127, 0, 0, 1])];
    match endpoint_host.map(|host| (host, host.parse::<IpAddr>())) {
        Some((_, Ok(address))) => ips.push(address),
        Some((host, Err(_))) => dns_names.push(host.to_owned()),
        None => {}
    }
    dns_names.dedup();
    ips.dedup();
    (dns_names, ips)
}

/// A certificate authority that can issue leaf certificates.
pub struct Authority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    /// No leaf outlives its CA.
    not_after: OffsetDateTime,
}

impl Authority {
    /// Creates a new self-signed CA and returns it with its certificate and key.
    pub fn generate(
        common_name: &str,
        algorithm: KeyAlgorithm,
        validity_days: u32,
    ) -> Result<(Authority, CertifiedKey), PkiError> {
        let key = algorithm.generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(common_name, None);
        // pathlen:0: a CA of kiln signs leaves only, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_BACKDATE, u64::from(validity_days) * 86_400);
        let cert = params
            .self_signed(&key)
            .map_err(|e| PkiError::Signing(common_name.to_owned(), e))?;
        let material = CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        let authority = Authority {
            cert_pem: material.cert_pem.clone(),
            not_after: params.not_after,
            issuer: Issuer::new(params, key),
        };
        Ok((authority, material))
    }

    /// Loads an existing CA from its PEM certificate and private key.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Authority, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(PkiError::BadKey)?;
        let not_after = CertInfo::from_pem(cert_pem)
            .map_err(|e| PkiError::BadCa(Box::new(e)))?
            .not_after;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(PkiError::BadCaCertificate)?;
        Ok(Authority {
            cert_pem: cert_pem.to_owned(),
            issuer,
            not_after,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// kubeadm's discovery hash of this CA: `sha256:` and the hex SHA-256 of
    /// its DER SubjectPublicKeyInfo.
    pub fn discovery_hash(&self) -> String {
        spki_hash(self.issuer.key())
    }

    /// Issues a leaf certificate signed by this CA, with a new key.
    pub fn issue(&self, spec: &LeafSpec) -> Result<CertifiedKey, PkiError> {
        self.sign(spec, spec.algorithm.generate()?)
    }

    /// Issues a new certificate for the existing private key `key_pem`
    /// (renewal: the key never changes, only its certificate).
    pub fn reissue(&self, spec: &LeafSpec, key_pem: &str) -> Result<CertifiedKey, PkiError> {
        self.sign(spec, KeyPair::from_pem(key_pem).map_err(PkiError::BadKey)?)
    }

    /// Signs the key of a PKCS#10 request (whose signature proves its sender
    /// holds the key) with `spec`'s names and usage: nothing the request
    /// asks for beyond its key is taken. Returns the certificate's PEM.
    pub fn sign_request(&self, csr_pem: &str, spec: &LeafSpec) -> Result<String, PkiError> {
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::Signing(spec.common_name.clone(), e))?;
        let cert = self
            .params(spec)?
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|e| PkiError::Signing(spec.common_name.clone(), e))?;
        Ok(cert.pem())
    }

    fn sign(&self, spec: &LeafSpec, key: KeyPair) -> Result<CertifiedKey, PkiError> {
        let cert = self
            .params(spec)?
            .signed_by(&key, &self.issuer)
            .map_err(|e| PkiError::Signing(spec.common_name.clone(), e))?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    fn params(&self, spec: &LeafSpec) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name =
            distinguished_name(&spec.common_name, spec.organization.as_deref());
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match spec.usage {
            Usage::Server | Usage::Peer => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        for name in &spec.dns_names {
            let dns = name
                .as_str()
                .try_into()
                .map_err(|_| PkiError::BadDnsName(name.clone()))?;
            params.subject_alt_names.push(SanType::DnsName(dns));
        }
        params
            .subject_alt_names
            .extend(spec.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        set_validity(&mut params, LEAF_BACKDATE, spec.validity_seconds);
        params.not_after = params.not_after.min(self.not_after);
        Ok(params)
    }
}

/// Whether `cert_pem` chains to the CA `ca_pem` and is valid now, as a TLS
/// peer verifying it as a client would (every kiln leaf is a client too).
pub fn verify_chain(ca_pem: &str, cert_pem: &str) -> Result<(), PkiError> {
    use rustls::pki_types::pem::PemObject;
    let cert = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| PkiError::NotPem(e.to_string()))?;
    verify_chain_der(ca_pem, &cert)
}

/// [`verify_chain`] of a certificate in DER, as a TLS peer presents it.
pub fn verify_chain_der(ca_pem: &str, cert: &[u8]) -> Result<(), PkiError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, UnixTime};
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| PkiError::UnusableCa(format!("not a PEM certificate: {e}")))?;
    let cert = CertificateDer::from(cert);
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca)
        .map_err(|e| PkiError::UnusableCa(e.to_string()))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        provider,
    )
    .build()
    .map_err(|e| PkiError::UnusableCa(e.to_string()))?;
    verifier
        .verify_client_cert(&cert, &[], UnixTime::now())
        .map(drop)
        .map_err(PkiError::Untrusted)
}

/// A PKCS#10 request for the key `key_pem`, subject `CN=common_name`.
pub fn signing_request(common_name: &str, key_pem: &str) -> Result<String, PkiError> {
    let key = KeyPair::from_pem(key_pem).map_err(PkiError::BadKey)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(common_name, None);
    let csr = params
        .serialize_request(&key)
        .map_err(|e| PkiError::Signing(common_name.to_owned(), e))?;
    csr.pem()
        .map_err(|e| PkiError::Signing(common_name.to_owned(), e))
}

/// The first of a name's values of one attribute (common name,
/// organization), if it is text.
fn first_text<'a>(
    mut values: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
) -> Option<String> {
    values.next()?.as_str().ok().map(str::to_owned)
}

/// The DER SubjectPublicKeyInfo a PKCS#10 request asks to certify, once
/// its signature is checked: a request signed by another key proves nothing.
pub fn requested_public_key(csr_pem: &str) -> Result<Vec<u8>, PkiError> {
    use x509_parser::prelude::FromDer;
    // rcgen checks the request's signature with the key it carries.
    rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| PkiError::BadRequest(e.to_string()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes())
        .map_err(|e| PkiError::BadRequest(e.to_string()))?;
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
            .map_err(|e| PkiError::BadRequest(e.to_string()))?;
    Ok(csr.certification_request_info.subject_pki.raw.to_vec())
}

/// A key's fingerprint in logs and records: the hex SHA-256 of its DER
/// SubjectPublicKeyInfo (what `openssl pkey -pubout -outform DER | sha256sum`
/// prints).
pub fn key_fingerprint(spki_der: &[u8]) -> String {
    crate::hex::hex(&Sha256::digest(spki_der))
}

/// The DER SubjectPublicKeyInfo of the private key `key_pem`.
pub fn public_key_of(key_pem: &str) -> Result<Vec<u8>, PkiError> {
    Ok(KeyPair::from_pem(key_pem)
        .map_err(PkiError::BadKey)?
        .subject_public_key_info())
}

/// A bare key pair (the service-account signing key): private PEM and public PEM.
pub fn generate_key_pair(algorithm: KeyAlgorithm) -> Result<(String, String), PkiError> {
    let key = algorithm.generate()?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}

fn spki_hash(key: &impl PublicKeyData) -> String {
    format!("sha256:{}", key_fingerprint(&key.subject_public_key_info()))
}

fn distinguished_name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn set_validity(params: &mut CertificateParams, backdate: Duration, seconds: u64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - backdate;
    let lifetime = Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX));
    // Validation bounds lifetimes far below this; saturate rather than panic.
    params.not_after = now.checked_add(lifetime).unwrap_or(OffsetDateTime::new_utc(
        time::Date::from_calendar_date(9999, time::Month::December, 31).expect("a valid date"),
        time::Time::MIDNIGHT,
    ));
}

/// What kiln needs to know of a certificate it (or kubeadm) issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub common_name: Option<String>,
    /// The subject's organization (kubeadm maps it to a Kubernetes group).
    pub organization: Option<String>,
    /// DER SubjectPublicKeyInfo of the certified key.
    pub public_key: Vec<u8>,
    pub issuer: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// DNS names and IP addresses of its subjectAltName, as text.
    pub sans: Vec<String>,
}

impl CertInfo {
    /// The first certificate of a PEM text.
    pub fn from_pem(pem: &str) -> Result<CertInfo, PkiError> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| PkiError::NotPem(e.to_string()))?;
        CertInfo::from_der(&block.contents)
    }

    pub fn from_der(der: &[u8]) -> Result<CertInfo, PkiError> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| PkiError::NotX509(e.to_string()))?;
        let time = |t: x509_parser::time::ASN1Time| t.to_datetime();
        let sans = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .filter_map(|name| match name {
                        GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                        GeneralName::IPAddress(bytes) => ip_text(bytes),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            common_name: first_text(cert.subject().iter_common_name()),
            organization: first_text(cert.subject().iter_organization()),
            public_key: cert.public_key().raw.to_vec(),
            issuer: cert.issuer().to_string(),
            not_before: time(cert.validity().not_before),
            not_after: time(cert.validity().not_after),
            sans,
        })
    }

    /// Seconds until it expires (negative once expired).
    pub fn seconds_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_seconds()
    }

    /// Whether it is due for renewal: less than `renew_before` left, and a
    /// new certificate from `ca` (which no leaf outlives) would end later.
    /// Near the CA's own end nothing is due: reissuing would change nothing
    /// but the bytes; the CA's expiry is the operator's to act on.
    pub fn due(&self, now: OffsetDateTime, renew_before_seconds: u64, ca: &CertInfo) -> bool {
        self.inside_window(now, renew_before_seconds) && ca.not_after > self.not_after
    }

    /// Less than `renew_before` left.
    pub fn inside_window(&self, now: OffsetDateTime, renew_before_seconds: u64) -> bool {
        self.seconds_left(now) < i64::try_from(renew_before_seconds).unwrap_or(i64::MAX)
    }
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?).to_string()),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?).to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_sans_name_the_endpoints_host_as_an_address_or_a_dns_name() {
        let ip: IpAddr = "10.0.0.11".parse().unwrap();
        let extra = ["etcd1.example".to_owned()];
        let (names, ips) = member_sans("etcd1", "kiln.test", &extra, ip, None);
        assert_eq!(
            names,
            ["etcd1", "etcd1.kiln.test", "etcd1.example", "localhost"]
        );
        assert_eq!(ips, [ip, IpAddr::from([127, 0, 0, 1])]);
        let (names, ips) = member_sans("etcd1", "kiln.test", &[], ip, Some("10.0.0.50"));
        assert_eq!(names, ["etcd1", "etcd1.kiln.test", "localhost"]);
        assert_eq!(ips[2], IpAddr::from([10, 0, 0, 50]));
        let (names, ips) = member_sans("etcd1", "kiln.test", &[], ip, Some("etcd.kiln.test"));
        assert_eq!(names.last().map(String::as_str), Some("etcd.kiln.test"));
        assert_eq!(ips.len(), 2);
        let (_, ips) = member_sans("etcd1", "kiln.test", &[], ip, Some("fd00::50"));
        assert_eq!(ips[2], "fd00::50".parse::<IpAddr>().unwrap());
    }

    fn server_spec() -> LeafSpec {
        LeafSpec {
            common_name: "etcd1".into(),
            organization: None,
            usage: Usage::Server,
            dns_names: vec!["etcd1".into(), "localhost".into()],
            ips: vec!["10.77.0.11".parse().unwrap()],
            algorithm: KeyAlgorithm::EcdsaP256,
            validity_seconds: 30 * 86_400,
        }
    }

    #[test]
    fn loaded_ca_issues_like_the_generated_one() {
        let (_, material) = Authority::generate("etcd-ca", KeyAlgorithm::EcdsaP256, 365).unwrap();
        let loaded = Authority::load(&material.cert_pem, &material.key_pem).unwrap();
        let leaf = loaded.issue(&server_spec()).unwrap();
        assert!(leaf.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(leaf.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn discovery_hash_is_stable_across_load() {
        let (ca, material) = Authority::generate("ca", KeyAlgorithm::EcdsaP384, 365).unwrap();
        let loaded = Authority::load(&material.cert_pem, &material.key_pem).unwrap();
        assert_eq!(ca.discovery_hash(), loaded.discovery_hash());
        assert_eq!(ca.discovery_hash().len(), "sha256:".len() + 64);
    }

    #[test]
    fn renewal_keeps_the_key_and_a_request_proves_it() {
        let (ca, _) = Authority::generate("ca", KeyAlgorithm::EcdsaP256, 365).unwrap();
        let first = ca.issue(&server_spec()).unwrap();
        let again = ca.reissue(&server_spec(), &first.key_pem).unwrap();
        let info = |pem: &str| CertInfo::from_pem(pem).unwrap();
        assert_eq!(
            info(&again.cert_pem).public_key,
            public_key_of(&first.key_pem).unwrap()
        );
        let csr = signing_request("kiln-agent", &first.key_pem).unwrap();
        assert_eq!(
            requested_public_key(&csr).unwrap(),
            public_key_of(&first.key_pem).unwrap()
        );
        assert!(requested_public_key("no request").is_err());
        let mut client = server_spec();
        client.common_name = "kiln-agent".into();
        client.usage = Usage::Client;
        let signed = info(&ca.sign_request(&csr, &client).unwrap());
        assert_eq!(signed.public_key, public_key_of(&first.key_pem).unwrap());
        assert_eq!(signed.common_name.as_deref(), Some("kiln-agent"));
        // One changed byte of the signed part: the signature no longer holds.
        let mut lines: Vec<String> = csr.lines().map(str::to_owned).collect();
        let flipped = if lines[1].as_bytes()[40] == b'A' {
            "B"
        } else {
            "A"
        };
        lines[1].replace_range(40..41, flipped);
        assert!(ca.sign_request(&lines.join("\n"), &client).is_err());
        assert!(requested_public_key(&lines.join("\n")).is_err());
        let key = public_key_of(&first.key_pem).unwrap();
        assert_eq!(requested_public_key(&csr).unwrap(), key);
        assert_eq!(key_fingerprint(&key).len(), 64);
    }

    #[test]
    fn a_leaf_never_outlives_its_ca() {
        let (ca, material) = Authority::generate("ca", KeyAlgorithm::EcdsaP256, 1).unwrap();
        let mut spec = server_spec();
        spec.validity_seconds = 30 * 86_400;
        let leaf = CertInfo::from_pem(&ca.issue(&spec).unwrap().cert_pem).unwrap();
        assert_eq!(
            leaf.not_after,
            CertInfo::from_pem(&material.cert_pem).unwrap().not_after
        );
    }

    #[test]
    fn non_ascii_dns_name_is_refused() {
        let (ca, _) = Authority::generate("ca", KeyAlgorithm::EcdsaP256, 365).unwrap();
        let mut spec = server_spec();
        spec.dns_names.push("nöt-ascii".into());
        assert!(ca.issue(&spec).is_err());
    }
}
