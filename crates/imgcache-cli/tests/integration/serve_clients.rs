//! `imgcache serve` with real clients, no mocks: the engines and tools pull from it and check
//! what they get, and these tests compare what they recorded with the origin's bytes and
//! digests (`skopeo inspect --raw` of the origin registry).
//!
//! 1. dockerd 20.10 (classic store): `docker pull SERVE/busybox:v1` and by digest; the image ID
//!    is the cached one, `RepoDigests` the origin's manifest digest.
//! 2. dockerd 28 with the containerd image store: `.Id` and `RepoDigests` are the origin's
//!    manifest digest (busybox:v1) and index digest (multiarch:v1).
//! 3. containerd 1.6, 1.7 and 2.1: `ctr images pull --hosts-dir DIR` with the `hosts.toml` that
//!    `--print-config containerd` printed, the origin registry stopped: the target of the image
//!    record is the origin's digest and `ctr content get` gives its bytes. containerd 2.x also
//!    fetches the configs of every platform of an index ("metadata"): `imgcache pull` stores
//!    them with the child manifests, so that works with the origin stopped too.
//! 4. podman 4.3 with the `registries.conf` of `--print-config podman`, the origin stopped.
//! 5. skopeo: `copy` to `dir:` (skopeo checks every blob digest; `--all` gets the other
//!    platform's blobs pulled through), and `inspect --raw` byte-equal to the origin for a Docker
//!    manifest, an OCI index and a Docker list, in all three path styles (`?ns=` by raw HTTP).
//! 6. Pull-through: an image never cached, fetched by a client, is then in `imgcache ls`; 8
//!    clients asking for another uncached image (an index, `--all`) at once cause exactly one GET
//!    per blob at the origin, and `fsck --deep` is clean.
//! 7. A tag is answered from the cache while the origin is down; `--offline` never contacts the
//!    origin.
//! 8. https with `--tls-cert`/`--tls-key`: skopeo trusting the CA gets the origin's bytes, one
//!    without it is refused.
//!
//! Each test has its own cache (a [`Sandbox`]) and its own `imgcache serve` on a free port,
//! stopped by its PID (SIGTERM, exit 0 asserted); the server logs its accesses
//! (`IMGCACHE_LOG`), printed when a client fails. Tests that stop the origin, or count what it
//! was asked, run a private registry of their own ([`PrivateRegistry`], stopped by PID) and
//! copy the test images into it with skopeo (digests kept). What a test puts into a shared
//! engine is removed by a guard when it ends, by exact name.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use serde_json::{Value, json};

use crate::support::*;

// ---------------------------------------------------------------------------------------------
// Helpers

/// What the server logs: warnings, and one line per request (method, path and query, status).
const SERVER_LOG: &str = "warn,imgcache::serve::access=info";

/// The manifest media types a client accepts (raw HTTP requests).
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The config digest a manifest names.
fn config_digest(manifest: &[u8]) -> String {
    let doc: Value = serde_json::from_slice(manifest).unwrap();
    doc["config"]["digest"].as_str().unwrap().to_owned()
}

/// `imgcache serve` of a sandbox's cache, logging its accesses; a client run that fails stops
/// it and shows what it logged.
struct Server {
    serving: Option<Serving>,
    /// `127.0.0.1:PORT`
    addr: String,
    /// `http://127.0.0.1:PORT`
    url: String,
}

impl Server {
    fn start(sb: &Sandbox, extra: &[&str]) -> Self {
        let serving = Serving::start_with_env(sb, extra, &[("IMGCACHE_LOG", SERVER_LOG)]);
        Server {
            addr: serving.addr.clone(),
            url: serving.url.clone(),
            serving: Some(serving),
        }
    }

    /// `r`, a client's run through this server, must have succeeded; otherwise the server is
    /// stopped and the failure names both sides.
    fn ok(&mut self, r: Run, what: &str) -> Run {
        if r.code != 0 {
            let stderr = match self.serving.take() {
                Some(s) => s.stop().1,
                None => String::new(),
            };
            panic!(
                "{what}: exit {}\nstdout:\n{}\nstderr:\n{}\nimgcache serve stderr:\n{stderr}",
                r.code, r.stdout, r.stderr
            );
        }
        r
    }

    /// SIGTERM: the server exits 0; what it logged.
    fn stop(mut self) -> String {
        let (status, stderr) = self.serving.take().unwrap().stop();
        assert!(
            status.success(),
            "imgcache serve exited {status} after SIGTERM\nstderr:\n{stderr}"
        );
        stderr
    }
}

/// The layer digests a manifest names.
fn layer_digests(manifest: &[u8]) -> Vec<String> {
    let m: Value = serde_json::from_slice(manifest).unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// Regression: the log went to a pipe with terminal colour codes in it, so scripts and files
/// read `\x1b[2m...` around every field.
#[test]
fn the_log_is_plain_text_when_stderr_is_not_a_terminal() {
    let sb = Sandbox::new();
    sb.pull(&format!("{}/busybox:v1", registry()));
    let server = Server::start(&sb, &["--offline"]);
    let probe = Command::new("curl")
        .args([
            "-sf",
            "-o",
            "/dev/null",
            &format!("{}/v2/busybox/manifests/v1", server.url),
        ])
        .status()
        .unwrap();
    assert!(probe.success());
    let log = server.stop();
    assert!(answered(&log, "/v2/busybox/manifests/v1"), "{log}");
    assert!(!log.contains('\x1b'), "colour codes in the log:\n{log:?}");
}

/// The access-log lines of a server's stderr (`GET /v2/... 200`), from `GET` on.
fn accesses(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("imgcache::serve::access"))
        .filter_map(|l| l.find(": ").map(|i| &l[i + 2..]))
        .collect()
}

