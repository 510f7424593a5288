//! Finding the signatures of a manifest at a registry, as the signing tools store them:
//!
//! 1. cosign 2's tag `sha256-<hex>.sig`;
//! 2. the OCI 1.1 referrers API (`GET /v2/<repo>/referrers/<digest>`), and where a registry
//!    lacks it (distribution 2.8 answers 404), the referrers tag schema `sha256-<hex>`, an
//!    index the signing tool keeps (cosign 3 and notation write it).
//!
//! `push` puts kept signatures back the same ways ([`RegistryClient::push_signature`]).
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
    classify, cosign_tag, referrer_descriptor, referrers_tag,
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
        // The three lookups at once: on a fast link each is a round trip a pull waits for.
        let (sig_tag, list_tag) = (cosign_tag(subject), referrers_tag(subject));
        let (tagged, api, fallback) = tokio::join!(
            self.tagged_manifest(registry, repository, &sig_tag),
            self.referrers(registry, repository, subject),
            self.tagged_manifest(registry, repository, &list_tag),
        );
        let mut out = Vec::new();
        let cosign = async {
            match tagged? {
                Some((digest, bytes)) => self.artifact(registry, repository, digest, bytes).await,
                None => Ok(None),
            }
        };
        let listed = match api? {
            Some(index) => Some(index),
            None => fallback?.map(|(_, bytes)| bytes),
        };
        let (cosign, referred) =
            tokio::join!(cosign, self.referred(registry, repository, subject, listed));
        out.extend(cosign?);
        out.extend(referred?);
        Ok(out)
    }

    /// The signature artifacts a referrers index lists for `subject` (at most
    /// [`MAX_REFERRERS`], fetched at once). An index that does not parse is ignored, with a
    /// warning: a registry's garbage must not hide a good cosign signature beside it.
    async fn referred(
        &self,
        registry: &str,
        repository: &str,
        subject: &Digest,
        listed: Option<Vec<u8>>,
    ) -> Result<Vec<SignatureArtifact>, Error> {
        let Some(listed) = listed else {
            return Ok(Vec::new());
        };
        let index: ImageIndex = match serde_json::from_slice(&listed) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(
                    "{registry}/{repository}: the referrers of {subject} are not an OCI index ({e}): none read"
                );
                return Ok(Vec::new());
            }
        };
        let wanted: Vec<Digest> = index
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
            .take(MAX_REFERRERS)
            .collect();
        let fetched =
            futures_util::future::try_join_all(wanted.into_iter().map(|digest| async move {
                let m = self
                    .fetch_manifest_by_digest(registry, repository, &digest)
                    .await?;
                self.artifact(registry, repository, digest, m.bytes).await
            }))
            .await?;
        // A referrer of another subject is not a signature of this one.
        Ok(fetched
            .into_iter()
            .flatten()
            .filter(|a| {
                let about = a
                    .parsed()
                    .and_then(|m| m.subject().as_ref().map(|s| s.digest().to_string()));
                a.format == SignatureFormat::CosignTag
                    || about.as_deref() == Some(subject.to_string().as_str())
            })
            .collect())
    }

    /// Puts the signature `artifact` of `subject` into `repository`, whose blobs the caller
    /// pushed already: cosign 2's manifest under its tag (unless that tag holds other
    /// signatures, which are never replaced); a referrer by digest, and, when the
    /// registry does not index referrers itself (it answers no `OCI-Subject`, as distribution
    /// 2.8), into the `sha256-<hex>` tag's index too, read, extended and put back as the
    /// signing tools do. Nothing is sent when the destination already has it. True when
    /// something was put.
    pub async fn push_signature(
        &self,
        registry: &str,
        repository: &str,
        subject: &Digest,
        artifact: &SignatureArtifact,
    ) -> Result<bool, Error> {
        let media_type = super::document_media_type(&artifact.manifest);
        if artifact.format == SignatureFormat::CosignTag {
            let tag = cosign_tag(subject);
            match self.manifest_digest_at(registry, repository, &tag).await? {
                Some(d) if d == artifact.digest => return Ok(false),
                // cosign keeps every signature of a digest in this one manifest: putting ours
                // would drop the destination's own.
                Some(theirs) => {
                    tracing::warn!(
                        "{registry}/{repository}:{tag} holds other signatures ({theirs}): left as it is, the cached signature {} not put",
                        artifact.digest
                    );
                    return Ok(false);
                }
                None => {}
            }
            self.put_manifest(registry, repository, &tag, &artifact.manifest, &media_type)
                .await?;
            return Ok(true);
        }
        let by_digest = artifact.digest.to_string();
        if self
            .manifest_digest_at(registry, repository, &by_digest)
            .await?
            == Some(artifact.digest)
        {
            return Ok(false);
        }
        let indexed = self
            .put_manifest(
                registry,
                repository,
                &by_digest,
                &artifact.manifest,
                &media_type,
            )
            .await?;
        if !indexed {
            self.add_to_referrers_tag(registry, repository, subject, artifact)
                .await?;
        }
        Ok(true)
    }

    /// Adds `artifact` to the referrers tag schema's index of `subject` (made when absent).
    /// Two writers at once can lose one entry, as the spec says of this fallback.
    async fn add_to_referrers_tag(
        &self,
        registry: &str,
        repository: &str,
        subject: &Digest,
        artifact: &SignatureArtifact,
    ) -> Result<(), Error> {
        let tag = referrers_tag(subject);
        let Some(entry) = referrer_descriptor(artifact) else {
            return Ok(());
        };
        let mut index = match self.tagged_manifest(registry, repository, &tag).await? {
            Some((_, bytes)) => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .filter(|v| v["manifests"].is_array())
                .ok_or_else(|| Error::Registry {
                    registry: registry.into(),
                    message: format!(
                        "{repository}:{tag} is not a referrers index: not adding the signature {} to it",
                        artifact.digest
                    ),
                })?,
            None => serde_json::json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_OCI_INDEX,
                "manifests": [],
            }),
        };
        let listed = index["manifests"]
            .as_array()
            .is_some_and(|m| m.iter().any(|d| d["digest"] == entry["digest"]));
        if listed {
            return Ok(());
        }
        if let Some(m) = index["manifests"].as_array_mut() {
            m.push(entry);
        }
        let bytes = serde_json::to_vec(&index).unwrap_or_default();
        self.put_manifest(registry, repository, &tag, &bytes, MEDIA_TYPE_OCI_INDEX)
            .await
            .map(|_| ())
    }

    /// A signature artifact with its blobs, or `None` when the manifest is no signature. Blobs
    /// that break the caps or do not match their descriptor make it `unreadable` (the policy
    /// says why it did not count); a failure to reach the registry is an error.
    async fn artifact(
        &self,
        registry: &str,
        repository: &str,
        digest: Digest,
        manifest: Vec<u8>,
    ) -> Result<Option<SignatureArtifact>, Error> {
        let Ok(parsed) = serde_json::from_slice::<ImageManifest>(&manifest) else {
            return Ok(None);
        };
        let Some(format) = classify(&parsed) else {
            return Ok(None);
        };
        let mut artifact = SignatureArtifact {
            format,
            digest,
            manifest,
            blobs: Vec::new(),
            unreadable: None,
        };
        let descriptors = match blob_descriptors(&parsed) {
            Ok(d) => d,
            Err(why) => {
                artifact.unreadable = Some(why);
                return Ok(Some(artifact));
            }
        };
        let fetched = futures_util::future::join_all(
            descriptors
                .iter()
                .map(|(d, _)| self.small_blob(registry, repository, d)),
        )
        .await;
        for ((d, size), bytes) in descriptors.into_iter().zip(fetched) {
            let bytes = match bytes {
                Ok(b) => b,
                Err(
                    e @ (Error::TooLarge { .. }
                    | Error::DigestMismatch { .. }
                    | Error::BlobNotFound { .. }),
                ) => {
                    artifact.unreadable = Some(e.to_string());
                    break;
                }
                Err(e) => return Err(e),
            };
            if bytes.len() as u64 != size {
                artifact.unreadable = Some(format!(
                    "blob {d} is {} bytes, the manifest says {size}",
                    bytes.len()
                ));
                break;
            }
            artifact.blobs.push((d, bytes));
        }
        if artifact.unreadable.is_some() {
            artifact.blobs.clear();
        }
        Ok(Some(artifact))
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
