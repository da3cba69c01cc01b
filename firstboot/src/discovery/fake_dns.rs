//! A DNS server on loopback for the client's tests: it answers each query
//! as the test says, over UDP and (on the same port) TCP, honest or hostile.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::dns_message::{encode_name, read_name, TYPE_A, TYPE_SRV};

/// A record of a reply the test builds.
pub enum Rec<'a> {
    Srv(&'a str, &'a str),
    A(&'a str, Ipv4Addr),
}

/// The question of a query: (name, type).
pub fn question(query: &[u8]) -> (String, u16) {
    let (name, after) = read_name(query, 12).unwrap();
    (name, u16::from_be_bytes([query[after], query[after + 1]]))
}

/// A reply to `query` (its ID and question) with the extra header `flags`
/// (0x02: TC), response code `rcode` and `records` in the answer section.
pub fn reply(query: &[u8], flags: u8, rcode: u8, records: &[Rec]) -> Vec<u8> {
    let (_, after) = read_name(query, 12).unwrap();
    let mut msg = query[..after + 4].to_vec();
    msg[2] = 0x81 | flags;
    msg[3] = 0x80 | rcode;
    msg[6..8].copy_from_slice(&u16::try_from(records.len()).unwrap().to_be_bytes());
    for record in records {
        let (owner, rtype, data) = match record {
            Rec::Srv(owner, target) => {
                let mut data = vec![0, 0, 0, 0, 0x09, 0x4c];
                encode_name(&mut data, target).unwrap();
                (owner, TYPE_SRV, data)
            }
            Rec::A(owner, ip) => (owner, TYPE_A, ip.octets().to_vec()),
        };
        encode_name(&mut msg, owner).unwrap();
        msg.extend_from_slice(&rtype.to_be_bytes());
        msg.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        msg.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
        msg.extend_from_slice(&data);
    }
    msg
}

/// What the server does with one query over UDP: the datagrams it sends
/// back, each after its pause.
pub type Respond = dyn Fn(&[u8]) -> Vec<(Duration, Vec<u8>)> + Send + Sync;

/// The server: its UDP side stops when dropped, its TCP side (blocked in
/// accept) with the test process.
pub struct FakeDns {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl FakeDns {
    /// Serves UDP with `udp`, and TCP on the same port with `tcp` (the one
    /// reply per connection) when given.
    pub fn start(udp: Box<Respond>, tcp: Option<Box<Respond>>) -> FakeDns {
        let (socket, listener) = loop {
            let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            // The same port for TCP, as a DNS server has it.
            match TcpListener::bind(socket.local_addr().unwrap()) {
                Ok(listener) => break (socket, listener),
                Err(_) => continue,
            }
        };
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let stopped = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                for (pause, datagram) in udp(&buf[..n]) {
                    std::thread::sleep(pause);
                    if stopped.load(Ordering::Relaxed) {
                        break;
                    }
                    let _ = socket.send_to(&datagram, peer);
                }
            }
        });
        if let Some(tcp) = tcp {
            std::thread::spawn(move || {
                for mut stream in listener.incoming().flatten() {
                    let mut len = [0u8; 2];
                    if stream.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if stream.read_exact(&mut query).is_err() {
                        continue;
                    }
                    for (pause, bytes) in tcp(&query) {
                        std::thread::sleep(pause);
                        let _ = stream.write_all(&bytes);
                    }
                }
            });
        }
        FakeDns { addr, stop }
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
