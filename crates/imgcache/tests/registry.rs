//! The registry client against real registries (distribution): plain http on 127.0.0.1:5000,
//! htpasswd on :5001, TLS with a private CA on :5443, as started by `scripts/testenv/up.sh`
//! (`scripts/test.sh` runs it). Faults (429, 5xx, redirects, tokens) are tested in the library's
//! unit tests against a fake registry.

mod support;

use std::path::{Path, PathBuf};

use imgcache::registry::{
    Credentials, MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST, RegistryClient, RegistryOptions,
};
use imgcache::{Digest, Error, Reference};
use serde_json::Value;
use support::var;

/// `images-<registry>.json`: (ref, platform or "") → the entry.
fn images(registry: &str) -> Vec<Value> {
    let path = Path::new(var("IMGCACHE_TESTENV"))
        .join(format!("images-{}.json", registry.replace(':', "_")));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/test.sh", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    v["images"].as_array().unwrap().clone()
}

/// The first entry for `reference` (e.g. `busybox:v1`), and optionally a platform.
fn image(registry: &str, reference: &str, platform: Option<&str>) -> Value {
    images(registry)
        .into_iter()
        .find(|i| i["ref"] == reference && platform.is_none_or(|p| i["platform"] == p))
        .unwrap_or_else(|| panic!("{reference} not in images-{registry}.json"))
}

fn digest(v: &Value) -> Digest {
    Digest::parse(v.as_str().unwrap()).unwrap()
}

/// No auth files, no certs dirs: nothing from this machine's user leaks into the tests.
fn opts() -> RegistryOptions {
    RegistryOptions {
        max_retries: 1,
        ..RegistryOptions::default()
    }
}

fn client(o: RegistryOptions) -> RegistryClient {
    RegistryClient::new(o).unwrap()
}

fn reference(registry: &str, rest: &str) -> Reference {
    Reference::parse(&format!("{registry}/{rest}")).unwrap()
}

async fn read_all(mut b: imgcache::registry::BlobResponse, stop_after: Option<usize>) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = b.chunk().await.unwrap() {
        out.extend_from_slice(&chunk);
        if stop_after.is_some_and(|n| out.len() >= n) {
            break;
        }
    }
    out
}

#[tokio::test]
async fn manifests_by_tag_of_all_four_types() {
    let reg = var("TEST_REGISTRY");
    let c = client(opts());
    for (tag, digest_field, type_field, media_type) in [
        (
            "busybox:v1",
            "manifestDigest",
            "manifestMediaType",
            MEDIA_TYPE_DOCKER_MANIFEST,
        ),
        (
            "busybox:v1-oci",
            "manifestDigest",
            "manifestMediaType",
            MEDIA_TYPE_OCI_MANIFEST,
        ),
        (
            "multiarch:v1",
            "indexDigest",
            "indexMediaType",
            MEDIA_TYPE_OCI_INDEX,
        ),
        (
            "multiarch:v1-list",
            "indexDigest",
            "indexMediaType",
            MEDIA_TYPE_DOCKER_LIST,
        ),
    ] {
        let want = image(reg, tag, None);
        let got = c.fetch_manifest(&reference(reg, tag)).await.unwrap();
        assert_eq!(got.digest, digest(&want[digest_field]), "{tag}");
        assert_eq!(got.digest, Digest::of_bytes(&got.bytes), "{tag}");
        assert_eq!(got.media_type, media_type, "{tag}");
        assert_eq!(want[type_field], media_type, "{tag}");
        assert_eq!(got.is_index(), digest_field == "indexDigest", "{tag}");
    }
}

#[tokio::test]
async fn manifests_by_digest() {
    let reg = var("TEST_REGISTRY");
    let c = client(opts());
    let arm = image(reg, "multiarch:v1", Some("linux/arm64/v8"));
    let child = digest(&arm["manifestDigest"]);
    let got = c
        .fetch_manifest_by_digest(reg, "multiarch", &child)
        .await
        .unwrap();
    assert_eq!(got.digest, child);
    assert_eq!(got.media_type, MEDIA_TYPE_OCI_MANIFEST);
    let doc: Value = serde_json::from_slice(&got.bytes).unwrap();
    assert_eq!(doc["config"]["digest"], arm["configDigest"]);

    // A reference with a tag and a digest: the digest wins (v1 is the Docker v2 manifest).
    let oci = digest(&image(reg, "busybox:v1-oci", None)["manifestDigest"]);
    let got = c
        .fetch_manifest(&reference(reg, &format!("busybox:v1@{oci}")))
        .await
        .unwrap();
    assert_eq!(got.digest, oci);
    assert_eq!(got.media_type, MEDIA_TYPE_OCI_MANIFEST);
}

#[tokio::test]
async fn digest_of_another_repository_is_not_found() {
    // Pinning busybox:v1 to multiarch's index digest: distribution serves manifests per
    // repository, so this is a 404, never another repository's manifest. (A registry that
    // serves bytes not matching the pinned digest is tested against a fake one: DigestMismatch.)
    let reg = var("TEST_REGISTRY");
    let c = client(opts());
    let index = digest(&image(reg, "multiarch:v1", None)["indexDigest"]);
    let r = reference(reg, &format!("busybox:v1@{index}"));
    let e = c.fetch_manifest(&r).await.unwrap_err();
    assert!(matches!(e, Error::ManifestNotFound { .. }), "{e:?}");
    assert!(e.to_string().contains(&index.to_string()), "{e}");
}

