//! The cache facade: pull, ls, inspect, verify, rm, prune, fsck over the store and the index.
//! See the crate docs for an example.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};

use crate::archive::write::{SaveFormat, SaveImage, write_archive};
use crate::archive::{
    Archive, ArchiveImage, Layer, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, Platform,
};
use crate::compression::Compression;
use crate::digest::{BlobDigest, DiffId, Digest, ImageId};
use crate::engine::Engine;
use crate::error::{Check, Error, Problem};
use crate::index::{ImageRecord, Index, LayerRecord, RefRecord, now};
use crate::lock::LockMode;
use crate::platform::PlatformSpec;
use crate::reference::Reference;
use crate::registry::{RegistryClient, RegistryOptions};
use crate::store::{IngestStart, Store};
use crate::verify::{ImageReport, Level, compare_layer, digest_layer};

/// How many layers download at once.
const PARALLEL_DOWNLOADS: usize = 4;
/// Attempts per blob when the connection breaks mid-body (each resumes where it stopped).
const BLOB_ATTEMPTS: u32 = 5;
/// Partial downloads untouched this long are swept.
const STALE_INGEST: Duration = Duration::from_secs(24 * 3600);

/// `$IMGCACHE_HOME`, else `$XDG_CACHE_HOME/imgcache`, else `~/.cache/imgcache`.
pub fn default_root() -> PathBuf {
    if let Some(p) = std::env::var_os("IMGCACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("imgcache");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/imgcache")
}

/// How to open a cache.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    pub root: PathBuf,
    /// How long to wait for another process's lock before failing with a message naming it.
    pub lock_timeout: Duration,
    pub registry: RegistryOptions,
}

impl CacheOptions {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.into(),
            lock_timeout: Duration::from_secs(600),
            registry: RegistryOptions::from_env(),
        }
    }
}

/// What `pull` should do.
#[derive(Clone, Default)]
pub struct PullOptions {
    /// Defaults to this machine's platform.
    pub platform: Option<PlatformSpec>,
    /// Answer from the cache only; never touch the network.
    pub offline: bool,
    /// Called as bytes arrive (for progress bars).
    pub progress: Option<Arc<dyn Fn(ProgressEvent) + Send + Sync>>,
}

/// Progress of a pull, blob by blob.
#[derive(Debug, Clone)]
pub enum ProgressEvent {
    Started {
        digest: BlobDigest,
        size: u64,
        resumed_at: u64,
    },
    Bytes {
        digest: BlobDigest,
        bytes: u64,
    },
    Done {
        digest: BlobDigest,
        fetched: bool,
    },
}

/// The result of a pull.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    pub reference: String,
    pub image_id: ImageId,
    /// The digest the reference resolved to (an index, or the manifest).
    pub distribution_digest: BlobDigest,
    pub manifest_digest: BlobDigest,
    pub platform: String,
    pub bytes_fetched: u64,
    pub bytes_reused: u64,
    pub blobs_fetched: usize,
    pub blobs_reused: usize,
    /// True when the network was not used at all.
    pub from_cache: bool,
}

/// One row of `ls`.
#[derive(Debug, Clone, Serialize)]
pub struct ListEntry {
    pub reference: String,
    pub image_id: ImageId,
    pub manifest_digest: BlobDigest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<BlobDigest>,
    pub platform: String,
    pub size: u64,
    pub last_used: i64,
}

/// What `inspect REF` shows.
#[derive(Debug, Clone, Serialize)]
pub struct CachedImage {
    #[serde(flatten)]
    pub entry: ListEntry,
    pub media_type: String,
    pub created: Option<String>,
    pub layers: Vec<CachedLayer>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CachedLayer {
    pub digest: BlobDigest,
    pub size: u64,
    pub media_type: String,
    pub diff_id: Option<DiffId>,
    pub present: bool,
}

/// What `status` found.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub reference: String,
    pub cached: bool,
    /// The cached image passes the fast checks.
    pub valid: bool,
    pub image_id: Option<ImageId>,
    pub failures: Vec<Problem>,
    pub engine: EngineStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct EngineStatus {
    pub kind: String,
    pub endpoint: String,
    /// The engine holds the cached image ID.
    pub present: bool,
    /// What the engine itself calls that image.
    pub engine_id: Option<String>,
    /// The engine's reference names that image.
    pub tagged: bool,
    /// The image the engine's reference names now, normalized.
    pub tag_image_id: Option<ImageId>,
}

/// What `load` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadAction {
    /// The engine had the image and the tag: nothing sent.
    AlreadyPresent,
    /// The engine had the image: only the tag was added.
    Tagged,
    /// The image was streamed to the engine.
    Loaded,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub reference: String,
    pub image_id: ImageId,
    pub engine: String,
    pub endpoint: String,
    pub engine_id: String,
    pub action: LoadAction,
    /// The image was pulled first.
    pub pulled: bool,
}

/// One image `import` stored.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub image_id: ImageId,
    pub manifest_digest: BlobDigest,
    pub references: Vec<String>,
    pub platform: String,
    /// Layer bytes newly stored (layers already in the cache are not copied again).
    pub bytes_stored: u64,
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub references_evicted: Vec<String>,
    pub images_removed: usize,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    pub partials_removed: usize,
}

/// What `fsck` found (and, with `--repair`, did).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FsckReport {
    pub ok: bool,
    pub blobs_checked: usize,
    /// Needed by a reference but absent (deleted by hand?).
    pub missing: Vec<String>,
    /// Content that does not hash to its name.
    pub corrupt: Vec<String>,
    /// Present but needed by no reference (prune removes them).
    pub unreferenced: Vec<String>,
    /// References whose image is incomplete.
    pub broken_references: Vec<String>,
    /// References in `refs.json` the index lacks (`--repair` restores those whose blobs remain).
    pub lost_references: Vec<String>,
    pub repaired: Vec<String>,
}

pub struct Cache {
    store: Arc<Store>,
    index: Mutex<Index>,
    registry: RegistryOptions,
    client: OnceLock<RegistryClient>,
}

impl Cache {
    /// Opens (creating if needed) the cache at `root` with default options.
    pub fn open(root: &Path) -> Result<Self, Error> {
        Self::open_with(CacheOptions::new(root))
    }

    pub fn open_with(opts: CacheOptions) -> Result<Self, Error> {
        let store = Store::open(&opts.root, opts.lock_timeout)?;
        let db = opts.root.join("index.db");
        let index = Index::open(&db).map_err(|e| match e {
            Error::Index { path, message } => Error::Index {
                path,
                message: format!("{message}; `imgcache fsck --repair` rebuilds it from the blobs"),
            },
            other => other,
        })?;
        Ok(Self {
            store: Arc::new(store),
            index: Mutex::new(index),
            registry: opts.registry,
            client: OnceLock::new(),
        })
    }

