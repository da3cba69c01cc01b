//! Renders a role layer, laid over an optional base root filesystem, as a
//! reproducible .tar.gz: same inputs, same bytes.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};

use flate2::Compression;
use tar::{EntryType, Header};

use super::base::{Base, BaseKind, Source};
use super::{gzip_writer, layer_tree, IoContext, Origin, RenderError, TreeKind};
use crate::layer::{Meta, RoleLayer};

/// What one tarball entry holds.
enum Kind<'a> {
    Dir,
    Bytes(&'a [u8]),
    BaseFile(&'a Source),
    Link(&'a Path),
    Device { block: bool, major: u32, minor: u32 },
    Fifo,
}

struct Entry<'a> {
    meta: Meta,
    kind: Kind<'a>,
}

/// Writes the file `out` (created 0600 since layers carry keys) atomically
/// with [`write_rootfs`].
pub fn render_rootfs(
    layer: &RoleLayer,
    base: Option<&Path>,
    mtime: u64,
    out: &Path,
) -> Result<(), RenderError> {
    write_atomically(out, |w| write_rootfs(layer, base, mtime, w))
}

/// Writes a .tar.gz to `out`: the entries of `base` (a folder, .tar or
/// .tar.gz) with the layer laid over them, sorted by path, every mtime
/// `mtime`, numeric owners only.
pub fn write_rootfs(
    layer: &RoleLayer,
    base: Option<&Path>,
    mtime: u64,
    out: &mut dyn Write,
) -> Result<(), RenderError> {
    let base = base.map(Base::open).transpose()?;
    let mut entries: BTreeMap<PathBuf, Entry<'_>> = BTreeMap::new();
    if let Some(base) = &base {
        for (path, entry) in &base.entries {
            let kind = match &entry.kind {
                BaseKind::Dir => Kind::Dir,
                BaseKind::File(source) => Kind::BaseFile(source),
                BaseKind::Link(target) => Kind::Link(target),
                &BaseKind::Device {
                    block,
                    major,
                    minor,
                } => Kind::Device {
                    block,
                    major,
                    minor,
                },
                BaseKind::Fifo => Kind::Fifo,
            };
            entries.insert(
                path.clone(),
                Entry {
                    meta: entry.meta,
                    kind,
                },
            );
        }
    }
    let tree = layer_tree(layer)?;
    for (path, item) in &tree {
        let existing = entries.get(path).map(|e| &e.kind);
        if item.origin == Origin::Implied {
            match existing {
                None => {}
                Some(Kind::Dir) => continue,
                Some(Kind::Link(_)) => {
                    return Err(RenderError::layer(
                        path,
                        "is a symbolic link in the base; put the layer's entries under the \
                         path it points to",
                    ))
                }
                Some(_) => return Err(RenderError::layer(path, "is not a directory in the base")),
            }
        }
        let kind = match item.kind {
            TreeKind::Dir => Kind::Dir,
            TreeKind::File(data) => Kind::Bytes(data.bytes()),
            TreeKind::Link(target) => Kind::Link(target),
        };
        // A directory over a directory only changes owner and mode, as with
        // Ignition; anything else replaces the whole base subtree.
        if !(matches!(kind, Kind::Dir) && matches!(existing, Some(Kind::Dir))) {
            remove_below(&mut entries, path);
        }
        entries.insert(
            path.clone(),
            Entry {
                meta: item.meta,
                kind,
            },
        );
    }
    write_tar(out, &entries, base.as_ref(), mtime)
}

fn remove_below(entries: &mut BTreeMap<PathBuf, Entry<'_>>, dir: &Path) {
    let below: Vec<PathBuf> = entries
        .range::<Path, _>((Bound::Excluded(dir), Bound::Unbounded))
        .map(|(p, _)| p)
        .take_while(|p| p.starts_with(dir))
        .cloned()
        .collect();
    for path in below {
        entries.remove(&path);
    }
}

fn write_tar(
    out: &mut dyn Write,
    entries: &BTreeMap<PathBuf, Entry<'_>>,
    base: Option<&Base>,
    mtime: u64,
) -> Result<(), RenderError> {
    let writing = || "writing the rootfs tarball".to_owned();
    let mut tar = tar::Builder::new(gzip_writer(out, Compression::default()));
    for (path, entry) in entries {
        let name = path.strip_prefix("/").unwrap_or(path);
        let mut header = Header::new_gnu();
        header.set_mtime(mtime);
        header.set_uid(entry.meta.uid.into());
        header.set_gid(entry.meta.gid.into());
        header.set_mode(entry.meta.mode);
        header.set_size(0);
        let appended = match &entry.kind {
            Kind::Dir => {
                header.set_entry_type(EntryType::Directory);
                tar.append_data(&mut header, name, io::empty())
            }
            Kind::Bytes(bytes) => append_file(&mut tar, &mut header, name, bytes),
            Kind::BaseFile(source) => {
                let base =
                    base.ok_or_else(|| RenderError::layer(path, "base file without a base"))?;
                append_file(&mut tar, &mut header, name, &base.read(source)?)
            }
            Kind::Link(target) => {
                header.set_entry_type(EntryType::Symlink);
                tar.append_link(&mut header, name, target)
            }
            &Kind::Device {
                block,
                major,
                minor,
            } => {
                header.set_entry_type(if block {
                    EntryType::Block
                } else {
                    EntryType::Char
                });
                header
                    .set_device_major(major)
                    .and_then(|_| header.set_device_minor(minor))
                    .and_then(|_| tar.append_data(&mut header, name, io::empty()))
            }
            Kind::Fifo => {
                header.set_entry_type(EntryType::Fifo);
                tar.append_data(&mut header, name, io::empty())
            }
        };
        appended.context(|| format!("adding {} to the rootfs tarball", path.display()))?;
    }
    let gzip = tar.into_inner().context(writing)?;
    gzip.finish().context(writing)?.flush().context(writing)
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    header: &mut Header,
    name: &Path,
    bytes: &[u8],
) -> io::Result<()> {
    header.set_entry_type(EntryType::Regular);
    header.set_size(bytes.len() as u64);
    tar.append_data(header, name, bytes)
}

/// Writes through a temporary file beside `out`, so a failed render never
/// leaves a truncated tarball behind.
fn write_atomically(
    out: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<(), RenderError>,
) -> Result<(), RenderError> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let what = || format!("writing {}", out.display());
    let temp = tempfile::NamedTempFile::new_in(dir).context(what)?;
    let mut buffered = BufWriter::new(temp.as_file());
    write(&mut buffered)?;
    buffered.flush().context(what)?;
    drop(buffered);
    temp.as_file().sync_all().context(what)?;
    temp.persist(out).map_err(|e| e.error).context(what)?;
    // The rename itself is durable only once the folder is synced.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .context(what)
}

#[cfg(test)]
#[path = "rootfs_tests.rs"]
mod tests;
