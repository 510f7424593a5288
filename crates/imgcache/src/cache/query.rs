//! Read-only questions about cached images: `ls`, `inspect REF`, and `verify REF` (fast or
//! deep) on the stored blobs.

use oci_spec::image::ImageConfiguration;
use serde::Serialize;

use super::Cache;
use crate::archive::{Layer, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, Platform};
use crate::compression::Compression;
use crate::digest::{BlobDigest, DiffId, Digest, ImageId};
use crate::error::{Check, Error, Problem};
use crate::index::ImageRecord;
use crate::lock::LockMode;
use crate::verify::{ImageReport, Level, compare_layer, digest_layer};

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

impl Cache {
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