    /// Opens the cache for `fsck --repair`: an index that cannot be opened is moved aside
    /// (`index.db.broken-<time>`) and a new one is built from the blobs and `refs.json`.
    pub fn open_for_repair(opts: CacheOptions) -> Result<Self, Error> {
        let db = opts.root.join("index.db");
        if let Err(e) =
            Store::open(&opts.root, opts.lock_timeout).and_then(|_| Index::open(&db).map(drop))
        {
            if !matches!(e, Error::Index { .. }) {
                return Err(e);
            }
            tracing::warn!("{e}: moving it aside and rebuilding");
            let stamp = now();
            for suffix in ["", "-wal", "-shm"] {
                let from = opts.root.join(format!("index.db{suffix}"));
                if from.exists() {
                    let to = opts.root.join(format!("index.db{suffix}.broken-{stamp}"));
                    std::fs::rename(&from, &to).map_err(|e| Error::io(&from, e))?;
                }
            }
        }
        Self::open_with(opts)
    }

    pub fn root(&self) -> &Path {
        self.store.root()
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn client(&self) -> Result<&RegistryClient, Error> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let c = RegistryClient::new(self.registry.clone())?;
        Ok(self.client.get_or_init(|| c))
    }

    /// Pulls `reference` into the cache. A cached digest-pinned reference, or any cached
    /// reference with `offline`, never touches the network. Blobs already stored are reused;
    /// the image becomes visible (its manifest stored, the reference recorded) only once every
    /// blob is stored and verified.
    pub async fn pull(&self, reference: &str, opts: &PullOptions) -> Result<PullReport, Error> {
        let reference = Reference::parse(reference)?;
        let name = reference.to_string();
        let platform = opts.platform.clone().unwrap_or_else(PlatformSpec::host);
        // Held for the whole pull: prune waits instead of deleting blobs this pull needs.
        let _gc = blocking(|| self.store.gc_lock(LockMode::Shared))?;

        if let Some(report) = self.pull_from_cache(&reference, &platform, opts.offline)? {
            return Ok(report);
        }
        if opts.offline {
            return Err(Error::NotCached { reference: name });
        }
        self.store.sweep_ingest(STALE_INGEST).ok();
        let client = self.client()?.clone();
        let top = client.fetch_manifest(&reference).await?;
        let distribution_digest = BlobDigest(top.digest);
        let (index_bytes, manifest) = if is_index(&top.media_type, &top.bytes) {
            let child = select_platform(&name, &top.bytes, &platform)?;
            let m = client
                .fetch_manifest_by_digest(&reference.registry, &reference.repository, &child)
                .await?;
            (Some(top.bytes), m)
        } else {
            (None, top)
        };
        let parsed: ImageManifest =
            serde_json::from_slice(&manifest.bytes).map_err(|e| Error::Registry {
                registry: reference.registry.clone(),
                message: format!(
                    "{name}: manifest {} is not an image manifest: {e}",
                    manifest.digest
                ),
            })?;
        let config = descriptor(&parsed.config().clone(), &reference)?;
        if config.size > MAX_CONFIG_BYTES {
            return Err(Error::TooLarge {
                what: format!("{name}: config {}", config.digest),
                limit: MAX_CONFIG_BYTES,
            });
        }
        let layers: Vec<BlobRef> = parsed
            .layers()
            .iter()
            .map(|d| descriptor(d, &reference))
            .collect::<Result<_, _>>()?;

        let mut stats = Stats::default();
        stats.add(
            self.fetch_blob(&client, &reference, &config, opts).await?,
            config.size,
        );
        let config_bytes = blocking(|| self.store.read_blob(&config.digest, MAX_CONFIG_BYTES))?;
        let diff_ids = config_diff_ids(&config_bytes).map_err(|message| Error::Registry {
            registry: reference.registry.clone(),
            message: format!("{name}: config {}: {message}", config.digest),
        })?;
        // A single-platform image is recorded under its own platform; asking for another one
        // explicitly is refused, as Docker does.
        let own = config_platform(&config_bytes).unwrap_or_else(|| platform.clone());
        if index_bytes.is_none() && own != platform {
            if opts.platform.is_some() {
                return Err(Error::NoPlatform {
                    reference: name,
                    platform: platform.to_string(),
                    available: own.to_string(),
                });
            }
            tracing::info!("{name} is a single-platform image for {own}");
        }
        let platform = own;
        if diff_ids.len() != layers.len() {
            return Err(Error::Registry {
                registry: reference.registry.clone(),
                message: format!(
                    "{name}: the manifest lists {} layers but its config lists {} diff_ids",
                    layers.len(),
                    diff_ids.len()
                ),
            });
        }
        {
            use futures_util::{StreamExt, TryStreamExt};
            let fetched: Vec<(bool, u64)> = futures_util::stream::iter(layers.iter())
                .map(|l| async {
                    self.fetch_blob(&client, &reference, l, opts)
                        .await
                        .map(|f| (f, l.size))
                })
                .buffer_unordered(PARALLEL_DOWNLOADS)
                .try_collect()
                .await?;
            for (f, size) in fetched {
                stats.add(f, size);
            }
        }
        // Every blob is stored and verified: now the image may become visible.
        blocking(|| -> Result<(), Error> {
            self.store.put_bytes(&manifest.bytes)?;
            if let Some(b) = &index_bytes {
                self.store.put_bytes(b)?;
            }
            Ok(())
        })?;
        let record = ImageRecord {
            manifest_digest: BlobDigest(manifest.digest),
            media_type: manifest.media_type.clone(),
            image_id: ImageId(config.digest),
            config_size: config.size,
            platform: platform.to_string(),
            manifest_size: manifest.bytes.len() as u64,
            layers: layers
                .iter()
                .zip(&diff_ids)
                .map(|(l, d)| LayerRecord {
                    digest: BlobDigest(l.digest),
                    size: l.size,
                    media_type: l.media_type.clone(),
                    diff_id: Some(*d),
                })
                .collect(),
            last_used: now(),
        };
        let index_digest = index_bytes.as_ref().map(|_| distribution_digest);
        {
            let mut index = self.index();
            index.put_image(&record)?;
            index.put_ref(&RefRecord {
                name: name.clone(),
                platform: platform.to_string(),
                index_digest,
                manifest_digest: record.manifest_digest,
                updated_at: now(),
            })?;
        }
        self.save_refs()?;
        Ok(PullReport {
            reference: name,
            image_id: record.image_id,
            distribution_digest,
            manifest_digest: record.manifest_digest,
            platform: platform.to_string(),
            bytes_fetched: stats.bytes_fetched,
            bytes_reused: stats.bytes_reused,
            blobs_fetched: stats.blobs_fetched,
            blobs_reused: stats.blobs_reused,
            from_cache: false,
        })
    }

