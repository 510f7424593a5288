//! The cache facade: one method of [`Cache`] per command, each in the room of its job.
//!
//! This file owns opening the cache (options, the root layout, the index, the registry client)
//! and what every command shares: resolving a reference or image ID to a cached image.
//! The commands live beside it:
//!
//! - `pull.rs`: `pull`, and the blob fetch it drives (resume, retries, platform choice);
//! - `push.rs`: `push` to any registry, byte for byte (skip, mount, upload, manifests last);
//! - `sync.rs`: `sync` of an image list into a registry, through the cache;
//! - `tarball.rs`: the archive side, `import` and `save`;
//! - `load.rs`: the engine side, `status` and `load` (where `load` decides to skip the engine);
//! - `query.rs`: `ls`, `inspect`, `verify REF`;
//! - `prune.rs`: `rm` and `prune`;
//! - `fsck.rs`: `fsck` and `--repair`;
//! - `serve.rs`: what `serve` answers (manifests by tag or digest, blobs), pulled through;
//! - `refs.rs`: the `refs.json` mirror of the references that `fsck --repair` relies on.

mod fsck;
mod load;
mod prune;
mod pull;
mod push;
mod query;
mod refs;
mod serve;
mod signatures;
mod sync;
mod tarball;

pub use fsck::FsckReport;
pub use load::{EngineStatus, LoadAction, LoadReport, StatusReport};
pub use prune::PruneReport;
pub use pull::{ProgressEvent, PullOptions, PullReport};
pub use push::{PushOptions, PushProgress, PushReport};
pub use query::{CachedImage, CachedLayer, ListEntry};
pub use serve::{ManifestRef, Origin, ServedBlob};
pub use sync::{
    DEFAULT_SYNC_PARALLEL, SyncItem, SyncOptions, SyncReport, SyncStatus, read_image_list,
    sync_destination,
};
pub use tarball::{ImportReport, SaveReport, SavedIndex};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::digest::ImageId;
use crate::error::Error;
use crate::index::{ImageRecord, Index, RefRecord, now};
use crate::reference::Reference;
use crate::registry::mirrors::{MirrorSettings, Mirrors};
use crate::registry::{RegistryClient, RegistryOptions};
use crate::store::Store;

/// Partial downloads untouched this long are swept.
const STALE_INGEST: Duration = Duration::from_secs(24 * 3600);

/// How long `serve` waits to connect to an origin before answering from the cache.
const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

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
    /// Where `pull` finds mirrors (registries.conf, a containerd hosts directory).
    pub mirrors: MirrorSettings,
}

impl CacheOptions {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.into(),
            lock_timeout: Duration::from_secs(600),
            registry: RegistryOptions::from_env(),
            mirrors: MirrorSettings::from_env(),
        }
    }
}

/// An open cache: the content store, its index and (created on first use) the registry
/// client. Processes share a cache root safely; see the crate docs.
pub struct Cache {
    store: Arc<Store>,
    index: Mutex<Index>,
    registry: RegistryOptions,
    mirror_settings: MirrorSettings,
    /// Read on first use: a command that never reaches a registry never reads them.
    mirrors: OnceLock<Mirrors>,
    client: OnceLock<RegistryClient>,
    /// The same, trying each request once: `serve` asks the origin for a tag first, and an
    /// origin that does not answer at once is answered for from the cache.
    probe: OnceLock<RegistryClient>,
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
            mirror_settings: opts.mirrors,
            mirrors: OnceLock::new(),
            client: OnceLock::new(),
            probe: OnceLock::new(),
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
        let c = RegistryClient::new(self.registry_options()?)?;
        Ok(self.client.get_or_init(|| c))
    }

    /// The mirror configuration, read once.
    fn mirrors(&self) -> Result<&Mirrors, Error> {
        if let Some(m) = self.mirrors.get() {
            return Ok(m);
        }
        let m = Mirrors::load(&self.mirror_settings)?;
        Ok(self.mirrors.get_or_init(|| m))
    }

    /// The registry options with the per-host settings the mirror configuration implies
    /// (those given explicitly win).
    fn registry_options(&self) -> Result<RegistryOptions, Error> {
        let mut opts = self.registry.clone();
        for (host, settings) in self.mirrors()?.host_settings() {
            opts.hosts.entry(host).or_insert(settings);
        }
        Ok(opts)
    }

    fn probe_client(&self) -> Result<&RegistryClient, Error> {
        if let Some(c) = self.probe.get() {
            return Ok(c);
        }
        let opts = RegistryOptions {
            max_retries: 0,
            connect_timeout: PROBE_CONNECT_TIMEOUT,
            ..self.registry_options()?
        };
        let c = RegistryClient::new(opts)?;
        Ok(self.probe.get_or_init(|| c))
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
