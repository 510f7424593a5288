//! Signature policies with the real signing tools: cosign 2.5 (tag scheme), cosign 3.1
//! (bundles behind the referrers tag), notation 1.3 (JWS). imgcache and the tool's own verify
//! must agree on each case, and a refused signature never reaches the cache.

use std::fs;

use serde_json::json;

use crate::support::*;

#[test]
fn cosign2_signature_verifies_and_is_kept_and_a_wrong_key_is_refused_as_cosign_refuses_it() {
    let sb = Sandbox::new();
    let (reg, _, pinned) = private_busybox();
    let keys = CosignKeys::generate(cosign2(), sb.dir.path());
    let other = CosignKeys::generate_named(cosign2(), sb.dir.path(), "other");
    cosign2_sign(&keys, &pinned);
    assert!(cosign_verify(cosign2(), &keys.pub_key, &pinned));
    assert!(!cosign_verify(cosign2(), &other.pub_key, &pinned));

    let scope = format!("{}/busybox", reg.addr);
    let wrong = write_policy(
        &sb,
        &scope,
        json!({"type": "sigstoreSigned", "keyPath": other.pub_key}),
    );
    let run = sb.run(&["pull", "--policy", &wrong, &pinned]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("refused by the policy"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("does not trust"), "{}", run.stderr);
    assert_eq!(
        store_blobs(&sb.root).len(),
        0,
        "nothing stored after a refusal"
    );

    let right = write_policy(
        &sb,
        &scope,
        json!({"type": "sigstoreSigned", "keyPath": keys.pub_key}),
    );
    let doc = sb.json(&["pull", "--policy", &right, &pinned]);
    assert_eq!(doc["signed_by"][0]["format"], "cosign", "{doc}");
    // Offline, from what was kept: load's check and verify --signatures.
    let doc = sb.json(&["verify", "--signatures", "--policy", &right, &pinned]);
    assert_eq!(doc["signers"][0]["format"], "cosign", "{doc}");
    let wrong = write_policy(
        &sb,
        &scope,
        json!({"type": "sigstoreSigned", "keyPath": other.pub_key}),
    );
    let run = sb.run(&["verify", "--signatures", "--policy", &wrong, &pinned]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let doc = sb.json(&["fsck", "--deep"]);
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(
        doc["unreferenced"].as_array().map(Vec::len),
        Some(0),
        "{doc}"
    );
}

#[test]
fn cosign2_identity_of_another_repository_is_refused_by_match_repository() {
    let sb = Sandbox::new();
    let (reg, _, pinned) = private_busybox();
    let keys = CosignKeys::generate(cosign2(), sb.dir.path());
    cosign2_sign_with_identity(&keys, &pinned, &format!("{}/elsewhere", reg.addr));
    let scope = format!("{}/busybox", reg.addr);
    let p = write_policy(
        &sb,
        &scope,
        json!({"type": "sigstoreSigned", "keyPath": keys.pub_key, "signedIdentity": {"type": "matchRepository"}}),
    );
    let run = sb.run(&["pull", "--policy", &p, &pinned]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("elsewhere"), "{}", run.stderr);
}

#[test]
fn an_unsigned_image_is_refused_naming_the_scope_and_a_load_offline_is_refused_too() {
    let sb = Sandbox::new();
    let (reg, _, pinned) = private_busybox();
    let keys = CosignKeys::generate(cosign2(), sb.dir.path());
    let scope = format!("{}/busybox", reg.addr);
    sb.json(&["pull", &pinned]);
    let p = write_policy(
        &sb,
        &scope,
        json!({"type": "sigstoreSigned", "keyPath": keys.pub_key}),
    );
    let run = sb.run(&["pull", "--offline", "--policy", &p, &pinned]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("transports.docker[\"{scope}\"]")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("no cosign signature"), "{}", run.stderr);
}

#[test]
fn cosign3_bundle_verifies_as_cosign_verify_agrees() {
    let Some(c3) = cosign3("cosign3_bundle_verifies_as_cosign_verify_agrees") else {
        return;
    };
    let sb = Sandbox::new();
    let (reg, _, pinned) = private_busybox();
    let keys = CosignKeys::generate(c3, sb.dir.path());
    let other = CosignKeys::generate_named(c3, sb.dir.path(), "other");
    cosign3_sign(&keys, &pinned);
    assert!(cosign_verify(c3, &keys.pub_key, &pinned));
    let scope = format!("{}/busybox", reg.addr);
    let p = write_policy(
        &sb,
        &scope,
        json!({"type": "sigstoreSigned", "keyPath": other.pub_key}),
    );
    assert_eq!(sb.run(&["pull", "--policy", &p, &pinned]).code, 1);
    let p = write_policy(
        &sb,
        &scope,
        json!({"type": "sigstoreSigned", "keyPath": keys.pub_key}),
    );
    let doc = sb.json(&["pull", "--policy", &p, &pinned]);
    assert_eq!(doc["signed_by"][0]["format"], "cosign-bundle", "{doc}");
}

#[test]
fn notation_jws_verifies_against_the_trust_store_and_another_certificate_is_untrusted() {
    let Some(tool) = notation("notation_jws_verifies_against_the_trust_store") else {
        return;
    };
    let sb = Sandbox::new();
    let (reg, _, pinned) = private_busybox();
    let home = NotationHome::new(tool, &sb.dir.path().join("notation"));
    let cert = home.generate_test_cert("signer.example");
    home.sign(&pinned);
    let stranger = NotationHome::new(tool, &sb.dir.path().join("stranger"));
    let stranger_cert = stranger.generate_test_cert("stranger.example");
    let scope = format!("{}/busybox", reg.addr);
    let p = write_policy(
        &sb,
        &scope,
        json!({"type": "notationSigned", "trustStore": stranger_cert}),
    );
    let run = sb.run(&["pull", "--policy", &p, &pinned]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("untrusted signer"), "{}", run.stderr);
    let p = write_policy(
        &sb,
        &scope,
        json!({"type": "notationSigned", "trustStore": cert}),
    );
    let doc = sb.json(&["pull", "--policy", &p, &pinned]);
    assert_eq!(doc["signed_by"][0]["format"], "notation", "{doc}");
    assert!(
        doc["signed_by"][0]["signed_by"]
            .as_str()
            .unwrap()
            .contains("CN=signer.example"),
        "{doc}"
    );
}

#[test]
fn pull_offline_under_a_policy_of_an_image_missing_a_layer_says_not_cached_rather_than_refused() {
    let sb = Sandbox::new();
    let reg = PrivateRegistry::start();
    reg.copy_from_main("busybox:v1-oci");
    let name = format!("{}/busybox:v1-oci", reg.addr);
    sb.json(&["pull", &name]);
    let (largest, _) = sb
        .blob_files_with_sizes()
        .into_iter()
        .max_by_key(|(_, size)| *size)
        .unwrap();
    fs::remove_file(sb.blob_path(&largest)).unwrap();
    let keys = CosignKeys::generate(cosign2(), sb.dir.path());
    let p = write_policy(
        &sb,
        &format!("{}/busybox", reg.addr),
        json!({"type": "sigstoreSigned", "keyPath": keys.pub_key}),
    );
    let run = sb.run(&["pull", "--offline", "--policy", &p, &name]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("is not in the cache"), "{}", run.stderr);
    assert!(!run.stderr.contains("refused"), "{}", run.stderr);
}
