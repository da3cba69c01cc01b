//! `kiln build`: profile -> secrets -> role layers -> Ignition configs,
//! tarballs and bootable disks -> manifest, staged in a private folder and moved into place only
//! when complete, so a failed build leaves the previous output untouched.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use kiln_node::node_config::Role;
use kiln_node::versions::Version;

use crate::image::{self, DiskRequest, EtcdBinaries, RoleBase};
use crate::layer::{build_layer, ContainerdConfig, Contents, LayerInputs, Meta, RoleLayer};
use crate::manifest::{Artifact, Manifest, ProfileRecord, RoleRecord};
use crate::output;
use crate::profile::{self, BaseImage, KubernetesSource, LoadedProfile, OutputFormat};
use crate::progress::Progress;
use crate::render::deflate::{self, DeflateCache};
use crate::render::{ignition::render_ignition, rootfs::write_rootfs};
use crate::secrets::Secrets;

#[derive(clap::Args, Debug)]
pub struct BuildOptions {
    /// The cluster profile (TOML).
    pub profile: PathBuf,
    /// Output folder [default: images/<cluster>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Secrets folder, created on first use and reused afterwards
    /// [default: <out>/secrets].
    #[arg(long, value_name = "DIR")]
    pub secrets: Option<PathBuf>,
    /// The kiln-firstboot binary to bake in [default: beside kiln].
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// Where the Debian base root filesystem is cached
    /// [default: $XDG_CACHE_HOME/kiln, or /var/cache/kiln as root].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Output formats instead of the profile's images.formats, comma
    /// separated: ignition, rootfs, raw, qcow2, vhd, gce, vmdk, ova.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        hide_possible_values = true
    )]
    pub formats: Option<Vec<OutputFormat>>,
    /// Base OS instead of the profile's images.base: debian or none.
    #[arg(long, value_name = "BASE", hide_possible_values = true)]
    pub base: Option<BaseImage>,
}

/// What a build produced, for the summary.
pub struct BuildReport {
    pub out: PathBuf,
    pub manifest: Manifest,
}

