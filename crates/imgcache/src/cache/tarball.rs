//! The archive side of the cache: `import` of any tarball dialect `verify` reads, and `save`
//! of a cached image as a loadable tarball.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::Cache;
use super::signatures::archived_signatures;
use crate::archive::write::{SaveFormat, SaveImage, SaveIndex, write_archive};
use crate::archive::{Archive, ArchiveImage, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
use crate::compression::Compression;
use crate::digest::{BlobDigest, Digest, ImageId};
use crate::error::{Check, Error, Problem};
use crate::index::{ImageRecord, LayerRecord, RefRecord, now};
use crate::lock::LockMode;
use crate::platform::PlatformSpec;
use crate::policy::{Accepted, Policy, SignatureArtifact};
use crate::reference::Reference;
use crate::store::IngestStart;
use crate::verify::{ImageReport, Level};

/// What `save` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct SaveReport {
    pub image_id: ImageId,
    pub manifest_digest: BlobDigest,
    pub platform: String,
    /// What `index.json` names (the OCI formats): the index the reference was pulled by, else
    /// the manifest. Engines that keep distribution digests record this one.
    pub top_digest: BlobDigest,
    /// Set when `index.json` names an index.
    pub index: Option<SavedIndex>,
    /// Kept signatures written beside the image (the OCI format only).
    pub signatures: usize,
}

/// An index named by a saved file, which holds only some of the platforms it lists.
/// How a save is cut for the engine that reads it (see [`SaveImage`]); the default is a file
/// any engine loads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ForEngine {
    /// The first layers the engine holds already: their bytes are left out.
    pub layers_in_engine: usize,
    /// Layers decompressed on the way.
    pub inflate_layers: bool,
    /// The kept signatures written beside the image (the OCI format only).
    pub signatures: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SavedIndex {
    pub digest: BlobDigest,
    /// Every platform the index lists (attestation entries left out), in its order.
    pub platforms: Vec<String>,
    /// The platforms whose manifest, config and layers are in the file.
    pub saved: Vec<String>,
}

impl SavedIndex {
    /// Whether the index lists platforms the file does not hold.
    pub fn is_partial(&self) -> bool {
        self.platforms.iter().any(|p| !self.saved.contains(p))
    }
}

#[derive(serde::Deserialize)]
struct IndexDoc {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    manifests: Option<Vec<IndexEntry>>,
}

#[derive(serde::Deserialize)]
struct IndexEntry {
    digest: String,
    platform: Option<IndexPlatform>,
}

#[derive(serde::Deserialize)]
struct IndexPlatform {
    os: String,
    architecture: String,
    variant: Option<String>,
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

impl Cache {
    /// Writes a cached image as a loadable tarball to `out` (see [`SaveFormat`]). The image
    /// is fast-verified first; a missing or damaged blob stops the save before anything is
    /// written. A reference pulled by an index (whose blob is stored) is saved, in the OCI
    /// formats, with `index.json` naming that index, as Docker's containerd image store saves
    /// it: engines that keep distribution digests then know the image by the digest it was
    /// pulled by. Only the cached platform is in the file; [`SaveReport::index`] says so.
    ///
    /// The OCI format carries the image's kept signatures too (see [`Cache::save_with`]).
    pub fn save(
        &self,
        reference: &str,
        format: SaveFormat,
        out: impl Write,
    ) -> Result<SaveReport, Error> {
        self.save_with(reference, format, true, out)
    }

    /// [`Cache::save`], with or without the kept signatures. Without, an OCI file holds one
    /// manifest, which is what `podman load` reads (it refuses an `index.json` listing several).
    pub fn save_with(
        &self,
        reference: &str,
        format: SaveFormat,
        signatures: bool,
        out: impl Write,
    ) -> Result<SaveReport, Error> {
        let opts = ForEngine {
            signatures,
            ..ForEngine::default()
        };
        self.save_for_engine(reference, format, opts, out)
    }

    /// [`Cache::save`] for one engine (see [`ForEngine`]).
    pub(super) fn save_for_engine(
        &self,
        reference: &str,
        format: SaveFormat,
        engine: ForEngine,
        out: impl Write,
    ) -> Result<SaveReport, Error> {
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
        let index = match (&rec, format) {
            (Some(r), SaveFormat::Combined | SaveFormat::Oci) => self.save_index(r, &img)?,
            _ => None,
        };
        self.index().touch(&img.manifest_digest)?;
        // Only the OCI format has a place for signatures (`load` never asks for it).
        let signatures = match format {
            SaveFormat::Oci if engine.signatures => {
                let top = index
                    .as_ref()
                    .map_or(img.manifest_digest.0, |(ix, _)| ix.digest);
                self.stored_signatures(&top)?
            }
            _ => Vec::new(),
        };
        let image = SaveImage {
            record: &img,
            reference: name.as_ref(),
            index: index.as_ref().map(|(ix, _)| ix.clone()),
            layers_in_engine: engine.layers_in_engine,
            inflate_layers: engine.inflate_layers,
            signatures: &signatures,
        };
        write_archive(&self.store, &[image], format, out)?;
        Ok(SaveReport {
            image_id: img.image_id,
            manifest_digest: img.manifest_digest,
            platform: img.platform.clone(),
            top_digest: index
                .as_ref()
                .map_or(img.manifest_digest, |(ix, _)| BlobDigest(ix.digest)),
            index: index.map(|(_, i)| i),
            signatures: signatures.len(),
        })
    }

