//! Renders a role layer, laid over an optional base root filesystem, as a
//! reproducible .tar.gz: same inputs, same bytes.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};

use kiln_node::fsutil::replace_atomically;
use tar::{EntryType, Header};

use super::base::{Base, BaseKind};
use super::deflate::{self, DeflateCache, GzipWriter};
use super::{layer_tree, IoContext, Origin, RenderError, TreeEntry, TreeKind};
use crate::layer::{Meta, RoleLayer};

/// One tarball entry: from the layer or, where the layer is silent, the base.
enum Kind<'a> {
    Layer(TreeKind<'a>),
    Base(&'a BaseKind),
}

impl Kind<'_> {
    fn is_dir(&self) -> bool {
        matches!(self, Kind::Layer(TreeKind::Dir) | Kind::Base(BaseKind::Dir))
    }
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
    write_atomically(out, |w| write_rootfs(layer, base, mtime, None, w))
}

/// Writes a .tar.gz to `out`: the entries of `base` (a folder, .tar or
/// .tar.gz) with the layer laid over them, sorted by path, every mtime
/// `mtime`, numeric owners only. The deflate data of large world-readable
/// files is taken from `cache` where it was kept, and kept there.
pub fn write_rootfs(
    layer: &RoleLayer,
    base: Option<&Path>,
    mtime: u64,
    cache: Option<&DeflateCache>,
    out: &mut dyn Write,
) -> Result<(), RenderError> {
    let base = base.map(Base::open).transpose()?;
    let tree = layer_tree(layer)?;
    let entries = lay_over(base.as_ref(), &tree)?;
    write_tar(out, &entries, base.as_ref(), mtime, cache)
}

/// The base's entries with the layer's laid over them.
fn lay_over<'a>(
    base: Option<&'a Base>,
    tree: &'a BTreeMap<PathBuf, TreeEntry<'a>>,
) -> Result<BTreeMap<PathBuf, Entry<'a>>, RenderError> {
    let mut entries = BTreeMap::new();
    for (path, entry) in base.iter().flat_map(|b| &b.entries) {
        let kind = Kind::Base(&entry.kind);
        entries.insert(
            path.clone(),
            Entry {
                meta: entry.meta,
                kind,
            },
        );
    }
    for (path, item) in tree {
        let existing = entries.get(path).map(|e: &Entry<'_>| &e.kind);
        if item.origin == Origin::Implied {
            match existing {
                None => {}
                Some(kind) if kind.is_dir() => continue,
                Some(Kind::Base(BaseKind::Link(_))) => {
                    return Err(RenderError::layer(
                        path,
                        "is a symbolic link in the base; put the layer's entries under the \
                         path it points to",
                    ))
                }
                Some(_) => return Err(RenderError::layer(path, "is not a directory in the base")),
            }
        }
        let kind = Kind::Layer(item.kind);
        // A directory over a directory only changes owner and mode, as with
        // Ignition; anything else replaces the whole base subtree.
        if !(kind.is_dir() && existing.is_some_and(Kind::is_dir)) {
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
    Ok(entries)
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
    cache: Option<&DeflateCache>,
) -> Result<(), RenderError> {
    let writing = || "writing the rootfs tarball".to_owned();
    let mut tar = tar::Builder::new(GzipWriter::new(out));
    for (path, entry) in entries {
        let name = path.strip_prefix("/").unwrap_or(path);
        let mut header = Header::new_gnu();
        header.set_mtime(mtime);
        header.set_uid(entry.meta.uid.into());
        header.set_gid(entry.meta.gid.into());
        header.set_mode(entry.meta.mode);
        header.set_size(0);
        // Never a key: those are 0600.
        let cache = cache.filter(|_| entry.meta.mode & 0o004 != 0);
        let appended = match &entry.kind {
            Kind::Layer(TreeKind::Dir) | Kind::Base(BaseKind::Dir) => {
                header.set_entry_type(EntryType::Directory);
                tar.append_data(&mut header, name, io::empty())
            }
            Kind::Layer(TreeKind::File(data)) => {
                append_file(&mut tar, &mut header, name, data, cache)
            }
            Kind::Base(BaseKind::File(source)) => {
                let base =
                    base.ok_or_else(|| RenderError::layer(path, "base file without a base"))?;
                append_file(&mut tar, &mut header, name, &base.read(source)?, cache)
            }
            Kind::Layer(TreeKind::Link(target)) => append_link(&mut tar, &mut header, name, target),
            Kind::Base(BaseKind::Link(target)) => append_link(&mut tar, &mut header, name, target),
            &Kind::Base(&BaseKind::Device {
                block,
                major,
                minor,
            }) => {
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
            Kind::Base(BaseKind::Fifo) => {
                header.set_entry_type(EntryType::Fifo);
                tar.append_data(&mut header, name, io::empty())
            }
        };
        appended.context(|| format!("adding {} to the rootfs tarball", path.display()))?;
    }
    let gzip = tar.into_inner().context(writing)?;
    gzip.finish().context(writing)?.flush().context(writing)
}

fn append_link<W: Write>(
    tar: &mut tar::Builder<W>,
    header: &mut Header,
    name: &Path,
    target: &Path,
) -> io::Result<()> {
    header.set_entry_type(EntryType::Symlink);
    tar.append_link(header, name, target)
}

/// A file's header and data; a large file's data deflated once for every
/// tarball of the build that holds it, and spliced in.
fn append_file<W: Write>(
    tar: &mut tar::Builder<GzipWriter<W>>,
    header: &mut Header,
    name: &Path,
    bytes: &[u8],
    cache: Option<&DeflateCache>,
) -> io::Result<()> {
    header.set_entry_type(EntryType::Regular);
    header.set_size(bytes.len() as u64);
    if bytes.len() < deflate::MEMO_MIN {
        return tar.append_data(header, name, bytes);
    }
    // The header (and a long-name entry if needed) alone: tar pads only
    // what it copied, so the data and its padding follow here.
    tar.append_data(header, name, io::empty())?;
    let gzip = tar.get_mut();
    gzip.splice(&deflate::deflate(bytes, cache))?;
    let padding = (512 - bytes.len() % 512) % 512;
    gzip.write_all(&[0u8; 512][..padding])
}

/// Writes through a temporary file beside `out` (0600 from creation, as
/// layers carry keys), so a failed render never leaves a truncated tarball.
fn write_atomically(
    out: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<(), RenderError>,
) -> Result<(), RenderError> {
    // The render's own error rides through the io::Error the helper wants,
    // so it still removes the temporary file, and comes out unchanged.
    let written = replace_atomically(out, 0o600, |file, _| {
        let mut buffered = BufWriter::new(file);
        write(&mut buffered).map_err(io::Error::other)?;
        buffered.flush()
    });
    written.map_err(|e| match e.downcast::<RenderError>() {
        Ok(render) => render,
        Err(source) => RenderError::Io {
            context: format!("writing {}", out.display()),
            source,
        },
    })
}

#[cfg(test)]
#[path = "rootfs_tests.rs"]
mod tests;
