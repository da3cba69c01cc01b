//! The stand-in's command line: exactly the kubeadm invocations kiln's agent
//! uses, with kubeadm's rule that `--config` cannot be mixed with other flags.

use super::{Refused, Result};
use crate::refuse;

/// Default kubeconfig of kubeadm's token commands.
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Init {
        config: String,
    },
    Join {
        config: String,
    },
    TokenList {
        kubeconfig: String,
        json: bool,
    },
    TokenCreate {
        from: TokenSource,
        kubeconfig: String,
    },
    /// `kubeadm certs renew all`.
    CertsRenewAll,
    /// Hidden: the fake API server, a static pod of init and control-plane join.
    ServeApiserver {
        config: String,
    },
    /// Hidden: the kubelet running the static pods of a manifests folder.
    ServeKubelet {
        manifests: String,
    },
    /// Hidden: a controller manager or scheduler with its kubeconfig.
    ServeComponent {
        kubeconfig: String,
        port: u16,
    },
}

/// Where `kubeadm token create` takes its token from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `token create [TOKEN] --ttl D`: the token in argv.
    Argument { token: Option<String>, ttl: String },
    /// `token create --config FILE`: each InitConfiguration.bootstrapTokens
    /// entry of FILE (RunCreateToken, cmd/kubeadm/app/cmd/token.go).
    Config(String),
}

/// Flags kubeadm lets beside `--config` (isAllowedFlag in
/// cmd/kubeadm/app/apis/kubeadm/validation/validation.go), minus the ones
/// this stand-in does not implement.
const BESIDE_CONFIG: [&str; 2] = ["config", "kubeconfig"];

/// `(name, value)` pairs in command-line order.
type Flags = Vec<(String, String)>;

/// Flags plus positional arguments.
fn split(args: &[String]) -> Result<(Flags, Vec<String>)> {
    let mut flags = Vec::new();
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) {
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n.to_owned(), v.to_owned()),
                None => match it.next() {
                    Some(v) => (flag.to_owned(), v.clone()),
                    None => refuse!("flag {arg} needs a value"),
                },
            };
            flags.push((name, value));
        } else {
            positional.push(arg.clone());
        }
    }
    Ok((flags, positional))
}

fn only(flags: &[(String, String)], allowed: &[&str], verb: &str) -> Result<()> {
    for (name, _) in flags {
        if !allowed.contains(&name.as_str()) {
            refuse!("unknown flag --{name} for `kubeadm {verb}` (allowed: {allowed:?})");
        }
    }
    Ok(())
}

