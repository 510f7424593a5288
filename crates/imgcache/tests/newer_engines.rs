//! The engine adapters against the engines users run today, next to the Debian 12 ones of
//! `tests/engine.rs`: dockerd 26 (classic image store), dockerd 28 (containerd image store),
//! containerd 1.7 and containerd 2.1, started by `scripts/testenv/newer-engines.sh up` (part of
//! `scripts/testenv/up.sh`; their sockets and programs are the `NEWER_*` variables of env.sh).
//! A sid component that could not be fetched has `NEWER_SKIP_DOCKERD28` /
//! `NEWER_SKIP_CONTAINERD21` instead: its tests print `SKIP <test>: <reason>` and pass.
//!
//! Images get into the engines the way users put them there: `docker pull`, `docker load`,
//! `ctr images pull`, and the adapter's own `load_with`. The engines are shared (with other
//! test binaries and with people exploring by hand), so every image here is new: a copy of the
//! multiarch:v1 test image whose config (and so image ID) carries a label of its own, pushed to
//! the test registry under a repository of its own. "Not there before" then means something,
//! and the clean-up (a Drop guard: `docker rmi` / `ctr images rm` of the names added, `skopeo
//! delete` of what was pushed) touches nothing of anyone else's.

mod support;

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use imgcache::engine::{Containerd, Docker, Engine, EngineImage, EngineKind};
use imgcache::{Digest, Error, ImageId};
use serde_json::{Value, json};
use support::{engine_message, text_file, var};

/// The label that makes each image here new.
const LABEL: &str = "org.imgcache.newer-engines-test";

fn io_error(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
    Error::Io {
        path: path.into(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// The environment

/// An env.sh variable that may be absent.
fn opt_var(name: &str) -> Option<&'static str> {
    support::env().get(name).map(String::as_str)
}

/// `true` (after printing `SKIP test: reason`) when newer-engines.sh left this engine out.
fn skipped(test: &str, skip_var: &str) -> bool {
    match opt_var(skip_var) {
        Some(why) => {
            eprintln!("SKIP {test}: {why}");
            true
        }
        None => false,
    }
}

/// This machine's platform and the other one of multiarch:v1, as the test image names them.
fn platforms(test: &str) -> Option<(&'static str, &'static str)> {
    match std::env::consts::ARCH {
        "x86_64" => Some(("linux/amd64", "linux/arm64/v8")),
        "aarch64" => Some(("linux/arm64/v8", "linux/amd64")),
        other => {
            eprintln!("SKIP {test}: the test images have no {other} platform");
            None
        }
    }
}

/// This machine's platform for single-platform images (amd64 where the test images have no
/// other).
fn host_platform() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "linux/arm64/v8",
        _ => "linux/amd64",
    }
}

/// Lowercase, unique on this machine: names for what this run creates.
fn unique() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command that must succeed; its stdout.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn id(text: &str) -> ImageId {
    ImageId::parse(text).unwrap()
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

/// Streams a file into the engine through `load_with`, in small writes (as a producer does).
fn load_streamed(engine: &dyn Engine, path: &Path) -> Result<(), Error> {
    let mut f = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    engine.load_with(&mut |w: &mut dyn Write| {
        let mut buf = vec![0u8; 16 << 10];
        loop {
            let n = f.read(&mut buf).map_err(|e| io_error(path, e))?;
            if n == 0 {
                return Ok(());
            }
            w.write_all(&buf[..n])
                .map_err(|e| io_error("<engine>", e))?;
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Images of their own, in the test registry

/// The blobs of multiarch:v1 (`skopeo-oci-archive-index.tar`) and its manifests by platform.
struct Fixture {
    blobs: HashMap<String, Vec<u8>>,
    manifests: HashMap<String, String>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let path = Path::new(var("TEST_FIXTURES")).join("skopeo-oci-archive-index.tar");
        let files = support::regular_files(&path);
        let blobs: HashMap<String, Vec<u8>> = files
            .into_iter()
            .filter_map(|(k, v)| Some((format!("sha256:{}", k.strip_prefix("blobs/sha256/")?), v)))
            .collect();
        let index: Value = serde_json::from_slice(
            &blobs["sha256:cb6d1ac22f5eaae43430bff9cd996eb5bc3867dad218c14c552d5d00587892df"],
        )
        .unwrap();
        let manifests = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let p = &m["platform"];
                let mut name = format!(
                    "{}/{}",
                    p["os"].as_str().unwrap(),
                    p["architecture"].as_str().unwrap()
                );
                if let Some(v) = p["variant"].as_str() {
                    name = format!("{name}/{v}");
                }
                (name, m["digest"].as_str().unwrap().to_owned())
            })
            .collect();
        Fixture { blobs, manifests }
    })
}

/// One platform's manifest of multiarch:v1 with `label` added to its config: a new image.
struct Derived {
    platform: String,
    id: ImageId,
    config: Vec<u8>,
    manifest: Vec<u8>,
    layers: Vec<String>,
}

impl Derived {
    fn new(platform: &str, label: &str) -> Self {
        let f = fixture();
        let manifest_digest = &f.manifests[platform];
        let mut manifest: Value = serde_json::from_slice(&f.blobs[manifest_digest]).unwrap();
        let mut config: Value =
            serde_json::from_slice(&f.blobs[manifest["config"]["digest"].as_str().unwrap()])
                .unwrap();
        config["config"]["Labels"][LABEL] = json!(label);
        let config = serde_json::to_vec(&config).unwrap();
        let id = ImageId::from(Digest::of_bytes(&config));
        manifest["config"]["digest"] = json!(id.to_string());
        manifest["config"]["size"] = json!(config.len());
        let layers = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned())
            .collect();
        Self {
            platform: platform.to_owned(),
            id,
            config,
            manifest: serde_json::to_vec(&manifest).unwrap(),
            layers,
        }
    }

    fn manifest_digest(&self) -> Digest {
        Digest::of_bytes(&self.manifest)
    }

    fn descriptor(&self) -> Value {
        let mut p = self.platform.split('/');
        let mut platform = json!({"os": p.next().unwrap(), "architecture": p.next().unwrap()});
        if let Some(v) = p.next() {
            platform["variant"] = json!(v);
        }
        json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": self.manifest_digest().to_string(),
            "size": self.manifest.len(),
            "platform": platform,
        })
    }
}

