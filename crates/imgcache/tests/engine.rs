//! The engine adapters against real engines: the test dockerd (20.10, classic image store) of
//! `scripts/testenv/up.sh` (`scripts/test.sh` runs it), Podman on a private store under
//! `TEST_PODMAN_BASE`, and a private containerd started here. CRI-O is not packaged for this
//! machine: its adapter runs against a stand-in `crictl` printing output in crictl's format.
//!
//! The dockerd is shared with other tests: everything loaded into it here has an image ID and
//! names of its own (a copy of the busybox fixture with one label added to its config) and is
//! removed at the end.

mod support;

use std::fs::File;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use imgcache::engine::{Containerd, Crio, Docker, Engine, EngineKind, Podman};
use imgcache::{Digest, Error, ImageId};
use serde_json::{Value, json};
use support::{engine_message, set_mode, text_file, var};

/// The busybox:v1 test image (`skopeo-docker-archive.tar`), amd64.
const BUSYBOX_ID: &str = "sha256:3f22b83bc3fbbd5fb965afd0dc18b64fb9adc4d430119e33b425ab2ce15875d9";
const BUSYBOX_TAG: &str = "127.0.0.1:5000/busybox:v1";
/// multiarch:v1 (`skopeo-oci-archive-index.tar`): the linux/amd64 and linux/arm64/v8 configs.
const MULTIARCH_AMD64: &str =
    "sha256:c4aa72cd663b79ef1d0b5ae3847d3fd2cdf52f726b2fe040ef8ee22e0abfa936";
const MULTIARCH_ARM64: &str =
    "sha256:408fb3453c0ff420f22e82b50238cdd9d4b3ec13aa7b17d9430ad0450f1ad23e";

fn fixture(name: &str) -> PathBuf {
    Path::new(var("TEST_FIXTURES")).join(name)
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/testenv")
}

fn id(text: &str) -> ImageId {
    ImageId::parse(text).unwrap()
}

/// Lowercase, unique within this machine: names for things this run creates.
fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}-{nanos}", std::process::id())
}

/// Same first 12 hex characters (what engines show as a short ID), different image.
fn same_short_id(image: &ImageId) -> ImageId {
    let hex = image.digest().hex();
    let tail: String = hex[12..]
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    id(&format!("sha256:{}{tail}", &hex[..12]))
}

/// Same ID except for its last character.
fn last_char_differs(image: &ImageId) -> ImageId {
    let mut hex = image.digest().hex();
    let last = if hex.ends_with('0') { "1" } else { "0" };
    hex.replace_range(63.., last);
    id(&format!("sha256:{hex}"))
}

fn load_file(engine: &dyn Engine, path: &Path) -> Result<(), Error> {
    let mut f = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    engine.load(&mut f)
}

fn assert_unavailable<T: std::fmt::Debug>(r: Result<T, Error>, path: &Path, hint: &str) {
    match r {
        Err(e @ Error::EngineUnavailable { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&path.display().to_string()),
                "does not name {}: {text}",
                path.display()
            );
            assert!(text.contains(hint), "does not mention {hint}: {text}");
        }
        other => panic!("expected Error::EngineUnavailable, got {other:?}"),
    }
}

/// A copy of the busybox fixture whose config carries one more label: a new image ID (the
/// config bytes hash to it), same layers, named `tag`.
fn derived_image(dir: &Path, tag: &str, label: &str) -> (PathBuf, ImageId) {
    let files = support::regular_files(&fixture("skopeo-docker-archive.tar"));
    let get = |n: &str| {
        files
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{n} missing from the fixture"))
    };
    let manifest: Value = serde_json::from_slice(&get("manifest.json")).unwrap();
    let mut config: Value =
        serde_json::from_slice(&get(manifest[0]["Config"].as_str().unwrap())).unwrap();
    config["config"]["Labels"]["org.imgcache.engine-test"] = json!(label);
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let image_id = ImageId::from(Digest::of_bytes(&config_bytes));
    let config_name = format!("{}.json", image_id.digest().hex());
    let layers: Vec<String> = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect();
    let new_manifest =
        serde_json::to_vec(&json!([{"Config": config_name, "RepoTags": [tag], "Layers": layers}]))
            .unwrap();

    let path = dir.join("derived.tar");
    let mut b = tar::Builder::new(File::create(&path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).unwrap();
    };
    for l in &layers {
        add(l, &get(l));
    }
    add(&config_name, &config_bytes);
    add("manifest.json", &new_manifest);
    b.into_inner().unwrap();
    (path, image_id)
}

