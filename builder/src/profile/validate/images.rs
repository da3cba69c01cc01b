//! Checks of the [images] section: output formats, the agent download, and
//! each role's base image, packages, extra files and units.

use std::collections::HashSet;
use std::path::Component;

use super::Checker;
use crate::profile::model::{
    AgentSource, BaseImage, ExtraFile, ExtraUnit, ImagesSection, RoleImage,
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

pub fn check(images: &ImagesSection, check: &mut Checker<'_>) {
    if images.formats.is_empty() {
        check.error(
            "images.formats",
            "no output format: the build would produce nothing",
            "write formats = [\"ignition\", \"rootfs\"] (or one of them)",
        );
    }
    for (j, format) in images.formats.iter().enumerate() {
        if images.formats[..j].contains(format) {
            check.error(
                format!("images.formats[{j}]"),
                "output format listed twice",
                "list each format once",
            );
        }
    }
    if let Some(agent) = &images.agent {
        check_agent(agent, check);
    }
    check_disk_base(images, check);
    for (role, image) in [
        ("etcd", &images.etcd),
        ("master", &images.master),
        ("worker", &images.worker),
    ] {
        check_role(&format!("images.{role}"), image, check);
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
                "write base = \"debian\" in [images] (kiln builds and caches a Debian bookworm base), \
                 or drop \"raw\"/\"qcow2\" from formats",
            );
            return;
        }
    }
}

fn check_agent(agent: &AgentSource, check: &mut Checker<'_>) {
    let host = agent
        .url
        .strip_prefix("https://")
        .or_else(|| agent.url.strip_prefix("http://"))
        .and_then(|rest| rest.split('/').next());
    if host.is_none_or(str::is_empty) || agent.url.contains(char::is_whitespace) {
        check.error(
            "images.agent.url",
            format!("{:?} is not an http(s) URL", agent.url),
            "write where nodes download kiln-firstboot, like \"https://downloads.example/kiln-firstboot\"",
        );
    }
    if agent.sha512.len() != 128 || !agent.sha512.chars().all(|c| c.is_ascii_hexdigit()) {
        check.error(
            "images.agent.sha512",
            format!(
                "sha512 must be 128 hex digits, got {} characters",
                agent.sha512.len()
            ),
            "compute it with `sha512sum kiln-firstboot` and paste the first column",
        );
    }
}

fn check_role(field: &str, image: &RoleImage, check: &mut Checker<'_>) {
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
        check_file(&at, file, check);
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
        check_unit(&at, unit, check);
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

fn check_file(at: &str, file: &ExtraFile, check: &mut Checker<'_>) {
    let path = std::path::Path::new(&file.path);
    let normal = path
        .components()
        .skip(1)
        .all(|c| matches!(c, Component::Normal(_)));
    if !path.is_absolute() || !normal || file.path == "/" || file.path.ends_with('/') {
        check.error(
            format!("{at}.path"),
            format!("{:?} is not an absolute file path", file.path),
            "write the file's full path on the node without '..', like \"/etc/motd\"",
        );
    }
    match (&file.contents.inline, &file.contents.local) {
        (Some(_), Some(_)) => check.error(
            format!("{at}.contents"),
            "both inline and local are set",
            "keep one: inline = \"text\" or local = \"files/name\"",
        ),
        (None, None) => check.error(
            format!("{at}.contents"),
            "neither inline nor local is set",
            "write contents = { inline = \"text\" } or contents = { local = \"files/name\" }",
        ),
        (None, Some(local)) => {
            let resolved = check.base_dir.join(local);
            if !resolved.is_file() {
                check.error(
                    format!("{at}.contents.local"),
                    format!("local file {} does not exist", resolved.display()),
                    format!(
                        "local paths are relative to the profile's folder {}",
                        check.base_dir.display()
                    ),
                );
            }
        }
        (Some(_), None) => {}
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

fn check_unit(at: &str, unit: &ExtraUnit, check: &mut Checker<'_>) {
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
                "name it like \"10-kiln.conf\"; systemd ignores other drop-in files",
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
