//! Judging an image's signatures under its scope: every requirement of the scope must be met;
//! a signature requirement is met by one signature that verifies with a trusted key or
//! certificate, covers the digest the reference resolved to, and names an acceptable identity.

use rustls_pki_types::UnixTime;
use serde::Serialize;

use super::artifact::{
    ANNOTATION_COSIGN_SIGNATURE, MEDIA_COSE, MEDIA_JWS, MEDIA_SIGSTORE_BUNDLE_PREFIX,
    MEDIA_SIMPLE_SIGNING, SignatureArtifact, SignatureFormat,
};
use super::file::{Policy, Requirement};
use super::{cosign, notation};
use crate::digest::{Digest, truncate_for_message};
use crate::error::Error;
use crate::reference::Reference;

/// One signature that satisfied a requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signer {
    pub format: SignatureFormat,
    /// The signature artifact's manifest digest.
    pub artifact: Digest,
    /// Who: the key (its policy name and fingerprint) or the certificate subject.
    pub signed_by: String,
}

/// A policy's yes: the scope that applied and who signed (empty when nothing was required).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Accepted {
    pub scope: String,
    pub signers: Vec<Signer>,
}

impl Policy {
    /// Whether the scope of `reference` asks for any signature (then pulls fetch them).
    pub fn wants_signatures(&self, reference: &Reference) -> bool {
        self.scope_for(reference).1.iter().any(|r| {
            matches!(
                r,
                Requirement::Sigstore { .. } | Requirement::Notation { .. }
            )
        })
    }

    /// Judges `artifacts` (the signatures found for `subject`, the digest `reference` resolved
    /// to) under the scope of `reference`. A no is [`Error::PolicyRefused`] naming the
    /// reference, the scope and why.
    pub fn check(
        &self,
        reference: &Reference,
        subject: &Digest,
        artifacts: &[SignatureArtifact],
    ) -> Result<Accepted, Error> {
        let (scope, requirements) = self.scope_for(reference);
        let now = UnixTime::now();
        let mut signers = Vec::new();
        for req in requirements {
            let refuse = |reason: String| Error::PolicyRefused {
                reference: reference.to_string(),
                policy: self.path.clone(),
                scope: scope.clone(),
                reason,
            };
            match req {
                Requirement::AcceptAnything => {}
                Requirement::Reject => {
                    return Err(refuse("the scope rejects every image".into()));
                }
                Requirement::Unsupported(why) => return Err(refuse(why.clone())),
                Requirement::Sigstore { .. } | Requirement::Notation { .. } => {
                    let mut reasons = Vec::new();
                    let found = artifacts
                        .iter()
                        .find_map(|a| judge(req, reference, subject, a, now, &mut reasons));
                    match found {
                        Some(s) => signers.push(s),
                        None => return Err(refuse(no_signature_reason(req, subject, &reasons))),
                    }
                }
            }
        }
        Ok(Accepted { scope, signers })
    }
}

/// Why no signature met `req`: none of its kind, or each one's rejection.
fn no_signature_reason(req: &Requirement, subject: &Digest, reasons: &[String]) -> String {
    let kind = match req {
        Requirement::Notation { .. } => "notation",
        _ => "cosign",
    };
    if reasons.is_empty() {
        format!("no {kind} signature of {subject} was found")
    } else {
        format!(
            "no {kind} signature of {subject} is acceptable: {}",
            reasons.join("; ")
        )
    }
}

/// The first signature in `artifact` that meets `req`; each one that does not adds its reason.
fn judge(
    req: &Requirement,
    reference: &Reference,
    subject: &Digest,
    artifact: &SignatureArtifact,
    now: UnixTime,
    reasons: &mut Vec<String>,
) -> Option<Signer> {
    let short = &artifact.digest.hex()[..12];
    if let Some(why) = &artifact.unreadable {
        reasons.push(format!("{} {short}: {why}", artifact.format.as_str()));
        return None;
    }
    let manifest = artifact.parsed()?;
    for layer in manifest.layers() {
        let media = layer.media_type().to_string();
        let Some(bytes) = Digest::parse(layer.digest().as_ref())
            .ok()
            .and_then(|d| artifact.blob(&d))
        else {
            continue;
        };
        let mut reject =
            |why: String| reasons.push(format!("{} {short}: {why}", artifact.format.as_str()));
        let signer = |signed_by: String| Signer {
            format: artifact.format,
            artifact: artifact.digest,
            signed_by,
        };
        match (req, artifact.format) {
            (
                Requirement::Sigstore {
                    keys,
                    key_names,
                    identity,
                },
                SignatureFormat::CosignTag,
            ) if media == MEDIA_SIMPLE_SIGNING => {
                let Some(sig) = layer
                    .annotations()
                    .as_ref()
                    .and_then(|a| a.get(ANNOTATION_COSIGN_SIGNATURE))
                else {
                    reject("a payload without its signature annotation".into());
                    continue;
                };
                match cosign::verify_simple_signing(bytes, sig, keys) {
                    Err(r) => reject(r.to_string()),
                    Ok((claims, _)) if !digest_is(&claims.manifest_digest, subject) => {
                        reject(format!(
                            "it signs {}, not {subject}",
                            truncate_for_message(&claims.manifest_digest)
                        ))
                    }
                    Ok((claims, _)) if !identity.accepts(reference, &claims.docker_reference) => {
                        reject(format!(
                            "it names {}, which {identity:?} does not accept for {reference}",
                            truncate_for_message(&claims.docker_reference)
                        ))
                    }
                    Ok((_, k)) => return Some(signer(key_label(keys, key_names, k))),
                }
            }
            (
                Requirement::Sigstore {
                    keys,
                    key_names,
                    identity,
                },
                SignatureFormat::CosignBundle,
            ) if media.starts_with(MEDIA_SIGSTORE_BUNDLE_PREFIX) => {
                match cosign::verify_bundle(bytes, keys) {
                    Err(r) => reject(r.to_string()),
                    Ok((claims, _))
                        if !claims.subject_digests.iter().any(|d| digest_is(d, subject)) =>
                    {
                        reject(format!(
                            "it signs {}, not {subject}",
                            truncate_for_message(&claims.subject_digests.join(", "))
                        ))
                    }
                    Ok(_) if !identity.allows_unnamed() => reject(format!(
                        "a bundle names no repository, and {identity:?} demands one"
                    )),
                    Ok((_, k)) => return Some(signer(key_label(keys, key_names, k))),
                }
            }
            (Requirement::Notation { trust, identities }, SignatureFormat::Notation) => {
                let verify = match media.as_str() {
                    MEDIA_JWS => notation::verify_jws,
                    MEDIA_COSE => notation::verify_cose,
                    _ => continue,
                };
                match verify(bytes, trust, identities, now) {
                    Err(r) => reject(r.to_string()),
                    Ok(c) if !digest_is(&c.target_digest, subject) => reject(format!(
                        "it signs {}, not {subject}",
                        truncate_for_message(&c.target_digest)
                    )),
                    Ok(c) => return Some(signer(c.signer)),
                }
            }
            _ => {}
        }
    }
    None
}

fn digest_is(text: &str, subject: &Digest) -> bool {
    Digest::parse(text).is_ok_and(|d| d == *subject)
}

fn key_label(keys: &[cosign::CosignKey], names: &[String], i: usize) -> String {
    match (keys.get(i), names.get(i)) {
        (Some(k), Some(n)) => format!("{n} ({})", k.fingerprint()),
        _ => "a policy key".into(),
    }
}
