//! Notation JWS envelopes.

use super::*;

/// A self-signed code-signing certificate (CN=signer.test) and its P-256 key, made for
/// these tests only.
pub(super) const SIGNER_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBvDCCAWKgAwIBAgIEASNFZzAKBggqhkjOPQQDAjA6MQswCQYDVQQGEwJVUzEV
MBMGA1UECgwMSG9zdGlsZSBUZXN0MRQwEgYDVQQDDAtzaWduZXIudGVzdDAgFw0y
NjEyMDIxMzQ0NThaGA8yMTI2MTEwODEzNDQ1OFowOjELMAkGA1UEBhMCVVMxFTAT
BgNVBAoMDEhvc3RpbGUgVGVzdDEUMBIGA1UEAwwLc2lnbmVyLnRlc3QwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAAQQ3iK6NbG/10mLpLd6u+1yLY41SW9GrOG8mj+J
r0Re/ngrPFsJ341ug1/0akjTie8MBVeV3//fR8t5pMWlV8mto1QwUjAMBgNVHRMB
Af8EAjAAMA4GA1UdDwEB/wQEAwIHgDATBgNVHSUEDDAKBggrBgEFBQcDAzAdBgNV
HQ4EFgQUXaH1Szk6Hn99s81TrkxZcPewSDEwCgYIKoZIzj0EAwIDSAAwRQIhAOBv
5R/U1Cy/U+SameRZFMyM7FfV7+/7Mzknsbk7/FlmAiB8wCeUG/6/aleLl7f2HIor
kftA+dxVs4U6ayUgz1X21g==
-----END CERTIFICATE-----
";
const SIGNER_KEY_HEX: &str = "0a897f56f34e7c4e15178a2caecb12498e215b20cc89e26b9117a39601728010";
/// Another self-signed code-signing certificate (CN=stranger.test).
const STRANGER_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBwDCCAWagAwIBAgIEB2VDITAKBggqhkjOPQQDAjA8MQswCQYDVQQGEwJVUzEV
MBMGA1UECgwMSG9zdGlsZSBUZXN0MRYwFAYDVQQDDA1zdHJhbmdlci50ZXN0MCAX
DTI2MTIwMjEzNDUwMVoYDzIxMjYxMTA4MTM0NTAxWjA8MQswCQYDVQQGEwJVUzEV
MBMGA1UECgwMSG9zdGlsZSBUZXN0MRYwFAYDVQQDDA1zdHJhbmdlci50ZXN0MFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE0tGr28emlv4vIEm/JmbuvrxoY6aCts9m
6ybxDW7ndIjMOOMiSnbUkBXZaKozfQ0JILzm+InVABipMPEVJw6BKqNUMFIwDAYD
VR0TAQH/BAIwADAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUHAwMw
HQYDVR0OBBYEFKtgkt9usuaNmghAetYeGqsnCbnjMAoGCCqGSM49BAMCA0gAMEUC
IQDP2yB98ohkEzXis7lc7ff5ULUtXdsbcxPOlRd7N8BFsgIgHucgrEU7M6STOEtw
VJBwAcY0Zrkzzpuh4iOWqAVkSTI=
-----END CERTIFICATE-----
";

/// A day after the certificates' notBefore.
fn cert_time() -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(1_796_219_098 + 86_400))
}

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn notation_key() -> SigningKey {
    SigningKey::from_slice(&unhex(SIGNER_KEY_HEX)).unwrap()
}

/// A trust store of `pem`, written into `dir`.
fn trust_store(dir: &Path, name: &str, pem: &str) -> TrustStore {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    TrustStore::load(&[path]).unwrap()
}

fn jws_header() -> Value {
    json!({
        "alg": "ES256",
        "cty": NOTARY_PAYLOAD,
        "crit": ["io.cncf.notary.signingScheme"],
        "io.cncf.notary.signingScheme": "notary.x509",
        "io.cncf.notary.signingTime": "2026-12-03T00:00:00Z"
    })
}

fn jws_payload(digest: &Digest) -> Vec<u8> {
    serde_json::to_vec(&json!({"targetArtifact": {
        "digest": digest.to_string(), "mediaType": OCI_MANIFEST, "size": 1234
    }}))
    .unwrap()
}