/// Removes an image (all its names) from the shared dockerd, also when the test fails.
struct DockerCleanup {
    cli: String,
    host: String,
    image: ImageId,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        let _ = Command::new(&self.cli)
            .args(["--host", &self.host, "rmi", "--force"])
            .arg(self.image.to_string())
            .output();
    }
}

/// Through the Engine API on the socket, then through the CLI that matches the daemon (20.10)
/// and, when it differs, the one on the PATH (a newer client words its errors differently).
#[test]
fn docker_classic_store() {
    let host = var("DOCKER_HOST");
    let cli = var("TEST_DOCKER_CLI");
    docker_flow(Docker::new(host), cli);
    let mut clis = vec![cli.to_owned()];
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("docker"))
            .find(|p| p.is_file())
    });
    if let Some(other) = on_path
        && canonical(&other) != canonical(Path::new(cli))
    {
        clis.push(other.display().to_string());
    }
    for cli in clis {
        docker_flow(Docker::new(host).with_program(&cli).via_cli(), &cli);
    }
}

/// The adapter's whole cycle on a new image; `cli` removes it at the end.
fn docker_flow(docker: Docker, cli: &str) {
    let host = var("DOCKER_HOST");
    assert_eq!(docker.kind(), EngineKind::Docker);
    assert_eq!(docker.endpoint(), host);
    docker.ping().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let u = unique();
    let tag = format!("imgcache.test/engine-docker-{u}:v1");
    let (tarball, image_id) = derived_image(dir.path(), &tag, &u);
    let _cleanup = DockerCleanup {
        cli: cli.to_owned(),
        host: host.to_owned(),
        image: image_id,
    };

    assert_eq!(docker.image(&image_id).unwrap(), None);
    assert_eq!(docker.image_for_ref(&tag).unwrap(), None);
    load_file(&docker, &tarball).unwrap();

    let got = docker.image(&image_id).unwrap().expect("loaded image");
    assert_eq!(got.image_id, image_id);
    assert_eq!(got.engine_id, image_id.to_string());
    assert_eq!(got.tags, vec![tag.clone()]);
    assert_eq!(
        docker.image_for_ref(&tag).unwrap().map(|i| i.image_id),
        Some(image_id)
    );

    // A Docker Hub name: Docker shows it short, the adapter compares it normalized.
    let hub = format!("engine-docker-{u}:v2");
    docker.tag(&image_id, &hub).unwrap();
    for name in [
        hub.clone(),
        format!("docker.io/library/{hub}"),
        format!("index.docker.io/library/{hub}"),
    ] {
        let got = docker.image_for_ref(&name).unwrap();
        assert_eq!(got.map(|i| i.image_id), Some(image_id), "{name}");
    }
    assert!(
        docker
            .image(&image_id)
            .unwrap()
            .unwrap()
            .tags
            .contains(&hub)
    );
    // A registry with a port: the tag is what follows the last ':' after the last '/'.
    let ported = format!("127.0.0.1:5999/imgcache.test/engine-docker-{u}:v3");
    docker.tag(&image_id, &ported).unwrap();
    assert_eq!(
        docker.image_for_ref(&ported).unwrap().map(|i| i.image_id),
        Some(image_id)
    );

    // Whole IDs only: a shared short ID or a last-character difference is another image.
    assert_eq!(docker.image(&same_short_id(&image_id)).unwrap(), None);
    assert_eq!(docker.image(&last_char_differs(&image_id)).unwrap(), None);
    assert_eq!(
        docker.image_for_ref(&image_id.digest().short()).unwrap(),
        None
    );

    let msg = engine_message(load_file(&docker, &text_file(dir.path())));
    assert!(
        msg.contains("unexpected EOF"),
        "{docker:?}: docker's message lost: {msg}"
    );

    let absent = same_short_id(&image_id);
    let msg = engine_message(docker.tag(&absent, "imgcache.test/never:v1"));
    assert!(msg.contains(&absent.to_string()), "{msg}");
}

