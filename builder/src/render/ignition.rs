//! Renders a role layer as an Ignition spec 3.3.0 config (what Debian's
//! Ignition 2.14 and every current Ignition accept).

use std::path::Path;

use base64::Engine;
use ignition_config::v3_3::{
    Config, Directory, Dropin, File, Link, NodeGroup, NodeUser, Resource, Storage, Systemd, Unit,
};
use serde_json::Value;

use super::{deflate, layer_tree, Origin, RenderError, TreeKind};
use crate::layer::{Meta, RoleLayer};

/// The Ignition config for `layer`, as compact JSON without nulls. Implied
/// parents are left out (Ignition creates them root 0755 itself), unit files
/// go to `systemd.units`; enabling is already done by the layer's links.
pub fn render_ignition(layer: &RoleLayer) -> Result<Vec<u8>, RenderError> {
    let mut storage = Storage::default();
    let (mut directories, mut files, mut links) = (Vec::new(), Vec::new(), Vec::new());
    for (path, entry) in layer_tree(layer)? {
        if entry.origin != Origin::Node {
            continue;
        }
        match entry.kind {
            TreeKind::Dir => directories.push(directory(&path, entry.meta)?),
            TreeKind::File(data) => files.push(file(&path, entry.meta, data)?),
            TreeKind::Link(target) => links.push(link(&path, target)?),
        }
    }
    storage.directories = non_empty(directories);
    storage.files = non_empty(files);
    storage.links = non_empty(links);

    let units = layer.units.values().map(|unit| Unit {
        contents: unit.contents.clone(),
        dropins: non_empty(
            unit.dropins
                .iter()
                .map(|(name, contents)| Dropin {
                    name: name.clone(),
                    contents: Some(contents.clone()),
                })
                .collect(),
        ),
        ..Unit::new(unit.name.clone())
    });
    let mut config = Config::default();
    if storage != Storage::default() {
        config.storage = Some(storage);
    }
    config.systemd = non_empty(units.collect()).map(|units| Systemd { units: Some(units) });

    let mut json = serde_json::to_value(&config)?;
    strip_nulls(&mut json);
    Ok(serde_json::to_vec(&json)?)
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

fn path_string(path: &Path) -> Result<String, RenderError> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| RenderError::layer(path, "is not valid UTF-8, which JSON cannot carry"))
}

fn owner(meta: Meta) -> (Option<NodeUser>, Option<NodeGroup>) {
    let user = NodeUser {
        id: Some(meta.uid.into()),
        name: None,
    };
    let group = NodeGroup {
        id: Some(meta.gid.into()),
        name: None,
    };
    (Some(user), Some(group))
}

fn directory(path: &Path, meta: Meta) -> Result<Directory, RenderError> {
    let (user, group) = owner(meta);
    // No `overwrite`: an existing directory then only gets its mode and
    // owner set, keeping its contents, like the tarball's layering does.
    Ok(Directory {
        mode: Some(meta.mode.into()),
        user,
        group,
        ..Directory::new(path_string(path)?)
    })
}

fn file(path: &Path, meta: Meta, bytes: &[u8]) -> Result<File, RenderError> {
    let (user, group) = owner(meta);
    Ok(File {
        contents: Some(inline_resource(bytes)),
        mode: Some(meta.mode.into()),
        overwrite: Some(true),
        user,
        group,
        ..File::new(path_string(path)?)
    })
}

fn link(path: &Path, target: &Path) -> Result<Link, RenderError> {
    Ok(Link {
        hard: Some(false),
        overwrite: Some(true),
        target: Some(path_string(target)?),
        ..Link::new(path_string(path)?)
    })
}

/// The smallest of a plain, a base64 and a gzip+base64 data URL: configs
/// often travel as size-limited cloud user-data. Only the winner is
/// encoded: a base64 URL's length follows from the byte count.
fn inline_resource(bytes: &[u8]) -> Resource {
    const PREFIX: &str = "data:;base64,";
    let base64_len = |n: usize| PREFIX.len() + n.div_ceil(3) * 4;
    // Binary data percent-encodes to about 2.5x its size: only text can win.
    let plain = std::str::from_utf8(bytes)
        .is_ok()
        .then(|| plain_data_url(bytes))
        .filter(|plain| plain.len() <= base64_len(bytes.len()));
    let gzipped = deflate::gzip(bytes);
    let gzip_overhead = r#","compression":"gzip""#.len();
    let best_len = plain.as_ref().map_or(base64_len(bytes.len()), String::len);
    if base64_len(gzipped.len()) + gzip_overhead < best_len {
        return Resource {
            source: Some(format!("{PREFIX}{}", base64_of(&gzipped))),
            compression: Some("gzip".to_owned()),
            ..Resource::default()
        };
    }
    Resource {
        source: Some(plain.unwrap_or_else(|| format!("{PREFIX}{}", base64_of(bytes)))),
        ..Resource::default()
    }
}

fn base64_of(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `data:,` with everything percent-encoded except characters that mean
/// nothing special in a URL (no `?`, `#`, `%` or `;` left bare).
fn plain_data_url(bytes: &[u8]) -> String {
    let mut url = String::with_capacity(6 + bytes.len() * 3);
    url.push_str("data:,");
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.~/:=+,@!*'()".contains(&b) {
            url.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            url.push('%');
            url.push(char::from(HEX[usize::from(b >> 4)]));
            url.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    url
}

/// The crate writes `None` as `null` for several fields (mode, overwrite,
/// enabled...); Ignition reads null as "unset", but validators and humans
/// reading the config are better served without them.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
#[path = "ignition_tests.rs"]
mod tests;
