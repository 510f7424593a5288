//! `pull`: resolve a reference at its registry, pick the platform, fetch the blobs the store
//! lacks (in parallel, resuming broken downloads), and only then make the image visible.

use std::time::Duration;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::{Cache, STALE_INGEST, blocking};
use crate::archive::{MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
use crate::digest::{BlobDigest, DiffId, Digest, ImageId};
use crate::error::Error;
use crate::index::{ImageRecord, LayerRecord, RefRecord, now};
use crate::lock::LockMode;
use crate::platform::PlatformSpec;
use crate::policy::{Policy, Signer};
use crate::reference::Reference;
use crate::registry::mirrors::Role;
use crate::registry::{FetchedManifest, RegistryClient};
use crate::store::IngestStart;

/// How many layers download at once.
const PARALLEL_DOWNLOADS: usize = 4;

/// Attempts per blob when the connection breaks mid-body (each resumes where it stopped).
const BLOB_ATTEMPTS: u32 = 5;

/// One host to fetch a reference from: the client to ask it with (a mirror's sends what
/// its configuration wants, `?ns=`) and the reference as that host names it.
#[derive(Clone)]
pub(super) struct Host {
    pub via: RegistryClient,
    pub route: Reference,
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
    /// Who must have signed what: signatures the reference's scope asks for are fetched and
    /// judged before any layer is fetched, and kept with the image.
    pub policy: Option<Arc<Policy>>,
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
    /// `HOST/REPOSITORY` that served the manifest and blobs: the registry named, a mirror, or
    /// the location registries.conf rewrites it to (`None` when answered from the cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    /// The signatures the policy accepted (empty without a policy or when none was asked).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signed_by: Vec<Signer>,
}

impl Cache {
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

        if let Some(report) = self.pull_from_cache(&reference, &platform, opts)? {
            return Ok(report);
        }
        if opts.offline {
            return Err(Error::NotCached { reference: name });
        }
        self.store.sweep_ingest(STALE_INGEST).ok();
        let hosts = self.hosts(&reference, false)?;
        let last = hosts.len().saturating_sub(1);
        let mut failure = None;
        for (i, Host { via, route }) in hosts.iter().enumerate() {
            // A digest-pinned reference is checked against its digest whoever serves it.
            let result = match via.fetch_manifest(route).await {
                Ok(top) => self.pull_top(via, &reference, route, top, opts).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(report) => return Ok(report),
                // The next host may have it; a usage error or the last host's failure is final.
                Err(e) if i < last && !matches!(e, Error::Usage(_)) => {
                    tracing::warn!(
                        "{name}: {}/{} failed, trying the next host: {e}",
                        route.registry,
                        route.repository
                    );
                    failure = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(failure.unwrap_or(Error::NotCached { reference: name }))
    }

    /// The hosts to fetch `reference` from, in order: the mirrors the configuration names for
    /// it, then the origin (or where the configuration says it lives). `probe`: a client that
    /// tries once, for a question the cache can answer if the host does not.
    pub(super) fn hosts(&self, reference: &Reference, probe: bool) -> Result<Vec<Host>, Error> {
        let mirrors = self.mirrors()?;
        let sources = mirrors.sources(reference)?;
        // Settings a pattern gives this reference's registry (a `*.example.com` entry's
        // `insecure`, the top-level settings of `_default/hosts.toml`) are not in the shared
        // client's options, which hold the per-host ones only: a client of its own then.
        let shared = match probe {
            true => self.probe_client()?,
            false => self.client()?,
        };
        let mut own = shared.options().clone();
        for (host, settings) in mirrors.host_settings_for(reference) {
            own.hosts.entry(host).or_insert(settings);
        }
        let client = if own.hosts == shared.options().hosts {
            shared.clone()
        } else {
            RegistryClient::new(own)?
        };
        Ok(sources
            .into_iter()
            .map(|source| Host {
                via: match source.role {
                    Role::Mirror => client.for_mirror(source.ns.as_deref()),
                    Role::Origin => client.clone(),
                },
                route: Reference {
                    registry: source.registry,
                    repository: source.repository,
                    ..reference.clone()
                },
            })
            .collect())
    }

    /// The rest of a pull once the reference's manifest or index is in hand (`serve` asks the
    /// registry for it itself). The caller holds the GC lock shared. An index has every child
    /// manifest stored (kilobytes; some clients fetch them all before choosing), then the
    /// platform's image is fetched.
    pub(super) async fn pull_top(
        &self,
        client: &RegistryClient,
        reference: &Reference,
        route: &Reference,
        top: FetchedManifest,
        opts: &PullOptions,
    ) -> Result<PullReport, Error> {
        let name = reference.to_string();
        let platform = opts.platform.clone().unwrap_or_else(PlatformSpec::host);
        let distribution_digest = BlobDigest(top.digest);
        // Judged before any layer is fetched; kept only once the image is whole.
        let signatures = match &opts.policy {
            Some(policy) => {
                let found = if policy.wants_signatures(reference) {
                    client
                        .fetch_signatures(&route.registry, &route.repository, &top.digest)
                        .await?
                } else {
                    Vec::new()
                };
                let accepted = policy.check(reference, &top.digest, &found)?;
                Some((found, accepted))
            }
            None => None,
        };
        let (index_bytes, manifest) = if is_index(&top.media_type, &top.bytes) {
            self.store_index_children(client, route, &top.bytes).await;
            let child = select_platform(&name, &top.bytes, &platform)?;
            let m = self.manifest_by_digest(client, route, &child).await?;
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
        let config = descriptor(&parsed.config().clone(), reference)?;
        if config.size > MAX_CONFIG_BYTES {
            return Err(Error::TooLarge {
                what: format!("{name}: config {}", config.digest),
                limit: MAX_CONFIG_BYTES,
            });
        }
        let layers: Vec<BlobRef> = parsed
            .layers()
            .iter()
            .map(|d| descriptor(d, reference))
            .collect::<Result<_, _>>()?;

        let mut stats = Stats::default();
        stats.add(
            self.fetch_blob(client, route, &config, opts).await?,
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
            // Boxed, so that the pull stays `Send` for `serve`'s tasks (rustc cannot see through
            // the closures' lifetimes otherwise).
            let downloads: Vec<BoxFuture<'_, Result<(bool, u64), Error>>> = layers
                .iter()
                .map(|l| -> BoxFuture<'_, _> {
                    Box::pin(async move {
                        self.fetch_blob(client, route, l, opts)
                            .await
                            .map(|f| (f, l.size))
                    })
                })
                .collect();
            let fetched: Vec<(bool, u64)> = futures_util::stream::iter(downloads)
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
        if let Some((found, accepted)) = &signatures {
            blocking(|| self.keep_signatures(&distribution_digest.0, found, accepted))?;
        }
        {
            let mut index = self.index();
            index.put_image(&record)?;
            // Where these blobs can be mounted from when pushed to the same registry.
            let held: Vec<Digest> = record.blobs().chain(index_digest.map(|d| d.0)).collect();
            index.record_locations(&route.registry, &route.repository, &held)?;
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
            served_by: Some(format!("{}/{}", route.registry, route.repository)),
            signed_by: signatures.map(|(_, a)| a.signers).unwrap_or_default(),
        })
    }

    /// Answers a pull from the cache when the content cannot have changed (a digest-pinned
    /// reference) or the caller forbids the network, and every blob is present.
    fn pull_from_cache(
        &self,
        reference: &Reference,
        platform: &PlatformSpec,
        opts: &PullOptions,
    ) -> Result<Option<PullReport>, Error> {
        let offline = opts.offline;
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
        let Some(img) = self.index().get_image(&manifest_digest)? else {
            return Ok(None);
        };
        if !self.is_complete(&img) {
            return Ok(None);
        }
        // The kept signatures are judged again (of an image that is there: one that is not
        // is "not cached", not "refused"); online, a refusal fetches them anew.
        let signed_by = match &opts.policy {
            Some(policy) => {
                let top = index_digest.unwrap_or(manifest_digest).0;
                match self.check_stored_signatures(policy, reference, &top) {
                    Ok(accepted) => accepted.signers,
                    Err(e) if offline => return Err(e),
                    Err(_) => return Ok(None),
                }
            }
            None => Vec::new(),
        };
        let index = self.index();
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
            served_by: None,
            signed_by,
        }))
    }

    /// Every blob of the image is on disk with its recorded size.
    pub(super) fn is_complete(&self, img: &ImageRecord) -> bool {
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
    pub(super) async fn fetch_blob(
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
}

impl Cache {
    /// Stores every child manifest of an index that the store lacks, and the config of each
    /// (kilobytes), all checked against their digests: some clients (containerd 2.x) fetch
    /// every platform's manifest and config before choosing. Best effort: what cannot be
    /// fetched is only a warning, since the platform asked for may still be pulled.
    async fn store_index_children(
        &self,
        client: &RegistryClient,
        reference: &Reference,
        index_bytes: &[u8],
    ) {
        use futures_util::StreamExt;
        let children: Vec<Digest> = index_children(index_bytes)
            .into_iter()
            .take(MAX_INDEX_CHILDREN)
            .collect();
        let fetches: Vec<BoxFuture<'_, Result<(), Error>>> = children
            .into_iter()
            .map(|d| -> BoxFuture<'_, _> {
                Box::pin(async move {
                    let bytes = self.manifest_by_digest(client, reference, &d).await?.bytes;
                    // A nested index or an artifact has no image config to store.
                    let Ok(m) = serde_json::from_slice::<ImageManifest>(&bytes) else {
                        return Ok(());
                    };
                    let config = descriptor(m.config(), reference)?;
                    if config.size <= MAX_CONFIG_BYTES {
                        self.fetch_blob(client, reference, &config, &PullOptions::default())
                            .await?;
                    }
                    Ok(())
                })
            })
            .collect();
        let fetched: Vec<_> = futures_util::stream::iter(fetches)
            .buffer_unordered(PARALLEL_DOWNLOADS)
            .collect()
            .await;
        for e in fetched.into_iter().filter_map(Result::err) {
            tracing::warn!("{reference}: a manifest of the index was not stored: {e}");
        }
    }

    /// A manifest by digest: from the store, else fetched (checked against the digest) and
    /// stored.
    async fn manifest_by_digest(
        &self,
        client: &RegistryClient,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<FetchedManifest, Error> {
        if let Some(m) = self.stored_manifest(digest) {
            return Ok(m);
        }
        let m = client
            .fetch_manifest_by_digest(&reference.registry, &reference.repository, digest)
            .await?;
        blocking(|| self.store.put_bytes(&m.bytes))?;
        Ok(m)
    }

    /// A manifest or index in the store, with the media type its document declares.
    pub(super) fn stored_manifest(&self, digest: &Digest) -> Option<FetchedManifest> {
        let bytes = blocking(|| self.store.read_blob(digest, MAX_MANIFEST_BYTES)).ok()?;
        Some(FetchedManifest {
            media_type: crate::registry::document_media_type(&bytes),
            digest: *digest,
            bytes,
        })
    }
}

/// The manifests an index lists (at most [`MAX_INDEX_CHILDREN`] are stored).
pub(super) fn index_children(index_bytes: &[u8]) -> Vec<Digest> {
    #[derive(Deserialize)]
    struct Entry {
        digest: String,
    }
    #[derive(Deserialize)]
    struct IndexDoc {
        #[serde(default)]
        manifests: Vec<Entry>,
    }
    serde_json::from_slice::<IndexDoc>(index_bytes)
        .map(|doc| {
            doc.manifests
                .iter()
                .filter_map(|e| Digest::parse(&e.digest).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Indexes with more entries than this are not stored whole (attestation-heavy indexes have
/// tens; a registry sending thousands is not served them all).
const MAX_INDEX_CHILDREN: usize = 256;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A blob a manifest names.
pub(super) struct BlobRef {
    pub(super) digest: Digest,
    pub(super) size: u64,
    pub(super) media_type: String,
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

pub(super) fn config_diff_ids(bytes: &[u8]) -> Result<Vec<DiffId>, String> {
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

const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub(super) fn is_index(media_type: &str, bytes: &[u8]) -> bool {
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
pub(super) fn select_platform(
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
