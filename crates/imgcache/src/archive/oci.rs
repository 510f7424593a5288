//! The OCI side of reading an archive: `index.json`, nested indexes (and Docker manifest lists)
//! and the image manifests they name, each stored as `blobs/sha256/<hex>`. Used by the OCI and
//! Docker-combined dialects; configs and layers are then read as for every dialect.

use std::collections::HashSet;

use oci_spec::image::{Descriptor, ImageManifest, MediaType};
use serde::Deserialize;

use super::{Archive, ArchiveImage, Layer, MAX_MANIFEST_BYTES, SmallRead};
use crate::digest::{BlobDigest, Digest, ImageId, truncate_for_message};
use crate::error::{Check, Error, Problem};
use crate::platform::PlatformSpec;
use crate::policy::SignatureFormat;
use crate::policy::artifact::{SignatureTag, blob_descriptors, classify};

/// A signature artifact an OCI archive lists in `index.json` beside its images, as `save
/// --format oci` writes them: judged at import under a policy, never read as an image.
#[derive(Debug, Clone)]
pub struct ArchivedSignature {
    pub digest: Digest,
    pub format: SignatureFormat,
    /// The digest it signs: the manifest's `subject`, or for cosign's tag scheme the digest
    /// its `sha256-<hex>.sig` name gives.
    pub subject: Option<Digest>,
    /// The manifest's bytes (its blobs are read only at import).
    pub manifest: Vec<u8>,
}

/// How deep OCI indexes may nest.
const MAX_INDEX_DEPTH: usize = 4;
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The part of an OCI index (or Docker manifest list) that names images. Docker 25.0.0 and
/// 25.0.1 write `"manifests": null` when saving by ID (moby#47210), so null reads as empty.
#[derive(Deserialize)]
pub(super) struct IndexManifests {
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

impl IndexManifests {
    /// Parses with the OCI types; when they refuse the document, says whether a malformed
    /// digest is why.
    pub(super) fn parse(bytes: &[u8], entry: &str) -> Result<Self, Problem> {
        serde_json::from_slice(bytes).map_err(|e| {
            #[derive(Deserialize)]
            struct Loose {
                manifests: Option<Vec<LooseDescriptor>>,
            }
            let bad = serde_json::from_slice::<Loose>(bytes).ok().and_then(|l| {
                l.manifests?
                    .into_iter()
                    .find(|d| Digest::parse(&d.digest).is_err())
            });
            match bad {
                Some(d) => desc_digest(&d.digest)
                    .err()
                    .unwrap_or_else(|| Problem::new(Check::InvalidDigest, e.to_string())),
                None => Problem::new(
                    Check::InvalidJson,
                    format!("{entry} is not an image index: {e}"),
                ),
            }
            .entry(entry)
        })
    }
}

/// A descriptor as written, its digest still unchecked, so that one malformed digest is
/// reported where it is instead of failing the whole document.
#[derive(Deserialize)]
struct LooseDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
}

impl From<&Descriptor> for LooseDescriptor {
    fn from(d: &Descriptor) -> Self {
        Self {
            media_type: d.media_type().to_string(),
            digest: d.digest().to_string(),
            size: d.size(),
        }
    }
}

/// An image manifest's config and layers.
#[derive(Deserialize)]
struct ManifestView {
    config: LooseDescriptor,
    #[serde(default)]
    layers: Vec<LooseDescriptor>,
}

impl ManifestView {
    /// Parses with the OCI types; a document they refuse only for its digests is read loosely.
    fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        match serde_json::from_slice::<ImageManifest>(bytes) {
            Ok(m) => Ok(Self {
                config: m.config().into(),
                layers: m.layers().iter().map(Into::into).collect(),
            }),
            // Read loosely only to report a malformed digest where it is.
            Err(e) => match serde_json::from_slice::<Self>(bytes) {
                Ok(loose)
                    if std::iter::once(&loose.config)
                        .chain(&loose.layers)
                        .any(|d| Digest::parse(&d.digest).is_err()) =>
                {
                    Ok(loose)
                }
                _ => Err(e),
            },
        }
    }
}

