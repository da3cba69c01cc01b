//! Unit tests of the rootfs tarball: reproducibility, normalization of a
//! base, layering rules.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{chown, symlink, PermissionsExt};
use std::process::Command;

use kiln_node::node_config::Role;

use super::*;
use crate::layer::{Contents, RoleLayer, Unit};

/// `(path, type, mode, uid, gid, mtime, link target or contents)` of every
/// entry, in archive order.
type Listed = (String, EntryType, u32, u64, u64, u64, Vec<u8>);

fn list(tarball: &Path) -> Vec<Listed> {
    let gz = flate2::read::GzDecoder::new(fs::File::open(tarball).unwrap());
    let mut archive = tar::Archive::new(gz);
    let mut listed = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        assert_eq!(header.username_bytes(), Some(&b""[..]));
        assert_eq!(header.groupname_bytes(), Some(&b""[..]));
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if let Some(target) = entry.link_name().unwrap() {
            data = target.to_string_lossy().as_bytes().to_vec();
        }
        listed.push((
            entry
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_owned(),
            header.entry_type(),
            header.mode().unwrap(),
            header.uid().unwrap(),
            header.gid().unwrap(),
            header.mtime().unwrap(),
            data,
        ));
    }
    listed
}

fn find<'a>(listed: &'a [Listed], path: &str) -> &'a Listed {
    listed.iter().find(|e| e.0 == path).unwrap_or_else(|| {
        panic!(
            "{path} missing from {:?}",
            listed.iter().map(|e| &e.0).collect::<Vec<_>>()
        )
    })
}

fn sample_layer() -> RoleLayer {
    let mut layer = RoleLayer::new(Role::Master);
    layer.add_secret("/etc/kubernetes/pki/ca.key", b"key".to_vec());
    layer.add_dir(
        "/var/lib/app",
        Meta {
            mode: 0o750,
            uid: 1000,
            gid: 1000,
        },
    );
    layer.add_link("/etc/localtime", "/usr/share/zoneinfo/UTC");
    // Longer than ustar's 100-byte name field: GNU long-name entries.
    let long = format!("/opt/{}/file", "long-folder-name".repeat(8));
    layer.add_file(&long, Meta::root(0o644), Contents::Inline(b"deep".to_vec()));
    layer.add_link(format!("{long}.link"), &long);
    layer.add_unit(
        Unit {
            name: "a.service".into(),
            contents: Some(
                "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n".into(),
            ),
            dropins: vec![("10-x.conf".into(), "[Service]\n".into())],
        },
        true,
    );
    layer
}

#[test]
fn two_renders_are_byte_identical_and_fully_normalized() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one.tar.gz"), dir.path().join("two.tar.gz"));
    render_rootfs(&sample_layer(), None, 1_700_000_000, &one).unwrap();
    render_rootfs(&sample_layer(), None, 1_700_000_000, &two).unwrap();
    let bytes = fs::read(&one).unwrap();
    assert_eq!(bytes, fs::read(&two).unwrap());
    // gzip header: no file name flag, mtime 0.
    assert_eq!(bytes[3], 0);
    assert_eq!(&bytes[4..8], &[0, 0, 0, 0]);
    assert_eq!(
        fs::metadata(&one).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let listed = list(&one);
    let paths: Vec<&str> = listed.iter().map(|e| e.0.as_str()).collect();
    let mut sorted: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    sorted.sort();
    assert_eq!(
        paths,
        sorted
            .iter()
            .map(|p| p.to_str().unwrap())
            .collect::<Vec<_>>()
    );
    assert!(listed.iter().all(|e| e.5 == 1_700_000_000));

    assert_eq!(find(&listed, "etc").2, 0o755);
    assert_eq!(find(&listed, "etc/kubernetes/pki/ca.key").2, 0o600);
    let app = find(&listed, "var/lib/app");
    assert_eq!(
        (app.1, app.2, app.3, app.4),
        (EntryType::Directory, 0o750, 1000, 1000)
    );
    let unit = find(&listed, "etc/systemd/system/a.service");
    assert_eq!((unit.1, unit.2, unit.3), (EntryType::Regular, 0o644, 0));
    assert_eq!(
        find(&listed, "etc/systemd/system/a.service.d/10-x.conf").2,
        0o644
    );
    let wants = find(
        &listed,
        "etc/systemd/system/multi-user.target.wants/a.service",
    );
    let long = format!("opt/{}/file", "long-folder-name".repeat(8));
    assert_eq!(find(&listed, &long).6, b"deep");
    assert_eq!(
        find(&listed, &format!("{long}.link")).6,
        format!("/{long}").as_bytes()
    );
    assert_eq!(
        (wants.1, wants.6.as_slice()),
        (EntryType::Symlink, &b"/etc/systemd/system/a.service"[..])
    );
}

