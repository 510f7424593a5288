//! More signature cases with the real signing tools against a loopback registry: a signature
//! of another digest, a tag moved after signing, several signatures of which one is trusted,
//! a cosign 3 bundle under the wrong key, expired notation certificates and signatures. In
//! each, imgcache and the tool's own verify (`cosign verify --key`, `notation verify`) agree,
//! a refusal exits 1 naming the reference, the policy scope and why, and a refused signature
//! never reaches the cache.

use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// `from` (a tag of the plain test registry) copied to `name:tag` of `reg`, digests kept.
fn image(reg: &PrivateRegistry, name: &str, tag: &str, from: &str) -> Manifest {
    let to = format!("{name}:{tag}");
    copy_between_registries(&format!("{}/{from}", registry()), &reg.reference(&to));
    Manifest::of(&reg.addr, &to)
}

/// busybox:v1-oci as `NAME:v1` in a registry of the test's own, and the sandbox to pull it.
struct Case {
    sb: Sandbox,
    /// Kept until the test ends (dropping it stops the registry).
    _reg: PrivateRegistry,
    m: Manifest,
    /// `HOST:PORT/NAME`
    repository: String,
    /// `HOST:PORT/NAME@DIGEST`
    pinned: String,
}

impl Case {
    fn new(what: &str) -> Self {
        let reg = PrivateRegistry::start();
        let name = unique_name(what);
        let m = image(&reg, &name, "v1", "busybox:v1-oci");
        let repository = reg.reference(&name);
        let pinned = format!("{repository}@{}", m.digest);
        Case {
            sb: Sandbox::new(),
            _reg: reg,
            m,
            repository,
            pinned,
        }
    }
}

/// `run` is a refusal by the policy: exit 1, naming `reference`, the scope `scope` and each of
/// `reasons`.
fn assert_refused(run: &Run, reference: &str, scope: &str, reasons: &[&str]) {
    assert_eq!(run.code, 1, "{}", run.stderr);
    let expected = [
        format!("{reference}: refused by the policy "),
        format!("(scope transports.docker[\"{scope}\"])"),
    ];
    for part in expected
        .iter()
        .map(String::as_str)
        .chain(reasons.iter().copied())
    {
        assert!(
            run.stderr.contains(part),
            "{part:?} not in:\n{}",
            run.stderr
        );
    }
}

/// Nothing at all in the store: neither the image refused nor any signature.
fn assert_nothing_stored(sb: &Sandbox) {
    let blobs = store_blobs(&sb.root);
    assert!(blobs.is_empty(), "stored after a refusal: {blobs:?}");
}

/// `--json status REF --engine podman` (a private podman store, which lacks the image: exit 1).
fn status(sb: &Sandbox, reference: &str) -> Value {
    let mut c = sb.command(&["--json", "status", reference, "--engine", "podman"]);
    sb.with_podman(&mut c);
    let run = output_of(&mut c);
    assert_eq!(
        run.code, 1,
        "status {reference}\n{}\n{}",
        run.stdout, run.stderr
    );
    let doc = run.json();
    assert_eq!(doc["cached"], true, "{doc:#}");
    doc
}

#[test]
fn cosign2_signature_of_another_digest_under_the_sig_tag_is_refused_as_cosign_refuses_it() {
    let sb = Sandbox::new();
    let reg = PrivateRegistry::start();
    let name = unique_name("sig-other-digest");
    let x = image(&reg, &name, "x", "busybox:v1-oci");
    let y = image(&reg, &name, "y", "busybox:v1");
    assert_ne!(x.digest, y.digest);
    let repository = reg.reference(&name);
    let (px, py) = (
        format!("{repository}@{}", x.digest),
        format!("{repository}@{}", y.digest),
    );
    let keys = CosignKeys::generate(cosign2(), sb.dir.path());
    cosign2_sign(&keys, &px);
    copy_cosign2_signature(&repository, &x.digest, &y.digest);
    let of_x = registry_signatures(&repository, &x.digest);
    let of_y = registry_signatures(&repository, &y.digest);
    assert_eq!(of_y.len(), 1, "{of_y:?}");
    assert_eq!(
        of_y[0].manifest, of_x[0].manifest,
        "the same bytes under Y's tag"
    );
    assert!(cosign_verify(cosign2(), &keys.pub_key, &px));
    assert!(!cosign_verify(cosign2(), &keys.pub_key, &py));

    let p = write_policy(
        &sb,
        &repository,
        json!({"type": "sigstoreSigned", "keyPath": keys.pub_key}),
    );
    let run = sb.run(&["pull", "--policy", &p, &py]);
    let mismatch = format!("it signs {}, not {}", x.digest, y.digest);
    assert_refused(
        &run,
        &py,
        &repository,
        &[
            &format!("no cosign signature of {} is acceptable", y.digest),
            &mismatch,
        ],
    );
    assert_nothing_stored(&sb);
    // The signature itself is good: X, which it signs, is accepted under the same policy.
    let doc = sb.json(&["pull", "--policy", &p, &px]);
    assert_eq!(doc["signed_by"][0]["artifact"], of_x[0].manifest, "{doc}");
}

