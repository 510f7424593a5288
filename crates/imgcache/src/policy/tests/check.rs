//! Policy::check on damaged artifacts.

use super::*;

/// A policy requiring a cosign signature by `key` for `REPO`, `identity` as given.
fn cosign_policy(dir: &Path, key: &SigningKey, identity: Value) -> Policy {
    std::fs::write(dir.join("cosign.pub"), public_pem(key)).unwrap();
    let doc = json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {REPO: [
            {"type": "sigstoreSigned", "keyPath": "cosign.pub", "signedIdentity": identity}
        ]}}
    });
    Policy::load(&write_policy(dir, &doc.to_string())).unwrap()
}

fn image() -> Reference {
    Reference::parse(&format!("{REPO}@{}", subject())).unwrap()
}

/// A cosign `.sig` manifest of one simple-signing layer per `(payload, annotation)`.
fn cosign_artifact(layers: &[(Vec<u8>, Option<String>)]) -> SignatureArtifact {
    let config = b"{}".to_vec();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of_bytes(&config).to_string(), "size": config.len()},
        "layers": layers.iter().map(|(p, sig)| {
            let mut l = json!({"mediaType": MEDIA_SIMPLE_SIGNING, "digest": Digest::of_bytes(p).to_string(), "size": p.len()});
            if let Some(s) = sig {
                l["annotations"] = json!({ANNOTATION_COSIGN_SIGNATURE: s});
            }
            l
        }).collect::<Vec<_>>()
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let mut blobs = vec![(Digest::of_bytes(&config), config)];
    blobs.extend(layers.iter().map(|(p, _)| (Digest::of_bytes(p), p.clone())));
    SignatureArtifact {
        format: SignatureFormat::CosignTag,
        digest: Digest::of_bytes(&manifest),
        manifest,
        blobs,
        unreadable: None,
    }
}

fn refusal(r: Result<Accepted, Error>) -> String {
    match r {
        Err(Error::PolicyRefused { reason, scope, .. }) => {
            assert_eq!(scope, format!("transports.docker[{REPO:?}]"));
            reason
        }
        Err(e) => panic!("expected Error::PolicyRefused, got {e:?}"),
        Ok(a) => panic!("accepted: {a:?}"),
    }
}

#[test]
fn check_accepts_the_valid_artifact_it_then_refuses_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let key = signing_key("cosign");
    let policy = cosign_policy(dir.path(), &key, json!({"type": "matchRepository"}));
    let payload = good_payload();
    let sig = b64(&der_sig(&key, &payload));
    let ok = policy
        .check(
            &image(),
            &subject(),
            &[cosign_artifact(&[(payload, Some(sig))])],
        )
        .expect("accepted");
    assert_eq!(ok.signers.len(), 1);
}

#[test]
fn check_refuses_bad_base64_or_a_missing_annotation_saying_which_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let key = signing_key("cosign");
    let policy = cosign_policy(dir.path(), &key, json!({"type": "matchRepository"}));
    let a = cosign_artifact(&[(good_payload(), Some("*not base64*".into()))]);
    let short = a.digest.hex()[..12].to_owned();
    let m = refusal(policy.check(&image(), &subject(), &[a]));
    has(
        &m,
        &format!("no cosign signature of {} is acceptable", subject()),
    );
    has(
        &m,
        &format!("cosign {short}: malformed signature: the signature annotation is not base64"),
    );
    let m = refusal(policy.check(
        &image(),
        &subject(),
        &[cosign_artifact(&[(good_payload(), None)])],
    ));
    has(&m, "a payload without its signature annotation");
}

#[test]
fn check_of_artifacts_that_carry_nothing_usable_says_none_was_found() {
    let dir = tempfile::tempdir().unwrap();
    let key = signing_key("cosign");
    let policy = cosign_policy(dir.path(), &key, json!({"type": "matchRepository"}));
    let payload = good_payload();
    let sig = b64(&der_sig(&key, &payload));
    // A manifest that is not JSON; a layer whose blob is not carried; a notation artifact.
    let mut garbage = cosign_artifact(&[(payload.clone(), Some(sig.clone()))]);
    garbage.manifest = b"\x00garbage".to_vec();
    let mut missing = cosign_artifact(&[(payload.clone(), Some(sig.clone()))]);
    missing.blobs.truncate(1);
    let mut notation_a = cosign_artifact(&[(payload, Some(sig))]);
    notation_a.format = SignatureFormat::Notation;
    let m = refusal(policy.check(&image(), &subject(), &[garbage, missing, notation_a]));
    assert_eq!(m, format!("no cosign signature of {} was found", subject()));
}

#[test]
fn check_refuses_a_signature_of_another_digest_or_repository() {
    let dir = tempfile::tempdir().unwrap();
    let key = signing_key("cosign");
    let policy = cosign_policy(dir.path(), &key, json!({"type": "matchRepository"}));
    let other = Digest::of_bytes(b"another image");
    for (payload, want) in [
        (
            simple_signing(REPO, &other.to_string()),
            format!("it signs {other}, not {}", subject()),
        ),
        (
            simple_signing(REPO, "sha256:not-a-digest"),
            "it signs sha256:not-a-digest".into(),
        ),
        (
            simple_signing("registry.test/team/other", &subject().to_string()),
            "it names registry.test/team/other".into(),
        ),
        (
            simple_signing("%%% not a reference", &subject().to_string()),
            "it names %%% not a reference".into(),
        ),
    ] {
        let sig = b64(&der_sig(&key, &payload));
        let m = refusal(policy.check(
            &image(),
            &subject(),
            &[cosign_artifact(&[(payload, Some(sig))])],
        ));
        has(&m, &want);
    }
}

#[test]

fn check_refusal_of_a_huge_claim_is_a_bounded_message() {
    let dir = tempfile::tempdir().unwrap();
    let key = signing_key("cosign");
    let policy = cosign_policy(dir.path(), &key, json!({"type": "matchRepository"}));
    let huge = "a".repeat(200 * 1024);
    for payload in [
        simple_signing(&huge, &subject().to_string()),
        simple_signing(REPO, &format!("sha256:{huge}")),
    ] {
        let sig = b64(&der_sig(&key, &payload));
        let m = refusal(policy.check(
            &image(),
            &subject(),
            &[cosign_artifact(&[(payload, Some(sig))])],
        ));
        assert!(m.len() < 4096, "a refusal of {} bytes", m.len());
    }
}

#[test]
fn check_of_unsupported_or_reject_requirements_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let doc = json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {
            REPO: [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/nonexistent"}],
            "registry.test/keyless": [{"type": "sigstoreSigned", "fulcio": {}, "rekorPublicKeyPath": "x"}],
            "registry.test/rekor": [{"type": "sigstoreSigned", "keyPath": "/nonexistent", "rekorPublicKeyData": "x"}]
        }}
    });
    let policy = Policy::load(&write_policy(dir.path(), &doc.to_string())).unwrap();
    let m = refusal(policy.check(&image(), &subject(), &[]));
    has(&m, "signedBy (GPG simple signing) is not supported");
    for (repo, want) in [
        (
            "registry.test/keyless/app",
            "sigstoreSigned with \"fulcio\"",
        ),
        ("registry.test/rekor/app", "rekorPublicKey"),
        ("elsewhere.test/app", "the scope rejects every image"),
    ] {
        let r = Reference::parse(&format!("{repo}@{}", subject())).unwrap();
        match policy.check(&r, &subject(), &[]) {
            Err(Error::PolicyRefused { reason, .. }) => has(&reason, want),
            other => panic!("{repo}: {other:?}"),
        }
    }
}
