//! Checks of the [images] section: output formats, the agent download, and
//! each role's base image, packages, extra files and units.

use std::collections::HashSet;
use std::path::Component;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kiln_node::layout::kube::MASKED_UNITS;
use kiln_node::layout::{
    is_kiln_drop_in, is_kiln_unit, is_within, kiln_owner, resolve_base_links, KILN_OWNED,
    KILN_UNIT_PREFIX, UNIT_DIRS,
};
use kiln_node::node_config::Role;

use super::Checker;
use crate::image::kept_in_var;
use crate::profile::model::{
    BaseImage, EtcdRelease, ExtraFile, ExtraUnit, FileSource, ImagesSection, RoleImage,
    DEFAULT_USER_DATA_LIMIT,
};

/// Unit types that can be defined by a unit file in /etc/systemd/system.
const UNIT_SUFFIXES: [&str; 9] = [
    ".service",
    ".socket",
    ".timer",
    ".target",
    ".path",
    ".mount",
    ".automount",
    ".swap",
    ".slice",
];

/// Below this no role's config fits: the limit is a typo (KiB for bytes).
const MIN_USER_DATA_LIMIT: u64 = 4096;

pub fn check(images: &ImagesSection, check: &mut Checker<'_>) {
    if images.formats.is_empty() {
        check.error(
            "images.formats",
            "no output format: the build would produce nothing",
            "write formats = [\"ignition\", \"rootfs\"] (or one of them)",
        );
    }
    check.no_repeats(
        "images.formats",
        &images.formats,
        "output format listed twice",
        "list each format once",
    );
    if images.agent.is_some() {
        check.error(
            "images.agent",
            "is no longer read: the agent is part of every role's image, and the Ignition \
             config (the user-data) no longer carries or downloads it"
                .to_owned(),
            "remove images.agent",
        );
    }
    if images.user_data_limit < MIN_USER_DATA_LIMIT {
        check.error(
            "images.user_data_limit",
            format!(
                "{} bytes cannot hold a node's config (kiln's smallest, a worker's, is \
                 several KiB)",
                images.user_data_limit
            ),
            format!(
                "remove it for the default of {DEFAULT_USER_DATA_LIMIT} bytes (EC2's limit), or set \
                 the limit of your platform in bytes, like user_data_limit = 65536"
            ),
        );
    }
    check_disk_base(images, check);
    if images.embed_config && !images.formats.iter().any(|f| f.is_disk()) {
        check.warn(
            "images.embed_config",
            "has no effect: no disk format is built",
            "add a disk format (\"raw\", \"qcow2\", \"vhd\", \"gce\", \"vmdk\" or \"ova\") to \
             images.formats, or remove images.embed_config",
        );
    }
    for role in [Role::Etcd, Role::Master, Role::Worker] {
        check_role(role, images.role(role), check);
    }
    check_etcd_source(images, check);
}

/// `images.etcd`: at most one of source, binaries and release; the other
/// roles take none of them (stacked masters run kubeadm's etcd image).
fn check_etcd_source(images: &ImagesSection, check: &mut Checker<'_>) {
    for (role, image) in [("master", &images.master), ("worker", &images.worker)] {
        let set = [
            ("source", image.source.is_some()),
            ("suite", image.suite.is_some()),
            ("binaries", image.binaries.is_some()),
            ("release", image.release.is_some()),
        ];
        for (key, _) in set.iter().filter(|(_, on)| *on) {
            check.error(
                format!("images.{role}.{key}"),
                format!("{key} chooses where etcd comes from, and only etcd nodes install etcd"),
                format!("move {key} to [images.etcd], or remove it"),
            );
        }
    }
    let etcd = &images.etcd;
    let chosen: Vec<&str> = [
        ("source", etcd.source.is_some()),
        ("binaries", etcd.binaries.is_some()),
        ("release", etcd.release.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, on)| on.then_some(key))
    .collect();
    if chosen.len() > 1 {
        check.error(
            format!("images.etcd.{}", chosen[1]),
            format!(
                "{} are set together: etcd can come from one place only",
                chosen.join(" and ")
            ),
            "keep one: source = \"debian\" (Debian's packages), binaries = \"DIR\" (etcd, etcdctl \
             and etcdutl from a folder) or release = { url = \"...\", sha256 = \"...\" }",
        );
    }
    if let Some(suite) = &etcd.suite {
        if etcd.binaries.is_some() || etcd.release.is_some() {
            check.error(
                "images.etcd.suite",
                "suite picks the Debian suite of etcd's packages, and etcd comes from elsewhere",
                "remove suite, or use source = \"debian\" with it",
            );
        }
        let codename = !suite.is_empty()
            && suite.starts_with(|c: char| c.is_ascii_lowercase())
            && suite
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !codename {
            check.error(
                "images.etcd.suite",
                format!("{suite:?} is not a Debian suite name"),
                "name a suite of Debian's archive, like suite = \"sid\" or \"trixie\"",
            );
        }
    }
    if let Some(dir) = &etcd.binaries {
        check_etcd_binaries(&check.base_dir.join(dir), check);
    }
    if let Some(release) = &etcd.release {
        check_etcd_release(release, check);
    }
}

