//! notation's COSE envelope (`notation sign --signature-format cose`) with the real tool:
//! imgcache verifies it as it does JWS, and agrees with `notation verify` on whom it trusts.

use std::fs;

use serde_json::json;

use crate::support::*;

/// The subject `notation cert generate-test cose.example` gives its certificate.
const SUBJECT: &str = "x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=cose.example";

#[test]
fn notation_cose_verifies_against_the_trust_store_and_another_certificate_is_untrusted() {
    let Some(tool) = notation("notation_cose_verifies_against_the_trust_store") else {
        return;
    };
    let sb = Sandbox::new();
    let (reg, _, pinned) = private_busybox();
    let home = NotationHome::new(tool, &sb.dir.path().join("notation"));
    let cert = home.generate_test_cert("cose.example");
    home.sign_cose(&pinned);
    let stranger = NotationHome::new(tool, &sb.dir.path().join("stranger"));
    let stranger_cert = stranger.generate_test_cert("stranger.example");
    // The stranger's certificate as trust store `ca:stranger.example` of the signer's home too.
    home.add_to_trust_store("stranger.example", &stranger_cert);
    let scope = format!("{}/busybox", reg.addr);
    let policy = |trust_store: &std::path::Path| {
        let doc = json!({
            "default": [{"type": "insecureAcceptAnything"}],
            "transports": {"docker": {&scope: [{
                "type": "notationSigned",
                "trustStore": trust_store,
                "trustedIdentities": [SUBJECT],
            }]}}
        });
        let path = sb.dir.path().join("policy.json");
        fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        path.display().to_string()
    };

    // Another certificate: notation and imgcache both refuse, and nothing is stored.
    assert!(!home.verify(&pinned, &["ca:stranger.example"], &[SUBJECT]));
    let run = sb.run(&["pull", "--policy", &policy(&stranger_cert), &pinned]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("untrusted signer"), "{}", run.stderr);
    let blobs = store_blobs(&sb.root);
    assert!(blobs.is_empty(), "stored after a refusal: {blobs:?}");

    // The signer's certificate: both accept, naming its subject.
    assert!(home.verify(&pinned, &["ca:cose.example"], &[SUBJECT]));
    let doc = sb.json(&["pull", "--policy", &policy(&cert), &pinned]);
    assert_eq!(doc["signed_by"][0]["format"], "notation", "{doc}");
    let signer = doc["signed_by"][0]["signed_by"].as_str().unwrap();
    assert!(signer.contains("CN=cose.example"), "{doc}");
    // What was verified and kept is a COSE envelope: a tagged COSE_Sign1 (0xd2 0x84).
    let cose = store_blobs(&sb.root).into_iter().any(|b| {
        let path = sb.root.join("blobs/sha256").join(&b["sha256:".len()..]);
        fs::read(path).is_ok_and(|bytes| bytes.starts_with(&[0xd2, 0x84]))
    });
    assert!(cose, "no COSE envelope in the store");
}
