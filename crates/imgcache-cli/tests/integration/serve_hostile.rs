//! `imgcache serve` against bad input and through its lifecycle: signals, write methods,
//! hostile paths, oversized heads, ranges, clients that stall or leave, an origin that lies.
//!
//! Requests are written byte by byte on a `std::net::TcpStream` (see [`exchange`]), so that
//! hostile paths reach the server exactly as written, un-normalized. Every request says
//! `Connection: close` and its answer is read to the end of the connection: a body longer than
//! its framing would show (a HEAD or 304 with a body, for one).
//!
//! Every test has its own sandbox (cache root beside a canary), its own server (stopped by its
//! PID with SIGTERM, which must exit 0) and, when it lies, its own proxy in front of the plain
//! test registry ([`crate::proxy`]).

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::proxy::{self, Fault, Proxy, Rule};
use crate::support::*;

/// A liveness bound on every wait (a server that never answers, never exits, never closes):
/// never a speed requirement.
const LIVENESS: Duration = Duration::from_secs(180);
/// Read and write timeout of every client socket (also a liveness bound).
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// The layer of the large image: more than the loopback socket buffers hold, so that a client
/// that stops reading really holds a response in flight.
const BIG_LAYER: usize = 40 << 20;
/// Layers of the images a lying origin serves (as in `faults.rs`).
const SMALL_LAYER: usize = 200 * 1024;

// ---------------------------------------------------------------------------------------------
// Raw HTTP

/// An answer as read off the wire.
#[derive(Debug)]
struct Reply {
    status: u16,
    /// In order, names as sent.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Bytes after the framed body, up to the end of the connection (always empty when right).
    trailing: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self}"))
    }

    /// `errors[0].code` of a distribution error document.
    fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no errors[0].code: {self}"))
            .to_owned()
    }

    fn error_message(&self) -> String {
        self.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no errors[0].message: {self}"))
            .to_owned()
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut body = self.text();
        if body.len() > 600 {
            let mut cut = 600;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push_str("...");
        }
        write!(
            f,
            "HTTP {} {:?} body({} bytes) {body:?}",
            self.status,
            self.headers,
            self.body.len()
        )
    }
}

/// Extra request headers: (name, value).
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// A request, byte-exact: `METHOD TARGET HTTP/1.1`, a Host, `headers`, `Connection: close`,
/// a `Content-Length` when there is a body (unless `headers` frame it themselves), the body.
fn request_raw(method: &str, target: &[u8], headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: imgcache.test\r\n");
    let framed = headers.iter().any(|(n, _)| {
        n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding")
    });
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    if !framed && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH")) {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(body);
    out
}

fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    request_raw(method, target.as_bytes(), headers, body)
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Sends `raw` on a new connection and reads the answer to the end of the connection; `Err`
/// says how the connection ended without an answer (closed, reset).
fn exchange(addr: &str, raw: &[u8]) -> Result<Reply, String> {
    let mut s = connect(addr);
    // The server may answer (and close) before it read everything: the answer still counts.
    let wrote = s.write_all(raw).and_then(|()| s.flush());
    let head_request = raw.starts_with(b"HEAD ");
    let mut r = BufReader::new(s);
    match read_reply(&mut r, head_request, true) {
        Ok(reply) => Ok(reply),
        Err(e) => Err(match wrote {
            Ok(()) => format!("no answer: {e}"),
            Err(w) => format!("no answer: {e} (writing the request: {w})"),
        }),
    }
}

/// One answer (interim 1xx answers skipped), its body by its framing, then (`to_end`) the rest
/// of the connection.
fn read_reply<R: BufRead>(r: &mut R, head_request: bool, to_end: bool) -> io::Result<Reply> {
    let (status, headers) = loop {
        let line = read_line(r)?;
        if line.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before a status line",
            ));
        }
        let text = String::from_utf8_lossy(&line);
        let mut parts = text.trim_end().splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let status: u16 = parts
            .next()
            .and_then(|c| c.parse().ok())
            .filter(|_| version.starts_with("HTTP/1."))
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("status line {text:?}"))
            })?;
        let mut headers = Vec::new();
        loop {
            let l = read_line(r)?;
            if l.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed inside the head",
                ));
            }
            let l = String::from_utf8_lossy(&l).trim_end().to_owned();
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("header line {l:?}"))
            })?;
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
        if (100..200).contains(&status) {
            continue;
        }
        break (status, headers);
    };
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
        trailing: Vec::new(),
    };
    let no_body = head_request || status == 204 || status == 304;
    let chunked = reply
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if no_body {
        // Nothing framed: whatever comes is trailing.
    } else if chunked {
        loop {
            let line = read_line(r)?;
            let size = std::str::from_utf8(&line)
                .ok()
                .and_then(|l| usize::from_str_radix(l.trim().split(';').next()?, 16).ok())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "chunk size"))?;
            if size == 0 {
                while !read_line(r)?.trim_ascii().is_empty() {}
                break;
            }
            let start = reply.body.len();
            reply.body.resize(start + size, 0);
            r.read_exact(&mut reply.body[start..])?;
            read_line(r)?;
        }
    } else if let Some(len) = reply.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "content-length"))?;
        reply.body.resize(len, 0);
        r.read_exact(&mut reply.body)?;
    } else {
        r.read_to_end(&mut reply.body)?;
    }
    // What follows the answer on a `Connection: close` exchange: nothing, when framed right.
    // (A reset here, after a whole answer, is the server closing with unread request bytes.)
    if to_end {
        let _ = r.read_to_end(&mut reply.trailing);
    }
    Ok(reply)
}

fn read_line<R: BufRead>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    Ok(line)
}

/// A whole answer, which must have come, with nothing after its body.
fn must(addr: &str, raw: &[u8], what: &str) -> Reply {
    let reply = exchange(addr, raw).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        reply.trailing.is_empty(),
        "{what}: {} bytes after the answer: {reply}",
        reply.trailing.len()
    );
    reply
}

fn get(addr: &str, path: &str) -> Reply {
    must(
        addr,
        &request("GET", path, &[], b""),
        &format!("GET {path}"),
    )
}

fn get_with(addr: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    must(
        addr,
        &request("GET", path, headers, b""),
        &format!("GET {path} {headers:?}"),
    )
}

fn head(addr: &str, path: &str) -> Reply {
    must(
        addr,
        &request("HEAD", path, &[], b""),
        &format!("HEAD {path}"),
    )
}

/// A distribution error answer: `status`, a JSON error document with `code` and a message.
fn assert_error(reply: &Reply, status: u16, code: &str, ctx: &str) {
    assert_eq!(reply.status, status, "{ctx}: {reply}");
    assert_eq!(reply.error_code(), code, "{ctx}: {reply}");
    assert!(!reply.error_message().is_empty(), "{ctx}: {reply}");
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{ctx}: {reply}"
    );
}

// ---------------------------------------------------------------------------------------------
// The server as a process of this test (for what `support::Serving` does not show: every line
// of stdout, `--json`, SIGINT, a bounded wait for the exit)

