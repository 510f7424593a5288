//! Signatures kept beside images: stored as content-addressed blobs (the artifact's manifest,
//! config and layers, exactly as fetched) once the policy accepted them, recorded in the
//! index's `signatures` table under the digest they sign, kept by `prune` while that digest is
//! needed, and judged again offline by `load` and `verify --signatures`.

use std::collections::HashSet;

use oci_spec::image::ImageManifest;

use super::Cache;
use crate::archive::MAX_MANIFEST_BYTES;
use crate::digest::Digest;
use crate::error::Error;
use crate::index::{ImageRecord, Index, RefRecord, SignatureRecord, now};
use crate::policy::artifact::{MAX_SIGNATURE_BLOB_BYTES, blob_descriptors};
use crate::policy::{Accepted, Policy, SignatureArtifact, SignatureFormat};
use crate::reference::Reference;

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
