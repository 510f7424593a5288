//! The digest a reference was pulled by survives `save` and `load`: `index.json` of a save
//! names what the reference was pulled by (the index of a multi-platform image, of which the
//! file holds the cached platform only; the manifest of a single-platform image), and after
//! `imgcache load REF` the engines that keep distribution digests resolve
//! `REPO@<that digest>`: Docker's containerd image store (dockerd 28: `.Id`, `RepoDigests`,
//! `docker image inspect REPO@DIGEST`), podman 4.3 (`Digest`, `RepoDigests`, `podman image
//! inspect REPO@DIGEST`) and containerd 1.6, 1.7 and 2.1 (`ctr images ls` names the digest as
//! the image's target, `ctr content get` gives its bytes). Docker's classic store (dockerd 20.10
//! and 26) keeps no digest after a load (moby#22011): that documented limit is checked too.
//! An engine that already holds the image by another digest (multiarch:v1-list after
//! multiarch:v1, which share their image ID; or a reference loaded from a save naming the
//! manifest) is sent the image again rather than a tag, so that the digest is recorded.
//!
//! The digest is always compared with the one of the origin's bytes as skopeo reads them
//! (`skopeo inspect --raw`), for busybox:v1 (one manifest), multiarch:v1 (an OCI index of two
//! platforms, this host's cached) and multiarch:v1-list (the same as a Docker manifest list).
//! Each test copies them (skopeo, digests kept) to repositories no other test uses, loads them
//! under those names, and removes from the shared engines exactly the names it added: dockerd
//! 20.10 and 26 by `docker rmi` of its own tags, dockerd 28 by `ctr images rm` of its own image
//! records in the engine's namespace (there `docker rmi REPO@DIGEST` also drops other tags of
//! the digest); containerd 1.7 and 2.1 get a namespace of the test's own, removed afterwards;
//! podman and containerd 1.6 run privately in the test's directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::*;

/// The origins of every test: (tag in the test registry, an index?).
const ORIGINS: [(&str, bool); 3] = [
    ("busybox:v1", false),
    ("multiarch:v1", true),
    ("multiarch:v1-list", true),
];

// ---------------------------------------------------------------------------------------------
// Helpers

/// An image of the test registry copied to a repository of its own.
struct Origin {
    /// `busybox:v1`, ...
    src: &'static str,
    /// `<registry>/<unique repository>` (no tag).
    repo: String,
    /// `<repo>:v1`.
    reference: String,
    /// The bytes `skopeo inspect --raw` gives for the origin, and their digest.
    raw: Vec<u8>,
    digest: String,
    index: bool,
}

impl Origin {
    /// `REPO@DIGEST`: the reference by the digest it was pulled by.
    fn pinned(&self) -> String {
        format!("{}@{}", self.repo, self.digest)
    }
}

/// Copies every origin of [`ORIGINS`] (all platforms, digests kept) to new repositories.
fn origins(what: &str) -> Vec<Origin> {
    ORIGINS
        .iter()
        .map(|&(src, index)| {
            let from = format!("{}/{src}", registry());
            let raw = skopeo_raw(&from, &[]);
            let digest = digest_of(&raw);
            let repo = format!(
                "{}/{}",
                registry(),
                unique_name(&format!("{what}-{}", src.replace([':', '.'], "-")))
            );
            let reference = format!("{repo}:v1");
            copy_between_registries(&from, &reference);
            assert_eq!(
                digest_of(&skopeo_raw(&reference, &[])),
                digest,
                "{reference}: the copy has another digest than {from}"
            );
            let is_index = serde_json::from_slice::<Value>(&raw).unwrap()["manifests"].is_array();
            assert_eq!(is_index, index, "{from}");
            Origin {
                src,
                repo,
                reference,
                raw,
                digest,
                index,
            }
        })
        .collect()
}

/// This machine's platform as imgcache names it (`linux/amd64`, `linux/arm64/v8`).
fn host_platform() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "linux/amd64",
        "aarch64" => "linux/arm64/v8",
        other => panic!("the multiarch test image has no platform for {other}"),
    }
}

