//! What each stand-in command does once its config passed the checks: init
//! and join as seen from etcd and the API server, token list/create.

use std::time::Duration;

use super::cli::{Command, TokenSource};
use super::config::{self, ExternalEtcd, Token};
use super::discovery::{self, KUBEADM_CONFIG};
use super::etcd::{self, Etcd};
use super::{
    apiserver, certs, kubelet, preflight, record, rules, stacked, tokens, Refused, Result, Root,
};
use crate::refuse;

/// Test hook: seconds `init` sleeps after its checks, before writing to etcd.
pub const INIT_DELAY: &str = "/etc/kubeadm-standin/init-delay";
/// Test hook: seconds a successful `init` or `join` waits, its records
/// written, before it exits (a window to change the cluster under the
/// caller, as another node or an operator could).
pub const DONE_DELAY: &str = "/etc/kubeadm-standin/done-delay";
/// Present once this node initialized or joined (kubeadm's FileAvailable check).
pub const KUBELET_CONF: &str = "/etc/kubernetes/kubelet.conf";
/// Written by a worker's TLS bootstrap; must not exist before a join.
const BOOTSTRAP_KUBELET_CONF: &str = "/etc/kubernetes/bootstrap-kubelet.conf";
/// Static pod manifests; must be missing or empty before init or join.
const MANIFESTS: &str = kubelet::MANIFESTS;

/// Runs `command`, records the outcome; returns the exit code.
pub fn run(root: &Root, argv: &[String], command: Command) -> i32 {
    let (verb, outcome) = match command {
        Command::Init { config } => ("init", init(root, &config)),
        Command::Join { config } => match config::join(root, &config) {
            Ok(plan) if plan.control_plane.is_some() => ("join-control-plane", join(root, plan)),
            Ok(plan) => ("join", join(root, plan)),
            Err(e) => ("join", Err(e)),
        },
        Command::TokenList { kubeconfig, json } => {
            ("token-list", token_list(root, &kubeconfig, json))
        }
        Command::TokenCreate { from, kubeconfig } => {
            ("token-create", token_create(root, &from, &kubeconfig))
        }
        Command::CertsRenewAll => ("certs-renew-all", certs_renew_all(root)),
        Command::ServeApiserver { config } => return served(apiserver::serve(root, &config)),
        Command::ServeKubelet { manifests } => {
            if manifests != kubelet::MANIFESTS {
                return served(Err(Refused(format!(
                    "the stand-in kubelet runs {}",
                    kubelet::MANIFESTS
                ))));
            }
            return served(kubelet::serve(root));
        }
        Command::ServeComponent { kubeconfig, port } => {
            return served(kubelet::serve_component(root, &kubeconfig, port))
        }
    };
    match &outcome {
        Ok((node, reason)) => record::invocation(root, argv, verb, node.as_deref(), Ok(reason)),
        Err(e) => record::invocation(root, argv, verb, None, Err(e)),
    }
    if outcome.is_ok() && (verb == "init" || verb.starts_with("join")) {
        if let Err(e) = hold(root, DONE_DELAY, verb, "before exiting") {
            eprintln!("error: {e}");
        }
    }
    i32::from(outcome.is_err())
}

/// Sleeps the seconds the test hook `hook` holds, if it exists, saying so.
fn hold(root: &Root, hook: &str, verb: &str, until: &str) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(root.path(hook)) else {
        return Ok(());
    };
    let secs: u64 = text
        .trim()
        .parse()
        .map_err(|_| Refused(format!("{hook}: {text:?} is not seconds")))?;
    record::console(&format!(
        "KUBEADM-STANDIN {verb} waiting {secs}s ({hook}) {until}"
    ));
    std::thread::sleep(Duration::from_secs(secs));
    Ok(())
}

type Outcome = Result<(Option<String>, String)>;

/// The exit code of a long-running server that ended.
fn served(result: Result<()>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn certs_renew_all(root: &Root) -> Outcome {
    let said = certs::renew_all(root)?;
    for line in &said {
        println!("{line}");
    }
    let renewed = said.iter().filter(|l| l.ends_with(" renewed")).count();
    Ok((None, format!("renewed {renewed} certificates")))
}

/// kubeadm's general preflight for init and join (RunInitNodeChecks,
/// RunJoinNodeChecks): FileAvailable on kubelet's kubeconfigs,
/// DirAvailable on the static pod manifests.
fn not_yet_joined(root: &Root) -> Result<()> {
    for file in [KUBELET_CONF, BOOTSTRAP_KUBELET_CONF] {
        if root.path(file).exists() {
            refuse!("preflight: [FileAvailable] {file} already exists: this node already ran init or join");
        }
    }
    let manifests = std::fs::read_dir(root.path(MANIFESTS));
    if manifests.is_ok_and(|mut entries| entries.next().is_some()) {
        refuse!("preflight: [DirAvailable] {MANIFESTS} is not empty");
    }
    Ok(())
}

/// This control plane's etcd member in the stacked topology: its name, the
/// address it advertises, the data dir of ClusterConfiguration.etcd.local.
fn stacked_member<'a>(
    what: &str,
    node: &'a str,
    local: &'a config::LocalEndpoint,
    cluster: &'a config::Cluster,
) -> Result<stacked::Member<'a>> {
    let Some(ip) = local.advertise.as_deref() else {
        refuse!("{what}: localAPIEndpoint.advertiseAddress is needed with local etcd (this stand-in does not detect the address)");
    };
    Ok(stacked::Member {
        node,
        ip,
        data_dir: super::yaml::str_at(&cluster.doc, &["etcd", "local", "dataDir"])
            .unwrap_or("/var/lib/etcd"),
    })
}