/// For a unix DOCKER_HOST the adapter runs no program: the whole cycle passes in a copy of
/// this test process whose PATH holds nothing (no `docker`, no `ctr`).
#[test]
fn docker_api_runs_no_program() {
    const CHILD: &str = "IMGCACHE_TEST_EMPTY_PATH";
    if std::env::var_os(CHILD).is_some() {
        assert!(
            Command::new("docker").arg("version").output().is_err(),
            "docker is still on the PATH"
        );
        // Removes the image with the CLI's absolute path, which needs no PATH.
        return docker_flow(Docker::new(var("DOCKER_HOST")), var("TEST_DOCKER_CLI"));
    }
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "docker_api_runs_no_program",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PATH", empty.path())
        .env(CHILD, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

/// A load whose producer fails is abandoned before the end of the request body: dockerd
/// keeps nothing, even when the whole tarball had been sent; the producer's error comes back.
#[test]
fn docker_load_with_failing_producer_leaves_nothing() {
    let host = var("DOCKER_HOST");
    let docker = Docker::new(host);
    let dir = tempfile::tempdir().unwrap();
    let u = unique();
    let tag = format!("imgcache.test/engine-docker-abort-{u}:v1");
    let (tarball, image_id) = derived_image(dir.path(), &tag, &u);
    let _cleanup = DockerCleanup {
        cli: var("TEST_DOCKER_CLI").to_owned(),
        host: host.to_owned(),
        image: image_id,
    };
    let bytes = std::fs::read(&tarball).unwrap();
    for sent in [bytes.len() / 2, bytes.len()] {
        let mut produce = |w: &mut dyn std::io::Write| -> Result<(), Error> {
            w.write_all(&bytes[..sent]).unwrap();
            w.flush().unwrap();
            Err(Error::Usage(format!("producer failed after {sent} bytes")))
        };
        match docker.load_with(&mut produce) {
            Err(Error::Usage(m)) => assert!(m.contains("producer failed"), "{m}"),
            other => panic!("{sent} bytes: expected the producer's error, got {other:?}"),
        }
        // dockerd works on after the connection closed: give it time to (not) register it.
        for _ in 0..15 {
            assert_eq!(docker.image(&image_id).unwrap(), None, "{sent} bytes");
            assert_eq!(docker.image_for_ref(&tag).unwrap(), None, "{sent} bytes");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    // The same bytes, finished: loaded (the aborts above were what kept it out).
    load_file(&docker, &tarball).unwrap();
    assert_eq!(
        docker.image(&image_id).unwrap().map(|i| i.image_id),
        Some(image_id)
    );
}

#[test]
fn docker_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.sock");
    for docker in [
        Docker::new(&format!("unix://{}", dead.display())),
        Docker::new(&format!("unix://{}", dead.display())).via_cli(),
    ] {
        assert_unavailable(docker.ping(), &dead, "DOCKER_HOST");
        assert_unavailable(docker.image(&id(BUSYBOX_ID)), &dead, "DOCKER_HOST");
        assert_unavailable(docker.image_for_ref(BUSYBOX_TAG), &dead, "DOCKER_HOST");
        assert_unavailable(
            load_file(&docker, &fixture("skopeo-docker-archive.tar")),
            &dead,
            "DOCKER_HOST",
        );
    }

    // A stale socket file that nobody listens on.
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let docker = Docker::new(&stale.display().to_string());
    assert_unavailable(docker.ping(), &stale, "DOCKER_HOST");
    assert_unavailable(docker.image(&id(BUSYBOX_ID)), &stale, "DOCKER_HOST");

    // No docker CLI at all: not needed for a unix socket, needed for anything else.
    let no_cli = dir.path().join("no-docker");
    Docker::new(var("DOCKER_HOST"))
        .with_program(&no_cli)
        .ping()
        .unwrap();
    for docker in [
        Docker::new("tcp://127.0.0.1:9").with_program(&no_cli),
        Docker::new(var("DOCKER_HOST"))
            .with_program(&no_cli)
            .via_cli(),
    ] {
        match docker.ping() {
            Err(e @ Error::EngineUnavailable { .. }) => {
                assert!(e.to_string().contains("not installed"), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }
}

/// A private Podman store under `TEST_PODMAN_BASE` (its runroot in a short directory: Podman
/// refuses one longer than 50 characters), removed at the end.
struct PodmanStore {
    dir: PathBuf,
    run: tempfile::TempDir,
}

impl Drop for PodmanStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn podman_private_store() {
    let store = PodmanStore {
        dir: Path::new(var("TEST_PODMAN_BASE")).join(format!("engine-test-{}", unique())),
        run: tempfile::Builder::new()
            .prefix("imgcache-pm-")
            .tempdir_in("/tmp")
            .unwrap(),
    };
    let d = &store.dir;
    std::fs::create_dir_all(d.join("tmp")).unwrap();
    let p = |s: &str| d.join(s).display().to_string();
    let podman = Podman::local([
        "--root".to_owned(),
        p("root"),
        "--runroot".to_owned(),
        store.run.path().display().to_string(),
        "--tmpdir".to_owned(),
        p("tmp"),
        "--storage-driver=vfs".to_owned(),
        "--events-backend=none".to_owned(),
        "--cgroup-manager=cgroupfs".to_owned(),
    ])
    .with_env("TMPDIR", p("tmp"));
    assert_eq!(podman.kind(), EngineKind::Podman);
    assert!(
        podman.endpoint().contains(&p("root")),
        "{}",
        podman.endpoint()
    );
    podman.ping().unwrap();

    let busybox = id(BUSYBOX_ID);
    assert_eq!(podman.image(&busybox).unwrap(), None);
    assert_eq!(podman.image_for_ref(BUSYBOX_TAG).unwrap(), None);
    load_file(&podman, &fixture("skopeo-docker-archive.tar")).unwrap();

    let got = podman.image(&busybox).unwrap().expect("loaded image");
    assert_eq!(got.image_id, busybox);
    assert_eq!(
        got.engine_id,
        busybox.digest().hex(),
        "podman reports bare hex"
    );
    assert_eq!(got.tags, vec![BUSYBOX_TAG.to_owned()]);
    assert_eq!(
        podman
            .image_for_ref(BUSYBOX_TAG)
            .unwrap()
            .map(|i| i.image_id),
        Some(busybox)
    );

    podman.tag(&busybox, "engine-podman:v2").unwrap();
    for name in ["engine-podman:v2", "docker.io/library/engine-podman:v2"] {
        let got = podman.image_for_ref(name).unwrap();
        assert_eq!(got.map(|i| i.image_id), Some(busybox), "{name}");
    }
    let tags = podman.image(&busybox).unwrap().unwrap().tags;
    assert!(
        tags.contains(&"docker.io/library/engine-podman:v2".to_owned()),
        "{tags:?}"
    );

    assert_eq!(podman.image(&same_short_id(&busybox)).unwrap(), None);
    assert_eq!(podman.image(&last_char_differs(&busybox)).unwrap(), None);
    assert_eq!(
        podman.image_for_ref(&busybox.digest().short()).unwrap(),
        None
    );

    let msg = engine_message(load_file(&podman, &text_file(d)));
    assert!(
        msg.contains("payload does not match any of the supported image formats"),
        "podman's message lost: {msg}"
    );
}

#[test]
fn podman_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("podman.sock");
    let podman = Podman::remote(&format!("unix://{}", dead.display()));
    assert_eq!(podman.endpoint(), format!("unix://{}", dead.display()));
    assert_unavailable(podman.ping(), &dead, "CONTAINER_HOST");
    assert_unavailable(
        load_file(&podman, &fixture("skopeo-docker-archive.tar")),
        &dead,
        "CONTAINER_HOST",
    );
}

/// A private containerd (`start-containerd.sh DIR native`), stopped by its PID at the end.
struct PrivateContainerd {
    dir: tempfile::TempDir,
}

impl PrivateContainerd {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("imgcache-ctd-")
            .tempdir_in("/tmp")
            .unwrap();
        let out = Command::new("bash")
            .arg(scripts().join("start-containerd.sh"))
            .arg(dir.path())
            .arg("native")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "start-containerd.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        let d = self.dir.path();
        let _ = Command::new("bash")
            .arg(scripts().join("stop-pidfile.sh"))
            .arg(d.join("containerd.pid"))
            .arg("10")
            .arg(d.join("config.toml"))
            .output();
    }
}

#[test]
fn containerd_private_daemon() {
    let daemon = PrivateContainerd::start();
    let sock = daemon.socket();
    let ctd = Containerd::new(sock.display().to_string(), "k8s.io").with_snapshotter("native");
    assert_eq!(ctd.kind(), EngineKind::Containerd);
    assert!(ctd.endpoint().contains(&sock.display().to_string()));
    assert!(ctd.endpoint().contains("k8s.io"));
    ctd.ping().unwrap();

    let busybox = id(BUSYBOX_ID);
    assert_eq!(ctd.image(&busybox).unwrap(), None);
    assert_eq!(ctd.image_for_ref(BUSYBOX_TAG).unwrap(), None);
    load_file(&ctd, &fixture("skopeo-docker-archive.tar")).unwrap();

    let got = ctd.image(&busybox).unwrap().expect("loaded image");
    assert_eq!(got.image_id, busybox);
    // ctr synthesized a manifest for the docker-archive: its digest is what containerd shows.
    assert!(got.engine_id.starts_with("sha256:"), "{}", got.engine_id);
    assert_ne!(got.engine_id, busybox.to_string());
    assert_eq!(got.tags, vec![BUSYBOX_TAG.to_owned()]);
    let by_ref = ctd.image_for_ref(BUSYBOX_TAG).unwrap().expect("by name");
    assert_eq!(by_ref.image_id, busybox);
    assert_eq!(by_ref.engine_id, got.engine_id);

    ctd.tag(&busybox, "engine-containerd:v2").unwrap();
    for name in [
        "engine-containerd:v2",
        "docker.io/library/engine-containerd:v2",
    ] {
        let got = ctd.image_for_ref(name).unwrap();
        assert_eq!(got.map(|i| i.image_id), Some(busybox), "{name}");
    }
    let tags = ctd.image(&busybox).unwrap().unwrap().tags;
    assert_eq!(
        tags,
        vec![
            BUSYBOX_TAG.to_owned(),
            "docker.io/library/engine-containerd:v2".to_owned()
        ]
    );

    assert_eq!(ctd.image(&same_short_id(&busybox)).unwrap(), None);
    assert_eq!(ctd.image(&last_char_differs(&busybox)).unwrap(), None);
    assert_eq!(ctd.image_for_ref(&busybox.digest().short()).unwrap(), None);

    // An OCI index: the name points at the index; the image is this host's manifest's config.
    load_file(&ctd, &fixture("skopeo-oci-archive-index.tar")).unwrap();
    let (host, other) = match std::env::consts::ARCH {
        "x86_64" => (MULTIARCH_AMD64, MULTIARCH_ARM64),
        "aarch64" => (MULTIARCH_ARM64, MULTIARCH_AMD64),
        _ => return,
    };
    let multi = ctd.image_for_ref("multiarch:v1").unwrap().expect("index");
    assert_eq!(multi.image_id, id(host));
    assert_eq!(multi.tags, vec!["multiarch:v1".to_owned()]);
    assert_eq!(ctd.image(&id(host)).unwrap(), Some(multi));
    assert_eq!(
        ctd.image(&id(other)).unwrap(),
        None,
        "not this host's platform"
    );

    let dir = tempfile::tempdir().unwrap();
    let msg = engine_message(load_file(&ctd, &text_file(dir.path())));
    assert!(msg.contains("unexpected EOF"), "ctr's message lost: {msg}");
}

#[test]
fn containerd_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("containerd.sock");
    let ctd = Containerd::new(dead.display().to_string(), "k8s.io");
    assert_unavailable(ctd.ping(), &dead, "CONTAINERD_ADDRESS");
    assert_unavailable(ctd.image(&id(BUSYBOX_ID)), &dead, "CONTAINERD_NAMESPACE");
    assert_unavailable(
        load_file(&ctd, &fixture("skopeo-docker-archive.tar")),
        &dead,
        "CONTAINERD_ADDRESS",
    );
}

/// `crictl images -o json` on CRI-O 1.28 (protobuf JSON of ListImagesResponse; CRI-O reports
/// the config digest as bare hex). The second image shares busybox's short ID.
const CRIO_IMAGES: &str = r#"{
  "images": [
    {
      "id": "3f22b83bc3fbbd5fb965afd0dc18b64fb9adc4d430119e33b425ab2ce15875d9",
      "repoTags": [
        "127.0.0.1:5000/busybox:v1",
        "docker.io/library/busybox:v1"
      ],
      "repoDigests": [
        "127.0.0.1:5000/busybox@sha256:838bc2b68eaf90a2cfb0007de42282d47003349bd4342c378ab9a7f71f97dcd9"
      ],
      "size": "2152291",
      "uid": null,
      "username": "",
      "spec": null,
      "pinned": false
    },
    {
      "id": "3f22b83bc3fb0000000000000000000000000000000000000000000000000001",
      "repoTags": [
        "quay.io/example/lookalike:1.0"
      ],
      "repoDigests": [],
      "size": "1024",
      "uid": {
        "value": "0"
      },
      "username": "",
      "spec": null,
      "pinned": false
    },
    {
      "id": "e6fc4cf9e8e65011911ba7a4d8b1d04d80eb82e238519045eca5976a6551396d",
      "repoTags": [],
      "repoDigests": [
        "registry.k8s.io/pause@sha256:7031c1b283388d2c2e09b57badb803c05ebed362dc88d84b480cc47f72a21097"
      ],
      "size": "742080",
      "uid": {
        "value": "65535"
      },
      "username": "",
      "spec": {
        "image": "",
        "annotations": {},
        "userSpecifiedImage": "",
        "runtimeHandler": ""
      },
      "pinned": true
    }
  ]
}
"#;

/// The same through containerd's CRI: IDs carry `sha256:`.
const CONTAINERD_CRI_IMAGES: &str = r#"{
  "images": [
    {
      "id": "sha256:3f22b83bc3fbbd5fb965afd0dc18b64fb9adc4d430119e33b425ab2ce15875d9",
      "repoTags": [
        "127.0.0.1:5000/busybox:v1"
      ],
      "repoDigests": [],
      "size": "2152291",
      "uid": null,
      "username": "",
      "spec": null,
      "pinned": false
    }
  ]
}
"#;

/// A stand-in `crictl`: records its arguments, answers `version` and `images --output json`
/// from files beside it, or fails like crictl with no runtime when FAKE_CRICTL_DOWN is set.
fn fake_crictl(dir: &Path, images_json: &str) -> PathBuf {
    std::fs::write(dir.join("images.json"), images_json).unwrap();
    let script = dir.join("crictl");
    std::fs::write(
        &script,
        r#"#!/bin/sh
here="$(dirname "$0")"
printf '%s\n' "$@" >"$here/args"
if [ -n "${FAKE_CRICTL_DOWN:-}" ]; then
  echo 'time="2024-01-01T00:00:00Z" level=fatal msg="validate service connection: validate CRI v1 image API for endpoint \"unix:///var/run/crio/crio.sock\": rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial unix /var/run/crio/crio.sock: connect: connection refused\""' >&2
  exit 1
fi
case " $* " in
  *" version "*) printf 'Version:  0.1.0\nRuntimeName:  cri-o\nRuntimeVersion:  1.28.1\nRuntimeApiVersion:  v1\n' ;;
  *" images --output json "*) cat "$here/images.json" ;;
  *) echo "fake crictl: unexpected arguments: $*" >&2; exit 1 ;;
