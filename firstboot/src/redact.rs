//! The one place secrets are taken out of what the agent shows: every
//! command line it logs or names in an error, and every piece of a child's
//! output it repeats, goes through [`command`] or [`text`].
//!
//! Three nets, because a secret reaches a log by more than one road: the
//! values the agent read from its secret files ([`remember`]), anything
//! shaped like a bootstrap token, and PEM private key blocks. The values of
//! kubeadm's secret flags are hidden as well, though the agent passes none
//! (secrets travel in 0600 files, docs/kubernetes.md).

use std::ffi::OsStr;
use std::process::Command;
use std::sync::Mutex;

/// What a secret is replaced by.
pub const REDACTED: &str = "<redacted>";

/// Secret values read by this process, longest first so that a secret
/// containing another is replaced whole.
static KNOWN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// kubeadm's flags whose value is a secret (TokenStr, TokenDiscovery,
/// TLSBootstrapToken, CertificateKey in cmd/kubeadm/app/cmd/options/constant.go).
const SECRET_FLAGS: [&str; 4] = [
    "--token",
    "--discovery-token",
    "--tls-bootstrap-token",
    "--certificate-key",
];

/// Remembers `secret` (a token, a key) so that [`text`] hides it wherever
/// it shows up, a child's stderr included.
pub fn remember(secret: &str) {
    let secret = secret.trim();
    if secret.is_empty() {
        return;
    }
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    if !known.iter().any(|k| k == secret) {
        known.push(secret.to_owned());
        known.sort_by_key(|k| std::cmp::Reverse(k.len()));
    }
}

/// `text` with every known secret, bootstrap token and PEM private key
/// replaced by [`REDACTED`].
pub fn text(text: &str) -> String {
    let mut out = private_keys(text);
    for secret in KNOWN.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        out = out.replace(secret.as_str(), REDACTED);
    }
    bootstrap_tokens(&out)
}

/// `cmd` as a shell-like line for logs and errors: its program and
/// arguments, each secret replaced by [`REDACTED`].
pub fn command(cmd: &Command) -> String {
    let mut words = vec![lossy(cmd.get_program())];
    let mut hide_next = false;
    for arg in cmd.get_args().map(lossy) {
        if std::mem::take(&mut hide_next) {
            words.push(REDACTED.to_owned());
            continue;
        }
        match arg.split_once('=') {
            Some((flag, _)) if SECRET_FLAGS.contains(&flag) => {
                words.push(format!("{flag}={REDACTED}"))
            }
            _ => {
                hide_next = SECRET_FLAGS.contains(&arg.as_str());
                words.push(arg);
            }
        }
    }
    text(&words.join(" "))
}

fn lossy(s: &OsStr) -> String {
    s.to_string_lossy().into_owned()
}

/// Replaces every `-----BEGIN ... PRIVATE KEY-----` block, up to its END
/// line (or the end of the text, when cut short).
fn private_keys(text: &str) -> String {
    const BEGIN: &str = "-----BEGIN ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let header_end = rest[start + BEGIN.len()..]
            .find("-----")
            .map(|i| start + BEGIN.len() + i);
        let is_key = header_end.is_some_and(|e| rest[start..e].ends_with("PRIVATE KEY"));
        let Some(header_end) = header_end.filter(|_| is_key) else {
            out.push_str(&rest[..start + BEGIN.len()]);
            rest = &rest[start + BEGIN.len()..];
            continue;
        };
        out.push_str(&rest[..start]);
        out.push_str(REDACTED);
        let after = &rest[header_end + 5..];
        rest = match after.find("-----END ") {
            Some(end) => {
                let tail = &after[end + 9..];
                tail.find("-----").map_or("", |i| &tail[i + 5..])
            }
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// Replaces every `[a-z0-9]{6}.[a-z0-9]{16}` standing on its own
/// (BootstrapTokenPattern, k8s.io/cluster-bootstrap/token/api/types.go),
/// so a token the agent never read is hidden too.
fn bootstrap_tokens(text: &str) -> String {
    let word = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i + 23 <= bytes.len() {
        let candidate = &bytes[i..i + 23];
        let shaped = candidate[6] == b'.'
            && candidate[..6].iter().all(|&b| word(b))
            && candidate[7..].iter().all(|&b| word(b));
        let before = i.checked_sub(1).map(|j| bytes[j]);
        let after = bytes.get(i + 23).copied();
        let joined_before = before.is_some_and(|b| word(b) || b == b'.' || b == b'-');
        let joined_after = after.is_some_and(|b| word(b) || b == b'-')
            || (after == Some(b'.') && bytes.get(i + 24).is_some_and(|&b| word(b)));
        let alone = !joined_before && !joined_after;
        if shaped && alone {
            out.push_str(&text[copied..i]);
            out.push_str(REDACTED);
            i += 23;
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_lose_their_secrets() {
        let mut cmd = Command::new("kubeadm");
        cmd.args(["token", "create", "abcdef.0123456789abcdef", "--ttl", "0s"]);
        assert_eq!(command(&cmd), "kubeadm token create <redacted> --ttl 0s");
        let mut cmd = Command::new("kubeadm");
        cmd.args(["join", "--token", "anything", "--certificate-key=00ff"]);
        assert_eq!(
            command(&cmd),
            "kubeadm join --token <redacted> --certificate-key=<redacted>"
        );
        let mut cmd = Command::new("kubeadm");
        cmd.args(["init", "--config", "/etc/kiln/kubeadm/init.yaml"]);
        assert_eq!(
            command(&cmd),
            "kubeadm init --config /etc/kiln/kubeadm/init.yaml"
        );
    }

    #[test]
    fn remembered_secrets_are_hidden_anywhere() {
        remember("s3cr3t-value-of-a-test");
        assert_eq!(
            text("kubeadm said: bad token s3cr3t-value-of-a-test!"),
            "kubeadm said: bad token <redacted>!"
        );
    }

    #[test]
    fn tokens_are_hidden_but_names_are_not() {
        assert_eq!(
            text("token \"abcdef.0123456789abcdef\", id abcdef."),
            "token \"<redacted>\", id abcdef."
        );
        for kept in [
            "etcd01.kilntestdomain01.example",
            "xabcdef.0123456789abcdef",
            "abcdef.0123456789abcdefg",
            "abcdef.0123456789abcdef-x",
        ] {
            assert_eq!(text(kept), kept);
        }
    }

    #[test]
    fn private_keys_are_hidden_certificates_are_not() {
        let key = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBody\n-----END EC PRIVATE KEY-----";
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
        assert_eq!(
            text(&format!("a {key} b {cert}")),
            format!("a <redacted> b {cert}")
        );
        assert_eq!(text("-----BEGIN PRIVATE KEY-----\nMIGH cut"), "<redacted>");
    }
}