/// Whether the server answered `GET` or `HEAD` of a path starting with `path` with 200.
fn answered(stderr: &str, path: &str) -> bool {
    accesses(stderr).iter().any(|l| {
        let mut f = l.split(' ');
        let (method, uri, status) = (f.next(), f.next().unwrap_or(""), f.next());
        matches!(method, Some("GET" | "HEAD")) && uri.starts_with(path) && status == Some("200")
    })
}

/// `serve --print-config ENGINE --listen ADDR --registry R... --json`: (path, content) of each
/// file, once the document names the server's URL.
fn print_config(
    sb: &Sandbox,
    engine: &str,
    server: &Server,
    registries: &[&str],
) -> Vec<(String, String)> {
    let mut args = vec!["serve", "--print-config", engine, "--listen", &server.addr];
    for r in registries {
        args.extend(["--registry", r]);
    }
    let doc = sb.json(&args);
    assert_eq!(doc["url"], server.url.as_str(), "{doc:#}");
    doc["files"]
        .as_array()
        .unwrap_or_else(|| panic!("no files: {doc:#}"))
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// One HTTP answer.
struct Http {
    status: u16,
    /// Names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Http {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` at `addr` over plain HTTP/1.1, accepting every manifest type.
fn http_get(addr: &str, path: &str) -> Http {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {ACCEPT}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).unwrap();
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path}: no end of head in {bytes:?}"));
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: bad status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Http {
        status,
        headers,
        body: bytes[split + 4..].to_vec(),
    }
}

/// The `errors[0].code` of an error body.
fn error_code(body: &[u8]) -> String {
    let doc: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    doc["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `skopeo ARGS` of a sandbox (its HOME, no credentials), no signature policy.
fn skopeo(sb: &Sandbox, args: &[&str]) -> Command {
    let mut c = Command::new("skopeo");
    sb.isolate(&mut c);
    c.arg("--insecure-policy").args(args);
    c
}

/// `skopeo copy [--all] docker://SRC dir:DEST` over plain HTTP.
fn copy_to_dir(sb: &Sandbox, src: &str, dest: &Path, all: bool) -> Command {
    let mut args = vec!["copy", "--quiet", "--src-tls-verify=false"];
    if all {
        args.push("--all");
    }
    let (src, dest) = (format!("docker://{src}"), format!("dir:{}", path_str(dest)));
    args.extend([src.as_str(), dest.as_str()]);
    skopeo(sb, &args)
}

/// `skopeo inspect --raw docker://REF` of a sandbox, over plain HTTP.
fn inspect_raw(sb: &Sandbox, reference: &str) -> Run {
    output_of(&mut skopeo(
        sb,
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{reference}"),
        ],
    ))
}

/// What `skopeo copy ... dir:DIR` wrote holds `top` as `manifest.json`, byte for byte, and when
/// `top` is an index, each child as `<hex>.manifest.json`; every config and layer those name is
/// there and hashes to its name. The digests of those blobs.
fn dir_holds(dir: &Path, top: &[u8]) -> BTreeSet<String> {
    let got = fs::read(dir.join("manifest.json")).unwrap();
    assert!(
        got == top,
        "{}: manifest.json is not the origin's bytes:\n{}",
        dir.display(),
        String::from_utf8_lossy(&got)
    );
    let doc: Value = serde_json::from_slice(top).unwrap();
    let manifests: Vec<Vec<u8>> = match doc["manifests"].as_array() {
        Some(children) => children
            .iter()
            .map(|c| {
                let d = c["digest"].as_str().unwrap();
                let file = dir.join(format!("{}.manifest.json", hex(d)));
                let bytes = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                assert_eq!(digest_of(&bytes), d, "{}", file.display());
                bytes
            })
            .collect(),
        None => vec![top.to_vec()],
    };
    let mut blobs = BTreeSet::new();
    for m in &manifests {
        let doc: Value = serde_json::from_slice(m).unwrap();
        blobs.insert(doc["config"]["digest"].as_str().unwrap().to_owned());
        for l in doc["layers"].as_array().unwrap() {
            blobs.insert(l["digest"].as_str().unwrap().to_owned());
        }
    }
    for d in &blobs {
        let file = dir.join(hex(d));
        let data = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(digest_of(&data), *d, "{}", file.display());
    }
    blobs
}

/// The `.Id` (docker) or `.Digest` (podman) `image inspect` gives, by `cli`.
fn inspect_field(cli: impl Fn(&[&str]) -> Run, reference: &str, field: &str) -> String {
    let got = cli(&["image", "inspect", "--format", field, reference])
        .ok(&format!("image inspect {field} {reference}"));
    got.stdout.trim().to_owned()
}

// ---------------------------------------------------------------------------------------------
// Fresh images, in no cache

/// An OCI index of fresh images (amd64 and arm64/v8, two random layers each) pushed as
/// `REGISTRY/repo:v1`.
struct FreshIndex {
    repo: String,
    bytes: Vec<u8>,
    digest: String,
    /// Configs and layers of every platform.
    blobs: BTreeSet<String>,
}

fn push_index(registry: &str, repo: &str) -> FreshIndex {
    let layout = Layout::new();
    let put = |data: &[u8]| layout.put(data);
    let mut blobs = BTreeSet::new();
    let mut children = Vec::new();
    for (arch, variant) in [("amd64", None), ("arm64", Some("v8"))] {
        let layers = [layer(1 << 20), layer(128 << 10)];
        let mut config = json!({
            "architecture": arch,
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Labels": {"test.repo": repo, "test.arch": arch}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids(&layers)},
        });
        let mut platform = json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            config["variant"] = json!(v);
            platform["variant"] = json!(v);
        }
        let config = serde_json::to_vec(&config).unwrap();
        let config_digest = put(&config);
        blobs.insert(config_digest.clone());
        for l in &layers {
            blobs.insert(put(&l.blob));
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": layers.iter().map(|l| json!({
                "mediaType": OCI_LAYER_GZIP, "digest": l.digest, "size": l.blob.len()
            })).collect::<Vec<_>>(),
        }))
        .unwrap();
        children.push(json!({
            "mediaType": OCI_MANIFEST, "digest": put(&manifest), "size": manifest.len(),
            "platform": platform,
        }));
    }
    let bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children,
    }))
    .unwrap();
    let digest = digest_of(&bytes);
    let dest = format!("{registry}/{repo}:v1");
    layout.push_v1(OCI_INDEX, &bytes, &dest, None);
    assert_eq!(skopeo_raw(&dest, &[]), bytes, "{dest}");
    FreshIndex {
        repo: repo.to_owned(),
        bytes,
        digest,
        blobs,
    }
}