struct Proc {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl Proc {
    fn start(sb: &Sandbox, args: &[&str]) -> Proc {
        let mut child = sb.command(args).spawn().expect("spawn imgcache serve");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || io::read_to_string(stderr).unwrap_or_default());
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child: Some(child),
            lines,
            stderr: Some(stderr),
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The first line of stdout (the process must print one).
    fn first_line(&mut self) -> String {
        match self.lines.recv_timeout(LIVENESS) {
            Ok(l) => l,
            Err(e) => {
                let (status, _, stderr) = self.kill();
                panic!("imgcache serve printed no line ({e}); {status:?}\nstderr:\n{stderr}")
            }
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {}", self.pid());
    }

    /// Waits for the exit (bounded): the status, the lines of stdout after the first one read,
    /// and stderr.
    fn wait(mut self) -> (ExitStatus, Vec<String>, String) {
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > LIVENESS {
                child.kill().ok();
                child.wait().ok();
                let stderr = self.stderr.take().unwrap().join().unwrap_or_default();
                panic!(
                    "imgcache serve (pid {}) did not exit\nstderr:\n{stderr}",
                    child.id()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        let rest: Vec<String> = self.lines.iter().collect();
        let stderr = self.stderr.take().unwrap().join().unwrap_or_default();
        (status, rest, stderr)
    }

    fn kill(&mut self) -> (Option<ExitStatus>, Vec<String>, String) {
        let status = self.child.take().map(|mut c| {
            c.kill().ok();
            c.wait().unwrap()
        });
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (status, self.lines.try_iter().collect(), stderr)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}

/// Stops a [`Serving`] with SIGTERM: it must exit 0, without a panic. Its stderr.
fn stop(srv: Serving, ctx: &str) -> String {
    let (status, stderr) = srv.stop();
    assert!(
        status.success(),
        "{ctx}: imgcache serve exited {status:?} on SIGTERM\nstderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{ctx}: stderr:\n{stderr}");
    stderr
}

// ---------------------------------------------------------------------------------------------
// Cached images

/// An image as the cache holds it.
#[derive(Clone, Debug)]
struct Cached {
    /// The repository path under `/v2/` that names it (`busybox`, `127.0.0.1__5000/busybox`).
    path: String,
    tag: String,
    manifest: Vec<u8>,
    digest: String,
    media_type: String,
    /// Config and layers: (digest, size).
    blobs: Vec<(String, u64)>,
}

impl Cached {
    fn from_manifest(path: &str, tag: &str, manifest: Vec<u8>) -> Cached {
        let doc: Value = serde_json::from_slice(&manifest).expect("a JSON manifest");
        let desc = |d: &Value| {
            (
                d["digest"].as_str().unwrap().to_owned(),
                d["size"].as_u64().unwrap(),
            )
        };
        let mut blobs = vec![desc(&doc["config"])];
        blobs.extend(doc["layers"].as_array().unwrap().iter().map(desc));
        Cached {
            path: path.to_owned(),
            tag: tag.to_owned(),
            digest: digest_of(&manifest),
            media_type: doc["mediaType"].as_str().unwrap_or_default().to_owned(),
            manifest,
            blobs,
        }
    }

    fn manifest_path(&self) -> String {
        format!("/v2/{}/manifests/{}", self.path, self.tag)
    }

    fn manifest_by_digest(&self) -> String {
        format!("/v2/{}/manifests/{}", self.path, self.digest)
    }

    fn blob_path(&self, digest: &str) -> String {
        format!("/v2/{}/blobs/{digest}", self.path)
    }

    /// The largest layer: (digest, size).
    fn big_layer(&self) -> (String, u64) {
        self.blobs[1..]
            .iter()
            .max_by_key(|(_, s)| *s)
            .cloned()
            .unwrap()
    }
}

/// Pulls `127.0.0.1:5000/busybox:v1` into the sandbox.
fn cache_busybox(sb: &Sandbox) -> Cached {
    let doc = sb.pull(&format!("{}/busybox:v1", registry()));
    let digest = doc["manifest_digest"].as_str().unwrap().to_owned();
    let c = Cached::from_manifest("busybox", "v1", sb.blob(&digest));
    assert_eq!(c.digest, digest);
    c
}

/// One image with a [`BIG_LAYER`] random layer, pushed once for all the tests of this run.
fn big_image() -> &'static Image {
    static BIG: OnceLock<Image> = OnceLock::new();
    BIG.get_or_init(|| fresh_image("serve-big", &[BIG_LAYER]))
}

/// Pulls [`big_image`] into the sandbox.
fn cache_big(sb: &Sandbox) -> Cached {
    let img = big_image();
    sb.pull(&img.reference);
    let c = Cached::from_manifest(&img.repo, "v1", sb.blob(&img.manifest_digest));
    assert_eq!(c.digest, img.manifest_digest);
    c
}

/// The server answers `c` right: its manifest byte-exact with its headers, and every blob.
fn assert_serves(addr: &str, c: &Cached, ctx: &str) {
    for path in [c.manifest_path(), c.manifest_by_digest()] {
        let m = get(addr, &path);
        assert_eq!(m.status, 200, "{ctx}: GET {path}: {m}");
        assert!(m.body == c.manifest, "{ctx}: GET {path}: other bytes: {m}");
        assert_eq!(
            m.header("docker-content-digest"),
            Some(c.digest.as_str()),
            "{ctx}: {m}"
        );
    }
    for (d, size) in &c.blobs {
        let b = get(addr, &c.blob_path(d));
        assert_eq!(b.status, 200, "{ctx}: GET blob {d}: {b}");
        assert_eq!(b.body.len() as u64, *size, "{ctx}: blob {d}");
        assert_eq!(
            &digest_of(&b.body),
            d,
            "{ctx}: blob {d} served with other bytes"
        );
    }
}

/// The cache is sound: every blob file hashes to its name, `fsck --deep` is clean.
fn assert_cache_sound(sb: &Sandbox, ctx: &str) {
    if sb.blob_dir().exists() {
        sb.assert_blob_files_hash_to_their_names_at(&sb.root, ctx);
    }
    sb.assert_fsck_deep_clean_at(&sb.root, ctx);
}

/// Every path under `dir` (relative), except the subtrees named in `skip`.
fn tree(dir: &Path, skip: &[&Path]) -> BTreeSet<String> {
    fn walk(base: &Path, dir: &Path, skip: &[&Path], out: &mut BTreeSet<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if skip.contains(&p.as_path()) {
                continue;
            }
            out.insert(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(base, &p, skip, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, skip, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// Sockets, seen from the kernel

/// The TCP state (`/proc/net/tcp`'s `st`) of the IPv4 socket from `local` to `remote` port;
/// `None` when there is none.
fn tcp_state(local: u16, remote: u16) -> Option<u8> {
    let text = fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port = |a: &str| {
        a.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() > 3 && port(f[1]) == Some(local) && port(f[2]) == Some(remote) {
            u8::from_str_radix(f[3], 16).ok()
        } else {
            None
        }
    })
}

const TCP_ESTABLISHED: u8 = 1;

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// Sends a GET of `path`, reads its head and `at_least` body bytes, and returns the connection
/// there (the rest of the answer unread) with the number of body bytes read.
fn start_reading(addr: &str, path: &str, at_least: usize) -> (TcpStream, usize) {
    let mut s = connect(addr);
    s.write_all(&request("GET", path, &[], b"")).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "GET {path}: closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            assert!(
                got.starts_with(b"HTTP/1.1 200"),
                "GET {path}: {}",
                String::from_utf8_lossy(&got[..end])
            );
            let body = got.len() - end - 4;
            if body >= at_least {
                return (s, body);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Lifecycle

#[test]
fn serve_prints_one_line_listens_on_a_real_port_and_exits_0_on_sigterm_and_sigint() {
    let sb = Sandbox::new();
    for (json, sig) in [
        (false, "TERM"),
        (false, "INT"),
        (true, "TERM"),
        (true, "INT"),
    ] {
        let ctx = format!("json={json} SIG{sig}");
        let mut args = vec![];
        if json {
            args.push("--json");
        }
        args.extend(["serve", "--listen", "127.0.0.1:0"]);
        let mut p = Proc::start(&sb, &args);
        let line = p.first_line();
        let url = if json {
            let doc: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{ctx}: not one JSON object ({e}): {line:?}"));
            assert!(doc.is_object(), "{ctx}: {line:?}");
            doc["url"]
                .as_str()
                .unwrap_or_else(|| panic!("{ctx}: no url: {line:?}"))
                .to_owned()
        } else {
            line.strip_prefix("listening on ")
                .unwrap_or_else(|| panic!("{ctx}: {line:?}"))
                .to_owned()
        };
        let addr = url
            .strip_prefix("http://127.0.0.1:")
            .unwrap_or_else(|| panic!("{ctx}: url {url:?}"));
        let port: u16 = addr
            .parse()
            .unwrap_or_else(|e| panic!("{ctx}: port {addr:?}: {e}"));
        assert_ne!(port, 0, "{ctx}: {line:?}");
        let addr = format!("127.0.0.1:{port}");

        // It accepts connections once the line is out.
        let base = get(&addr, "/v2/");
        assert_eq!(base.status, 200, "{ctx}: {base}");
        assert_eq!(base.json(), serde_json::json!({}), "{ctx}: {base}");
        assert_eq!(
            base.header("docker-distribution-api-version"),
            Some("registry/2.0"),
            "{ctx}: {base}"
        );

        p.signal(sig);
        let (status, rest, stderr) = p.wait();
        assert!(
            status.success(),
            "{ctx}: exit {status:?}\nstderr:\n{stderr}"
        );
        assert!(
            rest.is_empty(),
            "{ctx}: more stdout than one line: {rest:?}"
        );
        assert!(!stderr.contains("panicked"), "{ctx}: {stderr}");
        assert!(
            TcpStream::connect(&addr).is_err(),
            "{ctx}: {addr} still accepts connections after the exit"
        );
    }
}

#[test]
fn sigterm_while_slow_and_stalled_clients_read_a_large_blob_exits_0() {
    let sb = Sandbox::new();
    let big = cache_big(&sb);
    let (layer, size) = big.big_layer();
    let mut p = Proc::start(&sb, &["serve", "--listen", "127.0.0.1:0", "--offline"]);
    let line = p.first_line();
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_owned();

    // A slow reader: a little, a pause, a little, until the server is gone.
    let received = Arc::new(AtomicU64::new(0));
    let slow = {
        let (addr, path, received) = (addr.clone(), big.blob_path(&layer), received.clone());
        thread::spawn(move || {
            let (mut s, _) = start_reading(&addr, &path, 1);
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        received.fetch_add(n as u64, Ordering::SeqCst);
                    }
                }
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // A reader that stopped reading.
    let (stalled, _) = start_reading(&addr, &big.blob_path(&layer), 64 * 1024);
    let start = Instant::now();
    while received.load(Ordering::SeqCst) < 1 << 20 {
        assert!(start.elapsed() < LIVENESS, "the slow reader gets nothing");
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        received.load(Ordering::SeqCst) < size,
        "the slow reader already has the whole blob: no response in flight"
    );

    p.signal("TERM");
    let (status, rest, stderr) = p.wait();
    assert!(
        status.success(),
        "SIGTERM with responses in flight: exit {status:?}\nstderr:\n{stderr}"
    );
    assert!(rest.is_empty(), "{rest:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    slow.join().unwrap();
    drop(stalled);
    assert_cache_sound(&sb, "after SIGTERM with responses in flight");
}

// ---------------------------------------------------------------------------------------------
// 2. Read-only

#[test]
fn every_write_method_is_405_unsupported_and_changes_nothing() {
    let sb = Sandbox::new();
    let bb = cache_busybox(&sb);
    let canary = sb.path("canary");
    fs::write(&canary, b"canary\n").unwrap();
    let srv = Serving::start(&sb, &["--offline"]);
    let before = sb.snapshot();
    let outside = tree(sb.dir.path(), &[&sb.root]);

    let (layer, _) = bb.big_layer();
    let upload = "/v2/busybox/blobs/uploads/0b4d3e2c-1111-2222-3333-444455556666";
    let paths = [
        "/v2/".to_owned(),
        "/v2/_catalog".to_owned(),
        "/v2/busybox/tags/list".to_owned(),
        bb.manifest_path(),
        bb.manifest_by_digest(),
        "/v2/busybox/manifests/evil".to_owned(),
        bb.blob_path(&layer),
        "/v2/busybox/blobs/uploads/".to_owned(),
        format!("/v2/busybox/blobs/uploads/?mount={layer}&from=other"),
        format!("/v2/busybox/blobs/uploads/?digest={layer}"),
        upload.to_owned(),
        format!("{upload}?digest={layer}"),
        "/v2/newrepo/manifests/v1".to_owned(),
        "/v2/../../canary/manifests/v1".to_owned(),
        "/v2/busybox/referrers/".to_owned() + &bb.digest,
    ];
    let chunk = random_bytes(64 * 1024);
    let media_type = bb.media_type.clone();
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        for path in &paths {
            let bodies: Vec<(Headers, &[u8])> = vec![
                (vec![], &b""[..]),
                (
                    vec![("Content-Type", media_type.as_str())],
                    &bb.manifest[..],
                ),
                (
                    vec![
                        ("Content-Type", "application/octet-stream"),
                        ("Content-Range", "0-65535"),
                    ],
                    &chunk[..],
                ),
                (
                    vec![("Transfer-Encoding", "chunked")],
                    &b"5\r\nhello\r\n0\r\n\r\n"[..],
                ),
            ];
            for (headers, body) in bodies {
                let ctx = format!("{method} {path} {headers:?} ({} body bytes)", body.len());
                let raw = request(method, path, &headers, body);
                let reply = exchange(&srv.addr, &raw).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_error(&reply, 405, "UNSUPPORTED", &ctx);
                assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{ctx}: {reply}");
            }
        }
    }

    // Nor any other method than GET and HEAD.
    for method in [
        "OPTIONS", "TRACE", "PROPFIND", "MKCOL", "COPY", "MOVE", "LOCK",
    ] {
        for path in [
            "/v2/",
            bb.manifest_path().as_str(),
            "/v2/../../canary/manifests/v1",
        ] {
            let ctx = format!("{method} {path}");
            let reply = exchange(&srv.addr, &request(method, path, &[], b""))
                .unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert_error(&reply, 405, "UNSUPPORTED", &ctx);
            assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{ctx}: {reply}");
        }
    }
    for target in ["127.0.0.1:22", "imgcache.test:443", "canary:80"] {
        let ctx = format!("CONNECT {target}");
        let raw = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        match exchange(&srv.addr, raw.as_bytes()) {
            Ok(r) => assert!((400..500).contains(&r.status), "{ctx}: {r}"),
            Err(e) => eprintln!("{ctx}: connection closed: {e}"),
        }
    }

    assert_eq!(sb.snapshot(), before, "a write method changed the cache");
    assert_eq!(tree(sb.dir.path(), &[&sb.root]), outside);
    assert_eq!(fs::read(&canary).unwrap(), b"canary\n");
    assert!(
        !sb.refs()
            .iter()
            .any(|r| r.contains("evil") || r.contains("newrepo")),
        "{:?}",
        sb.refs()
    );
    assert_serves(&srv.addr, &bb, "after the writes");
    let tags = get(&srv.addr, "/v2/busybox/tags/list");
    assert_eq!(tags.json()["tags"], serde_json::json!(["v1"]), "{tags}");
    stop(srv, "write methods");
    sb.assert_fsck_deep_spotless();
}

// ---------------------------------------------------------------------------------------------
// 3. Hostile paths

/// What a hostile request must get.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// The spec's status and error code.
    Spec(u16, &'static str),
    /// Refused by the HTTP layer: a 4xx (any body), or a closed connection.
    Refused,
}

#[test]
fn hostile_paths_get_the_specs_errors_and_touch_nothing_outside_the_cache() {
    let sb = Sandbox::new();
    let bb = cache_busybox(&sb);
    let canary = sb.path("canary");
    fs::write(&canary, b"canary\n").unwrap();
    fs::create_dir_all(sb.path("etc")).unwrap();
    fs::write(sb.path("etc/passwd"), b"root:x:0:0\n").unwrap();
    let srv = Serving::start(&sb, &["--offline"]);
    // What valid requests do to the root (locks, the index) happens before the snapshot.
    assert_serves(&srv.addr, &bb, "warm-up");
    let cache_before = sb.snapshot();
    let root_before = tree(&sb.root, &[]);
    let outside = tree(sb.dir.path(), &[&sb.root]);

    let (layer, _) = bb.big_layer();
    let unknown = digest_of(b"never stored anywhere");
    let hex64 = hex(&unknown).to_owned();
    let long_name = "a".repeat(256);
    let long_path_name = vec!["a"; 130].join("/");
    let huge_name = "b".repeat(10_000);
    let long_tag = "t".repeat(129);
    const NAME: Want = Want::Spec(400, "NAME_INVALID");
    const TAG: Want = Want::Spec(400, "MANIFEST_INVALID");
    const DIGEST: Want = Want::Spec(400, "DIGEST_INVALID");
    const NOT_API: Want = Want::Spec(404, "UNSUPPORTED");
    let cases: Vec<(Vec<u8>, Want)> = [
        // Names: traversal, encoded traversal, absolute, NUL, case, length, separators.
        ("/v2/../etc/manifests/v1".to_owned(), NAME),
        ("/v2/../../canary/manifests/v1".into(), NAME),
        ("/v2/busybox/../../../canary/manifests/v1".into(), NAME),
        (format!("/v2/../../../../etc/passwd/blobs/{unknown}"), NAME),
        ("/v2/%2e%2e/manifests/v1".into(), NAME),
        ("/v2/%2E%2E/%2E%2E/canary/manifests/v1".into(), NAME),
        (format!("/v2/%2e%2e/%2e%2e/canary/blobs/{unknown}"), NAME),
        ("/v2/busybox%2f..%2f..%2fcanary/manifests/v1".into(), NAME),
        ("/v2/..%2f..%2fcanary/tags/list".into(), NAME),
        ("/v2//etc/passwd/manifests/v1".into(), NAME),
        (format!("/v2//etc/passwd/blobs/{unknown}"), NAME),
        ("/v2//manifests/v1".into(), NAME),
        ("/v2/busy%00box/manifests/v1".into(), NAME),
        ("/v2/busybox%00/manifests/v1".into(), NAME),
        ("/v2/%00/tags/list".into(), NAME),
        ("/v2/BusyBox/manifests/v1".into(), NAME),
        (format!("/v2/BUSYBOX/blobs/{layer}"), NAME),
        (format!("/v2/{long_name}/manifests/v1"), NAME),
        (format!("/v2/{long_path_name}/manifests/v1"), NAME),
        (format!("/v2/{huge_name}/manifests/v1"), NAME),
        ("/v2/a___b/manifests/v1".into(), NAME),
        ("/v2/busybox./manifests/v1".into(), NAME),
        ("/v2/.busybox/manifests/v1".into(), NAME),
        ("/v2/-busybox/manifests/v1".into(), NAME),
        ("/v2/busy box/tags/list".replace(' ', "%20"), NAME),
        ("/v2/../tags/list".into(), NAME),
        ("/v2/busybox//manifests/v1".into(), NAME),
        ("/v2/busybox/./manifests/v1".into(), NAME),
        ("/v2/./busybox/manifests/v1".into(), NAME),
        (format!("/v2/%2e%2e/referrers/{unknown}"), NAME),
        ("/v2/busybox/manifests/v1?ns=../../etc".into(), NAME),
        ("/v2/busybox/manifests/v1?ns=a%2Fb".into(), NAME),
        ("/v2/busybox/manifests/v1?ns".into(), NAME),
        ("/v2/busybox/manifests/v1?ns=".into(), NAME),
        ("/v2/busybox/manifests/v1?ns=%00".into(), NAME),
        // Tags.
        ("/v2/busybox/manifests/.v1".into(), TAG),
        ("/v2/busybox/manifests/-v1".into(), TAG),
        ("/v2/busybox/manifests/..".into(), TAG),
        ("/v2/busybox/manifests/v1%00".into(), TAG),
        ("/v2/busybox/manifests/v1%2f..%2f..".into(), TAG),
        ("/v2/busybox/manifests/v1/../../../canary".into(), TAG),
        ("/v2/busybox/manifests/".into(), TAG),
        (format!("/v2/busybox/manifests/{long_tag}"), TAG),
        // Digests.
        ("/v2/busybox/manifests/sha256:xyz".into(), DIGEST),
        ("/v2/busybox/blobs/sha256:xyz".into(), DIGEST),
        (
            "/v2/busybox/blobs/md5:d41d8cd98f00b204e9800998ecf8427e".into(),
            DIGEST,
        ),
        (
            "/v2/busybox/manifests/md5:d41d8cd98f00b204e9800998ecf8427e".into(),
            DIGEST,
        ),
        (format!("/v2/busybox/blobs/sha256:{}", &hex64[1..]), DIGEST),
        (format!("/v2/busybox/blobs/sha256:{hex64}0"), DIGEST),
        (
            format!("/v2/busybox/blobs/sha256:{}", hex64.to_ascii_uppercase()),
            DIGEST,
        ),
        (format!("/v2/busybox/blobs/{hex64}"), DIGEST),
        ("/v2/busybox/blobs/sha256:../../../canary".into(), DIGEST),
        (
            "/v2/busybox/blobs/sha256:%2e%2e%2f%2e%2e%2fcanary".into(),
            DIGEST,
        ),
        (format!("/v2/busybox/blobs/sha256:{hex64}/../../x"), DIGEST),
        ("/v2/busybox/blobs/".into(), DIGEST),
        ("/v2/busybox/referrers/sha256:xyz".into(), DIGEST),
        // Not the API.
        ("//etc/passwd".into(), NOT_API),
        ("/etc/passwd".into(), NOT_API),
        ("/".into(), NOT_API),
        ("/v3/busybox/manifests/v1".into(), NOT_API),
        ("/V2/busybox/manifests/v1".into(), NOT_API),
        ("/v2/busybox".into(), NOT_API),
        ("/v2/busybox/uploads/".into(), NOT_API),
        ("/v2_catalog".into(), NOT_API),
        ("/v2/../../../etc/passwd".into(), NOT_API),
        // Bytes that the HTTP layer may refuse before any route.
        ("../../canary".into(), Want::Refused),
        ("*".into(), Want::Refused),
        (
            "http://imgcache.test/v2/../../canary/manifests/v1".into(),
            Want::Refused,
        ),
        ("/v2/..\\..\\canary/manifests/v1".into(), Want::Refused),
        ("/v2/busy\"box/manifests/v1".into(), Want::Refused),
    ]
    .into_iter()
    .map(|(p, w)| (p.into_bytes(), w))
    .chain([
        (b"/v2/busy\0box/manifests/v1".to_vec(), Want::Refused),
        (b"/v2/busybox/manifests/v1\0".to_vec(), Want::Refused),
        (b"/v2/\xff\xfe/manifests/v1".to_vec(), Want::Refused),
        (b"/v2/busybox\r/manifests/v1".to_vec(), Want::Refused),
        (b"/v2/busy\tbox/manifests/v1".to_vec(), Want::Refused),
        (b"/v2/\x7f/manifests/v1".to_vec(), Want::Refused),
    ])
    .collect();

    for (target, want) in &cases {
        for method in ["GET", "HEAD"] {
            let ctx = format!(
                "{method} {:?} (want {want:?})",
                String::from_utf8_lossy(target)
            );
            let result = exchange(&srv.addr, &request_raw(method, target, &[], b""));
            match (*want, result) {
                (Want::Spec(status, code), Ok(reply)) => {
                    assert_eq!(reply.status, status, "{ctx}: {reply}");
                    if method == "GET" {
                        assert_error(&reply, status, code, &ctx);
                        assert!(
                            !reply.text().contains(&huge_name),
                            "{ctx}: the whole 10 KB name is echoed in the error"
                        );
                    } else {
                        assert!(reply.body.is_empty(), "{ctx}: HEAD with a body: {reply}");
                    }
                    assert!(
                        reply.trailing.is_empty(),
                        "{ctx}: bytes after the answer: {reply}"
                    );
                }
                (Want::Spec(..), Err(e)) => panic!("{ctx}: {e}"),
                (Want::Refused, Ok(reply)) => {
                    assert!(
                        (400..500).contains(&reply.status),
                        "{ctx}: not refused: {reply}"
                    );
                }
                (Want::Refused, Err(_)) => {}
            }
            // The server still serves.
            let ok = get(&srv.addr, &bb.manifest_path());
            assert_eq!(ok.status, 200, "after {ctx}: {ok}");
            assert!(ok.body == bb.manifest, "after {ctx}: {ok}");
        }
    }

    // Valid at the limits of the grammar: not refused as invalid.
    let tag128 = format!("/v2/busybox/manifests/{}", "t".repeat(128));
    assert_error(
        &get(&srv.addr, &tag128),
        404,
        "MANIFEST_UNKNOWN",
        "a 128-character tag",
    );
    let name255 = format!("/v2/{}/manifests/v1", "a".repeat(255));
    let r = get(&srv.addr, &name255);
    assert_eq!(r.status, 404, "a 255-character name: {r}");

    // Absurd query parameters are no reason to fail a valid request.
    for path in [
        "/v2/_catalog?n=18446744073709551616&last=%ff%fe".to_owned(),
        "/v2/_catalog?n=-1".into(),
        format!("/v2/busybox/tags/list?{}", "x=1&".repeat(2000)),
        "/v2/busybox/tags/list?n=99999999999999999999999".into(),
        format!("{}?%zz=%00&&&=", bb.manifest_path()),
    ] {
        let r = get(&srv.addr, &path);
        assert_eq!(r.status, 200, "GET {path}: {r}");
    }

    // Hostile requests pipelined between valid ones on one connection: each answered, in order.
    let mut pipelined = Vec::new();
    let keep = |method: &str, target: &str| {
        format!("{method} {target} HTTP/1.1\r\nHost: imgcache.test\r\n\r\n").into_bytes()
    };
    pipelined.extend(keep("GET", &bb.manifest_path()));
    pipelined.extend(keep("GET", "/v2/../../canary/manifests/v1"));
    pipelined.extend(keep("HEAD", &bb.blob_path(&layer)));
    pipelined.extend(keep("GET", "/v2/busybox/blobs/sha256:xyz"));
    pipelined.extend(request("GET", &bb.manifest_by_digest(), &[], b""));
    let mut s = connect(&srv.addr);
    s.write_all(&pipelined).unwrap();
    let mut r = BufReader::new(s);
    let mut next = |head_request: bool, last: bool| {
        read_reply(&mut r, head_request, last).expect("a pipelined answer")
    };
    let a = next(false, false);
    assert!(a.status == 200 && a.body == bb.manifest, "pipelined 1: {a}");
    assert_error(&next(false, false), 400, "NAME_INVALID", "pipelined 2");
    let c = next(true, false);
    assert!(c.status == 200 && c.body.is_empty(), "pipelined 3: {c}");
    assert_error(&next(false, false), 400, "DIGEST_INVALID", "pipelined 4");
    let e = next(false, true);
    assert!(e.status == 200 && e.body == bb.manifest, "pipelined 5: {e}");
    assert!(e.trailing.is_empty(), "pipelined: {e}");

    assert_serves(&srv.addr, &bb, "after the hostile paths");
    assert_eq!(fs::read(&canary).unwrap(), b"canary\n");
    assert_eq!(fs::read(sb.path("etc/passwd")).unwrap(), b"root:x:0:0\n");
    assert_eq!(
        tree(sb.dir.path(), &[&sb.root]),
        outside,
        "something was written outside the cache root"
    );
    assert_eq!(
        tree(&sb.root, &[]),
        root_before,
        "files appeared in the cache root"
    );
    assert_eq!(sb.snapshot(), cache_before, "the cache changed");
    stop(srv, "hostile paths");
    sb.assert_fsck_deep_spotless();
}

// ---------------------------------------------------------------------------------------------
// 4. Oversized heads

/// Refused: a 4xx in `allowed`, or the connection closed without an answer.
fn assert_refused(result: Result<Reply, String>, allowed: &[u16], ctx: &str) {
    match result {
        Ok(reply) => assert!(allowed.contains(&reply.status), "{ctx}: {reply}"),
        Err(e) => eprintln!("{ctx}: connection closed: {e}"),
    }
}

/// Writes `raw` in `piece`-byte writes, the server reading as they come.
fn exchange_in_pieces(addr: &str, raw: &[u8], piece: usize) -> Result<Reply, String> {
    let mut s = connect(addr);
    for p in raw.chunks(piece) {
        if s.write_all(p).is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(1));
    }
    read_reply(&mut BufReader::new(s), false, true).map_err(|e| format!("no answer: {e}"))
}

#[test]
fn a_request_head_over_64_kib_is_refused_however_it_arrives() {
    let sb = Sandbox::new();
    let bb = cache_busybox(&sb);
    let srv = Serving::start(&sb, &["--offline"]);
    let path = bb.manifest_path();

    let big = "x".repeat(100 * 1024);
    let one_header = request("GET", &path, &[("X-Big", &big)], b"");
    let kib = "y".repeat(1024);
    let names: Vec<String> = (0..80).map(|i| format!("X-Part-{i}")).collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), kib.as_str())).collect();
    // 82 headers (under the count limit), 82 KiB.
    let many_headers = request("GET", &path, &headers, b"");
    for (raw, what) in [
        (&one_header, "one 100 KiB header"),
        (&many_headers, "80 headers of 1 KiB"),
    ] {
        assert_refused(
            exchange_in_pieces(&srv.addr, raw, 4096),
            &[431],
            &format!("{what}, in 4 KiB writes"),
        );
        assert_eq!(get(&srv.addr, &path).status, 200);
        assert_refused(
            exchange(&srv.addr, raw),
            &[431],
            &format!("{what}, in one write"),
        );
        assert_eq!(get(&srv.addr, &path).status, 200);
    }
    stop(srv, "heads over 64 KiB");
}

#[test]
fn too_many_headers_and_endless_heads_are_refused_and_the_server_serves_the_next_client() {
    let sb = Sandbox::new();
    let bb = cache_busybox(&sb);
    let srv = Serving::start(&sb, &["--offline"]);
    let path = bb.manifest_path();

    // 200 small headers, and 101 (one over the limit: Host is one of them).
    for n in [200, 100] {
        let names: Vec<String> = (0..n).map(|i| format!("X-H{i}")).collect();
        let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        let raw = request("GET", &path, &headers, b"");
        assert_refused(
            exchange(&srv.addr, &raw),
            &[400, 431],
            &format!("{} headers", n + 2),
        );
        assert_eq!(get(&srv.addr, &path).status, 200);
    }

    // A request line of 100 KiB.
    let target = format!("/v2/busybox/manifests/{}", "z".repeat(100 * 1024));
    let raw = request("GET", &target, &[], b"");
    assert_refused(
        exchange(&srv.addr, &raw),
        &[400, 414, 431],
        "a 100 KiB request line",
    );
    assert_eq!(get(&srv.addr, &path).status, 200);

    // A head that never ends is refused at the limit, not read forever.
    let mut s = connect(&srv.addr);
    s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        .unwrap();
    let filler = vec![b'e'; 16 * 1024];
    let mut sent = 0usize;
    loop {
        match s.write_all(&filler) {
            Ok(()) => sent += filler.len(),
            Err(e) => {
                assert!(
                    !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ),
                    "an endless header: the server neither reads nor closes ({e})"
                );
                break;
            }
        }
        assert!(sent < 16 << 20, "the server read 16 MiB of one header");
    }
    drop(s);

    // Under the limits: served.
    let medium = "m".repeat(32 * 1024);
    let r = get_with(&srv.addr, &path, &[("X-Medium", &medium)]);
    assert_eq!(r.status, 200, "a 32 KiB header: {r}");
    let names: Vec<String> = (0..98).map(|i| format!("X-H{i}")).collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let r = get_with(&srv.addr, &path, &headers);
    assert_eq!(r.status, 200, "100 headers: {r}");

    assert_serves(&srv.addr, &bb, "after the oversized heads");
    stop(srv, "oversized heads");
}

// ---------------------------------------------------------------------------------------------
// 5. Ranges, HEAD, conditional requests

#[test]
fn ranges_head_and_if_none_match_follow_the_contract() {
    let sb = Sandbox::new();
    let bb = cache_busybox(&sb);
    let srv = Serving::start(&sb, &["--offline"]);
    let addr = srv.addr.as_str();
    let (layer, size) = bb.big_layer();
    let file = sb.blob(&layer);
    assert_eq!(file.len() as u64, size);
    let len = file.len();
    let path = bb.blob_path(&layer);

    // The whole blob.
    let whole = get(addr, &path);
    assert_eq!(whole.status, 200, "{whole}");
    assert!(whole.body == file, "the blob served is not the blob file");
    assert_eq!(whole.header("accept-ranges"), Some("bytes"), "{whole}");
    assert_eq!(
        whole.header("content-length"),
        Some(len.to_string().as_str())
    );
    assert_eq!(whole.header("docker-content-digest"), Some(layer.as_str()));

    // Single satisfiable ranges: 206, Content-Range, the slice of the file.
    for (spec, start, end) in [
        ("bytes=0-0".to_owned(), 0, 1),
        ("bytes=100-1099".into(), 100, 1100),
        ("bytes=1000-".into(), 1000, len),
        ("bytes=-500".into(), len - 500, len),
        (format!("bytes=-{}", len + 10), 0, len),
        (format!("bytes={}-{}", len - 10, len + 100), len - 10, len),
        (format!("bytes={}-{}", len - 1, len - 1), len - 1, len),
    ] {
        let r = get_with(addr, &path, &[("Range", &spec)]);
        assert_eq!(r.status, 206, "{spec}: {r}");
        let want = format!("bytes {start}-{}/{len}", end - 1);
        assert_eq!(
            r.header("content-range"),
            Some(want.as_str()),
            "{spec}: {r}"
        );
        assert_eq!(
            r.header("content-length"),
            Some((end - start).to_string().as_str()),
            "{spec}: {r}"
        );
        assert!(
            r.body == file[start..end],
            "{spec}: other bytes than the file's slice"
        );
    }

    // Numbers at and past u64's end.
    for (spec, status) in [
        ("bytes=0-18446744073709551615", 206),
        ("bytes=-18446744073709551615", 206),
        ("bytes=18446744073709551615-", 416),
        ("bytes=18446744073709551615-18446744073709551615", 416),
        ("bytes=99999999999999999999999-", 200),
        ("bytes=0-99999999999999999999999", 200),
    ] {
        let r = get_with(addr, &path, &[("Range", spec)]);
        assert_eq!(r.status, status, "{spec}: {r}");
        match status {
            206 => {
                let want = format!("bytes 0-{}/{len}", len - 1);
                assert_eq!(
                    r.header("content-range"),
                    Some(want.as_str()),
                    "{spec}: {r}"
                );
                assert!(r.body == file, "{spec}: not the whole blob");
            }
            416 => assert!(r.body.is_empty(), "{spec}: {r}"),
            _ => assert!(r.body == file, "{spec}: not the whole blob"),
        }
    }

    // Unsatisfiable: 416 with the length.
    for spec in [
        format!("bytes={len}-"),
        format!("bytes={}-{}", len + 5, len + 10),
        "bytes=-0".to_owned(),
    ] {
        let r = get_with(addr, &path, &[("Range", &spec)]);
        assert_eq!(r.status, 416, "{spec}: {r}");
        let want = format!("bytes */{len}");
        assert_eq!(
            r.header("content-range"),
            Some(want.as_str()),
            "{spec}: {r}"
        );
        assert!(r.body.is_empty(), "{spec}: {r}");
    }

    // Several ranges (or one that does not parse): the whole blob, 200.
    for spec in [
        "bytes=0-1,5-6",
        "bytes=0-10, 20-30",
        "bytes=x-y",
        "pages=1-2",
    ] {
        let r = get_with(addr, &path, &[("Range", spec)]);
        assert_eq!(r.status, 200, "{spec}: {r}");
        assert!(r.header("content-range").is_none(), "{spec}: {r}");
        assert!(r.body == file, "{spec}: not the whole blob");
    }

    // HEAD: the length, no body (and nothing after the head on the connection).
    let h = head(addr, &path);
    assert_eq!(h.status, 200, "{h}");
    assert_eq!(h.header("content-length"), Some(len.to_string().as_str()));
    assert_eq!(h.header("docker-content-digest"), Some(layer.as_str()));
    assert!(h.body.is_empty() && h.trailing.is_empty(), "{h}");
    for mpath in [bb.manifest_path(), bb.manifest_by_digest()] {
        let h = head(addr, &mpath);
        assert_eq!(h.status, 200, "HEAD {mpath}: {h}");
        let mlen = bb.manifest.len().to_string();
        assert_eq!(h.header("content-length"), Some(mlen.as_str()), "{h}");
        assert_eq!(
            h.header("content-type"),
            Some(bb.media_type.as_str()),
            "{h}"
        );
        assert_eq!(h.header("docker-content-digest"), Some(bb.digest.as_str()));
        assert!(h.body.is_empty() && h.trailing.is_empty(), "{h}");
    }

    // Manifests: byte-exact, their headers, 304 for their ETag.
    let etag = format!("\"{}\"", bb.digest);
    for mpath in [bb.manifest_path(), bb.manifest_by_digest()] {
        let m = get(addr, &mpath);
        assert_eq!(m.status, 200, "{m}");
        assert!(m.body == bb.manifest, "GET {mpath}: not the stored bytes");
        assert_eq!(
            m.header("content-type"),
            Some(bb.media_type.as_str()),
            "{m}"
        );
        assert_eq!(
            m.header("content-length"),
            Some(bb.manifest.len().to_string().as_str())
        );
        assert_eq!(m.header("docker-content-digest"), Some(bb.digest.as_str()));
        assert_eq!(m.header("etag"), Some(etag.as_str()), "{m}");

        let n = get_with(addr, &mpath, &[("If-None-Match", &etag)]);
        assert_eq!(n.status, 304, "If-None-Match {etag}: {n}");
        assert!(n.body.is_empty() && n.trailing.is_empty(), "{n}");
        let other = format!("\"{}\"", digest_of(b"other"));
        let o = get_with(addr, &mpath, &[("If-None-Match", &other)]);
        assert_eq!(o.status, 200, "If-None-Match of another digest: {o}");
        assert!(o.body == bb.manifest);
    }

    // A manifest asked as a blob; the referrers API.
    let mb = get(addr, &bb.blob_path(&bb.digest));
    assert_eq!(mb.status, 200, "{mb}");
    assert!(mb.body == bb.manifest, "the manifest under /blobs/: {mb}");
    let refs = get(addr, &format!("/v2/busybox/referrers/{}", bb.digest));
    assert_eq!(refs.status, 200, "{refs}");
    let doc = refs.json();
    assert_eq!(doc["schemaVersion"], 2, "{refs}");
    assert_eq!(doc["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(doc["manifests"], serde_json::json!([]), "{refs}");

    stop(srv, "ranges");
    sb.assert_fsck_deep_spotless();
}

// ---------------------------------------------------------------------------------------------
// 6. Clients that leave, stall or trickle

/// Connections that send their head one byte a second, forever; the thread stops when told.
fn slow_loris(addr: &str, n: usize, stop: Arc<AtomicBool>) -> (Vec<u16>, thread::JoinHandle<()>) {
    let mut conns: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Loris: ")
                .unwrap();
            s
        })
        .collect();
    let ports = conns
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    let handle = thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            for s in &mut conns {
                let _ = s.write_all(b"a");
            }
            thread::sleep(Duration::from_secs(1));
        }
    });
    (ports, handle)
}

/// Waits (bounded) until the server closed every connection of `ports` (client ports).
fn wait_closed_by_server(server_port: u16, ports: &[u16], what: &str) {
    let start = Instant::now();
    loop {
        let open: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|p| tcp_state(server_port, *p) == Some(TCP_ESTABLISHED))
            .collect();
        if open.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < LIVENESS,
            "{what}: the server never closed {} connections ({open:?})",
            open.len()
        );
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn clients_that_leave_stall_or_trickle_do_not_block_others() {
    let sb = Sandbox::new();
    let big = cache_big(&sb);
    let bb = cache_busybox(&sb);
    let srv = Serving::start(&sb, &["--offline"]);
    let addr = srv.addr.clone();
    let server_port = port_of(&addr);
    let (layer, size) = big.big_layer();
    let layer_path = big.blob_path(&layer);

    // Clients that read part of the large blob and leave (FIN, and RST with unread data).
    for i in 0..4 {
        let (s, _) = start_reading(&addr, &layer_path, 1 << 20);
        if i % 2 == 0 {
            s.shutdown(Shutdown::Both).ok();
        }
        drop(s);
    }
    // A client that asked for a range and left.
    let mut s = connect(&addr);
    s.write_all(&request(
        "GET",
        &layer_path,
        &[("Range", "bytes=1000-")],
        b"",
    ))
    .unwrap();
    drop(s);

    // Clients that stopped reading the large blob, and slow lorises.
    let stalled: Vec<TcpStream> = (0..3)
        .map(|_| start_reading(&addr, &layer_path, 64 * 1024).0)
        .collect();
    let stop_loris = Arc::new(AtomicBool::new(false));
    let (loris_ports, loris) = slow_loris(&addr, 20, stop_loris.clone());

    // Meanwhile, other clients get right answers, several at once.
    let good: Vec<_> = (0..3)
        .map(|i| {
            let (addr, big, bb, layer) = (addr.clone(), big.clone(), bb.clone(), layer.clone());
            thread::spawn(move || {
                let ctx = format!("client {i} beside stalled ones");
                assert_serves(&addr, &bb, &ctx);
                let m = get(&addr, &big.manifest_path());
                assert!(m.body == big.manifest, "{ctx}: {m}");
                if i == 0 {
                    let b = get(&addr, &big.blob_path(&layer));
                    assert_eq!(b.status, 200, "{ctx}");
                    assert_eq!(b.body.len() as u64, size, "{ctx}");
                    assert_eq!(digest_of(&b.body), layer, "{ctx}: the large blob");
                }
                let r = get_with(&addr, &big.blob_path(&layer), &[("Range", "bytes=-4096")]);
                assert_eq!(r.status, 206, "{ctx}: {r}");
            })
        })
        .collect();
    for g in good {
        g.join().expect("a client beside the stalled ones failed");
    }
    // The lorises never complete a head: the server closes them (header time limit).
    wait_closed_by_server(server_port, &loris_ports, "slow-loris connections");
    stop_loris.store(true, Ordering::SeqCst);
    loris.join().unwrap();
    assert_serves(&addr, &bb, "after the lorises");

    drop(stalled);
    assert_serves(&addr, &big, "after the stalled readers left");
    stop(srv, "clients that leave");
    sb.assert_no_ingest();
    assert_cache_sound(&sb, "after clients that leave, stall or trickle");
    sb.assert_fsck_deep_spotless();
}

#[test]
fn connections_past_the_limit_wait_and_are_then_served() {
    let sb = Sandbox::new();
    let bb = cache_busybox(&sb);
    let srv = Serving::start(&sb, &["--offline"]);
    let server_port = port_of(&srv.addr);
    // More silent connections than the server serves at once (512).
    let silent: Vec<TcpStream> = (0..600).map(|_| connect(&srv.addr)).collect();
    let ports: Vec<u16> = silent
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    // A client behind them is answered once the server has closed silent ones.
    let (addr, late) = (srv.addr.clone(), bb.clone());
    let behind = thread::spawn(move || {
        let r = get(&addr, &late.manifest_path());
        assert_eq!(r.status, 200, "the client behind the flood: {r}");
        assert!(r.body == late.manifest);
    });
    behind.join().expect("the client behind the flood");
    wait_closed_by_server(server_port, &ports, "600 silent connections");
    drop(silent);
    // Every slot came back: more requests than slots, one after another.
    for i in 0..600 {
        let r = get(&srv.addr, "/v2/");
        assert_eq!(r.status, 200, "request {i} after the flood: {r}");
    }
    assert_serves(&srv.addr, &bb, "after the flood");
    stop(srv, "connection flood");
}

#[test]
fn a_stalled_reader_and_a_silent_connection_are_closed_by_the_server() {
    let sb = Sandbox::new();
    let big = cache_big(&sb);
    let srv = Serving::start(&sb, &["--offline"]);
    let server_port = port_of(&srv.addr);
    let (layer, size) = big.big_layer();
    let (stalled, read) = start_reading(&srv.addr, &big.blob_path(&layer), 64 * 1024);
    let silent = connect(&srv.addr);
    let ports = [
        stalled.local_addr().unwrap().port(),
        silent.local_addr().unwrap().port(),
    ];
    // Idle limit (and header limit) close them; no duration asserted, only that it happens.
    wait_closed_by_server(
        server_port,
        &ports,
        "a stalled reader and a silent connection",
    );
    // The stalled reader then gets less than the blob, then the end.
    let mut stalled = stalled;
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    assert!(
        ((read + rest.len()) as u64) < size,
        "the stalled reader got the whole blob: its connection was not cut"
    );
    assert_serves(&srv.addr, &big, "after the idle connections were closed");
    stop(srv, "idle limit");
    assert_cache_sound(&sb, "idle limit");
}

// ---------------------------------------------------------------------------------------------
// 7. An origin that lies

/// A fresh image on the plain registry behind a proxy with `rules`, and a server over an empty
/// cache that pulls through the proxy.
struct Lying {
    sb: Sandbox,
    proxy: Proxy,
    srv: Option<Serving>,
    img: Image,
    /// The image through the server.
    cached: Cached,
}

impl Lying {
    fn new(what: &str, layers: usize, rules: impl FnOnce(&Image) -> Vec<Rule>) -> Lying {
        let img = fresh_image(what, &vec![SMALL_LAYER; layers]);
        // What the registry serves (check rather than assume).
        let up = proxy::exchange(
            registry().parse().unwrap(),
            "GET",
            &format!("/v2/{}/manifests/v1", img.repo),
            &[("Accept".to_owned(), OCI_MANIFEST.to_owned())],
            b"",
        )
        .expect("the pushed manifest");
        assert_eq!(up.status, 200);
        assert_eq!(
            digest_of(&up.body),
            img.manifest_digest,
            "the registry serves another manifest"
        );
        let proxy = Proxy::with_rules(registry(), rules(&img));
        let sb = Sandbox::new();
        let srv = Serving::start(&sb, &[]);
        let path = format!("{}/{}", proxy.registry().replace(':', "__"), img.repo);
        let cached = Cached::from_manifest(&path, "v1", up.body);
        Lying {
            sb,
            proxy,
            srv: Some(srv),
            img,
            cached,
        }
    }

