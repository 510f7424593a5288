//! Bearer tokens against a real registry that checks them: pull and push through Docker's
//! token protocol (a Debian docker-registry in token mode, `token-server.py` as its realm).
//! (token-server.py needs only python3, which scripts/testenv/up.sh installs if missing.)
//! What each token asked for is read from the token server's log; what arrived, from the
//! registry (skopeo with the same credentials).

use serde_json::{Value, json};

use crate::support::*;

/// The config and layers a manifest names.
fn blob_count(manifest: &[u8]) -> usize {
    let doc: Value = serde_json::from_slice(manifest).unwrap();
    1 + doc["layers"].as_array().unwrap().len()
}

/// The scopes of every token request so far, each parameter as sent.
fn scopes_asked(reg: &TokenRegistry) -> Vec<String> {
    reg.token_requests()
        .iter()
        .flat_map(|r| r["scopes"].as_array().unwrap().clone())
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn assert_no_password(r: &Run, ctx: &str) {
    r.assert_shows_none(
        &["testpass".to_owned(), base64(TOKEN_CREDS.as_bytes())],
        ctx,
    );
}

#[test]
fn pull_gets_an_anonymous_token_for_a_public_repository_and_one_with_creds_for_a_private_one() {
    let reg = TokenRegistry::start();
    let origin = Manifest::of(registry(), "busybox:v1");
    let busybox = format!("{}/busybox:v1", registry());
    reg.seed(&busybox, "public/busybox:v1");
    reg.seed(&busybox, "team/busybox:v1");
    let seeded = reg.token_requests().len();

    // Anonymous, public: the registry accepts the anonymous token for pull.
    let sb = Sandbox::new();
    let doc = sb.json(&["pull", &reg.reference("public/busybox:v1")]);
    assert_eq!(doc["distribution_digest"], origin.digest, "{doc:#}");
    let asked = &reg.token_requests()[seeded..];
    assert!(!asked.is_empty(), "no token was asked for");
    for t in asked {
        assert_eq!(t["user"], Value::Null, "{t}");
        assert_eq!(t["status"], 200, "{t}");
        assert_eq!(
            t["scopes"],
            json!(["repository:public/busybox:pull"]),
            "{t}"
        );
        assert!(t["agent"].as_str().unwrap().starts_with("imgcache/"), "{t}");
    }

    // Anonymous, private: the token grants nothing, and the registry says so.
    let r = sb.run(&["pull", &reg.reference("team/busybox:v1")]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("wants credentials for team/busybox"),
        "{}",
        r.stderr
    );
    assert_eq!(sb.refs().len(), 1, "{:?}", sb.refs());

    // With credentials: a token for the account, and the image.
    let before = reg.token_requests().len();
    let r = sb.run(&[
        "--json",
        "pull",
        "--creds",
        TOKEN_CREDS,
        &reg.reference("team/busybox:v1"),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_no_password(&r, "pull --creds");
    assert_eq!(r.json()["image_id"], sb.refs_with_ids_at(&sb.root)[0].1);
    let asked = &reg.token_requests()[before..];
    assert!(
        asked
            .iter()
            .any(|t| t["user"] == "testuser" && t["account"] == "testuser"),
        "{asked:#?}"
    );
    // Wrong password: the token server refuses it, and the message says so.
    let r = Sandbox::new().run(&[
        "pull",
        "--creds",
        "testuser:not-it",
        &reg.reference("team/busybox:v1"),
    ]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("refused the credentials"), "{}", r.stderr);
    assert!(!r.stderr.contains("not-it"), "{}", r.stderr);
    // Every scope went as a parameter of its own.
    assert!(
        scopes_asked(&reg).iter().all(|s| !s.contains(' ')),
        "{:?}",
        scopes_asked(&reg)
    );
}

#[test]
fn push_asks_pull_and_push_and_a_mount_asks_pull_of_the_repository_it_mounts_from() {
    let reg = TokenRegistry::start();
    let origin = Manifest::of(registry(), "busybox:v1");
    reg.seed(&format!("{}/busybox:v1", registry()), "team/busybox:v1");
    let sb = Sandbox::new();
    let source = reg.reference("team/busybox:v1");
    sb.json(&["pull", "--creds", TOKEN_CREDS, &source]);

    // Without credentials: refused, nothing arrives.
    let dest = reg.reference("other/busybox:v1");
    let r = sb.run(&["push", &source, &dest]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(raw_at(&dest, &["--creds", TOKEN_CREDS]).is_none());

    // With them: every blob mounted from the repository it was pulled from.
    let before = reg.token_requests().len();
    let r = sb.run(&["--json", "push", "--creds", TOKEN_CREDS, &source, &dest]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_no_password(&r, "push --creds");
    let doc = r.json();
    assert_eq!(doc["digest"], origin.digest, "{doc:#}");
    assert_eq!(doc["blobs_mounted"], blob_count(&origin.raw), "{doc:#}");
    assert_eq!(
        raw_at(&dest, &["--creds", TOKEN_CREDS]),
        Some(origin.raw.clone())
    );
    let asked: Vec<String> = scopes_asked(&reg).split_off(before);
    assert!(
        asked.contains(&"repository:other/busybox:pull,push".to_owned())
            && asked.contains(&"repository:team/busybox:pull".to_owned()),
        "{asked:?}"
    );
    assert!(asked.iter().all(|s| !s.contains(' ')), "{asked:?}");
    for t in &reg.token_requests()[before..] {
        assert_eq!(t["status"], 200, "{t}");
        let granted = t["granted"].as_array().unwrap();
        assert!(
            granted
                .iter()
                .all(|g| !g["actions"].as_array().unwrap().is_empty()),
            "{t}"
        );
    }

    // To a repository of its own: uploaded, then a second push costs no upload.
    let fresh = reg.reference("fresh/busybox:v1");
    let plain = Sandbox::new();
    let busybox = format!("{}/busybox:v1", registry());
    plain.pull(&busybox);
    let push = || plain.json(&["push", "--creds", TOKEN_CREDS, &busybox, &fresh]);
    let doc = push();
    assert_eq!(doc["digest"], origin.digest, "{doc:#}");
    assert_eq!(doc["blobs_uploaded"], blob_count(&origin.raw), "{doc:#}");
    let again = push();
    assert_eq!(again["blobs_uploaded"], 0, "{again:#}");
    assert_eq!(
        raw_at(&fresh, &["--creds", TOKEN_CREDS]),
        Some(origin.raw.clone())
    );
}