impl Archive {
    /// Reads every image an index names; `parent_tags` are the names of the index itself, which
    /// apply to each of its platform images, and `top` the digest `index.json` names it by.
    pub(super) fn read_oci_index(
        &mut self,
        index: &IndexManifests,
        depth: usize,
        parent_tags: &[String],
        top: Option<BlobDigest>,
        referenced: &mut HashSet<String>,
    ) -> Result<(), Error> {
        if depth > MAX_INDEX_DEPTH {
            return Err(self.fail(Problem::new(
                Check::InvalidJson,
                format!("indexes nest deeper than {MAX_INDEX_DEPTH} levels"),
            )));
        }
        // Inside an image's own index (depth > 0), a platform whose manifest is absent is
        // skipped: `docker save` on the containerd image store writes only the platforms the
        // engine holds, usually just this host's. The first such absence is kept to fail with
        // when no platform at all is present.
        let mut absent: Option<Problem> = None;
        let mut present = 0usize;
        for desc in index.manifests.iter().flatten() {
            if let Some(p) = desc.platform()
                && p.os().to_string() == "unknown"
                && p.architecture().to_string() == "unknown"
            {
                continue; // attestation manifests (buildx) are not images
            }
            let digest = match desc_digest(desc.digest().as_ref()) {
                Ok(d) => d,
                Err(p) => return Err(self.fail(p)),
            };
            let entry = blob_entry(&digest);
            referenced.insert(entry.clone());
            let bytes = match self.read_small(&entry, MAX_MANIFEST_BYTES) {
                Ok(b) => b,
                Err(SmallRead::Error(e)) => return Err(e),
                Err(SmallRead::Problem(p)) if depth > 0 && p.check == Check::MissingEntry => {
                    let platform = desc.platform().as_ref().map_or_else(
                        || "a platform".to_owned(),
                        |p| {
                            let variant = p.variant().as_deref();
                            let (os, arch) = (p.os().to_string(), p.architecture().to_string());
                            PlatformSpec::new(&os, &arch, variant).to_string()
                        },
                    );
                    self.warnings.push(
                        Problem::new(
                            Check::MissingEntry,
                            format!(
                                "the index lists {platform}, whose manifest {entry:?} is not in the archive (only the platforms present are read)"
                            ),
                        )
                        .entry(&entry),
                    );
                    absent.get_or_insert(p);
                    continue;
                }
                Err(SmallRead::Problem(p)) => return Err(self.fail(p)),
            };
            present += 1;
            let actual = Digest::of_bytes(&bytes);
            if actual != digest {
                return Err(self.fail(
                    Problem::new(
                        Check::ManifestDigest,
                        format!("manifest {entry:?} does not hash to its name"),
                    )
                    .entry(entry)
                    .mismatch(digest, actual),
                ));
            }
            let mut tags = ref_names(desc);
            if tags.is_empty() {
                tags = parent_tags.to_vec();
            }
            let top = top.unwrap_or(BlobDigest(digest));
            match desc.media_type() {
                MediaType::ImageIndex => {
                    self.read_nested_index(&bytes, &entry, depth, &tags, top, referenced)?
                }
                MediaType::Other(m) if m == DOCKER_LIST => {
                    self.read_nested_index(&bytes, &entry, depth, &tags, top, referenced)?
                }
                _ if self.read_signature(desc, digest, &bytes, referenced) => {}
                _ => {
                    let manifest = ManifestView::parse(&bytes).map_err(|e| {
                        self.fail(
                            Problem::new(
                                Check::InvalidJson,
                                format!("manifest {entry:?} is not an image manifest: {e}"),
                            )
                            .entry(&entry),
                        )
                    })?;
                    // The same manifest under several names is one image with several tags.
                    let known = BlobDigest(digest);
                    if let Some(img) = self
                        .images
                        .iter_mut()
                        .find(|i| i.manifest_digest == Some(known))
                    {
                        img.add_tags(tags);
                        continue;
                    }
                    let mut img = self.read_oci_manifest(&manifest, known, tags, referenced);
                    img.top_digest = Some(top);
                    self.images.push(img);
                }
            }
        }
        match absent {
            Some(p) if present == 0 => Err(self.fail(p)),
            _ => Ok(()),
        }
    }

