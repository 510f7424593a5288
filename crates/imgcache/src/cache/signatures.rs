//! Signatures kept beside images: stored as content-addressed blobs (the artifact's manifest,
//! config and layers, exactly as fetched) once the policy accepted them, recorded in the
//! index's `signatures` table under the digest they sign, kept by `prune` while that digest is
//! needed, judged again offline by `load` and `verify --signatures`, and answered by `serve` as
//! a registry would (the cosign tag, the referrers API and its tag).

use std::collections::HashSet;

use oci_spec::image::ImageManifest;

use super::Cache;
use crate::archive::{Archive, MAX_MANIFEST_BYTES};
use crate::digest::Digest;
use crate::error::Error;
use crate::index::{ImageRecord, Index, RefRecord, SignatureRecord, now};
use crate::policy::artifact::{
    MAX_SIGNATURE_BLOB_BYTES, SignatureTag, blob_descriptors, classify, referrer_descriptor,
};
use crate::policy::{Accepted, Policy, SignatureArtifact, SignatureFormat};
use crate::reference::Reference;
use crate::registry::{FetchedManifest, MEDIA_TYPE_OCI_INDEX, RegistryClient, UploadBlob};

impl Cache {
    /// Stores the artifacts whose signatures `accepted` names and records them for `subject`.
    /// Only accepted signatures reach the store.
    pub(super) fn keep_signatures(
        &self,
        subject: &Digest,
        artifacts: &[SignatureArtifact],
        accepted: &Accepted,
    ) -> Result<(), Error> {
        for signer in &accepted.signers {
            let Some(a) = artifacts.iter().find(|a| a.digest == signer.artifact) else {
                continue;
            };
            for (_, bytes) in &a.blobs {
                self.store.put_bytes(bytes)?;
            }
            self.store.put_bytes(&a.manifest)?;
            self.index().put_signature(&SignatureRecord {
                subject: *subject,
                artifact: a.digest,
                format: a.format.as_str().to_owned(),
                signed_by: signer.signed_by.clone(),
                verified_at: now(),
            })?;
        }
        Ok(())
    }

    /// The kept artifacts of `subject`, read back from the store; one whose blobs are gone or
    /// damaged is left out (the policy then judges without it, and `fsck` reports it).
    pub fn stored_signatures(&self, subject: &Digest) -> Result<Vec<SignatureArtifact>, Error> {
        let records = self.index().signatures(subject)?;
        Ok(records
            .iter()
            .filter_map(|r| self.read_artifact(r))
            .collect())
    }

    /// The signature records of `subject`, for `status`.
    pub fn signature_records(&self, subject: &Digest) -> Result<Vec<SignatureRecord>, Error> {
        self.index().signatures(subject)
    }

    fn read_artifact(&self, r: &SignatureRecord) -> Option<SignatureArtifact> {
        let manifest = self.store.read_blob(&r.artifact, MAX_MANIFEST_BYTES).ok()?;
        if Digest::of_bytes(&manifest) != r.artifact {
            return None;
        }
        let parsed: ImageManifest = serde_json::from_slice(&manifest).ok()?;
        let mut blobs = Vec::new();
        for (d, _) in blob_descriptors(&parsed).ok()? {
            let bytes = self.store.read_blob(&d, MAX_SIGNATURE_BLOB_BYTES).ok()?;
            if Digest::of_bytes(&bytes) != d {
                return None;
            }
            blobs.push((d, bytes));
        }
        Some(SignatureArtifact {
            format: SignatureFormat::parse(&r.format)?,
            digest: r.artifact,
            manifest,
            blobs,
            unreadable: None,
        })
    }

    /// Judges the kept signatures of `subject` (the digest `reference` resolved to) under
    /// `policy`, offline: what `load`, `verify --signatures` and cached pulls ask.
    pub fn check_stored_signatures(
        &self,
        policy: &Policy,
        reference: &Reference,
        subject: &Digest,
    ) -> Result<Accepted, Error> {
        let artifacts = if policy.wants_signatures(reference) {
            self.stored_signatures(subject)?
        } else {
            Vec::new()
        };
        policy.check(reference, subject, &artifacts)
    }

