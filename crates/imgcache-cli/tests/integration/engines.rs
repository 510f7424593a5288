//! `imgcache status` and `imgcache load` against the real engines (dockerd 20.10, podman 4.3 on
//! a private store, a private containerd 1.6): an image is handed over only when the engine
//! lacks its image ID, re-tagged when only the tag is missing, and confirmed under the tag;
//! what the engine reports is read back with the engine's own CLI. Failures (offline, a blob
//! missing from the cache, an engine that is down, rejects the tarball or reports another ID,
//! an unknown or absent engine) exit with the documented code, say why, and change nothing in
//! the cache.
//!
//! Every test has its own cache root (and HOME) and pushes its own images to the plain test
//! registry under a repository no other test uses. dockerd is shared: images loaded there are
//! removed by a guard when the test ends (also when it fails). podman runs on a private store
//! in the test's directory; containerd is a private daemon stopped by a guard. To see what
//! imgcache asked podman or ctr to do, a wrapper first on the PATH logs each command line
//! before running the real program; for Docker (whose adapter may talk to the socket itself)
//! the daemon's own `docker events` tell whether an image was loaded or tagged.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::support::*;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// What the podman wrapper of [`podman_reporting_another_image_id_after_load_is_an_error_naming_both`]
/// prints as every image's `Id`.
const FAKE_HEX: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

/// Environment variables that select or configure an engine: cleared for every run, so only
/// what a test sets applies.
const ENGINE_VARS: [&str; 12] = [
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "CONTAINER_HOST",
    "CONTAINER_CONNECTION",
    "CONTAINERD_ADDRESS",
    "CONTAINERD_NAMESPACE",
    "CONTAINERD_SNAPSHOTTER",
    "CONTAINER_RUNTIME_ENDPOINT",
    "IMGCACHE_PODMAN_ARGS",
];

// ---------------------------------------------------------------------------------------------
// Helpers

fn registry() -> &'static str {
    &env().vars["TEST_REGISTRY"]
}

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A name no other test (or earlier run) uses.
fn unique(what: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "eng-{what}-{}-{}-{}",
        std::process::id(),
        nanos() % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Incompressible bytes, different on every call.
fn random_bytes(len: usize) -> Vec<u8> {
    static N: AtomicU64 = AtomicU64::new(1);
    let mut x = nanos()
        ^ (u64::from(std::process::id()) << 32)
        ^ N.fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x |= 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An uncompressed layer: a tar holding one file of random bytes.
fn layer_tar(size: usize) -> Vec<u8> {
    let data = random_bytes(size);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    b.append_data(
        &mut h,
        format!("data/{}", sha256_hex(&data[..32])),
        &data[..],
    )
    .unwrap();
    b.into_inner().unwrap()
}

/// The result of one run of a program.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    fn ok(self, what: &str) -> Self {
        assert_eq!(
            self.code, 0,
            "{what}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

fn run_cmd(cmd: &mut Command) -> Out {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The program `name` on this process's PATH (the real one: wrappers are only on the PATH of
/// the imgcache runs).
fn real_program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on the PATH"))
}

/// An image pushed to the plain test registry as `<repo>:v1`: two gzip layers of random bytes.
struct Pushed {
    reference: String,
    image_id: String,
    manifest_digest: String,
}

fn push_fresh_image(what: &str) -> Pushed {
    let repo = unique(what);
    let dir = tempdir();
    let blobs = dir.path().join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> String {
        let d = digest_of(data);
        fs::write(blobs.join(hex(&d)), data).unwrap();
        d
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for size in [48 << 10, 3 << 10] {
        let tar = layer_tar(size);
        diff_ids.push(digest_of(&tar));
        let gz = gzip(&tar);
        layers.push(json!({"mediaType": OCI_LAYER_GZIP, "digest": put(&gz), "size": gz.len()}));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Labels": {"test.repo": repo}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let image_id = put(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": image_id, "size": config.len()},
        "layers": layers,
    }))
    .unwrap();
    let manifest_digest = put(&manifest);
    fs::write(
        dir.path().join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "v1"}
        }]
    });
    fs::write(dir.path().join("index.json"), index.to_string()).unwrap();
    run_cmd(
        Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--preserve-digests",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:v1", dir.path().display()))
            .arg(format!("docker://{}/{repo}:v1", registry())),
    )
    .ok("skopeo copy");
    Pushed {
        reference: format!("{}/{repo}:v1", registry()),
        image_id,
        manifest_digest,
    }
}

/// A cache root and a HOME of its own, and room for engine stores, wrappers and logs beside.
struct Cache {
    dir: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
}