fn init(root: &Root, path: &str) -> Outcome {
    let plan = config::init(root, path)?;
    not_yet_joined(root)?;
    let ext = match &plan.cluster.external {
        Some(ext) => {
            preflight::control_plane(root, Some(ext))?;
            preflight::external_etcd_version(root, ext, plan.cluster.version.1)?;
            ext.clone()
        }
        None => {
            preflight::stacked(root)?;
            let member = stacked_member(path, &plan.node, &plan.local, &plan.cluster)?;
            stacked::start_first(root, &member)?
        }
    };
    let ext = &ext;
    let etcd = Etcd::connect(root, ext)?;
    if let Some(key) = etcd.keys("/registry/", 1)?.first() {
        refuse!("etcd already holds Kubernetes data ({key}): the cluster is initialized, this node must join");
    }
    // Tests kill the node while this line is the last one on its console.
    hold(root, INIT_DELAY, "init", "before writing to etcd")?;
    if !etcd.create(etcd::INITIALIZED_BY, &plan.node)? {
        let by = etcd.get(etcd::INITIALIZED_BY)?.unwrap_or_default();
        refuse!(
            "double init: {by} initialized this cluster while {} was initializing",
            plan.node
        );
    }
    for token in &plan.tokens {
        tokens::store(&etcd, &token.token, token.ttl_secs)?;
    }
    let kubeadm_config = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
        "data": {"ClusterConfiguration": plan.cluster.doc.to_string()},
    });
    etcd.put(etcd::KUBEADM_CONFIG, &kubeadm_config.to_string())?;
    etcd.put(
        &format!("/registry/kiln-standin/log/{}-init", plan.node),
        "ok",
    )?;
    finish_control_plane(root, &plan.node, &plan.local, &plan.cluster, ext, true)?;
    // kubeadm ends init with the join command, token included, on stdout
    // ("Then you can join any number of worker nodes ...", initDoneTempl in
    // cmd/kubeadm/app/cmd/init.go): whoever runs it must not log stdout.
    if let (Some((host, port)), Some(token)) = (&plan.cluster.endpoint, plan.tokens.first()) {
        println!("kubeadm join {host}:{port} --token {}", token.token);
    }
    Ok((
        Some(plan.node.clone()),
        format!("{} initialized the cluster", plan.node),
    ))
}

/// Leaves what a control plane node has: kubeadm's certificates, the
/// kubeconfigs (super-admin.conf on the init node only), kubelet.conf and
/// the static pods: API server, controller manager, scheduler.
fn finish_control_plane(
    root: &Root,
    node: &str,
    local: &config::LocalEndpoint,
    cluster: &config::Cluster,
    ext: &ExternalEtcd,
    init: bool,
) -> Result<()> {
    let ca = std::fs::read(root.path("/etc/kubernetes/pki/ca.crt"))
        .map_err(|e| Refused(format!("reading /etc/kubernetes/pki/ca.crt: {e}")))?;
    let server = match &cluster.endpoint {
        Some((host, port)) => format!("https://{host}:{port}"),
        None => format!(
            "https://{}:{}",
            local.advertise.as_deref().unwrap_or("127.0.0.1"),
            local.bind_port
        ),
    };
    for (path, _, _) in certs::KUBECONFIGS {
        if path.ends_with("/super-admin.conf") && !init {
            continue;
        }
        let user = certs::kubeconfig_user(root, cluster, path)?;
        tokens::write_kubeconfig(root, path, &server, &ca, Some(ext), user)?;
    }
    tokens::write_kubeconfig(
        root,
        KUBELET_CONF,
        &server,
        &ca,
        Some(ext),
        serde_json::json!({}),
    )?;
    apiserver::start(root, node, local, cluster, ext)
}