    /// `verify REF --signatures`: the kept signatures of a cached reference judged under
    /// `policy`, offline.
    pub fn verify_signatures(&self, reference: &str, policy: &Policy) -> Result<Accepted, Error> {
        let parsed = Reference::parse(reference)?;
        let (rec, img) = self.resolve(&parsed.to_string())?;
        self.check_stored_signatures(policy, &parsed, &signed_digest(rec.as_ref(), &img))
    }

    /// What `serve` answers for a signing tool's tag: the kept cosign manifest of the digest
    /// (the latest verified), or the referrers index. Never asked upstream: only what the cache
    /// verified is served.
    pub(super) fn served_signature_tag(
        &self,
        tag: SignatureTag,
    ) -> Result<Option<FetchedManifest>, Error> {
        match tag {
            SignatureTag::Cosign(subject) => {
                let mut records = self.index().signatures(&subject)?;
                records.retain(|r| r.format == SignatureFormat::CosignTag.as_str());
                records.sort_by_key(|r| std::cmp::Reverse(r.verified_at));
                Ok(records
                    .iter()
                    .find_map(|r| self.read_artifact(r))
                    .map(|a| FetchedManifest {
                        media_type: crate::registry::document_media_type(&a.manifest),
                        digest: a.digest,
                        bytes: a.manifest,
                    }))
            }
            SignatureTag::Referrers(subject) => {
                let bytes = self.referrers_index(&subject, None)?;
                Ok(Some(FetchedManifest {
                    media_type: MEDIA_TYPE_OCI_INDEX.to_owned(),
                    digest: Digest::of_bytes(&bytes),
                    bytes,
                }))
            }
        }
    }

    /// The OCI 1.1 referrers index of `subject`: a descriptor for each kept signature that
    /// names it as its subject (cosign 3 bundles, notation), with its artifact type and
    /// annotations as the spec asks; `artifact_type` filters. New JSON, made here.
    pub fn referrers_index(
        &self,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<u8>, Error> {
        let mut manifests = Vec::new();
        for r in self.index().signatures(subject)? {
            if r.format == SignatureFormat::CosignTag.as_str() {
                continue; // cosign 2's manifests name no subject: they are found by their tag
            }
            let Some(a) = self.read_artifact(&r) else {
                continue;
            };
            let Some(d) = referrer_descriptor(&a) else {
                continue;
            };
            if artifact_type.is_some_and(|t| d["artifactType"] != t) {
                continue;
            }
            manifests.push(d);
        }
        Ok(serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_OCI_INDEX,
            "manifests": manifests,
        }))
        .unwrap_or_default())
    }

    /// Copies the signatures kept for `subject` to `registry/repository` (`push`, `sync`): each
    /// one's blobs, then its manifest (see [`RegistryClient::push_signature`]). An unsigned
    /// image costs no request. Returns how many were put.
    pub(super) async fn push_signatures(
        &self,
        client: &RegistryClient,
        registry: &str,
        repository: &str,
        subject: &Digest,
    ) -> Result<usize, Error> {
        let artifacts = super::blocking(|| self.stored_signatures(subject))?;
        let mut pushed = 0;
        for a in &artifacts {
            for (digest, bytes) in &a.blobs {
                let blob = UploadBlob {
                    digest: *digest,
                    size: bytes.len() as u64,
                    path: self.store.blob_path(digest),
                };
                client
                    .push_blob(registry, repository, &blob, None, &|_| {})
                    .await?;
            }
            if client
                .push_signature(registry, repository, subject, a)
                .await?
            {
                pushed += 1;
            }
        }
        Ok(pushed)
    }

    /// `fsck --repair`: records again the signature artifacts among `loose` (stored blobs no
    /// record reaches) whose subject is a cached reference's digest, so that a lost index does
    /// not make `prune` delete them. Who signed is unknown until the next check judges them
    /// (every check does: a record is never trusted by itself). Returns what was restored.
    pub(super) fn restore_signature_records(
        &self,
        index: &Index,
        loose: &[Digest],
    ) -> Result<Vec<String>, Error> {
        let subjects = Self::signed_subjects(index)?;
        let mut restored = Vec::new();
        for d in loose {
            let Ok(bytes) = self.store.read_blob(d, MAX_MANIFEST_BYTES) else {
                continue;
            };
            let Ok(m) = serde_json::from_slice::<ImageManifest>(&bytes) else {
                continue;
            };
            let Some(format) = classify(&m) else { continue };
            let subject = match m.subject() {
                Some(s) => Digest::parse(s.digest().as_ref()).ok(),
                // cosign's tag-scheme manifest names no subject: its payload does.
                None => m.layers().iter().find_map(|l| {
                    let payload = self
                        .store
                        .read_blob(
                            &Digest::parse(l.digest().as_ref()).ok()?,
                            MAX_SIGNATURE_BLOB_BYTES,
                        )
                        .ok()?;
                    let v: serde_json::Value = serde_json::from_slice(&payload).ok()?;
                    Digest::parse(v["critical"]["image"]["docker-manifest-digest"].as_str()?).ok()
                }),
            };
            if let Some(subject) = subject.filter(|s| subjects.contains(s)) {
                index.put_signature(&SignatureRecord {
                    subject,
                    artifact: *d,
                    format: format.as_str().to_owned(),
                    signed_by: "(restored by fsck --repair: judged at the next check)".into(),
                    verified_at: 0,
                })?;
                restored.push(format!(
                    "restored the {} signature {d} of {subject}",
                    format.as_str()
                ));
            }
        }
        Ok(restored)
    }

    /// The blobs of the signatures kept for any of `subjects` (for `prune` and `fsck`).
    pub(super) fn signature_blobs(
        &self,
        index: &Index,
        subjects: &HashSet<Digest>,
    ) -> Result<HashSet<Digest>, Error> {
        let mut out = HashSet::new();
        for subject in subjects {
            for r in index.signatures(subject)? {
                out.insert(r.artifact);
                if let Ok(bytes) = self.store.read_blob(&r.artifact, MAX_MANIFEST_BYTES)
                    && let Ok(m) = serde_json::from_slice::<ImageManifest>(&bytes)
                    && let Ok(blobs) = blob_descriptors(&m)
                {
                    out.extend(blobs.into_iter().map(|(d, _)| d));
                }
            }
        }
        Ok(out)
    }
}

