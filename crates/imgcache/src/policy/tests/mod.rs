//! Malformed and hostile input to the policy: cosign payloads, signatures and bundles,
//! notation JWS envelopes, and policy files. Each case says which [`Rejection`] (or which
//! [`Error::Policy`] message) it gets: a refusal for the wrong reason is a failure too.
//!
//! Keys are real P-256 keys (derived from a seed, so the tests repeat); the notation
//! certificates are self-signed test certificates made with openssl for these tests (code
//! signing, valid 2026-12-02 to 2126), checked at a fixed time so the clock does not matter.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use rustls_pki_types::UnixTime;
use serde_json::{Value, json};
use sha2::Digest as _;

use super::artifact::{ANNOTATION_COSIGN_SIGNATURE, MEDIA_SIMPLE_SIGNING};
use super::cosign::{self, CosignKey};
use super::notation::{self, TrustStore};
use super::{Accepted, Policy, Rejection, SignatureArtifact, SignatureFormat};
use crate::digest::Digest;
use crate::error::Error;
use crate::reference::Reference;

const IN_TOTO: &str = "application/vnd.in-toto+json";
const NOTARY_PAYLOAD: &str = "application/vnd.cncf.notary.payload.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const REPO: &str = "registry.test/team/app";

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// A P-256 signing key derived from `seed`.
fn signing_key(seed: &str) -> SigningKey {
    SigningKey::from_slice(&sha2::Sha256::digest(seed.as_bytes())).unwrap()
}

fn public_pem(key: &SigningKey) -> String {
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap()
}

fn policy_key(key: &SigningKey) -> CosignKey {
    CosignKey::from_pem(public_pem(key).as_bytes()).unwrap()
}

/// The DER ECDSA signature of `message`.
fn der_sig(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    let sig: p256::ecdsa::Signature = key.sign(message);
    sig.to_der().as_bytes().to_vec()
}

/// The digest a signature is meant to cover.
fn subject() -> Digest {
    Digest::of_bytes(b"the image manifest")
}

fn simple_signing(reference: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        },
        "optional": null
    }))
    .unwrap()
}

fn good_payload() -> Vec<u8> {
    simple_signing(REPO, &subject().to_string())
}

/// The pre-authentication encoding DSSE signs.
fn pae(body: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {IN_TOTO} {} ", IN_TOTO.len(), body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

fn statement(digest: &Digest) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "", "digest": {"sha256": digest.hex()}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {}
    }))
    .unwrap()
}

/// A sigstore bundle with a DSSE envelope over `body`, one signature per entry of `sigs`.
fn bundle(body: &[u8], payload_type: &str, sigs: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": ""}},
        "dsseEnvelope": {
            "payload": b64(body),
            "payloadType": payload_type,
            "signatures": sigs.iter().map(|s| json!({"sig": s, "keyid": ""})).collect::<Vec<_>>()
        }
    }))
    .unwrap()
}

fn signed_bundle(key: &SigningKey, body: &[u8]) -> Vec<u8> {
    bundle(body, IN_TOTO, &[b64(&der_sig(key, &pae(body)))])
}

fn malformed(r: Result<impl std::fmt::Debug, Rejection>) -> String {
    match r {
        Err(Rejection::Malformed(m)) => m,
        other => panic!("expected Rejection::Malformed, got {other:?}"),
    }
}

fn bad_signature(r: Result<impl std::fmt::Debug, Rejection>) -> String {
    match r {
        Err(Rejection::BadSignature(m)) => m,
        other => panic!("expected Rejection::BadSignature, got {other:?}"),
    }
}

fn untrusted(r: Result<impl std::fmt::Debug, Rejection>) -> String {
    match r {
        Err(Rejection::Untrusted(m)) => m,
        other => panic!("expected Rejection::Untrusted, got {other:?}"),
    }
}

fn has(text: &str, needle: &str) {
    assert!(text.contains(needle), "{needle:?} not in {text:?}");
}

// Not-a-signature inputs that are valid base64, for every "DER garbage" case.
fn der_garbage() -> Vec<(&'static str, Vec<u8>)> {
    let good = der_sig(&signing_key("cosign"), b"something else");
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"\0\0junk");
    let mut huge_int = vec![0x30, 0x82, 0x01, 0x04, 0x02, 0x82, 0x01, 0x00];
    huge_int.extend(std::iter::repeat_n(0x7f, 256));
    huge_int.extend_from_slice(&[0x02, 0x01, 0x01]);
    vec![
        ("empty", Vec::new()),
        ("text", b"this is not DER".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("trailing bytes", trailing),
        ("a 256-byte integer", huge_int),
        (
            "zero r and s",
            vec![0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00],
        ),
        (
            "length overflow",
            vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x02],
        ),
        ("raw r||s instead of DER", {
            let s: p256::ecdsa::Signature = signing_key("cosign").sign(&good_payload());
            s.to_bytes().to_vec()
        }),
        ("a megabyte of zeros", vec![0; 1 << 20]),
    ]
}

/// `doc` written as `dir/policy.json`.
fn write_policy(dir: &Path, doc: &str) -> PathBuf {
    let path = dir.join("policy.json");
    std::fs::write(&path, doc).unwrap();
    path
}

mod check;
mod cosign_input;
mod file;
mod notation_input;
