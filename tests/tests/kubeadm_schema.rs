//! The kubeadm schema the stand-in enforces: the reference docs' own examples
//! pass, and each kind of mistake is reported with its path and a fix.

use kiln_e2e::kubeadm::{schema, yaml};
use serde_json::{json, Value};

fn example(name: &str) -> Vec<Value> {
    let path = kiln_e2e::workspace_root()
        .join("tests/fixtures/kubeadm/examples")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    yaml::parse_documents(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The errors for `doc`, which must fail.
fn refusals(doc: &Value) -> Vec<String> {
    schema::check(doc).expect_err("the mutated document must be refused")
}

fn assert_one_error(doc: &Value, expected: &str) {
    let errors = refusals(doc);
    assert_eq!(errors, vec![expected.to_owned()], "got {errors:#?}");
}

/// Applies `change` to the object at `path` (keys or list indices) of `doc`.
fn mutate(
    mut doc: Value,
    path: &[&str],
    change: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Value {
    let mut at = &mut doc;
    for step in path {
        at = match step.parse::<usize>() {
            Ok(i) => &mut at[i],
            Err(_) => &mut at[*step],
        };
    }
    change(at.as_object_mut().expect("mutation target is a mapping"));
    doc
}

#[test]
fn every_reference_example_passes() {
    let dir = kiln_e2e::workspace_root().join("tests/fixtures/kubeadm/examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    files.sort();
    let mut kinds = Vec::new();
    for file in &files {
        let name = file.to_string_lossy();
        for doc in example(&name) {
            if let Err(errors) = schema::check(&doc) {
                panic!("{name}: {} refused: {errors:#?}", doc["kind"]);
            }
            kinds.push(format!(
                "{} {}",
                doc["apiVersion"].as_str().unwrap(),
                doc["kind"].as_str().unwrap()
            ));
        }
    }
    // Every kind of both versions was exercised, plus the pass-through ones.
    for expected in [
        "kubeadm.k8s.io/v1beta3 InitConfiguration",
        "kubeadm.k8s.io/v1beta3 ClusterConfiguration",
        "kubeadm.k8s.io/v1beta3 JoinConfiguration",
        "kubeadm.k8s.io/v1beta4 InitConfiguration",
        "kubeadm.k8s.io/v1beta4 ClusterConfiguration",
        "kubeadm.k8s.io/v1beta4 JoinConfiguration",
        "kubeadm.k8s.io/v1beta4 ResetConfiguration",
        "kubeadm.k8s.io/v1beta4 UpgradeConfiguration",
        "kubelet.config.k8s.io/v1beta1 KubeletConfiguration",
        "kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "no example holds {expected}: {kinds:?}"
        );
    }
    assert_eq!(
        example("v1beta4-init.yaml").len(),
        4,
        "init example has Init, Cluster, Kubelet, KubeProxy"
    );
}

#[test]
fn the_published_typo_in_the_v1beta4_example_is_caught() {
    let doc = mutate(example("v1beta4-init.yaml").remove(0), &["timeouts"], |t| {
        let value = t.remove("kubernetesAPICall").unwrap();
        t.insert("kubenetesAPICall".into(), value);
    });
    assert_one_error(
        &doc,
        "InitConfiguration.timeouts.kubenetesAPICall: unknown field (did you mean \"kubernetesAPICall\"?)",
    );
}

#[test]
fn the_published_unquoted_number_in_the_v1beta3_example_is_caught() {
    let doc = mutate(
        example("v1beta3-init.yaml").remove(0),
        &["nodeRegistration", "kubeletExtraArgs"],
        |a| {
            a.insert("v".into(), json!(4));
        },
    );
    assert_one_error(
        &doc,
        "InitConfiguration.nodeRegistration.kubeletExtraArgs.v: expected string, found the number 4",
    );
}

#[test]
fn v1beta3_map_extra_args_are_refused_in_v1beta4_and_vice_versa() {
    let doc = mutate(
        example("v1beta4-init.yaml").remove(1),
        &["apiServer"],
        |a| {
            a.insert(
                "extraArgs".into(),
                json!({"authorization-mode": "Node,RBAC"}),
            );
        },
    );
    assert_one_error(
        &doc,
        "ClusterConfiguration.apiServer.extraArgs: expected list<object<Arg>>, found a map \
         (v1beta4 replaced v1beta3's extraArgs map with a list of {name, value} items)",
    );
    let doc = mutate(
        example("v1beta3-join.yaml").remove(0),
        &["nodeRegistration"],
        |n| {
            n.insert(
                "kubeletExtraArgs".into(),
                json!([{"name": "node-ip", "value": "10.0.0.3"}]),
            );
        },
    );
    let errors = refusals(&doc);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("JoinConfiguration.nodeRegistration.kubeletExtraArgs: expected map<string,string>, found a list (v1beta3 kubeletExtraArgs is a map"),
        "{errors:#?}"
    );
}

#[test]
fn arg_items_need_name_and_value() {
    let doc = mutate(
        example("v1beta4-join.yaml").remove(0),
        &["nodeRegistration", "kubeletExtraArgs", "0"],
        |a| {
            let value = a.remove("value").unwrap();
            a.insert("val".into(), value);
        },
    );
    let errors = refusals(&doc);
    assert_eq!(
        errors,
        vec![
            "JoinConfiguration.nodeRegistration.kubeletExtraArgs[0].val: unknown field (did you mean \"value\"?)",
            "JoinConfiguration.nodeRegistration.kubeletExtraArgs[0].value: missing required field of Arg \
             (https://kubernetes.io/docs/reference/config-api/kubeadm-config.v1beta4/#kubeadm-k8s-io-v1beta4-Arg)",
        ]
    );
}

#[test]
fn join_needs_discovery_and_token_discovery_needs_its_fields() {
    for file in ["v1beta3-join.yaml", "v1beta4-join.yaml"] {
        let doc = mutate(example(file).remove(0), &[], |j| {
            j.remove("discovery");
        });
        let errors = refusals(&doc);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].starts_with(
            "JoinConfiguration.discovery: missing required field of JoinConfiguration"
        ));
    }
    let doc = mutate(
        example("v1beta4-join.yaml").remove(0),
        &["discovery", "bootstrapToken"],
        |b| {
            b.remove("caCertHashes");
            b.remove("apiServerEndpoint");
        },
    );
    let errors = refusals(&doc);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].starts_with(
        "JoinConfiguration.discovery.bootstrapToken.apiServerEndpoint: missing required field of BootstrapTokenDiscovery"
    ));
    assert_eq!(
        errors[1],
        "JoinConfiguration.discovery.bootstrapToken.caCertHashes: missing; kubeadm refuses this without it unless unsafeSkipCAVerification is true"
    );
    let doc = mutate(
        example("v1beta4-join.yaml").remove(0),
        &["discovery"],
        |d| {
            d.insert(
                "file".into(),
                json!({"kubeConfigPath": "/etc/kubernetes/discovery.conf"}),
            );
        },
    );
    assert_one_error(
        &doc,
        "JoinConfiguration.discovery: set exactly one of bootstrapToken, file",
    );
}