/// Pulls `o` into `c`, which records the digest skopeo gives; the image ID.
fn pull(c: &Sandbox, o: &Origin) -> String {
    let doc = c.pull(&o.reference);
    assert_eq!(doc["distribution_digest"], o.digest.as_str(), "{doc:#}");
    if o.index {
        assert_eq!(doc["platform"], host_platform(), "{doc:#}");
        assert_ne!(doc["manifest_digest"], o.digest.as_str(), "{doc:#}");
    } else {
        assert_eq!(doc["manifest_digest"], o.digest.as_str(), "{doc:#}");
    }
    doc["image_id"].as_str().unwrap().to_owned()
}

fn var(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_owned(), v.into())
}

/// `--json load REF --engine ENGINE` with `env`: must succeed with the image ID.
fn load(c: &Sandbox, env: &[(String, String)], engine: &str, o: &Origin, id: &str) -> Value {
    let doc = c.json_with_env(env, &["load", &o.reference, "--engine", engine], 0);
    assert_eq!(doc["image_id"], id, "{}: {doc:#}", o.src);
    assert_eq!(doc["engine"], engine, "{doc:#}");
    doc
}

/// A directory holding `ctr` (a link to `program`), to put first on imgcache's PATH.
fn ctr_dir(c: &Sandbox, program: &str) -> PathBuf {
    let dir = c.path("ctr-bin");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(program, dir.join("ctr")).unwrap();
    dir
}

fn path_with(dir: &Path) -> (String, String) {
    let rest = std::env::var("PATH").unwrap_or_default();
    var("PATH", format!("{}:{rest}", dir.display()))
}

// ---------------------------------------------------------------------------------------------
// 1. What save writes

/// The top-level descriptor of a save's `index.json`, and the names of its files.
fn top_descriptor(file: &Path) -> (Value, Vec<Entry>) {
    let entries: Vec<Entry> = read_tar(file)
        .into_iter()
        .filter(|e| e.header.entry_type().is_file())
        .collect();
    let index: Value = serde_json::from_slice(&entry(&entries, "index.json").data).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index:#}");
    (manifests[0].clone(), entries)
}

