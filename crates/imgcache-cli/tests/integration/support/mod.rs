//! Shared test support: the test environment and running programs (the rest in submodules).

#![allow(dead_code)]

mod bytes;
mod connect_proxy;
mod engines;
mod images;
mod private_registry;
mod push;
mod registry_log;
mod relay;
mod sandbox;
mod serve;
mod signers;
mod tarballs;
mod tmpfs;
mod token_registry;

pub use bytes::*;
pub use connect_proxy::*;
pub use engines::*;
pub use images::*;
pub use private_registry::*;
pub use push::*;
pub use registry_log::*;
pub use relay::*;
pub use sandbox::*;
pub use serve::*;
pub use signers::*;
pub use tarballs::*;
pub use tmpfs::*;
pub use token_registry::*;

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// What `scripts/testenv/up.sh` started and made.
pub struct TestEnv {
    pub vars: HashMap<String, String>,
    pub fixtures: PathBuf,
    pub oci_layout: PathBuf,
    pub rows: Vec<Fixture>,
}

/// One row of `fixtures.tsv`: a tarball made by a real tool, and the image IDs in it as
/// computed independently (skopeo inspect --config --raw | sha256sum, engine inspect).
#[derive(Clone, Debug)]
pub struct Fixture {
    pub file: PathBuf,
    pub producer: String,
    pub image_ids: Vec<String>,
    pub tags: Vec<String>,
}

pub fn env() -> &'static TestEnv {
    static ENV: OnceLock<TestEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        let base = std::env::var("IMGCACHE_TESTENV").unwrap_or_else(|_| "/tmp/imgcache-testenv".into());
        let env_sh = Path::new(&base).join("env.sh");
        let text = fs::read_to_string(&env_sh).unwrap_or_else(|e| {
            panic!("{}: {e}. These tests need the real test environment: run scripts/test.sh (or scripts/testenv/up.sh)", env_sh.display())
        });
        let vars: HashMap<String, String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect();
        let fixtures = PathBuf::from(&vars["TEST_FIXTURES"]);
        let oci_layout = PathBuf::from(&vars["TEST_OCI_LAYOUT"]);
        let tsv = fs::read_to_string(fixtures.join("fixtures.tsv")).expect("fixtures.tsv");
        let split = |s: &str| -> Vec<String> {
            if s == "-" || s.is_empty() { Vec::new() } else { s.split(',').map(str::to_owned).collect() }
        };
        let rows = tsv
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let c: Vec<&str> = l.split('\t').collect();
                Fixture {
                    file: fixtures.join(c[0]),
                    producer: c[1].to_owned(),
                    image_ids: split(c[2]),
                    tags: split(c.get(3).copied().unwrap_or("-")),
                }
            })
            .collect();
        TestEnv { vars, fixtures, oci_layout, rows }
    })
}

impl TestEnv {
    pub fn fixture(&self, producer: &str) -> &Fixture {
        self.rows
            .iter()
            .find(|r| r.producer == producer)
            .unwrap_or_else(|| panic!("no fixture from {producer} in fixtures.tsv"))
    }

    /// A blob of the OCI layout built by make-test-images.sh.
    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        fs::read(self.oci_layout.join("blobs/sha256").join(hex)).unwrap()
    }

    /// The manifest digest the layout's index.json gives `tag` (a ref.name annotation).
    pub fn layout_ref(&self, tag: &str) -> String {
        let index: Value =
            serde_json::from_slice(&fs::read(self.oci_layout.join("index.json")).unwrap()).unwrap();
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap_or_else(|| panic!("no {tag} in the OCI layout"))["digest"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// The result of one run of a program: the binary, or a tool (skopeo, podman, ctr, docker).
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident set size in KiB, when run with [`imgcache_rss`].
    pub max_rss_kib: Option<u64>,
}

impl Run {
    /// Fails when stdout or stderr holds any of `secrets`.
    pub fn assert_shows_none(&self, secrets: &[String], ctx: &str) {
        for s in secrets {
            assert!(
                !self.stdout.contains(s.as_str()) && !self.stderr.contains(s.as_str()),
                "{ctx}: a secret is printed\nstdout:\n{}\nstderr:\n{}",
                self.stdout,
                self.stderr
            );
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The run itself, once it is known to have exited 0 (`what` names it otherwise).
    pub fn ok(self, what: &str) -> Self {
        assert_eq!(
            self.code, 0,
            "{what}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_imgcache")
}

/// `imgcache ARGS` as it is, in this process's environment.
pub fn imgcache<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    output_of(Command::new(bin()).args(args))
}

/// Runs `imgcache ARGS` under GNU time to record its peak RSS (in `tmp`); `setup` may set its
/// directory and environment first.
pub fn imgcache_rss<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    tmp: &Path,
    setup: impl FnOnce(&mut Command),
) -> Run {
    let rss_file = tmp.join(format!("rss-{}", std::process::id()));
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(bin())
        .args(args);
    setup(&mut cmd);
    let mut r = output_of(&mut cmd);
    let text = fs::read_to_string(&rss_file).expect("GNU time output (apt package 'time')");
    r.max_rss_kib = text.lines().last().and_then(|l| l.trim().parse().ok());
    fs::remove_file(&rss_file).ok();
    r
}

/// Runs `cmd` to the end, stdin empty, and keeps what it printed.
pub fn output_of(cmd: &mut Command) -> Run {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    to_run(out)
}

/// Runs `cmd` to the end, stdin empty; it must succeed (`what` names it otherwise). What it
/// printed on stdout, byte for byte.
pub fn checked_stdout(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn to_run(out: std::process::Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        max_rss_kib: None,
    }
}

/// Runs `cmd` (stdout and stderr piped), killing it after `timeout`; returns the run and whether
/// it had to be killed.
pub fn watched(cmd: &mut Command, timeout: Duration) -> (Run, bool) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_watched(&mut child, timeout)
}

/// Waits for `child` (stdout and stderr piped), killing it after `timeout`; returns the run and
/// whether it had to be killed.
pub fn wait_watched(child: &mut Child, timeout: Duration) -> (Run, bool) {
    let drain = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut b = Vec::new();
            r.read_to_end(&mut b).ok();
            String::from_utf8_lossy(&b).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > timeout {
            timed_out = true;
            child.kill().ok();
            break child.wait().unwrap();
        }
        thread::sleep(Duration::from_millis(10));
    };
    (
        Run {
            code: status.code().unwrap_or(-1),
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
            max_rss_kib: None,
        },
        timed_out,
    )
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("imgcache-test-")
        .tempdir()
        .unwrap()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Names in a directory (empty when it does not exist).
pub fn listing(dir: &Path) -> std::collections::BTreeSet<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The image IDs of the images of one file of a `verify` or `inspect` document.
pub fn image_ids(file: &Value) -> Vec<&str> {
    file["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["image_id"].as_str().unwrap())
        .collect()
}
