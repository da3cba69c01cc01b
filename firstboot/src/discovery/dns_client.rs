//! One DNS question asked of one server within a deadline that no traffic
//! can extend: over UDP, and once more over TCP when the UDP answer was
//! truncated (RFC 1035 4.2, RFC 7766). Replies that do not answer the
//! question are ignored, not trusted.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::dns_message::{read_reply, Answer, Question, Reply};

/// UDP answers without EDNS are at most 512 octets (RFC 1035 4.2.1); a
/// larger buffer costs nothing and takes what a server sends anyway.
const UDP_BUFFER: usize = 4096;

/// Asks `server` the `question`; gives up at `deadline`, however much the
/// server (or anyone spoofing it) sends in between.
pub fn query(server: SocketAddr, question: &Question, deadline: Instant) -> Result<Answer> {
    let ask = Ask {
        server,
        question,
        id: fastrand::u16(..),
        deadline,
        budget: deadline.saturating_duration_since(Instant::now()),
    };
    let msg = question.encode(ask.id)?;
    match ask.over_udp(&msg)? {
        Some(answer) => Ok(answer),
        None => {
            tracing::debug!(%server, name = %question.name, "the answer was truncated; asking again over TCP");
            ask.over_tcp(&msg)
        }
    }
}

struct Ask<'a> {
    server: SocketAddr,
    question: &'a Question,
    id: u16,
    deadline: Instant,
    budget: Duration,
}