#[tokio::test]
async fn missing_manifests_are_not_found() {
    let reg = var("TEST_REGISTRY");
    let c = client(opts());
    for rest in ["busybox:no-such-tag", "no-such-repo:v1"] {
        let e = c.fetch_manifest(&reference(reg, rest)).await.unwrap_err();
        assert!(matches!(e, Error::ManifestNotFound { .. }), "{rest}: {e:?}");
        assert_eq!(
            e.to_string(),
            format!("{reg}/{rest}: not found in the registry")
        );
    }
}

#[tokio::test]
async fn blobs_whole_and_from_an_offset() {
    let reg = var("TEST_REGISTRY");
    let c = client(opts());
    let img = image(reg, "busybox:v1", None);
    let config = digest(&img["configDigest"]);
    let b = c.fetch_blob(reg, "busybox", &config, 0).await.unwrap();
    assert_eq!(b.offset, 0);
    let bytes = read_all(b, None).await;
    assert_eq!(Digest::of_bytes(&bytes), config);

    let layer = &img["layers"][0];
    let (layer_digest, size) = (digest(&layer["digest"]), layer["size"].as_u64().unwrap());
    let b = c
        .fetch_blob(reg, "busybox", &layer_digest, 0)
        .await
        .unwrap();
    assert_eq!((b.offset, b.length), (0, Some(size)));
    let whole = read_all(b, None).await;
    assert_eq!(whole.len() as u64, size);
    assert_eq!(Digest::of_bytes(&whole), layer_digest);

    // Resume: the first bytes from one request (dropped early), the rest from a Range request.
    let offset = 100_000u64;
    let b = c
        .fetch_blob(reg, "busybox", &layer_digest, 0)
        .await
        .unwrap();
    let mut prefix = read_all(b, Some(offset as usize)).await;
    prefix.truncate(offset as usize);
    let b = c
        .fetch_blob(reg, "busybox", &layer_digest, offset)
        .await
        .unwrap();
    assert_eq!((b.offset, b.length), (offset, Some(size - offset)));
    let rest = read_all(b, None).await;
    prefix.extend_from_slice(&rest);
    assert_eq!(Digest::of_bytes(&prefix), layer_digest);

    let missing = Digest::of_bytes(b"no such blob");
    let e = c.fetch_blob(reg, "busybox", &missing, 0).await.unwrap_err();
    assert!(matches!(e, Error::BlobNotFound { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains(&format!("blob {missing} not found in repository busybox")),
        "{e}"
    );
}

#[tokio::test]
async fn basic_auth_registry() {
    let reg = var("TEST_REGISTRY_AUTH");
    let (user, pass) = (var("TEST_REGISTRY_USER"), var("TEST_REGISTRY_PASS"));
    let r = reference(reg, "busybox:v1");
    let want = digest(&image(reg, "busybox:v1", None)["manifestDigest"]);

    let e = client(opts()).fetch_manifest(&r).await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "registry {reg} wants credentials for busybox: log in with `docker login {reg}` or `podman login {reg}`, or pass --creds USER:PASSWORD"
        )
    );

    let c = client(RegistryOptions {
        creds: Some(Credentials::new(user, pass)),
        ..opts()
    });
    assert_eq!(c.fetch_manifest(&r).await.unwrap().digest, want);
    let config = digest(&image(reg, "busybox:v1", None)["configDigest"]);
    let b = c.fetch_blob(reg, "busybox", &config, 0).await.unwrap();
    assert_eq!(Digest::of_bytes(&read_all(b, None).await), config);

    let e = client(RegistryOptions {
        creds: Some(Credentials::new(user, "wrong-password")),
        ..opts()
    })
    .fetch_manifest(&r)
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Forbidden { status: 401, .. }), "{e:?}");
}

