//! The engines' own CLIs: the shared dockerd, podman on a private store, a private containerd,
//! `ctr` at the shared containerds 1.7 and 2.1 of newer-engines.sh.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Run, digest_of, env, output_of, path_str, tempdir};

/// A script of `scripts/testenv`.
pub fn testenv_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/testenv")
        .join(name)
}

/// The CLI of the shared test dockerd (`TEST_DOCKER_CLI`, `/usr/bin/docker` by default).
pub fn docker(args: &[&str]) -> Run {
    docker_at(&env().vars["DOCKER_HOST"], args)
}

/// The same CLI against the dockerd at `host` (`unix://...`).
pub fn docker_at(host: &str, args: &[&str]) -> Run {
    let cli = env()
        .vars
        .get("TEST_DOCKER_CLI")
        .map_or("/usr/bin/docker", String::as_str);
    output_of(Command::new(cli).env("DOCKER_HOST", host).args(args))
}

/// podman on a private store under `base` (vfs, no events, cgroupfs): its own root, runroot
/// and tmpdir.
pub struct PodmanStore {
    pub base: PathBuf,
}

impl PodmanStore {
    /// The store under `base`, its tmpdir created.
    pub fn new(base: &Path) -> Self {
        fs::create_dir_all(base.join("tmp")).unwrap();
        Self { base: base.into() }
    }

    /// What podman is to set `TMPDIR` to.
    pub fn tmp(&self) -> PathBuf {
        self.base.join("tmp")
    }

    /// The global options that select the store.
    fn global_args(&self) -> Vec<String> {
        let dir = |d: &str| self.base.join(d).display().to_string();
        [
            "--root",
            &dir("root"),
            "--runroot",
            &dir("run"),
            "--tmpdir",
            &dir("tmp"),
            "--storage-driver",
            "vfs",
            "--events-backend=none",
            "--cgroup-manager=cgroupfs",
        ]
        .map(str::to_owned)
        .into()
    }

    /// The global options that select the store, as `IMGCACHE_PODMAN_ARGS` takes them.
    pub fn imgcache_podman_args(&self) -> String {
        self.global_args().join(" ")
    }

    /// `podman GLOBAL-OPTIONS ARGS` on this store.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.args(self.global_args())
            .env("TMPDIR", self.tmp())
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        output_of(&mut self.command(args))
    }
}

/// A private containerd (namespace k8s.io, native snapshotter), stopped (and its directory
/// removed) when dropped.
pub struct Containerd {
    dir: tempfile::TempDir,
    pub sock: PathBuf,
}

