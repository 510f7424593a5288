//! notation's COSE envelope (`notation sign --signature-format cose`, `application/cose`): a
//! tagged COSE_Sign1 (RFC 9052) parsed by coset. What notation 1.3 writes: in the protected
//! header `alg` (PS256 -37, PS384 -38, PS512 -39, ES256 -7, ES384 -35; ECDSA as r||s), `crit`,
//! content type `application/vnd.cncf.notary.payload.v1+json`, `io.cncf.notary.signingScheme`,
//! `io.cncf.notary.signingTime` and optional `io.cncf.notary.expiry` (CBOR epoch times, tag 1);
//! in the unprotected header `x5chain` (33, an array of DER certificates, or one) and the
//! signing agent. The checks after parsing are [`notation::verify_envelope`]'s, as for JWS
//! (ES512, -36, is refused there as unsupported in both formats: ring has no P-521).

use coset::cbor::Value;
use coset::{
    Algorithm, CoseSign1, Label, RegisteredLabel, RegisteredLabelWithPrivate,
    TaggedCborSerializable as _, iana,
};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::Rejection;
use super::notation::{self, Envelope, MAX_CHAIN, NotationClaims, TrustStore};

/// Verifies a notation COSE envelope against `trust` at `now`, as [`notation::verify_jws`]
/// does a JWS one.
pub fn verify_cose(
    envelope: &[u8],
    trust: &TrustStore,
    trusted_identities: &[String],
    now: UnixTime,
) -> Result<NotationClaims, Rejection> {
    let sign1 = CoseSign1::from_tagged_slice(envelope)
        .map_err(|e| Rejection::Malformed(format!("the COSE envelope: {e}")))?;
    let header = &sign1.protected.header;
    let field = |name: &str| {
        header
            .rest
            .iter()
            .find(|(l, _)| matches!(l, Label::Text(t) if t == name))
            .map(|(_, v)| v)
    };
    let cty = match &header.content_type {
        Some(RegisteredLabel::Text(t)) => Some(t.clone()),
        Some(RegisteredLabel::Assigned(format)) => Some(format!("{format:?}")),
        None => None,
    };
    let crit: Vec<String> = header
        .crit
        .iter()
        .map(|c| match c {
            RegisteredLabelWithPrivate::Text(t) => t.clone(),
            RegisteredLabelWithPrivate::Assigned(p) => format!("{p:?}"),
            RegisteredLabelWithPrivate::PrivateUse(i) => i.to_string(),
        })
        .collect();
    notation::check_header(
        cty.as_deref(),
        field("io.cncf.notary.signingScheme").and_then(Value::as_text),
        &crit.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    let expiry = field("io.cncf.notary.expiry")
        .map(|v| {
            epoch_time(v)
                .map(|at| (at, notation::rfc3339_of(at)))
                .ok_or_else(|| {
                    Rejection::Malformed("the expiry is not a CBOR epoch time (tag 1)".into())
                })
        })
        .transpose()?;
    let payload = sign1
        .payload
        .clone()
        .ok_or_else(|| Rejection::Malformed("the payload is detached".into()))?;
    let parsed = Envelope {
        signing_input: sign1.tbs_data(&[]),
        alg: header.alg.as_ref().map(alg_name),
        chain: x5chain(&sign1)?,
        expiry,
        signing_time: field("io.cncf.notary.signingTime")
            .and_then(epoch_time)
            .map(notation::rfc3339_of),
        payload,
        signature: sign1.signature,
    };
    notation::verify_envelope(parsed, trust, trusted_identities, now)
}

/// COSE's algorithm as JWS names it (the two registries share the names).
fn alg_name(alg: &Algorithm) -> String {
    match alg {
        RegisteredLabelWithPrivate::Assigned(a) => match a {
            iana::Algorithm::PS256 => "PS256".into(),
            iana::Algorithm::PS384 => "PS384".into(),
            iana::Algorithm::PS512 => "PS512".into(),
            iana::Algorithm::ES256 => "ES256".into(),
            iana::Algorithm::ES384 => "ES384".into(),
            iana::Algorithm::ES512 => "ES512".into(),
            other => format!("COSE {other:?}"),
        },
        other => format!("COSE {other:?}"),
    }
}

/// `x5chain` (label 33), protected or not: an array of DER certificates, or one.
fn x5chain(sign1: &CoseSign1) -> Result<Vec<CertificateDer<'static>>, Rejection> {
    let label = Label::Int(iana::HeaderParameter::X5Chain as i64);
    let value = sign1
        .protected
        .header
        .rest
        .iter()
        .chain(&sign1.unprotected.rest)
        .find(|(l, _)| *l == label)
        .map(|(_, v)| v);
    let der = |v: &Value| {
        v.as_bytes()
            .map(|b| CertificateDer::from(b.clone()))
            .ok_or_else(|| Rejection::Malformed("an x5chain certificate is not a bstr".into()))
    };
    match value {
        None => Ok(Vec::new()),
        Some(Value::Array(certs)) => certs.iter().take(MAX_CHAIN + 1).map(der).collect(),
        Some(one) => Ok(vec![der(one)?]),
    }
}