/// An OCI archive holding `top` (a manifest or index of `media_type`) and the images.
fn write_oci_archive(path: &Path, top: &[u8], media_type: &str, images: &[&Derived]) {
    let f = fixture();
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": media_type, "digest": Digest::of_bytes(top).to_string(), "size": top.len()}],
    });
    let mut b = tar::Builder::new(File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", &serde_json::to_vec(&index).unwrap());
    let mut blobs: Vec<(Digest, &[u8])> = vec![(Digest::of_bytes(top), top)];
    for i in images {
        blobs.push((i.manifest_digest(), &i.manifest));
        blobs.push((*i.id.digest(), &i.config));
        for l in &i.layers {
            blobs.push((Digest::parse(l).unwrap(), &f.blobs[l]));
        }
    }
    blobs.sort_by_key(|(d, _)| d.to_string());
    blobs.dedup_by_key(|(d, _)| d.to_string());
    for (d, data) in blobs {
        add(&format!("blobs/sha256/{}", d.hex()), data);
    }
    b.into_inner().unwrap();
}

/// Removes from the test registry what a test pushed, also when it fails.
#[derive(Default)]
struct RegistryCleanup(Vec<String>);

impl Drop for RegistryCleanup {
    fn drop(&mut self) {
        for r in &self.0 {
            let _ = Command::new("skopeo")
                .args(["delete", "--tls-verify=false", &format!("docker://{r}")])
                .output();
        }
    }
}

fn registry() -> &'static str {
    var("TEST_REGISTRY")
}

/// `skopeo inspect --raw`: the bytes the registry serves for `reference`.
fn registry_manifest(reference: &str) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{reference}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn skopeo_push(archive: &Path, reference: &str, all: bool, reg: &mut RegistryCleanup) {
    reg.0.push(reference.to_owned());
    let src = format!("oci-archive:{}", archive.display());
    let dst = format!("docker://{reference}");
    let mut args = vec!["copy", "--quiet", "--dest-tls-verify=false"];
    if all {
        args.push("--all");
    }
    args.extend([src.as_str(), dst.as_str()]);
    run("skopeo", &args);
}

/// A new single-platform image (this host's) pushed as `reference`. The registry serves the
/// manifest byte for byte and skopeo sees its config digest as the image ID.
fn push_image(dir: &Path, reference: &str, platform: &str, reg: &mut RegistryCleanup) -> Derived {
    let image = Derived::new(platform, reference);
    let path = dir.join(format!("push-{}.tar", image.id.digest().short()));
    write_oci_archive(
        &path,
        &image.manifest,
        "application/vnd.oci.image.manifest.v1+json",
        &[&image],
    );
    skopeo_push(&path, reference, false, reg);
    let served = registry_manifest(reference);
    assert_eq!(
        Digest::of_bytes(&served),
        image.manifest_digest(),
        "{reference}"
    );
    let m: Value = serde_json::from_slice(&served).unwrap();
    assert_eq!(
        m["config"]["digest"].as_str(),
        Some(image.id.to_string().as_str())
    );
    image
}

/// A new two-platform index (the platforms of multiarch:v1) pushed as `reference`.
struct PushedIndex {
    digest: Digest,
    host: Derived,
    other: Derived,
}

fn push_index(
    dir: &Path,
    reference: &str,
    (host, other): (&str, &str),
    reg: &mut RegistryCleanup,
) -> PushedIndex {
    let host = Derived::new(host, reference);
    let other = Derived::new(other, reference);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [host.descriptor(), other.descriptor()],
    }))
    .unwrap();
    let path = dir.join(format!("push-index-{}.tar", host.id.digest().short()));
    write_oci_archive(
        &path,
        &index,
        "application/vnd.oci.image.index.v1+json",
        &[&host, &other],
    );
    skopeo_push(&path, reference, true, reg);
    let digest = Digest::of_bytes(&index);
    assert_eq!(
        Digest::of_bytes(&registry_manifest(reference)),
        digest,
        "{reference}"
    );
    PushedIndex {
        digest,
        host,
        other,
    }
}

/// `skopeo copy docker://REFERENCE FORMAT:PATH:NAME`: a tarball as users make them.
fn archive_from_registry(reference: &str, format: &str, path: &Path, name: &str) {
    run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("{format}:{}:{name}", path.display()),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Docker

/// Removes the names a test gave images in a dockerd, also when it fails.
struct DockerCleanup {
    host: String,
    refs: Vec<String>,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        if self.refs.is_empty() {
            return;
        }
        let _ = Command::new(var("NEWER_DOCKER_CLI"))
            .args(["--host", &self.host, "rmi", "--force"])
            .args(&self.refs)
            .output();
    }
}

fn docker_cli(host: &str, args: &[&str]) -> String {
    let mut all = vec!["--host", host];
    all.extend(args);
    run(var("NEWER_DOCKER_CLI"), &all)
}

/// `docker image inspect NAME --format {{.Id}}`: what Docker itself calls the image.
fn docker_inspect_id(host: &str, name: &str) -> String {
    docker_cli(host, &["image", "inspect", "--format", "{{.Id}}", name])
        .trim()
        .to_owned()
}

/// A dockerd of newer-engines.sh.
struct Dockerd {
    test: &'static str,
    /// For names in the registry.
    key: &'static str,
    host: &'static str,
    /// The containerd image store: `.Id` is the manifest or index digest there.
    containerd_store: bool,
}

fn assert_image(got: Option<EngineImage>, image: &ImageId, what: &str) -> EngineImage {
    let got = got.unwrap_or_else(|| panic!("{what}: image {image} not found"));
    assert_eq!(got.image_id, *image, "{what}");
    got
}

