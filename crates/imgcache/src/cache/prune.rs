//! Letting go: `rm` drops references, `prune` removes the blobs no reference needs and, with
//! a size limit, evicts the least recently used images first.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::pull::index_children;
use super::{Cache, STALE_INGEST};
use crate::archive::MAX_MANIFEST_BYTES;
use crate::digest::{BlobDigest, Digest};
use crate::error::Error;
use crate::index::{ImageRecord, Index};
use crate::lock::LockMode;
use crate::reference::Reference;

/// What `prune` removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub references_evicted: Vec<String>,
    pub images_removed: usize,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    pub partials_removed: usize,
}

impl Cache {
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
        let reachable = self.reachable(&index)?;
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
}

impl Cache {
    /// Every blob a reference still needs: what the index records, and the child manifests of
    /// each referenced index with their configs (stored at pull time so that `serve` can answer
    /// for every platform).
    pub(super) fn reachable(&self, index: &Index) -> Result<HashSet<Digest>, Error> {
        let mut out = index.reachable_blobs()?;
        out.extend(self.signature_blobs(index, &Self::signed_subjects(index)?)?);
        for r in index.refs()? {
            if let Some(i) = r.index_digest
                && let Ok(bytes) = self.store.read_blob(&i.0, MAX_MANIFEST_BYTES)
            {
                for child in index_children(&bytes) {
                    out.insert(child);
                    if let Some(config) = self.manifest_config(&child) {
                        out.insert(config);
                    }
                }
            }
        }
        Ok(out)
    }
}

impl Cache {
    /// The digests signatures may be kept for: what each reference resolved to.
    pub(super) fn signed_subjects(index: &Index) -> Result<HashSet<Digest>, Error> {
        Ok(index
            .refs()?
            .into_iter()
            .flat_map(|r| [Some(r.manifest_digest.0), r.index_digest.map(|i| i.0)])
            .flatten()
            .collect())
    }

    /// The config digest a stored image manifest names.
    fn manifest_config(&self, manifest: &Digest) -> Option<Digest> {
        let bytes = self.store.read_blob(manifest, MAX_MANIFEST_BYTES).ok()?;
        let m: oci_spec::image::ImageManifest = serde_json::from_slice(&bytes).ok()?;
        Digest::parse(m.config().digest().as_ref()).ok()
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