/// A JWS envelope: `protected` and `payload` as given (base64url text), signed ES256 by the
/// signer's key over exactly those, `x5c` as given.
fn jws_raw(protected: &str, payload: &str, x5c: Vec<String>) -> Value {
    let sig: p256::ecdsa::Signature =
        notation_key().sign(format!("{protected}.{payload}").as_bytes());
    json!({
        "payload": payload,
        "protected": protected,
        "header": {"x5c": x5c},
        "signature": b64url(&sig.to_bytes())
    })
}

fn jws(header: &Value, payload: &[u8]) -> Value {
    jws_raw(
        &b64url(header.to_string().as_bytes()),
        &b64url(payload),
        vec![b64(&pem_der(SIGNER_CERT))],
    )
}

fn verify(env: &Value, trust: &TrustStore) -> Result<notation::NotationClaims, Rejection> {
    notation::verify_jws(&serde_json::to_vec(env).unwrap(), trust, &[], cert_time())
}

#[test]
fn notation_valid_envelope_verifies_before_it_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let trust = trust_store(dir.path(), "signer.pem", SIGNER_CERT);
    let c = verify(&jws(&jws_header(), &jws_payload(&subject())), &trust).expect("verifies");
    assert_eq!(c.target_digest, subject().to_string());
    has(&c.signer, "CN=signer.test");
}

#[test]
fn notation_envelope_that_is_not_json_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let trust = trust_store(dir.path(), "signer.pem", SIGNER_CERT);
    for (bytes, want) in [
        (&b""[..], "EOF"),
        (&b"eyJhbGciOiJFUzI1NiJ9.e30.c2ln"[..], "expected value"),
        (&b"{\"payload\": \"e30\"}"[..], "missing field"),
        (
            &b"{\"payload\":1,\"protected\":\"\",\"header\":{\"x5c\":[]},\"signature\":\"\"}"[..],
            "invalid type: integer",
        ),
    ] {
        let m = malformed(notation::verify_jws(bytes, &trust, &[], cert_time()));
        has(&m, "the JWS envelope");
        has(&m, want);
    }
}

#[test]
fn notation_protected_header_of_garbage_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let trust = trust_store(dir.path(), "signer.pem", SIGNER_CERT);
    let payload = b64url(&jws_payload(&subject()));
    let cert = vec![b64(&pem_der(SIGNER_CERT))];
    let m = malformed(verify(
        &jws_raw("@@not base64url@@", &payload, cert.clone()),
        &trust,
    ));
    has(&m, "the protected header is not base64url");
    let m = malformed(verify(
        &jws_raw(&b64url(&[0xff, 0xfe, 0x00, 0x01]), &payload, cert.clone()),
        &trust,
    ));
    has(&m, "the protected header:");
    let m = malformed(verify(
        &jws_raw(&b64url(b"{\"alg\":"), &payload, cert.clone()),
        &trust,
    ));
    has(&m, "the protected header: EOF");
    // JSON, but not an object: no content type in it.
    let m = malformed(verify(&jws_raw(&b64url(b"[1,2]"), &payload, cert), &trust));
    has(&m, "the content type is None");
}

#[test]
fn notation_wrong_content_type_or_signing_scheme_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let trust = trust_store(dir.path(), "signer.pem", SIGNER_CERT);
    let payload = jws_payload(&subject());
    let mut h = jws_header();
    h["cty"] = json!("application/json");
    has(
        &malformed(verify(&jws(&h, &payload), &trust)),
        "the content type is Some(\"application/json\")",
    );
    let mut h = jws_header();
    h.as_object_mut()
        .unwrap()
        .remove("io.cncf.notary.signingScheme");
    has(
        &malformed(verify(&jws(&h, &payload), &trust)),
        "unknown signing scheme None",
    );
    let mut h = jws_header();
    h["io.cncf.notary.signingScheme"] = json!("notary.x509.v2");
    has(
        &malformed(verify(&jws(&h, &payload), &trust)),
        "unknown signing scheme Some(\"notary.x509.v2\")",
    );
    let mut h = jws_header();
    h["io.cncf.notary.signingScheme"] = json!("notary.x509.signingAuthority");
    has(
        &untrusted(verify(&jws(&h, &payload), &trust)),
        "timestamp authority",
    );
}

