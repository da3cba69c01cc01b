//! Waits until every etcd endpoint given answers `/health` true in one
//! round, asking over kept-alive connections a few milliseconds apart:
//! benchmarks time up to this answer, so it must come soon after the
//! cluster is healthy and cost etcd little.
//!
//! `etcd-health-probe CA CERT KEY WITHIN_MS URL...`; exits 0 once all are
//! healthy, 1 with the last answers when `WITHIN_MS` has passed.

use std::path::Path;
use std::time::{Duration, Instant};

use kiln_node::etcd::client::EtcdClient;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ca, cert, key, within, urls @ ..] = args.as_slice() else {
        eprintln!("usage: etcd-health-probe CA CERT KEY WITHIN_MS URL...");
        std::process::exit(2);
    };
    let client = EtcdClient::new(Path::new(ca), Path::new(cert), Path::new(key))
        .unwrap_or_else(|e| panic!("loading the client certificate: {e:#}"));
    let within = Duration::from_millis(within.parse().expect("WITHIN_MS is a number"));
    let start = Instant::now();
    loop {
        let answers: Vec<_> = urls.iter().map(|url| (url, client.healthy(url))).collect();
        if answers.iter().all(|(_, a)| matches!(a, Ok(true))) {
            return;
        }
        if start.elapsed() >= within {
            for (url, answer) in answers {
                eprintln!("{url}: {answer:?}");
            }
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