    fn read_nested_index(
        &mut self,
        bytes: &[u8],
        entry: &str,
        depth: usize,
        tags: &[String],
        top: BlobDigest,
        referenced: &mut HashSet<String>,
    ) -> Result<(), Error> {
        let nested = IndexManifests::parse(bytes, entry).map_err(|p| self.fail(p))?;
        self.read_oci_index(&nested, depth + 1, tags, Some(top), referenced)
    }

    /// Sets a signature artifact aside (true), or leaves a manifest that is none to be read as
    /// an image (false). Its blobs count as referenced; they are read only at import.
    fn read_signature(
        &mut self,
        desc: &Descriptor,
        digest: Digest,
        bytes: &[u8],
        referenced: &mut HashSet<String>,
    ) -> bool {
        let Ok(parsed) = serde_json::from_slice::<ImageManifest>(bytes) else {
            return false;
        };
        let Some(format) = classify(&parsed) else {
            return false;
        };
        let subject = match parsed.subject() {
            Some(s) => Digest::parse(s.digest().as_ref()).ok(),
            None => ref_names(desc).iter().find_map(|n| {
                match SignatureTag::parse(n.rsplit(':').next()?)? {
                    SignatureTag::Cosign(d) => Some(d),
                    SignatureTag::Referrers(_) => None,
                }
            }),
        };
        // (a manifest that breaks the caps is judged at import, where the policy says why)
        let blobs = blob_descriptors(&parsed).unwrap_or_default();
        referenced.extend(blobs.iter().map(|(d, _)| blob_entry(d)));
        self.signatures.push(ArchivedSignature {
            digest,
            format,
            subject,
            manifest: bytes.to_vec(),
        });
        true
    }

    fn read_oci_manifest(
        &self,
        manifest: &ManifestView,
        manifest_digest: BlobDigest,
        tags: Vec<String>,
        referenced: &mut HashSet<String>,
    ) -> ArchiveImage {
        let config_desc = &manifest.config;
        let (mut img, diff_ids) = match desc_digest(&config_desc.digest) {
            Ok(claimed) => {
                let config_entry = blob_entry(&claimed);
                referenced.insert(config_entry.clone());
                self.read_config(
                    &config_entry,
                    Some(ImageId(claimed)),
                    Some(config_desc.size),
                    tags,
                    Vec::new(),
                )
            }
            Err(p) => (ArchiveImage::unreadable(tags, p.entry("config")), None),
        };
        img.manifest_digest = Some(manifest_digest);
        for (i, desc) in manifest.layers.iter().enumerate() {
            let d = match desc_digest(&desc.digest) {
                Ok(d) => d,
                Err(p) => {
                    // Keep the layer's place so later layers keep their index and diff_id.
                    img.problems.push(p.layer(i));
                    img.layers.push(Layer::unlocated(String::new()));
                    continue;
                }
            };
            let entry = blob_entry(&d);
            referenced.insert(entry.clone());
            let mut layer = self.locate_layer(i, entry, &mut img.problems);
            layer.blob_digest = Some(BlobDigest(d));
            layer.media_type = Some(desc.media_type.clone());
            if let Some(size) = layer.size
                && size != desc.size
            {
                img.problems.push(
                    Problem::new(
                        Check::LayerSize,
                        format!(
                            "layer {i} ({:?}) size differs from its descriptor",
                            layer.entry
                        ),
                    )
                    .entry(&layer.entry)
                    .layer(i)
                    .mismatch(desc.size, size),
                );
            }
            img.layers.push(layer);
        }
        Self::attach_diff_ids(&mut img, diff_ids);
        img
    }
}

fn desc_digest(text: &str) -> Result<Digest, Problem> {
    Digest::parse(text).map_err(|_| {
        Problem::new(
            Check::InvalidDigest,
            format!(
                "descriptor digest {:?} is not sha256:<64 hex>",
                truncate_for_message(text)
            ),
        )
    })
}

fn blob_entry(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn ref_names(desc: &Descriptor) -> Vec<String> {
    let Some(ann) = desc.annotations() else {
        return Vec::new();
    };
    let full = ann.get("io.containerd.image.name");
    let short = ann.get("org.opencontainers.image.ref.name");
    full.or(short).cloned().into_iter().collect()
}