#[test]
fn notation_missing_or_unknown_crit_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let trust = trust_store(dir.path(), "signer.pem", SIGNER_CERT);
    let payload = jws_payload(&subject());
    for crit in [
        None,
        Some(json!([])),
        Some(json!("io.cncf.notary.signingScheme")),
        Some(json!(["io.cncf.notary.expiry"])),
    ] {
        let mut h = jws_header();
        match crit {
            Some(c) => h["crit"] = c,
            None => {
                h.as_object_mut().unwrap().remove("crit");
            }
        }
        has(
            &malformed(verify(&jws(&h, &payload), &trust)),
            "the signing scheme is not marked critical",
        );
    }
    let mut h = jws_header();
    h["crit"] = json!(["io.cncf.notary.signingScheme", "io.example.mustUnderstand"]);
    has(
        &malformed(verify(&jws(&h, &payload), &trust)),
        "unknown critical header \"io.example.mustUnderstand\"",
    );
}

#[test]
fn notation_wrong_or_missing_alg_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let trust = trust_store(dir.path(), "signer.pem", SIGNER_CERT);
    let payload = jws_payload(&subject());
    for alg in [
        json!("none"),
        json!("HS256"),
        json!("RS256"),
        json!("es256"),
        json!(7),
    ] {
        let mut h = jws_header();
        h["alg"] = alg.clone();
        let m = malformed(verify(&jws(&h, &payload), &trust));
        has(&m, "unsupported algorithm");
        if let Some(a) = alg.as_str() {
            has(&m, &format!("{a:?}"));
        }
    }
    let mut h = jws_header();
    h.as_object_mut().unwrap().remove("alg");
    has(
        &malformed(verify(&jws(&h, &payload), &trust)),
        "unsupported algorithm None",
    );
    // ES384 claimed for a P-256 signature: the signature does not have ES384's length.
    let mut h = jws_header();
    h["alg"] = json!("ES384");
    has(
        &malformed(verify(&jws(&h, &payload), &trust)),
        "an ES384 signature of the wrong length",
    );
}

#[test]
fn notation_signature_of_garbage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let trust = trust_store(dir.path(), "signer.pem", SIGNER_CERT);
    let good = jws(&jws_header(), &jws_payload(&subject()));
    let mut e = good.clone();
    e["signature"] = json!("!!!");
    has(
        &malformed(verify(&e, &trust)),
        "the signature is not base64url",
    );
    for len in [0, 63, 65, 4096] {
        let mut e = good.clone();
        e["signature"] = json!(b64url(&vec![0x42; len]));
        has(
            &malformed(verify(&e, &trust)),
            "an ES256 signature of the wrong length",
        );
    }
    // A DER signature where JWS wants r||s.
    let mut e = good.clone();
    e["signature"] = json!(b64url(&der_sig(&notation_key(), b"x")));
    has(
        &malformed(verify(&e, &trust)),
        "an ES256 signature of the wrong length",
    );
    // The right length, the wrong bytes.
    let mut e = good.clone();
    let sig: p256::ecdsa::Signature = notation_key().sign(b"another message");
    e["signature"] = json!(b64url(&sig.to_bytes()));
    has(
        &bad_signature(verify(&e, &trust)),
        "the envelope's signature",
    );
    // A payload swapped after signing.
    let mut e = good;
    e["payload"] = json!(b64url(&jws_payload(&Digest::of_bytes(b"another image"))));
    has(
        &bad_signature(verify(&e, &trust)),
        "the envelope's signature",
    );
}

