//! gzip that uses every core and compresses each large input once.
//!
//! Data is cut into fixed 256 KiB chunks, each deflated on its own (in
//! parallel) and ended byte-aligned with a sync flush, as pigz does: the
//! result is one gzip member that every gzip reader takes, and its bytes
//! depend only on the input, never on the number of threads. A large input
//! seen before in this process (the agent, which every role's config and
//! tarball carry) is compressed once and its deflate data spliced in.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use kiln_node::hex::hex;
use sha2::{Digest, Sha256};

pub use super::deflate_cache::DeflateCache;

/// Chunks are deflated independently: large enough to cost little in ratio
/// (each starts without the previous 32 KiB of history), small enough that
/// the agent's 3 MiB spread evenly over the cores.
const CHUNK: usize = 256 << 10;
/// A stream is compressed in batches of this many chunks per core.
const BATCH: usize = 8;
/// Inputs this large are remembered and compressed once.
pub(crate) const MEMO_MIN: usize = 16 << 10;
/// An empty final block with fixed codes: ends a stream of sync-flushed chunks.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];
/// gzip header: deflate, no name, mtime 0, no extra flags, OS unknown (255).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// Raw deflate data of some bytes, not final, with their CRC-32 and length.
pub struct Deflated {
    data: Vec<u8>,
    crc: Crc,
}

/// The fast level: higher levels cost the layer build more time than the
/// bytes they save are worth (measured in BENCHMARKS.md, "Measurements
/// behind code choices").
const LEVEL: Compression = Compression::fast();

/// The cores to spread chunks over, asked once.
fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Deflates one chunk, ending with a sync flush.
fn deflate_chunk(chunk: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(LEVEL, false);
    let mut out = Vec::with_capacity(chunk.len() / 2 + 64);
    loop {
        let consumed = usize::try_from(compress.total_in()).unwrap_or(usize::MAX);
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        let status = compress
            .compress_vec(&chunk[consumed..], &mut out, FlushCompress::Sync)
            .expect("deflate into memory cannot fail");
        let done = usize::try_from(compress.total_in()).unwrap_or(usize::MAX) == chunk.len();
        // A sync flush is complete once all input is in and room was left over.
        if done && status == Status::Ok && out.len() < out.capacity() {
            return out;
        }
    }
}

/// Deflates `bytes` chunk by chunk on every core: each thread takes the
/// next chunk left until none is, and the parts keep the input's order.
fn deflate_parallel(bytes: &[u8]) -> Vec<u8> {
    let chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
    let workers = threads().min(chunks.len());
    if workers <= 1 {
        return chunks.into_iter().flat_map(deflate_chunk).collect();
    }
    let next = AtomicUsize::new(0);
    let mut parts: Vec<Vec<u8>> = vec![Vec::new(); chunks.len()];
    std::thread::scope(|s| {
        let work = || {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(chunk) = chunks.get(i) else {
                    return done;
                };
                done.push((i, deflate_chunk(chunk)));
            }
        };
        let handles: Vec<_> = (0..workers).map(|_| s.spawn(work)).collect();
        for handle in handles {
            for (i, part) in handle.join().expect("deflate thread") {
                parts[i] = part;
            }
        }
    });
    parts.concat()
}

fn crc_of(bytes: &[u8]) -> Crc {
    let mut crc = Crc::new();
    crc.update(bytes);
    crc
}

/// Large inputs by SHA-256: each compressed once, by whichever thread
/// asked first while the others wait for it.
type Memo = Mutex<HashMap<[u8; 32], Arc<OnceLock<Arc<Deflated>>>>>;

/// The deflate data of `bytes`, compressed once per process for large
/// inputs, and taken from `cache` (kept there for the next build) when given.
pub fn deflate(bytes: &[u8], cache: Option<&DeflateCache>) -> Arc<Deflated> {
    let fresh = |digest: Option<&[u8; 32]>| {
        let kept = digest.and_then(|d| Some((d, cache?)));
        let data = match kept.and_then(|(d, cache)| cache.load(d)) {
            Some(data) => data,
            None => {
                let data = deflate_parallel(bytes);
                if let Some((digest, cache)) = kept {
                    cache.save(digest, &data);
                }
                data
            }
        };
        Arc::new(Deflated {
            data,
            crc: crc_of(bytes),
        })
    };
    if bytes.len() < MEMO_MIN {
        return fresh(None);
    }
    static MEMO: OnceLock<Memo> = OnceLock::new();
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    let slot = match MEMO.get_or_init(Memo::default).lock() {
        Ok(mut memo) => memo.entry(digest).or_default().clone(),
        Err(_) => return fresh(Some(&digest)),
    };
    slot.get_or_init(|| fresh(Some(&digest))).clone()
}

