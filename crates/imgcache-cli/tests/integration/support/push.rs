//! Support for the `push` and `sync` tests: a fault proxy that streams request bodies (uploads
//! of any size pass through it whole, or are cut where a test says), and the access log of a
//! private registry as (method, path, status).
//!
//! [`UploadProxy`] listens on `127.0.0.1:0` and forwards every request to the registry on a
//! fresh connection, its `Host` header unchanged: distribution builds the absolute upload
//! `Location` it answers from that header, so every upload request (`PATCH`, `PUT ?digest=`,
//! `GET` of a session) comes back through the proxy, which a test can check ([`Passed`]).
//! Each answer is sent with `Connection: close` and the connection closed after it. A
//! [`UploadRule`] matching a request (method, a path fragment, which of its matches) applies an
//! [`UploadFault`] instead of a faithful exchange. Request bodies must come with a
//! `Content-Length` (imgcache always sends one); a chunked request body is answered 501.
//!
//! Every socket has timeouts: dropping the proxy stops its threads.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::Value;

use super::LogMark;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Read and write timeout of every socket of the proxy.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request or response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// What to do to a matching request instead of a faithful exchange.
#[derive(Clone, Debug)]
pub enum UploadFault {
    /// Read the request (body too), answer `code` (a distribution error document, with
    /// `Retry-After` when given) without asking the registry.
    Answer { code: u16, retry_after: Option<u32> },
    /// Reset the connection once the request head is read: the registry sees nothing.
    ResetBeforeBody,
    /// Forward the head and the first `n` body bytes, then close the registry's connection
    /// (it sees a client gone mid-body), wait for it to finish, and reset the client's.
    ResetAfterBody(u64),
    /// Forward the whole request, read the registry's whole answer, then reset the client's
    /// connection instead of answering: the registry did it, the client does not know.
    LoseAnswer,
    /// Forward faithfully, but answer with this `Docker-Content-Digest` instead of the
    /// registry's (a registry that stored something else).
    SwapDigest(String),
    /// Forward faithfully, but give the answer's `Location` as a path (`/v2/...?...`), as
    /// some registries do, instead of distribution's absolute URL.
    RelativeLocation,
}

/// When a fault applies: the `skip..skip+times` requests (0-based) matching method and path.
#[derive(Clone, Debug)]
pub struct UploadRule {
    pub method: String,
    pub path_contains: String,
    pub skip: usize,
    pub times: usize,
    pub fault: UploadFault,
}

impl UploadRule {
    /// Only the `n`th (1-based) `method` request whose path contains `path_contains`.
    pub fn nth(method: &str, path_contains: &str, n: usize, fault: UploadFault) -> Self {
        Self {
            method: method.to_owned(),
            path_contains: path_contains.to_owned(),
            skip: n.saturating_sub(1),
            times: 1,
            fault,
        }
    }

    /// The `n`th (1-based) matching request and the `times - 1` after it.
    pub fn from_nth(
        method: &str,
        path_contains: &str,
        n: usize,
        times: usize,
        fault: UploadFault,
    ) -> Self {
        Self {
            times,
            ..Self::nth(method, path_contains, n, fault)
        }
    }

    /// Every matching request.
    pub fn always(method: &str, path_contains: &str, fault: UploadFault) -> Self {
        Self {
            times: usize::MAX,
            ..Self::nth(method, path_contains, 1, fault)
        }
    }
}

/// One request as the proxy saw it, and what became of it.
#[derive(Clone, Debug)]
pub struct Passed {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub host: Option<String>,
    pub content_length: Option<u64>,
    pub content_range: Option<String>,
    /// Body bytes forwarded to the registry.
    pub forwarded: u64,
    /// The registry's status, when it answered (also when the client never saw it).
    pub upstream_status: Option<u16>,
    /// The fault applied, if any (its `Debug`).
    pub fault: Option<String>,
}

