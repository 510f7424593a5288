//! `fsck`: the store checked against the index (missing, corrupt, unreferenced blobs, broken
//! and lost references), and `--repair`, which rebuilds the index from the blobs and
//! `refs.json` and removes corrupt blobs.

use std::collections::{HashMap, HashSet};

use oci_spec::image::ImageManifest;
use serde::Serialize;

use super::Cache;
use super::pull::config_diff_ids;
use crate::archive::{MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
use crate::digest::{BlobDigest, Digest, ImageId};
use crate::error::Error;
use crate::index::{ImageRecord, LayerRecord, now};
use crate::lock::LockMode;

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

impl Cache {
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
        // A kept signature whose blobs are gone no longer counts for `load`; it is reported
        // as missing but breaks no reference (the image itself is whole).
        let signed = Self::signed_subjects(&index)?;
        for d in self.signature_blobs(&index, &signed)? {
            if !present(&d) {
                missing.insert(d);
            }
        }
        let mut reachable = self.reachable(&index)?;
        if repair {
            let loose: Vec<Digest> = blobs
                .keys()
                .filter(|d| !reachable.contains(d) && present(d))
                .copied()
                .collect();
            let restored = self.restore_signature_records(&index, &loose)?;
            if !restored.is_empty() {
                report.repaired.extend(restored);
                reachable = self.reachable(&index)?;
            }
        }
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
