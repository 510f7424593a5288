//! `imgcache save` and `imgcache import` against the real engines: what `save` writes (in each
//! format) verifies deep with the cached image ID, is deterministic, copies the stored blobs byte
//! for byte, and loads in dockerd 20.10, podman 4.3 and containerd 1.6 under that ID; `import`
//! of every real fixture keeps its image IDs, stores a blob once, and refuses a damaged archive
//! without recording anything.
//!
//! Every test has its own cache root (and HOME). Docker tests load images under a repository no
//! other test uses and remove the tag afterwards; podman runs on a private store per load, and
//! containerd is a private daemon started (and stopped) by the one test that uses it.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::support::*;

const FORMATS: [&str; 3] = ["combined", "legacy", "oci"];
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// busybox:v1 of the test registry, as every fixture of it holds it.
const BUSYBOX_ID: &str = "sha256:3f22b83bc3fbbd5fb965afd0dc18b64fb9adc4d430119e33b425ab2ce15875d9";

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

/// A repository name no other test (or earlier run) uses.
fn unique(what: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "save-{what}-{}-{}-{}",
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

/// The name a reference is recorded under: docker.io and library/ made explicit.
fn normalize(r: &str) -> String {
    match r.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => r.to_owned(),
        Some(_) => format!("docker.io/{r}"),
        None => format!("docker.io/library/{r}"),
    }
}

