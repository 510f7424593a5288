//! `imgcache status` and `imgcache load` against the real engines (dockerd 20.10, podman 4.3 on
//! a private store, a private containerd 1.6; containerd 1.7 and 2.1 in `containerd_versions`,
//! through the [`Engine`] and flow of this module): an image is handed over only when the engine
//! lacks its image ID, re-tagged when only the tag is missing, and confirmed under the tag;
//! what the engine reports is read back with the engine's own CLI. Failures (offline, a blob
//! missing from the cache, an engine that is down, rejects the tarball or reports another ID,
//! an unknown or absent engine) exit with the documented code, say why, and change nothing in
//! the cache.
//!
//! Every test has its own cache root (and HOME) and pushes its own images to the plain test
//! registry under a repository no other test uses. dockerd is shared: images loaded there are
//! removed by a guard when the test ends (also when it fails). podman runs on a private store
//! in the test's directory; containerd is a private daemon stopped by a guard (or a shared one,
//! where a guard removes the test's image records). To see what imgcache asked podman or ctr to
//! do, a wrapper first on the PATH logs each command line before running the real program; for
//! Docker (whose adapter may talk to the socket itself) the daemon's own `docker events` tell
//! whether an image was loaded or tagged.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::*;

/// What the podman wrapper of [`podman_reporting_another_image_id_after_load_is_an_error_naming_both`]
/// prints as every image's `Id`.
const FAKE_HEX: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

// ---------------------------------------------------------------------------------------------
// Helpers

/// The program `name` on this process's PATH (the real one: wrappers are only on the PATH of
/// the imgcache runs), or `name` itself when it is a path.
fn real_program(name: &str) -> PathBuf {
    if name.contains('/') {
        return name.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on the PATH"))
}

/// An image pushed to the plain test registry as `<repo>:v1`: two gzip layers of random bytes.
pub(crate) fn push_fresh_image(what: &str) -> Image {
    fresh_image(what, &[48 << 10, 3 << 10])
}

fn var(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_owned(), v.into())
}

