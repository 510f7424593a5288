//! Runs of the binary in a sandbox: a cache root and a HOME of their own, nothing of the machine's.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{
    PodmanStore, Run, bin, checked_stdout, hex, listing, output_of, path_str, sha256_hex, tempdir,
    watched,
};

/// Environment variables that would let the machine's credentials, engines or cache in: cleared
/// for every run, so that only what a test sets applies.
pub const CLEARED_VARS: [&str; 18] = [
    "DOCKER_CONFIG",
    "REGISTRY_AUTH_FILE",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "IMGCACHE_HOME",
    "IMGCACHE_LOG",
    "IMGCACHE_PODMAN_ARGS",
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "CONTAINER_HOST",
    "CONTAINER_CONNECTION",
    "CONTAINERD_ADDRESS",
    "CONTAINERD_NAMESPACE",
    "CONTAINERD_SNAPSHOTTER",
    "CONTAINER_RUNTIME_ENDPOINT",
];

/// A directory of its own: a cache root, a HOME without credentials, and room beside them for
/// files, engine stores, wrappers and logs.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub home: PathBuf,
    /// A run that takes longer is killed, and the test fails (a deadlock).
    watchdog: Option<Duration>,
}

impl Sandbox {
    /// A sandbox whose runs take as long as they take.
    pub fn new() -> Self {
        let dir = tempdir();
        let root = dir.path().join("root");
        let home = dir.path().join("home");
        fs::create_dir_all(&home).unwrap();
        Self {
            dir,
            root,
            home,
            watchdog: None,
        }
    }

    /// A sandbox whose runs are killed (failing the test) after `limit`.
    pub fn with_watchdog(limit: Duration) -> Self {
        Self {
            watchdog: Some(limit),
            ..Self::new()
        }
    }

    /// A path in the sandbox (beside the cache root).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Gives `cmd` the sandbox's HOME and none of [`CLEARED_VARS`]; stdin empty, output piped.
    pub fn isolate(&self, cmd: &mut Command) {
        cmd.env("HOME", &self.home);
        for v in CLEARED_VARS {
            cmd.env_remove(v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }

    /// `imgcache --root ROOT ARGS`, isolated.
    pub fn command_at(&self, root: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--root").arg(root).args(args);
        self.isolate(&mut c);
        c
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.command_at(&self.root, args)
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).spawn().expect("spawn imgcache")
    }

    /// Runs `cmd` to the end, or kills it once the watchdog fires; whether it did.
    fn finish(&self, cmd: &mut Command) -> (Run, bool) {
        match self.watchdog {
            Some(limit) => watched(cmd, limit),
            None => (output_of(cmd), false),
        }
    }

    /// Runs `cmd`, which must finish before the watchdog fires.
    fn finished(&self, cmd: &mut Command, args: &[&str]) -> Run {
        let (r, timed_out) = self.finish(cmd);
        assert!(
            !timed_out,
            "imgcache {args:?} did not finish in {:?}",
            self.watchdog.unwrap()
        );
        r
    }

    pub fn run_at(&self, root: &Path, args: &[&str]) -> Run {
        self.finished(&mut self.command_at(root, args), args)
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_at(&self.root, args)
    }

    /// `imgcache --root ROOT ARGS` with `env` set (after the clearing).
    pub fn run_with_env<K, V>(&self, env: &[(K, V)], args: &[&str]) -> Run
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut c = self.command(args);
        c.envs(env.iter().map(|(k, v)| (k, v)));
        self.finished(&mut c, args)
    }

    /// `--json ARGS` at `root`, expecting exit `code`.
    pub fn json_at(&self, root: &Path, args: &[&str], code: i32) -> Value {
        expect_json(self.run_at(root, &with_json(args)), args, code)
    }

    /// `--json ARGS`, expecting exit `code`.
    pub fn json_code(&self, args: &[&str], code: i32) -> Value {
        self.json_at(&self.root, args, code)
    }

    /// `--json ARGS` with `env` set, expecting exit `code`.
    pub fn json_with_env(&self, env: &[(String, String)], args: &[&str], code: i32) -> Value {
        expect_json(self.run_with_env(env, &with_json(args)), args, code)
    }

