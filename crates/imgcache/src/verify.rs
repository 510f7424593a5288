//! Verification of image archives at two levels.
//!
//! - **fast**: tar headers and the small JSON entries only; layer data is seeked over. The
//!   config hashes to its name (and to the expected image ID), every layer is present with a
//!   plausible size and start, layer count equals diff_id count.
//! - **deep**: additionally every layer is read, decompressed and hashed (layers in parallel)
//!   and compared with its diff_id and, where the archive records one, its blob digest.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::archive::{Archive, ArchiveImage, Dialect, Layer, Platform};
use crate::compression::Compression;
use crate::digest::{Digest, HashingReader, ImageId, hash_reader};
use crate::error::{Check, Error, Problem};
use crate::index::{FileIdentity, Index};

/// How much to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    #[default]
    Fast,
    Deep,
}

/// What to verify and against what.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    pub level: Level,
    /// The image ID the archive must hold.
    pub expect: Option<ImageId>,
    /// Verify only the images matching this tag or image ID.
    pub image: Option<String>,
}

/// The verdict on one file.
#[derive(Debug, Serialize)]
pub struct FileReport {
    pub path: PathBuf,
    pub ok: bool,
    pub dialect: Option<Dialect>,
    /// Compression of the archive file itself.
    pub compression: Option<Compression>,
    /// Bytes read from the file (for a compressed archive: compressed bytes).
    pub bytes_read: u64,
    pub images: Vec<ImageReport>,
    /// Why the file as a whole failed (not found, not an archive, truncated, unsafe...).
    pub error: Option<Problem>,
    pub warnings: Vec<Problem>,
    /// Deep level answered from a remembered deep verification of this unchanged file
    /// (same device, inode, size, modification and change times); fast checks still ran.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub remembered: bool,
}

impl FileReport {
    /// True when the file could not be judged because of the environment (I/O error).
    pub fn is_environment_error(&self) -> bool {
        self.error
            .as_ref()
            .is_some_and(|p| p.check == Check::Environment)
    }
}

/// The verdict on one image of a file.
#[derive(Debug, Serialize)]
pub struct ImageReport {
    pub ok: bool,
    pub image_id: Option<ImageId>,
    pub tags: Vec<String>,
    pub platform: Option<Platform>,
    pub layer_count: usize,
    /// Sum of the stored layer sizes.
    pub size: u64,
    pub layers: Vec<Layer>,
    pub failures: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

/// Verifies each path; a directory stands for the regular files directly inside it.
/// Files are checked in parallel.
pub fn verify_paths(paths: &[PathBuf], opts: &VerifyOptions) -> Vec<FileReport> {
    let files = expand_dirs(paths);
    if files.len() == 1 {
        return vec![verify_file(&files[0], opts)];
    }
    files.par_iter().map(|p| verify_file(p, opts)).collect()
}

/// Like [`verify_paths`], remembering successful deep verifications in the cache at `memo`
/// (keyed by file identity) so an unchanged file is not hashed again: a remembered file gets
/// the fast checks only. The cache is created only to record a success.
pub fn verify_paths_memo(
    paths: &[PathBuf],
    opts: &VerifyOptions,
    memo: Option<&Path>,
) -> Vec<FileReport> {
    let Some(root) = memo.filter(|_| opts.level == Level::Deep) else {
        return verify_paths(paths, opts);
    };
    let db = root.join("index.db");
    let index = || db.exists().then(|| Index::open(&db).ok()).flatten();
    let identities: Vec<(PathBuf, Option<FileIdentity>)> = expand_dirs(paths)
        .into_iter()
        .map(|p| {
            let id = fs::metadata(&p)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| FileIdentity::of(&m));
            (p, id)
        })
        .collect();
    let remembered: Vec<bool> = match index() {
        Some(ix) => identities
            .iter()
            .map(|(_, id)| {
                id.is_some_and(|id| {
                    ix.file_memo(&id).ok().flatten().as_deref() == Some(MEMO_DEEP_OK)
                })
            })
            .collect(),
        None => vec![false; identities.len()],
    };
    let reports: Vec<FileReport> = identities
        .par_iter()
        .zip(&remembered)
        .map(|((p, _), &known)| {
            if known {
                let fast = VerifyOptions {
                    level: Level::Fast,
                    ..opts.clone()
                };
                let mut r = verify_file(p, &fast);
                r.remembered = r.ok;
                if !r.ok {
                    return verify_file(p, opts);
                }
                r
            } else {
                verify_file(p, opts)
            }
        })
        .collect();
    let fresh_ok: Vec<FileIdentity> = identities
        .iter()
        .zip(&reports)
        .zip(&remembered)
        .filter(|((_, r), known)| r.ok && !**known && opts.expect.is_none() && opts.image.is_none())
        .filter_map(|(((p, id), _), _)| {
            // Only if the file did not change while it was being read.
            let now = fs::metadata(p).ok().map(|m| FileIdentity::of(&m));
            id.filter(|id| now == Some(*id))
        })
        .collect();
    if !fresh_ok.is_empty() {
        let ix = index().or_else(|| {
            crate::store::Store::open(root, std::time::Duration::from_secs(30)).ok()?;
            Index::open(&db).ok()
        });
        if let Some(ix) = ix {
            for id in fresh_ok {
                if let Err(e) = ix.put_file_memo(&id, MEMO_DEEP_OK) {
                    tracing::warn!("cannot remember the verification: {e}");
                }
            }
        }
    }
    reports
}