/// `dir/NAME`: a shell script that appends its command line to `log`, runs `hook` (shell code
/// that may answer instead of the real program), then runs the real `NAME` (`program`: a name
/// on the PATH, or the path of the program to run).
fn wrapper(dir: &Path, program: &str, log: &Path, hook: &str) {
    fs::create_dir_all(dir).unwrap();
    let real = real_program(program);
    let name = real.file_name().unwrap().to_str().unwrap();
    let hook = hook.replace("REAL", path_str(&real));
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

/// Where a test's `docker events` begin.
#[derive(Clone, Copy)]
pub(crate) struct Mark {
    /// Seconds since the epoch (docker events --since).
    time: f64,
    /// Lines of the wrapper's log.
    lines: usize,
}

enum Kind {
    Docker,
    Podman(PodmanStore),
    Containerd(Box<CtrEngine>),
}

/// `ctr` at a containerd, and what ends with the test: its private daemon (stopped), or the
/// records it made in a shared one (removed).
struct CtrEngine {
    ctr: Ctr,
    _daemon: Option<Containerd>,
    _records: Option<CtrCleanup>,
}

/// One engine, how imgcache is pointed at it, and what imgcache asked it to do.
pub(crate) struct Engine {
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
        Self {
            env: vec![var("DOCKER_HOST", env().vars["DOCKER_HOST"].clone())],
            kind: Kind::Docker,
            log: None,
            docker_cleanup: cleanup.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    /// podman on a private store in the test's directory, through a logging wrapper with
    /// `hook` (see [`wrapper`]).
    fn podman(c: &Sandbox, hook: &str) -> Self {
        let store = c.podman_store();
        let bin = c.path("podman-bin");
        let log = c.path("podman.log");
        wrapper(&bin, "podman", &log, hook);
        Self {
            env: vec![
                var("IMGCACHE_PODMAN_ARGS", store.imgcache_podman_args()),
                var("TMPDIR", path_str(&store.tmp())),
                path_with(&bin),
            ],
            kind: Kind::Podman(store),
            log: Some(log),
            docker_cleanup: Vec::new(),
        }
    }

    /// A private containerd (namespace k8s.io, native snapshotter), through a logging `ctr`
    /// wrapper with `hook`.
    fn containerd(c: &Sandbox, hook: &str) -> Self {
        let daemon = Containerd::start();
        Self::containerd_with(c, daemon.client(), hook, Some(daemon), None)
    }

    /// A shared containerd (`ctr`: its own program, a namespace, its snapshotter) through a
    /// logging wrapper of that program; the records whose names contain `marker` (every record,
    /// and the namespace, when it is `own_namespace`) are removed when dropped.
    pub(crate) fn shared_containerd(
        c: &Sandbox,
        ctr: Ctr,
        marker: &str,
        own_namespace: bool,
    ) -> Self {
        Self::shared_containerd_with(c, ctr, marker, own_namespace, "")
    }

    /// [`Engine::shared_containerd`] with a `hook` in its ctr wrapper (see [`wrapper`]).
    pub(crate) fn shared_containerd_with(
        c: &Sandbox,
        ctr: Ctr,
        marker: &str,
        own_namespace: bool,
        hook: &str,
    ) -> Self {
        let records = CtrCleanup {
            ctr: ctr.clone(),
            marker: marker.to_owned(),
            own_namespace,
        };
        Self::containerd_with(c, ctr, hook, None, Some(records))
    }

    /// imgcache pointed at `ctr`'s daemon, namespace and snapshotter, its `ctr` a logging
    /// wrapper (with `hook`) of `ctr.program`.
    fn containerd_with(
        c: &Sandbox,
        ctr: Ctr,
        hook: &str,
        daemon: Option<Containerd>,
        records: Option<CtrCleanup>,
    ) -> Self {
        let bin = c.path("ctr-bin");
        let log = c.path("ctr.log");
        wrapper(&bin, path_str(&ctr.program), &log, hook);
        Self {
            env: vec![
                var("CONTAINERD_ADDRESS", path_str(&ctr.address)),
                var("CONTAINERD_NAMESPACE", ctr.namespace.clone()),
                var("CONTAINERD_SNAPSHOTTER", ctr.snapshotter.clone()),
                path_with(&bin),
            ],
            kind: Kind::Containerd(Box::new(CtrEngine {
                ctr,
                _daemon: daemon,
                _records: records,
            })),
            log: Some(log),
            docker_cleanup: Vec::new(),
        }
    }

    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Docker => "docker",
            Kind::Podman(_) => "podman",
            Kind::Containerd(_) => "containerd",
        }
    }

    /// containerd: the real `ctr` at the daemon and namespace imgcache is pointed at.
    pub(crate) fn ctr(&self) -> &Ctr {
        match &self.kind {
            Kind::Containerd(d) => &d.ctr,
            _ => panic!("{} is not containerd", self.name()),
        }
    }

    /// The engine's own CLI (the real program, not the wrapper).
    fn cli(&self, args: &[&str]) -> Run {
        match &self.kind {
            Kind::Docker => docker(args),
            Kind::Podman(store) => store.run(args),
            Kind::Containerd(d) => d.ctr.run(args),
        }
    }

    /// The image ID (`sha256:<config hex>`) the engine's own CLI gives `name`, if it has it.
    pub(crate) fn id_of(&self, name: &str) -> Option<String> {
        match &self.kind {
            Kind::Docker => {
                let out = self.cli(&["image", "inspect", "-f", "{{.Id}}", name]);
                (out.code == 0).then(|| out.stdout.trim().to_owned())
            }
            Kind::Podman(_) => {
                let out = self.cli(&["image", "inspect", "--format", "{{.Id}}", name]);
                (out.code == 0).then(|| format!("sha256:{}", hex(out.stdout.trim())))
            }
            Kind::Containerd(d) => Some(d.ctr.config_of(&d.ctr.listed(name)?)),
        }
    }

    /// Whether the engine holds the image ID at all (under any name or none).
    fn holds(&self, image_id: &str) -> bool {
        match self.kind {
            Kind::Docker | Kind::Podman(_) => self.id_of(image_id).is_some(),
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
            Kind::Docker => {
                self.cli(&["tag", name, keep]).ok("docker tag");
                self.cli(&["rmi", name]).ok("docker rmi");
            }
            Kind::Podman(_) => {
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

    pub(crate) fn mark(&self) -> Mark {
        Mark {
            time: nanos() as f64 / 1e9 - 0.001,
            lines: self.log.as_ref().map_or(0, |l| {
                fs::read_to_string(l).unwrap_or_default().lines().count()
            }),
        }
    }

    /// What was done to the image `image_id` since `mark`: "load" and "tag" (and, for Docker,
    /// every other image event of that ID).
    pub(crate) fn activity(&self, mark: Mark, image_id: &str) -> Vec<String> {
        match self.kind {
            Kind::Docker => {
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
            Kind::Podman(_) | Kind::Containerd(_) => (self.commands_since(mark).iter())
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
                .collect(),
        }
    }

    /// The command lines the wrapper logged since `mark` (podman, containerd).
    pub(crate) fn commands_since(&self, mark: Mark) -> Vec<String> {
        let text = fs::read_to_string(self.log.as_ref().unwrap()).unwrap_or_default();
        text.lines().skip(mark.lines).map(str::to_owned).collect()
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
pub(crate) fn status(c: &Sandbox, e: &Engine, reference: &str, code: i32) -> Value {
    let doc = c.json_with_env(&e.env, &["status", reference, "--engine", e.name()], code);
    assert_eq!(doc["reference"], reference, "{doc:#}");
    assert_eq!(doc["engine"]["kind"], e.name(), "{doc:#}");
    doc
}

/// `--json load REF --engine E`, expecting success.
pub(crate) fn load(c: &Sandbox, e: &Engine, reference: &str) -> Value {
    let doc = c.json_with_env(&e.env, &["load", reference, "--engine", e.name()], 0);
    assert_eq!(doc["reference"], reference, "{doc:#}");
    assert_eq!(doc["engine"], e.name(), "{doc:#}");
    doc
}

/// The engine ID as each engine calls the image: Docker (classic store) `sha256:<config>`,
/// podman the bare config hex (or with `sha256:`), containerd the top-level manifest digest.
fn assert_engine_id(e: &Engine, p: &Image, engine_id: &Value) {
    let got = engine_id.as_str().unwrap_or_else(|| panic!("{engine_id}"));
    match e.kind {
        Kind::Docker => assert_eq!(got, p.config_digest),
        Kind::Podman(_) => assert!(
            got == hex(&p.config_digest) || got == p.config_digest,
            "podman engine_id {got}, image {}",
            p.config_digest
        ),
        Kind::Containerd(_) => {
            // Loaded from the cache's combined tarball: ctr keeps the cached manifest.
            assert_eq!(got, p.manifest_digest);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. status, load, load again, load after the tag alone was removed

pub(crate) fn status_load_reload_retag(c: &Sandbox, e: &Engine, p: &Image) {
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
    assert_eq!(doc["image_id"], p.config_digest.as_str(), "{doc:#}");
    assert_engine_id(e, p, &doc["engine_id"]);
    let did = e.activity(m, &p.config_digest);
    assert!(did.iter().any(|a| a == "load"), "{}: {did:?}", e.name());
    assert_eq!(
        e.id_of(r).as_deref(),
        Some(p.config_digest.as_str()),
        "{} after load",
        e.name()
    );

    // Cached, valid, present and tagged.
    let doc = status(c, e, r, 0);
    assert_eq!(doc["cached"], true, "{doc:#}");
    assert_eq!(doc["valid"], true, "{doc:#}");
    assert_eq!(doc["failures"], json!([]), "{doc:#}");
    assert_eq!(doc["image_id"], p.config_digest.as_str(), "{doc:#}");
    assert_eq!(doc["engine"]["present"], true, "{doc:#}");
    assert_eq!(doc["engine"]["tagged"], true, "{doc:#}");
    assert_eq!(
        doc["engine"]["tag_image_id"],
        p.config_digest.as_str(),
        "{doc:#}"
    );
    assert_engine_id(e, p, &doc["engine"]["engine_id"]);

    // Again: nothing sent, nothing tagged.
    let m = e.mark();
    let doc = load(c, e, r);
    assert_eq!(doc["action"], "already-present", "{doc:#}");
    assert_eq!(doc["pulled"], false, "{doc:#}");
    assert_eq!(doc["image_id"], p.config_digest.as_str(), "{doc:#}");
    assert_engine_id(e, p, &doc["engine_id"]);
    assert_eq!(
        e.activity(m, &p.config_digest),
        Vec::<String>::new(),
        "{}: an already-present load touched the engine",
        e.name()
    );
    if let Kind::Containerd(_) = e.kind {
        // Decided by one `ctr images check` (each ctr run costs ~25 ms): the manifest the
        // record points at is the cache's own, so its config need not be read back.
        let ran = e.commands_since(m);
        assert!(
            ran.len() == 1 && ran[0].contains(" images check "),
            "an already-present load ran {ran:#?}"
        );
    }

    // Only the tag removed: the image is present, untagged.
    e.remove_tag_only(r, &keep);
    assert!(e.holds(&p.config_digest), "{}", e.name());
    let doc = status(c, e, r, 1);
    assert_eq!(doc["engine"]["present"], true, "{doc:#}");
    assert_eq!(doc["engine"]["tagged"], false, "{doc:#}");
    assert_eq!(doc["engine"]["tag_image_id"], Value::Null, "{doc:#}");

    // Re-tagged, not loaded again.
    let m = e.mark();
    let doc = load(c, e, r);
    assert_eq!(doc["action"], "tagged", "{doc:#}");
    assert_eq!(doc["pulled"], false, "{doc:#}");
    assert_eq!(doc["image_id"], p.config_digest.as_str(), "{doc:#}");
    let did = e.activity(m, &p.config_digest);
    assert!(did.iter().any(|a| a == "tag"), "{}: {did:?}", e.name());
    assert!(!did.iter().any(|a| a == "load"), "{}: {did:?}", e.name());
    assert_eq!(e.id_of(r).as_deref(), Some(p.config_digest.as_str()));
    status(c, e, r, 0);
    c.assert_fsck_deep_spotless();
}

#[test]
fn docker_status_load_already_present_and_retag() {
    let c = Sandbox::new();
    let p = push_fresh_image("docker");
    let keep = format!("{}-keep", p.reference);
    let e = Engine::docker(&[&p.reference, &keep, &p.config_digest]);
    status_load_reload_retag(&c, &e, &p);
}

#[test]
fn podman_status_load_already_present_and_retag() {
    let c = Sandbox::new();
    let p = push_fresh_image("podman");
    let e = Engine::podman(&c, "");
    status_load_reload_retag(&c, &e, &p);
}

#[test]
fn containerd_status_load_already_present_and_retag() {
    let c = Sandbox::new();
    let p = push_fresh_image("containerd");
    let e = Engine::containerd(&c, "");
    status_load_reload_retag(&c, &e, &p);
}

// ---------------------------------------------------------------------------------------------
// 2. Offline, and a cached image missing a blob

#[test]
fn offline_load_of_an_uncached_ref_exits_1_and_touches_no_engine() {
    let c = Sandbox::new();
    let p = push_fresh_image("offline");
    let e = Engine::podman(&c, "");
    let m = e.mark();
    let out = c.run_with_env(
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
    assert_eq!(e.activity(m, &p.config_digest), Vec::<String>::new());
    assert!(!e.holds(&p.config_digest));
    assert_eq!(
        e.cli(&["images", "-q"]).ok("podman images").stdout.trim(),
        ""
    );
}

#[test]
fn load_of_a_cached_image_missing_a_layer_blob_exits_1_and_sends_nothing() {
    let c = Sandbox::new();
    let p = push_fresh_image("missing-blob");
    let id = c.pull_image_id(&p.reference);
    assert_eq!(id, p.config_digest);
    let layer = c.json_code(&["inspect", &p.reference], 0)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    fs::remove_file(c.blob_path(&layer)).unwrap();
    let before = c.snapshot();

    let e = Engine::podman(&c, "");
    let m = e.mark();
    let doc = c.json_with_env(&e.env, &["load", &p.reference, "--engine", "podman"], 1);
    assert_eq!(doc["ok"], false, "{doc:#}");
    assert_eq!(doc["error"]["check"], "missing-entry", "{doc:#}");
    let msg = doc["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&layer) && msg.contains("fsck --repair"),
        "{doc:#}"
    );
    let text = c.run_with_env(&e.env, &["load", &p.reference, "--engine", "podman"]);
    assert_eq!(text.code, 1, "{}", text.stderr);
    assert!(
        text.stderr.contains(&layer) && text.stderr.contains("missing"),
        "{}",
        text.stderr
    );

    assert_eq!(e.activity(m, &p.config_digest), Vec::<String>::new());
    assert!(!e.holds(&p.config_digest));
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
    let c = Sandbox::new();
    let p = push_fresh_image("dead");
    c.pull(&p.reference);
    let before = c.snapshot();

    let missing_docker = format!("/tmp/{}.sock", unique_name("no-docker"));
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
            path_str(&stale).to_owned(),
            "DOCKER_HOST",
        ),
        (
            "containerd",
            var("CONTAINERD_ADDRESS", path_str(&missing_ctd)),
            path_str(&missing_ctd).to_owned(),
            "CONTAINERD_ADDRESS",
        ),
        (
            "containerd",
            var("CONTAINERD_ADDRESS", path_str(&stale)),
            path_str(&stale).to_owned(),
            "CONTAINERD_ADDRESS",
        ),
    ];
    for (engine, setting, sock, hint) in &cases {
        let env = [setting.clone()];
        for cmd in ["status", "load"] {
            let out = c.run_with_env(&env, &[cmd, &p.reference, "--engine", engine]);
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
        let doc = c.json_with_env(&env, &["status", &p.reference, "--engine", engine], 3);
        assert_eq!(doc["ok"], false, "{doc:#}");
        assert_eq!(doc["error"]["check"], "environment", "{doc:#}");
    }
    assert_eq!(c.snapshot(), before);
    c.assert_fsck_deep_spotless();
}

/// A load that cannot hand the image over must not download it first: with the engine down,
/// an uncached reference is neither pulled nor recorded.
#[test]
fn load_with_an_unreachable_engine_pulls_nothing() {
    let c = Sandbox::new();
    let p = push_fresh_image("dead-uncached");
    let missing = format!("/tmp/{}.sock", unique_name("no-docker"));
    let env = [var("DOCKER_HOST", format!("unix://{missing}"))];
    let out = c.run_with_env(&env, &["load", &p.reference, "--engine", "docker"]);
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
    let c = Sandbox::new();
    let p = push_fresh_image("rejected");
    c.pull(&p.reference);
    let before = c.snapshot();
    let e = Engine::containerd(
        &c,
        r#"case " $* " in *" images import "*) cat >/dev/null; echo "ctr: fake rejection" >&2; exit 1;; esac"#,
    );
    let m = e.mark();
    let out = c.run_with_env(&e.env, &["load", &p.reference, "--engine", "containerd"]);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("ctr: fake rejection"),
        "the engine's message is not passed through:\n{}",
        out.stderr
    );
    // It was asked to import, and holds nothing.
    assert!(e.activity(m, &p.config_digest).iter().any(|a| a == "load"));
    assert_eq!(e.ctr().listed(&p.reference), None);
    assert!(!e.holds(&p.config_digest));
    assert_eq!(c.snapshot(), before);
    c.assert_fsck_deep_spotless();
}

#[test]
fn podman_reporting_another_image_id_after_load_is_an_error_naming_both() {
    let c = Sandbox::new();
    let p = push_fresh_image("other-id");
    c.pull(&p.reference);
    let before = c.snapshot();
    let hook = format!(
        r#"case " $* " in *" image inspect "*) out=$(REAL "$@"); rc=$?; printf '%s\n' "$out" | sed -E 's/"Id": "[0-9a-f]{{64}}"/"Id": "{FAKE_HEX}"/'; exit $rc;; esac"#
    );
    let e = Engine::podman(&c, &hook);
    let out = c.run_with_env(&e.env, &["load", &p.reference, "--engine", "podman"]);
    assert_ne!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains(&p.config_digest) && out.stderr.contains(&format!("sha256:{FAKE_HEX}")),
        "the message does not name both image IDs:\n{}",
        out.stderr
    );
    // The real podman did load it, under the real ID: the check read the (faked) answer.
    assert_eq!(
        e.id_of(&p.reference).as_deref(),
        Some(p.config_digest.as_str())
    );
    assert_eq!(c.snapshot(), before);
    c.assert_fsck_deep_spotless();
}

// ---------------------------------------------------------------------------------------------
// 5. Unknown engine, absent CRI-O

#[test]
fn an_unknown_engine_is_a_usage_error() {
    let c = Sandbox::new();
    for cmd in ["status", "load"] {
        let out = c.run(&[cmd, "busybox:v1", "--engine", "bogus"]);
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
    let c = Sandbox::new();
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
            path_str(&gone).to_owned(),
        ),
    ];
    assert!(!Path::new("/var/run/crio/crio.sock").exists());
    for (env, sock) in &cases {
        for cmd in ["status", "load"] {
            let out = c.run_with_env(env, &[cmd, &p.reference, "--engine", "crio"]);
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
    let c = Sandbox::new();
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
    let doc = c.json_with_env(&env, &["status", &p.reference, "--engine", "crio"], 1);
    assert_eq!(doc["engine"]["kind"], "crio", "{doc:#}");
    assert_eq!(doc["engine"]["present"], false, "{doc:#}");
    assert_eq!(doc["valid"], true, "{doc:#}");
    let out = c.run_with_env(&env, &["load", &p.reference, "--engine", "crio"]);
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
    let c = Sandbox::new();
    let a = push_fresh_image("tag-a");
    let b = push_fresh_image("tag-b");
    let e = Engine::docker(&[
        &a.reference,
        &b.reference,
        &a.config_digest,
        &b.config_digest,
    ]);
    let r = a.reference.as_str();

    assert_eq!(load(&c, &e, r)["action"], "loaded");
    assert_eq!(load(&c, &e, &b.reference)["action"], "loaded");
    // a's name now points at b; a stays in the engine, untagged.
    e.cli(&["tag", &b.reference, r]).ok("docker tag");
    assert_eq!(e.id_of(r).as_deref(), Some(b.config_digest.as_str()));
    assert!(e.holds(&a.config_digest));

    let doc = status(&c, &e, r, 1);
    assert_eq!(doc["image_id"], a.config_digest.as_str(), "{doc:#}");
    assert_eq!(doc["valid"], true, "{doc:#}");
    assert_eq!(doc["engine"]["present"], true, "{doc:#}");
    assert_eq!(
        doc["engine"]["engine_id"],
        a.config_digest.as_str(),
        "{doc:#}"
    );
    assert_eq!(doc["engine"]["tagged"], false, "{doc:#}");
    assert_eq!(
        doc["engine"]["tag_image_id"],
        b.config_digest.as_str(),
        "{doc:#}"
    );
    let text = c.run_with_env(&e.env, &["status", r, "--engine", "docker"]);
    assert_eq!(text.code, 1, "{}", text.stderr);

    let m = e.mark();
    let doc = load(&c, &e, r);
    assert_eq!(doc["action"], "tagged", "{doc:#}");
    assert_eq!(doc["pulled"], false, "{doc:#}");
    let did = e.activity(m, &a.config_digest);
    assert!(did.iter().any(|x| x == "tag"), "{did:?}");
    assert!(!did.iter().any(|x| x == "load"), "{did:?}");
    assert_eq!(e.id_of(r).as_deref(), Some(a.config_digest.as_str()));
    // b keeps its own name.
    assert_eq!(
        e.id_of(&b.reference).as_deref(),
        Some(b.config_digest.as_str())
    );
    let doc = status(&c, &e, r, 0);
    assert_eq!(doc["engine"]["tagged"], true, "{doc:#}");
    assert_eq!(
        doc["engine"]["tag_image_id"],
        a.config_digest.as_str(),
        "{doc:#}"
    );
}

#[test]
fn load_under_a_policy_judges_the_kept_signatures_and_tells_the_engine_nothing_when_refused() {
    let c = Sandbox::new();
    let e = Engine::podman(&c, "");
    let reg = PrivateRegistry::start();
    let m = reg.copy_from_main("busybox:v1-oci");
    let name = format!("{}/busybox:v1-oci", reg.addr);
    let keys = CosignKeys::generate(cosign2(), c.dir.path());
    let other = CosignKeys::generate_named(cosign2(), c.dir.path(), "other");
    cosign2_sign(&keys, &format!("{}/busybox@{}", reg.addr, m.digest));
    let policy = |file: &str, key: &Path| -> String {
        let doc = json!({
            "default": [{"type": "insecureAcceptAnything"}],
            "transports": {"docker": {format!("{}/busybox", reg.addr): [{
                "type": "sigstoreSigned", "keyPath": key,
                "signedIdentity": {"type": "matchRepository"}
            }]}}
        });
        let path = c.path(file);
        fs::write(&path, doc.to_string()).unwrap();
        path.display().to_string()
    };
    let trusted = policy("trusted.json", &keys.pub_key);
    let stranger = policy("stranger.json", &other.pub_key);
    let pulled = c.json(&["pull", "--policy", &trusted, &name]);
    let image_id = pulled["image_id"].as_str().unwrap().to_owned();

    // The kept signature is by a key this policy does not trust: refused before podman is
    // asked anything.
    let mark = e.mark();
    let doc = c.json_with_env(
        &e.env,
        &["load", "--policy", &stranger, &name, "--engine", "podman"],
        1,
    );
    assert_eq!(doc["error"]["check"], "signature", "{doc:#}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not trust"),
        "{doc:#}"
    );
    assert_eq!(e.commands_since(mark), Vec::<String>::new());

    let mark = e.mark();
    let doc = c.json_with_env(
        &e.env,
        &["load", "--policy", &trusted, &name, "--engine", "podman"],
        0,
    );
    assert_eq!(doc["action"], "loaded", "{doc:#}");
    assert_eq!(doc["signed_by"][0]["format"], "cosign", "{doc:#}");
    assert!(
        e.activity(mark, &image_id).iter().any(|a| a == "load"),
        "{:?}",
        e.commands_since(mark)
    );
}