/// Names this build's compressor by what it makes of a fixed sample, for
/// [`DeflateCache`]: another compressor (another zlib-rs, level or chunk
/// size) gets another name, so never another's bytes.
pub fn compressor_id() -> String {
    // Written into one buffer: a string per word cost more than the deflate.
    let mut sample = Vec::with_capacity(CHUNK + 16);
    for i in 0u32.. {
        if sample.len() >= CHUNK {
            break;
        }
        let word = (i.wrapping_mul(2_654_435_761) >> 20) % 97;
        write!(sample, "kiln {word} ").expect("writing into memory");
    }
    sample.truncate(CHUNK);
    let digest = Sha256::digest(deflate_chunk(&sample));
    format!("{}-{}k-{}", LEVEL.level(), CHUNK >> 10, &hex(&digest)[..16])
}

/// `bytes` as one gzip member.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = GzipWriter::new(Vec::new());
    out.splice(&deflate(bytes, None)).expect("gzip into memory");
    out.finish().expect("gzip into memory")
}

/// A gzip stream written in chunks deflated on every core; [`splice`]
/// inserts data deflated before.
///
/// [`splice`]: GzipWriter::splice
pub struct GzipWriter<W: Write> {
    out: W,
    pending: Vec<u8>,
    crc: Crc,
    started: bool,
}

impl<W: Write> GzipWriter<W> {
    pub fn new(out: W) -> GzipWriter<W> {
        GzipWriter {
            out,
            pending: Vec::new(),
            crc: Crc::new(),
            started: false,
        }
    }

    fn emit(&mut self, deflated: &[u8]) -> io::Result<()> {
        if !self.started {
            self.out.write_all(&HEADER)?;
            self.started = true;
        }
        self.out.write_all(deflated)
    }

    /// Compresses what is pending: whole chunks, or everything with `all`.
    fn compress_pending(&mut self, all: bool) -> io::Result<()> {
        let cut = if all {
            self.pending.len()
        } else {
            self.pending.len() / CHUNK * CHUNK
        };
        if cut == 0 {
            return Ok(());
        }
        let rest = self.pending.split_off(cut);
        let ready = std::mem::replace(&mut self.pending, rest);
        self.crc.update(&ready);
        let deflated = deflate_parallel(&ready);
        self.emit(&deflated)
    }

    /// Appends data deflated before (by [`deflate`]).
    pub fn splice(&mut self, deflated: &Deflated) -> io::Result<()> {
        self.compress_pending(true)?;
        self.crc.combine(&deflated.crc);
        self.emit(&deflated.data)
    }

    /// Ends the stream: the final block and gzip's trailer.
    pub fn finish(mut self) -> io::Result<W> {
        self.compress_pending(true)?;
        self.emit(&FINAL_BLOCK)?;
        let crc = self.crc.sum().to_le_bytes();
        let len = self.crc.amount().to_le_bytes();
        self.out.write_all(&crc)?;
        self.out.write_all(&len)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        // Batches of several chunks per core keep every core busy.
        if self.pending.len() >= CHUNK * BATCH * threads() {
            self.compress_pending(false)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        // A single-member reader: the output must be one gzip member.
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| u8::try_from((i * 7 + i / 1000) % 251).unwrap())
            .collect()
    }

    #[test]
    fn one_member_that_reads_back_across_chunks_splices_and_writes() {
        let (a, b, c) = (sample(3 * CHUNK + 17), sample(MEMO_MIN + 5), sample(1000));
        let mut gz = GzipWriter::new(Vec::new());
        for piece in a.chunks(4096) {
            gz.write_all(piece).unwrap();
        }
        gz.splice(&deflate(&b, None)).unwrap();
        gz.write_all(&c).unwrap();
        let out = gz.finish().unwrap();
        assert_eq!(gunzip(&out), [a, b, c].concat());
        assert_eq!(gunzip(&gzip(b"")), b"");
        assert_eq!(gunzip(&gzip(b"kiln")), b"kiln");
    }

    #[test]
    fn bytes_depend_on_the_input_only() {
        let data = sample(2 * CHUNK + 3);
        let mut by_byte = GzipWriter::new(Vec::new());
        for piece in data.chunks(1) {
            by_byte.write_all(piece).unwrap();
        }
        let whole = {
            let mut gz = GzipWriter::new(Vec::new());
            gz.write_all(&data).unwrap();
            gz.finish().unwrap()
        };
        assert_eq!(by_byte.finish().unwrap(), whole);
        assert!(Arc::ptr_eq(
            &deflate(&data, None),
            &deflate(&data.clone(), None)
        ));
    }

    #[test]
    fn what_the_cache_keeps_is_what_would_be_deflated() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DeflateCache::open(dir.path(), &compressor_id()).unwrap();
        let data = sample(MEMO_MIN + 11);
        let digest: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(deflate(&data, Some(&cache)).data, deflate_parallel(&data));
        assert_eq!(cache.load(&digest), Some(deflate_parallel(&data)));
        // The name tells compressors apart, and is stable for one.
        assert_eq!(compressor_id(), compressor_id());
        assert!(
            compressor_id().starts_with("1-256k-"),
            "{}",
            compressor_id()
        );
    }
}