pub fn build(options: &BuildOptions, progress: &Progress) -> Result<BuildReport> {
    let mut loaded = profile::load(&options.profile)?;
    profile::resolve::check_local(&loaded)?;
    if let Some(formats) = &options.formats {
        loaded.profile.images.formats = formats.clone();
    }
    let base_choice = options.base.unwrap_or(loaded.profile.images.base);
    // Absolute, since apt runs inside it (a relative --cache found no lists).
    let cache = options
        .cache
        .clone()
        .unwrap_or_else(image::default_cache_dir);
    let cache = std::path::absolute(&cache)
        .with_context(|| format!("resolving the cache folder {}", cache.display()))?;
    for warning in &loaded.warnings {
        tracing::warn!("{}", warning.located());
    }
    if let Some(warning) = missing_kubernetes(&loaded.profile, base_choice) {
        tracing::warn!("{warning}");
    }
    let agent_path = agent_path(options.agent.as_deref())?;
    let agent: std::sync::Arc<[u8]> = fs::read(&agent_path)
        .with_context(|| format!("reading the agent binary {}", agent_path.display()))?
        .into();
    let cluster = &loaded.profile.cluster.name;
    let out = options
        .out
        .clone()
        .unwrap_or_else(|| Path::new("images").join(cluster));
    let secrets_dir = options
        .secrets
        .clone()
        .unwrap_or_else(|| out.join("secrets"));
    let mtime = source_date_epoch(&loaded)?;
    output::check_secrets_place(&out, &secrets_dir)?;
    output::check_replaceable(&out)?;

    let secrets = progress.step("preparing secrets", || {
        Secrets::open_or_create(&secrets_dir, &loaded.profile)
    })?;
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".kiln-build-")
        .tempdir_in(&out)
        .with_context(|| format!("creating a staging folder in {}", out.display()))?;

    let inputs = LayerInputs {
        profile: &loaded,
        secrets: &secrets,
        agent: &agent,
    };
    let mut manifest = Manifest {
        kiln_version: env!("CARGO_PKG_VERSION").to_owned(),
        cluster: cluster.clone(),
        profile: ProfileRecord {
            name: file_name(&loaded.path),
            digest: loaded.digest.clone(),
        },
        source_date_epoch: mtime,
        roles: Default::default(),
    };
    let etcd = match loaded.profile.roles().contains(&Role::Etcd) {
        true => progress.step("preparing etcd", || {
            etcd_binaries(&loaded, options.base, &cache)
        })?,
        false => None,
    };
    // Bases one after the other (two roles may share one), then every
    // role's artifacts at once.
    let mut prepared = Vec::new();
    for role in loaded.profile.roles() {
        let base = progress.step(&format!("preparing the {role} base"), || {
            RoleBase::resolve(&loaded, role, options.base, etcd.as_ref(), &cache)
        })?;
        let containerd = ContainerdConfig::for_major(base.containerd_major());
        let mut layer = build_layer(role, &inputs, containerd)?;
        let etcd_version = match role {
            Role::Etcd => baked_etcd_version(&loaded, &base, etcd.as_ref())?,
            _ => None,
        };
        // Beside the binary: the agent reads it instead of starting etcd.
        if let Some(version) = etcd_version {
            layer.add_file(
                kiln_node::layout::ETCD_VERSION_FILE,
                Meta::root(0o644),
                Contents::Inline(format!("{version}\n").into_bytes()),
            );
            layer.mark_image([kiln_node::layout::ETCD_VERSION_FILE]);
        }
        // The version read above, for etcd that dpkg does not list.
        let unpackaged = etcd.as_ref().and(etcd_version);
        let mut sbom = None;
        if let RoleBase::Debian(tree) = &base {
            image::add_os_files(&mut layer);
            let document = crate::sbom::for_role(&loaded, role, tree, unpackaged, mtime)?;
            let path = Path::new(crate::sbom::IMAGE_DIR).join(format!("kiln-{role}.spdx.json"));
            layer.add_file(&path, Meta::root(0o644), Contents::Inline(document.clone()));
            layer.mark_image([path]);
            sbom = Some(document);
        }
        prepared.push((role, base, layer, etcd_version, sbom));
    }
    let deflate = loaded
        .profile
        .images
        .formats
        .contains(&OutputFormat::Rootfs)
        .then(|| DeflateCache::open(&cache, &deflate::compressor_id()))
        .flatten();
    let (loaded, staging_dir) = (&loaded, staging.path());
    let jobs: Vec<_> = prepared
        .iter()
        .map(|(role, base, layer, _, sbom)| {
            let target = RoleTarget {
                base,
                cache: &cache,
                deflate: deflate.as_ref(),
                // The image is the same for every cluster: so is its disk.
                seed: format!("kiln/{role}"),
                sbom: sbom.as_deref(),
            };
            let work = move || write_role(layer, loaded, &target, staging_dir, mtime);
            (format!("building the {role} image"), work)
        })
        .collect();
    for ((role, _, _, etcd_version, _), record) in prepared.iter().zip(progress.parallel(jobs)) {
        let mut record = record?;
        record.etcd_version = etcd_version.map(|v| v.to_string());
        manifest.roles.insert(*role, record);
    }
    let manifest_path = staging.path().join("manifest.json");
    fs::write(&manifest_path, manifest.to_json())
        .with_context(|| format!("writing {}", manifest_path.display()))?;
    output::publish(staging.path(), &out)?;
    if let Some(deflate) = &deflate {
        deflate.prune();
    }
    Ok(BuildReport { out, manifest })
}

