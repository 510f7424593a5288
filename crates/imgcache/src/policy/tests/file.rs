//! `policy.json` files: caps, shapes, keys and trust stores.

use super::*;

fn policy_error(path: &Path) -> String {
    match Policy::load(path) {
        Err(Error::Policy { path: p, message }) => {
            assert_eq!(p, path);
            message
        }
        Err(e) => panic!("expected Error::Policy, got {e:?}"),
        Ok(_) => panic!("{} loaded", path.display()),
    }
}

#[test]
fn policy_file_over_the_1_mib_cap_is_refused_unread_and_one_at_the_cap_loads() {
    let dir = tempfile::tempdir().unwrap();
    let doc = r#"{"default": [{"type": "insecureAcceptAnything"}]}"#;
    let cap = 1024 * 1024;
    // Exactly at the cap (whitespace padding): loads.
    let at_cap = format!("{doc}{}", " ".repeat(cap - doc.len()));
    let path = write_policy(dir.path(), &at_cap);
    Policy::load(&path).expect("a policy of exactly 1 MiB loads");
    // One byte more: refused, whatever it holds.
    let over = format!("{at_cap} ");
    let path = write_policy(dir.path(), &over);
    has(&policy_error(&path), "larger than 1048576 bytes");
    // 64 MiB of garbage: the same refusal (from its size, it is not parsed).
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(64 << 20).unwrap();
    has(&policy_error(&path), "larger than 1048576 bytes");
}

#[test]

fn policy_file_that_is_a_fifo_of_2_mib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("policy.json");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            let _ = f.write_all(br#"{"default": [{"type": "insecureAcceptAnything"}]}"#);
            for _ in 0..(2 << 10) {
                if f.write_all(&[b' '; 1024]).is_err() {
                    break;
                }
            }
        })
    };
    let r = Policy::load(&fifo);
    // Unblock the writer if the loader stopped reading early (non-blocking: no writer left
    // when it read everything).
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        const O_NONBLOCK: i32 = 0o4000;
        drop(
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(O_NONBLOCK)
                .open(&fifo),
        );
    }
    writer.join().unwrap();
    match r {
        Err(Error::Policy { message, .. }) => has(&message, "larger than 1048576 bytes"),
        Err(e) => panic!("expected Error::Policy, got {e:?}"),
        Ok(_) => panic!("a FIFO of 2 MiB loaded as a policy"),
    }
}

