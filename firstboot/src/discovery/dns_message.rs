//! DNS messages as the minimal client needs them (RFC 1035 section 4): a
//! query for one question, and a reply read only as far as deciding
//! whether it answers that question and what its SRV and address records say.

use std::net::IpAddr;

use anyhow::{bail, ensure, Context, Result};

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;
/// Header flags (RFC 1035 4.1.1): QR (a response) and TC (truncated).
const FLAG_QR: u8 = 0x80;
const FLAG_TC: u8 = 0x02;

/// The one question of a query: a name, a type, class IN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub qtype: u16,
}

impl Question {
    /// The query message with `id`, recursion desired.
    pub fn encode(&self, id: u16) -> Result<Vec<u8>> {
        let mut msg = vec![0u8; 12];
        msg[0..2].copy_from_slice(&id.to_be_bytes());
        msg[2] = 0x01; // recursion desired
        msg[5] = 1; // one question
        encode_name(&mut msg, &self.name)?;
        msg.extend_from_slice(&self.qtype.to_be_bytes());
        msg.extend_from_slice(&CLASS_IN.to_be_bytes());
        Ok(msg)
    }
}

/// Appends `name` in wire form (labels, no compression).
pub fn encode_name(msg: &mut Vec<u8>, name: &str) -> Result<()> {
    let name = name.trim_end_matches('.');
    // 255 octets on the wire (RFC 1035 2.3.4): the labels, their lengths, the root.
    ensure!(name.len() <= 253, "DNS name {name:?} is too long");
    for label in name.split('.') {
        ensure!(
            !label.is_empty() && label.len() < 64,
            "bad DNS name {name:?}"
        );
        msg.push(label.len() as u8);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.push(0);
    Ok(())
}

/// The records of one answer the agent cares about.
#[derive(Debug, Default)]
pub struct Answer {
    /// (owner, target) of every SRV record.
    pub srv: Vec<(String, String)>,
    pub addresses: Vec<(String, IpAddr)>,
}

/// What a received message is to a query.
#[derive(Debug)]
pub enum Reply {
    /// It answers the question; its records.
    Answer(Answer),
    /// It answers the question but did not fit: ask again over TCP.
    Truncated,
    /// It is no answer to this query (why, for the debug log).
    Unrelated(String),
}

/// Reads `msg` as a reply to `question` sent with `id`. A reply counts
/// only if it answers the question asked: the same ID, the QR bit, and the
/// same question (name case-insensitively, RFC 4343; type; class). Errors
/// are for a reply that answers the question and says it failed.
pub fn read_reply(msg: &[u8], id: u16, question: &Question) -> Result<Reply> {
    let unrelated = |why: &str| Ok(Reply::Unrelated(why.to_owned()));
    if msg.len() < 12 {
        return unrelated("shorter than a DNS header");
    }
    if msg[0..2] != id.to_be_bytes() {
        return unrelated("another query's ID");
    }
    if msg[2] & FLAG_QR == 0 {
        return unrelated("a query, not a response");
    }
    if count(msg, 4) != 1 {
        return unrelated("not exactly one question");
    }
    let Ok((name, after)) = read_name(msg, 12) else {
        return unrelated("an unreadable question");
    };
    let Some(tail) = msg.get(after..after + 4) else {
        return unrelated("a truncated question");
    };
    let (qtype, qclass) = (
        u16::from_be_bytes([tail[0], tail[1]]),
        u16::from_be_bytes([tail[2], tail[3]]),
    );
    if !name.eq_ignore_ascii_case(question.name.trim_end_matches('.'))
        || qtype != question.qtype
        || qclass != CLASS_IN
    {
        return unrelated("another question");
    }
    if msg[2] & FLAG_TC != 0 {
        return Ok(Reply::Truncated);
    }
    let rcode = msg[3] & 0x0f;
    // 3 is NXDOMAIN: the name does not exist, an empty answer.
    ensure!(
        rcode == 0 || rcode == 3,
        "the server answered with error code {rcode}"
    );
    records(msg, after + 4).map(Reply::Answer)
}

fn count(msg: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([msg[at], msg[at + 1]]))
}

/// The SRV and address records of every section, from `pos` on.
fn records(msg: &[u8], mut pos: usize) -> Result<Answer> {
    let mut answer = Answer::default();
    for _ in 0..count(msg, 6) + count(msg, 8) + count(msg, 10) {
        let (owner, next) = read_name(msg, pos)?;
        let header = msg.get(next..next + 10).context("truncated record")?;
        let rtype = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[8], header[9]]));
        let start = next + 10;
        let data = msg
            .get(start..start + len)
            .context("truncated record data")?;
        match rtype {
            TYPE_SRV if len > 6 => answer.srv.push((owner, read_name(msg, start + 6)?.0)),
            TYPE_A if len == 4 => {
                let octets: [u8; 4] = data.try_into()?;
                answer.addresses.push((owner, IpAddr::from(octets)));
            }
            TYPE_AAAA if len == 16 => {
                let octets: [u8; 16] = data.try_into()?;
                answer.addresses.push((owner, IpAddr::from(octets)));
            }
            _ => {}
        }
        pos = start + len;
    }
    Ok(answer)
}

