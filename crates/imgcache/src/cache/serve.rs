//! What `serve` asks of the cache: the repositories and tags it holds, a manifest by tag or
//! digest (pulled through when allowed, from the hosts a pull would use: the configured
//! mirrors, then the origin), and a blob made present.
//!
//! The HTTP side (paths, headers, ranges, error bodies) is `crate::serve`; this room decides
//! what the answer is.

use std::collections::BTreeSet;

use oci_spec::image::ImageManifest;

use super::pull::{BlobRef, PullOptions, index_children};
use super::{Cache, blocking};
use crate::archive::MAX_MANIFEST_BYTES;
use crate::digest::Digest;
use crate::error::Error;
use crate::lock::{LockGuard, LockMode};
use crate::policy::artifact::SignatureTag;
use crate::reference::Reference;
use crate::registry::FetchedManifest;

/// A repository as its origin registry names it: `registry/repository`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    pub registry: String,
    pub repository: String,
}

impl Origin {
    fn reference(&self, tag: Option<&str>, digest: Option<Digest>) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: tag.map(str::to_owned),
            digest,
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

/// What a manifest request names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ManifestRef {
    Tag(String),
    Digest(Digest),
}

/// A stored blob opened for a response. Prune and `fsck --repair` wait until it is dropped
/// (it holds the GC lock shared), so no blob is deleted while a response reads it.
pub struct ServedBlob {
    pub file: std::fs::File,
    pub len: u64,
    _gc: LockGuard,
}