/// What Docker calls an image: the config digest on the classic store, else the manifest's.
fn expected_docker_id(d: &Dockerd, image: &Derived) -> String {
    if d.containerd_store {
        image.manifest_digest().to_string()
    } else {
        image.id.to_string()
    }
}

/// `docker pull`, `docker load` of a skopeo docker-archive, the adapter's `load_with` of a
/// docker-archive and of an OCI archive, `tag`: the adapter gives the config digest each time.
fn docker_flow(d: &Dockerd) {
    let host = d.host;
    let docker = Docker::new(host);
    assert_eq!(docker.kind(), EngineKind::Docker);
    docker.ping().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let u = unique();
    let repo = format!("{}/imgcache-newer/{}-{u}", registry(), d.key);
    let platform = host_platform();
    let mut reg = RegistryCleanup::default();
    let mut names = DockerCleanup {
        host: host.to_owned(),
        refs: Vec::new(),
    };

    // 1. docker pull
    let pull_ref = format!("{repo}:pull");
    let pulled = push_image(dir.path(), &pull_ref, platform, &mut reg);
    assert_eq!(docker.image(&pulled.id).unwrap(), None, "before the pull");
    assert_eq!(
        docker.image_for_ref(&pull_ref).unwrap(),
        None,
        "before the pull"
    );
    names.refs.push(pull_ref.clone());
    docker_cli(host, &["pull", "--quiet", &pull_ref]);
    let docker_id = docker_inspect_id(host, &pull_ref);
    assert_eq!(docker_id, expected_docker_id(d, &pulled), "docker's .Id");
    if d.containerd_store {
        // What the adapter normalizes: Docker's own ID is not the image ID here.
        assert_ne!(docker_id, pulled.id.to_string());
    }
    let got = assert_image(docker.image(&pulled.id).unwrap(), &pulled.id, "pulled");
    assert_eq!(got.engine_id, docker_id);
    assert!(got.tags.contains(&pull_ref), "{got:?}");
    let by_ref = assert_image(
        docker.image_for_ref(&pull_ref).unwrap(),
        &pulled.id,
        "pulled, by name",
    );
    assert_eq!(by_ref.engine_id, docker_id);
    assert_eq!(docker.image(&same_short_id(&pulled.id)).unwrap(), None);

    // 2. tag
    let tagged = format!("{repo}-tagged:v2");
    names.refs.push(tagged.clone());
    docker.tag(&pulled.id, &tagged).unwrap();
    assert_image(
        docker.image_for_ref(&tagged).unwrap(),
        &pulled.id,
        "after tag",
    );
    assert_eq!(
        docker_inspect_id(host, &tagged),
        docker_id,
        "the same image"
    );
    let tags = docker.image(&pulled.id).unwrap().unwrap().tags;
    assert!(tags.contains(&tagged), "{tags:?}");
    // A Docker Hub name: compared normalized, however it is spelled.
    let hub = format!("imgcache-newer-{}-{u}:v3", d.key);
    names.refs.push(hub.clone());
    docker.tag(&pulled.id, &hub).unwrap();
    for name in [hub.clone(), format!("docker.io/library/{hub}")] {
        assert_image(docker.image_for_ref(&name).unwrap(), &pulled.id, &name);
    }

    // 3. docker load of a skopeo docker-archive under another name
    let src = format!("{repo}:load");
    let loaded = push_image(dir.path(), &src, platform, &mut reg);
    let archive_name = format!("{repo}-archive:v1");
    let tarball = dir.path().join("docker-archive.tar");
    archive_from_registry(&src, "docker-archive", &tarball, &archive_name);
    assert_eq!(
        docker.image(&loaded.id).unwrap(),
        None,
        "before docker load"
    );
    names.refs.push(archive_name.clone());
    docker_cli(
        host,
        &["load", "--quiet", "--input", &tarball.display().to_string()],
    );
    let got = assert_image(docker.image(&loaded.id).unwrap(), &loaded.id, "docker load");
    assert_eq!(got.tags, vec![archive_name.clone()]);
    assert_image(
        docker.image_for_ref(&archive_name).unwrap(),
        &loaded.id,
        "docker load, by name",
    );
    assert_eq!(
        docker.image_for_ref(&src).unwrap(),
        None,
        "only loaded, not pulled"
    );

    // 4. load_with: a docker-archive stream
    let src = format!("{repo}:stream");
    let streamed = push_image(dir.path(), &src, platform, &mut reg);
    let stream_name = format!("{repo}-stream:v1");
    let tarball = dir.path().join("stream.tar");
    archive_from_registry(&src, "docker-archive", &tarball, &stream_name);
    assert_eq!(
        docker.image(&streamed.id).unwrap(),
        None,
        "before load_with"
    );
    names.refs.push(stream_name.clone());
    load_streamed(&docker, &tarball).unwrap();
    let got = assert_image(
        docker.image(&streamed.id).unwrap(),
        &streamed.id,
        "load_with",
    );
    assert_eq!(got.tags, vec![stream_name.clone()]);
    assert_image(
        docker.image_for_ref(&stream_name).unwrap(),
        &streamed.id,
        "load_with, by name",
    );

    // 5. load_with: a plain OCI archive (index.json, no manifest.json). The containerd store
    // loads it; the classic store of dockerd 26 reads it as a pre-1.10 archive and fails.
    let src = format!("{repo}:oci");
    let oci = push_image(dir.path(), &src, platform, &mut reg);
    let oci_name = format!("{repo}-oci:v1");
    let tarball = dir.path().join("oci.tar");
    archive_from_registry(&src, "oci-archive", &tarball, &oci_name);
    assert_eq!(docker.image(&oci.id).unwrap(), None, "before the OCI load");
    names.refs.push(oci_name.clone());
    names.refs.push(oci.id.to_string());
    let r = load_streamed(&docker, &tarball);
    if d.containerd_store {
        r.unwrap();
        let got = assert_image(docker.image(&oci.id).unwrap(), &oci.id, "OCI load_with");
        assert_eq!(got.engine_id, oci.manifest_digest().to_string());
        assert_eq!(got.tags, vec![oci_name.clone()]);
        assert_image(
            docker.image_for_ref(&oci_name).unwrap(),
            &oci.id,
            "OCI load_with, by name",
        );
    } else {
        match r {
            Err(Error::Engine { message, .. }) => {
                assert!(
                    message.contains("blobs/json"),
                    "dockerd's message lost: {message}"
                )
            }
            other => panic!("plain OCI archive into the classic store: {other:?}"),
        }
        assert_eq!(
            docker.image(&oci.id).unwrap(),
            None,
            "after the failed load"
        );
    }

    // 5b. An archive that names no image (skopeo without a name): found by its ID with no
    // tags (dockerd 28 keeps it as `moby-dangling@sha256:...`), then tagged by the adapter.
    let src = format!("{repo}:unnamed");
    let unnamed = push_image(dir.path(), &src, platform, &mut reg);
    let format = if d.containerd_store {
        "oci-archive"
    } else {
        "docker-archive"
    };
    let tarball = dir.path().join("unnamed.tar");
    run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{src}"),
            &format!("{format}:{}", tarball.display()),
        ],
    );
    names.refs.push(expected_docker_id(d, &unnamed));
    load_streamed(&docker, &tarball).unwrap();
    let got = assert_image(docker.image(&unnamed.id).unwrap(), &unnamed.id, "unnamed");
    assert_eq!(got.tags, Vec::<String>::new());
    assert_eq!(got.engine_id, expected_docker_id(d, &unnamed));
    let named = format!("{repo}-named:v1");
    names.refs.push(named.clone());
    docker.tag(&unnamed.id, &named).unwrap();
    assert_image(docker.image_for_ref(&named).unwrap(), &unnamed.id, "named");
    assert_eq!(
        docker.image(&unnamed.id).unwrap().unwrap().tags,
        vec![named.clone()]
    );

    // 6. The same answers through the docker CLI 28 (no API socket client).
    let cli = Docker::new(host)
        .with_program(var("NEWER_DOCKER_CLI"))
        .via_cli();
    cli.ping().unwrap();
    assert_eq!(
        cli.image(&pulled.id)
            .unwrap()
            .map(|i| (i.image_id, i.engine_id)),
        Some((pulled.id, docker_id.clone()))
    );
    assert_image(
        cli.image_for_ref(&tagged).unwrap(),
        &pulled.id,
        "CLI, by name",
    );
    assert_eq!(cli.image(&same_short_id(&pulled.id)).unwrap(), None);
    let src = format!("{repo}:cli");
    let via_cli = push_image(dir.path(), &src, platform, &mut reg);
    let cli_name = format!("{repo}-cli:v1");
    let tarball = dir.path().join("cli.tar");
    archive_from_registry(&src, "docker-archive", &tarball, &cli_name);
    names.refs.push(cli_name.clone());
    load_streamed(&cli, &tarball).unwrap();
    assert_image(
        cli.image_for_ref(&cli_name).unwrap(),
        &via_cli.id,
        "CLI load",
    );
    let cli_tag = format!("{repo}-cli-tagged:v2");
    names.refs.push(cli_tag.clone());
    cli.tag(&via_cli.id, &cli_tag).unwrap();
    assert_image(
        docker.image_for_ref(&cli_tag).unwrap(),
        &via_cli.id,
        "CLI tag",
    );
    // 7. dockerd's own words for a file that is no tarball, through the API and the CLI.
    for engine in [&docker as &dyn Engine, &cli] {
        let msg = engine_message(load_streamed(engine, &text_file(dir.path())));
        assert!(msg.contains("unexpected EOF"), "{engine:?}: {msg}");
    }
}