#[test]
fn policy_unknown_requirement_types_and_bad_shapes_are_refused_naming_the_scope() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"{"default": [{"type": "signedByKeyless"}]}"#,
            "default: unknown requirement type \"signedByKeyless\"",
        ),
        (
            r#"{"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": {"registry.test/team": [{"type": "InsecureAcceptAnything"}]}}}"#,
            "transports.docker[\"registry.test/team\"]: unknown requirement type \"InsecureAcceptAnything\"",
        ),
        (
            r#"{"default": [{"type": 5}]}"#,
            "default: a requirement without \"type\"",
        ),
        (
            r#"{"default": [{}]}"#,
            "default: a requirement without \"type\"",
        ),
        (
            r#"{"default": ["reject"]}"#,
            "default: a requirement must be an object",
        ),
        (
            r#"{"default": []}"#,
            "default: an empty list of requirements",
        ),
        (r#"{"transports": {}}"#, "missing field `default`"),
        (r#"{"default": {"type": "reject"}}"#, "invalid type: map"),
        (r#"[]"#, "invalid length 0, expected struct RawPolicy"),
        ("", "EOF"),
        ("\u{feff}{\"default\": []}", "expected value"),
        (
            r#"{"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": {"x": {"type": "reject"}}}}"#,
            "invalid type: map",
        ),
        (
            r#"{"default": [{"type": "sigstoreSigned", "keyData": "Zm9v", "signedIdentity": {"type": "matchEverything"}}]}"#,
            "default: keyData #1: not an ECDSA P-256 or P-384 public key",
        ),
    ];
    for (doc, want) in cases {
        let path = write_policy(dir.path(), doc);
        has(&policy_error(&path), want);
    }
    let nested = format!(
        "{{\"default\": {}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    has(
        &policy_error(&write_policy(dir.path(), &nested)),
        "recursion limit exceeded",
    );
}

#[test]
fn policy_sigstore_requirement_with_bad_keys_or_identity_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pem = public_pem(&signing_key("cosign"));
    std::fs::write(dir.path().join("cosign.pub"), &pem).unwrap();
    std::fs::write(dir.path().join("garbage.pub"), b"\xff\xfe not a key").unwrap();
    let private = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIAqJf1bzTnxOFReKLK7LEkmOIVsgzIniaxE=\n-----END EC PRIVATE KEY-----\n";
    std::fs::write(dir.path().join("cosign.key"), private).unwrap();
    let req = |r: Value| json!({"default": [r]}).to_string();
    let cases = [
        (
            req(json!({"type": "sigstoreSigned"})),
            "sigstoreSigned needs keyPath",
        ),
        (
            req(json!({"type": "sigstoreSigned", "keyPath": "missing.pub"})),
            "missing.pub: No such file",
        ),
        (
            req(json!({"type": "sigstoreSigned", "keyPath": "garbage.pub"})),
            "garbage.pub: not a PEM file",
        ),
        (
            req(json!({"type": "sigstoreSigned", "keyPath": "cosign.key"})),
            "this is a private key",
        ),
        (
            req(json!({"type": "sigstoreSigned", "keyData": b64(private.as_bytes())})),
            "keyData #1: this is a private key",
        ),
        (
            req(json!({"type": "sigstoreSigned", "keyDatas": [b64(pem.as_bytes()), "@@@"]})),
            "keyData #2: not base64",
        ),
        (
            req(
                json!({"type": "sigstoreSigned", "keyData": b64(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")}),
            ),
            "keyData #1: not an ECDSA P-256 or P-384 public key",
        ),
        (
            req(
                json!({"type": "sigstoreSigned", "keyPath": "cosign.pub", "signedIdentity": {"type": "matchEverything"}}),
            ),
            "unknown signedIdentity type Some(\"matchEverything\")",
        ),
        (
            req(
                json!({"type": "sigstoreSigned", "keyPath": "cosign.pub", "signedIdentity": "matchRepository"}),
            ),
            "unknown signedIdentity type None",
        ),
        (
            req(
                json!({"type": "sigstoreSigned", "keyPath": "cosign.pub", "signedIdentity": {"type": "exactReference"}}),
            ),
            "signedIdentity needs \"dockerReference\"",
        ),
        (
            req(
                json!({"type": "sigstoreSigned", "keyPath": "cosign.pub", "signedIdentity": {"type": "remapIdentity", "prefix": "a"}}),
            ),
            "signedIdentity needs \"signedPrefix\"",
        ),
        (
            req(json!({"type": "notationSigned"})),
            "notationSigned needs trustStore",
        ),
        (
            req(json!({"type": "notationSigned", "trustStore": "nothing-here"})),
            "nothing-here: No such file",
        ),
    ];
    for (doc, want) in cases {
        let path = write_policy(dir.path(), &doc);
        let m = policy_error(&path);
        has(&m, want);
        assert!(!m.contains("MHcCAQEE"), "a private key in a message: {m}");
    }
    // A PEM certificate whose body is not base64.
    std::fs::write(
        dir.path().join("bad.pem"),
        "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let m = policy_error(&write_policy(
        dir.path(),
        &req(json!({"type": "notationSigned", "trustStore": "bad.pem"})),
    ));
    has(&m, "not a PEM certificate");
    // An empty directory.
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let m = policy_error(&write_policy(
        dir.path(),
        &req(json!({"type": "notationSigned", "trustStore": "empty"})),
    ));
    has(&m, "notationSigned: no certificate in empty");
}

#[test]
fn policy_trust_store_of_garbage_der_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), b"\x30\x03garbage").unwrap();
    let doc = json!({"default": [{"type": "notationSigned", "trustStore": "ca.crt"}]}).to_string();
    has(&policy_error(&write_policy(dir.path(), &doc)), "ca.crt");
}

#[test]
fn policy_trusted_identity_without_c_st_and_o_is_refused_as_notation_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ca.pem"),
        super::notation_input::SIGNER_CERT,
    )
    .unwrap();
    let doc = |identity: &str| {
        json!({"default": [{"type": "notationSigned", "trustStore": "ca.pem",
                            "trustedIdentities": [identity]}]})
        .to_string()
    };
    let m = policy_error(&write_policy(
        dir.path(),
        &doc("x509.subject: C=US, O=X, CN=y"),
    ));
    has(&m, "has no ST=");
    let m = policy_error(&write_policy(dir.path(), &doc("CN=y")));
    has(&m, "neither");
    Policy::load(&write_policy(
        dir.path(),
        &doc("x509.subject: C=US, ST=WA, O=X"),
    ))
    .unwrap();
}