/// What a file memo records: every image of the file passed deep verification.
const MEMO_DEEP_OK: &str = "deep-ok";

fn expand_dirs(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        let Ok(entries) = fs::read_dir(p) else {
            out.push(p.clone()); // a file, or an error verify_file will report
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        files.sort();
        if files.is_empty() {
            out.push(p.clone()); // reported as a directory with nothing to verify
        }
        out.extend(files);
    }
    out
}

/// Verifies one archive file.
pub fn verify_file(path: &Path, opts: &VerifyOptions) -> FileReport {
    let archive = match Archive::open(path) {
        Ok(a) => a,
        Err(e) => return failed_file(path, &e),
    };
    let mut report = FileReport {
        path: path.into(),
        ok: true,
        dialect: Some(archive.dialect),
        compression: Some(archive.compression()),
        bytes_read: 0,
        images: Vec::new(),
        error: None,
        warnings: archive.warnings.clone(),
        remembered: false,
    };
    let selected: Vec<&ArchiveImage> = match select(&archive, opts) {
        Ok(s) => s,
        Err(p) => {
            report.ok = false;
            report.error = Some(p);
            report.bytes_read = archive.bytes_read();
            return report;
        }
    };
    report.images = selected
        .iter()
        .map(|img| image_report(img, opts.expect))
        .collect();
    if opts.level == Level::Deep {
        deep_check(&archive, &selected, &mut report.images);
    }
    for img in &mut report.images {
        img.ok = img.failures.is_empty();
    }
    report.ok = report.images.iter().all(|i| i.ok);
    report.bytes_read = archive.bytes_read();
    report
}

fn failed_file(path: &Path, e: &Error) -> FileReport {
    FileReport {
        path: path.into(),
        ok: false,
        dialect: None,
        compression: None,
        bytes_read: 0,
        images: Vec::new(),
        error: Some(e.to_problem()),
        warnings: Vec::new(),
        remembered: false,
    }
}

/// `--image` picks images; `--expect` without `--image` picks the image with that ID, and
/// fails naming the IDs found when there is none.
pub(crate) fn select<'a>(
    archive: &'a Archive,
    opts: &VerifyOptions,
) -> Result<Vec<&'a ArchiveImage>, Problem> {
    if let Some(sel) = &opts.image {
        return archive
            .select(sel)
            .map_err(|e| Problem::new(Check::NotFound, e.to_string()));
    }
    let all: Vec<&ArchiveImage> = archive.images.iter().collect();
    let Some(expect) = opts.expect else {
        return Ok(all);
    };
    let matching: Vec<_> = all
        .iter()
        .copied()
        .filter(|i| i.id() == Some(expect))
        .collect();
    if matching.is_empty() && all.len() > 1 {
        let found: Vec<String> = all
            .iter()
            .map(|i| i.id().map_or("?".into(), |d| d.to_string()))
            .collect();
        return Err(Problem::new(
            Check::ExpectedImageId,
            format!(
                "the archive does not hold image {expect}; it holds {}",
                found.join(", ")
            ),
        )
        .mismatch(expect, found.join(",")));
    }
    Ok(if matching.is_empty() { all } else { matching })
}

pub(crate) fn image_report(img: &ArchiveImage, expect: Option<ImageId>) -> ImageReport {
    let (warnings, mut failures): (Vec<Problem>, Vec<Problem>) = img
        .problems
        .iter()
        .cloned()
        .partition(|p| p.check == Check::Warning);
    if let Some(expect) = expect
        && img.id() != Some(expect)
    {
        let found = img.id().map_or("unknown".into(), |d| d.to_string());
        failures.push(
            Problem::new(
                Check::ExpectedImageId,
                "the archive holds a different image than expected",
            )
            .entry(&img.config_entry)
            .mismatch(expect, found),
        );
    }
    ImageReport {
        ok: failures.is_empty(),
        image_id: img.id(),
        tags: img.tags.clone(),
        platform: img.platform.clone(),
        layer_count: img.layers.len(),
        size: img.stored_size(),
        layers: img.layers.clone(),
        failures,
        warnings,
    }
}

/// Digests of one stored layer.
pub(crate) struct LayerDigests {
    /// Of the bytes as stored.
    pub stored: Digest,
    /// Of the decompressed tar (equal to `stored` for an uncompressed layer).
    pub uncompressed: Result<Digest, String>,
}

/// Buffer for hashing uncompressed data in place.
const HASH_BUF: usize = 1024 * 1024;