fn check_etcd_binaries(dir: &std::path::Path, check: &mut Checker<'_>) {
    if !dir.is_dir() {
        check.error(
            "images.etcd.binaries",
            format!("etcd binaries folder {} does not exist", dir.display()),
            "name the folder of an unpacked etcd release (etcd, etcdctl, etcdutl), relative to \
             the profile's folder",
        );
        return;
    }
    for name in ["etcd", "etcdctl"] {
        let path = dir.join(name);
        let executable = path
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if !executable {
            check.error(
                "images.etcd.binaries",
                format!("{} is not an executable file", path.display()),
                format!("put {name} of the etcd release there, mode 0755"),
            );
        }
    }
}

/// An `http://` or `https://` URL with a host and no white space.
fn is_http_url(url: &str) -> bool {
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .and_then(|rest| rest.split('/').next());
    host.is_some_and(|h| !h.is_empty()) && !url.contains(char::is_whitespace)
}

fn check_etcd_release(release: &EtcdRelease, check: &mut Checker<'_>) {
    if !is_http_url(&release.url) {
        check.error(
            "images.etcd.release.url",
            format!("{:?} is not an http(s) URL", release.url),
            "write the release tarball's URL, like \
             \"https://github.com/etcd-io/etcd/releases/download/v3.5.30/etcd-v3.5.30-linux-amd64.tar.gz\"",
        );
    }
    if release.sha256.len() != 64 || !release.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        check.error(
            "images.etcd.release.sha256",
            format!(
                "sha256 must be 64 hex digits, got {} characters",
                release.sha256.len()
            ),
            "copy the tarball's line from the release's SHA256SUMS, or run `sha256sum` on it",
        );
    }
}

/// A bootable disk needs a whole OS under the role layer.
fn check_disk_base(images: &ImagesSection, check: &mut Checker<'_>) {
    let Some(j) = images.formats.iter().position(|f| f.is_disk()) else {
        return;
    };
    if images.base != BaseImage::None {
        return;
    }
    for (role, image) in [
        ("etcd", &images.etcd),
        ("master", &images.master),
        ("worker", &images.worker),
    ] {
        if image.base.is_none() {
            check.error(
                format!("images.formats[{j}]"),
                format!("a bootable disk needs an operating system, and images.{role} has no base"),
                "write base = \"debian\" in [images] (kiln builds and caches a Debian base), \
                 or drop the disk formats (raw, qcow2, vhd, gce, vmdk, ova) from formats",
            );
            return;
        }
    }
}

