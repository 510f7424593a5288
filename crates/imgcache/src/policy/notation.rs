//! notation's JWS envelope (`application/jose+json`, signing scheme `notary.x509`), checked
//! against an X.509 trust store as `notation verify` does without a timestamp authority: the
//! chain the envelope carries must lead to a certificate of the store, valid now, with code
//! signing usage. Path building and certificate checks are rustls-webpki's (already the
//! registry client's verifier); the certificates inside the envelope are never trusted alone.

use std::path::PathBuf;

use base64::Engine as _;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;
use serde_json::Value;

use super::Rejection;

/// DER of the code-signing extended key usage OID, 1.3.6.1.5.5.7.3.3.
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
const PAYLOAD_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";
const KNOWN_CRITICAL: &[&str] = &[
    "io.cncf.notary.signingScheme",
    "io.cncf.notary.expiry",
    "io.cncf.notary.authenticSigningTime",
];
/// Certificates one envelope may carry.
const MAX_CHAIN: usize = 10;

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
            if bytes.starts_with(b"-----BEGIN") {
                let text = String::from_utf8_lossy(&bytes);
                for block in text.split("-----BEGIN CERTIFICATE-----").skip(1) {
                    let body: String = block
                        .split("-----END CERTIFICATE-----")
                        .next()
                        .unwrap_or("")
                        .split_whitespace()
                        .collect();
                    let der = base64::engine::general_purpose::STANDARD
                        .decode(body)
                        .map_err(|e| {
                            format!("{}: a PEM certificate that is not base64: {e}", f.display())
                        })?;
                    certs.push(CertificateDer::from(der));
                }
            } else {
                certs.push(CertificateDer::from(bytes));
            }
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
struct Envelope {
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
    let env: Envelope = serde_json::from_slice(envelope)
        .map_err(|e| Rejection::Malformed(format!("the JWS envelope: {e}")))?;
    let header: Value = serde_json::from_slice(&b64url(&env.protected, "the protected header")?)
        .map_err(|e| Rejection::Malformed(format!("the protected header: {e}")))?;
    let field = |k: &str| header.get(k).and_then(Value::as_str);
    if field("cty") != Some(PAYLOAD_TYPE) {
        return Err(Rejection::Malformed(format!(
            "the content type is {:?}, not {PAYLOAD_TYPE}",
            field("cty")
        )));
    }
    match field("io.cncf.notary.signingScheme") {
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
    let crit: Vec<&str> = header
        .get("crit")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
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
    let chain: Vec<CertificateDer<'static>> = env
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
    if chain.is_empty() || chain.len() > MAX_CHAIN {
        return Err(Rejection::Malformed(format!(
            "the envelope carries {} certificates (1 to {MAX_CHAIN})",
            chain.len()
        )));
    }
    let leaf = webpki::EndEntityCert::try_from(&chain[0])
        .map_err(|e| Rejection::Malformed(format!("the signing certificate: {e:?}")))?;
    // The signature first: over the header and payload exactly as sent.
    let signing_input = format!("{}.{}", env.protected, env.payload);
    let sig = b64url(&env.signature, "the signature")?;
    let (alg, sig) = match field("alg") {
        Some("PS256") => (webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY, sig),
        Some("PS384") => (webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY, sig),
        Some("PS512") => (webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY, sig),
        // JWS carries ECDSA as r||s; webpki takes DER.
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
    leaf.verify_signature(alg, signing_input.as_bytes(), &sig)
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
    if let Some(expiry) = field("io.cncf.notary.expiry")
        && let Some(at) = rfc3339_seconds(expiry)
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
    let payload: Payload = serde_json::from_slice(&b64url(&env.payload, "the payload")?)
        .map_err(|e| Rejection::Malformed(format!("the payload: {e}")))?;
    Ok(NotationClaims {
        target_digest: payload.target.digest,
        target_media_type: payload.target.media_type,
        target_size: payload.target.size,
        signer,
        signing_time: field("io.cncf.notary.signingTime").map(str::to_owned),
    })
}

/// The subject of a certificate, as `CN=..,O=..` (RFC 4514 order).
fn subject_of(der: &CertificateDer<'_>) -> String {
    use x509_cert::der::Decode as _;
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

fn identity_trusted(subject: &str, trusted: &[String]) -> bool {
    trusted.is_empty()
        || trusted.iter().any(|t| {
            t == "*"
                || t.strip_prefix("x509.subject:")
                    .is_some_and(|dn| attributes(dn) == attributes(subject))
        })
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2026-12-02T09:20:49Z`); `None` if not.
fn rfc3339_seconds(text: &str) -> Option<u64> {
    let t = text.strip_suffix('Z')?;
    let (date, time) = t.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut h = time
        .split('.')
        .next()?
        .split(':')
        .map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (h.next()??, h.next()??, h.next()??);
    // Days from civil (Howard Hinnant's algorithm): no date crate for one field.
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    u64::try_from(days * 86400 + hh * 3600 + mm * 60 + ss).ok()
}
