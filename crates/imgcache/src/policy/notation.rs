//! notation's signature envelopes, JWS (`application/jose+json`) and COSE (`application/cose`,
//! parsed in `notation_cose.rs`), of signing scheme `notary.x509`, checked against an X.509
//! trust store as `notation verify` does without a timestamp authority: the chain the envelope
//! carries must lead to a certificate of the store, valid now, with code signing usage. Path
//! building and certificate checks are rustls-webpki's (already the registry client's
//! verifier); the certificates inside the envelope are never trusted alone. Once parsed, both
//! formats go through the same checks ([`verify_envelope`]).

use std::path::PathBuf;

use base64::Engine as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use x509_cert::der::Decode as _;

use super::Rejection;
pub use super::notation_cose::verify_cose;
use crate::digest::truncate_for_message;

/// DER of the code-signing extended key usage OID, 1.3.6.1.5.5.7.3.3.
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
const PAYLOAD_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";
const KNOWN_CRITICAL: &[&str] = &[
    "io.cncf.notary.signingScheme",
    "io.cncf.notary.expiry",
    "io.cncf.notary.authenticSigningTime",
];
/// Certificates one envelope may carry.
pub(super) const MAX_CHAIN: usize = 10;

/// The certificates of a notation trust store (PEM or DER files; a directory means its
/// `*.crt`, `*.pem` and `*.cer` files).
pub struct TrustStore {
    certs: Vec<CertificateDer<'static>>,
}

impl TrustStore {
    pub fn load(paths: &[PathBuf]) -> Result<Self, String> {
        let mut files = Vec::new();
        for p in paths {
            if p.is_dir() {
                let mut in_dir: Vec<PathBuf> = std::fs::read_dir(p)
                    .map_err(|e| format!("{}: {e}", p.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|f| {
                        f.extension()
                            .is_some_and(|x| x == "crt" || x == "pem" || x == "cer")
                    })
                    .collect();
                in_dir.sort();
                files.extend(in_dir);
            } else {
                files.push(p.clone());
            }
        }
        let mut certs = Vec::new();
        for f in files {
            let bytes = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            let found: Vec<CertificateDer<'static>> = if bytes.starts_with(b"-----BEGIN") {
                CertificateDer::pem_slice_iter(&bytes)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("{}: not a PEM certificate: {e}", f.display()))?
            } else {
                vec![CertificateDer::from(bytes)]
            };
            if found.is_empty() {
                return Err(format!("{}: no certificate in it", f.display()));
            }
            for c in &found {
                webpki::anchor_from_trusted_cert(c)
                    .map_err(|e| format!("{}: not an X.509 certificate: {e:?}", f.display()))?;
            }
            certs.extend(found);
        }
        Ok(Self { certs })
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

/// What a verified notation signature says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotationClaims {
    pub target_digest: String,
    pub target_media_type: String,
    pub target_size: u64,
    /// The leaf certificate's subject.
    pub signer: String,
    pub signing_time: Option<String>,
}

#[derive(Deserialize)]
struct JwsEnvelope {
    payload: String,
    protected: String,
    header: Header,
    signature: String,
}
#[derive(Deserialize)]
struct Header {
    x5c: Vec<String>,
}
#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "targetArtifact")]
    target: Target,
}
#[derive(Deserialize)]
struct Target {
    digest: String,
    #[serde(rename = "mediaType")]
    media_type: String,
    size: u64,
}

/// An envelope once its format (JWS here, COSE in `notation_cose.rs`) is parsed: what
/// [`verify_envelope`] checks the same way for both.
pub(super) struct Envelope {
    /// The bytes the signature covers: JWS's `protected.payload`, COSE's Sig_structure.
    pub signing_input: Vec<u8>,
    pub signature: Vec<u8>,
    /// The protected header's algorithm, named as JWS names it (COSE's -37 is PS256, ...).
    pub alg: Option<String>,
    /// The certificates the envelope carries, leaf first, DER (at most [`MAX_CHAIN`] + 1 read).
    pub chain: Vec<CertificateDer<'static>>,
    /// When the signature expires, in seconds since the epoch, and as the envelope says it.
    pub expiry: Option<(u64, String)>,
    pub signing_time: Option<String>,
    /// The payload (JSON with `targetArtifact`).
    pub payload: Vec<u8>,
}

fn b64url(text: &str, what: &str) -> Result<Vec<u8>, Rejection> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|e| Rejection::Malformed(format!("{what} is not base64url: {e}")))
}