/// `docker pull` of a two-platform index: only this host's platform is fetched; the adapter
/// finds the image by the host platform's config digest and never by the other one.
fn docker_multi_platform(d: &Dockerd) {
    let Some(plats) = platforms(d.test) else {
        return;
    };
    let host = d.host;
    let docker = Docker::new(host);
    let dir = tempfile::tempdir().unwrap();
    let u = unique();
    let reference = format!("{}/imgcache-newer/{}-{u}:multi", registry(), d.key);
    let mut reg = RegistryCleanup::default();
    let idx = push_index(dir.path(), &reference, plats, &mut reg);
    let _names = DockerCleanup {
        host: host.to_owned(),
        refs: vec![reference.clone()],
    };
    assert_eq!(docker.image(&idx.host.id).unwrap(), None, "before the pull");
    assert_eq!(docker.image_for_ref(&reference).unwrap(), None);
    docker_cli(host, &["pull", "--quiet", &reference]);

    let docker_id = docker_inspect_id(host, &reference);
    if d.containerd_store {
        assert_eq!(docker_id, idx.digest.to_string(), "the index digest");
    } else {
        assert_eq!(
            docker_id,
            idx.host.id.to_string(),
            "the host's config digest"
        );
    }
    let got = assert_image(
        docker.image(&idx.host.id).unwrap(),
        &idx.host.id,
        "host platform",
    );
    assert!(got.tags.contains(&reference), "{got:?}");
    assert_eq!(got.engine_id, docker_id);
    assert_image(
        docker.image_for_ref(&reference).unwrap(),
        &idx.host.id,
        "index, by name",
    );
    assert_eq!(
        docker.image(&idx.other.id).unwrap(),
        None,
        "the other platform was not pulled"
    );
    if d.containerd_store {
        // What containerd holds of the other platform: its manifest at most, never its
        // config or layers.
        let has = |digest: &str| {
            let out = run(
                opt_var("NEWER_CTR21").unwrap_or("ctr"),
                &[
                    "-a",
                    var("NEWER_DOCKERD28_CONTAINERD_ADDRESS"),
                    "-n",
                    var("NEWER_DOCKERD28_NAMESPACE"),
                    "content",
                    "ls",
                    "-q",
                    &format!("digest=={digest}"),
                ],
            );
            out.lines().any(|l| l.trim() == digest)
        };
        eprintln!(
            "{}: other platform's manifest in containerd: {}, its config: {}",
            d.test,
            has(&idx.other.manifest_digest().to_string()),
            has(&idx.other.id.to_string())
        );
        assert!(
            !has(&idx.other.id.to_string()),
            "the other platform's config was fetched"
        );
        assert!(has(&idx.host.id.to_string()));
    }
}

