//! `push`: put a cached image into any registry byte for byte, so that the destination's
//! digest is the cached one. What goes: an index with every platform it names (each must be
//! cached), or with `--platform` that platform's manifest alone. Order: every blob first
//! (skipped when the destination has it, mounted from another repository of that registry
//! where the cache knows one holds it, else uploaded), then the child manifests by digest,
//! then the top manifest by tag: a destination never holds a manifest whose blobs are missing.
//! Last, the signatures the cache kept for that digest (`cache/signatures.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use oci_spec::image::{Descriptor, ImageManifest};
use serde::{Deserialize, Serialize};

use super::pull::{BlobRef, index_children, select_platform};
use super::{Cache, blocking};
use crate::archive::MAX_MANIFEST_BYTES;
use crate::digest::{BlobDigest, Digest};
use crate::error::Error;
use crate::lock::LockMode;
use crate::platform::PlatformSpec;
use crate::reference::Reference;
use crate::registry::{BlobPush, UploadBlob, document_media_type};

/// How many blobs upload at once.
const PARALLEL_UPLOADS: usize = 4;

/// What `push` should do.
#[derive(Clone, Default)]
pub struct PushOptions {
    /// Push this platform's manifest alone (its own digest) instead of the whole index.
    pub platform: Option<PlatformSpec>,
    /// Called with the bytes to send once they are known, then with every byte sent.
    pub progress: Option<Arc<dyn Fn(PushProgress) + Send + Sync>>,
}

/// Progress of a push.
#[derive(Debug, Clone, Copy)]
pub enum PushProgress {
    /// The bytes of the blobs the destination may lack (an upper bound: some get mounted).
    Planned {
        bytes: u64,
    },
    Sent {
        bytes: u64,
    },
}

/// The result of a push.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    pub source: String,
    pub destination: String,
    /// The digest the destination now holds at the tag: the cached index or manifest digest.
    pub digest: BlobDigest,
    pub media_type: String,
    pub platforms: Vec<String>,
    pub blobs_uploaded: usize,
    pub blobs_mounted: usize,
    pub blobs_present: usize,
    pub bytes_uploaded: u64,
    pub manifests_pushed: usize,
    /// Signatures the cache kept for the pushed digest that the destination lacked, now put
    /// there the way their tool stores them (cosign tag, referrer).
    pub signatures_pushed: usize,
    /// True when the destination already held this digest at the tag: no image byte was sent.
    pub already_present: bool,
}

/// A manifest or index as stored, to be put as it is.
struct Document {
    digest: Digest,
    bytes: Vec<u8>,
    media_type: String,
}

/// Everything one push sends.
struct Plan {
    top: Document,
    /// An index's child manifests (pushed by digest before it).
    children: Vec<Document>,
    blobs: Vec<BlobRef>,
    platforms: Vec<String>,
}

