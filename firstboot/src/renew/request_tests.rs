//! The signer's checks of a renewal request, against certificates of a
//! real CA.

use time::Duration;

use super::*;
use kiln_node::pki::{signing_request, Authority, CertifiedKey, KeyAlgorithm, LeafSpec, Usage};

fn ca() -> (Authority, String) {
    let (ca, material) = Authority::generate("etcd-ca", KeyAlgorithm::EcdsaP256, 30).unwrap();
    (ca, material.cert_pem)
}

fn client(ca: &Authority, common_name: &str, seconds: u64) -> CertifiedKey {
    ca.issue(&LeafSpec {
        common_name: common_name.into(),
        organization: None,
        usage: Usage::Client,
        dns_names: vec![],
        ips: vec![],
        algorithm: KeyAlgorithm::EcdsaP256,
        validity_seconds: seconds,
    })
    .unwrap()
}

fn request(csr_key: &str, current: &str) -> RenewalRequest {
    RenewalRequest {
        csr: signing_request("kiln-agent", csr_key).unwrap(),
        current: current.into(),
    }
}

const WINDOW: u64 = 120;

#[test]
fn a_due_certificate_of_the_same_key_and_name_is_approved() {
    let (ca, ca_pem) = ca();
    let held = client(&ca, "kiln-agent", 60);
    let asked = request(&held.key_pem, &held.cert_pem);
    let back = RenewalRequest::from_json(&asked.to_json()).unwrap();
    let now = OffsetDateTime::now_utc();
    let approved = approve("kiln-agent", &back, &ca_pem, now, WINDOW).unwrap();
    assert_eq!(approved.common_name, "kiln-agent");
    assert_eq!(
        approved.public_key,
        kiln_node::pki::public_key_of(&held.key_pem).unwrap()
    );
    assert_eq!(approved.fingerprint.len(), 64);
    let server = client(&ca, "kube-apiserver-etcd-client", 60);
    let asked = request(&server.key_pem, &server.cert_pem);
    assert!(approve("apiserver-etcd-client", &asked, &ca_pem, now, WINDOW).is_ok());
}

#[test]
fn a_bare_request_as_old_agents_send_it_is_refused() {
    let (ca, _) = ca();
    let held = client(&ca, "kiln-agent", 60);
    let bare = signing_request("kiln-agent", &held.key_pem).unwrap();
    let why = RenewalRequest::from_json(&bare).unwrap_err();
    assert!(why.contains("no current certificate"), "{why}");
    assert!(RenewalRequest::from_json("{}").is_err());
}

#[test]
fn requests_without_a_due_certificate_of_their_own_key_and_name_are_refused() {
    let (ca, ca_pem) = ca();
    let now = OffsetDateTime::now_utc();
    let held = client(&ca, "kiln-agent", 60);
    let refused = |stem: &str, asked: &RenewalRequest, now, needle: &str| {
        let why = approve(stem, asked, &ca_pem, now, WINDOW).unwrap_err();
        assert!(why.contains(needle), "{needle:?} not in {why:?}");
    };
    // A fresh key beside someone else's certificate.
    let fresh = KeyAlgorithm::EcdsaP256.generate().unwrap().serialize_pem();
    refused(
        "kiln-agent",
        &request(&fresh, &held.cert_pem),
        now,
        "another key",
    );
    // A certificate of another CA.
    let (other, _) = self::ca();
    let foreign = client(&other, "kiln-agent", 60);
    refused(
        "kiln-agent",
        &request(&foreign.key_pem, &foreign.cert_pem),
        now,
        "not the etcd CA's",
    );
    // Not due yet, and ended.
    let young = client(&ca, "kiln-agent", 3_600);
    refused(
        "kiln-agent",
        &request(&young.key_pem, &young.cert_pem),
        now,
        "more than renew_before",
    );
    refused(
        "kiln-agent",
        &request(&held.key_pem, &held.cert_pem),
        now + Duration::minutes(10),
        "ended",
    );
    // The agent's certificate asked for as the API server's, or any name.
    let asked = request(&held.key_pem, &held.cert_pem);
    refused(
        "apiserver-etcd-client",
        &asked,
        now,
        "names Some(\"kiln-agent\")",
    );
    refused("etcd-server", &asked, now, "sign only");
    // A request whose signature is not its key's: its last byte (of the
    // ECDSA signature's s) changed, its structure intact.
    let mut forged = asked.clone();
    forged.csr = with_last_byte_flipped(&asked.csr);
    let why = approve("kiln-agent", &forged, &ca_pem, now, WINDOW).unwrap_err();
    assert!(why.contains("not a PKCS#10 request signed by"), "{why}");
}

#[test]
fn a_request_key_names_one_node_and_one_certificate() {
    assert_eq!(
        requester("/kiln/certs/requests/master1/kiln-agent"),
        Some(("master1", "kiln-agent"))
    );
    assert_eq!(requester("/kiln/certs/requests/master1/a/b"), None);
    assert_eq!(requester("/kiln/certs/requests//kiln-agent"), None);
    assert_eq!(requester("/kiln/certs/issued/master1/kiln-agent"), None);
}

fn with_last_byte_flipped(csr_pem: &str) -> String {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    let body: String = csr_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let mut der = STANDARD.decode(body).unwrap();
    *der.last_mut().unwrap() ^= 1;
    format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        STANDARD.encode(der)
    )
}