#[test]
fn notation_certificate_chain_of_garbage_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let trust = trust_store(dir.path(), "signer.pem", SIGNER_CERT);
    let protected = b64url(jws_header().to_string().as_bytes());
    let payload = b64url(&jws_payload(&subject()));
    let leaf = pem_der(SIGNER_CERT);
    let m = malformed(verify(
        &jws_raw(&protected, &payload, vec!["%%%".into()]),
        &trust,
    ));
    has(&m, "an x5c certificate is not base64");
    let m = malformed(verify(&jws_raw(&protected, &payload, vec![]), &trust));
    has(&m, "the envelope carries 0 certificates (1 to 10)");
    for (what, der) in [
        ("text", b"not a certificate".to_vec()),
        ("truncated", leaf[..leaf.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("a signature", der_sig(&notation_key(), b"x")),
    ] {
        let m = malformed(verify(
            &jws_raw(&protected, &payload, vec![b64(&der)]),
            &trust,
        ));
        assert!(m.contains("the signing certificate"), "{what}: {m}");
    }
    // Thousands of certificates: refused on the count, at most 11 decoded.
    let many = vec![b64(&leaf); 5000];
    let m = malformed(verify(&jws_raw(&protected, &payload, many), &trust));
    has(&m, "(1 to 10)");
}

#[test]
fn notation_garbage_intermediate_in_the_chain_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let trust = trust_store(dir.path(), "signer.pem", SIGNER_CERT);
    let protected = b64url(jws_header().to_string().as_bytes());
    let payload = b64url(&jws_payload(&subject()));
    let chain = vec![b64(&pem_der(SIGNER_CERT)), b64(b"garbage, not DER")];
    let r = verify(&jws_raw(&protected, &payload, chain), &trust);
    assert!(
        matches!(&r, Err(Rejection::Malformed(m)) if m.contains("certificate")),
        "{r:?}"
    );
}

#[test]
fn notation_certificate_outside_the_trust_store_is_untrusted_and_a_bad_payload_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let stranger = trust_store(dir.path(), "stranger.pem", STRANGER_CERT);
    let m = untrusted(verify(
        &jws(&jws_header(), &jws_payload(&subject())),
        &stranger,
    ));
    has(&m, "does not lead to the trust store");
    // Trusted and signed, but the payload is not notation's.
    let trust = trust_store(dir.path(), "signer.pem", SIGNER_CERT);
    for (payload, want) in [
        (b"not json".to_vec(), "expected ident"),
        (b"{}".to_vec(), "missing field `targetArtifact`"),
        (
            br#"{"targetArtifact": {"digest": "sha256:00", "mediaType": "x", "size": -1}}"#
                .to_vec(),
            "invalid value: integer `-1`",
        ),
    ] {
        let m = malformed(verify(&jws(&jws_header(), &payload), &trust));
        has(&m, "the payload:");
        has(&m, want);
    }
}

#[test]
fn notation_expiry_with_an_offset_is_read_and_one_that_is_no_time_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let trust = trust_store(dir.path(), "signer.pem", SIGNER_CERT);
    let with_expiry = |expiry: &str| {
        let mut h = jws_header();
        h["io.cncf.notary.expiry"] = json!(expiry);
        h["crit"] = json!(["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"]);
        verify(&jws(&h, &jws_payload(&subject())), &trust)
    };
    // Notation writes the signer's local offset; the certificate time is 2026-12-03.
    with_expiry("2099-01-01T00:00:00+02:00").expect("not expired");
    let r = with_expiry("2026-12-02T23:00:00-05:00");
    assert!(matches!(r, Err(Rejection::Expired(_))), "{r:?}");
    // Regression: an expiry that did not parse was ignored (the signature never expired).
    has(
        &malformed(with_expiry("next week")),
        "is not an RFC 3339 time",
    );
}

#[test]
fn notation_trusted_identity_matches_a_subject_holding_its_attributes_as_notation_does() {
    let dir = tempfile::tempdir().unwrap();
    let trust = trust_store(dir.path(), "signer.pem", SIGNER_CERT);
    let env = serde_json::to_vec(&jws(&jws_header(), &jws_payload(&subject()))).unwrap();
    let with =
        |identity: &str| notation::verify_jws(&env, &trust, &[identity.to_owned()], cert_time());
    // The subject is C=US, O=Hostile Test, CN=signer.test: fewer attributes, in any order.
    with("x509.subject: O=Hostile Test, C=US").expect("a subset of the subject");
    with("x509.subject: CN=signer.test,O=Hostile Test,C=US").expect("the whole subject");
    let r = with("x509.subject: C=US, O=Hostile Test, CN=other.test");
    assert!(matches!(r, Err(Rejection::Untrusted(_))), "{r:?}");
}