    fn addr(&self) -> &str {
        &self.srv.as_ref().unwrap().addr
    }

    /// The reference the cache records for the image.
    fn reference(&self) -> String {
        self.img.reference_at(&self.proxy.registry())
    }

    /// The answer to a request the lie must fail: an error naming the repository (404), or a
    /// cut connection; never a 2xx.
    fn assert_failed(&self, result: Result<Reply, String>, ctx: &str) {
        match result {
            Ok(reply) => {
                assert_eq!(reply.status, 404, "{ctx}: {reply}");
                let message = reply.error_message();
                assert!(
                    message.contains(&self.img.repo),
                    "{ctx}: the message does not name it: {reply}"
                );
                eprintln!("{ctx}: {message}");
            }
            Err(e) => eprintln!("{ctx}: connection cut: {e}"),
        }
    }

    /// Nothing bad got in, nothing of the image is listed, the server still answers.
    fn assert_nothing_bad_stored(&self, ctx: &str) {
        assert_cache_sound(&self.sb, ctx);
        let listed = self.sb.refs();
        assert!(
            !listed.contains(&self.reference()),
            "{ctx}: ls lists {} after a lie: {listed:?}",
            self.reference()
        );
        let base = get(self.addr(), "/v2/");
        assert_eq!(base.status, 200, "{ctx}: {base}");
    }