/// The digest signatures of a cached image cover: what its reference resolved to (an index or
/// the manifest), or the manifest for an image named by its ID.
pub(super) fn signed_digest(rec: Option<&RefRecord>, img: &ImageRecord) -> Digest {
    rec.map_or(img.manifest_digest.0, |r| {
        r.index_digest.unwrap_or(r.manifest_digest).0
    })
}

/// The signatures `archive` carries for `subject`, their blobs read from it under the caps and
/// checked against their digests; one that cannot be read whole is `unreadable`, and the
/// policy says why it did not count.
pub(super) fn archived_signatures(archive: &Archive, subject: &Digest) -> Vec<SignatureArtifact> {
    let read = |manifest: &[u8]| -> Result<Vec<(Digest, Vec<u8>)>, String> {
        let parsed: ImageManifest = serde_json::from_slice(manifest).map_err(|e| e.to_string())?;
        let mut blobs = Vec::new();
        for (d, size) in blob_descriptors(&parsed)? {
            let entry = format!("blobs/sha256/{}", d.hex());
            let bytes = archive
                .read_entry(&entry, MAX_SIGNATURE_BLOB_BYTES)
                .map_err(|e| e.to_string())?;
            if bytes.len() as u64 != size || Digest::of_bytes(&bytes) != d {
                return Err(format!("{entry} does not match its descriptor"));
            }
            blobs.push((d, bytes));
        }
        Ok(blobs)
    };
    archive
        .signatures
        .iter()
        // cosign's own layouts (`cosign save`) name no subject: their payload names the digest,
        // which the policy checks, so they are candidates for every image.
        .filter(|s| {
            s.subject == Some(*subject)
                || (s.subject.is_none() && s.format == SignatureFormat::CosignTag)
        })
        .map(|s| {
            let (blobs, unreadable) = match read(&s.manifest) {
                Ok(b) => (b, None),
                Err(e) => (Vec::new(), Some(e)),
            };
            SignatureArtifact {
                format: s.format,
                digest: s.digest,
                manifest: s.manifest.clone(),
                blobs,
                unreadable,
            }
        })
        .collect()
}