#[test]
fn a_tag_moved_to_another_image_after_signing_is_refused_as_cosign_refuses_it() {
    let sb = Sandbox::new();
    let reg = PrivateRegistry::start();
    let name = unique_name("sig-moved-tag");
    let repository = reg.reference(&name);
    let tagged = format!("{repository}:release");
    let signed = image(&reg, &name, "release", "busybox:v1-oci");
    let keys = CosignKeys::generate(cosign2(), sb.dir.path());
    cosign2_sign(&keys, &format!("{repository}@{}", signed.digest));
    assert!(cosign_verify(cosign2(), &keys.pub_key, &tagged));
    // cosign names the repository without a tag: matchRepository, as for any pull by tag.
    let p = write_policy(
        &sb,
        &repository,
        json!({"type": "sigstoreSigned", "keyPath": keys.pub_key,
               "signedIdentity": {"type": "matchRepository"}}),
    );
    let doc = sb.json(&["pull", "--policy", &p, &tagged]);
    assert_eq!(doc["distribution_digest"], signed.digest, "{doc}");
    assert_eq!(doc["signed_by"][0]["format"], "cosign", "{doc}");
    let kept = store_blobs(&sb.root);

    let moved = image(&reg, &name, "release", "busybox:v1");
    assert_ne!(moved.digest, signed.digest);
    assert!(!cosign_verify(cosign2(), &keys.pub_key, &tagged));
    let why = format!("no cosign signature of {} was found", moved.digest);
    let run = sb.run(&["pull", "--policy", &p, &tagged]);
    assert_refused(&run, &tagged, &repository, &[&why]);
    assert_eq!(store_blobs(&sb.root), kept, "a refused pull stores nothing");
    // The cache still holds the signed image under the tag, with its signature.
    let doc = sb.json(&["verify", "--signatures", "--policy", &p, &tagged]);
    assert_eq!(doc["signers"][0]["format"], "cosign", "{doc}");

    // A cache that never saw the signed image refuses it too, and keeps nothing.
    let fresh = Sandbox::new();
    let p = write_policy(
        &fresh,
        &repository,
        json!({"type": "sigstoreSigned", "keyPath": keys.pub_key,
               "signedIdentity": {"type": "matchRepository"}}),
    );
    let run = fresh.run(&["pull", "--policy", &p, &tagged]);
    assert_refused(&run, &tagged, &repository, &[&why]);
    assert_nothing_stored(&fresh);
}