fn join(root: &Root, plan: config::JoinPlan) -> Outcome {
    not_yet_joined(root)?;
    match &plan.control_plane {
        Some(_) => preflight::control_plane(root, None)?,
        None => preflight::worker(root, &plan.ca_cert_path)?,
    }
    let api = discovery::discover(&plan.endpoint, &plan.ca_hashes, plan.discovery_timeout)?;
    if !api.token_known(&plan.token)? {
        refuse!(
            "discovery: {} does not know bootstrap token id {:?} (expired or never created)",
            plan.endpoint,
            plan.token.split('.').next().unwrap_or_default()
        );
    }
    let Some(local) = &plan.control_plane else {
        let key = format!("/kiln-standin/log/{}-join", plan.node);
        match api.post(&key, &plan.token)? {
            200 => {}
            status => refuse!("recording the join at {}: status {status}", plan.endpoint),
        }
        let server = format!("https://{}", plan.endpoint);
        tokens::write_kubeconfig(
            root,
            KUBELET_CONF,
            &server,
            &api.ca_pem,
            None,
            serde_json::json!({}),
        )?;
        // Like kubeadm, the worker keeps the CA discovery validated.
        super::write_private(
            root,
            &plan.ca_cert_path,
            &String::from_utf8_lossy(&api.ca_pem),
        )?;
        return Ok((
            Some(plan.node.clone()),
            format!("{} joined as a worker", plan.node),
        ));
    };
    let (status, body) = api.get_config_map(KUBEADM_CONFIG, Some(&plan.token))?;
    if status != 200 {
        refuse!(
            "discovery: {}{KUBEADM_CONFIG} answered {status}: no init has stored its configuration",
            plan.endpoint
        );
    }
    let map: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| Refused(format!("kubeadm-config: {e}")))?;
    let doc: serde_json::Value = serde_json::from_str(
        map["data"]["ClusterConfiguration"]
            .as_str()
            .unwrap_or_default(),
    )
    .map_err(|e| Refused(format!("kubeadm-config ClusterConfiguration: {e}")))?;
    let cluster = config::cluster("kubeadm-config", &doc)?;
    let ext = match &cluster.external {
        Some(ext) => {
            preflight::control_plane(root, Some(ext))?;
            ext.clone()
        }
        None => {
            preflight::stacked(root)?;
            let existing = api.etcd_endpoints(&plan.token)?;
            let member = stacked_member("join --control-plane", &plan.node, local, &cluster)?;
            stacked::join(root, &member, &stacked::client(existing))?
        }
    };
    let ext = &ext;
    let etcd = Etcd::connect(root, ext)?;
    if etcd.get(etcd::INITIALIZED_BY)?.is_none() {
        refuse!(
            "join --control-plane before init: {} is missing in etcd",
            etcd::INITIALIZED_BY
        );
    }
    etcd.put(
        &format!(
            "/registry/kiln-standin/log/{}-join-control-plane",
            plan.node
        ),
        "ok",
    )?;
    finish_control_plane(root, &plan.node, local, &cluster, ext, false)?;
    Ok((
        Some(plan.node.clone()),
        format!("{} joined the control plane", plan.node),
    ))
}

fn token_list(root: &Root, kubeconfig: &str, json: bool) -> Outcome {
    let etcd = Etcd::connect(root, &tokens::etcd_of_kubeconfig(root, kubeconfig)?)?;
    let list = tokens::list(&etcd)?;
    for token in &list {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(token).unwrap_or_default()
            );
        } else {
            println!("{}", token["token"].as_str().unwrap_or_default());
        }
    }
    Ok((None, format!("listed {} tokens", list.len())))
}

fn token_create(root: &Root, from: &TokenSource, kubeconfig: &str) -> Outcome {
    let created: Vec<Token> = match from {
        TokenSource::Config(path) => config::token_create(root, path)?,
        TokenSource::Argument { token: None, .. } => {
            refuse!("`kubeadm token create` without a token: kiln always names the token it baked into images")
        }
        TokenSource::Argument {
            token: Some(token),
            ttl,
        } => {
            let Some(ttl_secs) = rules::go_duration_secs(ttl) else {
                refuse!("--ttl {ttl:?} is not a Go duration like 0s or 24h0m0s");
            };
            vec![Token {
                token: token.clone(),
                ttl_secs,
            }]
        }
    };
    let etcd = Etcd::connect(root, &tokens::etcd_of_kubeconfig(root, kubeconfig)?)?;
    for token in &created {
        tokens::create(&etcd, &token.token, token.ttl_secs)?;
    }
    // kubeadm prints the first token on stdout, for scripts.
    println!("{}", created[0].token);
    let ids: Vec<&str> = created
        .iter()
        .map(|t| t.token.split('.').next().unwrap_or_default())
        .collect();
    Ok((None, format!("created token ids {ids:?}")))
}
