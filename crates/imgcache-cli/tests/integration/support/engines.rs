//! The engines' own CLIs: the shared dockerd, podman on a private store, a private containerd.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Run, env, output_of, path_str, tempdir};

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

    pub fn ctr(&self, args: &[&str]) -> Run {
        output_of(
            Command::new("ctr")
                .arg("-a")
                .arg(&self.sock)
                .args(["-n", "k8s.io"])
                .args(args),
        )
    }

    /// The top-level digest `ctr images ls` gives `name`, if listed.
    pub fn listed(&self, name: &str) -> Option<String> {
        self.ctr(&["images", "ls"])
            .ok("ctr images ls")
            .stdout
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|c| c.first() == Some(&name))
            .map(|c| c[2].to_owned())
    }

    /// `ctr images import` of `file`, which must name `name`: (top-level digest, config digest).
    pub fn import(&self, file: &Path, name: &str) -> (String, String) {
        self.ctr(&["images", "rm", name]);
        assert_eq!(self.listed(name), None);
        self.ctr(&[
            "images",
            "import",
            "--snapshotter",
            "native",
            path_str(file),
        ])
        .ok("ctr images import");
        let top = self
            .listed(name)
            .unwrap_or_else(|| panic!("ctr import of {} gave no {name}", file.display()));
        let mut manifest = self
            .ctr(&["content", "get", &top])
            .ok("ctr content get")
            .json();
        // An index: the manifest of this host's platform (the one imported).
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
            manifest = self
                .ctr(&["content", "get", &child])
                .ok("ctr content get")
                .json();
        }
        let config = manifest["config"]["digest"].as_str().unwrap().to_owned();
        (top, config)
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