/// Verifies a notation JWS envelope against `trust` at `now`; `trusted_identities` empty or
/// `*` accepts any subject, else `x509.subject: DN` entries compared attribute by attribute.
pub fn verify_jws(
    envelope: &[u8],
    trust: &TrustStore,
    trusted_identities: &[String],
    now: UnixTime,
) -> Result<NotationClaims, Rejection> {
    let env: JwsEnvelope = serde_json::from_slice(envelope)
        .map_err(|e| Rejection::Malformed(format!("the JWS envelope: {e}")))?;
    let header: Value = serde_json::from_slice(&b64url(&env.protected, "the protected header")?)
        .map_err(|e| Rejection::Malformed(format!("the protected header: {e}")))?;
    let field = |k: &str| header.get(k).and_then(Value::as_str);
    let crit: Vec<&str> = header
        .get("crit")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    check_header(field("cty"), field("io.cncf.notary.signingScheme"), &crit)?;
    let chain = env
        .header
        .x5c
        .iter()
        .take(MAX_CHAIN + 1)
        .map(|c| {
            base64::engine::general_purpose::STANDARD
                .decode(c)
                .map(CertificateDer::from)
                .map_err(|e| Rejection::Malformed(format!("an x5c certificate is not base64: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let expiry = field("io.cncf.notary.expiry")
        .map(|t| {
            rfc3339_seconds(t)
                .map(|at| (at, t.to_owned()))
                .ok_or_else(|| {
                    Rejection::Malformed(format!(
                        "the expiry {:?} is not an RFC 3339 time",
                        truncate_for_message(t)
                    ))
                })
        })
        .transpose()?;
    let parsed = Envelope {
        // Over the header and payload exactly as sent.
        signing_input: format!("{}.{}", env.protected, env.payload).into_bytes(),
        signature: b64url(&env.signature, "the signature")?,
        alg: field("alg").map(str::to_owned),
        chain,
        expiry,
        signing_time: field("io.cncf.notary.signingTime").map(str::to_owned),
        payload: b64url(&env.payload, "the payload")?,
    };
    verify_envelope(parsed, trust, trusted_identities, now)
}

/// The protected header's content type, signing scheme and critical list (JWS and COSE alike).
pub(super) fn check_header(
    cty: Option<&str>,
    scheme: Option<&str>,
    crit: &[&str],
) -> Result<(), Rejection> {
    if cty != Some(PAYLOAD_TYPE) {
        return Err(Rejection::Malformed(format!(
            "the content type is {cty:?}, not {PAYLOAD_TYPE}"
        )));
    }
    match scheme {
        Some("notary.x509") => {}
        Some("notary.x509.signingAuthority") => {
            return Err(Rejection::Untrusted(
                "the signing scheme notary.x509.signingAuthority needs a timestamp authority, which imgcache does not check".into(),
            ));
        }
        other => {
            return Err(Rejection::Malformed(format!(
                "unknown signing scheme {other:?}"
            )));
        }
    }
    if let Some(unknown) = crit.iter().find(|c| !KNOWN_CRITICAL.contains(c)) {
        return Err(Rejection::Malformed(format!(
            "unknown critical header {unknown:?}"
        )));
    }
    if !crit.contains(&"io.cncf.notary.signingScheme") {
        return Err(Rejection::Malformed(
            "the signing scheme is not marked critical".into(),
        ));
    }
    Ok(())
}

/// The checks after parsing, JWS and COSE alike: the signature with the leaf certificate, then
/// the chain to the trust store (code signing, valid at `now`), expiry, identity, payload.
pub(super) fn verify_envelope(
    env: Envelope,
    trust: &TrustStore,
    trusted_identities: &[String],
    now: UnixTime,
) -> Result<NotationClaims, Rejection> {
    let chain = env.chain;
    if chain.is_empty() || chain.len() > MAX_CHAIN {
        return Err(Rejection::Malformed(format!(
            "the envelope carries {} certificates (1 to {MAX_CHAIN})",
            chain.len()
        )));
    }
    // Every certificate must parse, not only those webpki needs for the path.
    for (i, c) in chain.iter().enumerate() {
        x509_cert::Certificate::from_der(c.as_ref()).map_err(|e| {
            let which = match i {
                0 => "the signing certificate".to_owned(),
                _ => format!("certificate {i} of the envelope's chain"),
            };
            Rejection::Malformed(format!("{which} is not X.509: {e}"))
        })?;
    }
    let leaf = webpki::EndEntityCert::try_from(&chain[0])
        .map_err(|e| Rejection::Malformed(format!("the signing certificate: {e:?}")))?;
    // The signature first.
    let sig = env.signature;
    let (alg, sig) = match env.alg.as_deref() {
        Some("PS256") => (webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY, sig),
        Some("PS384") => (webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY, sig),
        Some("PS512") => (webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY, sig),
        // JWS and COSE carry ECDSA as r||s; webpki takes DER.
        Some("ES256") => (
            webpki::ring::ECDSA_P256_SHA256,
            p256::ecdsa::Signature::from_slice(&sig)
                .map_err(|_| Rejection::Malformed("an ES256 signature of the wrong length".into()))?
                .to_der()
                .as_bytes()
                .to_vec(),
        ),
        Some("ES384") => (
            webpki::ring::ECDSA_P384_SHA384,
            p384::ecdsa::Signature::from_slice(&sig)
                .map_err(|_| Rejection::Malformed("an ES384 signature of the wrong length".into()))?
                .to_der()
                .as_bytes()
                .to_vec(),
        ),
        other => {
            return Err(Rejection::Malformed(format!(
                "unsupported algorithm {other:?}"
            )));
        }
    };
    leaf.verify_signature(alg, &env.signing_input, &sig)
        .map_err(|e| Rejection::BadSignature(format!("the envelope's signature: {e:?}")))?;
    // Then the certificate: it must lead to the trust store.
    let anchors: Vec<_> = trust
        .certs
        .iter()
        .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
        .collect();
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &chain[1..],
        now,
        webpki::KeyUsage::required(EKU_CODE_SIGNING),
        None,
        None,
    )
    .map_err(|e| match e {
        webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
            Rejection::Expired(format!("the signing certificate: {e:?}"))
        }
        _ => Rejection::Untrusted(format!(
            "the signing certificate does not lead to the trust store: {e:?}"
        )),
    })?;
    if let Some((at, expiry)) = env.expiry
        && at <= now.as_secs()
    {
        return Err(Rejection::Expired(format!(
            "the signature expired at {expiry}"
        )));
    }
    let signer = subject_of(&chain[0]);
    if !identity_trusted(&signer, trusted_identities) {
        return Err(Rejection::Untrusted(format!(
            "{signer} is not a trusted identity"
        )));
    }
    let payload: Payload = serde_json::from_slice(&env.payload)
        .map_err(|e| Rejection::Malformed(format!("the payload: {e}")))?;
    Ok(NotationClaims {
        target_digest: payload.target.digest,
        target_media_type: payload.target.media_type,
        target_size: payload.target.size,
        signer,
        signing_time: env.signing_time,
    })
}

/// The subject of a certificate, as `CN=..,O=..` (RFC 4514 order).
fn subject_of(der: &CertificateDer<'_>) -> String {
    x509_cert::Certificate::from_der(der.as_ref())
        .map(|c| c.tbs_certificate().subject().to_string())
        .unwrap_or_else(|_| "an unreadable subject".into())
}

/// The attributes of a DN, order-insensitive (`C=US, O=X` and `O=X,C=US` are equal).
fn attributes(dn: &str) -> std::collections::BTreeSet<String> {
    dn.split(',')
        .map(|a| a.trim().replace(" = ", "="))
        .filter(|a| !a.is_empty())
        .collect()
}

/// Whether `subject` is one of `trusted`: as notation, a trusted DN matches a subject that
/// holds each of its attributes (the subject may have more).
fn identity_trusted(subject: &str, trusted: &[String]) -> bool {
    trusted.is_empty()
        || trusted.iter().any(|t| {
            t == "*"
                || t.strip_prefix("x509.subject:")
                    .is_some_and(|dn| attributes(dn).is_subset(&attributes(subject)))
        })
}

/// A `trustedIdentities` entry as notation accepts one: `*`, or `x509.subject: DN` naming at
/// least C, ST and O (fewer would let any certificate of the store with that O sign).
pub(super) fn check_trusted_identity(entry: &str) -> Result<(), String> {
    if entry == "*" {
        return Ok(());
    }
    let Some(dn) = entry.strip_prefix("x509.subject:") else {
        return Err(format!(
            "trustedIdentities: {entry:?} is neither \"*\" nor \"x509.subject: DN\""
        ));
    };
    let attrs = attributes(dn);
    let has = |k: &str| attrs.iter().any(|a| a.starts_with(&format!("{k}=")));
    match ["C", "ST", "O"].into_iter().find(|k| !has(k)) {
        Some(k) => Err(format!(
            "trustedIdentities: {entry:?} has no {k}= (notation requires C, ST and O at least)"
        )),
        None => Ok(()),
    }
}

/// Seconds since the epoch of an RFC 3339 time (`2026-12-02T09:20:49Z`, any offset).
fn rfc3339_seconds(text: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(text, &Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

/// The RFC 3339 UTC time of `secs` since the epoch (COSE writes times as CBOR epoch times).
pub(super) fn rfc3339_of(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{secs} s after the epoch"))
}
