//! Shared test support: the test environment, running the binary, rewriting tarballs.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

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

/// The result of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident set size in KiB, when run with [`imgcache_rss`].
    pub max_rss_kib: Option<u64>,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_imgcache")
}

pub fn imgcache<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    run(Command::new(bin()).args(args), None)
}

/// Runs the binary under GNU time to record its peak RSS.
pub fn imgcache_rss<S: AsRef<std::ffi::OsStr>>(args: &[S], tmp: &Path) -> Run {
    let rss_file = tmp.join(format!("rss-{}", std::process::id()));
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(bin())
        .args(args);
    let mut r = run(&mut cmd, None);
    let text = fs::read_to_string(&rss_file).expect("GNU time output (apt package 'time')");
    r.max_rss_kib = text.lines().last().and_then(|l| l.trim().parse().ok());
    fs::remove_file(&rss_file).ok();
    r
}

fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Run {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let out = cmd.output().expect("run imgcache");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        max_rss_kib: None,
    }
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("imgcache-test-")
        .tempdir()
        .unwrap()
}

/// One entry of a tarball, held in memory (fixtures are small).
#[derive(Clone)]
pub struct Entry {
    pub header: tar::Header,
    pub name: String,
    pub data: Vec<u8>,
}

impl Entry {
    pub fn file(name: &str, data: &[u8]) -> Self {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        Entry {
            header,
            name: name.to_owned(),
            data: data.to_vec(),
        }
    }

    pub fn symlink(name: &str, target: &str) -> Self {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        header.set_link_name(target).unwrap();
        Entry {
            header,
            name: name.to_owned(),
            data: Vec::new(),
        }
    }
}

/// Reads every entry of a (small, plain) tarball.
pub fn read_tar(path: &Path) -> Vec<Entry> {
    let mut archive = tar::Archive::new(fs::File::open(path).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            Entry {
                header: e.header().clone(),
                name,
                data,
            }
        })
        .collect()
}

/// Writes entries as a tarball (names through GNU long-name records when needed).
pub fn write_tar(path: &Path, entries: &[Entry]) {
    let mut b = tar::Builder::new(fs::File::create(path).unwrap());
    for e in entries {
        let mut h = e.header.clone();
        h.set_size(e.data.len() as u64);
        if h.entry_type().is_symlink() || h.entry_type().is_hard_link() {
            let target = h.link_name().unwrap().unwrap().into_owned();
            b.append_link(&mut h, &e.name, target).unwrap();
        } else {
            b.append_data(&mut h, &e.name, &e.data[..]).unwrap();
        }
    }
    b.finish().unwrap();
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}