/// A fresh single-platform image of this machine (two random layers) pushed as
/// `REGISTRY/repo:v1`.
fn push_single(registry: &str, repo: &str) -> Image {
    let layers = [layer(512 << 10), layer(64 << 10)];
    let config = json!({
        "architecture": host_arch(),
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Labels": {"test.repo": repo}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids(&layers)},
    });
    push_layout(registry, None, repo, &config, &layers)
}

// ---------------------------------------------------------------------------------------------
// 1. dockerd 20.10, the classic store

/// Removes the given names from the shared dockerd 20.10 when dropped.
struct DockerCleanup {
    names: Vec<String>,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = docker(&["rmi", n]);
        }
    }
}

#[test]
fn dockerd20_pulls_by_tag_and_by_digest_from_serve_with_the_cached_image_id() {
    let sb = Sandbox::new();
    let origin = Manifest::of(registry(), "busybox:v1");
    let id = sb.pull_image_id(&format!("{}/busybox:v1", registry()));
    assert_eq!(id, config_digest(&origin.raw));
    let mut server = Server::start(&sb, &[]);
    let by_tag = format!("{}/busybox:v1", server.addr);
    let pinned = format!("{}/busybox@{}", server.addr, origin.digest);
    let _cleanup = DockerCleanup {
        names: vec![by_tag.clone(), pinned.clone()],
    };
    for name in [&by_tag, &pinned] {
        server.ok(docker(&["pull", name]), &format!("docker pull {name}"));
        assert_eq!(inspect_field(docker, name, "{{.Id}}"), id, "{name}");
        let digests = repo_digests(docker, name);
        assert!(digests.contains(&pinned), "{name}: {digests:?}");
        if *name == by_tag {
            // The pull by digest finds the image gone (unless another name holds it).
            docker(&["rmi", name]).ok("docker rmi");
        }
    }
    let log = server.stop();
    // The tag is resolved at serve. The pull by digest may need no manifest request at all:
    // dockerd 20.10 keeps the manifests it pulled in its containerd's content store, and the
    // shared daemon may hold this one from another test (regression: this test asserted a GET
    // by digest and failed whenever it ran after one).
    assert!(
        answered(&log, "/v2/busybox/manifests/v1"),
        "no 200 for the tag:\n{log}"
    );
    let contacts = accesses(&log)
        .iter()
        .filter(|l| l.starts_with("GET /v2/ "))
        .count();
    assert!(
        contacts >= 2,
        "dockerd did not come back for the digest:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. dockerd 28, the containerd image store

/// The docker CLI of the newer engines at dockerd 28.
fn docker28(args: &[&str]) -> Run {
    output_of(
        Command::new(newer("NEWER_DOCKER_CLI"))
            .env("DOCKER_HOST", newer("NEWER_DOCKERD28_HOST"))
            .args(args),
    )
}

#[test]
fn dockerd28_containerd_store_records_the_origin_manifest_and_index_digests() {
    let test = "dockerd28_containerd_store_records_the_origin_manifest_and_index_digests";
    if skipped(test, "DOCKERD28") {
        return;
    }
    let sb = Sandbox::new();
    let origins = [
        Manifest::of(registry(), "busybox:v1"),
        Manifest::of(registry(), "multiarch:v1"),
    ];
    for o in &origins {
        sb.pull(&format!("{}/{}", registry(), o.tag));
    }
    let mut server = Server::start(&sb, &[]);
    let _cleanup = Dockerd28Cleanup {
        repos: origins
            .iter()
            .map(|o| format!("{}/{}", server.addr, o.repo()))
            .collect(),
    };
    for o in &origins {
        let name = format!("{}/{}", server.addr, o.tag);
        let pinned = format!("{}/{}@{}", server.addr, o.repo(), o.digest);
        server.ok(docker28(&["pull", &name]), &format!("docker pull {name}"));
        // There `.Id` is the top-level digest: the manifest's, or the index's.
        assert_eq!(
            inspect_field(docker28, &name, "{{.Id}}"),
            o.digest,
            "{name}"
        );
        let digests = repo_digests(docker28, &name);
        assert!(digests.contains(&pinned), "{name}: {digests:?}");
        assert_eq!(inspect_field(docker28, &pinned, "{{.Id}}"), o.digest);
    }
    let log = server.stop();
    assert!(answered(&log, "/v2/multiarch/manifests/v1"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// 3. containerd 1.6, 1.7, 2.1 through the printed hosts.toml

/// Writes the `hosts.toml` files of `--print-config containerd` for `origin` under a hosts
/// directory of the sandbox (`DIR/HOST:PORT/hosts.toml`); the directory.
fn containerd_hosts_dir(sb: &Sandbox, server: &Server, origin: &str) -> PathBuf {
    let files = print_config(sb, "containerd", server, &[origin]);
    assert_eq!(files.len(), 1, "{files:#?}");
    let (path, content) = &files[0];
    assert_eq!(
        path,
        &format!("/etc/containerd/certs.d/{origin}/hosts.toml")
    );
    assert!(
        content.contains(&format!("server = \"http://{origin}\"")),
        "{content}"
    );
    assert!(
        content.contains(&format!("[host.\"{}\"]", server.url)),
        "{content}"
    );
    assert!(content.contains("\"pull\", \"resolve\""), "{content}");
    let dir = sb.path("certs.d");
    let file = dir.join(path.strip_prefix("/etc/containerd/certs.d/").unwrap());
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, content).unwrap();
    dir
}

/// `ctr images pull --hosts-dir DIR` of busybox:v1 and multiarch:v1, cached from a private
/// origin that is then stopped: the records name the origin's digests, the content store holds
/// its bytes, and containerd asked serve as a mirror (`?ns=`).
fn containerd_pulls_with_the_origin_stopped(ctr: &Ctr) {
    let sb = Sandbox::new();
    let mut origin = PrivateRegistry::start();
    let images = [
        origin.copy_from_main("busybox:v1"),
        origin.copy_from_main("multiarch:v1"),
    ];
    for m in &images {
        sb.pull(&origin.reference(&m.tag));
    }
    origin.stop();
    let mut server = Server::start(&sb, &[]);
    let hosts = containerd_hosts_dir(&sb, &server, &origin.addr);
    for m in &images {
        let name = origin.reference(&m.tag);
        // containerd 2.x also fetches every other platform's config ("metadata"): stored by
        // `imgcache pull` with the child manifests, so no `--skip-metadata` is needed.
        let args = [
            "images",
            "pull",
            "--snapshotter",
            &ctr.snapshotter,
            "--hosts-dir",
            path_str(&hosts),
            &name,
        ];
        server.ok(ctr.run(&args), &format!("ctr images pull {name}"));
        assert_eq!(
            ctr.listed(&name).as_deref(),
            Some(m.digest.as_str()),
            "{name}"
        );
        let content = Command::new(&ctr.program)
            .arg("-a")
            .arg(&ctr.address)
            .args(["-n", &ctr.namespace, "content", "get", &m.digest])
            .output()
            .unwrap();
        assert!(content.status.success(), "ctr content get {}", m.digest);
        assert!(
            content.stdout == m.raw,
            "{name}: content {} differs",
            m.digest
        );
    }
    let log = server.stop();
    for m in &images {
        let path = format!("/v2/{}/manifests/{}?ns=", m.repo(), m.tag_only());
        assert!(answered(&log, &path), "no 200 for {path}...:\n{log}");
    }
}

/// A namespace of the test's own in the shared containerd `version`, removed afterwards.
fn on_shared_containerd(version: &str, test: impl FnOnce(&Ctr)) {
    let ns = unique_name(&format!("serve-c{version}"));
    let ctr = Ctr::shared(version, &ns);
    let _cleanup = CtrCleanup {
        ctr: ctr.clone(),
        marker: ns,
        own_namespace: true,
    };
    test(&ctr);
}

#[test]
fn containerd16_pulls_through_the_printed_hosts_toml_with_the_origin_stopped() {
    let daemon = Containerd::start();
    containerd_pulls_with_the_origin_stopped(&daemon.client());
}

#[test]
fn containerd17_pulls_through_the_printed_hosts_toml_with_the_origin_stopped() {
    on_shared_containerd("17", containerd_pulls_with_the_origin_stopped);
}

#[test]
fn containerd21_pulls_through_the_printed_hosts_toml_with_the_origin_stopped() {
    let test = "containerd21_pulls_through_the_printed_hosts_toml_with_the_origin_stopped";
    if skipped(test, "CONTAINERD21") {
        return;
    }
    on_shared_containerd("21", containerd_pulls_with_the_origin_stopped);
}

/// containerd 2.1's default pull of an index fetches the configs of every platform: `imgcache
/// pull` stored the other platform's config with its child manifest (containerd 2.x failed
/// with "not found" for it while the origin was down), and serve answers for it.
#[test]
fn containerd21_gets_the_other_platforms_config_that_imgcache_pull_stored() {
    let test = "containerd21_gets_the_other_platforms_config_that_imgcache_pull_stored";
    if skipped(test, "CONTAINERD21") {
        return;
    }
    on_shared_containerd("21", |ctr| {
        let sb = Sandbox::new();
        let origin = PrivateRegistry::start();
        let m = origin.copy_from_main("multiarch:v1");
        let name = origin.reference(&m.tag);
        let host_config = sb.pull(&name)["image_id"].as_str().unwrap().to_owned();
        let index: Value = serde_json::from_slice(&m.raw).unwrap();
        let mut other_configs = Vec::new();
        for child in index["manifests"].as_array().unwrap() {
            let bytes = skopeo_raw(
                &format!(
                    "{}/multiarch@{}",
                    origin.addr,
                    child["digest"].as_str().unwrap()
                ),
                &[],
            );
            let config = config_digest(&bytes);
            if config != host_config {
                other_configs.push(config);
            }
        }
        assert_eq!(other_configs.len(), 1, "{index:#}");
        assert!(sb.blob_files().contains(&other_configs[0]));
        let mut server = Server::start(&sb, &[]);
        let hosts = containerd_hosts_dir(&sb, &server, &origin.addr);
        let pulled = ctr.run(&[
            "images",
            "pull",
            "--snapshotter",
            &ctr.snapshotter,
            "--hosts-dir",
            path_str(&hosts),
            &name,
        ]);
        server.ok(pulled, &format!("ctr images pull {name}"));
        assert_eq!(ctr.listed(&name).as_deref(), Some(m.digest.as_str()));
        let log = server.stop();
        let path = format!("/v2/multiarch/blobs/{}?ns=", other_configs[0]);
        assert!(answered(&log, &path), "no 200 for {path}...:\n{log}");
        sb.assert_fsck_deep_clean_at(&sb.root, "after containerd 2.1's pull");
    });
}

// ---------------------------------------------------------------------------------------------
// 4. podman through the printed registries.conf

#[test]
fn podman_pulls_through_the_printed_registries_conf_with_the_origin_stopped() {
    let sb = Sandbox::new();
    let mut origin = PrivateRegistry::start();
    let images = [
        origin.copy_from_main("busybox:v1"),
        origin.copy_from_main("multiarch:v1"),
    ];
    let ids: Vec<String> = images
        .iter()
        .map(|m| sb.pull_image_id(&origin.reference(&m.tag)))
        .collect();
    origin.stop();
    let mut server = Server::start(&sb, &[]);
    let files = print_config(&sb, "podman", &server, &[&origin.addr]);
    assert_eq!(files.len(), 1, "{files:#?}");
    let (path, content) = &files[0];
    assert_eq!(path, "/etc/containers/registries.conf.d/50-imgcache.conf");
    let prefix = origin.addr.replace(':', "__");
    for line in [
        format!("prefix = \"{}\"", origin.addr),
        format!("location = \"{}/{prefix}\"", server.addr),
        "insecure = true".to_owned(),
    ] {
        assert!(content.contains(&line), "no {line:?} in:\n{content}");
    }
    let conf = sb.path("registries.conf");
    fs::write(&conf, content).unwrap();
    let store = sb.podman_store();
    let podman = |args: &[&str]| {
        let mut c = store.command(args);
        sb.isolate(&mut c);
        c.env("CONTAINERS_REGISTRIES_CONF", &conf);
        output_of(&mut c)
    };
    for (m, id) in images.iter().zip(&ids) {
        let name = origin.reference(&m.tag);
        server.ok(podman(&["pull", &name]), &format!("podman pull {name}"));
        assert_eq!(
            inspect_field(podman, &name, "{{.Digest}}"),
            m.digest,
            "{name}"
        );
        assert_eq!(
            format!("sha256:{}", inspect_field(podman, &name, "{{.Id}}")),
            *id,
            "{name}"
        );
        let pinned = format!("{}/{}@{}", origin.addr, m.repo(), m.digest);
        let digests = repo_digests(podman, &name);
        assert!(digests.contains(&pinned), "{name}: {digests:?}");
    }
    let log = server.stop();
    for m in &images {
        let path = format!("/v2/{prefix}/{}/manifests/{}", m.repo(), m.tag_only());
        assert!(answered(&log, &path), "no 200 for {path}:\n{log}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. skopeo

#[test]
fn skopeo_copies_through_serve_with_every_blob_digest_checked() {
    let sb = Sandbox::new();
    let busybox = Manifest::of(registry(), "busybox:v1");
    let multiarch = Manifest::of(registry(), "multiarch:v1");
    for m in [&busybox, &multiarch] {
        sb.pull(&format!("{}/{}", registry(), m.tag));
    }
    // Only this machine's platform of multiarch:v1 is cached.
    let cached_before = sb.blob_files();
    let mut server = Server::start(&sb, &[]);

    let one = sb.path("busybox");
    let src = format!("{}/busybox:v1", server.addr);
    server.ok(
        output_of(&mut copy_to_dir(&sb, &src, &one, false)),
        &format!("skopeo copy {src}"),
    );
    let blobs = dir_holds(&one, &busybox.raw);
    assert_eq!(blobs.len(), 3, "{blobs:?}");

    let all = sb.path("multiarch");
    let src = format!("{}/multiarch:v1", server.addr);
    server.ok(
        output_of(&mut copy_to_dir(&sb, &src, &all, true)),
        &format!("skopeo copy --all {src}"),
    );
    let blobs = dir_holds(&all, &multiarch.raw);
    let pulled_through: BTreeSet<&String> = blobs.difference(&cached_before).collect();
    assert!(
        !pulled_through.is_empty(),
        "every blob of every platform was cached already: {blobs:?}"
    );
    let cached_after = sb.blob_files();
    assert!(
        blobs.is_subset(&cached_after),
        "the other platform's blobs were not stored: {:?}",
        blobs.difference(&cached_after).collect::<Vec<_>>()
    );
    server.stop();
    sb.assert_fsck_deep_clean_at(&sb.root, "after skopeo copy --all");
}

#[test]
fn manifests_through_serve_are_the_origin_bytes_in_every_path_style() {
    let sb = Sandbox::new();
    let origins = [
        Manifest::of(registry(), "busybox:v1"),
        Manifest::of(registry(), "multiarch:v1"),
        Manifest::of(registry(), "multiarch:v1-list"),
    ];
    let media_types: BTreeSet<&str> = origins.iter().map(|m| m.media_type.as_str()).collect();
    assert_eq!(
        media_types,
        BTreeSet::from([
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            OCI_INDEX,
        ])
    );
    for m in &origins {
        sb.pull(&format!("{}/{}", registry(), m.tag));
    }
    let mut server = Server::start(&sb, &[]);
    let prefix = registry().replace(':', "__");
    for m in &origins {
        // skopeo: the repository alone (rule 3), the registry as a path prefix (rule 2); by tag
        // and by digest.
        let (repo, tag) = (m.repo(), m.tag_only());
        for reference in [
            format!("{}/{repo}:{tag}", server.addr),
            format!("{}/{prefix}/{repo}:{tag}", server.addr),
            format!("{}/{repo}@{}", server.addr, m.digest),
            format!("{}/{prefix}/{repo}@{}", server.addr, m.digest),
        ] {
            let got = server.ok(
                inspect_raw(&sb, &reference),
                &format!("skopeo inspect {reference}"),
            );
            assert!(
                got.stdout.as_bytes() == m.raw.as_slice(),
                "{reference}: not the origin's bytes:\n{}",
                got.stdout
            );
        }
        // Raw HTTP: `?ns=` (rule 1) too, with the headers.
        let ns = registry().replace(':', "%3A");
        for path in [
            format!("/v2/{repo}/manifests/{tag}?ns={ns}"),
            format!("/v2/{repo}/manifests/{tag}?ns={}", registry()),
            format!("/v2/{prefix}/{repo}/manifests/{tag}"),
            format!("/v2/{repo}/manifests/{tag}"),
            format!("/v2/{repo}/manifests/{}?ns={ns}", m.digest),
        ] {
            let got = http_get(&server.addr, &path);
            assert_eq!(
                got.status,
                200,
                "{path}: {}",
                String::from_utf8_lossy(&got.body)
            );
            assert!(got.body == m.raw, "{path}: not the origin's bytes");
            assert_eq!(
                got.header("docker-content-digest"),
                Some(m.digest.as_str()),
                "{path}"
            );
            assert_eq!(
                got.header("content-type"),
                Some(m.media_type.as_str()),
                "{path}"
            );
            assert_eq!(
                got.header("content-length"),
                Some(m.raw.len().to_string().as_str()),
                "{path}"
            );
        }
    }
    server.stop();
}

// ---------------------------------------------------------------------------------------------
// 6. Pull-through of images in no cache

#[test]
fn an_uncached_image_is_pulled_through_for_a_client_and_then_listed() {
    let sb = Sandbox::new();
    let origin = PrivateRegistry::start();
    let img = push_single(&origin.addr, &unique_name("serve-fresh"));
    assert_eq!(sb.refs(), Vec::<String>::new());
    let mut server = Server::start(&sb, &[]);
    let src = format!(
        "{}/{}/{}:v1",
        server.addr,
        origin.addr.replace(':', "__"),
        img.repo
    );

    let mark = origin.mark();
    let dir = sb.path("first");
    server.ok(
        output_of(&mut copy_to_dir(&sb, &src, &dir, false)),
        &format!("skopeo copy {src}"),
    );
    let blobs: BTreeSet<String> = img.blob_sizes().into_keys().collect();
    assert_eq!(dir_holds(&dir, &img.manifest), blobs);
    let want: BTreeMap<String, usize> = img.blob_sizes().into_keys().map(|d| (d, 1)).collect();
    assert_eq!(
        mark.gets(&img.repo, "blobs"),
        want,
        "{:#?}",
        mark.accesses()
    );
    let rows: Vec<(String, String)> = sb.refs_with_ids_at(&sb.root);
    assert_eq!(rows, [(img.reference.clone(), img.config_digest.clone())]);
    let inspected = sb.json(&["inspect", &img.reference]);
    assert_eq!(
        inspected["manifest_digest"],
        img.manifest_digest.as_str(),
        "{inspected:#}"
    );

    // A second client: the tag is asked at the origin (one manifest GET), the blobs are not.
    let mark = origin.mark();
    let again = sb.path("second");
    server.ok(
        output_of(&mut copy_to_dir(&sb, &src, &again, false)),
        &format!("skopeo copy {src} again"),
    );
    dir_holds(&again, &img.manifest);
    assert_eq!(
        mark.gets(&img.repo, "blobs"),
        BTreeMap::new(),
        "{:#?}",
        mark.accesses()
    );
    assert_eq!(
        mark.gets(&img.repo, "manifests"),
        BTreeMap::from([("v1".to_owned(), 1)]),
        "{:#?}",
        mark.accesses()
    );
    server.stop();
    sb.assert_fsck_deep_clean_at(&sb.root, "after the pull-through");
}

/// `skopeo copy --all` of `src` to `dest`, started now.
fn spawn_copy(sb: &Sandbox, src: &str, dest: &Path) -> Child {
    copy_to_dir(sb, src, dest, true)
        .spawn()
        .expect("spawn skopeo copy")
}

#[test]
fn eight_clients_at_once_cause_one_origin_get_per_blob_and_a_clean_cache() {
    let sb = Sandbox::new();
    let origin = PrivateRegistry::start();
    let img = push_index(&origin.addr, &unique_name("serve-eight"));
    let mut server = Server::start(&sb, &[]);
    let prefix = origin.addr.replace(':', "__");
    let mark = origin.mark();

    // A blob asked for before any manifest naming it: unknown, and not fetched.
    let first = img.blobs.iter().next().unwrap();
    let early = http_get(
        &server.addr,
        &format!("/v2/{prefix}/{}/blobs/{first}", img.repo),
    );
    assert_eq!(early.status, 404);
    assert_eq!(error_code(&early.body), "BLOB_UNKNOWN");
    assert_eq!(mark.accesses(), Vec::<String>::new());

    let src = format!("{}/{prefix}/{}:v1", server.addr, img.repo);
    let dirs: Vec<PathBuf> = (0..8).map(|i| sb.path(&format!("client-{i}"))).collect();
    let children: Vec<Child> = dirs.iter().map(|d| spawn_copy(&sb, &src, d)).collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        server.ok(to_run(out), &format!("client {i}: skopeo copy --all {src}"));
    }
    for d in &dirs {
        assert_eq!(dir_holds(d, &img.bytes), img.blobs, "{}", d.display());
    }
    let want: BTreeMap<String, usize> = img.blobs.iter().map(|d| (d.clone(), 1)).collect();
    assert_eq!(
        mark.gets(&img.repo, "blobs"),
        want,
        "{:#?}",
        mark.accesses()
    );
    server.stop();
    let refs = sb.refs();
    assert_eq!(refs, [format!("{}/{}:v1", origin.addr, img.repo)]);
    let inspected = sb.json(&["inspect", &refs[0]]);
    assert_eq!(
        inspected["index_digest"],
        img.digest.as_str(),
        "{inspected:#}"
    );
    assert!(img.blobs.is_subset(&sb.blob_files()));
    sb.assert_fsck_deep_clean_at(&sb.root, "after 8 clients at once");
    sb.assert_no_ingest();
}

// ---------------------------------------------------------------------------------------------
// 7. The origin down, and --offline

#[test]
fn a_tag_is_answered_from_the_cache_while_the_origin_is_down() {
    let sb = Sandbox::new();
    let mut origin = PrivateRegistry::start();
    let images = [
        origin.copy_from_main("busybox:v1"),
        origin.copy_from_main("multiarch:v1-list"),
    ];
    for m in &images {
        sb.pull(&origin.reference(&m.tag));
    }
    // Pushed, never cached.
    let uncached = origin.copy_from_main("busybox:v1-oci");
    origin.stop();
    let mut server = Server::start(&sb, &[]);
    let prefix = origin.addr.replace(':', "__");
    for m in &images {
        for reference in [
            format!("{}/{prefix}/{}", server.addr, m.tag),
            format!("{}/{}", server.addr, m.tag),
        ] {
            let got = server.ok(
                inspect_raw(&sb, &reference),
                &format!("skopeo inspect {reference}"),
            );
            assert!(
                got.stdout.as_bytes() == m.raw.as_slice(),
                "{reference}: not the cached bytes:\n{}",
                got.stdout
            );
        }
    }
    let dir = sb.path("busybox");
    let src = format!("{}/{prefix}/busybox:v1", server.addr);
    server.ok(
        output_of(&mut copy_to_dir(&sb, &src, &dir, false)),
        &format!("skopeo copy {src}"),
    );
    dir_holds(&dir, &images[0].raw);
    // What the cache lacks cannot be had: unknown (so that a client moves on to the origin).
    let path = format!("/v2/{prefix}/busybox/manifests/{}", uncached.tag_only());
    let got = http_get(&server.addr, &path);
    assert_eq!(
        got.status,
        404,
        "{path}: {}",
        String::from_utf8_lossy(&got.body)
    );
    assert_eq!(error_code(&got.body), "MANIFEST_UNKNOWN", "{path}");
    server.stop();
}

#[test]
fn offline_serving_never_contacts_the_origin() {
    let sb = Sandbox::new();
    let origin = PrivateRegistry::start();
    let busybox = origin.copy_from_main("busybox:v1");
    let multiarch = origin.copy_from_main("multiarch:v1");
    // Pushed, never cached.
    let uncached = origin.copy_from_main("busybox:v1-oci");
    for m in [&busybox, &multiarch] {
        sb.pull(&origin.reference(&m.tag));
    }
    let mark = origin.mark();
    let mut server = Server::start(&sb, &["--offline"]);
    let prefix = origin.addr.replace(':', "__");
    for m in [&busybox, &multiarch] {
        let reference = format!("{}/{prefix}/{}", server.addr, m.tag);
        let got = server.ok(
            inspect_raw(&sb, &reference),
            &format!("skopeo inspect {reference}"),
        );
        assert!(got.stdout.as_bytes() == m.raw.as_slice(), "{reference}");
    }
    let dir = sb.path("busybox");
    let src = format!("{}/{prefix}/busybox:v1", server.addr);
    server.ok(
        output_of(&mut copy_to_dir(&sb, &src, &dir, false)),
        &format!("skopeo copy {src}"),
    );
    dir_holds(&dir, &busybox.raw);
    // Not cached: unknown, whatever the origin has. And so is a blob of another platform.
    let path = format!("/v2/{prefix}/busybox/manifests/{}", uncached.tag_only());
    let got = http_get(&server.addr, &path);
    assert_eq!(
        got.status,
        404,
        "{path}: {}",
        String::from_utf8_lossy(&got.body)
    );
    assert_eq!(error_code(&got.body), "MANIFEST_UNKNOWN", "{path}");
    let index: Value = serde_json::from_slice(&multiarch.raw).unwrap();
    let cached = sb.blob_files();
    let other = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["digest"].as_str().unwrap().to_owned())
        .map(|d| sb.blob(&d))
        .flat_map(|bytes| layer_digests(&bytes))
        .find(|l| !cached.contains(l))
        .expect("a layer of a platform of multiarch:v1 not cached");
    let path = format!("/v2/{prefix}/multiarch/blobs/{other}");
    let got = http_get(&server.addr, &path);
    assert_eq!(
        got.status,
        404,
        "{path}: {}",
        String::from_utf8_lossy(&got.body)
    );
    assert_eq!(error_code(&got.body), "BLOB_UNKNOWN", "{path}");
    server.stop();
    assert_eq!(
        mark.accesses(),
        Vec::<String>::new(),
        "--offline asked the origin"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. https

/// `--tls-cert` and `--tls-key`: the line names an https URL; skopeo, trusting the CA through
/// `--cert-dir` (TLS verified), gets the origin's bytes; a client without the CA is refused.
#[test]
fn serve_speaks_https_with_the_certificate_it_is_given() {
    let sb = Sandbox::new();
    let origin = Manifest::of(registry(), "busybox:v1");
    sb.pull(&format!("{}/busybox:v1", registry()));
    let tls = PathBuf::from(&env().vars["TEST_REGISTRY_TLS_CERT_DIR"]);
    let (cert, key) = (tls.join("server.pem"), tls.join("server-key.pem"));
    let serving = Serving::start(
        &sb,
        &[
            "--offline",
            "--tls-cert",
            path_str(&cert),
            "--tls-key",
            path_str(&key),
        ],
    );
    assert!(
        serving.url.starts_with("https://127.0.0.1:"),
        "{}",
        serving.url
    );
    let cert_dir = sb.path("certs");
    fs::create_dir_all(&cert_dir).unwrap();
    fs::copy(tls.join("ca.crt"), cert_dir.join("ca.crt")).unwrap();
    let reference = format!("docker://{}/busybox:v1", serving.addr);
    let got = output_of(&mut skopeo(
        &sb,
        &[
            "inspect",
            "--cert-dir",
            path_str(&cert_dir),
            "--raw",
            &reference,
        ],
    ))
    .ok("skopeo inspect over https with the CA");
    assert!(
        got.stdout.as_bytes() == origin.raw.as_slice(),
        "other bytes over https"
    );
    let untrusted = output_of(&mut skopeo(&sb, &["inspect", "--raw", &reference]));
    assert_ne!(untrusted.code, 0, "an untrusted certificate was accepted");
    assert!(
        untrusted.stderr.contains("certificate"),
        "{}",
        untrusted.stderr
    );
    let (status, stderr) = serving.stop();
    assert!(status.success(), "{stderr}");
}