impl Cache {
    /// Opens a stored blob for a response; `None` when the store does not have it.
    pub fn open_served_blob(&self, digest: &Digest) -> Result<Option<ServedBlob>, Error> {
        let gc = self.store.gc_lock(LockMode::Shared)?;
        let file = match self.store.open_blob(digest) {
            Ok(f) => f,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let path = self.store.blob_path(digest);
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        Ok(Some(ServedBlob { file, len, _gc: gc }))
    }

    /// The `serve/<ID>` its pull-through requests carry in their User-Agent, when set
    /// ([`crate::registry::RegistryOptions::serve_id`]).
    pub fn serve_id(&self) -> Option<&str> {
        self.registry.serve_id.as_deref()
    }

    /// The stored blob's size, or `None` when the store does not have it.
    pub fn blob_len(&self, digest: &Digest) -> Option<u64> {
        self.store.blob_size(digest)
    }

    /// Every repository some cached reference names.
    pub fn origins(&self) -> Result<BTreeSet<Origin>, Error> {
        Ok(self
            .index()
            .refs()?
            .iter()
            .filter_map(|r| Reference::parse(&r.name).ok())
            .map(|r| Origin {
                registry: r.registry,
                repository: r.repository,
            })
            .collect())
    }

    /// The tags cached for a repository, sorted.
    pub fn tags(&self, origin: &Origin) -> Result<Vec<String>, Error> {
        let tags: BTreeSet<String> = self
            .cached_references(origin)?
            .into_iter()
            .filter_map(|(r, _)| r.tag)
            .collect();
        Ok(tags.into_iter().collect())
    }

    /// The manifest or index a request means. A digest is answered from the store without
    /// asking anyone; a tag is asked first (one manifest request per host: the mirrors a pull
    /// would use, then the origin) and answered from the cache when no host can answer. What
    /// the cache lacks is pulled through: an index gets every child manifest stored and this
    /// machine's platform pulled; a single manifest gets its image pulled. `offline` never
    /// leaves the cache. A signing tool's tag (`sha256-<hex>.sig`, `sha256-<hex>`) is answered
    /// with the signatures the cache kept, and never asked upstream: serve hands out only
    /// signatures a policy accepted.
    pub async fn serve_manifest(
        &self,
        origin: &Origin,
        wanted: &ManifestRef,
        offline: bool,
    ) -> Result<FetchedManifest, Error> {
        if let ManifestRef::Tag(t) = wanted
            && let Some(tag) = SignatureTag::parse(t)
        {
            return blocking(|| self.served_signature_tag(tag))?.ok_or_else(|| Error::NotCached {
                reference: origin.reference(Some(t), None).to_string(),
            });
        }
        let (reference, cached) = match wanted {
            ManifestRef::Digest(d) => (
                origin.reference(None, Some(*d)),
                self.stored_manifest_as_recorded(d),
            ),
            ManifestRef::Tag(t) => (origin.reference(Some(t), None), self.cached_tag(origin, t)?),
        };
        if let Some(m) = &cached
            && (offline || matches!(wanted, ManifestRef::Digest(_)))
        {
            return Ok(m.clone());
        }
        if offline {
            return Err(Error::NotCached {
                reference: reference.to_string(),
            });
        }
        // The hosts a pull would use, the mirrors first. A registry that registries.conf
        // blocks is not pulled through (what is cached stays served, as from a tarball).
        // A tag has the cache to fall back on: each host gets one try.
        let full = match self.hosts(&reference, false) {
            Ok(hosts) => hosts,
            Err(e) => return fall_back(&reference, cached, e),
        };
        let ask = match wanted {
            ManifestRef::Tag(_) => self.hosts(&reference, true)?,
            ManifestRef::Digest(_) => full.clone(),
        };
        let _gc = blocking(|| self.store.gc_lock(LockMode::Shared))?;
        let mut failure = None;
        for (asker, host) in ask.iter().zip(&full) {
            let top = match asker.via.fetch_manifest(&asker.route).await {
                Ok(top) => top,
                Err(e) => {
                    failure = Some(next_host(&reference, &host.route, e));
                    continue;
                }
            };
            if cached.as_ref().is_some_and(|c| c.digest == top.digest) {
                return Ok(top);
            }
            let opts = PullOptions::default();
            match self
                .pull_top(&host.via, &reference, &host.route, top.clone(), &opts)
                .await
            {
                Ok(_) => return Ok(top),
                // Other platforms' clients can still use the index and its stored children.
                Err(e @ Error::NoPlatform { .. }) => {
                    tracing::info!("{e}: serving the index without pulling an image");
                    blocking(|| self.store.put_bytes(&top.bytes))?;
                    return Ok(top);
                }
                Err(e) => failure = Some(next_host(&reference, &host.route, e)),
            }
        }
        let e = failure.unwrap_or_else(|| Error::NotCached {
            reference: reference.to_string(),
        });
        fall_back(&reference, cached, e)
    }

    /// Makes the blob present in the store: true when it is there (already, or pulled through
    /// now), false when neither the store has it nor any stored manifest of this repository
    /// names it (a blob asked for before its manifest is not fetched: the client moves on to
    /// its next host). Pulled-through blobs are checked against their digest and size first.
    pub async fn serve_blob(
        &self,
        origin: &Origin,
        digest: &Digest,
        offline: bool,
    ) -> Result<bool, Error> {
        if self.store.has_blob(digest) {
            return Ok(true);
        }
        if offline {
            return Ok(false);
        }
        let Some(blob) = self.blob_named_in(origin, digest)? else {
            return Ok(false);
        };
        let reference = origin.reference(None, Some(*digest));
        // One try per host and request: a client waiting on hosts that are down gets its 404
        // soon (the download itself still resumes after a broken connection).
        let Ok(hosts) = self.hosts(&reference, true) else {
            return Ok(false); // blocked by registries.conf
        };
        let _gc = blocking(|| self.store.gc_lock(LockMode::Shared))?;
        let mut failure = None;
        for host in &hosts {
            let fetched = self
                .fetch_blob(&host.via, &host.route, &blob, &PullOptions::default())
                .await;
            match fetched {
                Ok(_) => return Ok(true),
                Err(e) => failure = Some(next_host(&reference, &host.route, e)),
            }
        }
        Err(failure.unwrap_or_else(|| Error::NotCached {
            reference: reference.to_string(),
        }))
    }

    /// The cached references of a repository, with the manifest each was recorded for
    /// (the index when there is one).
    fn cached_references(&self, origin: &Origin) -> Result<Vec<(Reference, Digest)>, Error> {
        let mut refs = self.index().refs()?;
        // Most recent first: a tag recorded for several platforms answers with the latest.
        refs.sort_by_key(|r| std::cmp::Reverse(r.updated_at));
        Ok(refs
            .into_iter()
            .filter_map(|r| {
                let parsed = Reference::parse(&r.name).ok()?;
                (parsed.registry == origin.registry && parsed.repository == origin.repository)
                    .then(|| (parsed, r.index_digest.unwrap_or(r.manifest_digest).0))
            })
            .collect())
    }

    fn cached_tag(&self, origin: &Origin, tag: &str) -> Result<Option<FetchedManifest>, Error> {
        let found = self
            .cached_references(origin)?
            .into_iter()
            .find(|(r, _)| r.tag.as_deref() == Some(tag));
        Ok(found.and_then(|(_, d)| self.stored_manifest_as_recorded(&d)))
    }

    /// A stored manifest with the media type the registry served it with, when the index
    /// recorded one.
    fn stored_manifest_as_recorded(&self, digest: &Digest) -> Option<FetchedManifest> {
        let mut m = self.stored_manifest(digest)?;
        if let Ok(Some(img)) = self.index().get_image(&crate::digest::BlobDigest(*digest))
            && !img.media_type.is_empty()
        {
            m.media_type = img.media_type;
        }
        Some(m)
    }

    /// The blob's descriptor in a stored manifest of this repository: an image recorded for it,
    /// or a child manifest of one of its indexes (another platform than the one pulled).
    fn blob_named_in(&self, origin: &Origin, digest: &Digest) -> Result<Option<BlobRef>, Error> {
        let mut manifests = Vec::new();
        for (_, top) in self.cached_references(origin)? {
            match self.store.read_blob(&top, MAX_MANIFEST_BYTES) {
                Ok(bytes) if bytes_are_index(&bytes) => manifests.extend(index_children(&bytes)),
                Ok(_) => manifests.push(top),
                Err(_) => {}
            }
        }
        for m in manifests {
            let Ok(bytes) = self.store.read_blob(&m, MAX_MANIFEST_BYTES) else {
                continue;
            };
            let Ok(parsed) = serde_json::from_slice::<ImageManifest>(&bytes) else {
                continue;
            };
            let found = std::iter::once(parsed.config())
                .chain(parsed.layers())
                .find(|d| Digest::parse(d.digest().as_ref()).ok() == Some(*digest));
            if let Some(d) = found {
                return Ok(Some(BlobRef {
                    digest: *digest,
                    size: d.size(),
                    media_type: d.media_type().to_string(),
                }));
            }
        }
        Ok(None)
    }
}

/// A host's failure, logged as the next host is tried (the last one's is the answer's).
fn next_host(reference: &Reference, route: &Reference, e: Error) -> Error {
    tracing::warn!(
        "{reference}: {}/{} failed: {e}",
        route.registry,
        route.repository
    );
    e
}

/// The cached manifest when the origin failed (with a warning that says so), else the failure.
fn fall_back(
    reference: &Reference,
    cached: Option<FetchedManifest>,
    e: Error,
) -> Result<FetchedManifest, Error> {
    match cached {
        Some(m) => {
            tracing::warn!("{reference}: answered from the cache, since the origin failed: {e}");
            Ok(m)
        }
        None => Err(e),
    }
}

fn bytes_are_index(bytes: &[u8]) -> bool {
    let media_type = crate::registry::document_media_type(bytes);
    media_type == crate::registry::MEDIA_TYPE_OCI_INDEX
        || media_type == crate::registry::MEDIA_TYPE_DOCKER_LIST
}