fn dockerd26(test: &'static str) -> Dockerd {
    Dockerd {
        test,
        key: "d26",
        host: var("NEWER_DOCKERD26_HOST"),
        containerd_store: false,
    }
}

/// dockerd 28 with the containerd image store, or `None` (after a SKIP line).
fn dockerd28(test: &'static str) -> Option<Dockerd> {
    if skipped(test, "NEWER_SKIP_DOCKERD28") {
        return None;
    }
    Some(Dockerd {
        test,
        key: "d28",
        host: var("NEWER_DOCKERD28_HOST"),
        containerd_store: true,
    })
}

#[test]
fn dockerd26_classic_store_pull_load_tag() {
    docker_flow(&dockerd26("dockerd26_classic_store_pull_load_tag"));
}

#[test]
fn dockerd26_multi_platform_pull() {
    docker_multi_platform(&dockerd26("dockerd26_multi_platform_pull"));
}

#[test]
fn dockerd28_containerd_store_pull_load_tag() {
    if let Some(d) = dockerd28("dockerd28_containerd_store_pull_load_tag") {
        docker_flow(&d);
    }
}

#[test]
fn dockerd28_multi_platform_pull_has_only_the_host_platform() {
    if let Some(d) = dockerd28("dockerd28_multi_platform_pull_has_only_the_host_platform") {
        docker_multi_platform(&d);
    }
}

// ---------------------------------------------------------------------------------------------
// containerd

/// Removes the image records a test made (and its own namespace), also when it fails.
struct CtrCleanup {
    ctr: String,
    address: String,
    namespace: String,
    refs: Vec<String>,
    remove_namespace: bool,
}

impl Drop for CtrCleanup {
    fn drop(&mut self) {
        let ctr = |args: &[&str]| {
            Command::new(&self.ctr)
                .args(["--address", &self.address, "--namespace", &self.namespace])
                .args(args)
                .output()
        };
        // Every record that resolves to one of ours, including `@sha256:` records.
        if !self.refs.is_empty() {
            let mut args = vec!["images", "rm", "--sync"];
            args.extend(self.refs.iter().map(String::as_str));
            let _ = ctr(&args);
        }
        if self.remove_namespace {
            let _ = Command::new(&self.ctr)
                .args([
                    "--address",
                    &self.address,
                    "namespaces",
                    "rm",
                    &self.namespace,
                ])
                .output();
        }
    }
}

/// A standalone containerd of newer-engines.sh.
struct Ctrd {
    test: &'static str,
    /// For names in the registry.
    key: &'static str,
    ctr: &'static str,
    address: &'static str,
}

fn containerd17(test: &'static str, key: &'static str) -> Ctrd {
    Ctrd {
        test,
        key,
        ctr: var("NEWER_CTR17"),
        address: var("NEWER_CONTAINERD17_ADDRESS"),
    }
}

fn containerd21(test: &'static str, key: &'static str) -> Option<Ctrd> {
    if skipped(test, "NEWER_SKIP_CONTAINERD21") {
        return None;
    }
    Some(Ctrd {
        test,
        key,
        ctr: var("NEWER_CTR21"),
        address: var("NEWER_CONTAINERD21_ADDRESS"),
    })
}

