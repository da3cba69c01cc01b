//! `disk.tar.gz`: the disk as Compute Engine imports it, a gzip-compressed
//! tar holding one member named `disk.raw`, sparse, in GNU tar's oldgnu
//! format (Google's "Manually import boot disks": `tar --format=oldgnu
//! -Sczf`). GNU tar writes the tar; kiln's own gzip compresses it on every
//! core with no time stamp in its header.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use super::Conversion;
use crate::render::deflate::GzipWriter;

/// The one member's name: GCE takes no other.
const MEMBER: &str = "disk.raw";

pub(super) fn write(c: &Conversion, out: &Path) -> Result<()> {
    let (dir, name) = match (c.raw.parent(), c.raw.file_name()) {
        (Some(dir), Some(name)) if name == MEMBER => (dir, name),
        _ => bail!(
            "{} is not named {MEMBER}, GCE's member name",
            c.raw.display()
        ),
    };
    let mut tar = c.tar("oldgnu");
    // Holes found by reading for zeros, not by asking the file system
    // (SEEK_HOLE): the member then depends on the disk's bytes alone, not
    // on how the file system that holds disk.raw allocated it.
    tar.args(["--sparse", "--hole-detection=raw", "-cf", "-", "-C"])
        .arg(dir)
        .arg(name)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = tar
        .spawn()
        .context("running tar (install it with `apt-get install tar`)")?;
    let mut stream = child.stdout.take().expect("tar's piped stdout");
    let file = File::options()
        .write(true)
        .truncate(true)
        .open(out)
        .with_context(|| format!("opening {}", out.display()))?;
    let mut gzip = GzipWriter::new(BufWriter::new(file));
    let copied = io::copy(&mut stream, &mut gzip);
    // Closed before the wait: a tar still writing then stops (EPIPE).
    drop(stream);
    let done = child.wait_with_output().context("waiting for tar")?;
    if !done.status.success() {
        bail!(
            "tar failed with {}: {}",
            done.status,
            String::from_utf8_lossy(&done.stderr).trim()
        );
    }
    copied.context("compressing tar's output")?;
    gzip.finish()
        .and_then(|w| w.into_inner().map_err(io::IntoInnerError::into_error))
        .map(drop)
        .context("writing the gzip stream")
}
