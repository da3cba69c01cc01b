//! Reads a base root filesystem (a folder, or a .tar / .tar.gz) into a
//! normalized listing the tarball writer lays the role layer over: absolute
//! paths, numeric owners, permission bits, no timestamps.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use tar::{Archive, EntryType};

use super::{IoContext, RenderError};
use crate::layer::Meta;

/// Where a base file's bytes are.
#[derive(Debug, Clone)]
pub(super) enum Source {
    Disk(PathBuf),
    /// A span of the (decompressed) base archive.
    Archive {
        offset: u64,
        len: u64,
    },
}

#[derive(Debug, Clone)]
pub(super) enum BaseKind {
    Dir,
    File(Source),
    Link(PathBuf),
    Device { block: bool, major: u32, minor: u32 },
    Fifo,
}

#[derive(Debug, Clone)]
pub(super) struct BaseEntry {
    pub meta: Meta,
    pub kind: BaseKind,
}

pub(super) struct Base {
    path: PathBuf,
    pub entries: BTreeMap<PathBuf, BaseEntry>,
    /// The plain tar a base archive was indexed from.
    archive: Option<File>,
}

impl Base {
    pub fn open(path: &Path) -> Result<Base, RenderError> {
        let meta = fs::metadata(path).context(|| format!("reading base {}", path.display()))?;
        let mut base = Base {
            path: path.to_owned(),
            entries: BTreeMap::new(),
            archive: None,
        };
        if meta.is_dir() {
            base.walk_folder(path, Path::new("/"))?;
        } else {
            base.index_archive()?;
        }
        Ok(base)
    }

    fn error(&self, problem: impl Into<String>) -> RenderError {
        RenderError::Base {
            path: self.path.clone(),
            problem: problem.into(),
        }
    }

    /// The bytes of a base file.
    pub fn read(&self, source: &Source) -> Result<Vec<u8>, RenderError> {
        let mut bytes = Vec::new();
        match source {
            Source::Disk(path) => {
                File::open(path)
                    .and_then(|mut f| f.read_to_end(&mut bytes))
                    .context(|| format!("reading base file {}", path.display()))?;
            }
            Source::Archive { offset, len } => {
                let mut archive = self
                    .archive
                    .as_ref()
                    .ok_or_else(|| self.error("archive span without an archive"))?;
                archive
                    .seek(SeekFrom::Start(*offset))
                    .and_then(|_| archive.take(*len).read_to_end(&mut bytes))
                    .context(|| format!("reading base archive {}", self.path.display()))?;
            }
        }
        Ok(bytes)
    }

    fn walk_folder(&mut self, dir: &Path, at: &Path) -> Result<(), RenderError> {
        let listing =
            fs::read_dir(dir).context(|| format!("listing base folder {}", dir.display()))?;
        for item in listing {
            let item = item.context(|| format!("listing base folder {}", dir.display()))?;
            let disk_path = item.path();
            let path = at.join(item.file_name());
            let meta = fs::symlink_metadata(&disk_path)
                .context(|| format!("reading base entry {}", disk_path.display()))?;
            let file_type = meta.file_type();
            let kind = if file_type.is_dir() {
                BaseKind::Dir
            } else if file_type.is_symlink() {
                let target = fs::read_link(&disk_path)
                    .context(|| format!("reading base link {}", disk_path.display()))?;
                BaseKind::Link(target)
            } else if file_type.is_char_device() || file_type.is_block_device() {
                let (major, minor) = split_dev(meta.rdev());
                let block = file_type.is_block_device();
                BaseKind::Device {
                    block,
                    major,
                    minor,
                }
            } else if file_type.is_fifo() {
                BaseKind::Fifo
            } else if file_type.is_socket() {
                // A socket is a live process's endpoint; tar cannot carry it
                // and no image should.
                continue;
            } else {
                // Hard links are read through and become regular files.
                BaseKind::File(Source::Disk(disk_path.clone()))
            };
            let entry = BaseEntry {
                meta: Meta {
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                },
                kind,
            };
            let is_dir = matches!(entry.kind, BaseKind::Dir);
            self.entries.insert(path.clone(), entry);
            if is_dir {
                self.walk_folder(&disk_path, &path)?;
            }
        }
        Ok(())
    }