/// Reads a possibly compressed name; returns it and the position after it.
pub(super) fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut after = None;
    for _ in 0..128 {
        let len = *msg.get(pos).context("truncated name")?;
        match len {
            0 => return Ok((labels.join("."), after.unwrap_or(pos + 1))),
            l if l & 0xc0 == 0xc0 => {
                let low = *msg.get(pos + 1).context("truncated name pointer")?;
                after.get_or_insert(pos + 2);
                pos = (usize::from(l & 0x3f) << 8) | usize::from(low);
            }
            l => {
                let bytes = msg
                    .get(pos + 1..pos + 1 + usize::from(l))
                    .context("truncated label")?;
                labels.push(String::from_utf8_lossy(bytes).into_owned());
                pos += 1 + usize::from(l);
            }
        }
    }
    bail!("name compression loop")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv_question() -> Question {
        Question {
            name: "_s._tcp.x".into(),
            qtype: TYPE_SRV,
        }
    }

    /// Answer for _s._tcp.x: SRV 0 0 2380 a.x, additional a.x A 10.77.9.11.
    fn srv_answer() -> Vec<u8> {
        let mut msg = vec![0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 1];
        msg.extend_from_slice(b"\x02_s\x04_tcp\x01x\x00\x00\x21\x00\x01");
        msg.extend_from_slice(&[
            0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 60, 0, 10, 0, 0, 0, 0, 0x09, 0x4c,
        ]);
        msg.extend_from_slice(&[1, b'a', 0xc0, 20]);
        msg.extend_from_slice(&[
            1, b'a', 0xc0, 20, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 77, 9, 11,
        ]);
        msg
    }

    #[test]
    fn parses_srv_answer_with_compressed_target_and_glue() {
        let Reply::Answer(answer) = read_reply(&srv_answer(), 1, &srv_question()).unwrap() else {
            panic!("not read as the answer");
        };
        assert_eq!(answer.srv, vec![("_s._tcp.x".into(), "a.x".into())]);
        assert_eq!(
            answer.addresses,
            vec![("a.x".into(), "10.77.9.11".parse().unwrap())]
        );
    }

    #[test]
    fn only_a_response_to_the_question_asked_counts() {
        let q = srv_question();
        let unrelated = |msg: &[u8], q: &Question| {
            matches!(read_reply(msg, 1, q).unwrap(), Reply::Unrelated(_))
        };
        assert!(!unrelated(&srv_answer(), &q));
        assert!(unrelated(&srv_answer()[..11], &q), "short");
        let mut other_id = srv_answer();
        other_id[1] = 2;
        assert!(unrelated(&other_id, &q), "another ID");
        let mut not_response = srv_answer();
        not_response[2] &= !FLAG_QR;
        assert!(unrelated(&not_response, &q), "QR unset");
        let other_name = Question {
            name: "_t._tcp.x".into(),
            ..q.clone()
        };
        assert!(unrelated(&srv_answer(), &other_name), "another name");
        let other_type = Question {
            qtype: TYPE_A,
            ..q.clone()
        };
        assert!(unrelated(&srv_answer(), &other_type), "another type");
        let mut other_class = srv_answer();
        other_class[26] = 3; // CHAOS
        assert!(unrelated(&other_class, &q), "another class");
        let shouted = Question {
            name: "_S._TCP.X.".into(),
            ..q.clone()
        };
        assert!(
            !unrelated(&srv_answer(), &shouted),
            "names are case-insensitive"
        );
        let mut truncated = srv_answer();
        truncated[2] |= FLAG_TC;
        assert!(matches!(
            read_reply(&truncated, 1, &q).unwrap(),
            Reply::Truncated
        ));
        let mut failed = srv_answer();
        failed[3] = 0x82; // SERVFAIL
        let err = read_reply(&failed, 1, &q).unwrap_err().to_string();
        assert!(err.contains("error code 2"), "{err}");
    }

    #[test]
    fn encodes_the_question_it_reads_back() {
        let q = srv_question();
        let mut msg = q.encode(7).unwrap();
        msg[2] |= FLAG_QR;
        assert!(matches!(read_reply(&msg, 7, &q).unwrap(), Reply::Answer(_)));
        let long = Question {
            name: vec!["a".repeat(63); 4].join("."),
            qtype: TYPE_A,
        };
        assert!(long.encode(1).is_err(), "a name over 255 octets");
    }
}