/// Reads a stored layer once: hashes the stored bytes and, through the decoder, the tar.
pub(crate) fn digest_layer(
    reader: &mut dyn Read,
    compression: Compression,
) -> io::Result<LayerDigests> {
    let mut buf = vec![0u8; HASH_BUF];
    if compression == Compression::None {
        let (d, _) = hash_reader(reader, &mut buf)?;
        return Ok(LayerDigests {
            stored: d,
            uncompressed: Ok(d),
        });
    }
    let mut stored = HashingReader::new(reader);
    let uncompressed = match compression.decoder(&mut stored) {
        Ok(decoder) => hash_reader(decoder, &mut buf)
            .map(|(d, _)| d)
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    // Whatever the decoder left unread (trailing bytes, or all of it on error) is still part of
    // the stored blob.
    io::copy(&mut stored, &mut io::sink())?;
    Ok(LayerDigests {
        stored: stored.finish().0,
        uncompressed,
    })
}

/// Hashes every distinct layer entry of the selected images once, then compares.
/// The digests of every distinct stored layer of some images, by where it lies in the archive.
pub(crate) struct LayerHashes {
    jobs: Vec<((u64, u64), Compression)>,
    results: Vec<Result<LayerDigests, String>>,
}

impl LayerHashes {
    pub fn get(&self, layer: &Layer) -> Option<&Result<LayerDigests, String>> {
        let range = Archive::layer_range(layer)?;
        let j = self.jobs.binary_search_by_key(&range, |j| j.0).ok()?;
        self.results.get(j)
    }
}

/// Hashes every distinct layer entry of the selected images once (in parallel when the
/// archive can be read in place), compares with diff_ids and blob digests, adds failures to
/// the reports, and returns the digests.
pub(crate) fn deep_check(
    archive: &Archive,
    images: &[&ArchiveImage],
    reports: &mut [ImageReport],
) -> LayerHashes {
    // Layers shared between images, or linked entries, are hashed once.
    let mut jobs: Vec<((u64, u64), Compression)> = images
        .iter()
        .flat_map(|img| img.layers.iter())
        .filter_map(|l| Some((Archive::layer_range(l)?, l.compression?)))
        .collect();
    jobs.sort_by_key(|j| j.0);
    jobs.dedup_by_key(|j| j.0);

    let results: Vec<Result<LayerDigests, String>> = if archive.source.is_plain() {
        jobs.par_iter()
            .map(|&((off, len), c)| {
                digest_layer(&mut archive.source.range_reader(off, len), c)
                    .map_err(|e| e.to_string())
            })
            .collect()
    } else {
        let ranges: Vec<(u64, u64)> = jobs.iter().map(|j| j.0).collect();
        let mut out: Vec<Result<LayerDigests, String>> = Vec::with_capacity(jobs.len());
        let streamed = archive.source.for_each_range(&ranges, |i, r| {
            out.push(digest_layer(r, jobs[i].1).map_err(|e| e.to_string()));
            Ok(())
        });
        if let Err(e) = streamed {
            out.resize_with(jobs.len(), || Err(e.to_string()));
        }
        out
    };

    let hashes = LayerHashes { jobs, results };
    for (img, report) in images.iter().zip(reports.iter_mut()) {
        for (i, layer) in img.layers.iter().enumerate() {
            let Some(result) = hashes.get(layer) else {
                continue;
            };
            match result {
                Ok(d) => compare_layer(i, layer, d, &mut report.failures),
                Err(e) => report.failures.push(
                    Problem::new(
                        Check::LayerData,
                        format!("layer {i} ({:?}) cannot be read: {e}", layer.entry),
                    )
                    .entry(&layer.entry)
                    .layer(i),
                ),
            }
        }
    }
    hashes
}

pub(crate) fn compare_layer(
    i: usize,
    layer: &Layer,
    d: &LayerDigests,
    failures: &mut Vec<Problem>,
) {
    if let Some(blob) = layer.blob_digest
        && blob.0 != d.stored
    {
        failures.push(
            Problem::new(
                Check::BlobDigest,
                format!(
                    "layer {i} ({:?}): stored bytes do not hash to the blob digest",
                    layer.entry
                ),
            )
            .entry(&layer.entry)
            .layer(i)
            .mismatch(blob, d.stored),
        );
    }
    let uncompressed = match &d.uncompressed {
        Ok(u) => *u,
        Err(e) => {
            failures.push(
                Problem::new(
                    Check::LayerData,
                    format!("layer {i} ({:?}) does not decompress: {e}", layer.entry),
                )
                .entry(&layer.entry)
                .layer(i),
            );
            return;
        }
    };
    if let Some(diff_id) = layer.diff_id
        && diff_id.0 != uncompressed
    {
        failures.push(
            Problem::new(
                Check::DiffId,
                format!(
                    "layer {i} ({:?}): content does not match the config's diff_id",
                    layer.entry
                ),
            )
            .entry(&layer.entry)
            .layer(i)
            .mismatch(diff_id, uncompressed),
        );
    }
    if let Some(named) = layer.name_digest
        && named != d.stored
        && named != uncompressed
    {
        failures.push(
            Problem::new(
                Check::BlobDigest,
                format!(
                    "layer {i}: entry name {:?} names a digest its content does not have",
                    layer.entry
                ),
            )
            .entry(&layer.entry)
            .layer(i)
            .mismatch(named, d.stored),
        );
    }
}
