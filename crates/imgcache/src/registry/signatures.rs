//! Finding the signatures of a manifest at a registry, as the signing tools store them:
//!
//! 1. cosign 2's tag `sha256-<hex>.sig`;
//! 2. the OCI 1.1 referrers API (`GET /v2/<repo>/referrers/<digest>`), and where a registry
//!    lacks it (distribution 2.8 answers 404), the referrers tag schema `sha256-<hex>`, an
//!    index the signing tool keeps (cosign 3 and notation write it).
//!
//! Everything is read into memory under caps (a signature is a few KB): manifests at 4 MiB
//! like any manifest, blobs at [`MAX_SIGNATURE_BLOB_BYTES`], at most [`MAX_REFERRERS`]
//! signature referrers whatever the index lists. Nothing is stored here: the policy judges
//! first, and the cache stores only what it accepted.

use oci_spec::image::{ImageIndex, ImageManifest};
use reqwest::header::{ACCEPT, HeaderMap};
use reqwest::{Method, StatusCode};

use super::client::Request;
use super::http::{checked_name, header_value};
use super::transport::read_capped;
use super::{MEDIA_TYPE_OCI_INDEX, RegistryClient};
use crate::archive::MAX_MANIFEST_BYTES;
use crate::digest::Digest;
use crate::error::Error;
use crate::policy::artifact::{
    ARTIFACT_NOTATION, MAX_SIGNATURE_BLOB_BYTES, MEDIA_SIGSTORE_BUNDLE_PREFIX, blob_descriptors,
    classify, cosign_tag, referrers_tag,
};
use crate::policy::{SignatureArtifact, SignatureFormat};

/// Signature referrers fetched per subject, however many an index lists: a referrers list of
/// thousands is read (under the manifest cap) but only this many are fetched.
pub const MAX_REFERRERS: usize = 16;

impl RegistryClient {
    /// Every signature artifact of `subject` in `repository`: the cosign tag, then referrers.
    /// A registry that has none answers 404s, which give an empty list; other failures are
    /// errors (the policy cannot judge what could not be read).
    pub async fn fetch_signatures(
        &self,
        registry: &str,
        repository: &str,
        subject: &Digest,
    ) -> Result<Vec<SignatureArtifact>, Error> {
        let mut out = Vec::new();
        if let Some((digest, bytes)) = self
            .tagged_manifest(registry, repository, &cosign_tag(subject))
            .await?
            && let Some(a) = self.artifact(registry, repository, digest, bytes).await?
        {
            out.push(a);
        }
        let listed = match self.referrers(registry, repository, subject).await? {
            Some(index) => Some(index),
            None => self
                .tagged_manifest(registry, repository, &referrers_tag(subject))
                .await?
                .map(|(_, bytes)| bytes),
        };
        let Some(listed) = listed else {
            return Ok(out);
        };
        let index: ImageIndex = serde_json::from_slice(&listed).map_err(|e| Error::Registry {
            registry: registry.into(),
            message: format!("the referrers of {repository}@{subject} are not an OCI index: {e}"),
        })?;
        let wanted = index
            .manifests()
            .iter()
            .filter(|d| {
                let t = d
                    .artifact_type()
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default();
                t == ARTIFACT_NOTATION || t.starts_with(MEDIA_SIGSTORE_BUNDLE_PREFIX)
                    // cosign 3 lists its bundles with the empty artifact type of its config
                    || t == "application/vnd.oci.empty.v1+json"
            })
            .filter_map(|d| Digest::parse(d.digest().as_ref()).ok())
            .take(MAX_REFERRERS);
        for digest in wanted.collect::<Vec<_>>() {
            let m = self
                .fetch_manifest_by_digest(registry, repository, &digest)
                .await?;
            if let Some(a) = self.artifact(registry, repository, digest, m.bytes).await? {
                // A referrer of another subject is not a signature of this one.
                let about = a
                    .parsed()
                    .and_then(|m| m.subject().as_ref().map(|s| s.digest().to_string()));
                if a.format == SignatureFormat::CosignTag
                    || about.as_deref() == Some(subject.to_string().as_str())
                {
                    out.push(a);
                }
            }
        }
        Ok(out)
    }