/// The result of one run of a program, stdout kept as bytes (a tarball, with `-o -`).
struct Out {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Out {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.text(),
                self.stderr
            )
        })
    }

    fn ok(self, what: &str) -> Self {
        assert_eq!(
            self.code,
            0,
            "{what}\nstdout:\n{}\nstderr:\n{}",
            self.text(),
            self.stderr
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
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Names in a directory (empty when it does not exist).
fn listing(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A cache root and a HOME of its own, and room for files beside them.
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

    /// A path in the test's own directory (beside the cache root).
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Out {
        let mut c = Command::new(bin());
        c.arg("--root").arg(&self.root).args(args);
        c.env("HOME", &self.home);
        for v in [
            "DOCKER_CONFIG",
            "REGISTRY_AUTH_FILE",
            "XDG_RUNTIME_DIR",
            "XDG_CONFIG_HOME",
            "XDG_CACHE_HOME",
            "IMGCACHE_HOME",
            "IMGCACHE_LOG",
        ] {
            c.env_remove(v);
        }
        run_cmd(&mut c)
    }

    /// Runs with `--json`, expecting `code`.
    fn json_code(&self, args: &[&str], code: i32) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let r = self.run(&a);
        assert_eq!(
            r.code,
            code,
            "imgcache {args:?}\nstdout:\n{}\nstderr:\n{}",
            r.text(),
            r.stderr
        );
        r.json()
    }

    fn json(&self, args: &[&str]) -> Value {
        self.json_code(args, 0)
    }

    /// Pulls `reference`; its image ID.
    fn pull(&self, reference: &str) -> String {
        self.json(&["pull", reference])["image_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn save(&self, reference: &str, format: &str, out: &Path) -> Value {
        self.json(&["save", reference, "-o", s(out), "--format", format])
    }

    /// `--json save REF -o -`: the tarball, and nothing else, on stdout.
    fn save_stdout(&self, reference: &str, format: &str) -> Vec<u8> {
        self.run(&["--json", "save", reference, "-o", "-", "--format", format])
            .ok("save -o -")
            .stdout
    }

    fn import(&self, file: &Path, extra: &[&str]) -> Value {
        let mut a = vec!["import", s(file)];
        a.extend_from_slice(extra);
        let doc = self.json(&a);
        assert_eq!(doc["ok"], true, "{doc:#}");
        doc
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    fn blob(&self, digest: &str) -> Vec<u8> {
        fs::read(self.blob_dir().join(hex(digest))).unwrap()
    }

    /// The blob files on disk, by name, with their sizes.
    fn blob_files(&self) -> BTreeSet<(String, u64)> {
        fs::read_dir(self.blob_dir())
            .map(|rd| {
                rd.map(|e| {
                    let e = e.unwrap();
                    (
                        format!("sha256:{}", e.file_name().to_string_lossy()),
                        e.metadata().unwrap().len(),
                    )
                })
                .collect()
            })
            .unwrap_or_default()
    }

    /// `ls --json`: (reference, image ID, platform) of every entry.
    fn ls(&self) -> BTreeSet<(String, String, String)> {
        self.json(&["ls"])["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let f = |k: &str| e[k].as_str().unwrap().to_owned();
                (f("reference"), f("image_id"), f("platform"))
            })
            .collect()
    }

    /// `fsck --deep` must be clean, with no blob nobody needs.
    fn assert_fsck_clean(&self) {
        let doc = self.json(&["fsck", "--deep"]);
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
        assert_eq!(
            doc["blobs_checked"].as_u64().unwrap() as usize,
            self.blob_files().len(),
            "{doc:#}"
        );
    }

    /// No half-written blob left behind.
    fn assert_no_ingest(&self) {
        let left = listing(&self.root.join("ingest"));
        assert!(left.is_empty(), "left in ingest/: {left:?}");
    }
}

/// `verify --deep --no-memo FILE` must pass, with one image of `id` under `tags`; its dialect.
fn assert_verifies(c: &Cache, file: &Path, id: &str, tags: &[&str]) -> String {
    let doc = c.json(&["verify", "--deep", "--no-memo", s(file)]);
    assert_eq!(doc["ok"], true, "{doc:#}");
    let f = &doc["files"][0];
    let images = f["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{doc:#}");
    assert_eq!(images[0]["ok"], true, "{doc:#}");
    assert_eq!(images[0]["image_id"], id, "{doc:#}");
    assert_eq!(images[0]["tags"], json!(tags), "{doc:#}");
    f["dialect"].as_str().unwrap().to_owned()
}

/// An image pushed to the plain test registry as `<repo>:v1`: gzip layers of random bytes.
struct Pushed {
    reference: String,
    config_digest: String,
}

fn push_fresh_image(what: &str, sizes: &[usize]) -> Pushed {
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
    for &size in sizes {
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
    let config_digest = put(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
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
        config_digest,
    }
}

// --- engines ---

fn docker(args: &[&str]) -> Out {
    let v = &env().vars;
    let cli = v
        .get("TEST_DOCKER_CLI")
        .map_or("/usr/bin/docker", String::as_str);
    run_cmd(
        Command::new(cli)
            .env("DOCKER_HOST", &v["DOCKER_HOST"])
            .args(args),
    )
}

/// A tag loaded into dockerd: removed when dropped (also when the test fails).
struct DockerTag(String);

impl DockerTag {
    /// `docker load -i FILE`, expecting `tag`; the image ID dockerd reports for it.
    fn load(file: &Path, tag: &str) -> (Self, String) {
        let guard = Self(tag.to_owned());
        let load = docker(&["load", "-i", s(file)]).ok("docker load");
        assert!(
            load.text().contains(&format!("Loaded image: {tag}")),
            "{}",
            load.text()
        );
        let id = docker(&["image", "inspect", "-f", "{{.Id}}", tag]).ok("docker inspect");
        (guard, id.text().trim().to_owned())
    }

    /// Removes the tag now, and checks it is gone (so the next load reads every layer again).
    fn remove(self) {
        docker(&["rmi", &self.0]).ok("docker rmi");
        assert_ne!(docker(&["image", "inspect", &self.0]).code, 0);
        std::mem::forget(self);
    }
}

impl Drop for DockerTag {
    fn drop(&mut self) {
        docker(&["rmi", &self.0]);
    }
}

/// Podman on a private store under `base`.
fn podman(base: &Path, args: &[&str]) -> Out {
    let tmp = base.join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    run_cmd(
        Command::new("podman")
            .arg("--root")
            .arg(base.join("root"))
            .arg("--runroot")
            .arg(base.join("run"))
            .arg("--tmpdir")
            .arg(&tmp)
            .args([
                "--storage-driver",
                "vfs",
                "--events-backend=none",
                "--cgroup-manager=cgroupfs",
            ])
            .env("TMPDIR", &tmp)
            .args(args),
    )
}

fn testenv_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/testenv")
        .join(name)
}

/// A private containerd, stopped (and its directory removed) when dropped.
struct Containerd {
    dir: tempfile::TempDir,
    sock: PathBuf,
}

impl Containerd {
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

    fn ctr(&self, args: &[&str]) -> Out {
        run_cmd(
            Command::new("ctr")
                .arg("-a")
                .arg(&self.sock)
                .args(["-n", "k8s.io"])
                .args(args),
        )
    }

    /// The top-level digest `ctr images ls` gives `name`, if listed.
    fn listed(&self, name: &str) -> Option<String> {
        let ls = self.ctr(&["images", "ls"]).ok("ctr images ls");
        ls.text()
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|c| c.first() == Some(&name))
            .map(|c| c[2].to_owned())
    }

    /// `ctr images import` of `file`, which must name `name`: (top-level digest, config digest).
    fn import(&self, file: &Path, name: &str) -> (String, String) {
        self.ctr(&["images", "rm", name]);
        assert_eq!(self.listed(name), None);
        self.ctr(&["images", "import", "--snapshotter", "native", s(file)])
            .ok("ctr images import");
        let top = self
            .listed(name)
            .unwrap_or_else(|| panic!("ctr import of {} gave no {name}", file.display()));
        let manifest = self
            .ctr(&["content", "get", &top])
            .ok("ctr content get")
            .json();
        let config = manifest["config"]["digest"].as_str().unwrap().to_owned();
        (top, config)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let pidfile = self.dir.path().join("containerd.pid");
        let conf = self.dir.path().join("config.toml");
        let _ = Command::new("bash")
            .arg(testenv_script("stop-pidfile.sh"))
            .arg(&pidfile)
            .arg("20")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// --- archives ---

/// The regular files of a tarball, by name.
fn files_of(path: &Path) -> Vec<Entry> {
    read_tar(path)
        .into_iter()
        .filter(|e| e.header.entry_type().is_file())
        .collect()
}

fn entry<'a>(entries: &'a [Entry], name: &str) -> &'a Entry {
    entries
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no entry {name}"))
}

/// Where the data of entry `name` starts in the (plain) tarball, and its size.
fn entry_range(path: &Path, name: &str) -> (u64, u64) {
    let mut a = tar::Archive::new(fs::File::open(path).unwrap());
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        if e.path_bytes().as_ref() == name.as_bytes() {
            assert!(e.header().entry_type().is_file(), "{name} is not a file");
            return (e.raw_file_position(), e.size());
        }
    }
    panic!("no entry {name} in {}", path.display())
}