    /// Answers a pull from the cache when the content cannot have changed (a digest-pinned
    /// reference) or the caller forbids the network, and every blob is present.
    fn pull_from_cache(
        &self,
        reference: &Reference,
        platform: &PlatformSpec,
        offline: bool,
    ) -> Result<Option<PullReport>, Error> {
        let name = reference.to_string();
        let (manifest_digest, index_digest) = if let Some(d) = reference.digest {
            let pinned = BlobDigest(d);
            if self.index().get_image(&pinned)?.is_some() {
                (pinned, None)
            } else if self.store.has_blob(&d) {
                // The pinned digest is an index we stored: pick the platform from it.
                let bytes = self.store.read_blob(&d, MAX_MANIFEST_BYTES)?;
                match select_platform(&name, &bytes, platform) {
                    Ok(child) => (BlobDigest(child), Some(pinned)),
                    Err(_) => return Ok(None),
                }
            } else {
                return Ok(None);
            }
        } else if offline {
            match self.index().get_ref(&name, Some(&platform.to_string()))? {
                Some(r) => (r.manifest_digest, r.index_digest),
                None => return Ok(None),
            }
        } else {
            return Ok(None);
        };
        let index = self.index();
        let Some(img) = index.get_image(&manifest_digest)? else {
            return Ok(None);
        };
        if !self.is_complete(&img) {
            return Ok(None);
        }
        // Write only what changed: a repeated cached pull costs no index write (each costs
        // fsyncs); last use has the index's one-second resolution, enough for LRU eviction.
        if now() > img.last_used {
            index.touch(&manifest_digest)?;
        }
        let known = index.get_ref(&name, Some(&img.platform))?;
        let added = known
            .is_none_or(|r| r.manifest_digest != manifest_digest || r.index_digest != index_digest);
        if added {
            index.put_ref(&RefRecord {
                name: name.clone(),
                platform: img.platform.clone(),
                index_digest,
                manifest_digest,
                updated_at: now(),
            })?;
        }
        drop(index);
        if added {
            self.save_refs()?;
        }
        Ok(Some(PullReport {
            reference: name,
            image_id: img.image_id,
            distribution_digest: index_digest.unwrap_or(manifest_digest),
            manifest_digest,
            platform: img.platform.clone(),
            bytes_fetched: 0,
            // Counted as a network pull counts: the config and the layers.
            bytes_reused: img.size() - img.manifest_size,
            blobs_fetched: 0,
            blobs_reused: 1 + img.layers.len(),
            from_cache: true,
        }))
    }

    /// Mirrors the references into `refs.json`, so that the index can be rebuilt from it and
    /// the blobs if `index.db` is ever lost (`fsck --repair`). Written under a lock, from the
    /// index (the point where concurrent processes agree), temp file then rename.
    fn save_refs(&self) -> Result<(), Error> {
        let _lock = self.store.named_lock("refs", LockMode::Exclusive)?;
        self.write_refs(&[])
    }

    /// Removes references: `refs.json` first, then the index, under the refs lock. A process
    /// killed in between leaves the references in the index only, which `fsck` does not count
    /// as lost (the other order would make `fsck --repair` bring them back).
    fn remove_refs(&self, names: &[String]) -> Result<usize, Error> {
        let _lock = self.store.named_lock("refs", LockMode::Exclusive)?;
        self.write_refs(names)?;
        let index = self.index();
        let mut n = 0;
        for name in names {
            n += index.remove_ref(name)?;
        }
        Ok(n)
    }

