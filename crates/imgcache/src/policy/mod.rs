//! Who must have signed what: containers' `policy.json` ([`Policy`], `file.rs`), the
//! signature artifacts of three tools ([`SignatureArtifact`], `artifact.rs`), their
//! cryptography (`cosign.rs`, `notation.rs`), and the verdict ([`Policy::check`], `check.rs`).
//!
//! Everything here is offline and in memory: the registry side fetches artifacts
//! (`registry/signatures.rs`), the cache stores them beside the image (`cache/signatures.rs`).
//! A signature covers a manifest digest (the one a reference resolved to, an index or a
//! manifest), never the image ID; keys and certificates come from the policy only, never from
//! inside a signature.

pub mod artifact;
mod check;
pub mod cosign;
mod file;
pub mod notation;
mod notation_cose;
#[cfg(test)]
mod tests;

pub use artifact::{SignatureArtifact, SignatureFormat};
pub use check::{Accepted, Signer};
pub use file::{Policy, Requirement, SignedIdentity};

use serde::Serialize;

/// Why one signature did not count. A check result, not an [`crate::Error`]: the policy decides
/// what a rejected signature means (another signature may still satisfy it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Rejection {
    /// Not what its format says it is: what and where (bad base64, DER, JSON, header...).
    Malformed(String),
    /// No key or certificate the policy trusts verifies the signature bytes.
    BadSignature(String),
    /// A certificate that does not chain to the trust store, lacks code signing, or whose
    /// subject is not a trusted identity.
    Untrusted(String),
    /// A certificate or the signature itself is expired or not yet valid.
    Expired(String),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Malformed(m) => write!(f, "malformed signature: {m}"),
            Rejection::BadSignature(m) => write!(f, "signature does not verify: {m}"),
            Rejection::Untrusted(m) => write!(f, "untrusted signer: {m}"),
            Rejection::Expired(m) => write!(f, "expired: {m}"),
        }
    }
}