/// The etcd binaries `images.etcd` names, when the build needs them: always
/// on a Debian base, and without one when they are at hand anyway (a folder,
/// a cached or downloadable release) so their version can be checked.
fn etcd_binaries(
    loaded: &LoadedProfile,
    cli: Option<BaseImage>,
    cache: &Path,
) -> Result<Option<EtcdBinaries>> {
    let images = &loaded.profile.images;
    let own_base = images.etcd.base.is_some() && cli.is_none();
    let no_base = cli.unwrap_or(images.base) == BaseImage::None;
    let fetch = matches!(
        images.etcd.etcd_source(),
        profile::EtcdSource::DebianSuite(_)
    );
    if own_base || (no_base && fetch) {
        return Ok(None);
    }
    profile::resolve::fetch_etcd(loaded, cache)
}

/// The version of the etcd the etcd image carries, refused (exit 2) where
/// kubeadm would refuse it ([`profile::resolve::check_external_etcd`]).
fn baked_etcd_version(
    loaded: &LoadedProfile,
    base: &RoleBase,
    etcd: Option<&EtcdBinaries>,
) -> Result<Option<Version>> {
    // Only kiln's own base is run from: a base folder the profile names may
    // hold anything, and its binaries are not run on the build host.
    let baked = match base {
        RoleBase::Debian(p) => Some(p.join(kiln_node::layout::ETCD_BINARY.trim_start_matches('/'))),
        RoleBase::Profile(_) | RoleBase::None => None,
    };
    let version = match (baked, etcd) {
        (Some(binary), _) => Version::of_binary(&binary)?,
        (None, Some(binaries)) => binaries.version()?,
        (None, None) => return Ok(None),
    };
    profile::resolve::check_external_etcd(loaded, version)?;
    Ok(Some(version))
}

/// Where a role's image comes from, beyond its layer.
struct RoleTarget<'a> {
    base: &'a RoleBase,
    cache: &'a Path,
    deflate: Option<&'a DeflateCache>,
    seed: String,
    /// The image's SBOM, written beside its artifacts too (kiln's base).
    sbom: Option<&'a [u8]>,
}

/// Refuses (exit 2) a config the platform would refuse as user-data.
fn check_user_data_size(loaded: &LoadedProfile, role: Role, size: usize) -> Result<()> {
    let limit = loaded.profile.images.user_data_limit;
    if size as u64 <= limit {
        return Ok(());
    }
    Err(loaded
        .error_at(
            "images.user_data_limit",
            format!(
                "the {role} Ignition config is {size} bytes, over the user-data limit of {limit} \
                 bytes{}",
                if limit == profile::DEFAULT_USER_DATA_LIMIT {
                    " (the default: EC2 refuses larger user-data)"
                } else {
                    ""
                }
            ),
            format!(
                "make the config smaller: move large images.{role}.files into the image \
                 (packages, or a base of your own) or list fewer dns_names; or, on a platform \
                 that takes more (Azure custom data and OpenStack: 64 KiB, GCE metadata: \
                 256 KiB), set images.user_data_limit = {size} or more"
            ),
        )
        .into())
}