    /// Writes the index's references, less `removed`; the caller holds the refs lock.
    fn write_refs(&self, removed: &[String]) -> Result<(), Error> {
        let mut refs = self.index().refs()?;
        refs.retain(|r| !removed.contains(&r.name));
        let json = serde_json::to_vec_pretty(&refs).map_err(|e| Error::Index {
            path: self.refs_path(),
            message: e.to_string(),
        })?;
        let tmp = self
            .root()
            .join("ingest")
            .join(format!("refs.json.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.refs_path())
        };
        write().map_err(|e| Error::io(self.refs_path(), e))
    }

    /// References `refs.json` lists but the index lacks (the index was lost or replaced).
    fn lost_refs(&self, index: &Index) -> Result<Vec<RefRecord>, Error> {
        let saved: Vec<RefRecord> = std::fs::read(self.refs_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut lost = Vec::new();
        for r in saved {
            if index.get_ref(&r.name, Some(&r.platform))?.is_none() {
                lost.push(r);
            }
        }
        Ok(lost)
    }

    fn refs_path(&self) -> PathBuf {
        self.root().join("refs.json")
    }

    /// Every blob of the image is on disk with its recorded size.
    fn is_complete(&self, img: &ImageRecord) -> bool {
        let sizes = [
            (img.manifest_digest.0, img.manifest_size),
            (img.image_id.0, img.config_size),
        ]
        .into_iter()
        .chain(img.layers.iter().map(|l| (l.digest.0, l.size)));
        sizes
            .into_iter()
            .all(|(d, size)| self.store.blob_size(&d) == Some(size))
    }

    /// Stores one blob, resuming a partial download; returns whether bytes were fetched.
    async fn fetch_blob(
        &self,
        client: &RegistryClient,
        reference: &Reference,
        blob: &BlobRef,
        opts: &PullOptions,
    ) -> Result<bool, Error> {
        let digest = blob.digest;
        let progress = |e: ProgressEvent| {
            if let Some(p) = &opts.progress {
                p(e);
            }
        };
        if self.store.blob_size(&digest) == Some(blob.size) {
            progress(ProgressEvent::Done {
                digest: BlobDigest(digest),
                fetched: false,
            });
            return Ok(false);
        }
        let store = self.store.clone();
        let size = blob.size;
        let start = tokio::task::spawn_blocking(move || store.ingest(&digest, Some(size)))
            .await
            .map_err(|e| Error::Registry {
                registry: reference.registry.clone(),
                message: format!("blob {digest}: {e}"),
            })??;
        let mut ingest = match start {
            IngestStart::Present => {
                progress(ProgressEvent::Done {
                    digest: BlobDigest(digest),
                    fetched: false,
                });
                return Ok(false);
            }
            IngestStart::Write(i) => i,
        };
        progress(ProgressEvent::Started {
            digest: BlobDigest(digest),
            size,
            resumed_at: ingest.offset(),
        });
        let mut attempt = 0;
        loop {
            attempt += 1;
            let offset = ingest.offset();
            if offset == size {
                break;
            }
            let result: Result<(), Error> = async {
                let mut resp = client
                    .fetch_blob(&reference.registry, &reference.repository, &digest, offset)
                    .await?;
                if resp.offset != offset {
                    blocking(|| ingest.reset())?;
                }
                while let Some(chunk) = resp.chunk().await? {
                    blocking(|| ingest.write(&chunk))?;
                    progress(ProgressEvent::Bytes {
                        digest: BlobDigest(digest),
                        bytes: chunk.len() as u64,
                    });
                }
                if ingest.offset() < size {
                    return Err(Error::Registry {
                        registry: reference.registry.clone(),
                        message: format!(
                            "blob {digest}: the body ended after {} of {size} bytes",
                            ingest.offset()
                        ),
                    });
                }
                Ok(())
            }
            .await;
            match result {
                Ok(()) => break,
                Err(e @ Error::Registry { .. }) if attempt < BLOB_ATTEMPTS => {
                    tracing::warn!(
                        "{e}; resuming at byte {} (attempt {attempt})",
                        ingest.offset()
                    );
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e),
            }
        }
        blocking(|| ingest.commit())?;
        progress(ProgressEvent::Done {
            digest: BlobDigest(digest),
            fetched: true,
        });
        Ok(true)
    }

    /// The image a reference names: the most recent record of its normalized name, or an
    /// image ID (full or bare hex).
    fn resolve(&self, reference: &str) -> Result<(Option<RefRecord>, ImageRecord), Error> {
        let index = self.index();
        let not_cached = || Error::NotCached {
            reference: reference.to_owned(),
        };
        if let Ok(r) = Reference::parse(reference)
            && let Some(rec) = index.get_ref(&r.to_string(), None)?
        {
            let img = index
                .get_image(&rec.manifest_digest)?
                .ok_or_else(not_cached)?;
            return Ok((Some(rec), img));
        }
        if let Ok(id) = ImageId::parse_user(reference) {
            let img = index
                .images()?
                .into_iter()
                .find(|i| i.image_id == id)
                .ok_or_else(not_cached)?;
            return Ok((None, img));
        }
        Err(not_cached())
    }

    /// Writes a cached image as a loadable tarball to `out` (see [`SaveFormat`]). The image
    /// is fast-verified first; a missing or damaged blob stops the save before anything is
    /// written.
    pub fn save(
        &self,
        reference: &str,
        format: SaveFormat,
        out: impl Write,
    ) -> Result<ImageRecord, Error> {
        let _gc = self.store.gc_lock(LockMode::Shared)?;
        let (rec, img) = self.resolve(reference)?;
        let report = self.verify(reference, Level::Fast)?;
        if let Some(f) = report.failures.first() {
            return Err(Error::archive(self.root(), f.clone()));
        }
        let name = match &rec {
            Some(r) => Some(Reference::parse(&r.name)?),
            None => None,
        };
        self.index().touch(&img.manifest_digest)?;
        let image = SaveImage {
            record: &img,
            reference: name.as_ref(),
        };
        write_archive(&self.store, &[image], format, out)?;
        Ok(img)
    }

    /// Imports the images of an archive (all, or those `select` picks) into the cache, their
    /// image IDs unchanged (config bytes kept) and layers stored as given. Each image is
    /// verified deep first; nothing of an image that fails is recorded. `tag` names the
    /// imported image (only with one image); otherwise the archive's own tags are used, and an
    /// untagged image is recorded under its image ID.
    pub fn import(
        &self,
        path: &Path,
        tag: Option<&str>,
        select: Option<&str>,
    ) -> Result<Vec<ImportReport>, Error> {
        let archive = Archive::open(path)?;
        let images: Vec<&ArchiveImage> = match select {
            Some(sel) => archive.select(sel)?,
            None => archive.images.iter().collect(),
        };
        let tag = tag.map(Reference::parse).transpose()?;
        if tag.is_some() && images.len() > 1 {
            return Err(Error::Usage(format!(
                "--tag names one image, but {} holds {}: pick one with --image",
                path.display(),
                images.len()
            )));
        }
        let mut reports: Vec<ImageReport> = images
            .iter()
            .map(|i| crate::verify::image_report(i, None))
            .collect();
        let hashes = crate::verify::deep_check(&archive, &images, &mut reports);
        if let Some((img, r)) = images
            .iter()
            .zip(&reports)
            .find(|(_, r)| !r.failures.is_empty())
        {
            let id = img.id().map_or("?".into(), |d| d.to_string());
            let mut p = r.failures[0].clone();
            p.message = format!("image {id}: {}", p.message);
            return Err(Error::archive(path, p));
        }
        let _gc = self.store.gc_lock(LockMode::Shared)?;
        let mut out = Vec::new();
        for img in &images {
            out.push(self.import_image(&archive, img, &hashes, tag.as_ref())?);
        }
        self.save_refs()?;
        Ok(out)
    }

    fn import_image(
        &self,
        archive: &Archive,
        img: &ArchiveImage,
        hashes: &crate::verify::LayerHashes,
        tag: Option<&Reference>,
    ) -> Result<ImportReport, Error> {
        let path = archive.path();
        let image_id = img.image_id.ok_or_else(|| Error::NotCached {
            reference: img.config_entry.clone(),
        })?;
        let config = archive.read_entry(&img.config_entry, MAX_CONFIG_BYTES)?;
        let mut stored_bytes = 0u64;
        if self.store.put_bytes(&config)? != image_id.0 {
            return Err(Error::DigestMismatch {
                what: format!("{}: config", path.display()),
                expected: image_id.to_string(),
                found: Digest::of_bytes(&config).to_string(),
            });
        }
        let mut layers = Vec::new();
        for (i, layer) in img.layers.iter().enumerate() {
            let digests = match hashes.get(layer) {
                Some(Ok(d)) => d,
                _ => {
                    return Err(Error::archive(
                        path,
                        Problem::new(Check::LayerData, format!("layer {i} was not verified"))
                            .layer(i),
                    ));
                }
            };
            let (offset, size) = Archive::layer_range(layer).unwrap_or_default();
            if let IngestStart::Write(mut ingest) =
                self.store.ingest(&digests.stored, Some(size))?
            {
                ingest.reset()?;
                archive.with_range(offset, size, |r| {
                    let mut buf = vec![0u8; 1024 * 1024];
                    loop {
                        let n = r.read(&mut buf)?;
                        if n == 0 {
                            return Ok(());
                        }
                        ingest.write(&buf[..n]).map_err(std::io::Error::other)?;
                    }
                })?;
                ingest.commit()?;
                stored_bytes += size;
            }
            let media_type = layer.media_type.clone().unwrap_or_else(|| {
                match layer.compression {
                    Some(Compression::Gzip) => "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    Some(Compression::Zstd) => "application/vnd.oci.image.layer.v1.tar+zstd",
                    _ => "application/vnd.docker.image.rootfs.diff.tar",
                }
                .to_owned()
            });
            layers.push(LayerRecord {
                digest: BlobDigest(digests.stored),
                size,
                media_type,
                diff_id: layer.diff_id,
            });
        }
        // The archive's own manifest when it has one (OCI dialects), else one made for it.
        let (manifest_bytes, media_type) = match img.manifest_digest {
            Some(d) => {
                let bytes = archive
                    .read_entry(&format!("blobs/sha256/{}", d.0.hex()), MAX_MANIFEST_BYTES)?;
                let mt = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| crate::registry::MEDIA_TYPE_OCI_MANIFEST.to_owned());
                (bytes, mt)
            }
            None => (
                synthesize_manifest(image_id, config.len() as u64, &layers),
                DOCKER_MANIFEST.to_owned(),
            ),
        };
        let manifest_digest = BlobDigest(self.store.put_bytes(&manifest_bytes)?);
        let platform = img.platform.as_ref().map_or_else(
            || "unknown/unknown".to_owned(),
            |p| PlatformSpec::new(&p.os, &p.architecture, p.variant.as_deref()).to_string(),
        );
        let record = ImageRecord {
            manifest_digest,
            media_type,
            image_id,
            config_size: config.len() as u64,
            platform: platform.clone(),
            manifest_size: manifest_bytes.len() as u64,
            layers,
            last_used: now(),
        };
        let mut names: Vec<String> = match tag {
            Some(t) => vec![t.to_string()],
            None => img
                .tags
                .iter()
                .filter_map(|t| Reference::parse(t).ok())
                .map(|r| r.to_string())
                .collect(),
        };
        if names.is_empty() {
            names.push(image_id.to_string());
        }
        let mut index = self.index();
        index.put_image(&record)?;
        for n in &names {
            index.put_ref(&RefRecord {
                name: n.clone(),
                platform: platform.clone(),
                index_digest: None,
                manifest_digest,
                updated_at: now(),
            })?;
        }
        Ok(ImportReport {
            image_id,
            manifest_digest,
            references: names,
            platform,
            bytes_stored: stored_bytes,
        })
    }

    /// Is `reference` cached, does it verify (fast), and does `engine` hold its image ID
    /// (and the tag)? The engine's own ID is shown next to the image ID.
    pub fn status(&self, reference: &str, engine: &dyn Engine) -> Result<StatusReport, Error> {
        let name = Reference::parse(reference)?.to_string();
        let cached = match self.resolve(reference) {
            Ok((_, img)) => Some(img),
            Err(Error::NotCached { .. }) => None,
            Err(e) => return Err(e),
        };
        let failures = match &cached {
            Some(_) => self.verify(reference, Level::Fast)?.failures,
            None => Vec::new(),
        };
        engine.ping()?;
        let image_id = cached.as_ref().map(|i| i.image_id);
        let in_engine = match image_id {
            Some(id) => engine.image(&id)?,
            None => None,
        };
        let tag_image_id = engine.image_for_ref(&name)?.map(|i| i.image_id);
        Ok(StatusReport {
            reference: name,
            cached: cached.is_some(),
            valid: cached.is_some() && failures.is_empty(),
            image_id,
            failures,
            engine: EngineStatus {
                kind: engine.kind().to_string(),
                endpoint: engine.endpoint(),
                present: in_engine.is_some(),
                engine_id: in_engine.map(|i| i.engine_id),
                tagged: image_id.is_some() && tag_image_id == image_id,
                tag_image_id,
            },
        })
    }

    /// Hands `reference` to `engine` only when the engine lacks its image ID: pulls it first
    /// when it is not cached (unless `opts.offline`), verifies it (fast), re-tags when only the
    /// tag is missing, otherwise streams a tarball to the engine and confirms the engine then
    /// reports the same image ID under the tag. A failed load changes nothing in the cache.
    pub async fn load(
        &self,
        reference: &str,
        engine: &dyn Engine,
        opts: &PullOptions,
    ) -> Result<LoadReport, Error> {
        let parsed = Reference::parse(reference)?;
        let name = parsed.to_string();
        // An engine that cannot take the image makes pulling it pointless.
        blocking(|| engine.ping())?;
        let pulled = match self.resolve(&name) {
            Ok(_) => false,
            Err(Error::NotCached { .. }) if !opts.offline => {
                self.pull(&name, opts).await?;
                true
            }
            Err(e) => return Err(e),
        };
        blocking(|| self.load_cached(&name, parsed.tag.is_some(), engine, pulled))
    }

    fn load_cached(
        &self,
        name: &str,
        tagged_ref: bool,
        engine: &dyn Engine,
        pulled: bool,
    ) -> Result<LoadReport, Error> {
        let (_, img) = self.resolve(name)?;
        let report = self.verify(name, Level::Fast)?;
        if let Some(f) = report.failures.first() {
            let mut p = f.clone();
            p.message = format!(
                "{name}: {} (run `imgcache fsck --repair`, then pull again)",
                p.message
            );
            return Err(Error::archive(self.root(), p));
        }
        engine.ping()?;
        let id = img.image_id;
        let has_tag = |engine: &dyn Engine| -> Result<bool, Error> {
            Ok(!tagged_ref
                || engine
                    .image_for_ref(name)?
                    .is_some_and(|i| i.image_id == id))
        };
        let present = engine.image(&id)?;
        let action = if let Some(found) = present {
            if has_tag(engine)? {
                // Nothing changed: no need to ask the engine again.
                return Ok(LoadReport {
                    reference: name.to_owned(),
                    image_id: id,
                    engine: engine.kind().to_string(),
                    endpoint: engine.endpoint(),
                    engine_id: found.engine_id,
                    action: LoadAction::AlreadyPresent,
                    pulled,
                });
            } else {
                engine.tag(&id, name)?;
                LoadAction::Tagged
            }
        } else {
            engine.load_with(&mut |w: &mut dyn Write| {
                self.save(name, SaveFormat::Combined, w).map(drop)
            })?;
            LoadAction::Loaded
        };
        let found = engine.image(&id)?;
        let Some(found) = found else {
            let tag_points = engine.image_for_ref(name)?.map(|i| i.image_id.to_string());
            return Err(Error::Engine {
                engine: engine.kind().to_string(),
                message: format!(
                    "after loading {name}, the engine does not report image {id}{}",
                    tag_points
                        .map(|t| format!(" (its {name} is {t})"))
                        .unwrap_or_default()
                ),
            });
        };
        if !has_tag(engine)? {
            return Err(Error::Engine {
                engine: engine.kind().to_string(),
                message: format!("after loading, {name} does not name image {id} in the engine"),
            });
        }
        Ok(LoadReport {
            reference: name.to_owned(),
            image_id: id,
            engine: engine.kind().to_string(),
            endpoint: engine.endpoint(),
            engine_id: found.engine_id,
            action,
            pulled,
        })
    }

    /// Every cached reference with its image.
    pub fn ls(&self) -> Result<Vec<ListEntry>, Error> {
        let index = self.index();
        let mut out = Vec::new();
        for r in index.refs()? {
            if let Some(img) = index.get_image(&r.manifest_digest)? {
                out.push(list_entry(&r.name, r.index_digest, &img));
            }
        }
        Ok(out)
    }

    /// A cached image in detail.
    pub fn inspect(&self, reference: &str) -> Result<CachedImage, Error> {
        let (rec, img) = self.resolve(reference)?;
        let name = rec
            .as_ref()
            .map_or_else(|| reference.to_owned(), |r| r.name.clone());
        let created = self
            .store
            .read_blob(&img.image_id.0, MAX_CONFIG_BYTES)
            .ok()
            .and_then(|b| serde_json::from_slice::<ImageConfiguration>(&b).ok())
            .and_then(|c| c.created().clone());
        Ok(CachedImage {
            entry: list_entry(&name, rec.and_then(|r| r.index_digest), &img),
            media_type: img.media_type.clone(),
            created,
            layers: img
                .layers
                .iter()
                .map(|l| CachedLayer {
                    digest: l.digest,
                    size: l.size,
                    media_type: l.media_type.clone(),
                    diff_id: l.diff_id,
                    present: self.store.blob_size(&l.digest.0) == Some(l.size),
                })
                .collect(),
        })
    }

    /// Verifies a cached image at the given level, on the stored blobs.
    pub fn verify(&self, reference: &str, level: Level) -> Result<ImageReport, Error> {
        let (rec, img) = self.resolve(reference)?;
        let _gc = self.store.gc_lock(LockMode::Shared)?;
        let mut failures = Vec::new();
        let blob_entry = |d: &Digest| format!("blobs/sha256/{}", d.hex());
        let mut check_small = |d: &Digest, limit: u64, check: Check, what: &str| match self
            .store
            .read_blob(d, limit)
        {
            Ok(b) => Some(b),
            Err(e) => {
                failures.push(Problem::new(check, format!("{what} {d}: {e}")).entry(blob_entry(d)));
                None
            }
        };
        check_small(
            &img.manifest_digest.0,
            MAX_MANIFEST_BYTES,
            Check::ManifestDigest,
            "manifest",
        );
        let config = check_small(
            &img.image_id.0,
            MAX_CONFIG_BYTES,
            Check::ConfigDigest,
            "config",
        );
        let mut platform = None;
        if let Some(bytes) = &config {
            match serde_json::from_slice::<ImageConfiguration>(bytes) {
                Ok(cfg) => {
                    platform = Some(Platform {
                        os: cfg.os().to_string(),
                        architecture: cfg.architecture().to_string(),
                        variant: cfg.variant().clone(),
                    });
                    if cfg.rootfs().diff_ids().len() != img.layers.len() {
                        failures.push(
                            Problem::new(
                                Check::LayerCount,
                                "layer count differs from the config's diff_id count",
                            )
                            .mismatch(img.layers.len(), cfg.rootfs().diff_ids().len()),
                        );
                    }
                }
                Err(e) => failures.push(Problem::new(
                    Check::InvalidJson,
                    format!("config is not an image config: {e}"),
                )),
            }
        }
        let mut layers = Vec::new();
        for (i, l) in img.layers.iter().enumerate() {
            let entry = blob_entry(&l.digest.0);
            let found = self.store.blob_size(&l.digest.0);
            let compression = self.store.open_blob(&l.digest.0).ok().and_then(|f| {
                let mut prefix = [0u8; 8];
                use std::os::unix::fs::FileExt;
                f.read_at(&mut prefix, 0)
                    .ok()
                    .map(|n| Compression::detect(&prefix[..n]))
            });
            match found {
                None => failures.push(
                    Problem::new(
                        Check::MissingEntry,
                        format!("layer {i} blob {} is missing from the store", l.digest),
                    )
                    .entry(&entry)
                    .layer(i),
                ),
                Some(s) if s != l.size => failures.push(
                    Problem::new(
                        Check::LayerSize,
                        format!("layer {i} blob {} has the wrong size", l.digest),
                    )
                    .entry(&entry)
                    .layer(i)
                    .mismatch(l.size, s),
                ),
                Some(_) => {}
            }
            layers.push(Layer {
                entry,
                blob_digest: Some(l.digest),
                name_digest: None,
                diff_id: l.diff_id,
                size: found,
                media_type: Some(l.media_type.clone()),
                compression,
                offset: Some(0),
            });
        }
        if level == Level::Deep && failures.is_empty() {
            self.deep_check_layers(&layers, &mut failures);
        }
        Ok(ImageReport {
            ok: failures.is_empty(),
            image_id: Some(img.image_id),
            tags: rec.map(|r| vec![r.name]).unwrap_or_default(),
            platform,
            layer_count: img.layers.len(),
            size: img.size(),
            layers,
            failures,
            warnings: Vec::new(),
        })
    }

    fn deep_check_layers(&self, layers: &[Layer], failures: &mut Vec<Problem>) {
        use rayon::prelude::*;
        let results: Vec<Vec<Problem>> = layers
            .par_iter()
            .enumerate()
            .map(|(i, layer)| {
                let mut out = Vec::new();
                let (Some(blob), Some(c)) = (layer.blob_digest, layer.compression) else {
                    return out;
                };
                match self
                    .store
                    .open_blob(&blob.0)
                    .map_err(|e| e.to_string())
                    .and_then(|mut f| digest_layer(&mut f, c).map_err(|e| e.to_string()))
                {
                    Ok(d) => {
                        compare_layer(i, layer, &d, &mut out);
                        if out.is_empty()
                            && let (Ok(u), Some(diff)) = (&d.uncompressed, layer.diff_id)
                            && DiffId(*u) == diff
                        {
                            self.index().record_verified_layer(&blob, &diff).ok();
                        }
                    }
                    Err(e) => out.push(
                        Problem::new(Check::LayerData, format!("layer {i} cannot be read: {e}"))
                            .entry(&layer.entry)
                            .layer(i),
                    ),
                }
                out
            })
            .collect();
        failures.extend(results.into_iter().flatten());
    }

    /// Drops a reference (every platform of it). Blobs stay until `prune`.
    pub fn rm(&self, reference: &str) -> Result<usize, Error> {
        let name = Reference::parse(reference)?.to_string();
        // Shared like a pull: prune waits until the reference is gone from both records.
        let _gc = self.store.gc_lock(LockMode::Shared)?;
        if self.index().get_ref(&name, None)?.is_none() {
            return Err(Error::NotCached { reference: name });
        }
        self.remove_refs(&[name])
    }

    /// Removes blobs no reference needs; with `max_size`, first evicts the least recently
    /// used images until the cache fits.
    pub fn prune(&self, max_size: Option<u64>) -> Result<PruneReport, Error> {
        let _gc = self.store.gc_lock(LockMode::Exclusive)?;
        let mut report = PruneReport::default();
        let index = self.index();
        // A lost index would make every blob look unreferenced: refuse instead of emptying.
        let lost = self.lost_refs(&index)?;
        if !lost.is_empty() {
            return Err(Error::Index {
                path: self.root().join("index.db"),
                message: format!(
                    "it lacks {} references that refs.json lists (e.g. {}); run `imgcache fsck --repair` before pruning",
                    lost.len(),
                    lost[0].name
                ),
            });
        }
        if let Some(max) = max_size {
            let refs = index.refs()?;
            let mut images: Vec<ImageRecord> = index.images()?;
            images.sort_by_key(|i| i.last_used);
            let mut live: HashMap<Digest, u64> = HashMap::new();
            for img in &images {
                for (d, s) in blob_sizes(img) {
                    live.insert(d, s);
                }
            }
            let mut total: u64 = live.values().sum();
            let mut evicted: HashSet<BlobDigest> = HashSet::new();
            for img in &images {
                if total <= max {
                    break;
                }
                for r in refs
                    .iter()
                    .filter(|r| r.manifest_digest == img.manifest_digest)
                {
                    report.references_evicted.push(r.name.clone());
                }
                evicted.insert(img.manifest_digest);
                // Blobs shared with images that stay are not freed.
                let keep: HashSet<Digest> = images
                    .iter()
                    .filter(|i| !evicted.contains(&i.manifest_digest))
                    .flat_map(|i| i.blobs().collect::<Vec<_>>())
                    .collect();
                total = live
                    .iter()
                    .filter(|(d, _)| keep.contains(d))
                    .map(|(_, s)| s)
                    .sum();
            }
        }
        drop(index);
        if !report.references_evicted.is_empty() {
            report.references_evicted.dedup();
            self.remove_refs(&report.references_evicted)?;
        }
        let mut index = self.index();
        report.images_removed = index.remove_unreferenced_images()?.len();
        let reachable = index.reachable_blobs()?;
        drop(index);
        for (d, size) in self.store.list_blobs()? {
            if !reachable.contains(&d) {
                self.store.remove_blob(&d)?;
                self.index().forget_blob(&d)?;
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
        }
        report.partials_removed = self.store.sweep_ingest(STALE_INGEST)?;
        Ok(report)
    }

    /// Checks the store against the index: missing, corrupt (with `deep`) and unreferenced
    /// blobs. With `repair`: rebuilds image records from the stored manifests and removes
    /// corrupt blobs (a later pull fetches them again); nothing that verifies is removed.
    pub fn fsck(&self, deep: bool, repair: bool) -> Result<FsckReport, Error> {
        let _gc = self.store.gc_lock(if repair {
            LockMode::Exclusive
        } else {
            LockMode::Shared
        })?;
        let mut report = FsckReport::default();
        let blobs: HashMap<Digest, u64> = self.store.list_blobs()?.into_iter().collect();
        report.blobs_checked = blobs.len();
        if deep {
            use rayon::prelude::*;
            let corrupt: Vec<Digest> = blobs
                .par_iter()
                .filter_map(|(d, _)| {
                    let mut f = self.store.open_blob(d).ok()?;
                    let mut buf = vec![0u8; 1024 * 1024];
                    match crate::digest::hash_reader(&mut f, &mut buf) {
                        Ok((got, _)) if got == *d => None,
                        _ => Some(*d),
                    }
                })
                .collect();
            for d in corrupt {
                report.corrupt.push(d.to_string());
                if repair {
                    self.store.remove_blob(&d)?;
                    self.index().forget_blob(&d)?;
                    report.repaired.push(format!("removed corrupt blob {d}"));
                }
            }
        }
        let corrupt: HashSet<String> = report.corrupt.iter().cloned().collect();
        let present = |d: &Digest| blobs.contains_key(d) && !corrupt.contains(&d.to_string());
        let mut index = self.index();
        for r in self.lost_refs(&index)? {
            if repair && present(&r.manifest_digest.0) {
                index.put_ref(&r)?;
                report
                    .repaired
                    .push(format!("restored the reference {} from refs.json", r.name));
            } else {
                report.lost_references.push(r.name.clone());
            }
        }
        if repair {
            // Rebuild image records from the manifests the references name.
            for r in index.refs()? {
                if index.get_image(&r.manifest_digest)?.is_none()
                    && present(&r.manifest_digest.0)
                    && let Some(img) = self.image_from_blobs(&r.manifest_digest, &r.platform)
                {
                    index.put_image(&img)?;
                    report
                        .repaired
                        .push(format!("rebuilt the index record of {}", r.name));
                }
            }
        }
        let mut missing = HashSet::new();
        for r in index.refs()? {
            let mut broken = false;
            match index.get_image(&r.manifest_digest)? {
                Some(img) => {
                    for d in img.blobs() {
                        if !present(&d) {
                            missing.insert(d);
                            broken = true;
                        }
                    }
                }
                None => {
                    missing.insert(r.manifest_digest.0);
                    broken = true;
                }
            }
            if let Some(i) = r.index_digest
                && !present(&i.0)
            {
                missing.insert(i.0);
            }
            if broken {
                report.broken_references.push(r.name.clone());
            }
        }
        let reachable = index.reachable_blobs()?;
        drop(index);
        report.missing = missing
            .iter()
            .filter(|d| !corrupt.contains(&d.to_string()))
            .map(|d| d.to_string())
            .collect();
        report.missing.sort();
        report.unreferenced = blobs
            .keys()
            .filter(|d| !reachable.contains(d))
            .map(|d| d.to_string())
            .collect();
        report.unreferenced.sort();
        report.broken_references.sort();
        report.broken_references.dedup();
        report.ok = report.missing.is_empty()
            && report.corrupt.is_empty()
            && report.broken_references.is_empty()
            && report.lost_references.is_empty();
        Ok(report)
    }

    /// An image record recomputed from a stored manifest and config.
    fn image_from_blobs(
        &self,
        manifest_digest: &BlobDigest,
        platform: &str,
    ) -> Option<ImageRecord> {
        let bytes = self
            .store
            .read_blob(&manifest_digest.0, MAX_MANIFEST_BYTES)
            .ok()?;
        let m: ImageManifest = serde_json::from_slice(&bytes).ok()?;
        let config = Digest::parse(m.config().digest().as_ref()).ok()?;
        let config_bytes = self.store.read_blob(&config, MAX_CONFIG_BYTES).ok()?;
        let diff_ids = config_diff_ids(&config_bytes).ok()?;
        let layers = m
            .layers()
            .iter()
            .enumerate()
            .map(|(i, d)| {
                Some(LayerRecord {
                    digest: BlobDigest(Digest::parse(d.digest().as_ref()).ok()?),
                    size: d.size(),
                    media_type: d.media_type().to_string(),
                    diff_id: diff_ids.get(i).copied(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(ImageRecord {
            manifest_digest: *manifest_digest,
            media_type: m
                .media_type()
                .as_ref()
                .map_or_else(String::new, |t| t.to_string()),
            image_id: ImageId(config),
            config_size: config_bytes.len() as u64,
            platform: platform.to_owned(),
            manifest_size: bytes.len() as u64,
            layers,
            last_used: now(),
        })
    }
}

fn list_entry(name: &str, index_digest: Option<BlobDigest>, img: &ImageRecord) -> ListEntry {
    ListEntry {
        reference: name.to_owned(),
        image_id: img.image_id,
        manifest_digest: img.manifest_digest,
        index_digest,
        platform: img.platform.clone(),
        size: img.size(),
        last_used: img.last_used,
    }
}

fn blob_sizes(img: &ImageRecord) -> Vec<(Digest, u64)> {
    let mut v = vec![
        (img.manifest_digest.0, img.manifest_size),
        (img.image_id.0, img.config_size),
    ];
    v.extend(img.layers.iter().map(|l| (l.digest.0, l.size)));
    v
}

/// A blob a manifest names.
struct BlobRef {
    digest: Digest,
    size: u64,
    media_type: String,
}

fn descriptor(d: &Descriptor, reference: &Reference) -> Result<BlobRef, Error> {
    let digest = Digest::parse(d.digest().as_ref()).map_err(|e| Error::Registry {
        registry: reference.registry.clone(),
        message: format!("{reference}: the manifest names a blob by an invalid digest: {e}"),
    })?;
    Ok(BlobRef {
        digest,
        size: d.size(),
        media_type: d.media_type().to_string(),
    })
}

fn config_platform(bytes: &[u8]) -> Option<PlatformSpec> {
    let cfg: ImageConfiguration = serde_json::from_slice(bytes).ok()?;
    Some(PlatformSpec::new(
        &cfg.os().to_string(),
        &cfg.architecture().to_string(),
        cfg.variant().as_deref(),
    ))
}

fn config_diff_ids(bytes: &[u8]) -> Result<Vec<DiffId>, String> {
    let cfg: ImageConfiguration =
        serde_json::from_slice(bytes).map_err(|e| format!("not an image config: {e}"))?;
    cfg.rootfs()
        .diff_ids()
        .iter()
        .map(|d| DiffId::parse(d).map_err(|e| e.to_string()))
        .collect()
}

#[derive(Default)]
struct Stats {
    bytes_fetched: u64,
    bytes_reused: u64,
    blobs_fetched: usize,
    blobs_reused: usize,
}

impl Stats {
    fn add(&mut self, fetched: bool, size: u64) {
        if fetched {
            self.bytes_fetched += size;
            self.blobs_fetched += 1;
        } else {
            self.bytes_reused += size;
            self.blobs_reused += 1;
        }
    }
}

/// Runs blocking file work (locks, fsync) without stalling the async runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A Docker v2 manifest for an image imported from an archive that keeps none (docker-archive
/// dialects): new JSON describing the stored blobs, not a re-serialization of anything.
fn synthesize_manifest(image_id: ImageId, config_size: u64, layers: &[LayerRecord]) -> Vec<u8> {
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": config_size,
            "digest": image_id,
        },
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": l.media_type,
            "size": l.size,
            "digest": l.digest,
        })).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}

const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn is_index(media_type: &str, bytes: &[u8]) -> bool {
    if media_type == DOCKER_LIST || media_type == OCI_INDEX {
        return true;
    }
    // Some registries send a generic type: look at the document.
    #[derive(Deserialize)]
    struct Probe {
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Probe>(bytes)
        .is_ok_and(|p| p.manifests.is_some() && p.layers.is_none())
}

/// Picks the manifest for `platform` from an index, skipping attestation entries.
fn select_platform(
    reference: &str,
    index_bytes: &[u8],
    platform: &PlatformSpec,
) -> Result<Digest, Error> {
    #[derive(Deserialize)]
    struct IndexDoc {
        #[serde(default)]
        manifests: Option<Vec<Descriptor>>,
    }
    let doc: IndexDoc = serde_json::from_slice(index_bytes).map_err(|e| Error::Registry {
        registry: reference.into(),
        message: format!("the index is not valid JSON: {e}"),
    })?;
    let mut offered = Vec::new();
    for desc in doc.manifests.iter().flatten() {
        let Some(p) = desc.platform() else { continue };
        let (os, arch) = (p.os().to_string(), p.architecture().to_string());
        if os == "unknown" && arch == "unknown" {
            continue;
        }
        let variant = p.variant().as_deref();
        if platform.matches(&os, &arch, variant) {
            return Digest::parse(desc.digest().as_ref());
        }
        offered.push(PlatformSpec::new(&os, &arch, variant).to_string());
    }
    Err(Error::NoPlatform {
        reference: reference.into(),
        platform: platform.to_string(),
        available: if offered.is_empty() {
            "nothing".into()
        } else {
            offered.join(", ")
        },
    })
}