/// `ctr images pull` (as users do), the adapter's `load_with` of a docker-archive and of an
/// OCI archive, `tag`, and an index pulled for this host's platform only; in `namespace`, or
/// in a namespace of its own.
fn containerd_flow(c: &Ctrd, namespace: Option<&str>) {
    let u = unique();
    let own_ns = format!("imgcache-test-{u}");
    let ns = namespace.unwrap_or(&own_ns);
    let ctd = Containerd::new(c.address, ns).with_program(c.ctr);
    assert_eq!(ctd.namespace(), ns);
    ctd.ping().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("{}/imgcache-newer/{}-{u}", registry(), c.key);
    let plats = platforms(c.test);
    let platform = host_platform();
    let mut reg = RegistryCleanup::default();
    let mut names = CtrCleanup {
        ctr: c.ctr.to_owned(),
        address: c.address.to_owned(),
        namespace: ns.to_owned(),
        refs: Vec::new(),
        remove_namespace: namespace.is_none(),
    };
    let ctr = |args: &[&str]| {
        let mut all = vec!["--address", c.address, "--namespace", ns];
        all.extend(args);
        run(c.ctr, &all)
    };

    // 1. ctr images pull
    let pull_ref = format!("{repo}:pull");
    let pulled = push_image(dir.path(), &pull_ref, platform, &mut reg);
    assert_eq!(ctd.image(&pulled.id).unwrap(), None, "before the pull");
    assert_eq!(
        ctd.image_for_ref(&pull_ref).unwrap(),
        None,
        "before the pull"
    );
    names.refs.push(pull_ref.clone());
    ctr(&["images", "pull", "--plain-http", &pull_ref]);
    let got = assert_image(ctd.image(&pulled.id).unwrap(), &pulled.id, "pulled");
    assert_eq!(got.engine_id, pulled.manifest_digest().to_string());
    assert_eq!(got.tags, vec![pull_ref.clone()]);
    let by_ref = assert_image(
        ctd.image_for_ref(&pull_ref).unwrap(),
        &pulled.id,
        "pulled, by name",
    );
    assert_eq!(by_ref.engine_id, got.engine_id);
    assert_eq!(ctd.image(&same_short_id(&pulled.id)).unwrap(), None);

    // 2. tag
    let tagged = format!("{repo}-tagged:v2");
    names.refs.push(tagged.clone());
    ctd.tag(&pulled.id, &tagged).unwrap();
    assert_image(ctd.image_for_ref(&tagged).unwrap(), &pulled.id, "after tag");
    // In `ctr images ls` order: sorted by name.
    let tags = ctd.image(&pulled.id).unwrap().unwrap().tags;
    let mut want = vec![pull_ref.clone(), tagged.clone()];
    want.sort();
    assert_eq!(tags, want);
    // A Docker Hub name: ctr stores it in full, the adapter compares it normalized.
    let hub = format!("imgcache-newer-{}-{u}:v3", c.key);
    names.refs.push(format!("docker.io/library/{hub}"));
    ctd.tag(&pulled.id, &hub).unwrap();
    for name in [hub.clone(), format!("docker.io/library/{hub}")] {
        assert_image(ctd.image_for_ref(&name).unwrap(), &pulled.id, &name);
    }

    // 3. load_with: a docker-archive stream (what `ctr images import` takes)
    let src = format!("{repo}:docker-archive");
    let docker_archive = push_image(dir.path(), &src, platform, &mut reg);
    let name = format!("{repo}-docker-archive:v1");
    let tarball = dir.path().join("docker-archive.tar");
    archive_from_registry(&src, "docker-archive", &tarball, &name);
    assert_eq!(
        ctd.image(&docker_archive.id).unwrap(),
        None,
        "before load_with"
    );
    names.refs.push(name.clone());
    load_streamed(&ctd, &tarball).unwrap();
    let got = assert_image(
        ctd.image(&docker_archive.id).unwrap(),
        &docker_archive.id,
        "docker-archive load_with",
    );
    assert_eq!(got.tags, vec![name.clone()]);
    // ctr synthesizes a manifest for a docker-archive: not the registry's.
    assert_ne!(got.engine_id, docker_archive.manifest_digest().to_string());
    assert_image(
        ctd.image_for_ref(&name).unwrap(),
        &docker_archive.id,
        "docker-archive, by name",
    );

    // 4. load_with: an OCI archive stream
    let src = format!("{repo}:oci");
    let oci = push_image(dir.path(), &src, platform, &mut reg);
    let name = format!("{repo}-oci:v1");
    let tarball = dir.path().join("oci.tar");
    archive_from_registry(&src, "oci-archive", &tarball, &name);
    assert_eq!(ctd.image(&oci.id).unwrap(), None, "before load_with");
    names.refs.push(name.clone());
    load_streamed(&ctd, &tarball).unwrap();
    let got = assert_image(ctd.image(&oci.id).unwrap(), &oci.id, "OCI load_with");
    assert_eq!(got.engine_id, oci.manifest_digest().to_string());
    assert_eq!(got.tags, vec![name.clone()]);
    assert_image(ctd.image_for_ref(&name).unwrap(), &oci.id, "OCI, by name");

    // 5. an index pulled for this host's platform only
    let Some(plats) = plats else {
        return;
    };
    let index_ref = format!("{repo}:multi");
    let idx = push_index(dir.path(), &index_ref, plats, &mut reg);
    assert_eq!(ctd.image(&idx.host.id).unwrap(), None, "before the pull");
    names.refs.push(index_ref.clone());
    ctr(&[
        "images",
        "pull",
        "--plain-http",
        "--platform",
        plats.0,
        &index_ref,
    ]);
    let got = assert_image(
        ctd.image_for_ref(&index_ref).unwrap(),
        &idx.host.id,
        "index, by name",
    );
    assert_eq!(got.engine_id, idx.digest.to_string());
    assert_eq!(got.tags, vec![index_ref.clone()]);
    assert_image(
        ctd.image(&idx.host.id).unwrap(),
        &idx.host.id,
        "host platform",
    );
    assert_eq!(
        ctd.image(&idx.other.id).unwrap(),
        None,
        "not this host's platform"
    );
    // 6. ctr's own words for a file that is no tarball
    let msg = engine_message(load_streamed(&ctd, &text_file(dir.path())));
    assert!(msg.contains("unexpected EOF"), "ctr's message lost: {msg}");
}

#[test]
fn containerd17_k8s_io_pull_load_tag() {
    containerd_flow(
        &containerd17("containerd17_k8s_io_pull_load_tag", "c17-k8s"),
        Some("k8s.io"),
    );
}

#[test]
fn containerd17_other_namespace_pull_load_tag() {
    containerd_flow(
        &containerd17("containerd17_other_namespace_pull_load_tag", "c17-ns"),
        None,
    );
}

#[test]
fn containerd21_k8s_io_pull_load_tag() {
    if let Some(c) = containerd21("containerd21_k8s_io_pull_load_tag", "c21-k8s") {
        containerd_flow(&c, Some("k8s.io"));
    }
}

#[test]
fn containerd21_other_namespace_pull_load_tag() {
    if let Some(c) = containerd21("containerd21_other_namespace_pull_load_tag", "c21-ns") {
        containerd_flow(&c, None);
    }
}

// ---------------------------------------------------------------------------------------------
// Loads whose producer fails