impl Cache {
    fn new() -> Self {
        let dir = tempdir();
        let root = dir.path().join("root");
        let home = dir.path().join("home");
        fs::create_dir_all(&home).unwrap();
        Self { dir, root, home }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `imgcache --root ROOT ARGS` with `env` (and no other engine selection) set.
    fn run(&self, env: &[(String, String)], args: &[&str]) -> Out {
        let mut c = Command::new(bin());
        c.arg("--root").arg(&self.root).args(args);
        c.env("HOME", &self.home);
        for v in ENGINE_VARS.iter().chain(&[
            "REGISTRY_AUTH_FILE",
            "XDG_RUNTIME_DIR",
            "XDG_CONFIG_HOME",
            "XDG_CACHE_HOME",
            "IMGCACHE_HOME",
            "IMGCACHE_LOG",
        ]) {
            c.env_remove(v);
        }
        c.envs(env.iter().map(|(k, v)| (k, v)));
        run_cmd(&mut c)
    }

    /// `--json ARGS`, expecting exit `code`.
    fn json_code(&self, env: &[(String, String)], args: &[&str], code: i32) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let r = self.run(env, &a);
        assert_eq!(
            r.code, code,
            "imgcache {args:?}\nstdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        r.json()
    }

    fn pull(&self, reference: &str) -> String {
        self.json_code(&[], &["pull", reference], 0)["image_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn ls(&self) -> Value {
        self.json_code(&[], &["ls"], 0)
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex(digest))
    }

    /// The blob files on disk, with their sizes.
    fn blob_files(&self) -> BTreeSet<(String, u64)> {
        fs::read_dir(self.root.join("blobs/sha256"))
            .map(|rd| {
                rd.map(|e| {
                    let e = e.unwrap();
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        e.metadata().unwrap().len(),
                    )
                })
                .collect()
            })
            .unwrap_or_default()
    }

    /// What the cache holds: `ls --json` (without `last_used`: handing an image to an engine
    /// is a use) and the blob files.
    fn snapshot(&self) -> (Value, BTreeSet<(String, u64)>) {
        let mut ls = self.ls();
        for e in ls["images"].as_array_mut().unwrap() {
            e.as_object_mut().unwrap().remove("last_used");
        }
        (ls, self.blob_files())
    }

    /// `fsck --deep` finds nothing wrong (and no blob nobody needs).
    fn assert_fsck_clean(&self) {
        let doc = self.json_code(&[], &["fsck", "--deep"], 0);
        assert_eq!(doc["ok"], true, "{doc:#}");
        for k in [
            "missing",
            "corrupt",
            "unreferenced",
            "broken_references",
            "lost_references",
        ] {
            assert_eq!(doc[k], json!([]), "{k}: {doc:#}");
        }
    }
}

fn var(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_owned(), v.into())
}

/// `dir/NAME`: a shell script that appends its command line to `log`, runs `hook` (shell code
/// that may answer instead of the real program), then runs the real `NAME`.
fn wrapper(dir: &Path, name: &str, log: &Path, hook: &str) {
    fs::create_dir_all(dir).unwrap();
    let real = real_program(name);
    let hook = hook.replace("REAL", s(&real));
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >>'{}'\n{hook}\nexec '{}' \"$@\"\n",
        log.display(),
        real.display()
    );
    let path = dir.join(name);
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// PATH with `dir` first.
fn path_with(dir: &Path) -> (String, String) {
    let rest = std::env::var("PATH").unwrap_or_default();
    var("PATH", format!("{}:{rest}", dir.display()))
}

fn testenv_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/testenv")
        .join(name)
}

/// A private containerd, stopped when dropped.
struct ContainerdDaemon {
    dir: tempfile::TempDir,
    sock: PathBuf,
}

impl ContainerdDaemon {
    fn start() -> Self {
        let dir = tempdir();
        let sock = dir.path().join("containerd.sock");
        let started = run_cmd(
            Command::new("bash")
                .arg(testenv_script("start-containerd.sh"))
                .arg(dir.path())
                .arg("native"),
        );
        // The guard exists before the check, so a half-started daemon is stopped too.
        let me = Self { dir, sock };
        started.ok("start-containerd.sh");
        me
    }
}