impl Passed {
    /// `Content-Range: A-B` as (A, B).
    pub fn range(&self) -> Option<(u64, u64)> {
        let (a, b) = self.content_range.as_deref()?.split_once('-')?;
        Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
    }

    /// The path without its query.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or(&self.path)
    }
}

struct Shared {
    upstream: SocketAddr,
    rules: Mutex<Vec<(UploadRule, usize)>>,
    passed: Mutex<Vec<Passed>>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The proxy; stops (and joins its threads) when dropped.
pub struct UploadProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl UploadProxy {
    pub fn start(upstream: &str, rules: Vec<UploadRule>) -> Self {
        let upstream = upstream
            .to_socket_addrs()
            .expect("upstream address")
            .next()
            .expect("upstream address");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upload proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            rules: Mutex::new(rules.into_iter().map(|r| (r, 0)).collect()),
            passed: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = thread::Builder::new()
            .name("upload-proxy".into())
            .spawn(move || accept_loop(listener, s))
            .unwrap();
        Self {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:<port>`: the registry part of references pushed through the proxy.
    pub fn registry(&self) -> String {
        self.addr.to_string()
    }

    /// Every request seen so far, in order of arrival.
    pub fn passed(&self) -> Vec<Passed> {
        lock(&self.shared.passed).clone()
    }

    /// Removes every rule: from now on the proxy is faithful.
    pub fn clear_rules(&self) {
        lock(&self.shared.rules).clear();
    }

    pub fn clear_passed(&self) {
        lock(&self.shared.passed).clear();
    }
}

impl Drop for UploadProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    listener.set_nonblocking(true).unwrap();
    let mut handlers: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = shared.clone();
                if let Ok(h) = thread::Builder::new()
                    .name("upload-proxy-conn".into())
                    .spawn(move || {
                        let _ = handle(stream, &shared);
                    })
                {
                    handlers.push(h);
                }
                handlers.retain(|h| !h.is_finished());
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
    // Handlers end on their own: every read and write has a timeout.
    for h in handlers {
        let _ = h.join();
    }
}

/// A message head: the first line and the headers (names as sent).
struct Head {
    first: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The head as sent, with `Connection: close` instead of any `Connection` header and
    /// `replace` (name, value) instead of that header.
    fn encode(&self, replace: Option<(&str, &str)>) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.first);
        for (n, v) in &self.headers {
            if n.eq_ignore_ascii_case("connection") || n.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
            match replace {
                Some((r, value)) if n.eq_ignore_ascii_case(r) => {
                    out.push_str(&format!("{n}: {value}\r\n"))
                }
                _ => out.push_str(&format!("{n}: {v}\r\n")),
            }
        }
        out.push_str("Connection: close\r\n\r\n");
        out.into_bytes()
    }
}

/// Reads a head up to the empty line; `None` at end of stream before any byte.
fn read_head(s: &mut TcpStream) -> io::Result<Option<Head>> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            if raw.is_empty() {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        raw.push(byte[0]);
        if raw.len() > MAX_HEAD {
            return Err(io::Error::other("head too large"));
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("").to_owned();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Some(Head { first, headers }))
}

/// Copies `n` bytes from `from` to `to` (`to` may be a sink: `None`); the bytes copied.
fn copy_n(from: &mut TcpStream, mut to: Option<&mut TcpStream>, n: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut done = 0u64;
    while done < n {
        let want = buf.len().min((n - done) as usize);
        let got = from.read(&mut buf[..want])?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(t) = to.as_deref_mut() {
            t.write_all(&buf[..got])?;
        }
        done += got as u64;
    }
    Ok(done)
}

fn handle(mut client: TcpStream, shared: &Shared) -> io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    client.set_write_timeout(Some(IO_TIMEOUT))?;
    let Some(head) = read_head(&mut client)? else {
        return Ok(());
    };
    let mut parts = head.first.split(' ');
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let content_length = head
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok());
    let fault = pick_fault(shared, &method, &path);
    let index = {
        let mut passed = lock(&shared.passed);
        passed.push(Passed {
            method: method.clone(),
            path: path.clone(),
            host: head.header("host").map(str::to_owned),
            content_length,
            content_range: head.header("content-range").map(str::to_owned),
            forwarded: 0,
            upstream_status: None,
            fault: fault.as_ref().map(|f| format!("{f:?}")),
        });
        passed.len() - 1
    };
    let record = |f: &dyn Fn(&mut Passed)| f(&mut lock(&shared.passed)[index]);
    if head
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        client.write_all(
            b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return close(client);
    }
    let body_len = content_length.unwrap_or(0);

    match &fault {
        Some(UploadFault::ResetBeforeBody) => {
            reset_connection(client);
            return Ok(());
        }
        Some(UploadFault::Answer { code, retry_after }) => {
            copy_n(&mut client, None, body_len)?;
            let body = format!(
                r#"{{"errors":[{{"code":"{}","message":"injected HTTP {code}","detail":null}}]}}"#,
                if *code == 429 {
                    "TOOMANYREQUESTS"
                } else {
                    "UNAVAILABLE"
                }
            );
            let mut out = format!(
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            );
            if let Some(s) = retry_after {
                out.push_str(&format!("Retry-After: {s}\r\n"));
            }
            out.push_str("Connection: close\r\n\r\n");
            out.push_str(&body);
            client.write_all(out.as_bytes())?;
            return close(client);
        }
        _ => {}
    }

    let mut up = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5))?;
    up.set_read_timeout(Some(IO_TIMEOUT))?;
    up.set_write_timeout(Some(IO_TIMEOUT))?;
    up.write_all(&head.encode(None))?;
    let limit = match &fault {
        Some(UploadFault::ResetAfterBody(n)) => (*n).min(body_len),
        _ => body_len,
    };
    // The registry may answer (and stop reading) before the body ends: then its answer goes on.
    let forwarded = copy_n(&mut client, Some(&mut up), limit);
    record(&|p| p.forwarded = *forwarded.as_ref().unwrap_or(&0));
    if let Some(UploadFault::ResetAfterBody(_)) = &fault {
        // The registry sees the client leave mid-body; once it has dealt with that (its answer,
        // or its close), the client's connection breaks.
        let _ = up.shutdown(Shutdown::Write);
        let mut sink = Vec::new();
        let _ = up.read_to_end(&mut sink);
        if let Some(code) = status_of(&sink) {
            record(&|p| p.upstream_status = Some(code));
        }
        reset_connection(client);
        return Ok(());
    }
    // A registry that answered before the body ended has its answer read all the same.
    let Some(resp) = read_head(&mut up).ok().flatten() else {
        reset_connection(client);
        return Ok(());
    };
    let code = resp
        .first
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    record(&|p| p.upstream_status = code);
    if let Some(UploadFault::LoseAnswer) = &fault {
        let mut sink = Vec::new();
        let _ = up.read_to_end(&mut sink);
        reset_connection(client);
        return Ok(());
    }
    let relative = resp.header("location").map(|l| match l.find("://") {
        Some(i) => l[i + 3..]
            .find('/')
            .map_or("/".to_owned(), |j| l[i + 3 + j..].to_owned()),
        None => l.to_owned(),
    });
    let replace = match &fault {
        Some(UploadFault::SwapDigest(d)) => Some(("docker-content-digest", d.as_str())),
        Some(UploadFault::RelativeLocation) => relative.as_deref().map(|l| ("location", l)),
        _ => None,
    };
    client.write_all(&resp.encode(replace))?;
    // `Connection: close` went upstream: its body ends where its connection does (HEAD and
    // 204 answers have none), whatever its framing; pass it on as it is.
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match up.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => client.write_all(&buf[..n])?,
            Err(e) => return Err(e),
        }
    }
    close(client)
}

/// The status of an HTTP answer's first line.
fn status_of(raw: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(64)]).into_owned();
    text.split(' ').nth(1)?.parse().ok()
}

/// The first rule that matches and is due, its hit counted.
fn pick_fault(shared: &Shared, method: &str, path: &str) -> Option<UploadFault> {
    let mut rules = lock(&shared.rules);
    for (rule, hits) in rules.iter_mut() {
        if !rule.method.eq_ignore_ascii_case(method) || !path.contains(&rule.path_contains) {
            continue;
        }
        let n = *hits;
        *hits += 1;
        if n >= rule.skip && n - rule.skip < rule.times {
            return Some(rule.fault.clone());
        }
    }
    None
}

/// Finishes an answer: flush, FIN, and wait (bounded) for the client to close its side.
fn close(mut s: TcpStream) -> io::Result<()> {
    s.flush()?;
    let _ = s.shutdown(Shutdown::Write);
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut sink = [0u8; 4096];
    for _ in 0..64 {
        match s.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Ok(())
}

/// Closes with a TCP reset (`SO_LINGER` 0), not a FIN (the fault proxies' "reset").
pub fn reset_connection(s: TcpStream) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        #[repr(C)]
        struct Linger {
            l_onoff: i32,
            l_linger: i32,
        }
        unsafe extern "C" {
            fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
        }
        const SOL_SOCKET: i32 = 1;
        const SO_LINGER: i32 = 13;
        let linger = Linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket descriptor and a properly sized `struct linger`.
        unsafe {
            setsockopt(
                s.as_raw_fd(),
                SOL_SOCKET,
                SO_LINGER,
                &linger,
                std::mem::size_of::<Linger>() as u32,
            );
        }
    }
    drop(s);
}

/// One access-log line of a registry: `"METHOD PATH HTTP/1.1" STATUS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub status: u16,
    /// The `User-Agent`.
    pub agent: String,
}

impl Hit {
    /// The path without its query.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or(&self.path)
    }

    /// `METHOD /path?query STATUS`, for messages.
    pub fn line(&self) -> String {
        format!("{} {} {}", self.method, self.path, self.status)
    }
}

/// The requests imgcache made (by `User-Agent`: not skopeo's nor podman's checks) that a
/// private registry logged since `mark`, but the `GET /v2/` version checks (each run of the
/// binary makes one).
pub fn hits_since(mark: &LogMark) -> Vec<Hit> {
    mark.accesses()
        .iter()
        .filter_map(|l| parse_hit(l))
        .filter(|h| h.agent.starts_with("imgcache/"))
        .filter(|h| !(h.method == "GET" && h.path == "/v2/"))
        .collect()
}

/// `... "PUT /v2/x/manifests/v1 HTTP/1.1" 201 0 "" "imgcache/0.1.0"` as a [`Hit`].
pub fn parse_hit(line: &str) -> Option<Hit> {
    let (_, rest) = line.split_once('"')?;
    let (request, after) = rest.split_once('"')?;
    let mut r = request.split(' ');
    let (method, path) = (r.next()?.to_owned(), r.next()?.to_owned());
    let status = after.split_whitespace().next()?.parse().ok()?;
    // `STATUS SIZE "REFERER" "AGENT"`: the agent is the last quoted field.
    let agent = after
        .trim_end()
        .strip_suffix('"')
        .and_then(|a| a.rsplit_once('"'))
        .map_or("", |(_, agent)| agent)
        .to_owned();
    Some(Hit {
        method,
        path,
        status,
        agent,
    })
}

/// The lines of `hits`, for messages.
pub fn hit_lines(hits: &[Hit]) -> String {
    hits.iter().map(Hit::line).collect::<Vec<_>>().join("\n")
}

#[test]
fn access_log_lines_parse_into_hits() {
    let l = r#"127.0.0.1 - - [02/Dec/2026:05:55:22 +0000] "POST /v2/o/bb/blobs/uploads/?mount=sha256:ab&from=bb HTTP/1.1" 201 0 "" "imgcache/0.1.0""#;
    assert_eq!(
        parse_hit(l),
        Some(Hit {
            method: "POST".into(),
            path: "/v2/o/bb/blobs/uploads/?mount=sha256:ab&from=bb".into(),
            status: 201,
            agent: "imgcache/0.1.0".into(),
        })
    );
    assert_eq!(parse_hit(l).unwrap().route(), "/v2/o/bb/blobs/uploads/");
    assert_eq!(parse_hit("no quotes here"), None);
}

/// An index pushed to the plain test registry as `<repo>:v1`, as buildx makes them: two
/// platform images and, for the first, an attestation manifest (platform `unknown/unknown`,
/// an in-toto layer).
pub struct AttestedIndex {
    pub repo: String,
    /// `<registry>/<repo>:v1`.
    pub reference: String,
    pub index: Vec<u8>,
    pub digest: String,
    /// (digest, manifest bytes, platform) of every entry, the attestation last.
    pub entries: Vec<(String, Vec<u8>, String)>,
    /// The in-toto layer of the attestation: (digest, size).
    pub statement: (String, u64),
}

pub fn push_attested_index(what: &str) -> AttestedIndex {
    use super::{OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, diff_ids, digest_of, layer, registry};
    use serde_json::json;
    let repo = super::unique_name(what);
    let layout = super::Layout::new();
    let manifest = |config: &Value, layers: &[(String, usize, &str)]| -> Vec<u8> {
        let config = serde_json::to_vec(config).unwrap();
        let config_digest = layout.put(&config);
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": layers.iter().map(|(d, size, mt)| json!({
                "mediaType": mt, "digest": d, "size": size
            })).collect::<Vec<_>>(),
        }))
        .unwrap()
    };
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let l = layer(64 * 1024);
        layout.put(&l.blob);
        let config = json!({
            "architecture": arch, "os": "linux", "created": "2024-01-01T00:00:00Z",
            "config": {"Labels": {"test.repo": repo}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids(std::slice::from_ref(&l))},
        });
        let m = manifest(&config, &[(l.digest.clone(), l.blob.len(), OCI_LAYER_GZIP)]);
        entries.push((layout.put(&m), m, format!("linux/{arch}")));
    }
    let statement = serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://spdx.dev/Document",
        "subject": [{"name": repo, "digest": {"sha256": super::hex(&entries[0].0)}}],
        "predicate": {"spdxVersion": "SPDX-2.3", "name": repo},
    }))
    .unwrap();
    let statement_digest = layout.put(&statement);
    let att_config = json!({
        "architecture": "unknown", "os": "unknown", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [statement_digest]},
    });
    let att = manifest(
        &att_config,
        &[(
            statement_digest.clone(),
            statement.len(),
            "application/vnd.in-toto+json",
        )],
    );
    entries.push((layout.put(&att), att, "unknown/unknown".to_owned()));
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": entries.iter().map(|(d, m, p)| {
            let (os, arch) = p.split_once('/').unwrap();
            let mut e = json!({
                "mediaType": OCI_MANIFEST, "digest": d, "size": m.len(),
                "platform": {"architecture": arch, "os": os},
            });
            if os == "unknown" {
                e["annotations"] = json!({
                    "vnd.docker.reference.digest": entries[0].0,
                    "vnd.docker.reference.type": "attestation-manifest",
                });
            }
            e
        }).collect::<Vec<_>>(),
    }))
    .unwrap();
    let reference = format!("{}/{repo}:v1", registry());
    layout.push_v1(OCI_INDEX, &index, &reference, None);
    AttestedIndex {
        repo,
        reference,
        digest: digest_of(&index),
        index,
        entries,
        statement: (statement_digest, statement.len() as u64),
    }
}