#[test]
fn cosign2_two_signatures_one_by_the_trusted_key_are_accepted_naming_that_key() {
    let Case {
        sb,
        _reg,
        m,
        repository,
        pinned,
    } = Case::new("sig-two-keys");
    let first = CosignKeys::generate_named(cosign2(), sb.dir.path(), "first");
    let second = CosignKeys::generate_named(cosign2(), sb.dir.path(), "second");
    cosign2_sign(&first, &pinned);
    cosign2_sign(&second, &pinned);
    let sigs = registry_signatures(&repository, &m.digest);
    assert_eq!(sigs.len(), 1, "{sigs:?}");
    assert_eq!(
        sigs[0].layers.len(),
        2,
        "one .sig manifest, a layer per signing: {sigs:?}"
    );
    assert!(cosign_verify(cosign2(), &second.pub_key, &pinned));

    let p = write_policy(
        &sb,
        &repository,
        json!({"type": "sigstoreSigned", "keyPath": second.pub_key}),
    );
    let doc = sb.json(&["pull", "--policy", &p, &pinned]);
    let signers = doc["signed_by"].as_array().unwrap();
    assert_eq!(signers.len(), 1, "{doc}");
    assert_eq!(signers[0]["format"], "cosign", "{doc}");
    assert_eq!(signers[0]["artifact"], sigs[0].manifest, "{doc}");
    let who = signers[0]["signed_by"].as_str().unwrap().to_owned();
    assert!(who.contains(path_str(&second.pub_key)), "{doc}");
    assert!(!who.contains("first"), "{doc}");

    let st = status(&sb, &pinned);
    let kept = st["signatures"].as_array().unwrap();
    assert_eq!(kept.len(), 1, "{st:#}");
    assert_eq!(kept[0]["subject"], m.digest, "{st:#}");
    assert_eq!(kept[0]["artifact"], sigs[0].manifest, "{st:#}");
    assert_eq!(kept[0]["format"], "cosign", "{st:#}");
    assert_eq!(kept[0]["signed_by"], who.as_str(), "{st:#}");
    // The artifact is kept whole (both layers share one payload; the manifest must verify),
    // and judged again offline it still counts for the trusted key only.
    let material = signature_material_in_store(&sb.root);
    assert!(material.contains(&sigs[0].manifest), "{material:?}");
    assert!(
        sigs[0].layers.iter().all(|l| material.contains(l)),
        "{material:?}"
    );
    let doc = sb.json(&["verify", "--signatures", "--policy", &p, &pinned]);
    assert_eq!(doc["signers"][0]["signed_by"], who.as_str(), "{doc}");
    let doc = sb.json(&["fsck", "--deep"]);
    assert_eq!(doc["ok"], true, "{doc}");
}

#[test]
fn notation_two_signatures_one_by_a_certificate_of_the_trust_store_are_accepted_naming_it() {
    let Some(tool) = notation("notation_two_signatures_one_by_a_certificate_of_the_trust_store")
    else {
        return;
    };
    let Case {
        sb,
        _reg,
        m,
        repository,
        pinned,
    } = Case::new("sig-two-certs");
    let home = NotationHome::new(tool, &sb.path("notation"));
    home.generate_test_cert("first.example");
    home.sign(&pinned);
    let second = home.generate_test_cert("second.example");
    home.sign(&pinned);
    let sigs = registry_signatures(&repository, &m.digest);
    assert_eq!(sigs.len(), 2, "two referrers: {sigs:?}");
    assert!(home.verify(&pinned, &["ca:second.example"], &["*"]));

    let p = write_policy(
        &sb,
        &repository,
        json!({"type": "notationSigned", "trustStore": second}),
    );
    let doc = sb.json(&["pull", "--policy", &p, &pinned]);
    let signers = doc["signed_by"].as_array().unwrap();
    assert_eq!(signers.len(), 1, "{doc}");
    assert_eq!(signers[0]["format"], "notation", "{doc}");
    let who = signers[0]["signed_by"].as_str().unwrap().to_owned();
    assert!(who.contains("CN=second.example"), "{doc}");
    let (taken, left): (Vec<_>, Vec<_>) = sigs
        .iter()
        .partition(|s| signers[0]["artifact"] == s.manifest.as_str());
    assert_eq!((taken.len(), left.len()), (1, 1), "{doc}\n{sigs:?}");

    let st = status(&sb, &pinned);
    let kept = st["signatures"].as_array().unwrap();
    assert_eq!(kept.len(), 1, "{st:#}");
    assert_eq!(kept[0]["artifact"], taken[0].manifest, "{st:#}");
    assert_eq!(kept[0]["signed_by"], who.as_str(), "{st:#}");
    // The untrusted signature is not kept: neither its manifest nor its envelope.
    let blobs = store_blobs(&sb.root);
    assert!(blobs.contains(&taken[0].manifest), "{blobs:?}");
    assert!(!blobs.contains(&left[0].manifest), "{blobs:?}");
    assert!(
        left[0].layers.iter().all(|l| !blobs.contains(l)),
        "{blobs:?}"
    );
    let doc = sb.json(&["verify", "--signatures", "--policy", &p, &pinned]);
    assert_eq!(doc["signers"][0]["signed_by"], who.as_str(), "{doc}");
}