fn check_role(role: Role, image: &RoleImage, check: &mut Checker<'_>) {
    let field = &format!("images.{role}");
    if let Some(base) = &image.base {
        let resolved = check.base_dir.join(base);
        if !resolved.exists() {
            check.error(
                format!("{field}.base"),
                format!("base image {} does not exist", resolved.display()),
                "point base at a root filesystem folder or .tar/.tar.gz, relative to the profile's folder",
            );
        }
    }
    for (j, package) in image.packages.iter().enumerate() {
        if !is_package_name(package) {
            check.error(
                format!("{field}.packages[{j}]"),
                format!("{package:?} is not a Debian package name"),
                "use the package's name as apt knows it, like \"chrony\" (lowercase, digits, + - .)",
            );
        }
    }
    let mut paths = HashSet::new();
    for (j, file) in image.files.iter().enumerate() {
        let at = format!("{field}.files[{j}]");
        check_file(field, &at, file, check);
        if !paths.insert(file.path.trim_end_matches('/')) {
            check.error(
                format!("{at}.path"),
                format!("{} is listed twice in {field}.files", file.path),
                "keep one entry per path",
            );
        }
    }
    let mut units = HashSet::new();
    for (j, unit) in image.units.iter().enumerate() {
        let at = format!("{field}.units[{j}]");
        check_unit(role, &at, unit, check);
        if !units.insert(unit.name.as_str()) {
            check.error(
                format!("{at}.name"),
                format!("unit {} is listed twice", unit.name),
                "keep one entry per unit",
            );
        }
    }
}

/// A Debian package name: lowercase letters, digits, `+`, `-` and `.`,
/// at least two characters, starting with a letter or digit.
pub fn is_package_name(package: &str) -> bool {
    package.len() >= 2
        && package.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && package
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// An absolute path in the form Ignition requires (its validation refuses
/// paths that `path.Clean` would change): `/` then non-empty components
/// other than `.` and `..`, no trailing `/`; and no NUL byte, which no
/// Linux path holds.
pub fn is_clean_absolute(path: &str) -> bool {
    !path.contains('\0')
        && path.strip_prefix('/').is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .split('/')
                    .all(|part| !part.is_empty() && part != "." && part != "..")
        })
}

/// Files above this size need `large = true`: they are copied into every
/// Ignition config and image of the role.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// `field` is the role's table (`images.worker`), `at` the file's.
fn check_file(field: &str, at: &str, file: &ExtraFile, check: &mut Checker<'_>) {
    let (real, link) = resolve_base_links(&file.path);
    // " (/bin links to /usr/bin in the base)" when the path went through one.
    let through = link.map_or(String::new(), |(link, target)| {
        format!(" ({link} links to {target} in the base)")
    });
    if file.path.contains('\0') {
        check.error(
            format!("{at}.path"),
            format!(
                "{:?} holds a NUL byte, which no Linux path may hold: the system calls that \
                 write the file end the path there",
                file.path
            ),
            "remove the \\u0000 from the path, like path = \"/etc/motd\"",
        );
    } else if !is_clean_absolute(&file.path) {
        check.error(
            format!("{at}.path"),
            format!("{:?} is not a clean absolute file path", file.path),
            "write the file's full path on the node without '.', '..', '//' or a trailing '/', \
             like \"/etc/motd\" (Ignition refuses any other form)",
        );
    } else if let Some(owner) = kiln_owner(&file.path) {
        let whose = if real == owner {
            "kiln's own on every node".to_owned()
        } else {
            format!("under {owner}, which kiln owns on every node")
        };
        check.error(
            format!("{at}.path"),
            match link {
                None => format!("{real} is {whose}"),
                Some(_) => format!("{} is {real}{through}, {whose}", file.path),
            },
            "put the file elsewhere: kiln's configuration, agent, state and PKI cannot be \
             replaced by a profile",
        );
    } else if let Some(owned) = KILN_OWNED.iter().find(|owned| is_within(owned, &real)) {
        check.error(
            format!("{at}.path"),
            format!(
                "{}{through} holds {owned}, which kiln owns on every node: a file there would \
                 replace the folder",
                file.path
            ),
            "put the file elsewhere, like \"/etc/motd\"",
        );
    } else if let Some(dir) = UNIT_DIRS
        .iter()
        .find(|dir| is_within(&real, dir) || is_within(dir, &real))
    {
        check_unit_path(field, at, &file.path, (&real, &through), dir, check);
    } else if is_within(&real, "/usr") && !kept_in_var(&real) {
        check.error(
            format!("{at}.path"),
            format!(
                "{} is under /usr{through}: kiln's disks hold the OS in a read-only, verified \
                 partition, so Ignition cannot write the file at first boot",
                file.path
            ),
            format!(
                "put the file under /etc or /var (or /usr/local, a link into /var); to ship it \
                 with the OS, install it from a Debian package ({field}.packages) or a base of \
                 your own ({field}.base)"
            ),
        );
    }
    let size = match &file.contents {
        FileSource::Inline(text) => Some(text.len() as u64),
        FileSource::Local(local) => check_local_source(at, local, check),
    };
    if size.is_some_and(|n| n > MAX_FILE_BYTES) && !file.large {
        check.error(
            format!("{at}.contents"),
            format!(
                "the file is {} bytes, over kiln's limit of {MAX_FILE_BYTES} for extra files",
                size.unwrap_or_default()
            ),
            "set large = true on this file if it really belongs in every image and Ignition \
             config of the role, or install it another way",
        );
    }
    if file.mode > 0o7777 {
        let digits = file.mode.to_string();
        let octal = if digits.chars().all(|c| ('0'..='7').contains(&c)) {
            format!("write mode = 0o{digits} if you meant octal {digits}")
        } else {
            "write the mode in octal, like mode = 0o644".to_owned()
        };
        check.error(
            format!("{at}.mode"),
            format!("mode 0o{:o} has bits above 0o7777", file.mode),
            format!("TOML reads a bare number as decimal: {octal}"),
        );
    }
}