/// Seconds since the epoch of a CBOR epoch time (tag 1, an unsigned integer).
fn epoch_time(v: &Value) -> Option<u64> {
    match v {
        Value::Tag(1, t) => t.as_integer().and_then(|i| u64::try_from(i).ok()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::Engine as _;
    use coset::CborSerializable as _;

    use super::*;

    /// `notation sign --signature-format cose --expiry 1h` (notation 1.3.2) of
    /// `sha256:a2d812147f25ee83c4b4fe6384c5945030a8fbfec62d769d0090a01c2dbd80e0`, signed at
    /// 1796220204 (2026-12-02T14:03:24Z) with `notation cert generate-test cose.example` (RSA,
    /// PS256).
    const ENVELOPE: &str = "\
    0oRY0KYBOCQCgngcaW8uY25jZi5ub3Rhcnkuc2lnbmluZ1NjaGVtZXVpby5jbmNmLm5vdGFyeS5leHBpcnkDeCthcHBs\
    aWNhdGlvbi92bmQuY25jZi5ub3RhcnkucGF5bG9hZC52MStqc29udWlvLmNuY2Yubm90YXJ5LmV4cGlyecEaaxAzPHga\
    aW8uY25jZi5ub3Rhcnkuc2lnbmluZ1RpbWXBGmsQJSx4HGlvLmNuY2Yubm90YXJ5LnNpZ25pbmdTY2hlbWVrbm90YXJ5\
    Lng1MDmiGCGBWQNPMIIDSzCCAjOgAwIBAgICAKgwDQYJKoZIhvcNAQELBQAwVDELMAkGA1UEBhMCVVMxCzAJBgNVBAgT\
    AldBMRAwDgYDVQQHEwdTZWF0dGxlMQ8wDQYDVQQKEwZOb3RhcnkxFTATBgNVBAMTDGNvc2UuZXhhbXBsZTAeFw0yNjEy\
    MDIxNDAyNTZaFw0yNjEyMDMxNDAyNTZaMFQxCzAJBgNVBAYTAlVTMQswCQYDVQQIEwJXQTEQMA4GA1UEBxMHU2VhdHRs\
    ZTEPMA0GA1UEChMGTm90YXJ5MRUwEwYDVQQDEwxjb3NlLmV4YW1wbGUwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEK\
    AoIBAQC6kiEEPAVDOOyx3h+Ylqf+5PbbuDVceYBw9yDYuhWdak1ERJRlivrrkzuhCTJfExd9fitsDCaBBrQZIQnM+Yq0\
    Q+dm0O3Z0YI73Poh5MiWUcl0HwvEAU/GNjzCgTdGxJcPKXp/KcTdhNG18wAvcTTelObl7BAeWAfadHYkFf7ivZvoSKX9\
    27gxQu/Zgt+9CrybpVRKzG69wJvm2JN5R/mYyQHGxSZPNZqhJkPJs3NNYRtgX6G5kHuEANBQ6FdchM2/lmkGnDt09zOA\
    vh4CD+kgztzE1UqUxSyFTIcscE903IZPX0CBdlsHGmCUznDthAqLYvXl9prmDJFUnq/3qhS7AgMBAAGjJzAlMA4GA1Ud\
    DwEB/wQEAwIHgDATBgNVHSUEDDAKBggrBgEFBQcDAzANBgkqhkiG9w0BAQsFAAOCAQEAOBZhxMeWpWvgb8Aa1h/+4vxq\
    48WrXXOYyZPge3DPoAY0eQ3vm1Rii6XulzvDvH298N/tmlAeRC/IwgXexd9P1GZ2eAMv7l2rvNjipw+RipYwKT8ZVOid\
    FPTtU6VTecHRzyZk3+8eXZ9UA9NkAa+fcucTkbphb3GRY0reTKkpKH8EYD0Y2XM1O19Ma4u41stM/UerpJEv2wS1nVDI\
    Ez/CHPZbiw+KtYAcpLpJ7oi7mSaO6d3MQajHOv0CDb2UtwQpg+5mRm0w5Af1InAFa6OjeqktqW0Uo/K9ZtxlPVVVtmBy\
    NXHcrQedN4NX+o+HWDyWlRlH1+XRxD2IOG94AD77N3gbaW8uY25jZi5ub3Rhcnkuc2lnbmluZ0FnZW50cW5vdGF0aW9u\
    LWdvLzEuMy4yWKt7InRhcmdldEFydGlmYWN0Ijp7Im1lZGlhVHlwZSI6ImFwcGxpY2F0aW9uL3ZuZC5vY2kuaW1hZ2Uu\
    bWFuaWZlc3QudjEranNvbiIsImRpZ2VzdCI6InNoYTI1NjphMmQ4MTIxNDdmMjVlZTgzYzRiNGZlNjM4NGM1OTQ1MDMw\
    YThmYmZlYzYyZDc2OWQwMDkwYTAxYzJkYmQ4MGUwIiwic2l6ZSI6NTU5fX1ZAQBCt0HIszSyn6JwGGVqIEo6UsvTaXct\
    SPOa+r7ja7BSDKZlW0at8X/Sf9etwB7hP+NVzvIYdT7swjZOjVHH1qCAhgfmxtep9WZx/ImE6EsPrYXB6TdvE+UU7L1G\
    BxPETBC116OAuI1ee9lWEE3HC0IBYw2LVKataa4TvCuQ7XsWrHvgzTsX6lE5OL3f4VoSPz5a0+Wy10JQ34s5NOSkHxhs\
    TZHldtVUKM2EU00qR3mDhb/YycIMLzdoc04CaqPaM9gvtitN3Twz0A5/wqN+QKMuCcxIto65QgLiwl58MV0TylLJtORe\
    ln/pBDLgcxjEGhLXGBztpzsBTGzWkLaPouzh";
    /// The certificate (`localkeys/cose.example.crt`), valid 2026-12-02T14:02:56Z + a day.
    const CERT: &str = "-----BEGIN CERTIFICATE-----\n\
    MIIDSzCCAjOgAwIBAgICAKgwDQYJKoZIhvcNAQELBQAwVDELMAkGA1UEBhMCVVMxCzAJBgNVBAgTAldBMRAwDgYDVQQH\
    EwdTZWF0dGxlMQ8wDQYDVQQKEwZOb3RhcnkxFTATBgNVBAMTDGNvc2UuZXhhbXBsZTAeFw0yNjEyMDIxNDAyNTZaFw0y\
    NjEyMDMxNDAyNTZaMFQxCzAJBgNVBAYTAlVTMQswCQYDVQQIEwJXQTEQMA4GA1UEBxMHU2VhdHRsZTEPMA0GA1UEChMG\
    Tm90YXJ5MRUwEwYDVQQDEwxjb3NlLmV4YW1wbGUwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQC6kiEEPAVD\
    OOyx3h+Ylqf+5PbbuDVceYBw9yDYuhWdak1ERJRlivrrkzuhCTJfExd9fitsDCaBBrQZIQnM+Yq0Q+dm0O3Z0YI73Poh\
    5MiWUcl0HwvEAU/GNjzCgTdGxJcPKXp/KcTdhNG18wAvcTTelObl7BAeWAfadHYkFf7ivZvoSKX927gxQu/Zgt+9Cryb\
    pVRKzG69wJvm2JN5R/mYyQHGxSZPNZqhJkPJs3NNYRtgX6G5kHuEANBQ6FdchM2/lmkGnDt09zOAvh4CD+kgztzE1UqU\
    xSyFTIcscE903IZPX0CBdlsHGmCUznDthAqLYvXl9prmDJFUnq/3qhS7AgMBAAGjJzAlMA4GA1UdDwEB/wQEAwIHgDAT\
    BgNVHSUEDDAKBggrBgEFBQcDAzANBgkqhkiG9w0BAQsFAAOCAQEAOBZhxMeWpWvgb8Aa1h/+4vxq48WrXXOYyZPge3DP\
    oAY0eQ3vm1Rii6XulzvDvH298N/tmlAeRC/IwgXexd9P1GZ2eAMv7l2rvNjipw+RipYwKT8ZVOidFPTtU6VTecHRzyZk\
    3+8eXZ9UA9NkAa+fcucTkbphb3GRY0reTKkpKH8EYD0Y2XM1O19Ma4u41stM/UerpJEv2wS1nVDIEz/CHPZbiw+KtYAc\
    pLpJ7oi7mSaO6d3MQajHOv0CDb2UtwQpg+5mRm0w5Af1InAFa6OjeqktqW0Uo/K9ZtxlPVVVtmByNXHcrQedN4NX+o+H\
    WDyWlRlH1+XRxD2IOG94AD77Nw==\n\
    -----END CERTIFICATE-----\n";
    const SIGNED_AT: u64 = 1796220204;

    fn envelope() -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(ENVELOPE)
            .unwrap()
    }

    fn verify_at(bytes: &[u8], secs: u64) -> Result<NotationClaims, Rejection> {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("cose.example.crt");
        std::fs::write(&pem, CERT).unwrap();
        let trust = TrustStore::load(&[pem]).unwrap();
        let now = UnixTime::since_unix_epoch(Duration::from_secs(secs));
        verify_cose(bytes, &trust, &[], now)
    }

    #[test]
    fn notation_cose_envelope_verifies_and_expires() {
        let c = verify_at(&envelope(), SIGNED_AT + 60).expect("verifies");
        assert_eq!(
            c.target_digest,
            "sha256:a2d812147f25ee83c4b4fe6384c5945030a8fbfec62d769d0090a01c2dbd80e0"
        );
        assert!(c.signer.contains("CN=cose.example"), "{}", c.signer);
        assert_eq!(c.signing_time.as_deref(), Some("2026-12-02T14:03:24Z"));
        let r = verify_at(&envelope(), SIGNED_AT + 7200);
        assert!(
            matches!(&r, Err(Rejection::Expired(m)) if m.contains("2026-12-02T15:03:24Z")),
            "{r:?}"
        );
    }

    #[test]
    fn notation_cose_changed_signature_byte_is_a_bad_signature() {
        let mut bytes = envelope();
        // The signature is the last item of the COSE_Sign1 array.
        *bytes.last_mut().unwrap() ^= 1;
        let r = verify_at(&bytes, SIGNED_AT + 60);
        assert!(matches!(r, Err(Rejection::BadSignature(_))), "{r:?}");
    }

    #[test]
    fn notation_cose_garbage_is_malformed() {
        for bytes in [
            &b""[..],
            b"garbage",
            b"\xd2\x84\x40",
            b"{\"payload\":\"e30\"}",
        ] {
            let r = verify_at(bytes, SIGNED_AT + 60);
            assert!(
                matches!(&r, Err(Rejection::Malformed(m)) if m.contains("the COSE envelope")),
                "{r:?}"
            );
        }
    }

    #[test]
    fn notation_cose_unknown_critical_header_is_malformed() {
        let mut sign1 = CoseSign1::from_tagged_slice(&envelope()).unwrap();
        sign1
            .protected
            .header
            .crit
            .push(RegisteredLabelWithPrivate::Text(
                "io.example.unknown".into(),
            ));
        sign1.protected.original_data = Some(sign1.protected.header.clone().to_vec().unwrap());
        let r = verify_at(&sign1.to_tagged_vec().unwrap(), SIGNED_AT + 60);
        assert!(
            matches!(&r, Err(Rejection::Malformed(m)) if m.contains("io.example.unknown")),
            "{r:?}"
        );
    }
}