    /// A signature artifact with its blobs, or `None` when the manifest is no signature.
    async fn artifact(
        &self,
        registry: &str,
        repository: &str,
        digest: Digest,
        manifest: Vec<u8>,
    ) -> Result<Option<SignatureArtifact>, Error> {
        let bad = |m: String| Error::Registry {
            registry: registry.into(),
            message: format!("signature manifest {repository}@{digest}: {m}"),
        };
        let Ok(parsed) = serde_json::from_slice::<ImageManifest>(&manifest) else {
            return Ok(None);
        };
        let Some(format) = classify(&parsed) else {
            return Ok(None);
        };
        let mut blobs = Vec::new();
        for (d, size) in blob_descriptors(&parsed).map_err(bad)? {
            let bytes = self.small_blob(registry, repository, &d).await?;
            if bytes.len() as u64 != size {
                return Err(bad(format!(
                    "blob {d} is {} bytes, the manifest says {size}",
                    bytes.len()
                )));
            }
            blobs.push((d, bytes));
        }
        Ok(Some(SignatureArtifact {
            format,
            digest,
            manifest,
            blobs,
        }))
    }

    /// A manifest by tag, `None` on 404; its digest is computed from the bytes.
    async fn tagged_manifest(
        &self,
        registry: &str,
        repository: &str,
        tag: &str,
    ) -> Result<Option<(Digest, Vec<u8>)>, Error> {
        let reference = crate::reference::Reference {
            registry: registry.into(),
            repository: repository.into(),
            tag: Some(tag.into()),
            digest: None,
        };
        match self.fetch_manifest(&reference).await {
            Ok(m) => Ok(Some((m.digest, m.bytes))),
            Err(Error::ManifestNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v2/<repo>/referrers/<digest>`: the index, or `None` when the registry does not
    /// offer the API (404, or an answer that is not an index, as some registries send).
    async fn referrers(
        &self,
        registry: &str,
        repository: &str,
        subject: &Digest,
    ) -> Result<Option<Vec<u8>>, Error> {
        let name = checked_name(registry, repository, subject)?;
        let what = format!("referrers of {name}");
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, header_value(MEDIA_TYPE_OCI_INDEX));
        let path = format!("/v2/{repository}/referrers/{subject}");
        let (resp, ep) = self
            .request(
                registry,
                repository,
                Request::new(Method::GET, &path)
                    .headers(headers)
                    .timeout(self.options().timeout),
            )
            .await
            .map_err(|e| self.scrub_error(registry, e))?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => return Ok(None),
            _ => return Err(self.status_error(&ep, resp, &what).await),
        }
        let is_index = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(MEDIA_TYPE_OCI_INDEX));
        let bytes = read_capped(&ep, resp, MAX_MANIFEST_BYTES, &what).await?;
        Ok(is_index.then_some(bytes))
    }

    /// A blob read whole into memory (capped), checked against its digest.
    async fn small_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<u8>, Error> {
        let mut resp = self.fetch_blob(registry, repository, digest, 0).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > MAX_SIGNATURE_BLOB_BYTES {
                return Err(Error::TooLarge {
                    what: format!("signature blob {registry}/{repository}@{digest}"),
                    limit: MAX_SIGNATURE_BLOB_BYTES,
                });
            }
        }
        let got = Digest::of_bytes(&bytes);
        if got != *digest {
            return Err(Error::DigestMismatch {
                what: format!("signature blob {registry}/{repository}@{digest}"),
                expected: digest.to_string(),
                found: got.to_string(),
            });
        }
        Ok(bytes)
    }
}
