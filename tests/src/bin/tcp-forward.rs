//! A TCP load balancer for tests: listens on ADDR and hands each connection
//! to the next target of TARGETS that accepts one. TARGETS is a file of
//! `ip:port` lines read again for every connection, the way a cloud load
//! balancer's target group follows its autoscaling group.
//!
//! `tcp-forward ADDR TARGETS`; runs until killed.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, targets] = args.as_slice() else {
        eprintln!("usage: tcp-forward ADDR TARGETS");
        std::process::exit(2);
    };
    let listener =
        TcpListener::bind(listen).unwrap_or_else(|e| panic!("listening on {listen}: {e}"));
    for (turn, client) in listener.incoming().filter_map(Result::ok).enumerate() {
        let listed: Vec<SocketAddr> = std::fs::read_to_string(targets)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect();
        let upstream = (0..listed.len()).find_map(|i| {
            let target = listed[(turn + i) % listed.len()];
            TcpStream::connect_timeout(&target, Duration::from_millis(500)).ok()
        });
        // No live target: the client sees its connection closed.
        if let Some(upstream) = upstream {
            relay(client, upstream);
        }
    }
}

/// Copies bytes both ways on two threads until each side closes.
fn relay(client: TcpStream, upstream: TcpStream) {
    for (from, to) in [(&client, &upstream), (&upstream, &client)] {
        let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
            return;
        };
        std::thread::spawn(move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.flush();
            let _ = to.shutdown(Shutdown::Write);
        });
    }
}