#[test]
fn save_names_the_digest_the_reference_was_pulled_by_and_holds_the_cached_platform() {
    for o in origins("save") {
        // A cache each: multiarch:v1 and multiarch:v1-list share their image ID.
        let c = Sandbox::new();
        let id = pull(&c, &o);
        let inspect = c.json(&["inspect", &o.reference]);
        let manifest = inspect["manifest_digest"].as_str().unwrap().to_owned();
        let layers: Vec<String> = inspect["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned())
            .collect();
        let blob = |d: &str| format!("blobs/sha256/{}", hex(d));
        let media_type = serde_json::from_slice::<Value>(&o.raw).unwrap()["mediaType"].clone();
        for format in ["combined", "oci"] {
            let ctx = format!("{} {format}", o.src);
            let file = c.path(&format!("{}-{format}.tar", hex(&o.digest)));
            let doc = c.save(&o.reference, format, &file);
            let mut want = json!({
                "ok": true, "reference": o.reference, "image_id": id,
                "output": path_str(&file), "format": format, "signatures": 0,
            });
            if o.index {
                want["index"] = json!({
                    "digest": o.digest,
                    "platforms": ["linux/amd64", "linux/arm64/v8"],
                    "saved": [host_platform()],
                });
            }
            assert_eq!(doc, want, "{ctx}");

            let (top, entries) = top_descriptor(&file);
            assert_eq!(
                top,
                json!({
                    "mediaType": media_type,
                    "digest": o.digest,
                    "size": o.raw.len(),
                    "annotations": {
                        "io.containerd.image.name": o.reference,
                        "org.opencontainers.image.ref.name": "v1",
                    },
                }),
                "{ctx}"
            );
            // The index's bytes exactly as served; of its platforms, only the cached one.
            assert!(entry(&entries, &blob(&o.digest)).data == o.raw, "{ctx}");
            let mut names: Vec<String> = vec!["oci-layout".into(), "index.json".into()];
            if format == "combined" {
                names.push("manifest.json".into());
            }
            names.extend([&id, &manifest, &o.digest].map(|d| blob(d)));
            names.extend(layers.iter().map(|l| blob(l)));
            names.sort();
            names.dedup();
            let mut got: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
            got.sort();
            assert_eq!(got, names, "{ctx}");
            for e in entries.iter().filter(|e| e.name.starts_with("blobs/")) {
                assert_eq!(blob(&digest_of(&e.data)), e.name, "{ctx}");
            }
            if format == "combined" {
                let m: Value =
                    serde_json::from_slice(&entry(&entries, "manifest.json").data).unwrap();
                assert_eq!(
                    m,
                    json!([{
                        "Config": blob(&id),
                        "RepoTags": [o.reference],
                        "Layers": layers.iter().map(|l| blob(l)).collect::<Vec<_>>(),
                    }]),
                    "{ctx}"
                );
            }
            // Deterministic: again, and to stdout, the same bytes.
            let again = c.path("again.tar");
            c.save(&o.reference, format, &again);
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                bytes == std::fs::read(&again).unwrap(),
                "{ctx}: two saves differ"
            );
            assert!(
                bytes == c.save_to_stdout(&o.reference, format),
                "{ctx}: -o - differs"
            );
        }
        // The human report says which platforms the file holds.
        let file = c.path("human.tar");
        let out = c.run(&["save", &o.reference, "-o", path_str(&file)]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let note = format!(
            "index {} lists linux/amd64, linux/arm64/v8; the file holds {} only",
            o.digest,
            host_platform()
        );
        assert_eq!(out.stdout.contains(&note), o.index, "{}", out.stdout);

        // The legacy layout has no place for a digest: as before.
        let file = c.path("legacy.tar");
        let doc = c.save(&o.reference, "legacy", &file);
        assert!(doc.get("index").is_none(), "{doc:#}");
        if o.index {
            let names: Vec<String> = read_tar(&file).into_iter().map(|e| e.name).collect();
            assert!(
                !names.iter().any(|n| n.contains(hex(&o.digest))),
                "{}: the legacy save holds the index: {names:?}",
                o.src
            );
        }

        // Saved by image ID, the reference (and its index) is not known: the manifest.
        let file = c.path("by-id.tar");
        let doc = c.save(&id, "oci", &file);
        assert!(doc.get("index").is_none(), "{doc:#}");
        let (top, _) = top_descriptor(&file);
        assert_eq!(top["digest"], manifest.as_str(), "{}", o.src);
        c.assert_fsck_deep_spotless();
    }
}

/// An index blob gone from the cache (deleted by hand): the save names the manifest, as for a
/// single-platform image, and still loads everywhere.
#[test]
fn save_without_the_stored_index_names_the_manifest() {
    let c = Sandbox::new();
    let o = origins("noindex").into_iter().find(|o| o.index).unwrap();
    pull(&c, &o);
    let manifest = c.json(&["inspect", &o.reference])["manifest_digest"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::remove_file(c.blob_path(&o.digest)).unwrap();
    let file = c.path("s.tar");
    let doc = c.save(&o.reference, "combined", &file);
    assert!(doc.get("index").is_none(), "{doc:#}");
    let (top, entries) = top_descriptor(&file);
    assert_eq!(top["digest"], manifest.as_str());
    assert!(!entries.iter().any(|e| e.name.ends_with(hex(&o.digest))));
}

// ---------------------------------------------------------------------------------------------
// 2. Docker's containerd image store (dockerd 28)

/// The docker CLI of the newer engines (28) talking to `host`.
fn docker_at(host: &str, args: &[&str]) -> Run {
    docker_cli_at(newer("NEWER_DOCKER_CLI"), host, args)
}

fn docker_cli_at(cli: &str, host: &str, args: &[&str]) -> Run {
    output_of(Command::new(cli).env("DOCKER_HOST", host).args(args))
}

#[test]
fn dockerd28_load_resolves_the_digest_the_reference_was_pulled_by() {
    let test = "dockerd28_load_resolves_the_digest_the_reference_was_pulled_by";
    if skipped(test, "DOCKERD28") {
        return;
    }
    let host = newer("NEWER_DOCKERD28_HOST");
    let c = Sandbox::new();
    let all = origins("d28");
    let _cleanup = Dockerd28Cleanup {
        repos: all.iter().map(|o| o.repo.clone()).collect(),
    };
    let env = [var("DOCKER_HOST", host)];
    for o in &all {
        let id = pull(&c, o);
        load(&c, &env, "docker", o, &id);
        // `.Id` is the top-level digest there; RepoDigests lists every name of that digest
        // (busybox:v1 may be there under other names already), ours once.
        let got = docker_at(host, &["image", "inspect", "-f", "{{.Id}}", &o.reference])
            .ok("docker image inspect");
        assert_eq!(got.stdout.trim(), o.digest, "{}", o.src);
        let digests = repo_digests(|a| docker_at(host, a), &o.reference);
        let ours: Vec<&String> = digests
            .iter()
            .filter(|d| d.starts_with(&format!("{}@", o.repo)))
            .collect();
        assert_eq!(ours, [&o.pinned()], "{}: {digests:?}", o.src);
        let by_digest = docker_at(host, &["image", "inspect", "-f", "{{.Id}}", &o.pinned()])
            .ok(&format!("docker image inspect {}", o.pinned()));
        assert_eq!(by_digest.stdout.trim(), o.digest, "{}", o.src);
        let doc = c.json_with_env(&env, &["status", &o.reference, "--engine", "docker"], 0);
        assert_eq!(doc["engine"]["tagged"], true, "{doc:#}");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Docker's classic store (dockerd 20.10, 26): no digest survives a load

/// Removes our tags from a classic dockerd when dropped (the image stays if another name has
/// it).
struct ClassicCleanup {
    cli: String,
    host: String,
    refs: Vec<String>,
}

impl Drop for ClassicCleanup {
    fn drop(&mut self) {
        for r in &self.refs {
            docker_cli_at(&self.cli, &self.host, &["rmi", r]);
        }
    }
}

/// `cli` is the docker CLI of the engine's own version.
fn classic_keeps_no_digest(cli: &str, host: &str, what: &str) {
    let docker_at = |host: &str, args: &[&str]| docker_cli_at(cli, host, args);
    let c = Sandbox::new();
    let all = origins(what);
    let _cleanup = ClassicCleanup {
        cli: cli.to_owned(),
        host: host.to_owned(),
        refs: all.iter().map(|o| o.reference.clone()).collect(),
    };
    let env = [var("DOCKER_HOST", host)];
    let no_digest = |o: &Origin, ctx: &str| {
        let digests = repo_digests(|a| docker_at(host, a), &o.reference);
        assert!(
            !digests
                .iter()
                .any(|d| d.starts_with(&format!("{}@", o.repo))),
            "{ctx}: {} has a digest after a load: {digests:?} (the README says it cannot)",
            o.src
        );
        let by_digest = docker_at(host, &["image", "inspect", &o.pinned()]);
        assert_ne!(by_digest.code, 0, "{ctx}: {} resolves", o.pinned());
    };
    for o in &all {
        let id = pull(&c, o);
        load(&c, &env, "docker", o, &id);
        let got = docker_at(host, &["image", "inspect", "-f", "{{.Id}}", &o.reference])
            .ok("docker image inspect");
        assert_eq!(got.stdout.trim(), id, "{}", o.src);
        no_digest(o, "imgcache load");
        // docker load of the save itself, the image new or not: the same.
        let file = c.path("s.tar");
        c.save(&o.reference, "combined", &file);
        docker_at(host, &["rmi", &o.reference]).ok("docker rmi");
        docker_at(host, &["load", "-i", path_str(&file)]).ok("docker load");
        no_digest(o, "docker load");
    }
}

#[test]
fn dockerd20_classic_store_keeps_no_digest_after_a_load() {
    let v = &env().vars;
    let cli = v
        .get("TEST_DOCKER_CLI")
        .map_or("/usr/bin/docker", String::as_str);
    classic_keeps_no_digest(cli, &v["DOCKER_HOST"], "d20");
}

#[test]
fn dockerd26_classic_store_keeps_no_digest_after_a_load() {
    classic_keeps_no_digest(
        newer("NEWER_DOCKER_CLI"),
        newer("NEWER_DOCKERD26_HOST"),
        "d26",
    );
}

// ---------------------------------------------------------------------------------------------
// 4. podman 4.3

#[test]
fn podman_load_resolves_the_digest_the_reference_was_pulled_by() {
    let c = Sandbox::new();
    let store = c.podman_store();
    let env = [
        var("IMGCACHE_PODMAN_ARGS", store.imgcache_podman_args()),
        var("TMPDIR", path_str(&store.tmp())),
    ];
    // multiarch:v1-list comes last, its image ID already in the store (from multiarch:v1)
    // under another digest: the load must still leave REPO@DIGEST resolving.
    let mut seen = Vec::new();
    for o in origins("podman") {
        let id = pull(&c, &o);
        let doc = load(&c, &env, "podman", &o, &id);
        let got = store
            .run(&[
                "image",
                "inspect",
                "--format",
                "{{.Id}} {{.Digest}}",
                &o.reference,
            ])
            .ok("podman image inspect");
        if !seen.contains(&id) {
            // New to the store: its digest is the one index.json names.
            assert_eq!(doc["action"], "loaded", "{doc:#}");
            assert_eq!(
                got.stdout.trim(),
                format!("{} {}", hex(&id), o.digest),
                "{}",
                o.src
            );
            seen.push(id.clone());
        }
        let digests = repo_digests(|a| store.run(a), &o.reference);
        assert!(digests.contains(&o.pinned()), "{}: {digests:?}", o.src);
        let by_digest = store
            .run(&["image", "inspect", "--format", "{{.Id}}", &o.pinned()])
            .ok(&format!("podman image inspect {}", o.pinned()));
        assert_eq!(by_digest.stdout.trim(), hex(&id), "{}", o.src);
    }
}

// ---------------------------------------------------------------------------------------------
// 5. containerd 1.6, 1.7, 2.1

/// After `imgcache load`, `ctr images ls` names the digest as the target of REF, and the content
/// store holds its bytes; `ctr` runs `ctr_args` (address, namespace) first.
fn containerd_resolves(c: &Sandbox, ctr: &[&str], env: &[(String, String)], what: &str) {
    let run = |args: &[&str]| output_of(Command::new(ctr[0]).args(&ctr[1..]).args(args));
    for o in origins(what) {
        let id = pull(c, &o);
        // multiarch:v1-list comes last, its image ID already there (from multiarch:v1) under
        // another digest: loaded all the same, so that its record points at its own digest.
        let doc = load(c, env, "containerd", &o, &id);
        assert_eq!(doc["action"], "loaded", "{doc:#}");
        let listed = run(&["images", "ls"]).ok("ctr images ls").stdout;
        let target = listed
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&o.reference.as_str()))
            .map(|f| f[2].to_owned());
        assert_eq!(
            target.as_deref(),
            Some(o.digest.as_str()),
            "{}\n{listed}",
            o.src
        );
        let content = Command::new(ctr[0])
            .args(&ctr[1..])
            .args(["content", "get", &o.digest])
            .output()
            .unwrap();
        assert!(content.status.success(), "ctr content get {}", o.digest);
        assert!(
            content.stdout == o.raw,
            "{}: content {} differs",
            o.src,
            o.digest
        );
        let doc = c.json_with_env(env, &["status", &o.reference, "--engine", "containerd"], 0);
        assert_eq!(doc["engine"]["tagged"], true, "{doc:#}");
    }
}

#[test]
fn containerd16_load_resolves_the_digest_the_reference_was_pulled_by() {
    let c = Sandbox::new();
    let d = Containerd::start();
    let sock = path_str(&d.sock);
    let env = [
        var("CONTAINERD_ADDRESS", sock),
        var("CONTAINERD_NAMESPACE", "k8s.io"),
        var("CONTAINERD_SNAPSHOTTER", "native"),
    ];
    containerd_resolves(&c, &["ctr", "-a", sock, "-n", "k8s.io"], &env, "c16");
}

/// A namespace of the test's own in a shared containerd, removed (with what is in it) when
/// dropped.
struct Namespace {
    ctr: &'static str,
    address: &'static str,
    name: String,
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let run = |args: &[&str]| {
            output_of(
                Command::new(self.ctr)
                    .args(["-a", self.address, "-n", &self.name])
                    .args(args),
            )
        };
        for name in run(&["images", "ls", "-q"]).stdout.lines() {
            run(&["images", "rm", "--sync", name]);
        }
        for _ in 0..50 {
            let r = output_of(Command::new(self.ctr).args([
                "-a",
                self.address,
                "namespaces",
                "rm",
                &self.name,
            ]));
            if r.code == 0 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!("{}: namespace {} left behind", self.address, self.name);
    }
}

fn shared_containerd(test: &str, version: &str) {
    let (ctr, address) = (
        newer(&format!("NEWER_CTR{version}")),
        newer(&format!("NEWER_CONTAINERD{version}_ADDRESS")),
    );
    let c = Sandbox::new();
    let ns = Namespace {
        ctr,
        address,
        name: unique_name(test.split('_').next().unwrap()),
    };
    let bin = ctr_dir(&c, ctr);
    let env = [
        var("CONTAINERD_ADDRESS", address),
        var("CONTAINERD_NAMESPACE", ns.name.as_str()),
        path_with(&bin),
    ];
    containerd_resolves(
        &c,
        &[ctr, "-a", address, "-n", &ns.name],
        &env,
        &format!("c{version}"),
    );
}

#[test]
fn containerd17_load_resolves_the_digest_the_reference_was_pulled_by() {
    shared_containerd(
        "containerd17_load_resolves_the_digest_the_reference_was_pulled_by",
        "17",
    );
}

#[test]
fn containerd21_load_resolves_the_digest_the_reference_was_pulled_by() {
    let test = "containerd21_load_resolves_the_digest_the_reference_was_pulled_by";
    if skipped(test, "CONTAINERD21") {
        return;
    }
    shared_containerd(test, "21");
}

// ---------------------------------------------------------------------------------------------
// 6. An engine that has the reference by another digest gets the image again

/// A save of `o` as an older imgcache wrote it: `index.json` naming this platform's manifest,
/// not the index it was pulled by.
fn manifest_named_save(c: &Sandbox, o: &Origin) -> PathBuf {
    let file = c.path("current.tar");
    c.save(&o.reference, "combined", &file);
    let inspect = c.json(&["inspect", &o.reference]);
    let manifest = inspect["manifest_digest"].as_str().unwrap();
    let mut entries: Vec<Entry> = read_tar(&file)
        .into_iter()
        .filter(|e| e.name != format!("blobs/sha256/{}", hex(&o.digest)))
        .collect();
    let index = &mut entry_mut(&mut entries, "index.json").data;
    let mut doc: Value = serde_json::from_slice(index).unwrap();
    doc["manifests"][0]["mediaType"] = inspect["media_type"].clone();
    doc["manifests"][0]["digest"] = manifest.into();
    doc["manifests"][0]["size"] = c.blob(manifest).len().into();
    *index = serde_json::to_vec(&doc).unwrap();
    let old = c.path("manifest-named.tar");
    write_tar(&old, &entries);
    old
}

#[test]
fn containerd_holding_the_reference_by_its_manifest_gets_it_again_by_its_index() {
    let c = Sandbox::new();
    let o = origins("c16-again").into_iter().find(|o| o.index).unwrap();
    let id = pull(&c, &o);
    let old = manifest_named_save(&c, &o);
    let d = Containerd::start();
    let (top, config) = d.import(&old, &o.reference);
    assert_eq!(config, id);
    assert_ne!(top, o.digest);
    let env = [
        var("CONTAINERD_ADDRESS", path_str(&d.sock)),
        var("CONTAINERD_NAMESPACE", "k8s.io"),
        var("CONTAINERD_SNAPSHOTTER", "native"),
    ];
    let doc = load(&c, &env, "containerd", &o, &id);
    assert_eq!(doc["action"], "loaded", "{doc:#}");
    assert_eq!(d.listed(&o.reference).as_deref(), Some(o.digest.as_str()));
    // Now it is there by its index: nothing more to do.
    let doc = load(&c, &env, "containerd", &o, &id);
    assert_eq!(doc["action"], "already-present", "{doc:#}");
}

#[test]
fn podman_holding_the_reference_by_its_manifest_gets_it_again_by_its_index() {
    let c = Sandbox::new();
    let o = origins("podman-again")
        .into_iter()
        .find(|o| o.index)
        .unwrap();
    let id = pull(&c, &o);
    let old = manifest_named_save(&c, &o);
    let store = c.podman_store();
    store.run(&["load", "-i", path_str(&old)]).ok("podman load");
    assert_ne!(store.run(&["image", "inspect", &o.pinned()]).code, 0);
    let env = [
        var("IMGCACHE_PODMAN_ARGS", store.imgcache_podman_args()),
        var("TMPDIR", path_str(&store.tmp())),
    ];
    let doc = load(&c, &env, "podman", &o, &id);
    assert_eq!(doc["action"], "loaded", "{doc:#}");
    let by_digest = store
        .run(&["image", "inspect", "--format", "{{.Id}}", &o.pinned()])
        .ok(&format!("podman image inspect {}", o.pinned()));
    assert_eq!(by_digest.stdout.trim(), hex(&id));
    let doc = load(&c, &env, "podman", &o, &id);
    assert_eq!(doc["action"], "already-present", "{doc:#}");
}