/// Copies `src` to `dst` with the byte at `at` flipped.
fn copy_flipped(src: &Path, dst: &Path, at: u64) {
    let mut data = fs::read(src).unwrap();
    data[at as usize] ^= 0x55;
    fs::write(dst, data).unwrap();
}

/// A docker-archive as skopeo writes one (uncompressed `<diffid>.tar` layers) of random layers.
fn write_docker_archive(path: &Path, tag: &str, sizes: &[usize]) -> (String, u64) {
    let mut entries = Vec::new();
    let mut diff_ids = Vec::new();
    let mut names = Vec::new();
    let mut bytes = 0;
    for &size in sizes {
        let tar = layer_tar(size);
        let d = digest_of(&tar);
        names.push(format!("{}.tar", hex(&d)));
        entries.push(Entry::file(&format!("{}.tar", hex(&d)), &tar));
        bytes += tar.len() as u64;
        diff_ids.push(d);
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Labels": {"test.tag": tag}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let id = digest_of(&config);
    entries.push(Entry::file(&format!("{}.json", hex(&id)), &config));
    let manifest =
        json!([{"Config": format!("{}.json", hex(&id)), "RepoTags": [tag], "Layers": names}]);
    entries.push(Entry::file(
        "manifest.json",
        manifest.to_string().as_bytes(),
    ));
    write_tar(path, &entries);
    (id, bytes)
}

// ---------------------------------------------------------------------------------------------
// 1. What save writes.

/// Checks the entries of a save of `reference` against the blobs of cache `c`.
fn assert_save_layout(c: &Cache, file: &Path, format: &str, reference: &str) {
    let inspect = c.json(&["inspect", reference]);
    let id = inspect["image_id"].as_str().unwrap();
    let manifest_digest = inspect["manifest_digest"].as_str().unwrap();
    let layers: Vec<&str> = inspect["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    let (repo, tag) = reference.rsplit_once(':').unwrap();
    let entries = files_of(file);
    let names: BTreeSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    match format {
        "combined" | "oci" => {
            let blob_name = |d: &str| format!("blobs/sha256/{}", hex(d));
            let mut want: BTreeSet<String> = ["oci-layout", "index.json"].map(String::from).into();
            want.insert(blob_name(id));
            want.insert(blob_name(manifest_digest));
            want.extend(layers.iter().map(|l| blob_name(l)));
            if format == "combined" {
                want.insert("manifest.json".into());
            }
            assert_eq!(names, want.iter().map(String::as_str).collect(), "{format}");
            // Every blob byte for byte as stored, under its own digest.
            for e in entries.iter().filter(|e| e.name.starts_with("blobs/")) {
                let d = e.name.strip_prefix("blobs/sha256/").unwrap();
                assert_eq!(sha256_hex(&e.data), d, "{format}: {}", e.name);
                assert!(
                    c.blob(d) == e.data,
                    "{format}: {} differs from the store",
                    e.name
                );
            }
            let index: Value = serde_json::from_slice(&entry(&entries, "index.json").data).unwrap();
            assert_eq!(
                index["manifests"],
                json!([{
                    "mediaType": inspect["media_type"],
                    "digest": manifest_digest,
                    "size": c.blob(manifest_digest).len(),
                    "annotations": {
                        "io.containerd.image.name": reference,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }]),
                "{format}"
            );
            if format == "combined" {
                let m: Value =
                    serde_json::from_slice(&entry(&entries, "manifest.json").data).unwrap();
                assert_eq!(
                    m,
                    json!([{
                        "Config": blob_name(id),
                        "RepoTags": [reference],
                        "Layers": layers.iter().map(|l| blob_name(l)).collect::<Vec<_>>(),
                    }])
                );
            }
        }
        "legacy" => {
            let m: Value = serde_json::from_slice(&entry(&entries, "manifest.json").data).unwrap();
            let config_name = format!("{}.json", hex(id));
            assert_eq!(m[0]["Config"], config_name.as_str(), "{m:#}");
            assert_eq!(m[0]["RepoTags"], json!([reference]), "{m:#}");
            assert_eq!(m.as_array().unwrap().len(), 1, "{m:#}");
            assert!(c.blob(id) == entry(&entries, &config_name).data);
            let layer_names: Vec<&str> = m[0]["Layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(layer_names.len(), layers.len(), "{m:#}");
            for (name, digest) in layer_names.iter().zip(&layers) {
                let data = &entry(&entries, name).data;
                assert_eq!(digest_of(data), *digest, "legacy: {name}");
                assert!(
                    c.blob(digest) == *data,
                    "legacy: {name} differs from the store"
                );
            }
            let top = layer_names
                .last()
                .unwrap()
                .strip_suffix("/layer.tar")
                .unwrap();
            let repositories: Value =
                serde_json::from_slice(&entry(&entries, "repositories").data).unwrap();
            assert_eq!(repositories, json!({ repo: { tag: top } }));
        }
        _ => unreachable!(),
    }
}

#[test]
fn save_in_every_format_verifies_deep_is_deterministic_and_copies_blobs_byte_for_byte() {
    let c = Cache::new();
    // A second cache with the same pulls: the same image gives the same bytes anywhere.
    let other = Cache::new();
    for name in ["busybox:v1", "multiarch:v1"] {
        let reference = format!("{}/{name}", registry());
        let id = c.pull(&reference);
        assert_eq!(other.pull(&reference), id);
        for format in FORMATS {
            let a = c.path(&format!("{name}-{format}-a.tar"));
            let b = c.path(&format!("{name}-{format}-b.tar"));
            let doc = c.save(&reference, format, &a);
            assert_eq!(
                doc,
                json!({"ok": true, "reference": reference, "image_id": id, "output": s(&a), "format": format})
            );
            c.save(&reference, format, &b);
            let bytes = fs::read(&a).unwrap();
            assert!(
                bytes == fs::read(&b).unwrap(),
                "{name} {format}: two saves differ"
            );
            assert!(
                bytes == c.save_stdout(&reference, format),
                "{name} {format}: -o - differs from -o FILE"
            );
            let o = other.path(&format!("{name}-{format}.tar"));
            other.save(&reference, format, &o);
            assert!(
                bytes == fs::read(&o).unwrap(),
                "{name} {format}: another cache's save differs"
            );

            let dialect = assert_verifies(&c, &a, &id, &[&reference]);
            let want = match format {
                "combined" => "docker-combined",
                "legacy" => "docker-legacy",
                _ => "oci",
            };
            assert_eq!(dialect, want);
            assert_save_layout(&c, &a, format, &reference);
        }
    }
    // Nothing but the output files appeared beside them (no partial files).
    let names = listing(c.dir.path());
    assert!(
        names
            .iter()
            .all(|n| n == "root" || n == "home" || n.ends_with("-a.tar") || n.ends_with("-b.tar")),
        "{names:?}"
    );
    c.assert_fsck_clean();
}

// ---------------------------------------------------------------------------------------------
// 2. The saves load in the engines.

#[test]
fn combined_and_legacy_saves_load_in_dockerd_under_the_image_id_and_tag() {
    // Random layers dockerd has never seen, so that it reads (gunzips and checks) every one.
    let img = push_fresh_image("docker", &[300_000, 40_000]);
    let c = Cache::new();
    assert_eq!(c.pull(&img.reference), img.config_digest);
    for format in ["combined", "legacy"] {
        let file = c.path(&format!("{format}.tar"));
        c.save(&img.reference, format, &file);
        let (tag, id) = DockerTag::load(&file, &img.reference);
        assert_eq!(id, img.config_digest, "{format}");
        tag.remove();
    }
    // Documented limitation (FORMATS.md): docker 20.10 cannot load a plain OCI layout.
    let file = c.path("oci.tar");
    c.save(&img.reference, "oci", &file);
    let _tag = DockerTag(img.reference.clone());
    let load = docker(&["load", "-i", s(&file)]);
    assert_ne!(load.code, 0, "{}", load.text());
    assert!(load.stderr.contains("blobs/json"), "{}", load.stderr);
}

#[test]
fn combined_and_oci_saves_load_in_podman_under_the_image_id() {
    let c = Cache::new();
    let reference = format!("{}/busybox:v1", registry());
    let id = c.pull(&reference);
    for format in ["combined", "oci"] {
        let file = c.path(&format!("{format}.tar"));
        c.save(&reference, format, &file);
        let store = c.path(&format!("podman-{format}"));
        let load = podman(&store, &["load", "-i", s(&file)]).ok("podman load");
        assert!(
            load.text().contains(&format!("Loaded image: {reference}")),
            "{format}: {}",
            load.text()
        );
        let got = podman(
            &store,
            &["image", "inspect", "--format", "{{.Id}}", &reference],
        )
        .ok("podman image inspect");
        assert_eq!(got.text().trim(), hex(&id), "{format}");
    }
}

#[test]
fn combined_and_oci_saves_import_into_containerd_under_the_image_id() {
    let c = Cache::new();
    let refs = [
        format!("{}/busybox:v1", registry()),
        format!("{}/multiarch:v1", registry()),
    ];
    let ids: Vec<String> = refs.iter().map(|r| c.pull(r)).collect();
    let ctd = Containerd::start();
    for (reference, id) in refs.iter().zip(&ids) {
        let manifest_digest = c.json(&["inspect", reference])["manifest_digest"]
            .as_str()
            .unwrap()
            .to_owned();
        for format in ["combined", "oci"] {
            let file = c.path(&format!("{}-{format}.tar", hex(id)));
            c.save(reference, format, &file);
            let (top, config) = ctd.import(&file, reference);
            assert_eq!(&config, id, "{reference} {format}");
            // ctr takes the manifest the index names: the cached one, unchanged.
            assert_eq!(top, manifest_digest, "{reference} {format}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Import of the real fixtures.

/// The references `import` records for image `i` of a fixture.
fn expected_refs(fx: &Fixture, i: usize) -> Vec<String> {
    match fx.tags.len() {
        0 => vec![fx.image_ids[i].clone()],
        n if n == fx.image_ids.len() => vec![normalize(&fx.tags[i])],
        // One tag for all the images of an index (one per platform).
        _ => vec![normalize(&fx.tags[0])],
    }
}

fn report_ids(doc: &Value) -> Vec<String> {
    doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["image_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_fixture_imports_under_its_image_ids_and_a_second_import_stores_nothing() {
    assert!(
        env().rows.len() >= 10,
        "fixtures.tsv has {} rows",
        env().rows.len()
    );
    for fx in &env().rows {
        let what = &fx.producer;
        let c = Cache::new();
        let first = c.import(&fx.file, &[]);
        assert_eq!(report_ids(&first), fx.image_ids, "{what}: {first:#}");
        let mut want_ls = BTreeSet::new();
        let mut manifests = BTreeSet::new();
        let mut stored = 0;
        for (i, img) in first["images"].as_array().unwrap().iter().enumerate() {
            assert_eq!(
                img["references"],
                json!(expected_refs(fx, i)),
                "{what}: {first:#}"
            );
            let p = img["platform"].as_str().unwrap();
            assert!(p.starts_with("linux/"), "{what}: {first:#}");
            for r in img["references"].as_array().unwrap() {
                want_ls.insert((
                    r.as_str().unwrap().to_owned(),
                    fx.image_ids[i].clone(),
                    p.to_owned(),
                ));
            }
            manifests.insert(img["manifest_digest"].as_str().unwrap().to_owned());
            stored += img["bytes_stored"].as_u64().unwrap();
        }
        assert_eq!(c.ls(), want_ls, "{what}");
        c.assert_fsck_clean();
        c.assert_no_ingest();
        // bytes_stored counts the layers written: every blob but configs and manifests, once.
        let blobs = c.blob_files();
        let layer_bytes: u64 = blobs
            .iter()
            .filter(|(d, _)| !fx.image_ids.contains(d) && !manifests.contains(d))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(stored, layer_bytes, "{what}: {first:#}");
        assert!(stored > 0, "{what}");

        let second = c.import(&fx.file, &[]);
        assert_eq!(report_ids(&second), fx.image_ids, "{what}");
        for (a, b) in first["images"]
            .as_array()
            .unwrap()
            .iter()
            .zip(second["images"].as_array().unwrap())
        {
            assert_eq!(b["bytes_stored"], 0, "{what}: {second:#}");
            assert_eq!(a["manifest_digest"], b["manifest_digest"], "{what}");
            assert_eq!(a["references"], b["references"], "{what}");
        }
        assert_eq!(
            c.blob_files(),
            blobs,
            "{what}: the second import wrote blobs"
        );
        assert_eq!(c.ls(), want_ls, "{what}");
        c.assert_fsck_clean();
    }
}

#[test]
fn import_image_picks_one_image_and_tag_names_it_and_tag_alone_wants_a_pick() {
    for producer in ["docker-save-multi", "podman-docker-archive-multi"] {
        let fx = env().fixture(producer);
        assert_eq!(fx.image_ids.len(), 2, "{producer}");
        assert_eq!(fx.tags.len(), 2, "{producer}");
        for (i, tag) in fx.tags.iter().enumerate() {
            let c = Cache::new();
            let doc = c.import(&fx.file, &["--image", tag]);
            assert_eq!(
                report_ids(&doc),
                [fx.image_ids[i].as_str()],
                "{producer} {tag}: {doc:#}"
            );
            assert_eq!(doc["images"][0]["references"], json!([tag]), "{doc:#}");
            let ls = c.ls();
            assert_eq!(ls.len(), 1, "{ls:?}");
            assert_eq!(ls.first().unwrap().1, fx.image_ids[i]);
            // Only that image's blobs are stored: none unreferenced.
            c.assert_fsck_clean();
        }

        // Picked by image ID, recorded under --tag.
        let c = Cache::new();
        let doc = c.import(
            &fx.file,
            &["--image", &fx.image_ids[1], "--tag", "example.test/x:1"],
        );
        assert_eq!(report_ids(&doc), [fx.image_ids[1].as_str()], "{doc:#}");
        assert_eq!(doc["images"][0]["references"], json!(["example.test/x:1"]));
        let ls = c.ls();
        assert_eq!(ls.len(), 1, "{ls:?}");
        let (r, id, _) = ls.first().unwrap();
        assert_eq!((r.as_str(), id), ("example.test/x:1", &fx.image_ids[1]));
        c.assert_fsck_clean();

        // --tag for two images: refused, nothing recorded.
        let c = Cache::new();
        let r = c.run(&["import", s(&fx.file), "--tag", "example.test/x:1"]);
        assert!(r.code == 2, "{producer}: {} {}", r.code, r.stderr);
        assert!(r.stderr.contains("pick one with --image"), "{}", r.stderr);
        assert!(c.ls().is_empty());
        assert!(c.blob_files().is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Round trips: an imported archive saved again loads in dockerd under the same ID.

#[test]
fn an_imported_fixture_saved_combined_verifies_and_loads_in_dockerd_under_the_same_id() {
    // A docker-archive (no manifest kept: one is made) and an OCI archive (its own manifest).
    for producer in ["skopeo-docker-archive", "podman-oci-archive"] {
        let fx = env().fixture(producer);
        let id = &fx.image_ids[0];
        let tag = format!("{}/{}:v1", registry(), unique("rt"));
        let c = Cache::new();
        let doc = c.import(&fx.file, &["--tag", &tag]);
        assert_eq!(report_ids(&doc), [id.as_str()], "{doc:#}");
        let file = c.path("saved.tar");
        c.save(&tag, "combined", &file);
        assert_verifies(&c, &file, id, &[&tag]);
        let (guard, got) = DockerTag::load(&file, &tag);
        assert_eq!(&got, id, "{producer}");
        guard.remove();
    }
}

#[test]
fn a_docker_archive_of_new_layers_round_trips_through_import_and_save_into_dockerd() {
    // Layers dockerd has never seen: it must read and check every byte of what save wrote.
    let c = Cache::new();
    let tag = format!("{}/{}:v1", registry(), unique("new"));
    let src = c.path("src.tar");
    let (id, layer_bytes) = write_docker_archive(&src, &tag, &[250_000, 30_000]);
    let doc = c.import(&src, &[]);
    assert_eq!(report_ids(&doc), [id.as_str()], "{doc:#}");
    assert_eq!(doc["images"][0]["references"], json!([tag]));
    assert_eq!(doc["images"][0]["bytes_stored"], layer_bytes, "{doc:#}");
    for format in ["combined", "legacy"] {
        let file = c.path(&format!("{format}.tar"));
        c.save(&tag, format, &file);
        assert_verifies(&c, &file, &id, &[&tag]);
        let (guard, got) = DockerTag::load(&file, &tag);
        assert_eq!(got, id, "{format}");
        guard.remove();
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Damaged archives are refused, and nothing of them is recorded.

#[test]
fn damaged_archives_are_refused_by_import_and_nothing_is_recorded() {
    let c = Cache::new();
    // Something in the cache already, to see that it is left as it was.
    c.import(&env().fixture("docker-save-digest").file, &[]);
    let ls = c.ls();
    let blobs = c.blob_files();

    let skopeo = &env().fixture("skopeo-docker-archive").file;
    let skopeo_layer0 = "fe02a815012db219630be84b47e9f8cbc60c14811726f038a3fd72f90aebc7a0.tar";
    let (at, size) = entry_range(skopeo, skopeo_layer0);

    let truncated = c.path("truncated.tar");
    fs::write(
        &truncated,
        &fs::read(skopeo).unwrap()[..(at + size / 2) as usize],
    )
    .unwrap();

    let flipped = c.path("flipped.tar");
    copy_flipped(skopeo, &flipped, at + size / 2);

    // An OCI archive: a gzip layer blob that no longer hashes to its digest.
    let oci = &env().fixture("skopeo-oci-archive-from-oci").file;
    let oci_layer = "blobs/sha256/4af18a157c4ee44472104124900fc3be9a3d22013baf294f288606d724f4fbfd";
    let (at, size) = entry_range(oci, oci_layer);
    let oci_flipped = c.path("oci-flipped.tar");
    copy_flipped(oci, &oci_flipped, at + size / 2);

    // Two images, the second one's own layer damaged: the intact first is not recorded either.
    let multi = env().fixture("docker-save-multi");
    let shown = c.json(&["inspect", s(&multi.file)]);
    let first_layers: Vec<&Value> = shown["images"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["diff_id"])
        .collect();
    let (li, own) = shown["images"][1]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .find(|(_, l)| !first_layers.contains(&&l["diff_id"]))
        .expect("a layer of the second image only");
    let (at, size) = entry_range(&multi.file, own["entry"].as_str().unwrap());
    let multi_flipped = c.path("multi-flipped.tar");
    copy_flipped(&multi.file, &multi_flipped, at + size / 2);

    // (archive, the check import names, the layer and image it names)
    let cases = [
        (truncated.as_path(), "truncated", None),
        (flipped.as_path(), "diff-id", Some((0, BUSYBOX_ID))),
        (oci_flipped.as_path(), "blob-digest", Some((0, BUSYBOX_ID))),
        (
            multi_flipped.as_path(),
            "diff-id",
            Some((li, multi.image_ids[1].as_str())),
        ),
    ];
    for (file, check, layer) in cases {
        let what = file.file_name().unwrap().to_string_lossy();
        let doc = c.json_code(&["import", s(file)], 1);
        assert_eq!(doc["ok"], false, "{what}: {doc:#}");
        assert_eq!(doc["error"]["check"], check, "{what}: {doc:#}");
        if let Some((i, id)) = layer {
            assert_eq!(doc["error"]["layer"], i, "{what}: {doc:#}");
            let msg = doc["error"]["message"].as_str().unwrap();
            assert!(msg.contains(id), "{what}: {msg}");
        }
        let human = c.run(&["import", s(file)]);
        assert_eq!(human.code, 1, "{what}");
        assert!(human.stderr.contains(s(file)), "{what}: {}", human.stderr);

        assert_eq!(c.ls(), ls, "{what}: ls changed");
        assert_eq!(c.blob_files(), blobs, "{what}: blob files changed");
        c.assert_no_ingest();
        c.assert_fsck_clean();
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Failed saves leave no file.

#[test]
fn failed_saves_exit_with_the_right_code_and_leave_no_file() {
    let c = Cache::new();
    let reference = format!("{}/busybox:v1", registry());
    let id = c.pull(&reference);
    let out_dir = c.path("out");
    fs::create_dir(&out_dir).unwrap();

    // Not in the cache: exit 1, to a file or to stdout.
    let missing_ref = format!("{}/{}:v1", registry(), unique("absent"));
    let file = out_dir.join("absent.tar");
    let r = c.run(&["save", &missing_ref, "-o", s(&file)]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("not in the cache"), "{}", r.stderr);
    let doc = c.json_code(&["save", &missing_ref, "-o", s(&file)], 1);
    assert_eq!(doc["ok"], false, "{doc:#}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not in the cache"),
        "{doc:#}"
    );
    let r = c.run(&["save", &missing_ref, "-o", "-"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{} bytes on stdout", r.stdout.len());
    assert!(listing(&out_dir).is_empty(), "{:?}", listing(&out_dir));

    // A directory that does not exist: exit 3, nothing created.
    let nowhere = c.path("no-such-dir").join("x.tar");
    let before = listing(c.dir.path());
    let r = c.run(&["save", &reference, "-o", s(&nowhere)]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("no-such-dir"), "{}", r.stderr);
    assert_eq!(listing(c.dir.path()), before);

    // A stored layer gone: exit 1 before writing; no new file, and an old one left intact.
    let layer = c.json(&["inspect", &reference])["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    fs::remove_file(c.blob_dir().join(hex(&layer))).unwrap();
    let doc = c.json_code(&["save", &reference, "-o", s(&file)], 1);
    assert_eq!(doc["error"]["check"], "missing-entry", "{doc:#}");
    assert!(!file.exists());
    let old = out_dir.join("old.tar");
    fs::write(&old, b"what was there before").unwrap();
    c.json_code(
        &["save", &reference, "-o", s(&old), "--format", "legacy"],
        1,
    );
    assert_eq!(fs::read(&old).unwrap(), b"what was there before");
    c.json_code(&["save", &id, "-o", s(&file)], 1);
    assert_eq!(listing(&out_dir), BTreeSet::from(["old.tar".to_owned()]));
}

#[test]
fn save_of_an_image_with_a_corrupt_stored_blob_fails_and_leaves_no_file() {
    let c = Cache::new();
    let reference = format!("{}/busybox:v1", registry());
    c.pull(&reference);
    let layer = c.json(&["inspect", &reference])["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = c.blob_dir().join(hex(&layer));
    let mut data = fs::read(&path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    let mut perm = fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(&path, perm).unwrap();
    fs::write(&path, &data).unwrap();

    let file = c.path("corrupt.tar");
    let r = c.run(&["save", &reference, "-o", s(&file)]);
    let written = file.exists();
    // What it wrote does not verify: the layer is not the one the manifest names.
    if written {
        let v = c.run(&["verify", "--deep", "--no-memo", s(&file)]);
        assert_eq!(v.code, 1, "{}", v.text());
    }
    assert_eq!(r.code, 1, "save exited {}: {}", r.code, r.stderr);
    assert!(!written, "a save that failed left {}", file.display());
    assert!(c.run(&["save", &reference, "-o", "-"]).code != 0);
}
