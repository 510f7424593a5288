//! A signature as it travels: an OCI manifest (the artifact) and its few small blobs. Three
//! formats, told apart by their media types:
//!
//! - cosign 2's tag scheme: the tag `sha256-<hex>.sig` in the image's repository, one layer per
//!   signature (a simple-signing payload; the signature in the layer's annotation);
//! - cosign 3's sigstore bundle: a referrer (its `subject` is the image) with one bundle layer;
//! - notation: a referrer with artifact type `application/vnd.cncf.notary.signature` and one JWS
//!   (or COSE) envelope layer.

use oci_spec::image::{Descriptor, ImageManifest};
use serde::Serialize;

use crate::digest::Digest;

pub const MEDIA_SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const ANNOTATION_COSIGN_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
pub const MEDIA_SIGSTORE_BUNDLE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
pub const ARTIFACT_NOTATION: &str = "application/vnd.cncf.notary.signature";
pub const MEDIA_JWS: &str = "application/jose+json";
pub const MEDIA_COSE: &str = "application/cose";

/// A signature blob is a few KB: this bounds what is read into memory for one.
pub const MAX_SIGNATURE_BLOB_BYTES: u64 = 256 * 1024;
/// Blobs (config and layers) one signature manifest may name; cosign adds a layer per
/// signature to its `.sig` manifest.
pub const MAX_SIGNATURE_BLOBS: usize = 64;

/// Which tool's format a signature artifact is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SignatureFormat {
    #[serde(rename = "cosign")]
    CosignTag,
    #[serde(rename = "cosign-bundle")]
    CosignBundle,
    #[serde(rename = "notation")]
    Notation,
}

impl SignatureFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureFormat::CosignTag => "cosign",
            SignatureFormat::CosignBundle => "cosign-bundle",
            SignatureFormat::Notation => "notation",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::CosignTag, Self::CosignBundle, Self::Notation]
            .into_iter()
            .find(|f| f.as_str() == text)
    }
}

/// One signature artifact with the bytes of its manifest and blobs (config first, then the
/// layers, in manifest order), exactly as the registry or archive gave them.
#[derive(Debug, Clone)]
pub struct SignatureArtifact {
    pub format: SignatureFormat,
    pub digest: Digest,
    pub manifest: Vec<u8>,
    pub blobs: Vec<(Digest, Vec<u8>)>,
    /// Why its blobs could not be read (over the caps, lying about size or digest, absent):
    /// such an artifact is judged as one rejected signature, so that a hostile referrer beside
    /// a good signature neither fails the pull nor hides why it did not count.
    pub unreadable: Option<String>,
}

impl SignatureArtifact {
    /// The bytes of blob `digest`, if carried.
    pub fn blob(&self, digest: &Digest) -> Option<&[u8]> {
        self.blobs
            .iter()
            .find(|(d, _)| d == digest)
            .map(|(_, b)| b.as_slice())
    }

    /// The parsed manifest (it parsed when the artifact was classified).
    pub fn parsed(&self) -> Option<ImageManifest> {
        serde_json::from_slice(&self.manifest).ok()
    }
}

/// The format of a manifest, if it is a signature artifact.
pub fn classify(manifest: &ImageManifest) -> Option<SignatureFormat> {
    let artifact_type = manifest
        .artifact_type()
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    let config_type = manifest.config().media_type().to_string();
    let layer_types: Vec<String> = manifest
        .layers()
        .iter()
        .map(|l| l.media_type().to_string())
        .collect();
    if artifact_type == ARTIFACT_NOTATION || config_type == ARTIFACT_NOTATION {
        return Some(SignatureFormat::Notation);
    }
    if artifact_type.starts_with(MEDIA_SIGSTORE_BUNDLE_PREFIX)
        || layer_types
            .iter()
            .any(|t| t.starts_with(MEDIA_SIGSTORE_BUNDLE_PREFIX))
    {
        return Some(SignatureFormat::CosignBundle);
    }
    if !layer_types.is_empty() && layer_types.iter().all(|t| t == MEDIA_SIMPLE_SIGNING) {
        return Some(SignatureFormat::CosignTag);
    }
    None
}

/// The blobs a signature manifest names (config, then layers), with their sizes; `Err` names
/// what is wrong (too many, too large, not a sha256 digest).
pub fn blob_descriptors(manifest: &ImageManifest) -> Result<Vec<(Digest, u64)>, String> {
    let all: Vec<&Descriptor> = std::iter::once(manifest.config())
        .chain(manifest.layers().iter())
        .collect();
    if all.len() > MAX_SIGNATURE_BLOBS {
        return Err(format!(
            "the signature manifest names {} blobs (at most {MAX_SIGNATURE_BLOBS})",
            all.len()
        ));
    }
    all.into_iter()
        .map(|d| {
            let digest = Digest::parse(d.digest().as_ref())
                .map_err(|_| format!("blob digest {:?} is not sha256", d.digest().to_string()))?;
            if d.size() > MAX_SIGNATURE_BLOB_BYTES {
                return Err(format!(
                    "blob {digest} is {} bytes (a signature blob is at most {MAX_SIGNATURE_BLOB_BYTES})",
                    d.size()
                ));
            }
            Ok((digest, d.size()))
        })
        .collect()
}

/// The descriptor a referrers index lists for `artifact` (OCI distribution 1.1): its artifact
/// type (the config's media type when the manifest names none) and annotations. New JSON for a
/// document this side makes (`serve`'s referrers answer, the tag-schema index `push` keeps).
pub fn referrer_descriptor(artifact: &SignatureArtifact) -> Option<serde_json::Value> {
    let m = artifact.parsed()?;
    let kind = m
        .artifact_type()
        .as_ref()
        .map_or_else(|| m.config().media_type().to_string(), |t| t.to_string());
    let mut d = serde_json::json!({
        "mediaType": crate::registry::MEDIA_TYPE_OCI_MANIFEST,
        "digest": artifact.digest,
        "size": artifact.manifest.len(),
        "artifactType": kind,
    });
    if let Some(ann) = m.annotations() {
        d["annotations"] = serde_json::json!(ann);
    }
    Some(d)
}

/// A signing tool's tag, as `serve` is asked for one and archives name one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureTag {
    /// `sha256-<hex>.sig`: cosign 2's signature manifest of that digest.
    Cosign(Digest),
    /// `sha256-<hex>`: the referrers tag schema's index of that digest.
    Referrers(Digest),
}

impl SignatureTag {
    pub fn parse(tag: &str) -> Option<Self> {
        let rest = tag.strip_prefix("sha256-")?;
        let digest = |hex: &str| Digest::parse(&format!("sha256:{hex}")).ok();
        match rest.strip_suffix(".sig") {
            Some(hex) => digest(hex).map(Self::Cosign),
            None => digest(rest).map(Self::Referrers),
        }
    }
}

/// The tag cosign 2 stores a signature of `subject` under.
pub fn cosign_tag(subject: &Digest) -> String {
    format!("sha256-{}.sig", subject.hex())
}

/// The referrers tag-schema tag (OCI distribution 1.1) listing referrers of `subject`.
pub fn referrers_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}