/// An extra file at `path` (`real` once the base's links are followed)
/// that is, holds or is inside systemd's unit folder `dir`. The build
/// refuses a file at the path of a unit (or a parent where a unit needs a
/// folder) only late, and a file beside them bypasses `units`.
fn check_unit_path(
    field: &str,
    at: &str,
    path: &str,
    (real, through): (&str, &str),
    dir: &str,
    check: &mut Checker<'_>,
) {
    let (message, hint) = if !is_within(real, dir) {
        (
            format!(
                "{path}{through} holds {dir}, a folder of systemd's units: a file there would \
                 replace it"
            ),
            "put the file elsewhere, like \"/etc/motd\"".to_owned(),
        )
    } else if let Some(what) = kilns_unit_file(real, dir) {
        (
            format!("{path}{through} is kiln's {what}, which a profile cannot replace"),
            format!(
                "add a unit or drop-in of your own in [[{field}.units]] instead, under a name \
                 without \"kiln\", like name = \"site.service\" or a drop-in \"50-site.conf\""
            ),
        )
    } else {
        (
            format!(
                "{path}{through} is in {dir}, a folder of systemd's units: units and drop-ins \
                 belong in the profile's units, and a file there fails the build where it \
                 meets one of kiln's"
            ),
            format!(
                "declare it in [[{field}.units]]: name = \"site.service\" with contents (the \
                 unit file), enabled, and dropins = [{{ name = \"50-site.conf\", contents = \
                 \"...\" }}] for drop-ins"
            ),
        )
    };
    check.error(format!("{at}.path"), message, hint);
}

/// What of kiln's a path in the unit folder `dir` is: one of its units, an
/// enablement link to one, or one of its drop-ins.
fn kilns_unit_file(path: &str, dir: &str) -> Option<String> {
    let rel = path[dir.len()..].trim_start_matches('/');
    let parts: Vec<&str> = rel.split('/').collect();
    match parts[..] {
        [unit] if is_kiln_unit(unit) => Some(format!("unit {unit}")),
        [folder, name] => {
            if let Some(unit) = folder.strip_suffix(".d") {
                is_kiln_drop_in(unit, name).then(|| format!("drop-in {name} of {unit}"))
            } else {
                let links = [".wants", ".requires", ".upholds"];
                let target = links.iter().find_map(|s| folder.strip_suffix(s));
                (target.is_some() && is_kiln_unit(name))
                    .then(|| format!("unit {name}, enabled through {folder}"))
            }
        }
        _ => None,
    }
}

