//! Where the etcd image's etcd comes from (`images.etcd`): an upstream
//! release tarball served by a loopback HTTP server, downloaded once,
//! verified and cached; a wrong digest refused with nothing left behind;
//! an etcd older than kubeadm's minimum refused at build time.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use kiln_e2e::artifacts::layer_build;
use kiln_e2e::etcd::Release;
use kiln_e2e::{profile, run_ok};
use sha2::{Digest, Sha256};

/// A loopback HTTP server that serves one file for every GET, counting them.
struct Server {
    url: String,
    served: Arc<AtomicUsize>,
}

impl Server {
    fn start(body: Vec<u8>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/etcd-v3.5.30-linux-amd64.tar.gz",
            listener.local_addr().unwrap()
        );
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        // Detached: it ends with the test process, and answers only loopback.
        std::thread::spawn(move || {
            for stream in listener.incoming().take(16).flatten() {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                count.fetch_add(1, Ordering::SeqCst);
                let mut stream = &stream;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        Server { url, served }
    }
}

/// An upstream-style release tarball of the primary etcd's executables.
fn release_tarball(dir: &Path) -> Vec<u8> {
    let top = dir.join("etcd-v3.5.30-linux-amd64");
    fs::create_dir_all(&top).unwrap();
    for name in ["etcd", "etcdctl", "etcdutl"] {
        fs::copy(Release::Primary.tool(name), top.join(name)).unwrap();
    }
    fs::write(top.join("README.md"), "etcd\n").unwrap();
    let tarball = dir.join("release.tar.gz");
    run_ok(
        std::process::Command::new("tar")
            .arg("-czf")
            .arg(&tarball)
            .arg("-C")
            .arg(dir)
            .arg("etcd-v3.5.30-linux-amd64"),
    );
    fs::read(tarball).unwrap()
}

/// profiles/example.toml with its `[images.etcd]` table replaced by `etcd`.
fn example_with(dir: &Path, etcd: &str) -> PathBuf {
    let text = fs::read_to_string(profile("example.toml")).unwrap();
    let start = 1 + text
        .find("\n[images.etcd]")
        .expect("example has [images.etcd]");
    let rest = &text[start..];
    let end = rest.find("\n\n").map_or(text.len(), |i| start + i);
    let path = dir.join("profile.toml");
    fs::write(&path, format!("{}{etcd}{}", &text[..start], &text[end..])).unwrap();
    path
}

fn build(profile: &Path, out: &Path, cache: &Path) -> Output {
    let secrets = out.with_extension("secrets");
    layer_build(
        profile,
        out,
        &secrets,
        &["--cache".as_ref(), cache.as_os_str()],
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Names under the cache's etcd folder, but for its lock file.
fn cached(cache: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(cache.join("etcd"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != ".lock")
        .collect();
    names.sort();
    names
}

#[test]
fn release_tarball_is_verified_cached_and_its_version_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let body = release_tarball(dir.path());
    let sha256 = kiln_node::hex::hex(&Sha256::digest(&body));
    let server = Server::start(body);
    let cache = dir.path().join("cache");
    let profile = example_with(
        dir.path(),
        &format!(
            "[images.etcd]\nrelease = {{ url = \"{}\", sha256 = \"{sha256}\" }}",
            server.url
        ),
    );

    let out = dir.path().join("out");
    let first = build(&profile, &out, &cache);
    assert!(first.status.success(), "{}", stderr(&first));
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["roles"]["etcd"]["etcd_version"], "3.5.30");
    assert_eq!(cached(&cache), [format!("release-{sha256}")]);
    for name in ["etcd", "etcdctl", "etcdutl"] {
        let got = fs::read(cache.join(format!("etcd/release-{sha256}/{name}"))).unwrap();
        assert_eq!(
            got,
            fs::read(Release::Primary.tool(name)).unwrap(),
            "{name}"
        );
    }
    assert_eq!(server.served.load(Ordering::SeqCst), 1);

    // Downloaded once: a rebuild takes it from the cache.
    let again = build(&profile, &dir.path().join("again"), &cache);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(server.served.load(Ordering::SeqCst), 1);
}

#[test]
fn release_with_a_wrong_digest_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(release_tarball(dir.path()));
    let cache = dir.path().join("cache");
    let wrong = "0".repeat(64);
    let profile = example_with(
        dir.path(),
        &format!(
            "[images.etcd]\nrelease = {{ url = \"{}\", sha256 = \"{wrong}\" }}",
            server.url
        ),
    );
    let out = dir.path().join("out");
    let refused = build(&profile, &out, &cache);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let said = stderr(&refused);
    assert!(
        said.contains("images.etcd.release.sha256") && said.contains("refusing it"),
        "{said}"
    );
    assert_eq!(server.served.load(Ordering::SeqCst), 1);
    assert!(
        cached(&cache).is_empty(),
        "left behind: {:?}",
        cached(&cache)
    );
    let left: Vec<_> = fs::read_dir(&out)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "output left behind: {left:?}");
}

#[test]
fn external_etcd_older_than_kubeadms_minimum_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let profile = example_with(
        dir.path(),
        &format!(
            "[images.etcd]\nbinaries = \"{}\"",
            Release::Previous.bin_dir().display()
        ),
    );
    let out = dir.path().join("out");
    let refused = build(&profile, &out, &dir.path().join("cache"));
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let said = stderr(&refused);
    assert!(
        said.contains("images.etcd.binaries")
            && said.contains("etcd 3.4.23")
            && said.contains("older than 3.5.24")
            && said.contains("ExternalEtcdVersion"),
        "{said}"
    );
    assert!(!out.join("manifest.json").exists());
}