    /// Without the lie, the image is pulled through and served right, and stored right.
    fn assert_recovers(mut self, ctx: &str) {
        self.proxy.clear_rules();
        assert_serves(
            self.addr(),
            &self.cached,
            &format!("{ctx}, without the lie"),
        );
        let listed = self.sb.refs();
        assert!(listed.contains(&self.reference()), "{ctx}: {listed:?}");
        stop(self.srv.take().unwrap(), ctx);
        assert_cache_sound(&self.sb, &format!("{ctx}, at the end"));
    }
}

/// GETs of every blob of `c`: none may be a 200 of other bytes.
fn assert_no_wrong_blob_served(addr: &str, c: &Cached, ctx: &str) {
    for (d, _) in &c.blobs {
        match exchange(addr, &request("GET", &c.blob_path(d), &[], b"")) {
            Ok(r) if r.status == 200 => {
                assert_eq!(
                    &digest_of(&r.body),
                    d,
                    "{ctx}: blob {d} served with other bytes"
                )
            }
            Ok(r) => assert!(r.status >= 400, "{ctx}: blob {d}: {r}"),
            Err(_) => {}
        }
    }
}

#[test]
fn a_layer_with_a_flipped_byte_from_the_origin_is_neither_served_nor_stored() {
    let l = Lying::new("serve-flip", 2, |img| {
        vec![Rule::always(
            &Image::blob_path(img.layer(1)),
            Fault::FlipByte(1000),
        )]
    });
    let ctx = "a flipped byte";
    l.assert_failed(
        exchange(
            l.addr(),
            &request("GET", &l.cached.manifest_path(), &[], b""),
        ),
        ctx,
    );
    l.assert_nothing_bad_stored(ctx);
    assert_no_wrong_blob_served(l.addr(), &l.cached, ctx);
    l.assert_nothing_bad_stored(ctx);
    l.assert_recovers(ctx);
}

#[test]
fn a_truncated_layer_from_the_origin_is_neither_served_nor_stored() {
    let l = Lying::new("serve-cut", 2, |img| {
        vec![Rule::always(
            &Image::blob_path(img.layer(0)),
            Fault::Truncate(1000),
        )]
    });
    let ctx = "a truncated layer";
    let r = exchange(
        l.addr(),
        &request("GET", &l.cached.manifest_path(), &[], b""),
    );
    match r {
        // Resumed by ranges to the end, and verified: fine, if right.
        Ok(reply) if reply.status == 200 => {
            assert!(reply.body == l.cached.manifest, "{ctx}: {reply}")
        }
        other => l.assert_failed(other, ctx),
    }
    assert_no_wrong_blob_served(l.addr(), &l.cached, ctx);
    assert_cache_sound(&l.sb, ctx);
    l.assert_recovers(ctx);
}

#[test]
fn a_blob_longer_than_its_descriptor_from_the_origin_is_neither_served_nor_stored() {
    let l = Lying::new("serve-long", 1, |img| {
        vec![
            Rule::always(
                &Image::blob_path(&img.config_digest),
                Fault::ExtraBytes(100),
            ),
            Rule::always(&Image::blob_path(img.layer(0)), Fault::LieLength(-1000)),
        ]
    });
    let ctx = "wrong lengths";
    l.assert_failed(
        exchange(
            l.addr(),
            &request("GET", &l.cached.manifest_path(), &[], b""),
        ),
        ctx,
    );
    l.assert_nothing_bad_stored(ctx);
    assert_no_wrong_blob_served(l.addr(), &l.cached, ctx);
    l.assert_recovers(ctx);
}

#[test]
fn a_manifest_whose_bytes_do_not_match_the_digest_asked_is_neither_served_nor_stored() {
    // Another image's manifest, valid JSON, served in place of the one asked.
    let other = fresh_image("serve-other", &[SMALL_LAYER]);
    let l = Lying::new("serve-swap", 1, |_| {
        vec![Rule::always(
            "/manifests/",
            Fault::ReplaceBody(Arc::new(other.manifest.clone())),
        )]
    });
    let ctx = "a manifest of other bytes";
    let by_digest = l.cached.manifest_by_digest();
    l.assert_failed(
        exchange(l.addr(), &request("GET", &by_digest, &[], b"")),
        ctx,
    );
    l.assert_nothing_bad_stored(ctx);
    let h = exchange(l.addr(), &request("HEAD", &by_digest, &[], b""));
    if let Ok(h) = &h {
        assert_eq!(h.status, 404, "{ctx}: HEAD: {h}");
    }
    // By tag, the origin's Docker-Content-Digest names the real manifest, the body is another:
    // whatever the answer, what is served must be what its digest says.
    match exchange(
        l.addr(),
        &request("GET", &l.cached.manifest_path(), &[], b""),
    ) {
        Ok(r) if r.status == 200 => {
            let said = r.header("docker-content-digest").unwrap_or_default();
            assert_eq!(said, digest_of(&r.body), "{ctx}: by tag: {r}");
        }
        other => l.assert_failed(other, &format!("{ctx}, by tag")),
    }
    assert_cache_sound(&l.sb, ctx);
    l.proxy.clear_rules();
    let m = get(l.addr(), &by_digest);
    assert_eq!(m.status, 200, "{ctx}, without the lie: {m}");
    assert!(m.body == l.cached.manifest, "{ctx}, without the lie: {m}");
    l.assert_recovers(ctx);
}

/// The digest of the child manifest of index `bytes` for another platform than this machine's.
fn other_platform_child(index: &[u8]) -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let doc: Value = serde_json::from_slice(index).unwrap();
    doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] != arch)
        .expect("a child of another platform")["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_blob_pulled_through_on_its_own_is_verified_before_it_is_served_or_stored() {
    let proxy = Proxy::start(registry());
    let sb = Sandbox::new();
    let srv = Serving::start(&sb, &[]);
    let addr = srv.addr.clone();
    let repo = format!("{}/multiarch", proxy.registry().replace(':', "__"));
    // The index is pulled through (this machine's image; every child manifest and its config).
    let index = get(&addr, &format!("/v2/{repo}/manifests/v1"));
    assert_eq!(index.status, 200, "{index}");
    let child = other_platform_child(&index.body);
    let m = get(&addr, &format!("/v2/{repo}/manifests/{child}"));
    assert_eq!(m.status, 200, "the other platform's manifest: {m}");
    assert_eq!(digest_of(&m.body), child);
    let other = Cached::from_manifest(&repo, "v1", m.body);
    // Its config is stored with the index; a layer of it is not (nor shared with this
    // machine's image).
    let stored = sb.blob_files();
    let (blob, blob_size) = other
        .blobs
        .iter()
        .find(|(d, _)| !stored.contains(d))
        .cloned()
        .unwrap_or_else(|| {
            panic!("every blob of the other platform's image is stored: nothing to pull through")
        });

    // The origin lies about it: flipped, then too long, then cut.
    let path = other.blob_path(&blob);
    // (A cut body may be resumed with ranges and verified: then it is right, and stored.)
    for (fault, what) in [
        (Fault::FlipByte(10), "flipped"),
        (Fault::ExtraBytes(10), "too long"),
        (Fault::Truncate(blob_size as usize / 2), "truncated"),
    ] {
        let ctx = format!("a {what} blob pulled through on its own");
        proxy.clear_rules();
        proxy.add_rule(Rule::always(&Image::blob_path(&blob), fault));
        let served = match exchange(&addr, &request("GET", &path, &[], b"")) {
            Ok(r) if r.status == 200 => {
                assert!(what == "truncated", "{ctx}: a 200: {r}");
                assert_eq!(digest_of(&r.body), blob, "{ctx}: served with other bytes");
                true
            }
            Ok(r) => {
                assert_eq!(r.status, 404, "{ctx}: {r}");
                assert!(r.error_message().contains(&blob), "{ctx}: {r}");
                false
            }
            Err(e) => {
                eprintln!("{ctx}: connection cut: {e}");
                false
            }
        };
        assert_cache_sound(&sb, &ctx);
        if !served {
            assert!(!sb.blob_files().contains(&blob), "{ctx}: stored");
        }
        assert_eq!(get(&addr, "/v2/").status, 200, "{ctx}");
    }

    proxy.clear_rules();
    let b = get(&addr, &path);
    assert_eq!(b.status, 200, "without the lie: {b}");
    assert_eq!(digest_of(&b.body), blob);
    assert!(
        sb.blob_files().contains(&blob),
        "pulled through but not stored"
    );
    stop(srv, "blob pull-through");
    assert_cache_sound(&sb, "blob pull-through");
}

