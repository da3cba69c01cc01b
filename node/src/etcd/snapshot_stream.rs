//! The JSON gateway's snapshot stream: one `{"result":{"blob":"<base64>"}}`
//! line per chunk etcd sends, read one bounded line at a time, so a server
//! that never ends a line costs a fixed amount of memory, not all of it.

use std::io::{BufRead, Read, Write};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

/// etcd sends the snapshot in chunks of 32 KiB (`snapshotSendBufferSize`,
/// server/etcdserver/api/v3rpc/maintenance.go), about 44 KiB per line as
/// base64 in JSON. A line of 4 MiB is a hundred such chunks: no etcd sends
/// it, and reading it costs a few MiB at most.
pub const MAX_STREAM_LINE: u64 = 4 << 20;

#[derive(Deserialize)]
struct StreamMessage {
    result: Option<StreamChunk>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct StreamChunk {
    #[serde(default)]
    blob: String,
}

/// Decodes every line of `stream` into `out`; `progress` gets the bytes
/// written so far. Fails on a line over [`MAX_STREAM_LINE`], on a line that
/// is not a chunk, and when etcd aborts the snapshot.
pub fn copy_chunks(
    stream: &mut impl BufRead,
    out: &mut impl Write,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    let mut received = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = stream
            .take(MAX_STREAM_LINE + 1)
            .read_until(b'\n', &mut line)
            .context("reading the snapshot stream")?;
        if read == 0 {
            return Ok(received);
        }
        if line.len() as u64 > MAX_STREAM_LINE {
            bail!(
                "a line of the snapshot stream is longer than {} MiB, the cap on one chunk \
                 (etcd sends 32 KiB chunks): this is not an etcd gateway, or a broken one",
                MAX_STREAM_LINE >> 20
            );
        }
        let text = std::str::from_utf8(&line).context("a line of the stream is not UTF-8")?;
        if text.trim().is_empty() {
            continue;
        }
        let blob = blob_of(text)?;
        out.write_all(&blob).context("writing a snapshot chunk")?;
        received += blob.len() as u64;
        progress(received);
    }
}

/// One `{"result":{"blob":"<base64>"}}` line of the stream, decoded.
fn blob_of(line: &str) -> Result<Vec<u8>> {
    let message: StreamMessage =
        serde_json::from_str(line).context("a line of the stream is not JSON")?;
    match (message.result, message.error) {
        (_, Some(error)) => bail!("etcd aborted the snapshot: {error}"),
        (Some(chunk), None) => base64::engine::general_purpose::STANDARD
            .decode(chunk.blob)
            .context("a snapshot chunk is not base64"),
        (None, None) => bail!("a line has neither result nor error"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::BufReader;

    use super::*;

    #[test]
    fn stream_lines_decode_and_errors_stop() {
        assert_eq!(blob_of(r#"{"result":{"blob":"AAEC"}}"#).unwrap(), [0, 1, 2]);
        assert!(blob_of(r#"{"error":{"message":"no leader"}}"#).is_err());
        assert!(blob_of("not json").is_err());
    }

    #[test]
    fn chunks_are_copied_in_order() {
        let stream = "{\"result\":{\"blob\":\"AAEC\"}}\n\n{\"result\":{\"blob\":\"Aw==\"}}";
        let (mut out, mut seen) = (Vec::new(), Vec::new());
        let total = copy_chunks(&mut stream.as_bytes(), &mut out, &mut |n| seen.push(n)).unwrap();
        assert_eq!((out, total, seen), (vec![0, 1, 2, 3], 4, vec![3, 4]));
    }

    #[test]
    fn a_line_that_never_ends_fails_at_the_cap() {
        // An endless stream without a newline: the old `lines()` grew
        // its buffer until the machine ran out.
        let mut endless = BufReader::new(std::io::repeat(b'A'));
        let err = copy_chunks(&mut endless, &mut std::io::sink(), &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("longer than 4 MiB"), "{err:#}");
        // A line at the cap, newline included, is still read.
        let mut at_cap = vec![b' '; MAX_STREAM_LINE as usize - 1];
        at_cap.push(b'\n');
        assert_eq!(
            copy_chunks(&mut at_cap.as_slice(), &mut Vec::new(), &mut |_| {}).unwrap(),
            0
        );
    }
}