esac
"#,
    )
    .unwrap();
    set_mode(&script, 0o755);
    script
}

#[test]
fn crio_through_crictl_output() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("crio.sock");
    let _listener = UnixListener::bind(&sock).unwrap();
    let crio =
        Crio::new(&sock.display().to_string()).with_program(fake_crictl(dir.path(), CRIO_IMAGES));
    assert_eq!(crio.kind(), EngineKind::Crio);
    assert_eq!(crio.endpoint(), format!("unix://{}", sock.display()));
    crio.ping().unwrap();
    let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
    assert!(
        args.contains(&format!("--runtime-endpoint\nunix://{}\n", sock.display())),
        "{args}"
    );

    let busybox = id(BUSYBOX_ID);
    let got = crio.image(&busybox).unwrap().expect("listed");
    assert_eq!(got.image_id, busybox);
    assert_eq!(got.engine_id, busybox.digest().hex());
    assert_eq!(got.tags.len(), 2);
    for name in [BUSYBOX_TAG, "busybox:v1", "docker.io/library/busybox:v1"] {
        let got = crio.image_for_ref(name).unwrap();
        assert_eq!(got.map(|i| i.image_id), Some(busybox), "{name}");
    }
    // The untagged pause image is found by ID; the look-alike only by its own whole ID.
    let pause = id("sha256:e6fc4cf9e8e65011911ba7a4d8b1d04d80eb82e238519045eca5976a6551396d");
    assert_eq!(
        crio.image(&pause).unwrap().unwrap().tags,
        Vec::<String>::new()
    );
    let lookalike = id("sha256:3f22b83bc3fb0000000000000000000000000000000000000000000000000001");
    assert_eq!(
        crio.image_for_ref("quay.io/example/lookalike:1.0")
            .unwrap()
            .map(|i| i.image_id),
        Some(lookalike)
    );
    assert_eq!(crio.image(&same_short_id(&busybox)).unwrap(), None);
    assert_eq!(crio.image(&last_char_differs(&busybox)).unwrap(), None);
    assert_eq!(crio.image_for_ref("busybox:v2").unwrap(), None);

    let msg = engine_message(load_file(&crio, &fixture("skopeo-docker-archive.tar")));
    assert!(msg.contains("CRI-O has no image import"), "{msg}");
    assert!(msg.contains("podman"), "{msg}");
    let msg = engine_message(crio.tag(&busybox, "x:y"));
    assert!(msg.contains("podman"), "{msg}");

    // containerd's CRI spells IDs with the prefix.
    let dir2 = tempfile::tempdir().unwrap();
    let cri = Crio::new(&sock.display().to_string())
        .with_program(fake_crictl(dir2.path(), CONTAINERD_CRI_IMAGES));
    let got = cri.image(&busybox).unwrap().expect("listed");
    assert_eq!(got.engine_id, BUSYBOX_ID);

    // crictl failing to reach the runtime is "unavailable", with crictl's words.
    let down = Crio::new(&sock.display().to_string())
        .with_program(fake_crictl(dir.path(), CRIO_IMAGES))
        .with_env("FAKE_CRICTL_DOWN", "1");
    match down.image(&busybox) {
        Err(e @ Error::EngineUnavailable { .. }) => {
            let text = e.to_string();
            assert!(text.contains("connection refused"), "{text}");
            assert!(text.contains("CONTAINER_RUNTIME_ENDPOINT"), "{text}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn crio_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("crio.sock");
    let crio = Crio::new(&dead.display().to_string());
    assert_unavailable(crio.ping(), &dead, "CONTAINER_RUNTIME_ENDPOINT");
    assert_unavailable(
        crio.image(&id(BUSYBOX_ID)),
        &dead,
        "CONTAINER_RUNTIME_ENDPOINT",
    );
}

#[test]
fn explicit_kind_builds_that_engine() {
    for kind in EngineKind::ALL {
        let engine = imgcache::engine::detect(Some(kind)).unwrap();
        assert_eq!(engine.kind(), kind);
    }
}