#[test]
fn a_client_leaving_during_a_pull_through_leaves_the_cache_sound() {
    let l = Lying::new("serve-leave", 1, |img| {
        vec![Rule::always(
            &Image::blob_path(img.layer(0)),
            Fault::Drip {
                chunk: 4096,
                pause: Duration::from_millis(40),
            },
        )]
    });
    let ctx = "a client that left mid pull-through";
    let mut s = connect(l.addr());
    s.write_all(&request("GET", &l.cached.manifest_path(), &[], b""))
        .unwrap();
    // Until the layer drips through the proxy, then leave.
    let start = Instant::now();
    while !l
        .proxy
        .seen()
        .iter()
        .any(|r| r.path.contains(&Image::blob_path(l.img.layer(0))))
    {
        assert!(
            start.elapsed() < LIVENESS,
            "{ctx}: the layer is never asked for"
        );
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(300));
    drop(s);
    // The next client, the lie still on (slow, not wrong), gets the image.
    let m = get(l.addr(), &l.cached.manifest_path());
    assert_eq!(m.status, 200, "{ctx}: the next client: {m}");
    assert!(m.body == l.cached.manifest, "{ctx}: {m}");
    assert_cache_sound(&l.sb, ctx);
    l.assert_recovers(ctx);
}

#[test]
fn a_huge_manifest_from_the_origin_is_refused_and_the_server_stays_up() {
    for declare_length in [true, false] {
        let l = Lying::new("serve-huge", 1, |_| {
            vec![Rule::always(
                "/manifests/",
                Fault::Huge {
                    size: 16 << 20,
                    declare_length,
                },
            )]
        });
        let ctx = format!("a 16 MiB manifest (Content-Length declared: {declare_length})");
        for path in [l.cached.manifest_path(), l.cached.manifest_by_digest()] {
            l.assert_failed(exchange(l.addr(), &request("GET", &path, &[], b"")), &ctx);
        }
        l.assert_nothing_bad_stored(&ctx);
        l.assert_recovers(&ctx);
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Unknown and ambiguous names

#[test]
fn offline_unknown_manifests_blobs_and_repositories_are_404_with_the_right_code() {
    let sb = Sandbox::new();
    let bb = cache_busybox(&sb);
    let srv = Serving::start(&sb, &["--offline"]);
    let addr = srv.addr.as_str();
    let before = sb.snapshot();
    let unknown = digest_of(&random_bytes(64));

    let r = get(addr, &format!("/v2/busybox/manifests/{unknown}"));
    assert_error(&r, 404, "MANIFEST_UNKNOWN", "unknown manifest digest");
    assert!(r.error_message().contains(&unknown), "{r}");
    let r = get(addr, &format!("/v2/busybox/blobs/{unknown}"));
    assert_error(&r, 404, "BLOB_UNKNOWN", "unknown blob digest");
    assert!(r.error_message().contains(&unknown), "{r}");
    let r = get(addr, "/v2/busybox/manifests/nosuchtag");
    assert_error(&r, 404, "MANIFEST_UNKNOWN", "unknown tag");
    assert!(r.error_message().contains("nosuchtag"), "{r}");
    let r = get(addr, "/v2/127.0.0.1__5000/nosuchrepo/manifests/v1");
    assert_error(&r, 404, "MANIFEST_UNKNOWN", "unknown repository");
    assert!(r.error_message().contains("nosuchrepo"), "{r}");
    let r = get(addr, "/v2/nosuchrepo/tags/list");
    assert_error(&r, 404, "NAME_UNKNOWN", "tags of an unknown repository");
    // A stored blob is served.
    let r = get(addr, &format!("/v2/busybox/blobs/{}", bb.blobs[0].0));
    assert_eq!(r.status, 200, "{r}");
    for path in [
        format!("/v2/busybox/manifests/{unknown}"),
        format!("/v2/busybox/blobs/{unknown}"),
    ] {
        let h = head(addr, &path);
        assert_eq!(h.status, 404, "HEAD {path}: {h}");
        assert!(h.body.is_empty() && h.trailing.is_empty(), "{h}");
    }
    let refs = get(addr, &format!("/v2/busybox/referrers/{unknown}"));
    assert_eq!(refs.status, 200, "{refs}");
    assert_eq!(refs.json()["manifests"], serde_json::json!([]), "{refs}");

    assert_eq!(sb.snapshot(), before, "offline answers changed the cache");
    stop(srv, "offline unknowns");
}

#[test]
fn a_bare_name_cached_from_two_registries_is_name_unknown_naming_both() {
    let sb = Sandbox::new();
    let direct = cache_busybox(&sb);
    let other_registry = {
        let proxy = Proxy::start(registry());
        sb.pull(&format!("{}/busybox:v1", proxy.registry()));
        proxy.registry()
    };
    let srv = Serving::start(&sb, &["--offline"]);
    let addr = srv.addr.as_str();
    let candidates = [
        format!("{}/busybox", registry()),
        format!("{other_registry}/busybox"),
    ];
    let (layer, _) = direct.big_layer();
    for path in [
        "/v2/busybox/manifests/v1".to_owned(),
        format!("/v2/busybox/manifests/{}", direct.digest),
        format!("/v2/busybox/blobs/{layer}"),
        "/v2/busybox/tags/list".to_owned(),
    ] {
        let r = get(addr, &path);
        assert_error(&r, 404, "NAME_UNKNOWN", &format!("GET {path}"));
        let message = r.error_message();
        for c in &candidates {
            assert!(
                message.contains(c.as_str()),
                "GET {path}: {c} not named: {message}"
            );
        }
        let h = head(addr, &path);
        assert_eq!(h.status, 404, "HEAD {path}: {h}");
        assert!(h.body.is_empty(), "{h}");
    }
    // Said which, each is served.
    for prefix in [
        registry().replace(':', "__"),
        other_registry.replace(':', "__"),
    ] {
        let c = Cached {
            path: format!("{prefix}/busybox"),
            ..direct.clone()
        };
        assert_serves(addr, &c, &prefix);
    }
    for ns in [registry().to_owned(), registry().replace(':', "%3A")] {
        let r = get(addr, &format!("/v2/busybox/manifests/v1?ns={ns}"));
        assert_eq!(r.status, 200, "?ns={ns}: {r}");
        assert!(r.body == direct.manifest);
    }
    stop(srv, "ambiguous name");
    sb.assert_fsck_deep_spotless();
}

// ---------------------------------------------------------------------------------------------
// 9. Garbage collection while a response reads a blob

/// `rm` then `prune` while a client is half-way through a layer: prune waits for the GC lock
/// the response holds (it says so), the client gets every byte of the layer, and only then is
/// the blob deleted.
#[test]
fn prune_waits_for_a_response_reading_the_blob_it_would_delete() {
    let sb = Sandbox::new();
    let c = cache_big(&sb);
    let (layer, size) = c.big_layer();
    let srv = Serving::start(&sb, &["--offline"]);
    let mut s = connect(&srv.addr);
    s.write_all(&request("GET", &c.blob_path(&layer), &[], b""))
        .unwrap();
    // The head and the first MiB of the body, kept.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let body_start = loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n")
            && got.len() - end - 4 >= 1 << 20
        {
            break end + 4;
        }
    };
    assert!(got.starts_with(b"HTTP/1.1 200"));
    let reference = big_image().reference.clone();
    sb.json(&["rm", &reference]);
    let mut prune = sb.command(&["prune", "--json"]);
    prune.env("IMGCACHE_LOG", "info");
    let mut prune = prune.spawn().unwrap();
    // prune says it waits for the lock the response holds (a liveness bound, not a speed one).
    let stderr = prune.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            tx.send(line).ok();
        }
    });
    let waiting = rx
        .recv_timeout(LIVENESS)
        .expect("prune printed nothing while the response held the GC lock");
    assert!(
        waiting.contains("waiting for the lock") && waiting.contains("gc.lock"),
        "{waiting}"
    );
    assert!(
        sb.blob_path(&layer).exists(),
        "prune deleted the blob being read"
    );
    // The rest of the body: every byte of the layer, as stored.
    s.read_to_end(&mut got).unwrap();
    let body = &got[body_start..];
    assert_eq!(body.len() as u64, size);
    assert_eq!(digest_of(body), layer);
    drop(s);
    let out = prune.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prune: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["blobs_removed"].as_u64().unwrap() >= 2, "{report:#}");
    assert!(!sb.blob_path(&layer).exists(), "prune left the blob");
    stop(srv, "after prune");
}