#[tokio::test]
async fn basic_auth_from_auth_files() {
    use base64::Engine as _;
    let reg = var("TEST_REGISTRY_AUTH");
    let (user, pass) = (var("TEST_REGISTRY_USER"), var("TEST_REGISTRY_PASS"));
    let dir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let docker = dir.path().join("config.json");
    std::fs::write(
        &docker,
        format!(r#"{{"auths":{{"https://{reg}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    // --creds wins over the files.
    let podman = dir.path().join("auth.json");
    std::fs::write(
        &podman,
        format!(r#"{{"auths":{{"{reg}":{{"username":"{user}","password":"stale"}}}}}}"#),
    )
    .unwrap();
    let r = reference(reg, "busybox:v1-oci");
    let want = digest(&image(reg, "busybox:v1-oci", None)["manifestDigest"]);
    let c = client(RegistryOptions {
        auth_files: vec![
            dir.path().join("missing.json"),
            docker.clone(),
            podman.clone(),
        ],
        ..opts()
    });
    assert_eq!(c.fetch_manifest(&r).await.unwrap().digest, want);
    let e = client(RegistryOptions {
        auth_files: vec![podman.clone(), docker.clone()],
        ..opts()
    })
    .fetch_manifest(&r)
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Forbidden { .. }), "{e:?}");
    let c = client(RegistryOptions {
        auth_files: vec![podman, docker],
        creds: Some(Credentials::new(user, pass)),
        ..opts()
    });
    assert_eq!(c.fetch_manifest(&r).await.unwrap().digest, want);
}

#[tokio::test]
async fn tls_registry_needs_its_ca() {
    let reg = var("TEST_REGISTRY_TLS");
    let ca = PathBuf::from(var("TEST_REGISTRY_TLS_CA"));
    let r = reference(reg, "multiarch:v1");
    let want = digest(&image(reg, "multiarch:v1", None)["indexDigest"]);

    let e = client(opts()).fetch_manifest(&r).await.unwrap_err();
    eprintln!("{e}");
    assert!(
        matches!(&e, Error::Tls { registry, .. } if registry == reg),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("--ca-cert") && msg.contains(&format!("certs.d/{reg}/ca.crt")),
        "{msg}"
    );

    let c = client(RegistryOptions {
        ca_certs: vec![ca.clone()],
        ..opts()
    });
    assert_eq!(c.fetch_manifest(&r).await.unwrap().digest, want);

    let certs = tempfile::tempdir().unwrap();
    std::fs::create_dir(certs.path().join(reg)).unwrap();
    std::fs::copy(&ca, certs.path().join(reg).join("ca.crt")).unwrap();
    let c = client(RegistryOptions {
        certs_dirs: vec![certs.path().join("nonexistent"), certs.path().to_owned()],
        ..opts()
    });
    assert_eq!(c.fetch_manifest(&r).await.unwrap().digest, want);
    // The CA is trusted for that registry only.
    let e = client(RegistryOptions {
        certs_dirs: vec![certs.path().to_owned()],
        ..opts()
    })
    .fetch_manifest(&reference("localhost:5443", "multiarch:v1"))
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Tls { .. }), "{e:?}");

    let c = client(RegistryOptions {
        insecure: true,
        ..opts()
    });
    assert_eq!(c.fetch_manifest(&r).await.unwrap().digest, want);

    let not_pem = certs.path().join("not-a-cert.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let e = RegistryClient::new(RegistryOptions {
        ca_certs: vec![not_pem],
        ..opts()
    })
    .unwrap_err();
    assert!(e.to_string().contains("not-a-cert.pem"), "{e}");
}

#[tokio::test]
async fn unreachable_registry_names_the_host() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = client(opts())
        .fetch_manifest(&reference(&format!("127.0.0.1:{port}"), "busybox:v1"))
        .await
        .unwrap_err();
    eprintln!("{e}");
    assert!(
        matches!(&e, Error::Registry { registry, .. } if *registry == format!("127.0.0.1:{port}")),
        "{e:?}"
    );
    assert!(e.is_environment());
}

#[tokio::test]
async fn passwords_never_in_errors_or_debug() {
    const MARKER: &str = "pw-MARKER-7f3a9c";
    let auth_reg = var("TEST_REGISTRY_AUTH");
    let user = var("TEST_REGISTRY_USER");
    let creds = Credentials::new(user, MARKER);
    let o = RegistryOptions {
        creds: Some(creds.clone()),
        ..opts()
    };
    let c = client(o.clone());
    let mut texts = vec![
        format!("{creds:?}"),
        format!("{creds}"),
        format!("{o:?}"),
        format!("{o:#?}"),
    ];
    for r in [
        reference(auth_reg, "busybox:v1"),
        reference(var("TEST_REGISTRY_TLS"), "busybox:v1"),
        reference(auth_reg, "no-such-repo:v1"),
    ] {
        let e = c.fetch_manifest(&r).await.unwrap_err();
        texts.push(e.to_string());
        texts.push(format!("{e:?}"));
    }
    let e = c
        .fetch_blob(auth_reg, "busybox", &Digest::of_bytes(b"x"), 5)
        .await
        .unwrap_err();
    texts.push(format!("{e} {e:?}"));
    texts.push(format!("{c:?}"));
    for t in &texts {
        assert!(!t.contains(MARKER), "password in {t}");
    }
    assert!(texts[1].contains(user));
}

#[test]
fn options_from_env_have_the_usual_places() {
    let o = RegistryOptions::from_env();
    assert!(o.certs_dirs.contains(&PathBuf::from("/etc/docker/certs.d")));
    assert!(
        o.certs_dirs
            .contains(&PathBuf::from("/etc/containers/certs.d"))
    );
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        assert!(
            o.certs_dirs
                .contains(&Path::new(&home).join(".docker/certs.d"))
        );
        if std::env::var_os("DOCKER_CONFIG").is_none() {
            assert!(
                o.auth_files
                    .contains(&Path::new(&home).join(".docker/config.json"))
            );
        }
    }
    assert!(o.creds.is_none() && !o.insecure);
}