    /// The digest a save of `rec` names in `index.json` (combined and OCI formats): the index it
    /// was pulled by when that is stored, else the manifest.
    pub(super) fn save_top_digest(
        &self,
        rec: &RefRecord,
        img: &ImageRecord,
    ) -> Result<Digest, Error> {
        Ok(self
            .save_index(rec, img)?
            .map_or(img.manifest_digest.0, |(ix, _)| ix.digest))
    }

    /// The index `rec` was pulled by, to be named in `index.json`: `None` when there was none,
    /// when its blob is no longer stored, or when it does not list the cached manifest (then
    /// the manifest is named, as for a single-platform image).
    fn save_index(
        &self,
        rec: &RefRecord,
        img: &ImageRecord,
    ) -> Result<Option<(SaveIndex, SavedIndex)>, Error> {
        let Some(digest) = rec.index_digest.map(|d| d.0) else {
            return Ok(None);
        };
        if !self.store.has_blob(&digest) {
            tracing::warn!(
                "{}: the index {digest} it was pulled by is no longer stored: saving the manifest",
                rec.name
            );
            return Ok(None);
        }
        // Checked against its digest here; hashed again while copied.
        let bytes = self.store.read_blob(&digest, MAX_MANIFEST_BYTES)?;
        let doc: IndexDoc = match serde_json::from_slice(&bytes) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(
                    "{}: index {digest} is not readable ({e}): saving the manifest",
                    rec.name
                );
                return Ok(None);
            }
        };
        let mut platforms = Vec::new();
        let mut listed = false;
        for m in doc.manifests.iter().flatten() {
            listed |= m.digest == img.manifest_digest.to_string();
            let Some(p) = &m.platform else { continue };
            if p.os == "unknown" && p.architecture == "unknown" {
                continue; // attestation entries are not images
            }
            let p = PlatformSpec::new(&p.os, &p.architecture, p.variant.as_deref()).to_string();
            if !platforms.contains(&p) {
                platforms.push(p);
            }
        }
        if !listed {
            tracing::warn!(
                "{}: index {digest} does not list the cached manifest {}: saving the manifest",
                rec.name,
                img.manifest_digest
            );
            return Ok(None);
        }
        let media_type = doc
            .media_type
            .unwrap_or_else(|| crate::registry::MEDIA_TYPE_OCI_INDEX.to_owned());
        Ok(Some((
            SaveIndex {
                digest,
                media_type,
                size: bytes.len() as u64,
            },
            SavedIndex {
                digest: BlobDigest(digest),
                saved: vec![img.platform.clone()],
                platforms,
            },
        )))
    }

    /// Imports the images of an archive (all, or those `select` picks) into the cache, their
    /// image IDs unchanged (config bytes kept) and layers stored as given. Each image is
    /// verified deep first; nothing of an image that fails is recorded. `tag` names the
    /// imported image (only with one image); otherwise the archive's own tags are used, and an
    /// untagged image is recorded under its image ID. `path` may be an OCI layout directory.
    pub fn import(
        &self,
        path: &Path,
        tag: Option<&str>,
        select: Option<&str>,
        policy: Option<&Policy>,
    ) -> Result<Vec<ImportReport>, Error> {
        if !path.is_dir() {
            return self.import_archive(path, path, tag, select, policy);
        }
        let packed = self.pack_layout(path)?;
        // Every error names the directory the user gave, not its temporary tar.
        self.import_archive(&packed.0, path, tag, select, policy)
            .map_err(|e| e.naming(&packed.0, path))
    }

    /// [`Self::import`] of the archive file `file`, which messages call `path`.
    fn import_archive(
        &self,
        file: &Path,
        path: &Path,
        tag: Option<&str>,
        select: Option<&str>,
        policy: Option<&Policy>,
    ) -> Result<Vec<ImportReport>, Error> {
        let archive = Archive::open(file)?;
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
        let mut signed = Vec::new();
        if let Some(policy) = policy {
            for img in &images {
                signed.push(import_allowed(policy, &archive, img, tag.as_ref())?);
            }
        }
        let _gc = self.store.gc_lock(LockMode::Shared)?;
        // One moment for the whole archive: its platforms' records tie, and a name then means
        // this machine's platform (an import spanning seconds made it the last one imported).
        let at = now();
        let mut out = Vec::new();
        for (i, img) in images.iter().enumerate() {
            let signed = signed.get(i);
            out.push(self.import_image(&archive, img, &hashes, tag.as_ref(), at, signed)?);
        }
        self.save_refs()?;
        Ok(out)
    }

    /// An OCI layout directory packed into a tar in the store's `ingest/` (removed when
    /// dropped, swept if a crash leaves it): the archive reader reads one file. Links are kept
    /// as links, so nothing outside the directory is read.
    fn pack_layout(&self, dir: &Path) -> Result<PackedLayout, Error> {
        if !dir.join("oci-layout").is_file() {
            return Err(Error::archive(
                dir,
                Problem::new(
                    Check::NotAnArchive,
                    "a directory that is not an OCI layout (it has no oci-layout file)",
                ),
            ));
        }
        let packed = PackedLayout(self.store.temp_path("layout.tar"));
        let io = |e: std::io::Error| Error::io(&packed.0, e);
        let file = std::fs::File::create_new(&packed.0).map_err(io)?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        tar.follow_symlinks(false);
        tar.append_dir_all(".", dir)
            .map_err(|e| Error::io(dir, e))?;
        tar.into_inner()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .map_err(io)?;
        Ok(packed)
    }

    fn import_image(
        &self,
        archive: &Archive,
        img: &ArchiveImage,
        hashes: &crate::verify::LayerHashes,
        tag: Option<&Reference>,
        at: i64,
        signed: Option<&SignedImport>,
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
        // Kept signatures make the digest they sign the reference's: the index above the
        // manifest is stored then, so that load and verify find them.
        let mut index_digest = None;
        if let Some(s) = signed.filter(|s| s.accepted.iter().any(|a| !a.signers.is_empty())) {
            if s.subject != manifest_digest.0 {
                let bytes = archive.read_entry(
                    &format!("blobs/sha256/{}", s.subject.hex()),
                    MAX_MANIFEST_BYTES,
                )?;
                if self.store.put_bytes(&bytes)? != s.subject {
                    return Err(Error::DigestMismatch {
                        what: format!("{}: index {}", path.display(), s.subject),
                        expected: s.subject.to_string(),
                        found: Digest::of_bytes(&bytes).to_string(),
                    });
                }
                index_digest = Some(BlobDigest(s.subject));
            }
            for a in &s.accepted {
                self.keep_signatures(&s.subject, &s.artifacts, a)?;
            }
        }
        let mut index = self.index();
        index.put_image(&record)?;
        for n in &names {
            index.put_ref(&RefRecord {
                name: n.clone(),
                platform: platform.clone(),
                index_digest,
                manifest_digest,
                updated_at: at,
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
}

/// A temporary tar of a layout directory, removed when dropped.
struct PackedLayout(std::path::PathBuf);

impl Drop for PackedLayout {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An image allowed in under a policy, with the signatures that allowed it.
struct SignedImport {
    /// The digest the signatures cover (what `index.json` names the image by).
    subject: Digest,
    artifacts: Vec<SignatureArtifact>,
    accepted: Vec<Accepted>,
}

/// An import under a policy: each name the image would get is judged under its scope, with the
/// signatures the archive carries for it (an OCI archive lists them in `index.json`, as `save
/// --format oci` writes them; Docker's formats carry none), before anything is stored.
fn import_allowed(
    policy: &Policy,
    archive: &Archive,
    img: &ArchiveImage,
    tag: Option<&Reference>,
) -> Result<SignedImport, Error> {
    let path = archive.path();
    let names: Vec<Reference> = match tag {
        Some(t) => vec![t.clone()],
        None => img
            .tags
            .iter()
            .filter_map(|t| Reference::parse(t).ok())
            .collect(),
    };
    let subject = img
        .top_digest
        .or(img.manifest_digest)
        .map(|d| d.0)
        .or(img.image_id.map(|i| i.0))
        .unwrap_or_else(|| Digest::of_bytes(b""));
    if names.is_empty() && !policy.accepts_unsigned_default() {
        return Err(Error::PolicyRefused {
            reference: format!("{} (an image without a name)", path.display()),
            policy: policy.path().into(),
            scope: "default".into(),
            reason: "the default scope asks for signatures, and an image without a name cannot be matched to a signed identity".into(),
        });
    }
    let artifacts = archived_signatures(archive, &subject);
    let mut accepted = Vec::new();
    for name in &names {
        let a = policy.check(name, &subject, &artifacts).map_err(|e| match e {
            Error::PolicyRefused { reference, policy, scope, reason } => Error::PolicyRefused {
                reference: format!("{reference} from {}", path.display()),
                policy,
                scope,
                reason: if artifacts.is_empty() {
                    format!("{reason}; the archive carries no signature of {subject} (Docker's archive formats cannot carry them; save --format oci does)")
                } else {
                    reason
                },
            },
            e => e,
        })?;
        accepted.push(a);
    }
    Ok(SignedImport {
        subject,
        artifacts,
        accepted,
    })
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