    pub fn json(&self, args: &[&str]) -> Value {
        self.json_code(args, 0)
    }

    pub fn pull(&self, reference: &str) -> Value {
        self.json(&["pull", reference])
    }

    pub fn pull_offline(&self, reference: &str) -> Value {
        self.json(&["pull", "--offline", reference])
    }

    /// Pulls `reference`; its image ID.
    pub fn pull_image_id(&self, reference: &str) -> String {
        self.pull(reference)["image_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn save(&self, reference: &str, format: &str, out: &Path) -> Value {
        self.json(&["save", reference, "-o", path_str(out), "--format", format])
    }

    /// `save REF --format oci`, unpacked: an OCI layout directory `DIR` in the sandbox.
    pub fn save_layout_dir(&self, reference: &str, dir: &str) -> PathBuf {
        let oci = self.path(&format!("{dir}.oci.tar"));
        self.save(reference, "oci", &oci);
        let layout = self.path(dir);
        std::fs::create_dir(&layout).unwrap();
        checked_stdout(
            Command::new("tar").args(["-xf", path_str(&oci), "-C", path_str(&layout)]),
            "tar -x",
        );
        layout
    }

    /// `--json save REF -o -`: the tarball, and nothing else, on stdout.
    pub fn save_to_stdout(&self, reference: &str, format: &str) -> Vec<u8> {
        checked_stdout(
            &mut self.command(&["--json", "save", reference, "-o", "-", "--format", format]),
            "save -o -",
        )
    }

    /// `import FILE EXTRA`, which must succeed.
    pub fn import(&self, file: &Path, extra: &[&str]) -> Value {
        let mut a = vec!["import", path_str(file)];
        a.extend_from_slice(extra);
        let doc = self.json(&a);
        assert_eq!(doc["ok"], true, "{doc:#}");
        doc
    }

    pub fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.blob_dir().join(hex(digest))
    }

    pub fn blob(&self, digest: &str) -> Vec<u8> {
        fs::read(self.blob_path(digest)).unwrap()
    }

    /// The digests of the blob files on disk.
    pub fn blob_files(&self) -> BTreeSet<String> {
        self.blob_files_with_sizes()
            .into_iter()
            .map(|(d, _)| d)
            .collect()
    }

    /// The digests of the blob files on disk, with their sizes.
    pub fn blob_files_with_sizes(&self) -> BTreeSet<(String, u64)> {
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

    /// Every file of `blobs/sha256` at `root` hashes to its name; returns their digests.
    pub fn assert_blob_files_hash_to_their_names_at(
        &self,
        root: &Path,
        ctx: &str,
    ) -> BTreeSet<String> {
        let dir = root.join("blobs/sha256");
        let mut out = BTreeSet::new();
        for e in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{ctx}: {}: {e}", dir.display())) {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let data = fs::read(e.path()).unwrap();
            assert_eq!(
                sha256_hex(&data),
                name,
                "{ctx}: blob file {name} ({} bytes) does not hash to its name",
                data.len()
            );
            out.insert(format!("sha256:{name}"));
        }
        out
    }

    /// `ingest/*.partial` files at `root`, by digest, with their sizes.
    pub fn partials_at(&self, root: &Path) -> BTreeMap<String, u64> {
        fs::read_dir(root.join("ingest"))
            .map(|rd| {
                rd.filter_map(|e| {
                    let e = e.unwrap();
                    let name = e.file_name().to_string_lossy().into_owned();
                    let hex = name.strip_suffix(".partial")?.to_owned();
                    Some((format!("sha256:{hex}"), e.metadata().unwrap().len()))
                })
                .collect()
            })
            .unwrap_or_default()
    }

    /// No half-written blob left behind.
    pub fn assert_no_ingest(&self) {
        let left = listing(&self.root.join("ingest"));
        assert!(left.is_empty(), "left in ingest/: {left:?}");
    }