fn flag(flags: &[(String, String)], name: &str) -> Option<String> {
    flags
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

fn config(flags: &[(String, String)], verb: &str) -> Result<String> {
    // kubeadm: "can not mix '--config' with arguments": kiln passes only --config.
    only(flags, &["config"], verb)?;
    flag(flags, "config").ok_or_else(|| Refused(format!("`kubeadm {verb}` needs --config FILE")))
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command> {
    let (flags, positional) = split(args)?;
    let words: Vec<&str> = positional.iter().map(String::as_str).collect();
    let kubeconfig = || flag(&flags, "kubeconfig").unwrap_or_else(|| ADMIN_CONF.to_owned());
    match words.as_slice() {
        ["init"] => Ok(Command::Init { config: config(&flags, "init")? }),
        ["join"] => Ok(Command::Join { config: config(&flags, "join")? }),
        ["join", endpoint, ..] => {
            refuse!("`kubeadm join {endpoint}`: kiln must pass the endpoint in --config, not as an argument")
        }
        ["token", "list"] => {
            only(&flags, &["kubeconfig", "o", "output"], "token list")?;
            let output = flag(&flags, "o").or_else(|| flag(&flags, "output"));
            match output.as_deref() {
                None | Some("text") => Ok(Command::TokenList { kubeconfig: kubeconfig(), json: false }),
                Some("json") => Ok(Command::TokenList { kubeconfig: kubeconfig(), json: true }),
                Some(other) => refuse!("`kubeadm token list -o {other}`: the stand-in prints text or json"),
            }
        }
        ["token", "create", rest @ ..] if rest.len() <= 1 => {
            let from = match flag(&flags, "config") {
                Some(config) => {
                    let mixed: Vec<&str> = flags
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .filter(|n| !BESIDE_CONFIG.contains(n))
                        .collect();
                    if !mixed.is_empty() {
                        refuse!("can not mix '--config' with arguments {mixed:?} (ValidateMixedArguments)");
                    }
                    if !rest.is_empty() {
                        // kubeadm silently drops the argument for the file's tokens.
                        refuse!("`kubeadm token create TOKEN --config FILE`: kubeadm ignores TOKEN and creates FILE's bootstrapTokens");
                    }
                    TokenSource::Config(config)
                }
                None => {
                    only(&flags, &["kubeconfig", "ttl"], "token create")?;
                    TokenSource::Argument {
                        token: rest.first().map(|t| t.to_string()),
                        ttl: flag(&flags, "ttl").unwrap_or_else(|| "24h0m0s".to_owned()),
                    }
                }
            };
            Ok(Command::TokenCreate { from, kubeconfig: kubeconfig() })
        }
        ["certs", "renew", "all"] => {
            only(&flags, &[], "certs renew all")?;
            Ok(Command::CertsRenewAll)
        }
        ["serve-apiserver"] => Ok(Command::ServeApiserver { config: config(&flags, "serve-apiserver")? }),
        ["serve-kubelet"] => Ok(Command::ServeKubelet { manifests: config(&flags, "serve-kubelet")? }),
        ["serve-component"] => {
            only(&flags, &["config", "port"], "serve-component")?;
            match (flag(&flags, "config"), flag(&flags, "port").and_then(|p| p.parse().ok())) {
                (Some(kubeconfig), Some(port)) => Ok(Command::ServeComponent { kubeconfig, port }),
                _ => refuse!("`kubeadm serve-component` needs --config KUBECONFIG and --port PORT"),
            }
        }
        _ => refuse!("unsupported kubeadm command {words:?} (the stand-in knows init, join, token list, token create, certs renew all)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_the_agent_invocations() {
        assert_eq!(
            parse(&args("init --config /etc/kiln/kubeadm/init.yaml")).unwrap(),
            Command::Init {
                config: "/etc/kiln/kubeadm/init.yaml".into()
            }
        );
        assert_eq!(
            parse(&args(
                "token create abcdef.0123456789abcdef --ttl 0s --kubeconfig /k"
            ))
            .unwrap(),
            Command::TokenCreate {
                from: TokenSource::Argument {
                    token: Some("abcdef.0123456789abcdef".into()),
                    ttl: "0s".into(),
                },
                kubeconfig: "/k".into()
            }
        );
        assert_eq!(
            parse(&args("token create --config /i.yaml --kubeconfig /k")).unwrap(),
            Command::TokenCreate {
                from: TokenSource::Config("/i.yaml".into()),
                kubeconfig: "/k".into()
            }
        );
        assert_eq!(
            parse(&args("token list --kubeconfig=/k -o json")).unwrap(),
            Command::TokenList {
                kubeconfig: "/k".into(),
                json: true
            }
        );
    }

    #[test]
    fn refuses_mixing_config_with_flags() {
        let err = parse(&args("join --config j.yaml --control-plane x")).unwrap_err();
        assert!(err.0.contains("--control-plane"), "{err}");
        assert!(parse(&args("init")).is_err());
        let err = parse(&args("token create --config /i.yaml --ttl 0s")).unwrap_err();
        assert!(
            err.0.contains("can not mix '--config'") && err.0.contains("ttl"),
            "{err}"
        );
        let err = parse(&args(
            "token create abcdef.0123456789abcdef --config /i.yaml",
        ))
        .unwrap_err();
        assert!(err.0.contains("ignores TOKEN"), "{err}");
    }
}