/// Renders one role's artifacts into `staging/<role>/`.
fn write_role(
    layer: &RoleLayer,
    loaded: &LoadedProfile,
    target: &RoleTarget,
    staging: &Path,
    mtime: u64,
) -> Result<RoleRecord> {
    let role = layer.role;
    let dir = staging.join(role.as_str());
    fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    output::mark(&dir, &loaded.profile.cluster.name)?;
    let (mut image, config) = layer.split();
    let rendered = render_ignition(&config)
        .with_context(|| format!("rendering the {role} Ignition config"))?;
    check_user_data_size(loaded, role, rendered.len())?;
    if loaded.profile.images.embed_config {
        image.add_secret(kiln_node::layout::EMBEDDED_CONFIG, rendered.clone());
    }
    let formats = &loaded.profile.images.formats;
    let disk = match formats.iter().any(|f| f.is_disk()) {
        true => Some(RawDisk::bake(&image, target, staging, mtime, formats)?),
        false => None,
    };
    let ids = image::DiskIds::derive(&target.seed);
    let conversion = disk.as_ref().map(|disk| image::Conversion {
        raw: &disk.path,
        ids: &ids,
        role,
        mtime,
        secret: image.has_secrets(),
    });
    // Each artifact is hashed for the manifest and synced to disk beside
    // the making of the next (the raw disk's SHA-256 and writeback while
    // qemu-img converts it): all on disk before the build is moved into place.
    std::thread::scope(|hashers| {
        let mut hashing = Vec::new();
        for format in formats {
            let (rel, secret) = match (format, image::disk_file_name(*format)) {
                (OutputFormat::Ignition, _) => (format!("{role}/{role}.ign"), config.has_secrets()),
                (OutputFormat::Rootfs, _) => (format!("{role}/rootfs.tar.gz"), image.has_secrets()),
                (_, Some(name)) => (format!("{role}/{name}"), image.has_secrets()),
                (_, None) => unreachable!("{format:?} is a disk format without a file name"),
            };
            let path = staging.join(&rel);
            let mut file = match format {
                // Baked above, before any other disk format.
                OutputFormat::Raw => {
                    File::open(&path).with_context(|| format!("reading {}", path.display()))?
                }
                _ => create_artifact(&path, secret)?,
            };
            match (format, &conversion) {
                (OutputFormat::Ignition, _) => {
                    file.write_all(&rendered)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                (OutputFormat::Rootfs, _) => {
                    write_rootfs(&image, target.base.path(), mtime, target.deflate, &mut file)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                (OutputFormat::Raw, _) => {}
                (_, Some(conversion)) => conversion.write(*format, &path)?,
                (_, None) => unreachable!("{format:?} is a disk format and no disk was baked"),
            }
            hashing.push(hashers.spawn(move || {
                let artifact = Artifact::of(staging, &rel, secret)?;
                file.sync_all()
                    .with_context(|| format!("writing {}", path.display()))?;
                Ok::<_, anyhow::Error>(artifact)
            }));
        }
        if let Some(sbom) = target.sbom {
            let rel = format!("{role}/sbom.spdx.json");
            let path = staging.join(&rel);
            let mut file = create_artifact(&path, false)?;
            file.write_all(sbom)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            hashing.push(hashers.spawn(move || Artifact::of(staging, &rel, false)));
        }
        let mut record = RoleRecord::default();
        for hashed in hashing {
            record
                .artifacts
                .push(hashed.join().expect("an artifact's hashing thread")?);
        }
        Ok(record)
    })
}

/// The role's `disk.raw`, baked once for every disk format: into the
/// artifact itself when raw is one of the formats, else into a private
/// folder of the staging folder (removed with this value, so no disk.raw
/// is published that was not asked for).
struct RawDisk {
    path: PathBuf,
    _private: Option<tempfile::TempDir>,
}

impl RawDisk {
    fn bake(
        layer: &RoleLayer,
        target: &RoleTarget,
        staging: &Path,
        mtime: u64,
        formats: &[OutputFormat],
    ) -> Result<RawDisk> {
        // Named disk.raw either way: GCE's tarball takes the name from it.
        let raw_name = image::disk_file_name(OutputFormat::Raw).expect("raw's file name");
        let (path, private) = match formats.contains(&OutputFormat::Raw) {
            true => (staging.join(layer.role.as_str()).join(raw_name), None),
            false => {
                let dir = tempfile::Builder::new()
                    .prefix(".disk-")
                    .tempdir_in(staging)
                    .with_context(|| {
                        format!("creating a temporary folder in {}", staging.display())
                    })?;
                (dir.path().join(raw_name), Some(dir))
            }
        };
        create_artifact(&path, layer.has_secrets())?;
        image::write_disks(&DiskRequest {
            layer,
            base: target.base,
            seed: target.seed.clone(),
            mtime,
            cache: target.cache,
            raw: &path,
        })?;
        Ok(RawDisk {
            path,
            _private: private,
        })
    }
}

/// Artifacts holding keys are 0600 from creation; the others 0644.
fn create_artifact(path: &Path, secret: bool) -> Result<File> {
    File::options()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// The agent binary: `--agent`, or `kiln-firstboot` beside this executable.
fn agent_path(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let exe = std::env::current_exe().context("locating the kiln executable")?;
    let beside = exe.with_file_name("kiln-firstboot");
    if !beside.exists() {
        bail!(
            "the agent binary {} is missing: build it with `cargo build --release -p kiln-firstboot` \
             (or `cargo build --workspace`), or pass --agent PATH",
            beside.display()
        );
    }
    Ok(beside)
}

/// Why master or worker images will lack kubeadm and kubelet, if they will:
/// the test suite builds such images on purpose, so this is no error.
fn missing_kubernetes(profile: &profile::Profile, base: BaseImage) -> Option<String> {
    profile.control_plane.as_ref()?;
    let help = "set images.kubernetes.apt (a repository such as pkgs.k8s.io) or \
                images.kubernetes.binaries (a folder of executables); see docs/profile.md";
    match &profile.images.kubernetes {
        Some(KubernetesSource::Binaries(_)) => return None,
        Some(KubernetesSource::Apt(_)) => {}
        None => {
            return Some(format!(
                "no images.kubernetes: the master and worker images will lack kubeadm and \
                 kubelet; {help}"
            ))
        }
    }
    let images = &profile.images;
    let off_debian: Vec<&str> = [("master", &images.master), ("worker", &images.worker)]
        .into_iter()
        .filter(|(_, image)| image.base.is_some() || base != BaseImage::Debian)
        .map(|(role, _)| role)
        .collect();
    (!off_debian.is_empty()).then(|| {
        format!(
            "images.kubernetes.apt installs into kiln's Debian base, and the {} images are not \
             built on it: they will lack kubeadm and kubelet; use base = \"debian\" or \
             images.kubernetes.binaries",
            off_debian.join(" and ")
        )
    })
}

/// `SOURCE_DATE_EPOCH` from the environment, else the profile's, else 0.
fn source_date_epoch(loaded: &LoadedProfile) -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) => value.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH={value:?} is not a number of seconds since 1970")
        }),
        Err(_) => Ok(loaded.profile.images.source_date_epoch.unwrap_or(0)),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(images: &str) -> profile::Profile {
        let text = format!(
            "[cluster]\nname = \"t\"\ndomain = \"t.test\"\nkubernetes_version = \"1.36.2\"\n\
             node_subnets = [\"10.77.0.0/24\"]\n[etcd]\ntopology = \"stacked\"\n\
             [control_plane]\nendpoint = \"10.77.0.21:6443\"\n\
             [[control_plane.masters]]\nname = \"m1\"\nip = \"10.77.0.21\"\n{images}"
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn images_without_kubeadm_are_named_in_a_warning() {
        let none = missing_kubernetes(&profile(""), BaseImage::Debian).unwrap();
        assert!(none.starts_with("no images.kubernetes"), "{none}");
        let apt = "[images.kubernetes.apt]\nrepository = \"https://r.test/\"\nkey = \"k.asc\"\n";
        assert_eq!(missing_kubernetes(&profile(apt), BaseImage::Debian), None);
        let off = missing_kubernetes(&profile(apt), BaseImage::None).unwrap();
        assert!(
            off.contains("the master and worker images are not built on it"),
            "{off}"
        );
        let own_base = format!("{apt}[images.worker]\nbase = \"rootfs\"\n");
        let worker = missing_kubernetes(&profile(&own_base), BaseImage::Debian).unwrap();
        assert!(worker.contains("and the worker images are not"), "{worker}");
        let binaries = "[images.kubernetes]\nbinaries = \"bin\"\n";
        assert_eq!(
            missing_kubernetes(&profile(binaries), BaseImage::None),
            None
        );
    }
}