    /// Indexes a tar (decompressed to a temporary file first if gzipped) so
    /// file contents are read one at a time when written, not held in memory.
    fn index_archive(&mut self) -> Result<(), RenderError> {
        let opened = || format!("reading base archive {}", self.path.display());
        let mut file = File::open(&self.path).context(opened)?;
        let mut magic = [0u8; 2];
        let gzipped = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
        file.rewind().context(opened)?;
        if gzipped {
            let mut spool = tempfile::tempfile().context(|| "creating a temporary file".into())?;
            io::copy(&mut GzDecoder::new(file), &mut spool).context(opened)?;
            spool.rewind().context(opened)?;
            file = spool;
        }
        let mut hard_links = Vec::new();
        let mut archive = Archive::new(&file);
        for entry in archive.entries_with_seek().context(opened)? {
            let entry = entry.context(opened)?;
            let raw_path = entry.path().context(opened)?.into_owned();
            let Some(path) = self.normalize(&raw_path)? else {
                continue;
            };
            let header = entry.header();
            let meta = Meta {
                mode: header.mode().context(opened)? & 0o7777,
                uid: self.id(header.uid().context(opened)?, &raw_path)?,
                gid: self.id(header.gid().context(opened)?, &raw_path)?,
            };
            let link_name = || -> Result<PathBuf, RenderError> {
                let name = entry.link_name().context(opened)?;
                name.map(|n| n.into_owned()).ok_or_else(|| {
                    self.error(format!("{}: link without a target", raw_path.display()))
                })
            };
            let device = || -> Result<(u32, u32), RenderError> {
                let major = header.device_major().context(opened)?.unwrap_or(0);
                let minor = header.device_minor().context(opened)?.unwrap_or(0);
                Ok((major, minor))
            };
            let kind = match header.entry_type() {
                EntryType::Directory => BaseKind::Dir,
                EntryType::Regular | EntryType::Continuous => BaseKind::File(Source::Archive {
                    offset: entry.raw_file_position(),
                    len: entry.size(),
                }),
                EntryType::Symlink => BaseKind::Link(link_name()?),
                EntryType::Link => {
                    hard_links.push((path, meta, link_name()?));
                    continue;
                }
                EntryType::Char | EntryType::Block => {
                    let (major, minor) = device()?;
                    let block = header.entry_type() == EntryType::Block;
                    BaseKind::Device {
                        block,
                        major,
                        minor,
                    }
                }
                EntryType::Fifo => BaseKind::Fifo,
                other => {
                    return Err(self.error(format!(
                        "{}: unsupported tar entry type {other:?}; repack the base without it",
                        raw_path.display()
                    )))
                }
            };
            self.entries.insert(path, BaseEntry { meta, kind });
        }
        for (path, meta, target) in hard_links {
            let source = self
                .normalize(&target)?
                .and_then(|t| match self.entries.get(&t) {
                    Some(BaseEntry {
                        kind: BaseKind::File(source),
                        ..
                    }) => Some(source.clone()),
                    _ => None,
                })
                .ok_or_else(|| {
                    self.error(format!(
                        "hard link {} points to {}, which is not a regular file before it",
                        path.display(),
                        target.display()
                    ))
                })?;
            let kind = BaseKind::File(source);
            self.entries.insert(path, BaseEntry { meta, kind });
        }
        self.archive = Some(file);
        Ok(())
    }

    /// `./etc/x`, `/etc/x` and `etc/x` all name `/etc/x`; the root itself is
    /// `None`.
    fn normalize(&self, raw: &Path) -> Result<Option<PathBuf>, RenderError> {
        let mut path = PathBuf::from("/");
        for component in raw.components() {
            match component {
                Component::Normal(name) => path.push(name),
                Component::CurDir | Component::RootDir => {}
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(self.error(format!("entry {} leaves the root", raw.display())))
                }
            }
        }
        Ok((path.parent().is_some()).then_some(path))
    }

    fn id(&self, id: u64, raw: &Path) -> Result<u32, RenderError> {
        u32::try_from(id)
            .map_err(|_| self.error(format!("{}: owner id {id} is too large", raw.display())))
    }
}

/// Linux's `major()`/`minor()` of a device number.
fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    // Both are at most 32 bits by construction of the encoding.
    (major as u32, minor as u32)
}