impl Ask<'_> {
    /// The time left, or the error that says the deadline passed.
    fn left(&self, ignored: Option<&str>) -> Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            return Ok(left);
        }
        let why = ignored.map_or(String::new(), |why| {
            format!("; replies that did not answer the question were ignored (the last: {why})")
        });
        let err = anyhow!(
            "DNS server {} did not answer {} (type {}) within {:.1}s{why}",
            self.server,
            self.question.name,
            self.question.qtype,
            self.budget.as_secs_f64()
        );
        tracing::debug!("{err}");
        Err(err)
    }

    /// The answer over UDP; `None` when it was truncated.
    fn over_udp(&self, msg: &[u8]) -> Result<Option<Answer>> {
        // A lookup whose time is up asks nothing more.
        self.left(None)?;
        let bind: SocketAddr = match self.server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(bind).context("opening a UDP socket for DNS")?;
        // Connected: the kernel drops datagrams from any other address.
        socket
            .connect(self.server)
            .with_context(|| format!("reaching DNS server {}", self.server))?;
        socket
            .send(msg)
            .with_context(|| format!("querying {} for {}", self.server, self.question.name))?;
        let mut buf = [0u8; UDP_BUFFER];
        let mut ignored: Option<String> = None;
        loop {
            // Each wait is what is left of the query's, never a fresh timeout.
            socket.set_read_timeout(Some(self.left(ignored.as_deref())?))?;
            let n = match socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if is_timeout(&e) => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "waiting for {} to answer about {}",
                            self.server, self.question.name
                        )
                    })
                }
            };
            match self.read(&buf[..n])? {
                Reply::Answer(answer) => return Ok(Some(answer)),
                Reply::Truncated => return Ok(None),
                Reply::Unrelated(why) => {
                    tracing::debug!(server = %self.server, name = %self.question.name, "ignoring a reply: {why}");
                    ignored = Some(why);
                }
            }
        }
    }

    /// The answer over TCP: a 2-octet length, then the message (RFC 1035
    /// 4.2.2), so no reply is larger than 65535 octets.
    fn over_tcp(&self, msg: &[u8]) -> Result<Answer> {
        let context = || {
            format!(
                "asking {} about {} over TCP",
                self.server, self.question.name
            )
        };
        let mut stream =
            TcpStream::connect_timeout(&self.server, self.left(None)?).with_context(context)?;
        let mut framed = u16::try_from(msg.len())?.to_be_bytes().to_vec();
        framed.extend_from_slice(msg);
        stream.set_write_timeout(Some(self.left(None)?))?;
        stream.write_all(&framed).with_context(context)?;
        let mut len = [0u8; 2];
        self.read_all(&mut stream, &mut len).with_context(context)?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        self.read_all(&mut stream, &mut reply)
            .with_context(context)?;
        match self.read(&reply)? {
            Reply::Answer(answer) => Ok(answer),
            Reply::Truncated => bail!("{} truncated its answer over TCP too", self.server),
            Reply::Unrelated(why) => bail!(
                "{}'s answer over TCP does not answer the question about {} ({why})",
                self.server,
                self.question.name
            ),
        }
    }

    /// Fills `buf` from `stream` by the deadline: a server that trickles
    /// one octet at a time gains nothing.
    fn read_all(&self, stream: &mut TcpStream, buf: &mut [u8]) -> Result<()> {
        let mut filled = 0;
        while filled < buf.len() {
            stream.set_read_timeout(Some(self.left(None)?))?;
            match stream.read(&mut buf[filled..]) {
                Ok(0) => bail!("the connection closed in the middle of the answer"),
                Ok(n) => filled += n,
                Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn read(&self, msg: &[u8]) -> Result<Reply> {
        read_reply(msg, self.id, self.question).with_context(|| {
            format!(
                "reading {}'s answer about {}",
                self.server, self.question.name
            )
        })
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::super::dns_message::TYPE_A;
    use super::super::fake_dns::{reply, FakeDns, Rec};
    use super::*;

    fn a_question() -> Question {
        Question {
            name: "etcd1.kiln.test".into(),
            qtype: TYPE_A,
        }
    }

    const NOW: Duration = Duration::ZERO;
    const IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 11);

    #[test]
    fn a_flood_of_wrong_id_replies_cannot_hold_a_query_past_its_deadline() {
        // One wrong-ID reply every 100 ms for 10 s: each would have reset a
        // per-receive timeout.
        let dns = FakeDns::start(
            Box::new(|query| {
                let mut wrong = reply(query, 0, 0, &[Rec::A("etcd1.kiln.test", IP)]);
                wrong[1] ^= 0xff;
                vec![(Duration::from_millis(100), wrong); 100]
            }),
            None,
        );
        let start = Instant::now();
        let deadline = start + Duration::from_millis(700);
        let err = query(dns.addr, &a_question(), deadline).unwrap_err();
        let took = start.elapsed();
        assert!(took < Duration::from_millis(1200), "{took:?}");
        let text = format!("{err:#}");
        assert!(
            text.contains("did not answer etcd1.kiln.test (type 1) within 0.7s")
                && text.contains("another query's ID"),
            "{text}"
        );
    }

    #[test]
    fn replies_to_another_question_are_ignored_and_the_answer_taken() {
        let dns = FakeDns::start(
            Box::new(|query| {
                let id = u16::from_be_bytes([query[0], query[1]]);
                let spoof = Question {
                    name: "evil.kiln.test".into(),
                    qtype: TYPE_A,
                };
                let evil = Ipv4Addr::new(10, 66, 6, 6);
                let other = reply(
                    &spoof.encode(id).unwrap(),
                    0,
                    0,
                    &[Rec::A("evil.kiln.test", evil)],
                );
                let mut not_a_response = reply(query, 0, 0, &[Rec::A("etcd1.kiln.test", evil)]);
                not_a_response[2] &= 0x7f;
                let honest = reply(query, 0, 0, &[Rec::A("etcd1.kiln.test", IP)]);
                vec![(NOW, other), (NOW, not_a_response), (NOW, honest)]
            }),
            None,
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        let answer = query(dns.addr, &a_question(), deadline).unwrap();
        assert_eq!(
            answer.addresses,
            vec![("etcd1.kiln.test".into(), std::net::IpAddr::from(IP))]
        );
    }

    #[test]
    fn a_truncated_answer_is_asked_again_over_tcp() {
        let framed = |msg: Vec<u8>| {
            let mut out = u16::try_from(msg.len()).unwrap().to_be_bytes().to_vec();
            out.extend(msg);
            out
        };
        let dns = FakeDns::start(
            Box::new(|query| vec![(NOW, reply(query, 0x02, 0, &[]))]),
            Some(Box::new(move |query| {
                vec![(
                    NOW,
                    framed(reply(query, 0, 0, &[Rec::A("etcd1.kiln.test", IP)])),
                )]
            })),
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        let answer = query(dns.addr, &a_question(), deadline).unwrap();
        assert_eq!(answer.addresses.len(), 1);
    }

    #[test]
    fn a_trickling_tcp_answer_is_held_to_the_same_deadline() {
        let dns = FakeDns::start(
            Box::new(|query| vec![(NOW, reply(query, 0x02, 0, &[]))]),
            // A length of 65535, then one octet every 100 ms.
            Some(Box::new(|_| {
                let trickle = vec![(Duration::from_millis(100), vec![0]); 100];
                std::iter::once((NOW, vec![0xff, 0xff]))
                    .chain(trickle)
                    .collect()
            })),
        );
        let start = Instant::now();
        let err = query(dns.addr, &a_question(), start + Duration::from_millis(600)).unwrap_err();
        assert!(start.elapsed() < Duration::from_millis(1100));
        assert!(format!("{err:#}").contains("within 0.6s"), "{err:#}");
    }
}