/// A `local` source stays inside the profile's folder, as Butane's
/// `--files-dir` does: relative, no `..` out of it, no link leading out.
/// Returns the file's size when it is there.
fn check_local_source(at: &str, local: &Path, check: &mut Checker<'_>) -> Option<u64> {
    let field = format!("{at}.contents.local");
    let escapes = local.is_absolute() || local.components().any(|c| c == Component::ParentDir);
    let resolved = check.base_dir.join(local);
    let inside = match (resolved.canonicalize(), check.base_dir.canonicalize()) {
        (Ok(file), Ok(dir)) => file.starts_with(dir),
        _ => true,
    };
    if escapes || !inside {
        check.error(
            field,
            format!(
                "local file {} is outside the profile's folder {}",
                local.display(),
                check.base_dir.display()
            ),
            "copy the file into the profile's folder and name it relative to it, like \
             local = \"files/motd\": a build must not bake the build host's own files",
        );
        return None;
    }
    match resolved.metadata() {
        Ok(meta) if meta.is_file() => Some(meta.len()),
        _ => {
            check.error(
                field,
                format!("local file {} does not exist", resolved.display()),
                format!(
                    "local paths are relative to the profile's folder {}",
                    check.base_dir.display()
                ),
            );
            None
        }
    }
}

fn check_unit(role: Role, at: &str, unit: &ExtraUnit, check: &mut Checker<'_>) {
    if is_kiln_unit(&unit.name) {
        check.error(
            format!("{at}.name"),
            format!("unit names starting with {KILN_UNIT_PREFIX:?} are kiln's own"),
            "name the unit differently, like \"site-report.service\"",
        );
    } else if role != Role::Etcd && MASKED_UNITS.contains(&unit.name.as_str()) {
        check.error(
            format!("{at}.name"),
            format!(
                "kiln masks {} on masters and workers (a link to /dev/null: kubelet refuses to \
                 run with swap on), and this entry would replace the mask",
                unit.name
            ),
            "remove the entry: swap stays off on masters and workers",
        );
    }
    let stem = UNIT_SUFFIXES.iter().find_map(|s| unit.name.strip_suffix(s));
    let chars_ok = unit.name.len() <= 255
        && unit
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_.@\\-".contains(c));
    if stem.is_none_or(str::is_empty) || !chars_ok {
        check.error(
            format!("{at}.name"),
            format!("{:?} is not a systemd unit name", unit.name),
            format!(
                "name the unit with its type suffix, one of {}, like \"backup.timer\"",
                UNIT_SUFFIXES.join(" ")
            ),
        );
    }
    let mut names = HashSet::new();
    for (j, dropin) in unit.dropins.iter().enumerate() {
        let field = format!("{at}.dropins[{j}].name");
        if !dropin.name.ends_with(".conf") || dropin.name.len() <= 5 || dropin.name.contains('/') {
            check.error(
                field,
                format!(
                    "drop-in {:?} must be a file name ending in .conf",
                    dropin.name
                ),
                "name it like \"50-site.conf\"; systemd ignores other drop-in files",
            );
        } else if dropin.name.contains("kiln") {
            check.error(
                field,
                format!(
                    "drop-in {:?} could replace one of kiln's (they are named *kiln*)",
                    dropin.name
                ),
                "name it without \"kiln\", like \"50-site.conf\"",
            );
        } else if is_kiln_drop_in(&unit.name, &dropin.name) {
            check.error(
                field,
                format!(
                    "{} has a drop-in {} on kiln's nodes already, which this one would replace",
                    unit.name, dropin.name
                ),
                "name it differently, like \"50-site.conf\": a later name overrides single \
                 settings and keeps kiln's drop-in",
            );
        } else if !names.insert(dropin.name.as_str()) {
            check.error(
                field,
                format!("drop-in {} is listed twice", dropin.name),
                "keep one entry per drop-in",
            );
        }
    }
}