impl Drop for ContainerdDaemon {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(testenv_script("stop-pidfile.sh"))
            .arg(self.dir.path().join("containerd.pid"))
            .arg("20")
            .arg(self.dir.path().join("config.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Where a test's `docker events` begin.
#[derive(Clone, Copy)]
struct Mark {
    /// Seconds since the epoch (docker events --since).
    time: f64,
    /// Lines of the wrapper's log.
    lines: usize,
}

enum Kind {
    Docker {
        host: String,
    },
    /// The private store's directory.
    Podman {
        base: PathBuf,
    },
    Containerd(ContainerdDaemon),
}

/// One engine, how imgcache is pointed at it, and what imgcache asked it to do.
struct Engine {
    kind: Kind,
    /// Environment of the imgcache runs.
    env: Vec<(String, String)>,
    /// The wrapper log (podman, containerd).
    log: Option<PathBuf>,
    /// Docker: names and image IDs removed from the shared daemon when the test ends.
    docker_cleanup: Vec<String>,
}

impl Engine {
    /// The shared test dockerd; `cleanup` (names, image IDs) is removed when dropped.
    fn docker(cleanup: &[&str]) -> Self {
        let host = env().vars["DOCKER_HOST"].clone();
        Self {
            env: vec![var("DOCKER_HOST", host.clone())],
            kind: Kind::Docker { host },
            log: None,
            docker_cleanup: cleanup.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    /// podman on a private store in the test's directory, through a logging wrapper with
    /// `hook` (see [`wrapper`]).
    fn podman(c: &Cache, hook: &str) -> Self {
        let base = c.path("podman");
        let tmp = base.join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        let bin = c.path("podman-bin");
        let log = c.path("podman.log");
        wrapper(&bin, "podman", &log, hook);
        let args = format!(
            "--root {} --runroot {} --tmpdir {} --storage-driver vfs --events-backend=none --cgroup-manager=cgroupfs",
            base.join("root").display(),
            base.join("run").display(),
            tmp.display()
        );
        Self {
            env: vec![
                var("IMGCACHE_PODMAN_ARGS", args),
                var("TMPDIR", s(&tmp)),
                path_with(&bin),
            ],
            kind: Kind::Podman { base },
            log: Some(log),
            docker_cleanup: Vec::new(),
        }
    }

    /// A private containerd (namespace k8s.io, native snapshotter), through a logging `ctr`
    /// wrapper with `hook`.
    fn containerd(c: &Cache, hook: &str) -> Self {
        let daemon = ContainerdDaemon::start();
        let bin = c.path("ctr-bin");
        let log = c.path("ctr.log");
        wrapper(&bin, "ctr", &log, hook);
        Self {
            env: vec![
                var("CONTAINERD_ADDRESS", s(&daemon.sock)),
                var("CONTAINERD_NAMESPACE", "k8s.io"),
                var("CONTAINERD_SNAPSHOTTER", "native"),
                path_with(&bin),
            ],
            kind: Kind::Containerd(daemon),
            log: Some(log),
            docker_cleanup: Vec::new(),
        }
    }

    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Docker { .. } => "docker",
            Kind::Podman { .. } => "podman",
            Kind::Containerd(_) => "containerd",
        }
    }

    /// The engine's own CLI (the real program, not the wrapper).
    fn cli(&self, args: &[&str]) -> Out {
        match &self.kind {
            Kind::Docker { host } => run_cmd(
                Command::new(
                    env()
                        .vars
                        .get("TEST_DOCKER_CLI")
                        .map_or("/usr/bin/docker", String::as_str),
                )
                .env("DOCKER_HOST", host)
                .args(args),
            ),
            Kind::Podman { base } => run_cmd(
                Command::new(real_program("podman"))
                    .arg("--root")
                    .arg(base.join("root"))
                    .arg("--runroot")
                    .arg(base.join("run"))
                    .arg("--tmpdir")
                    .arg(base.join("tmp"))
                    .args([
                        "--storage-driver",
                        "vfs",
                        "--events-backend=none",
                        "--cgroup-manager=cgroupfs",
                    ])
                    .env("TMPDIR", base.join("tmp"))
                    .args(args),
            ),
            Kind::Containerd(d) => run_cmd(
                Command::new(real_program("ctr"))
                    .arg("-a")
                    .arg(&d.sock)
                    .args(["-n", "k8s.io"])
                    .args(args),
            ),
        }
    }

    /// containerd: the top-level digest `ctr images ls` gives `name`.
    fn ctr_listed(&self, name: &str) -> Option<String> {
        self.cli(&["images", "ls"])
            .ok("ctr images ls")
            .stdout
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|c| c.first() == Some(&name))
            .map(|c| c[2].to_owned())
    }

    /// The image ID (`sha256:<config hex>`) the engine's own CLI gives `name`, if it has it.
    fn id_of(&self, name: &str) -> Option<String> {
        match self.kind {
            Kind::Docker { .. } => {
                let out = self.cli(&["image", "inspect", "-f", "{{.Id}}", name]);
                (out.code == 0).then(|| out.stdout.trim().to_owned())
            }
            Kind::Podman { .. } => {
                let out = self.cli(&["image", "inspect", "--format", "{{.Id}}", name]);
                (out.code == 0).then(|| format!("sha256:{}", hex(out.stdout.trim())))
            }
            Kind::Containerd(_) => {
                let top = self.ctr_listed(name)?;
                let manifest = self.cli(&["content", "get", &top]).ok("ctr content get");
                Some(manifest.json()["config"]["digest"].as_str()?.to_owned())
            }
        }
    }

    /// Whether the engine holds the image ID at all (under any name or none).
    fn holds(&self, image_id: &str) -> bool {
        match self.kind {
            Kind::Docker { .. } | Kind::Podman { .. } => self.id_of(image_id).is_some(),
            Kind::Containerd(_) => {
                let filter = format!("digest=={image_id}");
                self.cli(&["content", "ls", "--quiet", &filter])
                    .ok("ctr content ls")
                    .stdout
                    .lines()
                    .any(|l| l.trim() == image_id)
            }
        }
    }

    /// Removes the name `name` while the image stays in the engine (under `keep`, or as a
    /// dangling image).
    fn remove_tag_only(&self, name: &str, keep: &str) {
        match self.kind {
            Kind::Docker { .. } => {
                self.cli(&["tag", name, keep]).ok("docker tag");
                self.cli(&["rmi", name]).ok("docker rmi");
            }
            Kind::Podman { .. } => {
                self.cli(&["untag", name, name]).ok("podman untag");
            }
            Kind::Containerd(_) => {
                self.cli(&["images", "tag", name, keep])
                    .ok("ctr images tag");
                self.cli(&["images", "rm", name]).ok("ctr images rm");
            }
        }
        assert_eq!(self.id_of(name), None, "{name} still names an image");
    }

    fn mark(&self) -> Mark {
        Mark {
            time: nanos() as f64 / 1e9 - 0.001,
            lines: self.log.as_ref().map_or(0, |l| {
                fs::read_to_string(l).unwrap_or_default().lines().count()
            }),
        }
    }

    /// What was done to the image `image_id` since `mark`: "load" and "tag" (and, for Docker,
    /// every other image event of that ID).
    fn activity(&self, mark: Mark, image_id: &str) -> Vec<String> {
        match self.kind {
            Kind::Docker { .. } => {
                let since = format!("{:.3}", mark.time);
                let until = format!("{:.3}", nanos() as f64 / 1e9 + 0.001);
                let out = self
                    .cli(&[
                        "events",
                        "--since",
                        &since,
                        "--until",
                        &until,
                        "--filter",
                        "type=image",
                        "--format",
                        "{{json .}}",
                    ])
                    .ok("docker events");
                out.stdout
                    .lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap())
                    .filter(|e| e["Actor"]["ID"] == image_id)
                    .map(|e| e["Action"].as_str().unwrap().to_owned())
                    .collect()
            }
            Kind::Podman { .. } | Kind::Containerd(_) => {
                let text = fs::read_to_string(self.log.as_ref().unwrap()).unwrap_or_default();
                text.lines()
                    .skip(mark.lines)
                    .filter_map(|l| {
                        let l = format!(" {l} ");
                        if l.contains(" load ") || l.contains(" images import ") {
                            Some("load".to_owned())
                        } else if l.contains(" tag ") {
                            Some("tag".to_owned())
                        } else {
                            None
                        }
                    })
                    .collect()
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for n in &self.docker_cleanup {
            let _ = self.cli(&["rmi", "-f", n]);
        }
    }
}

/// `--json status REF --engine E`, expecting exit `code`.
fn status(c: &Cache, e: &Engine, reference: &str, code: i32) -> Value {
    let doc = c.json_code(&e.env, &["status", reference, "--engine", e.name()], code);
    assert_eq!(doc["reference"], reference, "{doc:#}");
    assert_eq!(doc["engine"]["kind"], e.name(), "{doc:#}");
    doc
}

/// `--json load REF --engine E`, expecting success.
fn load(c: &Cache, e: &Engine, reference: &str) -> Value {
    let doc = c.json_code(&e.env, &["load", reference, "--engine", e.name()], 0);
    assert_eq!(doc["reference"], reference, "{doc:#}");
    assert_eq!(doc["engine"], e.name(), "{doc:#}");
    doc
}

/// The engine ID as each engine calls the image: Docker (classic store) `sha256:<config>`,
/// podman the bare config hex (or with `sha256:`), containerd the top-level manifest digest.
fn assert_engine_id(e: &Engine, p: &Pushed, engine_id: &Value) {
    let got = engine_id.as_str().unwrap_or_else(|| panic!("{engine_id}"));
    match e.kind {
        Kind::Docker { .. } => assert_eq!(got, p.image_id),
        Kind::Podman { .. } => assert!(
            got == hex(&p.image_id) || got == p.image_id,
            "podman engine_id {got}, image {}",
            p.image_id
        ),
        Kind::Containerd(_) => {
            // Loaded from the cache's combined tarball: ctr keeps the cached manifest.
            assert_eq!(got, p.manifest_digest);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. status, load, load again, load after the tag alone was removed

fn status_load_reload_retag(c: &Cache, e: &Engine, p: &Pushed) {
    let r = p.reference.as_str();
    let keep = format!("{r}-keep");

    // Nothing anywhere yet.
    let doc = status(c, e, r, 1);
    assert_eq!(doc["cached"], false, "{doc:#}");
    assert_eq!(doc["valid"], false, "{doc:#}");
    assert_eq!(doc["image_id"], Value::Null, "{doc:#}");
    assert_eq!(doc["engine"]["present"], false, "{doc:#}");
    assert_eq!(doc["engine"]["tagged"], false, "{doc:#}");
    assert_eq!(doc["engine"]["engine_id"], Value::Null, "{doc:#}");
    assert_eq!(doc["engine"]["tag_image_id"], Value::Null, "{doc:#}");
    assert_eq!(e.id_of(r), None);

    // First load: pulled, then streamed.
    let m = e.mark();
    let doc = load(c, e, r);
    assert_eq!(doc["action"], "loaded", "{doc:#}");
    assert_eq!(doc["pulled"], true, "{doc:#}");
    assert_eq!(doc["image_id"], p.image_id.as_str(), "{doc:#}");
    assert_engine_id(e, p, &doc["engine_id"]);
    let did = e.activity(m, &p.image_id);
    assert!(did.iter().any(|a| a == "load"), "{}: {did:?}", e.name());
    assert_eq!(
        e.id_of(r).as_deref(),
        Some(p.image_id.as_str()),
        "{} after load",
        e.name()
    );

    // Cached, valid, present and tagged.
    let doc = status(c, e, r, 0);
    assert_eq!(doc["cached"], true, "{doc:#}");
    assert_eq!(doc["valid"], true, "{doc:#}");
    assert_eq!(doc["failures"], json!([]), "{doc:#}");
    assert_eq!(doc["image_id"], p.image_id.as_str(), "{doc:#}");
    assert_eq!(doc["engine"]["present"], true, "{doc:#}");
    assert_eq!(doc["engine"]["tagged"], true, "{doc:#}");
    assert_eq!(
        doc["engine"]["tag_image_id"],
        p.image_id.as_str(),
        "{doc:#}"
    );
    assert_engine_id(e, p, &doc["engine"]["engine_id"]);

    // Again: nothing sent, nothing tagged.
    let m = e.mark();
    let doc = load(c, e, r);
    assert_eq!(doc["action"], "already-present", "{doc:#}");
    assert_eq!(doc["pulled"], false, "{doc:#}");
    assert_eq!(doc["image_id"], p.image_id.as_str(), "{doc:#}");
    assert_engine_id(e, p, &doc["engine_id"]);
    assert_eq!(
        e.activity(m, &p.image_id),
        Vec::<String>::new(),
        "{}: an already-present load touched the engine",
        e.name()
    );

    // Only the tag removed: the image is present, untagged.
    e.remove_tag_only(r, &keep);
    assert!(e.holds(&p.image_id), "{}", e.name());
    let doc = status(c, e, r, 1);
    assert_eq!(doc["engine"]["present"], true, "{doc:#}");
    assert_eq!(doc["engine"]["tagged"], false, "{doc:#}");
    assert_eq!(doc["engine"]["tag_image_id"], Value::Null, "{doc:#}");

    // Re-tagged, not loaded again.
    let m = e.mark();
    let doc = load(c, e, r);
    assert_eq!(doc["action"], "tagged", "{doc:#}");
    assert_eq!(doc["pulled"], false, "{doc:#}");
    assert_eq!(doc["image_id"], p.image_id.as_str(), "{doc:#}");
    let did = e.activity(m, &p.image_id);
    assert!(did.iter().any(|a| a == "tag"), "{}: {did:?}", e.name());
    assert!(!did.iter().any(|a| a == "load"), "{}: {did:?}", e.name());
    assert_eq!(e.id_of(r).as_deref(), Some(p.image_id.as_str()));
    status(c, e, r, 0);
    c.assert_fsck_clean();
}

#[test]
fn docker_status_load_already_present_and_retag() {
    let c = Cache::new();
    let p = push_fresh_image("docker");
    let keep = format!("{}-keep", p.reference);
    let e = Engine::docker(&[&p.reference, &keep, &p.image_id]);
    status_load_reload_retag(&c, &e, &p);
}

#[test]
fn podman_status_load_already_present_and_retag() {
    let c = Cache::new();
    let p = push_fresh_image("podman");
    let e = Engine::podman(&c, "");
    status_load_reload_retag(&c, &e, &p);
}

#[test]
fn containerd_status_load_already_present_and_retag() {
    let c = Cache::new();
    let p = push_fresh_image("containerd");
    let e = Engine::containerd(&c, "");
    status_load_reload_retag(&c, &e, &p);
}

// ---------------------------------------------------------------------------------------------
// 2. Offline, and a cached image missing a blob

#[test]
fn offline_load_of_an_uncached_ref_exits_1_and_touches_no_engine() {
    let c = Cache::new();
    let p = push_fresh_image("offline");
    let e = Engine::podman(&c, "");
    let m = e.mark();
    let out = c.run(
        &e.env,
        &["load", &p.reference, "--engine", "podman", "--offline"],
    );
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&p.reference) && out.stderr.contains("not in the cache"),
        "{}",
        out.stderr
    );
    assert_eq!(c.ls()["images"], json!([]));
    assert_eq!(e.activity(m, &p.image_id), Vec::<String>::new());
    assert!(!e.holds(&p.image_id));
    assert_eq!(
        e.cli(&["images", "-q"]).ok("podman images").stdout.trim(),
        ""
    );
}

#[test]
fn load_of_a_cached_image_missing_a_layer_blob_exits_1_and_sends_nothing() {
    let c = Cache::new();
    let p = push_fresh_image("missing-blob");
    let id = c.pull(&p.reference);
    assert_eq!(id, p.image_id);
    let layer = c.json_code(&[], &["inspect", &p.reference], 0)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    fs::remove_file(c.blob_path(&layer)).unwrap();
    let before = c.snapshot();

    let e = Engine::podman(&c, "");
    let m = e.mark();
    let doc = c.json_code(&e.env, &["load", &p.reference, "--engine", "podman"], 1);
    assert_eq!(doc["ok"], false, "{doc:#}");
    assert_eq!(doc["error"]["check"], "missing-entry", "{doc:#}");
    let msg = doc["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&layer) && msg.contains("fsck --repair"),
        "{doc:#}"
    );
    let text = c.run(&e.env, &["load", &p.reference, "--engine", "podman"]);
    assert_eq!(text.code, 1, "{}", text.stderr);
    assert!(
        text.stderr.contains(&layer) && text.stderr.contains("missing"),
        "{}",
        text.stderr
    );

    assert_eq!(e.activity(m, &p.image_id), Vec::<String>::new());
    assert!(!e.holds(&p.image_id));
    assert_eq!(e.id_of(&p.reference), None);
    assert_eq!(c.snapshot(), before);

    // status says the same: cached, not valid, naming the missing entry.
    let doc = status(&c, &e, &p.reference, 1);
    assert_eq!(doc["cached"], true, "{doc:#}");
    assert_eq!(doc["valid"], false, "{doc:#}");
    assert_eq!(doc["failures"][0]["check"], "missing-entry", "{doc:#}");
    assert_eq!(doc["engine"]["present"], false, "{doc:#}");
}

// ---------------------------------------------------------------------------------------------
// 3. Engines that are not there

#[test]
fn unreachable_engines_exit_3_naming_the_socket_and_leave_the_cache_alone() {
    let c = Cache::new();
    let p = push_fresh_image("dead");
    c.pull(&p.reference);
    let before = c.snapshot();

    let missing_docker = format!("/tmp/{}.sock", unique("no-docker"));
    assert!(!Path::new(&missing_docker).exists());
    // A socket file nobody listens on any more: connections are refused.
    let stale = c.path("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let missing_ctd = c.path("no-containerd.sock");

    let cases: Vec<(&str, (String, String), String, &str)> = vec![
        (
            "docker",
            var("DOCKER_HOST", format!("unix://{missing_docker}")),
            missing_docker.clone(),
            "DOCKER_HOST",
        ),
        // auto: DOCKER_HOST set means Docker.
        (
            "auto",
            var("DOCKER_HOST", format!("unix://{missing_docker}")),
            missing_docker.clone(),
            "DOCKER_HOST",
        ),
        (
            "docker",
            var("DOCKER_HOST", format!("unix://{}", stale.display())),
            s(&stale).to_owned(),
            "DOCKER_HOST",
        ),
        (
            "containerd",
            var("CONTAINERD_ADDRESS", s(&missing_ctd)),
            s(&missing_ctd).to_owned(),
            "CONTAINERD_ADDRESS",
        ),
        (
            "containerd",
            var("CONTAINERD_ADDRESS", s(&stale)),
            s(&stale).to_owned(),
            "CONTAINERD_ADDRESS",
        ),
    ];
    for (engine, setting, sock, hint) in &cases {
        let env = [setting.clone()];
        for cmd in ["status", "load"] {
            let out = c.run(&env, &[cmd, &p.reference, "--engine", engine]);
            assert_eq!(
                out.code, 3,
                "{cmd} --engine {engine} with {setting:?}\n{}\n{}",
                out.stdout, out.stderr
            );
            assert!(
                out.stderr.contains(sock.as_str()) && out.stderr.contains(hint),
                "{cmd} --engine {engine}: the message names neither {sock} nor {hint}:\n{}",
                out.stderr
            );
            assert!(out.stderr.contains("not reachable"), "{}", out.stderr);
        }
        let doc = c.json_code(&env, &["status", &p.reference, "--engine", engine], 3);
        assert_eq!(doc["ok"], false, "{doc:#}");
        assert_eq!(doc["error"]["check"], "environment", "{doc:#}");
    }
    assert_eq!(c.snapshot(), before);
    c.assert_fsck_clean();
}

/// A load that cannot hand the image over must not download it first: with the engine down,
/// an uncached reference is neither pulled nor recorded.
#[test]
fn load_with_an_unreachable_engine_pulls_nothing() {
    let c = Cache::new();
    let p = push_fresh_image("dead-uncached");
    let missing = format!("/tmp/{}.sock", unique("no-docker"));
    let env = [var("DOCKER_HOST", format!("unix://{missing}"))];
    let out = c.run(&env, &["load", &p.reference, "--engine", "docker"]);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains(&missing), "{}", out.stderr);
    assert_eq!(
        c.ls()["images"],
        json!([]),
        "load pulled before the engine answered"
    );
    assert_eq!(c.blob_files(), BTreeSet::new());
}

// ---------------------------------------------------------------------------------------------
// 4. Engines that reject the tarball or report another image

#[test]
fn containerd_rejecting_the_tarball_passes_its_message_through_and_leaves_the_cache_alone() {
    let c = Cache::new();
    let p = push_fresh_image("rejected");
    c.pull(&p.reference);
    let before = c.snapshot();
    let e = Engine::containerd(
        &c,
        r#"case " $* " in *" images import "*) cat >/dev/null; echo "ctr: fake rejection" >&2; exit 1;; esac"#,
    );
    let m = e.mark();
    let out = c.run(&e.env, &["load", &p.reference, "--engine", "containerd"]);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("ctr: fake rejection"),
        "the engine's message is not passed through:\n{}",
        out.stderr
    );
    // It was asked to import, and holds nothing.
    assert!(e.activity(m, &p.image_id).iter().any(|a| a == "load"));
    assert_eq!(e.ctr_listed(&p.reference), None);
    assert!(!e.holds(&p.image_id));
    assert_eq!(c.snapshot(), before);
    c.assert_fsck_clean();
}

#[test]
fn podman_reporting_another_image_id_after_load_is_an_error_naming_both() {
    let c = Cache::new();
    let p = push_fresh_image("other-id");
    c.pull(&p.reference);
    let before = c.snapshot();
    let hook = format!(
        r#"case " $* " in *" image inspect "*) out=$(REAL "$@"); rc=$?; printf '%s\n' "$out" | sed -E 's/"Id": "[0-9a-f]{{64}}"/"Id": "{FAKE_HEX}"/'; exit $rc;; esac"#
    );
    let e = Engine::podman(&c, &hook);
    let out = c.run(&e.env, &["load", &p.reference, "--engine", "podman"]);
    assert_ne!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains(&p.image_id) && out.stderr.contains(&format!("sha256:{FAKE_HEX}")),
        "the message does not name both image IDs:\n{}",
        out.stderr
    );
    // The real podman did load it, under the real ID: the check read the (faked) answer.
    assert_eq!(e.id_of(&p.reference).as_deref(), Some(p.image_id.as_str()));
    assert_eq!(c.snapshot(), before);
    c.assert_fsck_clean();
}

// ---------------------------------------------------------------------------------------------
// 5. Unknown engine, absent CRI-O

#[test]
fn an_unknown_engine_is_a_usage_error() {
    let c = Cache::new();
    for cmd in ["status", "load"] {
        let out = c.run(&[], &[cmd, "busybox:v1", "--engine", "bogus"]);
        assert_eq!(out.code, 2, "{cmd}: {}\n{}", out.stdout, out.stderr);
        assert!(
            out.stderr
                .contains("auto, docker, podman, containerd or crio"),
            "{}",
            out.stderr
        );
    }
    assert!(!c.root.join("blobs").exists() || c.blob_files().is_empty());
}

#[test]
fn crio_without_a_runtime_exits_3_naming_its_socket() {
    let c = Cache::new();
    let p = push_fresh_image("crio");
    c.pull(&p.reference);
    let before = c.snapshot();
    let gone = c.path("crio.sock");
    let cases = [
        (Vec::new(), "/var/run/crio/crio.sock".to_owned()),
        (
            vec![var(
                "CONTAINER_RUNTIME_ENDPOINT",
                format!("unix://{}", gone.display()),
            )],
            s(&gone).to_owned(),
        ),
    ];
    assert!(!Path::new("/var/run/crio/crio.sock").exists());
    for (env, sock) in &cases {
        for cmd in ["status", "load"] {
            let out = c.run(env, &[cmd, &p.reference, "--engine", "crio"]);
            assert_eq!(out.code, 3, "{cmd}: {}\n{}", out.stdout, out.stderr);
            assert!(
                out.stderr.contains("crio")
                    && out.stderr.contains(sock.as_str())
                    && out.stderr.contains("CONTAINER_RUNTIME_ENDPOINT"),
                "{cmd}: {}",
                out.stderr
            );
        }
    }
    assert_eq!(c.snapshot(), before);
}

/// A CRI runtime that answers (a socket that accepts, a `crictl` that lists no image) still
/// cannot import: `load --engine crio` says to use podman, and exits 3.
#[test]
fn crio_load_says_cri_o_cannot_import_and_names_podman() {
    let c = Cache::new();
    let p = push_fresh_image("crio-up");
    c.pull(&p.reference);
    let sock = c.path("fake-crio.sock");
    let _listener = UnixListener::bind(&sock).unwrap();
    let bin = c.path("crictl-bin");
    fs::create_dir_all(&bin).unwrap();
    let crictl = bin.join("crictl");
    fs::write(
        &crictl,
        "#!/bin/sh\ncase \" $* \" in *\" images \"*) echo '{\"images\":[]}';; *) echo 'Version: 0.1.0';; esac\n",
    )
    .unwrap();
    fs::set_permissions(&crictl, fs::Permissions::from_mode(0o755)).unwrap();
    let env = [
        var(
            "CONTAINER_RUNTIME_ENDPOINT",
            format!("unix://{}", sock.display()),
        ),
        path_with(&bin),
    ];
    let doc = c.json_code(&env, &["status", &p.reference, "--engine", "crio"], 1);
    assert_eq!(doc["engine"]["kind"], "crio", "{doc:#}");
    assert_eq!(doc["engine"]["present"], false, "{doc:#}");
    assert_eq!(doc["valid"], true, "{doc:#}");
    let out = c.run(&env, &["load", &p.reference, "--engine", "crio"]);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("no image import") && out.stderr.contains("--engine podman"),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// 6. The engine's tag names another image

#[test]
fn docker_tag_naming_another_image_is_reported_and_moved_by_load() {
    let c = Cache::new();
    let a = push_fresh_image("tag-a");
    let b = push_fresh_image("tag-b");
    let e = Engine::docker(&[&a.reference, &b.reference, &a.image_id, &b.image_id]);
    let r = a.reference.as_str();

    assert_eq!(load(&c, &e, r)["action"], "loaded");
    assert_eq!(load(&c, &e, &b.reference)["action"], "loaded");
    // a's name now points at b; a stays in the engine, untagged.
    e.cli(&["tag", &b.reference, r]).ok("docker tag");
    assert_eq!(e.id_of(r).as_deref(), Some(b.image_id.as_str()));
    assert!(e.holds(&a.image_id));

    let doc = status(&c, &e, r, 1);
    assert_eq!(doc["image_id"], a.image_id.as_str(), "{doc:#}");
    assert_eq!(doc["valid"], true, "{doc:#}");
    assert_eq!(doc["engine"]["present"], true, "{doc:#}");
    assert_eq!(doc["engine"]["engine_id"], a.image_id.as_str(), "{doc:#}");
    assert_eq!(doc["engine"]["tagged"], false, "{doc:#}");
    assert_eq!(
        doc["engine"]["tag_image_id"],
        b.image_id.as_str(),
        "{doc:#}"
    );
    let text = c.run(&e.env, &["status", r, "--engine", "docker"]);
    assert_eq!(text.code, 1, "{}", text.stderr);

    let m = e.mark();
    let doc = load(&c, &e, r);
    assert_eq!(doc["action"], "tagged", "{doc:#}");
    assert_eq!(doc["pulled"], false, "{doc:#}");
    let did = e.activity(m, &a.image_id);
    assert!(did.iter().any(|x| x == "tag"), "{did:?}");
    assert!(!did.iter().any(|x| x == "load"), "{did:?}");
    assert_eq!(e.id_of(r).as_deref(), Some(a.image_id.as_str()));
    // b keeps its own name.
    assert_eq!(e.id_of(&b.reference).as_deref(), Some(b.image_id.as_str()));
    let doc = status(&c, &e, r, 0);
    assert_eq!(doc["engine"]["tagged"], true, "{doc:#}");
    assert_eq!(
        doc["engine"]["tag_image_id"],
        a.image_id.as_str(),
        "{doc:#}"
    );
}