#[test]
fn wrong_types_and_formats_name_what_was_expected() {
    let init = example("v1beta4-init.yaml").remove(0);
    let doc = mutate(init.clone(), &["localAPIEndpoint"], |e| {
        e.insert("bindPort".into(), json!("6443"));
    });
    assert_one_error(
        &doc,
        "InitConfiguration.localAPIEndpoint.bindPort: expected int, found the string \"6443\"",
    );
    let doc = mutate(init.clone(), &["localAPIEndpoint"], |e| {
        e.insert("bindPort".into(), json!(70000));
    });
    assert_one_error(
        &doc,
        "InitConfiguration.localAPIEndpoint.bindPort: 70000 is outside 1..=65535",
    );
    for (ttl, found) in [
        (json!(86400), "the number 86400"),
        (json!("1d"), "the string \"1d\""),
    ] {
        let doc = mutate(init.clone(), &["bootstrapTokens", "0"], |t| {
            t.insert("ttl".into(), ttl);
        });
        assert_one_error(
            &doc,
            &format!(
                "InitConfiguration.bootstrapTokens[0].ttl: expected duration (a Go duration such as \"0s\", \"15m\" or \"24h0m0s\"), found {found}"
            ),
        );
    }
    let doc = mutate(init.clone(), &["bootstrapTokens", "0"], |t| {
        t.insert("token".into(), json!("ABCDEF.0123456789abcdef"));
    });
    assert_one_error(
        &doc,
        "InitConfiguration.bootstrapTokens[0].token: expected a bootstrap token \"[a-z0-9]{6}.[a-z0-9]{16}\", found \"ABCDEF.0123456789abcdef\"",
    );
    let doc = mutate(init, &["nodeRegistration"], |n| {
        n.insert("imagePullPolicy".into(), json!("Sometimes"));
        n.insert("imagePullSerial".into(), json!("yes"));
    });
    assert_eq!(
        refusals(&doc),
        vec![
            "InitConfiguration.nodeRegistration.imagePullPolicy: \"Sometimes\" is not one of Always, IfNotPresent, Never",
            "InitConfiguration.nodeRegistration.imagePullSerial: expected bool, found the string \"yes\"",
        ]
    );
}