impl Containerd {
    pub fn start() -> Self {
        let dir = tempdir();
        let sock = dir.path().join("containerd.sock");
        let started = output_of(
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

    /// `ctr` (the one on the PATH) at this daemon, in k8s.io, importing into native.
    pub fn client(&self) -> Ctr {
        Ctr {
            program: "ctr".into(),
            address: self.sock.clone(),
            namespace: "k8s.io".into(),
            snapshotter: "native".into(),
        }
    }

    pub fn ctr(&self, args: &[&str]) -> Run {
        self.client().run(args)
    }

    /// The top-level digest `ctr images ls` gives `name`, if listed.
    pub fn listed(&self, name: &str) -> Option<String> {
        self.client().listed(name)
    }

    /// `ctr images import` of `file`, which must name `name`: (top-level digest, config digest).
    pub fn import(&self, file: &Path, name: &str) -> (String, String) {
        self.client().import(file, name)
    }
}

impl Drop for Containerd {
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

/// A `ctr` program at one containerd, in one namespace; what it imports goes to `snapshotter`.
#[derive(Clone, Debug)]
pub struct Ctr {
    /// A path, or a name looked up on the PATH.
    pub program: PathBuf,
    pub address: PathBuf,
    pub namespace: String,
    pub snapshotter: String,
}

impl Ctr {
    /// `ctr` of the shared containerd `version` of newer-engines.sh (`17`: 1.7, `21`: 2.1) in
    /// `namespace`, importing into the daemons' snapshotter (`NEWER_SNAPSHOTTER`).
    pub fn shared(version: &str, namespace: &str) -> Self {
        let var = |k: String| {
            env().vars.get(&k).cloned().unwrap_or_else(|| {
                panic!("env.sh has no {k}: did scripts/testenv/newer-engines.sh run?")
            })
        };
        Self {
            program: var(format!("NEWER_CTR{version}")).into(),
            address: var(format!("NEWER_CONTAINERD{version}_ADDRESS")).into(),
            namespace: namespace.to_owned(),
            snapshotter: var("NEWER_SNAPSHOTTER".to_owned()),
        }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        output_of(
            Command::new(&self.program)
                .arg("-a")
                .arg(&self.address)
                .args(["-n", &self.namespace])
                .args(args),
        )
    }

    /// The major version of this `ctr` (`ctr github.com/containerd/containerd/v2 2.1.9`: 2).
    pub fn major(&self) -> u32 {
        let out = self.run(&["--version"]).ok("ctr --version");
        let version = out.stdout.split_whitespace().last().unwrap_or_default();
        version.split('.').next().unwrap().parse().unwrap()
    }

    /// (name, top-level digest) of every image record of the namespace.
    pub fn records(&self) -> Vec<(String, String)> {
        parse_records(&self.run(&["images", "ls"]).ok("ctr images ls").stdout)
    }

    /// The top-level digest `ctr images ls` gives `name`, if listed.
    pub fn listed(&self, name: &str) -> Option<String> {
        (self.records().into_iter())
            .find(|(n, _)| n == name)
            .map(|(_, top)| top)
    }

    /// The config digest (image ID) of what `top` names: a manifest, or an index (its manifest
    /// of this host's platform).
    pub fn config_of(&self, top: &str) -> String {
        let get = |d: &str| {
            self.run(&["content", "get", d])
                .ok("ctr content get")
                .json()
        };
        let mut manifest = get(top);
        if let Some(list) = manifest["manifests"].as_array() {
            let arch = match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                a => a,
            };
            let child = list
                .iter()
                .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == arch)
                .unwrap_or_else(|| panic!("index {top} has no linux/{arch} manifest"))["digest"]
                .as_str()
                .unwrap()
                .to_owned();
            manifest = get(&child);
        }
        manifest["config"]["digest"].as_str().unwrap().to_owned()
    }

    /// `ctr images import --snapshotter S` of `file`, which must name `name`: (top-level
    /// digest, config digest).
    pub fn import(&self, file: &Path, name: &str) -> (String, String) {
        self.run(&["images", "rm", name]);
        assert_eq!(self.listed(name), None);
        self.run(&[
            "images",
            "import",
            "--snapshotter",
            &self.snapshotter,
            path_str(file),
        ])
        .ok("ctr images import");
        let top = self
            .listed(name)
            .unwrap_or_else(|| panic!("ctr import of {} gave no {name}", file.display()));
        let config = self.config_of(&top);
        (top, config)
    }

    /// Whether the layers of `diff_ids` are unpacked, as one committed snapshot chain, in
    /// [`Ctr::snapshotter`] (the snapshot named by the chain ID of the top layer).
    pub fn unpacked(&self, diff_ids: &[String]) -> bool {
        let chain = diff_ids
            .iter()
            .skip(1)
            .fold(diff_ids[0].clone(), |parent, d| {
                digest_of(format!("{parent} {d}").as_bytes())
            });
        let out = self.run(&[
            "snapshots",
            "--snapshotter",
            &self.snapshotter,
            "info",
            &chain,
        ]);
        out.code == 0 && out.stdout.contains("Committed")
    }
}

/// Removes, when dropped, the image records a test made in a shared containerd: those whose
/// name contains `marker` (a name only that test uses), or, in a namespace of the test's own,
/// every record and then the namespace.
pub struct CtrCleanup {
    pub ctr: Ctr,
    pub marker: String,
    pub own_namespace: bool,
}

impl Drop for CtrCleanup {
    fn drop(&mut self) {
        // No panic here (this may run while a test fails): what ctr lists, if it answers.
        let listed = parse_records(&self.ctr.run(&["images", "ls"]).stdout);
        let names: Vec<String> = (listed.into_iter())
            .map(|(n, _)| n)
            .filter(|n| self.own_namespace || n.contains(&self.marker))
            .collect();
        if !names.is_empty() {
            let mut args = vec!["images", "rm", "--sync"];
            args.extend(names.iter().map(String::as_str));
            let _ = self.ctr.run(&args);
        }
        if self.own_namespace {
            let _ = self.ctr.run(&["namespaces", "rm", &self.ctr.namespace]);
        }
    }
}

/// (name, top-level digest) of each row of `ctr images ls`.
fn parse_records(text: &str) -> Vec<(String, String)> {
    text.lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|c| c.len() > 2)
        .map(|c| (c[0].to_owned(), c[2].to_owned()))
        .collect()
}

/// `true` (after printing `SKIP test: reason`) when the test environment left `component` out
/// (`NEWER_SKIP_<component>` in env.sh: a sid package that could not be fetched).
pub fn skipped(test: &str, component: &str) -> bool {
    match env().vars.get(&format!("NEWER_SKIP_{component}")) {
        Some(why) => {
            eprintln!("SKIP {test}: {why}");
            true
        }
        None => false,
    }
}

/// A variable of env.sh that the newer engines set.
pub fn newer(name: &str) -> &'static str {
    env()
        .vars
        .get(name)
        .unwrap_or_else(|| panic!("{name} is not in env.sh: run scripts/testenv/up.sh"))
}

/// This machine's architecture as images name it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Removes, when dropped, the image records of dockerd 28 named by the given repositories
/// (exactly by name, with ctr in the engine's namespace).
pub struct Dockerd28Cleanup {
    pub repos: Vec<String>,
}

impl Drop for Dockerd28Cleanup {
    fn drop(&mut self) {
        let ctr = |args: &[&str]| {
            output_of(
                Command::new("ctr")
                    .args(["-a", newer("NEWER_DOCKERD28_CONTAINERD_ADDRESS")])
                    .args(["-n", newer("NEWER_DOCKERD28_NAMESPACE")])
                    .args(args),
            )
        };
        let listed = ctr(&["images", "ls", "-q"]).stdout;
        for name in listed.lines() {
            if self
                .repos
                .iter()
                .any(|r| name.starts_with(&format!("{r}:")) || name.starts_with(&format!("{r}@")))
            {
                ctr(&["images", "rm", "--sync", name]);
            }
        }
    }
}

/// `RepoDigests` of `reference`, by `image inspect` through `cli` (docker or podman).
pub fn repo_digests(cli: impl Fn(&[&str]) -> Run, reference: &str) -> Vec<String> {
    let got = cli(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        reference,
    ])
    .ok("image inspect RepoDigests");
    serde_json::from_str(got.stdout.trim()).unwrap()
}
