//! Unit tests of the Ignition rendering: shape of the JSON, data URL choice
//! and round trip, determinism.

use std::io::Read;

use base64::Engine;
use kiln_node::node_config::Role;
use serde_json::{json, Value};

use super::*;
use crate::layer::{Contents, Unit};

fn sample_layer() -> RoleLayer {
    let mut layer = RoleLayer::new(Role::Etcd);
    layer.add_file(
        "/etc/kiln/node.toml",
        Meta::root(0o644),
        Contents::Inline(b"role = \"etcd\"\n".to_vec()),
    );
    layer.add_secret("/etc/kiln/pki/ca.key", b"-----BEGIN KEY-----\n".to_vec());
    layer.add_dir(
        "/var/lib/app",
        Meta {
            mode: 0o750,
            uid: 1000,
            gid: 1000,
        },
    );
    layer.add_link("/etc/localtime", "/usr/share/zoneinfo/UTC");
    layer.add_unit(
        Unit {
            name: "etcd.service".into(),
            contents: Some(
                "[Service]\nExecStart=/usr/bin/etcd\n[Install]\nWantedBy=multi-user.target\n"
                    .into(),
            ),
            dropins: vec![("10-env.conf".into(), "[Service]\nEnvironment=A=1\n".into())],
        },
        true,
    );
    layer
}

fn render(layer: &RoleLayer) -> Value {
    serde_json::from_slice(&render_ignition(layer).unwrap()).unwrap()
}

fn find<'a>(list: &'a Value, path: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path)
        .unwrap_or_else(|| panic!("{path} missing from {list}"))
}

fn contains_null(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.iter().any(contains_null),
        Value::Object(map) => map.values().any(contains_null),
        _ => false,
    }
}

/// What Ignition would write for a file resource.
fn decode(resource: &Value) -> Vec<u8> {
    let source = resource["source"].as_str().unwrap();
    let data = if let Some(b64) = source.strip_prefix("data:;base64,") {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    } else {
        let encoded = source.strip_prefix("data:,").unwrap().as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < encoded.len() {
            if encoded[i] == b'%' {
                let hex = std::str::from_utf8(&encoded[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(encoded[i]);
                i += 1;
            }
        }
        out
    };
    match resource.get("compression").and_then(Value::as_str) {
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&data[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        }
        None => data,
        Some(other) => panic!("unexpected compression {other}"),
    }
}

#[test]
fn layer_renders_as_spec_3_3_0_with_numeric_owners_and_no_nulls() {
    let config = render(&sample_layer());
    assert_eq!(config["ignition"]["version"], "3.3.0");
    assert!(!contains_null(&config), "{config}");

    let files = &config["storage"]["files"];
    let key = find(files, "/etc/kiln/pki/ca.key");
    assert_eq!(key["mode"], 384);
    assert_eq!(key["overwrite"], true);
    assert_eq!(key["user"], json!({"id": 0}));
    assert_eq!(key["group"], json!({"id": 0}));
    assert_eq!(decode(&key["contents"]), b"-----BEGIN KEY-----\n");

    let dir = find(&config["storage"]["directories"], "/var/lib/app");
    assert_eq!(
        dir,
        &json!({"path": "/var/lib/app", "mode": 488, "user": {"id": 1000}, "group": {"id": 1000}})
    );
    // Implied parents are Ignition's business, not the config's.
    assert_eq!(
        config["storage"]["directories"].as_array().unwrap().len(),
        1
    );

    let links = &config["storage"]["links"];
    assert_eq!(
        find(links, "/etc/localtime")["target"],
        "/usr/share/zoneinfo/UTC"
    );
    let wants = find(
        links,
        "/etc/systemd/system/multi-user.target.wants/etcd.service",
    );
    assert_eq!(wants["hard"], false);
    assert_eq!(wants["target"], "/etc/systemd/system/etcd.service");

    let units = config["systemd"]["units"].as_array().unwrap();
    assert_eq!(units.len(), 1);
    assert_eq!(units[0]["name"], "etcd.service");
    assert!(units[0].get("enabled").is_none(), "{}", units[0]);
    assert_eq!(units[0]["dropins"][0]["name"], "10-env.conf");
    assert!(files
        .as_array()
        .unwrap()
        .iter()
        .all(|f| !f["path"].as_str().unwrap().starts_with("/etc/systemd/")));
}

#[test]
fn the_same_layer_renders_to_the_same_bytes() {
    assert_eq!(
        render_ignition(&sample_layer()).unwrap(),
        render_ignition(&sample_layer()).unwrap()
    );
}

#[test]
fn each_file_gets_its_smallest_data_url_and_decodes_to_its_bytes() {
    let text = b"name=node-1/etcd:2379,peer?x#y\n".to_vec();
    let repetitive = b"0123456789abcdef".repeat(500);
    // Pseudo-random bytes (xorshift): nothing for gzip to find.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let binary: Vec<u8> = (0..600)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let mut layer = RoleLayer::new(Role::Worker);
    for (name, bytes) in [
        ("text", &text),
        ("repetitive", &repetitive),
        ("binary", &binary),
    ] {
        layer.add_file(
            format!("/f/{name}"),
            Meta::root(0o644),
            Contents::Inline(bytes.clone()),
        );
    }
    layer.add_file("/f/empty", Meta::root(0o644), Contents::Inline(Vec::new()));
    let config = render(&layer);
    let files = &config["storage"]["files"];

    let text_res = &find(files, "/f/text")["contents"];
    assert!(text_res["source"]
        .as_str()
        .unwrap()
        .starts_with("data:,name=node-1/etcd:2379,peer%3Fx%23y%0A"));
    assert_eq!(decode(text_res), text);

    let rep_res = &find(files, "/f/repetitive")["contents"];
    assert_eq!(rep_res["compression"], "gzip");
    assert!(rep_res["source"].as_str().unwrap().len() < 200);
    assert_eq!(decode(rep_res), repetitive);

    let bin_res = &find(files, "/f/binary")["contents"];
    assert!(bin_res["source"]
        .as_str()
        .unwrap()
        .starts_with("data:;base64,"));
    assert!(bin_res.get("compression").is_none());
    assert_eq!(decode(bin_res), binary);

    assert_eq!(find(files, "/f/empty")["contents"]["source"], "data:,");
}

#[test]
fn a_layer_with_only_units_has_no_storage_section() {
    let mut layer = RoleLayer::new(Role::Worker);
    layer.add_unit(
        Unit {
            name: "a.service".into(),
            contents: Some("[Service]\n".into()),
            dropins: vec![],
        },
        false,
    );
    let config = render(&layer);
    assert!(config.get("storage").is_none(), "{config}");
    assert!(config["systemd"]["units"][0].get("dropins").is_none());
}