#[test]
fn fields_v1beta4_moved_point_to_their_new_home() {
    let doc = mutate(
        example("v1beta4-init.yaml").remove(1),
        &["apiServer"],
        |a| {
            a.insert("timeoutForControlPlane".into(), json!("4m0s"));
        },
    );
    assert_one_error(
        &doc,
        "ClusterConfiguration.apiServer.timeoutForControlPlane: unknown field in kubeadm.k8s.io/v1beta4; \
         v1beta4 moved it to InitConfiguration.timeouts.controlPlaneComponentHealthCheck (and JoinConfiguration.timeouts)",
    );
}

#[test]
fn external_etcd_is_complete_and_exclusive_with_local() {
    let cluster = example("v1beta4-init.yaml").remove(1);
    let doc = mutate(cluster, &["etcd"], |e| {
        e.insert(
            "external".into(),
            json!({"endpoints": ["https://10.0.0.1:2379"], "caFile": "/etc/kubernetes/pki/etcd/ca.crt",
                   "certFile": "/etc/kubernetes/pki/apiserver-etcd-client.crt"}),
        );
    });
    let errors = refusals(&doc);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].starts_with(
        "ClusterConfiguration.etcd.external.keyFile: missing required field of ExternalEtcd"
    ));
    assert_eq!(
        errors[1],
        "ClusterConfiguration.etcd: set only one of local, external, they are mutually exclusive"
    );
}

#[test]
fn unknown_versions_and_kinds_name_the_supported_ones() {
    let errors =
        refusals(&json!({"apiVersion": "kubeadm.k8s.io/v1beta2", "kind": "InitConfiguration"}));
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("apiVersion \"kubeadm.k8s.io/v1beta2\" kind \"InitConfiguration\" is not a kubeadm config type"));
    for supported in [
        "kubeadm.k8s.io/v1beta3 InitConfiguration/ClusterConfiguration/JoinConfiguration",
        "kubeadm.k8s.io/v1beta4 InitConfiguration/ClusterConfiguration/JoinConfiguration/ResetConfiguration/UpgradeConfiguration",
        "kubelet.config.k8s.io/v1beta1 KubeletConfiguration",
    ] {
        assert!(errors[0].contains(supported), "{} lacks {supported}", errors[0]);
    }
    let errors = refusals(&json!({"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "JoinConfig"}));
    assert!(
        errors[0].contains("(did you mean kind \"JoinConfiguration\"?)"),
        "{errors:#?}"
    );
    // Reset and upgrade configs do not exist in v1beta3.
    assert!(schema::check(
        &json!({"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "ResetConfiguration"})
    )
    .is_err());
}

#[test]
fn component_configs_pass_through_unchecked() {
    let kubelet = json!({"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
                         "cgroupDriver": "systemd", "anything": {"nested": [1, 2]}});
    assert_eq!(schema::check(&kubelet), Ok(()));
}

#[test]
fn every_problem_is_reported_at_once() {
    let doc = json!({
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "JoinConfiguration",
        "nodeRegistration": {"nmae": "w1", "taints": "none"},
        "controlPlane": {"localAPIEndpoint": {"advertiseAddress": 10}},
    });
    // Sorted: the order follows the document's keys, which serde_json may keep.
    let mut errors = refusals(&doc);
    errors.sort();
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_eq!(errors[0], "JoinConfiguration.controlPlane.localAPIEndpoint.advertiseAddress: expected string, found the number 10");
    assert_eq!(
        errors[2],
        "JoinConfiguration.nodeRegistration.nmae: unknown field (did you mean \"name\"?)"
    );
    assert_eq!(errors[3], "JoinConfiguration.nodeRegistration.taints: expected list<object<Taint>>, found the string \"none\"");
    assert!(errors[1].starts_with("JoinConfiguration.discovery: missing required field"));
}

#[test]
fn a_token_has_a_ttl_or_an_expiry_not_both() {
    let doc = mutate(
        example("v1beta3-init.yaml").remove(0),
        &["bootstrapTokens", "0"],
        |t| {
            t.insert("expires".into(), json!("2030-01-02T03:04:05Z"));
        },
    );
    assert_one_error(
        &doc,
        "InitConfiguration.bootstrapTokens[0]: set only one of ttl, expires, they are mutually exclusive",
    );
}

/// kiln's own emitter output (the agent's pinned goldens) uses kubeadm's
/// published names and shapes for both API versions.
#[test]
fn kilns_golden_configs_match_kubeadms_schema() {
    let dir = kiln_e2e::workspace_root().join("firstboot/src/kubeadm/golden");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let docs =
            yaml::parse_documents(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!docs.is_empty(), "{} holds no document", path.display());
        for doc in docs {
            if let Err(errors) = schema::check(&doc) {
                panic!("{}: {} refused: {errors:#?}", path.display(), doc["kind"]);
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 4,
        "only {checked} documents found in {}",
        dir.display()
    );
}
