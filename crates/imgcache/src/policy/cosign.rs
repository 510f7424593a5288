//! cosign's two keyed formats: the simple-signing payload of the tag scheme (cosign 2) and the
//! sigstore bundle with a DSSE envelope (cosign 3). ECDSA P-256 or P-384 over SHA-256/384, DER
//! signatures, base64 (RustCrypto's `p256`/`p384`). Only keys from the policy verify: key or
//! certificate material inside a bundle is never used (cosign GHSA-fx35-mq7g-6g98).

use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::pkcs8::DecodePublicKey as _;
use serde::Deserialize;

use super::Rejection;

/// A public key a policy trusts (PEM SubjectPublicKeyInfo). Never a private key.
#[derive(Clone)]
pub struct CosignKey {
    key: Key,
    spki_der: Vec<u8>,
}

#[derive(Clone)]
enum Key {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

impl CosignKey {
    /// Reads a PEM public key; a private or encrypted key is refused unread.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(pem).map_err(|_| "not a PEM file".to_owned())?;
        if text.contains("PRIVATE KEY") {
            return Err(
                "this is a private key: imgcache never reads secret key material; give the public key (cosign.pub)".into(),
            );
        }
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(text) {
            return Ok(Self::with(Key::P256(k), text));
        }
        if let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_pem(text) {
            return Ok(Self::with(Key::P384(k), text));
        }
        Err("not an ECDSA P-256 or P-384 public key in PEM (the keys cosign generate-key-pair writes)".into())
    }

    fn with(key: Key, pem: &str) -> Self {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let spki_der = base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .unwrap_or_default();
        Self { key, spki_der }
    }

    /// `sha256:<hex>` of the key's SubjectPublicKeyInfo, to tell keys apart in messages.
    pub fn fingerprint(&self) -> String {
        crate::digest::Digest::of_bytes(&self.spki_der).to_string()
    }

    fn verifies(&self, message: &[u8], der: &[u8]) -> bool {
        match &self.key {
            Key::P256(k) => {
                p256::ecdsa::Signature::from_der(der).is_ok_and(|s| k.verify(message, &s).is_ok())
            }
            Key::P384(k) => {
                p384::ecdsa::Signature::from_der(der).is_ok_and(|s| k.verify(message, &s).is_ok())
            }
        }
    }
}

/// The index of the first key that verifies `der` over `message`.
fn first_verifying(keys: &[CosignKey], message: &[u8], der: &[u8]) -> Result<usize, Rejection> {
    if p256::ecdsa::Signature::from_der(der).is_err()
        && p384::ecdsa::Signature::from_der(der).is_err()
    {
        return Err(Rejection::Malformed(format!(
            "the signature is not a DER ECDSA signature ({} bytes)",
            der.len()
        )));
    }
    keys.iter()
        .position(|k| k.verifies(message, der))
        .ok_or_else(|| {
            Rejection::BadSignature(format!(
                "signed with a key the policy does not trust (tried {})",
                keys.iter()
                    .map(CosignKey::fingerprint)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

fn base64_field(text: &str, what: &str) -> Result<Vec<u8>, Rejection> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| Rejection::Malformed(format!("{what} is not base64: {e}")))
}

/// The claims of a simple-signing payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleSigning {
    pub docker_reference: String,
    pub manifest_digest: String,
    pub signature_type: String,
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}
#[derive(Deserialize)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}
#[derive(Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}
#[derive(Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// Verifies the base64 DER signature over the exact payload bytes; returns the claims and the
/// key that verified. The caller compares the digest and the identity.
pub fn verify_simple_signing(
    payload: &[u8],
    signature_b64: &str,
    keys: &[CosignKey],
) -> Result<(SimpleSigning, usize), Rejection> {
    let der = base64_field(signature_b64, "the signature annotation")?;
    let key = first_verifying(keys, payload, &der)?;
    let p: Payload = serde_json::from_slice(payload)
        .map_err(|e| Rejection::Malformed(format!("the simple-signing payload: {e}")))?;
    if p.critical.kind != "cosign container image signature" {
        return Err(Rejection::Malformed(format!(
            "the payload's critical.type is {:?}, not a cosign container image signature",
            p.critical.kind
        )));
    }
    Ok((
        SimpleSigning {
            docker_reference: p.critical.identity.docker_reference,
            manifest_digest: p.critical.image.docker_manifest_digest,
            signature_type: p.critical.kind,
        },
        key,
    ))
}

/// The claims of a bundle's in-toto statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleClaims {
    pub subject_digests: Vec<String>,
    pub predicate_type: String,
}

#[derive(Deserialize)]
struct Bundle {
    #[serde(rename = "dsseEnvelope")]
    dsse_envelope: Option<Envelope>,
}
#[derive(Deserialize)]
struct Envelope {
    payload: String,
    #[serde(rename = "payloadType")]
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}
#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}
#[derive(Deserialize)]
struct Statement {
    subject: Vec<StatementSubject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
}
#[derive(Deserialize)]
struct StatementSubject {
    digest: std::collections::BTreeMap<String, String>,
}

const IN_TOTO: &str = "application/vnd.in-toto+json";

/// Verifies a sigstore bundle's DSSE envelope (the signature is over the DSSE
/// pre-authentication encoding) with the policy's keys.
pub fn verify_bundle(
    bundle: &[u8],
    keys: &[CosignKey],
) -> Result<(BundleClaims, usize), Rejection> {
    let b: Bundle = serde_json::from_slice(bundle)
        .map_err(|e| Rejection::Malformed(format!("the sigstore bundle: {e}")))?;
    let env = b.dsse_envelope.ok_or_else(|| {
        Rejection::Malformed("the bundle has no DSSE envelope: not an image signature".into())
    })?;
    if env.payload_type != IN_TOTO {
        return Err(Rejection::Malformed(format!(
            "the envelope's payloadType is {:?}, not {IN_TOTO}",
            env.payload_type
        )));
    }
    let body = base64_field(&env.payload, "the envelope payload")?;
    let mut pae = format!("DSSEv1 {} {} {} ", IN_TOTO.len(), IN_TOTO, body.len()).into_bytes();
    pae.extend_from_slice(&body);
    let mut last = Rejection::Malformed("the envelope carries no signature".into());
    for s in env.signatures.iter().take(16) {
        let der = base64_field(&s.sig, "an envelope signature")?;
        match first_verifying(keys, &pae, &der) {
            Ok(key) => {
                let st: Statement = serde_json::from_slice(&body)
                    .map_err(|e| Rejection::Malformed(format!("the in-toto statement: {e}")))?;
                let subject_digests = st
                    .subject
                    .iter()
                    .filter_map(|s| s.digest.get("sha256"))
                    .map(|h| format!("sha256:{h}"))
                    .collect();
                return Ok((
                    BundleClaims {
                        subject_digests,
                        predicate_type: st.predicate_type,
                    },
                    key,
                ));
            }
            Err(r) => last = r,
        }
    }
    Err(last)
}