#[test]
fn cosign3_bundle_under_a_key_the_policy_does_not_trust_is_refused_as_cosign_refuses_it() {
    let Some(c3) = cosign3("cosign3_bundle_under_a_key_the_policy_does_not_trust") else {
        return;
    };
    let Case {
        sb,
        _reg,
        m,
        repository,
        pinned,
    } = Case::new("sig-bundle-wrong-key");
    let keys = CosignKeys::generate(c3, sb.dir.path());
    let other = CosignKeys::generate_named(c3, sb.dir.path(), "other");
    cosign3_sign(&keys, &pinned);
    assert_eq!(registry_signatures(&repository, &m.digest).len(), 1);
    assert!(cosign_verify(c3, &keys.pub_key, &pinned));
    assert!(!cosign_verify(c3, &other.pub_key, &pinned));

    let p = write_policy(
        &sb,
        &repository,
        json!({"type": "sigstoreSigned", "keyPath": other.pub_key}),
    );
    let run = sb.run(&["pull", "--policy", &p, &pinned]);
    assert_refused(
        &run,
        &pinned,
        &repository,
        &[
            &format!("no cosign signature of {} is acceptable", m.digest),
            "cosign-bundle ",
            "signed with a key the policy does not trust",
        ],
    );
    assert_nothing_stored(&sb);
}

#[test]
fn notation_signature_by_an_expired_certificate_is_refused_as_notation_refuses_it() {
    let Some(tool) = notation("notation_signature_by_an_expired_certificate") else {
        return;
    };
    let Case {
        sb,
        _reg,
        m,
        repository,
        pinned,
    } = Case::new("sig-expired-cert");
    let home = NotationHome::new(tool, &sb.path("notation"));
    // notation signs only while the certificate is valid: sign at once, then wait it out.
    let cert = home.short_lived_cert("short.example", 5);
    home.sign(&pinned);
    cert.wait_expired();
    // No timestamp: notation verifies the certificate at the time of verification.
    assert!(!home.verify(&pinned, &["ca:short.example"], &[&cert.identity]));
    let run =
        output_of(&mut home.command(&["verify", "--insecure-registry", "--verbose", &pinned]));
    assert!(
        run.stderr.contains("validity period"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );

    let p = write_policy(
        &sb,
        &repository,
        json!({"type": "notationSigned", "trustStore": cert.crt,
               "trustedIdentities": [cert.identity]}),
    );
    let run = sb.run(&["pull", "--policy", &p, &pinned]);
    assert_refused(
        &run,
        &pinned,
        &repository,
        &[
            &format!("no notation signature of {} is acceptable", m.digest),
            "expired: the signing certificate",
        ],
    );
    assert_nothing_stored(&sb);
}

#[test]
fn notation_signature_past_its_own_expiry_is_refused_as_notation_refuses_it() {
    let Some(tool) = notation("notation_signature_past_its_own_expiry") else {
        return;
    };
    let Case {
        sb,
        _reg,
        m,
        repository,
        pinned,
    } = Case::new("sig-expired-signature");
    let home = NotationHome::new(tool, &sb.path("notation"));
    let cert = home.generate_test_cert("expiring.example");
    home.sign_with_expiry(&pinned, "2s");
    // The expiry is at most 2 s after sign returned; a second more for whole-second times.
    thread::sleep(Duration::from_secs(3));
    assert!(!home.verify(&pinned, &["ca:expiring.example"], &["*"]));
    let run = home.verify_run(&pinned, &["ca:expiring.example"], &["*"]);
    assert!(run.stderr.contains("expired"), "{}", run.stderr);

    let p = write_policy(
        &sb,
        &repository,
        json!({"type": "notationSigned", "trustStore": cert}),
    );
    let run = sb.run(&["pull", "--policy", &p, &pinned]);
    assert_refused(
        &run,
        &pinned,
        &repository,
        &[
            &format!("no notation signature of {} is acceptable", m.digest),
            "expired: the signature expired at",
        ],
    );
    assert_nothing_stored(&sb);
}