    /// The references `ls` lists.
    pub fn refs(&self) -> Vec<String> {
        self.json(&["ls"])["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["reference"].as_str().unwrap().to_owned())
            .collect()
    }

    /// (reference, image ID) of every entry `ls` lists at `root`.
    pub fn refs_with_ids_at(&self, root: &Path) -> Vec<(String, String)> {
        self.json_at(root, &["ls"], 0)["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["reference"].as_str().unwrap().to_owned(),
                    e["image_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    pub fn ls(&self) -> Value {
        self.json(&["ls"])
    }

    /// `ls --json`: (reference, image ID, platform) of every entry.
    pub fn ls_rows(&self) -> BTreeSet<(String, String, String)> {
        self.ls()["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let f = |k: &str| e[k].as_str().unwrap().to_owned();
                (f("reference"), f("image_id"), f("platform"))
            })
            .collect()
    }

    /// What the cache holds: `ls --json` (without `last_used`: handing an image to an engine
    /// is a use) and the blob files.
    pub fn snapshot(&self) -> (Value, BTreeSet<(String, u64)>) {
        let mut ls = self.ls();
        for e in ls["images"].as_array_mut().unwrap() {
            e.as_object_mut().unwrap().remove("last_used");
        }
        (ls, self.blob_files_with_sizes())
    }

    /// `fsck ARGS` at `root` finds none of `problems` (and says ok).
    fn assert_fsck_finds_none_of(
        &self,
        root: &Path,
        args: &[&str],
        problems: &[&str],
        ctx: &str,
    ) -> Value {
        let mut a = vec!["fsck"];
        a.extend_from_slice(args);
        let doc = self.json_at(root, &a, 0);
        assert_eq!(doc["ok"], true, "{ctx}{doc:#}");
        for k in problems {
            assert_eq!(doc[k], json!([]), "{ctx}{k}: {doc:#}");
        }
        doc
    }

    /// `fsck [args]` must be clean: nothing missing, corrupt or broken (unreferenced blobs are
    /// allowed: prune removes them).
    pub fn assert_fsck_clean(&self, args: &[&str]) -> Value {
        let problems = ["missing", "corrupt", "broken_references"];
        self.assert_fsck_finds_none_of(&self.root, args, &problems, "")
    }

    /// `fsck --deep` at `root` is clean: ok, nothing missing, corrupt, broken or lost
    /// (unreferenced blobs are allowed: prune removes them).
    pub fn assert_fsck_deep_clean_at(&self, root: &Path, ctx: &str) -> Value {
        let problems = ["missing", "corrupt", "broken_references", "lost_references"];
        self.assert_fsck_finds_none_of(root, &["--deep"], &problems, &format!("{ctx}: "))
    }

    /// `fsck --deep` finds nothing wrong, and no blob nobody needs.
    pub fn assert_fsck_deep_spotless(&self) -> Value {
        let problems = [
            "missing",
            "corrupt",
            "unreferenced",
            "broken_references",
            "lost_references",
        ];
        self.assert_fsck_finds_none_of(&self.root, &["--deep"], &problems, "")
    }

    /// podman on a private store in the sandbox.
    pub fn podman_store(&self) -> PodmanStore {
        PodmanStore::new(&self.path("podman"))
    }

    /// Points the imgcache run `c` at [`Sandbox::podman_store`], for `load` and `status`.
    pub fn with_podman(&self, c: &mut Command) {
        let store = self.podman_store();
        c.env("IMGCACHE_PODMAN_ARGS", store.imgcache_podman_args())
            .env("TMPDIR", store.tmp());
    }

    /// `podman ARGS` on [`Sandbox::podman_store`] (killed, not failing, once the watchdog fires).
    pub fn podman(&self, args: &[&str]) -> Run {
        self.finish(&mut self.podman_store().command(args)).0
    }
}

fn with_json<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    a
}

/// The JSON document of `r`, a run of `imgcache --json ARGS` that must have exited `code`.
fn expect_json(r: Run, args: &[&str], code: i32) -> Value {
    assert_eq!(
        r.code, code,
        "imgcache {args:?}\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    r.json()
}
