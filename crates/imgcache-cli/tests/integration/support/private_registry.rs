//! A Debian docker-registry of a test's own, on a free port, stopped by its PID, and its log.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::*;

/// A manifest or index as a registry serves it (`skopeo inspect --raw`).
#[derive(Clone, Debug)]
pub struct Manifest {
    /// `busybox:v1`, ...
    pub tag: String,
    pub raw: Vec<u8>,
    pub digest: String,
    pub media_type: String,
}

impl Manifest {
    pub fn of(registry: &str, tag: &str) -> Self {
        let raw = skopeo_raw(&format!("{registry}/{tag}"), &[]);
        let doc: Value = serde_json::from_slice(&raw).unwrap();
        Manifest {
            tag: tag.to_owned(),
            digest: digest_of(&raw),
            media_type: doc["mediaType"].as_str().unwrap_or_default().to_owned(),
            raw,
        }
    }

    /// `busybox` of `busybox:v1`.
    pub fn repo(&self) -> &str {
        self.tag.split_once(':').unwrap().0
    }

    /// `v1` of `busybox:v1`.
    pub fn tag_only(&self) -> &str {
        self.tag.split_once(':').unwrap().1
    }
}

/// A free loopback port below the kernel's ephemeral range (32768 and up), so that no server
/// of another test listening on port 0 gets it once this registry has stopped. Regression: a
/// stopped private registry's port, taken at once by another test's `serve`, "still answered".
/// Ports are handed out in turn from a random start, so two tests of this process never pick
/// the same one at once (regression: two registries started on one port, and the one that
/// failed to bind took the other's answer for its own).
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU32::new((nanos() % u64::from(COUNT)) as u32));
    loop {
        let port = (FIRST + next.fetch_add(1, Ordering::Relaxed) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A Debian docker-registry of the test's own (`start-registry.sh` on a free port), stopped by
/// its PID when the test stops it or ends.
pub struct PrivateRegistry {
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`
    pub addr: String,
    running: bool,
}

impl PrivateRegistry {
    /// A plain registry (no auth, no TLS).
    pub fn start() -> Self {
        Self::start_mode("plain", &[])
    }

    /// A registry in `start-registry.sh`'s MODE, with extra environment for the script.
    pub fn start_mode(mode: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempdir();
        let data = dir.path().join("data");
        let mut last = String::new();
        // A port found free may be taken before the registry binds it: try another.
        for _ in 0..5 {
            let port = free_port();
            let r = output_of(
                Command::new("bash")
                    .arg(testenv_script("start-registry.sh"))
                    .arg(port.to_string())
                    .arg(&data)
                    .arg(mode)
                    .envs(env.iter().copied()),
            );
            if r.code == 0 {
                return Self {
                    dir,
                    addr: format!("127.0.0.1:{port}"),
                    running: true,
                };
            }
            last = r.stderr;
        }
        panic!("start-registry.sh failed 5 times; last:\n{last}")
    }

    pub fn ctl(&self, name: &str) -> PathBuf {
        self.dir.path().join("data/_ctl").join(name)
    }

    /// `REGISTRY/TAG`.
    pub fn reference(&self, tag: &str) -> String {
        format!("{}/{tag}", self.addr)
    }

    /// Copies `tag` of the plain test registry here (every platform, digests kept): its
    /// manifest as this registry serves it, the same bytes as there.
    pub fn copy_from_main(&self, tag: &str) -> Manifest {
        let from = format!("{}/{tag}", registry());
        copy_between_registries(&from, &self.reference(tag));
        let here = Manifest::of(&self.addr, tag);
        assert_eq!(here.raw, Manifest::of(registry(), tag).raw, "{tag}");
        here
    }

    /// SIGTERM to its PID (`stop-pidfile.sh`, which checks the PID is still the registry's).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        output_of(
            Command::new("bash")
                .arg(testenv_script("stop-pidfile.sh"))
                .arg(self.ctl("registry.pid"))
                .arg("20")
                .arg(self.ctl("config.yml")),
        )
        .ok("stop-pidfile.sh of the private registry");
        let down = TcpStream::connect(&self.addr).is_err();
        assert!(down, "{} still answers after it was stopped", self.addr);
    }

    /// Its log from now on.
    pub fn mark(&self) -> LogMark {
        let path = self.ctl("registry.log");
        let start = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        LogMark { path, start }
    }
}

impl Drop for PrivateRegistry {
    fn drop(&mut self) {
        if self.running {
            self.running = false;
            let _ = Command::new("bash")
                .arg(testenv_script("stop-pidfile.sh"))
                .arg(self.ctl("registry.pid"))
                .arg("20")
                .arg(self.ctl("config.yml"))
                .output();
        }
    }
}

/// A private registry's log from a point on.
pub struct LogMark {
    path: PathBuf,
    start: u64,
}

impl LogMark {
    /// The access-log lines (`"GET /v2/... HTTP/1.1" 200 ...`) appended since the mark. Waits
    /// a moment first: the registry writes a line once it has sent the response.
    pub fn accesses(&self) -> Vec<String> {
        thread::sleep(Duration::from_millis(300));
        let mut f = fs::File::open(&self.path).unwrap();
        f.seek(SeekFrom::Start(self.start)).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains(" HTTP/1.1\""))
            .map(str::to_owned)
            .collect()
    }

    /// `GET /v2/<repo>/<kind>/<x>` lines since the mark, counted per `<x>` (`kind`: `blobs`,
    /// `manifests`).
    pub fn gets(&self, repo: &str, kind: &str) -> BTreeMap<String, usize> {
        let prefix = format!("\"GET /v2/{repo}/{kind}/");
        let mut out = BTreeMap::new();
        for l in self.accesses() {
            if let Some(i) = l.find(&prefix) {
                let x = l[i + prefix.len()..].split(' ').next().unwrap().to_owned();
                *out.entry(x).or_insert(0) += 1;
            }
        }
        out
    }
}

/// Regression: `start-registry.sh` took an answer on the port for its own registry's, so a
/// registry that had failed to bind a port another process held was reported ready (and a
/// test's stopped registry "still answered"). Here the registry runs on its own port and is
/// asked for the main test registry's port, which answers 200: that is not this registry.
#[test]
fn start_registry_never_takes_another_registrys_answer_for_its_own() {
    let reg = PrivateRegistry::start();
    let other_port = registry().rsplit_once(':').unwrap().1;
    let data = reg.dir.path().join("data");
    let r = output_of(
        Command::new("bash")
            .arg(testenv_script("start-registry.sh"))
            .arg(other_port)
            .arg(&data),
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stdout.trim().is_empty(), "printed a PID: {}", r.stdout);
    assert!(r.stderr.contains("does not answer"), "{}", r.stderr);
    // The registry itself is untouched and still the one on its port.
    assert!(TcpStream::connect(&reg.addr).is_ok());
}