#[test]
fn a_base_folder_is_normalized_and_the_layer_replaces_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    fs::create_dir_all(base.join("etc/old.d")).unwrap();
    fs::set_permissions(base.join("etc"), fs::Permissions::from_mode(0o711)).unwrap();
    fs::write(base.join("etc/old.d/x"), "gone").unwrap();
    fs::write(base.join("etc/localtime"), "replaced").unwrap();
    fs::write(base.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    fs::set_permissions(base.join("etc/hosts"), fs::Permissions::from_mode(0o640)).unwrap();
    chown(base.join("etc/hosts"), Some(7), Some(8)).unwrap();
    fs::hard_link(base.join("etc/hosts"), base.join("etc/hosts.hard")).unwrap();
    symlink("hosts", base.join("etc/hosts.link")).unwrap();
    fs::create_dir(base.join("dev")).unwrap();
    let made = |args: &[&str]| {
        assert!(Command::new(args[0])
            .args(&args[1..])
            .status()
            .unwrap()
            .success())
    };
    made(&[
        "mknod",
        base.join("dev/null").to_str().unwrap(),
        "c",
        "1",
        "3",
    ]);
    made(&["mkfifo", base.join("dev/pipe").to_str().unwrap()]);

    let mut layer = sample_layer();
    layer.add_file(
        "/etc/old.d",
        Meta::root(0o644),
        Contents::Inline(b"now a file".to_vec()),
    );
    let out = dir.path().join("out.tar.gz");
    render_rootfs(&layer, Some(&base), 42, &out).unwrap();
    let listed = list(&out);
    assert!(listed.iter().all(|e| e.5 == 42));

    // An implied parent keeps the base's directory as it is.
    assert_eq!(find(&listed, "etc").2, 0o711);
    let hosts = find(&listed, "etc/hosts");
    assert_eq!((hosts.2, hosts.3, hosts.4), (0o640, 7, 8));
    let hard = find(&listed, "etc/hosts.hard");
    assert_eq!(
        (hard.1, hard.6.as_slice()),
        (EntryType::Regular, &b"127.0.0.1 localhost\n"[..])
    );
    assert_eq!(find(&listed, "etc/hosts.link").6, b"hosts");
    assert_eq!(find(&listed, "etc/localtime").1, EntryType::Symlink);
    assert_eq!(find(&listed, "etc/old.d").6, b"now a file");
    assert!(listed.iter().all(|e| e.0 != "etc/old.d/x"));
    assert_eq!(find(&listed, "dev/null").1, EntryType::Char);
    assert_eq!(find(&listed, "dev/pipe").1, EntryType::Fifo);
    let gz = flate2::read::GzDecoder::new(fs::File::open(&out).unwrap());
    let mut archive = tar::Archive::new(gz);
    let null = archive
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path().unwrap().ends_with("dev/null"))
        .unwrap();
    let h = null.header();
    assert_eq!(
        (h.device_major().unwrap(), h.device_minor().unwrap()),
        (Some(1), Some(3))
    );
}

#[test]
fn a_rendered_tarball_used_as_base_renders_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.tar.gz");
    render_rootfs(&sample_layer(), None, 7, &first).unwrap();
    let again = dir.path().join("again.tar.gz");
    render_rootfs(&RoleLayer::new(Role::Master), Some(&first), 7, &again).unwrap();
    assert_eq!(fs::read(&first).unwrap(), fs::read(&again).unwrap());
    // The same over a plain tar base, with the layer laid over it once more.
    let plain = dir.path().join("first.tar");
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(fs::File::open(&first).unwrap())
        .read_to_end(&mut decoded)
        .unwrap();
    fs::write(&plain, decoded).unwrap();
    render_rootfs(&sample_layer(), Some(&plain), 7, &again).unwrap();
    assert_eq!(fs::read(&first).unwrap(), fs::read(&again).unwrap());
}

#[test]
fn a_layer_path_through_a_base_symlink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    fs::create_dir_all(base.join("usr/lib")).unwrap();
    symlink("usr/lib", base.join("lib")).unwrap();
    let mut layer = RoleLayer::new(Role::Worker);
    layer.add_file("/lib/x", Meta::root(0o644), Contents::Inline(vec![]));
    let err = render_rootfs(&layer, Some(&base), 0, &dir.path().join("o.tar.gz")).unwrap_err();
    assert!(matches!(err, RenderError::Layer { .. }), "{err:?}");
    let err = err.to_string();
    assert!(
        err.contains("/lib") && err.contains("symbolic link"),
        "{err}"
    );
    let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "only the base is left, no temporary file");
}

#[test]
fn kept_deflate_data_changes_no_byte_and_never_holds_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = |seed: u32| -> Vec<u8> {
        (0..40_000u32)
            .flat_map(|i| format!("{} ", i.wrapping_mul(seed) % 1009).into_bytes())
            .collect()
    };
    let (public, key) = (text(7919), text(104_729));
    let mut layer = RoleLayer::new(Role::Etcd);
    layer.add_file(
        "/usr/share/big",
        Meta::root(0o644),
        Contents::Inline(public.clone()),
    );
    layer.add_secret("/etc/kiln/pki/big.key", key);
    let cache = DeflateCache::open(dir.path(), "test").unwrap();
    let mut kept = Vec::new();
    write_rootfs(&layer, None, 7, Some(&cache), &mut kept).unwrap();
    let mut plain = Vec::new();
    write_rootfs(&layer, None, 7, None, &mut plain).unwrap();
    assert_eq!(kept, plain);
    let entries: Vec<_> = fs::read_dir(dir.path().join("deflate/e1-test"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let digest = kiln_node::hex::hex(&<sha2::Sha256 as sha2::Digest>::digest(&public));
    assert_eq!(entries, [digest], "the public file only, by its SHA-256");
}