/// A load whose producer fails after it wrote the whole tarball (and waited: the engine had
/// time to finish if it would) leaves nothing in the engine, and the producer's error comes
/// back; so does one that fails halfway. `tarball` holds the image `image` named `name`.
fn failing_producer_leaves_nothing(
    engine: &dyn Engine,
    tarball: &Path,
    image: &ImageId,
    name: &str,
) {
    let bytes = std::fs::read(tarball).unwrap();
    for sent in [bytes.len() / 2, bytes.len()] {
        let mut produce = |w: &mut dyn Write| -> Result<(), Error> {
            w.write_all(&bytes[..sent]).unwrap();
            w.flush().unwrap();
            // A producer that checks something at the end (a digest) before it says "done".
            std::thread::sleep(std::time::Duration::from_secs(3));
            Err(Error::Usage(format!("producer failed after {sent} bytes")))
        };
        match engine.load_with(&mut produce) {
            Err(Error::Usage(m)) => assert!(m.contains("producer failed"), "{m}"),
            other => panic!("{sent} bytes: expected the producer's error, got {other:?}"),
        }
        for _ in 0..10 {
            assert_eq!(
                engine.image(image).unwrap(),
                None,
                "{sent} of {} bytes",
                bytes.len()
            );
            assert_eq!(engine.image_for_ref(name).unwrap(), None, "{sent} bytes");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    // The same bytes, finished: loaded (the aborts above were what kept it out).
    load_streamed(engine, tarball).unwrap();
    assert_image(engine.image(image).unwrap(), image, "complete load");
}

/// A new image as a skopeo docker-archive named `{repo}-abort:v1`.
fn abort_image(dir: &Path, repo: &str, reg: &mut RegistryCleanup) -> (PathBuf, ImageId, String) {
    let src = format!("{repo}:abort");
    let image = push_image(dir, &src, host_platform(), reg);
    let name = format!("{repo}-abort:v1");
    let tarball = dir.join("abort.tar");
    archive_from_registry(&src, "docker-archive", &tarball, &name);
    (tarball, image.id, name)
}

fn docker_failing_producer(d: &Dockerd) {
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("{}/imgcache-newer/{}-abort-{}", registry(), d.key, unique());
    let mut reg = RegistryCleanup::default();
    let (tarball, image, name) = abort_image(dir.path(), &repo, &mut reg);
    let _names = DockerCleanup {
        host: d.host.to_owned(),
        refs: vec![name.clone()],
    };
    failing_producer_leaves_nothing(&Docker::new(d.host), &tarball, &image, &name);
}

fn containerd_failing_producer(c: &Ctrd) {
    let dir = tempfile::tempdir().unwrap();
    let u = unique();
    let repo = format!("{}/imgcache-newer/{}-abort-{u}", registry(), c.key);
    let mut reg = RegistryCleanup::default();
    let (tarball, image, name) = abort_image(dir.path(), &repo, &mut reg);
    let ns = format!("imgcache-test-{u}");
    let _names = CtrCleanup {
        ctr: c.ctr.to_owned(),
        address: c.address.to_owned(),
        namespace: ns.clone(),
        refs: vec![name.clone()],
        remove_namespace: true,
    };
    let ctd = Containerd::new(c.address, ns).with_program(c.ctr);
    failing_producer_leaves_nothing(&ctd, &tarball, &image, &name);
}

#[test]
fn dockerd26_producer_failing_after_its_last_byte_loads_nothing() {
    docker_failing_producer(&dockerd26(
        "dockerd26_producer_failing_after_its_last_byte_loads_nothing",
    ));
}

#[test]
fn dockerd28_producer_failing_after_its_last_byte_loads_nothing() {
    if let Some(d) = dockerd28("dockerd28_producer_failing_after_its_last_byte_loads_nothing") {
        docker_failing_producer(&d);
    }
}

#[test]
fn containerd17_producer_failing_after_its_last_byte_loads_nothing() {
    containerd_failing_producer(&containerd17(
        "containerd17_producer_failing_after_its_last_byte_loads_nothing",
        "c17",
    ));
}

#[test]
fn containerd21_producer_failing_after_its_last_byte_loads_nothing() {
    if let Some(c) = containerd21(
        "containerd21_producer_failing_after_its_last_byte_loads_nothing",
        "c21",
    ) {
        containerd_failing_producer(&c);
    }
}

// ---------------------------------------------------------------------------------------------
// imgcache load: pull into a cache, save (combined layout), stream into the engine, confirm

/// `Cache::load` of a new single-platform image and of a new two-platform index (the cache
/// pulls this host's platform): loaded once with the image ID the registry gives, then
/// already present, as `again` (the same engine, or one that cannot run `ctr`) tells;
/// `names` collects what to remove from the engine.
fn cache_load(
    test: &str,
    key: &str,
    engine: &dyn Engine,
    again: &dyn Engine,
    names: &mut Vec<String>,
) {
    use imgcache::cache::{LoadAction, PullOptions};
    let Some(plats) = platforms(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("{}/imgcache-newer/{key}-load-{}", registry(), unique());
    let mut reg = RegistryCleanup::default();
    let single = push_image(dir.path(), &format!("{repo}:single"), plats.0, &mut reg);
    let idx = push_index(dir.path(), &format!("{repo}:index"), plats, &mut reg);
    let cache = imgcache::Cache::open(&dir.path().join("cache")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    for (reference, id) in [
        (format!("{repo}:single"), single.id),
        (format!("{repo}:index"), idx.host.id),
    ] {
        names.push(reference.clone());
        assert_eq!(engine.image(&id).unwrap(), None, "{reference} before");
        let opts = PullOptions::default();
        let r = rt
            .block_on(cache.load(&reference, engine, &opts))
            .unwrap_or_else(|e| panic!("{test}: load {reference}: {e}"));
        assert_eq!(
            (r.action, r.image_id, r.pulled),
            (LoadAction::Loaded, id, true),
            "{reference}"
        );
        let got = assert_image(engine.image(&id).unwrap(), &id, &reference);
        assert_eq!(got.engine_id, r.engine_id);
        assert_image(engine.image_for_ref(&reference).unwrap(), &id, &reference);
        let again = rt
            .block_on(cache.load(&reference, again, &opts))
            .unwrap_or_else(|e| panic!("{test}: load {reference} again: {e}"));
        assert_eq!(again.action, LoadAction::AlreadyPresent, "{reference}");
        assert_eq!(again.engine_id, r.engine_id, "{reference}");
        eprintln!(
            "{test}: {reference}: image {id}, the engine calls it {}",
            r.engine_id
        );
    }
    assert_eq!(engine.image(&idx.other.id).unwrap(), None);
}

fn docker_cache_load(d: &Dockerd) {
    let mut names = DockerCleanup {
        host: d.host.to_owned(),
        refs: Vec::new(),
    };
    // Already present is told by one API request on both stores (the containerd store of
    // Docker 28 lists the image's manifests): no `ctr` can run for the second load.
    let no_ctr = Docker::new(d.host).with_env("PATH", "/nonexistent");
    cache_load(
        d.test,
        d.key,
        &Docker::new(d.host),
        &no_ctr,
        &mut names.refs,
    );
}

fn containerd_cache_load(c: &Ctrd, namespace: &str) {
    let mut names = CtrCleanup {
        ctr: c.ctr.to_owned(),
        address: c.address.to_owned(),
        namespace: namespace.to_owned(),
        refs: Vec::new(),
        remove_namespace: false,
    };
    let ctd = Containerd::new(c.address, namespace).with_program(c.ctr);
    cache_load(c.test, c.key, &ctd, &ctd, &mut names.refs);
}

#[test]
fn dockerd26_imgcache_load() {
    docker_cache_load(&dockerd26("dockerd26_imgcache_load"));
}

#[test]
fn dockerd28_imgcache_load() {
    if let Some(d) = dockerd28("dockerd28_imgcache_load") {
        docker_cache_load(&d);
    }
}

#[test]
fn containerd17_imgcache_load() {
    containerd_cache_load(&containerd17("containerd17_imgcache_load", "c17"), "k8s.io");
}

#[test]
fn containerd21_imgcache_load() {
    if let Some(c) = containerd21("containerd21_imgcache_load", "c21") {
        containerd_cache_load(&c, "k8s.io");
    }
}

/// The Docker adapter reads the containerd image store with the `ctr` on the PATH: the
/// Debian 12 one (1.6) and containerd 2.1's own give the same answers about dockerd 28.
#[test]
fn dockerd28_containerd_store_read_with_ctr_2_1() {
    let test = "dockerd28_containerd_store_read_with_ctr_2_1";
    let Some(d) = dockerd28(test) else {
        return;
    };
    if skipped(test, "NEWER_SKIP_CONTAINERD21") {
        return;
    }
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(var("NEWER_CTR21"), bin.path().join("ctr")).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let docker = Docker::new(d.host).with_env("PATH", path);
    let dir = tempfile::tempdir().unwrap();
    let reference = format!("{}/imgcache-newer/d28-ctr21-{}:v1", registry(), unique());
    let mut reg = RegistryCleanup::default();
    let platform = host_platform();
    let image = push_image(dir.path(), &reference, platform, &mut reg);
    let _names = DockerCleanup {
        host: d.host.to_owned(),
        refs: vec![reference.clone()],
    };
    assert_eq!(docker.image(&image.id).unwrap(), None);
    docker_cli(d.host, &["pull", "--quiet", &reference]);
    let got = assert_image(docker.image(&image.id).unwrap(), &image.id, "ctr 2.1");
    assert_eq!(got.engine_id, image.manifest_digest().to_string());
    assert_image(
        docker.image_for_ref(&reference).unwrap(),
        &image.id,
        "ctr 2.1, by name",
    );
    assert_eq!(Docker::new(d.host).image(&image.id).unwrap(), Some(got));
}

// ---------------------------------------------------------------------------------------------
// A snapshotter other than the default

/// `Containerd::with_snapshotter` (and `CONTAINERD_SNAPSHOTTER`, which `ctr` reads itself):
/// the image is unpacked into that snapshotter, not the default one. containerd 2.x imports
/// through its transfer service, which unpacks only into the snapshotters of its
/// `unpack_config` (by default the default snapshotter) and otherwise fails with "unable to
/// initialize unpacker: no unpack platforms defined" (containerd issues 11228, 11606).
fn load_into_native_snapshotter(c: &Ctrd) {
    let dir = tempfile::tempdir().unwrap();
    let u = unique();
    let repo = format!("{}/imgcache-newer/{}-native-{u}", registry(), c.key);
    let mut reg = RegistryCleanup::default();
    let ns = format!("imgcache-test-{u}");
    let mut names = CtrCleanup {
        ctr: c.ctr.to_owned(),
        address: c.address.to_owned(),
        namespace: ns.clone(),
        refs: Vec::new(),
        remove_namespace: true,
    };
    let snapshots = |snapshotter: &str| {
        run(
            c.ctr,
            &[
                "--address",
                c.address,
                "--namespace",
                &ns,
                "snapshots",
                "--snapshotter",
                snapshotter,
                "ls",
            ],
        )
        .lines()
        .skip(1)
        .filter(|l| l.contains("Committed"))
        .count()
    };
    let platform = host_platform();
    let by_option = Containerd::new(c.address, &ns)
        .with_program(c.ctr)
        .with_snapshotter("native");
    let by_env = Containerd::new(c.address, &ns)
        .with_program(c.ctr)
        .with_env("CONTAINERD_SNAPSHOTTER", "native");
    for (how, ctd) in [
        ("with_snapshotter", by_option),
        ("CONTAINERD_SNAPSHOTTER", by_env),
    ] {
        let src = format!("{repo}:{}", how.to_ascii_lowercase().replace('_', "-"));
        let image = push_image(dir.path(), &src, platform, &mut reg);
        let name = format!("{src}-archive");
        let tarball = dir.path().join(format!("{how}.tar"));
        archive_from_registry(&src, "docker-archive", &tarball, &name);
        names.refs.push(name.clone());
        load_streamed(&ctd, &tarball).unwrap_or_else(|e| panic!("{how}: {e}"));
        assert_image(ctd.image(&image.id).unwrap(), &image.id, how);
        // The two layers, committed in native; nothing in the default snapshotter.
        assert!(snapshots("native") >= 2, "{how}: not unpacked into native");
        assert_eq!(snapshots(var("NEWER_SNAPSHOTTER")), 0, "{how}");
    }
}

#[test]
fn containerd17_load_into_another_snapshotter() {
    load_into_native_snapshotter(&containerd17(
        "containerd17_load_into_another_snapshotter",
        "c17",
    ));
}

#[test]
fn containerd_2_1_load_into_a_snapshotter_the_transfer_service_does_not_unpack_for() {
    let test = "containerd_2_1_load_into_a_snapshotter_the_transfer_service_does_not_unpack_for";
    if let Some(c) = containerd21(test, "c21") {
        load_into_native_snapshotter(&c);
    }
}