impl Cache {
    /// Pushes the cached image `source` to `destination` (`HOST/REPO[:TAG|@DIGEST]`; no tag is
    /// `latest`, as with Docker and skopeo).
    pub async fn push(
        &self,
        source: &str,
        destination: &str,
        opts: &PushOptions,
    ) -> Result<PushReport, Error> {
        let dest = Reference::parse(destination)?;
        // Held for the whole push: prune waits instead of deleting blobs being read.
        let _gc = blocking(|| self.store.gc_lock(LockMode::Shared))?;
        if opts.platform.is_none() {
            self.complete_attestations(source).await?;
        }
        let plan = blocking(|| self.push_plan(source, opts.platform.as_ref()))?;
        let target = match (&dest.digest, &dest.tag) {
            (Some(d), _) if *d != plan.top.digest => {
                return Err(Error::DigestMismatch {
                    what: format!("push {source} to {destination}: the destination's digest"),
                    expected: d.to_string(),
                    found: plan.top.digest.to_string(),
                });
            }
            (_, Some(t)) => t.clone(),
            (Some(d), None) => d.to_string(),
            (None, None) => crate::reference::DEFAULT_TAG.to_owned(),
        };
        let client = self.client()?;
        let (reg, repo) = (dest.registry.as_str(), dest.repository.as_str());
        let mut report = PushReport {
            source: source.to_owned(),
            destination: dest.to_string(),
            digest: BlobDigest(plan.top.digest),
            media_type: plan.top.media_type.clone(),
            platforms: plan.platforms.clone(),
            blobs_uploaded: 0,
            blobs_mounted: 0,
            blobs_present: 0,
            bytes_uploaded: 0,
            manifests_pushed: 0,
            signatures_pushed: 0,
            already_present: false,
        };
        if client.manifest_digest_at(reg, repo, &target).await? == Some(plan.top.digest) {
            // A registry keeps a manifest only with all its blobs: nothing to send but the
            // signatures it may lack.
            report.already_present = true;
            report.blobs_present = plan.blobs.len();
            report.signatures_pushed = self
                .push_signatures(client, reg, repo, &plan.top.digest)
                .await?;
            return Ok(report);
        }
        let progress = |p: PushProgress| {
            if let Some(f) = &opts.progress {
                f(p);
            }
        };
        progress(PushProgress::Planned {
            bytes: plan.blobs.iter().map(|b| b.size).sum(),
        });
        let (uploaded, mounted, present) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        let bytes = AtomicU64::new(0);
        let sent = |n: u64| progress(PushProgress::Sent { bytes: n });
        {
            use futures_util::{StreamExt, TryStreamExt};
            let uploads = plan.blobs.iter().map(|b| {
                let (uploaded, mounted, present, bytes, sent) =
                    (&uploaded, &mounted, &present, &bytes, &sent);
                async move {
                    let from = self.mount_source(&b.digest, reg, repo)?;
                    let blob = UploadBlob {
                        digest: b.digest,
                        size: b.size,
                        path: self.store.blob_path(&b.digest),
                    };
                    match client
                        .push_blob(reg, repo, &blob, from.as_deref(), sent)
                        .await?
                    {
                        BlobPush::Present => present.fetch_add(1, Ordering::Relaxed),
                        BlobPush::Mounted { .. } => mounted.fetch_add(1, Ordering::Relaxed),
                        BlobPush::Uploaded { bytes: n } => {
                            bytes.fetch_add(n, Ordering::Relaxed);
                            uploaded.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    Ok::<_, Error>(())
                }
            });
            futures_util::stream::iter(uploads)
                .buffer_unordered(PARALLEL_UPLOADS)
                .try_collect::<Vec<()>>()
                .await?;
        }
        for child in &plan.children {
            client
                .put_manifest(
                    reg,
                    repo,
                    &child.digest.to_string(),
                    &child.bytes,
                    &child.media_type,
                )
                .await?;
        }
        let top = &plan.top;
        client
            .put_manifest(reg, repo, &target, &top.bytes, &top.media_type)
            .await?;
        // After the image: a signature never names a digest the destination lacks.
        report.signatures_pushed = self.push_signatures(client, reg, repo, &top.digest).await?;
        let held: Vec<Digest> = plan
            .blobs
            .iter()
            .map(|b| b.digest)
            .chain(plan.children.iter().map(|c| c.digest))
            .chain([top.digest])
            .collect();
        self.index().record_locations(reg, repo, &held)?;
        report.blobs_uploaded = uploaded.into_inner();
        report.blobs_mounted = mounted.into_inner();
        report.blobs_present = present.into_inner();
        report.bytes_uploaded = bytes.into_inner();
        report.manifests_pushed = plan.children.len() + 1;
        Ok(report)
    }

    /// Fetches what the attestation manifests (platform `unknown`, as buildx makes them) of
    /// the cached index `source` need and the cache lacks: a pull stores their manifests and
    /// configs, not their in-toto layers, and an index is only pushed whole. A few kilobytes,
    /// from the registry the image was pulled from, checked against their digests. Nothing to
    /// do (and no network) when they are all there, or `source` is not an index.
    async fn complete_attestations(&self, source: &str) -> Result<(), Error> {
        let (rec, _) = blocking(|| self.resolve(source))?;
        let Some((rec, index)) = rec.and_then(|r| r.index_digest.map(|i| (r, i))) else {
            return Ok(());
        };
        let Ok(index_bytes) = blocking(|| self.store.read_blob(&index.0, MAX_MANIFEST_BYTES))
        else {
            return Ok(());
        };
        let attestations: Vec<Digest> = index_entries(&index_bytes)
            .into_iter()
            .filter(|(_, platform)| platform.starts_with("unknown"))
            .map(|(d, _)| d)
            .collect();
        let mut route: Option<Reference> = None;
        for digest in attestations {
            let stored = blocking(|| self.store.read_blob(&digest, MAX_MANIFEST_BYTES)).ok();
            let missing = |bytes: &[u8]| -> Vec<BlobRef> {
                serde_json::from_slice::<ImageManifest>(bytes)
                    .ok()
                    .into_iter()
                    .flat_map(|m| {
                        std::iter::once(m.config().clone())
                            .chain(m.layers().iter().cloned())
                            .collect::<Vec<_>>()
                    })
                    .filter_map(|d| blob_of(&d))
                    .filter(|b| self.store.blob_size(&b.digest) != Some(b.size))
                    .collect()
            };
            if stored.as_deref().is_some_and(|b| missing(b).is_empty()) {
                continue;
            }
            let route = match &route {
                Some(r) => r,
                None => route.insert(Reference::parse(&rec.name)?),
            };
            let failed = |e: Error| Error::Registry {
                registry: route.registry.clone(),
                message: format!(
                    "{source}: the attestation manifest {digest} is not cached whole and could not be fetched from {}/{}: {e}; push one platform with --platform P",
                    route.registry, route.repository
                ),
            };
            let client = self.client()?;
            let bytes = match stored {
                Some(b) => b,
                None => {
                    let m = client
                        .fetch_manifest_by_digest(&route.registry, &route.repository, &digest)
                        .await
                        .map_err(failed)?;
                    blocking(|| self.store.put_bytes(&m.bytes))?;
                    m.bytes
                }
            };
            for blob in missing(&bytes) {
                self.fetch_blob(client, route, &blob, &super::PullOptions::default())
                    .await
                    .map_err(failed)?;
            }
        }
        Ok(())
    }

    /// Another repository of `registry` known to hold `blob` (a mount needs no bytes).
    fn mount_source(
        &self,
        blob: &Digest,
        registry: &str,
        repository: &str,
    ) -> Result<Option<String>, Error> {
        Ok(self
            .index()
            .locations(blob, registry)?
            .into_iter()
            .find(|r| r != repository))
    }

    /// What pushing `source` sends, every byte of it checked to be in the store first. An
    /// index whose platforms are not all cached is refused, naming them.
    fn push_plan(&self, source: &str, platform: Option<&PlatformSpec>) -> Result<Plan, Error> {
        let (rec, img) = self.resolve(source)?;
        let index_digest = rec.as_ref().and_then(|r| r.index_digest);
        let document = |digest: &Digest| -> Result<Document, Error> {
            let bytes = self
                .store
                .read_blob(digest, MAX_MANIFEST_BYTES)
                .map_err(|_| Error::NotCached {
                    reference: format!("{source} (manifest {digest})"),
                })?;
            Ok(Document {
                digest: *digest,
                media_type: document_media_type(&bytes),
                bytes,
            })
        };
        match (index_digest, platform) {
            (Some(index), None) => {
                let top = document(&index.0)?;
                let mut children = Vec::new();
                let mut blobs = Vec::new();
                let mut platforms = Vec::new();
                let mut missing = Vec::new();
                for (child, child_platform) in index_entries(&top.bytes) {
                    let doc = document(&child).ok();
                    let parsed = doc
                        .as_ref()
                        .and_then(|d| serde_json::from_slice::<ImageManifest>(&d.bytes).ok());
                    let needed: Option<Vec<BlobRef>> = parsed.and_then(|m| {
                        std::iter::once(m.config())
                            .chain(m.layers())
                            .map(blob_of)
                            .collect()
                    });
                    match (doc, needed) {
                        (Some(doc), Some(needed))
                            if needed
                                .iter()
                                .all(|b| self.store.blob_size(&b.digest) == Some(b.size)) =>
                        {
                            blobs.extend(needed);
                            children.push(doc);
                            platforms.push(child_platform);
                        }
                        _ => missing.push(child_platform),
                    }
                }
                if !missing.is_empty() {
                    return Err(Error::PlatformsNotCached {
                        reference: source.to_owned(),
                        missing: missing.join(", "),
                    });
                }
                Ok(Plan {
                    top,
                    children,
                    blobs: dedup(blobs),
                    platforms,
                })
            }
            (index, wanted) => {
                let manifest = match (index, wanted) {
                    (Some(index), Some(p)) => {
                        let bytes = self.store.read_blob(&index.0, MAX_MANIFEST_BYTES)?;
                        BlobDigest(select_platform(source, &bytes, p)?)
                    }
                    _ => img.manifest_digest,
                };
                let img = match self.index().get_image(&manifest)? {
                    Some(i) if self.is_complete(&i) => i,
                    _ => {
                        return Err(Error::PlatformsNotCached {
                            reference: source.to_owned(),
                            missing: wanted.map_or_else(|| img.platform.clone(), |p| p.to_string()),
                        });
                    }
                };
                if let Some(p) = wanted
                    && index.is_none()
                    && img.platform != p.to_string()
                {
                    return Err(Error::NoPlatform {
                        reference: source.to_owned(),
                        platform: p.to_string(),
                        available: img.platform.clone(),
                    });
                }
                let blobs = std::iter::once(BlobRef {
                    digest: img.image_id.0,
                    size: img.config_size,
                    media_type: String::new(),
                })
                .chain(img.layers.iter().map(|l| BlobRef {
                    digest: l.digest.0,
                    size: l.size,
                    media_type: l.media_type.clone(),
                }))
                .collect();
                Ok(Plan {
                    top: document(&img.manifest_digest.0)?,
                    children: Vec::new(),
                    blobs: dedup(blobs),
                    platforms: vec![img.platform.clone()],
                })
            }
        }
    }
}

/// The manifests an index names, with each one's platform as text (`unknown/unknown` for
/// attestations and other artifacts).
fn index_entries(index_bytes: &[u8]) -> Vec<(Digest, String)> {
    #[derive(Deserialize)]
    struct Platform {
        #[serde(default)]
        os: String,
        #[serde(default)]
        architecture: String,
        #[serde(default)]
        variant: Option<String>,
    }
    #[derive(Deserialize)]
    struct Entry {
        digest: String,
        #[serde(default)]
        platform: Option<Platform>,
    }
    #[derive(Deserialize)]
    struct IndexDoc {
        #[serde(default)]
        manifests: Vec<Entry>,
    }
    let Ok(doc) = serde_json::from_slice::<IndexDoc>(index_bytes) else {
        return index_children(index_bytes)
            .into_iter()
            .map(|d| (d, "unknown".to_owned()))
            .collect();
    };
    doc.manifests
        .into_iter()
        .filter_map(|e| {
            let d = Digest::parse(&e.digest).ok()?;
            let p = e.platform.map_or_else(
                || "unknown".to_owned(),
                |p| PlatformSpec::new(&p.os, &p.architecture, p.variant.as_deref()).to_string(),
            );
            Some((d, p))
        })
        .collect()
}

/// A blob a manifest names (`None` for an invalid digest: then it is not cached either).
fn blob_of(d: &Descriptor) -> Option<BlobRef> {
    Some(BlobRef {
        digest: Digest::parse(d.digest().as_ref()).ok()?,
        size: d.size(),
        media_type: d.media_type().to_string(),
    })
}

/// Each blob once (layers shared by platforms are pushed once).
fn dedup(blobs: Vec<BlobRef>) -> Vec<BlobRef> {
    let mut seen = std::collections::HashSet::new();
    blobs
        .into_iter()
        .filter(|b| seen.insert(b.digest))
        .collect()
}
