//! A fault-injecting HTTP/1.1 reverse proxy in front of a real registry (test support).
//!
//! [`Proxy::start`] listens on `127.0.0.1:0`; every request is read whole, recorded ([`Seen`]),
//! forwarded to the upstream registry on a fresh connection (`Connection: close`), and answered
//! on a connection that is closed after the answer. A [`Rule`] matching the request (method, a
//! path fragment, which of its matches) applies a [`Fault`] instead of a faithful answer.
//!
//! A second listener (on `127.0.0.2` where the system allows it, else another port of
//! `127.0.0.1`: another origin either way) is where [`Fault::Redirect`] sends the client; it
//! forwards faithfully and records whether an `Authorization` header came with the request.
//!
//! Every socket has timeouts and every loop a bound: dropping the proxy stops its threads.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::support::{base64, reset_connection};

/// Read and write timeout of every socket.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head accepted, and the largest upstream body read.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;
/// The longest a drip may last, whatever it is asked.
const MAX_DRIP: Duration = Duration::from_secs(10);

/// What to do to a matching request instead of a faithful answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Declare the true `Content-Length`, send only the first `n` body bytes, close (FIN).
    Truncate(usize),
    /// Send the first `n` body bytes (head included), then reset the connection (RST).
    Reset(usize),
    /// Reset the connection without answering at all.
    ResetNow,
    /// Flip every bit of the body byte at this offset.
    FlipByte(usize),
    /// Answer `code` without asking upstream, with `Retry-After: <secs>` when given and `body`
    /// (a distribution error document when `None`). `{authorization}` in `body` becomes the
    /// request's `Authorization` value (a hostile server echoing secrets).
    Answer {
        code: u16,
        retry_after: Option<u32>,
        body: Option<String>,
    },
    /// Send the body in `chunk`-byte pieces with `pause` between them (bounded by [`MAX_DRIP`]).
    Drip { chunk: usize, pause: Duration },
    /// Declare `Content-Length: <true length + delta>` but send the true body, then close.
    LieLength(i64),
    /// Append this many bytes to the body (the declared length covers them).
    ExtraBytes(usize),
    /// `307` to the same path on the second listener.
    Redirect,
    /// Serve these bytes as the body, keeping upstream's headers (`Docker-Content-Digest` too).
    ReplaceBody(Arc<Vec<u8>>),
    /// A `200` manifest of `size` bytes (JSON, padded), with or without a `Content-Length`.
    Huge { size: usize, declare_length: bool },
    /// Forward without the `Range` header (a server that ignores ranges).
    StripRange,
}

impl Fault {
    /// [`Fault::Answer`] `code`, with a distribution error document and no `Retry-After`.
    pub fn answer(code: u16) -> Self {
        Fault::Answer {
            code,
            retry_after: None,
            body: None,
        }
    }

    /// [`Fault::Answer`] `code` with `body`, and no `Retry-After`.
    pub fn answer_with(code: u16, body: &str) -> Self {
        Fault::Answer {
            code,
            retry_after: None,
            body: Some(body.to_owned()),
        }
    }
}

/// When a [`Fault`] applies: the `nth..nth+times` requests (0-based) matching method and path.
#[derive(Clone, Debug)]
pub struct Rule {
    pub method: String,
    pub path_contains: String,
    pub skip: usize,
    pub times: Option<usize>,
    pub fault: Fault,
}

impl Rule {
    /// Every `GET` whose path contains `path_contains`.
    pub fn always(path_contains: &str, fault: Fault) -> Self {
        Self {
            method: "GET".into(),
            path_contains: path_contains.into(),
            skip: 0,
            times: None,
            fault,
        }
    }

    /// The first `n` matching `GET`s.
    pub fn first(n: usize, path_contains: &str, fault: Fault) -> Self {
        Self {
            times: Some(n),
            ..Self::always(path_contains, fault)
        }
    }

    /// Only the `n`th (1-based) matching `GET`.
    pub fn nth(n: usize, path_contains: &str, fault: Fault) -> Self {
        Self {
            skip: n.saturating_sub(1),
            times: Some(1),
            ..Self::always(path_contains, fault)
        }
    }
}

/// Which listener saw a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Front,
    RedirectTarget,
}

/// One request as the proxy saw it. Header names are lowercase; the value of `Authorization`
/// is never kept, only [`Seen::authorization`].
#[derive(Clone, Debug)]
pub struct Seen {
    pub listener: Listener,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub authorization: bool,
    /// The fault applied to it, if any (its `Debug`, shortened).
    pub fault: Option<String>,
    /// When its head was read.
    pub at: Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// N of `Range: bytes=N-`.
    pub fn range_start(&self) -> Option<u64> {
        let v = self.header("range")?.trim();
        let rest = v.strip_prefix("bytes=")?;
        rest.split('-').next()?.trim().parse().ok()
    }
}

/// The value of header `name` (any case) in `headers`.
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

struct Shared {
    upstream: SocketAddr,
    rules: Mutex<Vec<(Rule, usize)>>,
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
    /// `http://host:port` of the redirect target.
    redirect_base: String,
    /// The `Authorization` value the redirect target sends upstream (the registry wants one;
    /// the client must not send it there).
    redirect_upstream_auth: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The proxy; stops (and joins its threads) when dropped.
pub struct Proxy {
    addr: SocketAddr,
    redirect_addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy in front of `upstream` (`host:port`), without faults.
    pub fn start(upstream: &str) -> Proxy {
        Self::with_rules(upstream, Vec::new())
    }

    pub fn with_rules(upstream: &str, rules: Vec<Rule>) -> Proxy {
        let upstream = upstream
            .to_socket_addrs()
            .expect("upstream address")
            .next()
            .expect("upstream address");
        let front = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let target = TcpListener::bind("127.0.0.2:0")
            .or_else(|_| TcpListener::bind("127.0.0.1:0"))
            .expect("bind the redirect target");
        let addr = front.local_addr().unwrap();
        let redirect_addr = target.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            rules: Mutex::new(rules.into_iter().map(|r| (r, 0)).collect()),
            seen: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            redirect_base: format!("http://{redirect_addr}"),
            redirect_upstream_auth: Mutex::new(None),
        });
        let threads = [(front, Listener::Front), (target, Listener::RedirectTarget)]
            .into_iter()
            .map(|(l, which)| {
                let shared = shared.clone();
                thread::Builder::new()
                    .name(format!("proxy-{which:?}"))
                    .spawn(move || accept_loop(l, which, shared))
                    .unwrap()
            })
            .collect();
        Proxy {
            addr,
            redirect_addr,
            shared,
            threads,
        }
    }

    /// `127.0.0.1:<port>`: the registry part of references pulled through the proxy.
    pub fn registry(&self) -> String {
        self.addr.to_string()
    }

    pub fn redirect_target(&self) -> SocketAddr {
        self.redirect_addr
    }

    pub fn add_rule(&self, rule: Rule) {
        lock(&self.shared.rules).push((rule, 0));
    }

    /// Removes every rule: from now on the proxy is faithful.
    pub fn clear_rules(&self) {
        lock(&self.shared.rules).clear();
    }

    pub fn set_redirect_upstream_auth(&self, header: Option<String>) {
        *lock(&self.shared.redirect_upstream_auth) = header;
    }

    /// Every request seen so far, in order of arrival.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.shared.seen).clone()
    }

    pub fn clear_seen(&self) {
        lock(&self.shared.seen).clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, which: Listener, shared: Arc<Shared>) {
    listener.set_nonblocking(true).unwrap();
    let mut handlers: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = shared.clone();
                let h = thread::Builder::new()
                    .name("proxy-conn".into())
                    .spawn(move || {
                        let _ = handle(stream, which, &shared);
                    });
                if let Ok(h) = h {
                    handlers.push(h);
                }
                handlers.retain(|h| !h.is_finished());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
    // Handlers end on their own: every read and write has a timeout, drips check `stop`.
    for h in handlers {
        let _ = h.join();
    }
}

/// A request head, parsed.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// A response read from upstream (the body de-chunked).
pub struct Upstream {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Upstream {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn handle(mut client: TcpStream, which: Listener, shared: &Shared) -> io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    client.set_write_timeout(Some(IO_TIMEOUT))?;
    let Some(req) = read_request(&mut client)? else {
        // Not HTTP (the client's TLS probe): say so and close, as a plain-http server does.
        let _ = client.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    };
    let fault = match which {
        Listener::Front => pick_fault(shared, &req),
        Listener::RedirectTarget => None,
    };
    let authorization = req.header("authorization").is_some();
    lock(&shared.seen).push(Seen {
        listener: which,
        method: req.method.clone(),
        path: req.path.clone(),
        headers: req
            .headers
            .iter()
            .map(|(n, v)| {
                let n = n.to_ascii_lowercase();
                let v = if n == "authorization" {
                    "<present>".to_owned()
                } else {
                    v.clone()
                };
                (n, v)
            })
            .collect(),
        authorization,
        fault: fault.as_ref().map(|f| {
            let mut s = format!("{f:?}");
            s.truncate(80);
            s
        }),
        at: Instant::now(),
    });

    // Faults answered without upstream.
    match &fault {
        Some(Fault::ResetNow) => {
            reset_connection(client);
            return Ok(());
        }
        Some(Fault::Answer {
            code,
            retry_after,
            body,
        }) => {
            let auth = req.header("authorization").unwrap_or("");
            let body = match body {
                Some(b) => b.replace("{authorization}", auth),
                None => format!(
                    r#"{{"errors":[{{"code":"{}","message":"injected HTTP {code}","detail":null}}]}}"#,
                    match code {
                        404 => "BLOB_UNKNOWN",
                        429 => "TOOMANYREQUESTS",
                        _ => "UNAVAILABLE",
                    }
                ),
            };
            let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
            if let Some(s) = retry_after {
                headers.push(("Retry-After".to_owned(), s.to_string()));
            }
            write_head(&mut client, *code, &headers, Some(body.len() as u64))?;
            client.write_all(body.as_bytes())?;
            return close(client);
        }
        Some(Fault::Redirect) => {
            let location = format!("{}{}", shared.redirect_base, req.path);
            write_head(
                &mut client,
                307,
                &[("Location".to_owned(), location)],
                Some(0),
            )?;
            return close(client);
        }
        Some(Fault::Huge {
            size,
            declare_length,
        }) => {
            let body = huge_manifest(*size);
            let headers = vec![(
                "Content-Type".to_owned(),
                "application/vnd.oci.image.manifest.v1+json".to_owned(),
            )];
            write_head(
                &mut client,
                200,
                &headers,
                declare_length.then_some(body.len() as u64),
            )?;
            // The client may stop reading once it has seen enough: that is not an error here.
            let _ = client.write_all(&body);
            return close(client);
        }
        _ => {}
    }

    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(n, _)| {
            !matches!(
                n.to_ascii_lowercase().as_str(),
                "connection" | "keep-alive" | "proxy-connection" | "te" | "upgrade"
            )
        })
        .filter(|(n, _)| {
            !(matches!(fault, Some(Fault::StripRange)) && n.eq_ignore_ascii_case("range"))
        })
        .cloned()
        .collect();
    if which == Listener::RedirectTarget
        && let Some(a) = lock(&shared.redirect_upstream_auth).clone()
    {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
        headers.push(("Authorization".to_owned(), a));
    }
    let up = match exchange(shared.upstream, &req.method, &req.path, &headers, &req.body) {
        Ok(up) => up,
        Err(e) => {
            let body = format!("proxy: upstream failed: {e}");
            write_head(&mut client, 502, &[], Some(body.len() as u64))?;
            client.write_all(body.as_bytes())?;
            return close(client);
        }
    };
    let head_only = req.method.eq_ignore_ascii_case("HEAD");
    let resp_headers: Vec<(String, String)> = up
        .headers
        .iter()
        .filter(|(n, _)| {
            !matches!(
                n.to_ascii_lowercase().as_str(),
                "content-length" | "transfer-encoding" | "connection" | "keep-alive"
            )
        })
        .cloned()
        .collect();
    let declared = up.header("content-length").and_then(|v| v.parse().ok());
    let mut body = up.body;
    // Upstream's status line and headers, declaring `length` body bytes.
    let upstream_head = |client: &mut TcpStream, length: Option<u64>| {
        write_head_reason(client, up.status, &up.reason, &resp_headers, length)
    };
    if head_only {
        // Keep what upstream declared for HEAD.
        upstream_head(&mut client, declared)?;
        return close(client);
    }
    match fault {
        Some(Fault::Truncate(n)) => {
            upstream_head(&mut client, Some(body.len() as u64))?;
            client.write_all(&body[..n.min(body.len())])?;
            close(client)
        }
        Some(Fault::Reset(n)) => {
            upstream_head(&mut client, Some(body.len() as u64))?;
            client.write_all(&body[..n.min(body.len())])?;
            client.flush()?;
            // Let the client read what was sent before the reset throws it away.
            thread::sleep(Duration::from_millis(150));
            reset_connection(client);
            Ok(())
        }
        Some(Fault::FlipByte(i)) => {
            if let Some(b) = body.get_mut(i) {
                *b ^= 0xff;
            }
            upstream_head(&mut client, Some(body.len() as u64))?;
            client.write_all(&body)?;
            close(client)
        }
        Some(Fault::Drip { chunk, pause }) => {
            upstream_head(&mut client, Some(body.len() as u64))?;
            let started = Instant::now();
            let mut chunks = body.chunks(chunk.max(1)).peekable();
            while let Some(c) = chunks.next() {
                client.write_all(c)?;
                client.flush()?;
                if chunks.peek().is_none() {
                    break;
                }
                if shared.stop.load(Ordering::SeqCst) || started.elapsed() > MAX_DRIP {
                    // Bounded: the rest in one piece.
                    let rest: Vec<u8> = chunks.flatten().copied().collect();
                    client.write_all(&rest)?;
                    break;
                }
                thread::sleep(pause);
            }
            close(client)
        }
        Some(Fault::LieLength(delta)) => {
            let declared = (body.len() as i64 + delta).max(0) as u64;
            upstream_head(&mut client, Some(declared))?;
            let _ = client.write_all(&body);
            close(client)
        }
        Some(Fault::ExtraBytes(n)) => {
            body.extend(std::iter::repeat_n(0x5a, n));
            upstream_head(&mut client, Some(body.len() as u64))?;
            let _ = client.write_all(&body);
            close(client)
        }
        Some(Fault::ReplaceBody(bytes)) => {
            upstream_head(&mut client, Some(bytes.len() as u64))?;
            client.write_all(&bytes)?;
            close(client)
        }
        _ => {
            upstream_head(&mut client, Some(body.len() as u64))?;
            client.write_all(&body)?;
            close(client)
        }
    }
}

/// The first rule that matches and is due, its hit counted.
fn pick_fault(shared: &Shared, req: &Request) -> Option<Fault> {
    let mut rules = lock(&shared.rules);
    for (rule, hits) in rules.iter_mut() {
        if !rule.method.eq_ignore_ascii_case(&req.method) || !req.path.contains(&rule.path_contains)
        {
            continue;
        }
        let n = *hits;
        *hits += 1;
        if n >= rule.skip && rule.times.is_none_or(|t| n < rule.skip + t) {
            return Some(rule.fault.clone());
        }
    }
    None
}

/// Reads one request (head, and a body by `Content-Length`); `None` when it is not HTTP.
fn read_request(stream: &mut TcpStream) -> io::Result<Option<Request>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = stream.read(&mut byte)?;
        if n == 0 {
            return Ok(None);
        }
        if head.is_empty() && !byte[0].is_ascii_uppercase() {
            return Ok(None);
        }
        head.push(byte[0]);
        if head.ends_with(b"\r\n\r\n") {
            break;
        }
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(path), Some(version)) = (first.next(), first.next(), first.next())
    else {
        return Ok(None);
    };
    if !version.starts_with("HTTP/1.") {
        return Ok(None);
    }
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut req = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        headers,
        body: Vec::new(),
    };
    if let Some(len) = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        let mut body = vec![0u8; len.min(MAX_HEAD)];
        stream.read_exact(&mut body)?;
        req.body = body;
    }
    Ok(Some(req))
}

/// One request to `addr` on a new connection (`Connection: close`), its answer read whole.
pub fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> io::Result<Upstream> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    let has_host = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host"));
    if !has_host {
        out.push_str(&format!("Host: {addr}\r\n"));
    }
    for (n, v) in headers {
        if n.eq_ignore_ascii_case("content-length") {
            continue;
        }
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("Connection: close\r\n\r\n");
    s.write_all(out.as_bytes())?;
    s.write_all(body)?;
    s.flush()?;

    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.trim_end().splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"))?;
    let reason = parts.next().unwrap_or("").to_owned();
    let mut resp_headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            resp_headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut up = Upstream {
        status,
        reason,
        headers: resp_headers,
        body: Vec::new(),
    };
    if method.eq_ignore_ascii_case("HEAD") || status / 100 == 1 || status == 204 || status == 304 {
        return Ok(up);
    }
    let chunked = up
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            if up.body.len() + size > MAX_BODY {
                return Err(io::Error::other("upstream body too large"));
            }
            let start = up.body.len();
            up.body.resize(start + size, 0);
            r.read_exact(&mut up.body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(len) = up
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > MAX_BODY {
            return Err(io::Error::other("upstream body too large"));
        }
        up.body.resize(len, 0);
        r.read_exact(&mut up.body)?;
    } else {
        r.take(MAX_BODY as u64).read_to_end(&mut up.body)?;
    }
    Ok(up)
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        206 => "Partial Content",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Injected",
    }
}

fn write_head(
    w: &mut TcpStream,
    code: u16,
    headers: &[(String, String)],
    length: Option<u64>,
) -> io::Result<()> {
    write_head_reason(w, code, reason(code), headers, length)
}

fn write_head_reason(
    w: &mut TcpStream,
    code: u16,
    reason: &str,
    headers: &[(String, String)],
    length: Option<u64>,
) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {code} {reason}\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if let Some(len) = length {
        out.push_str(&format!("Content-Length: {len}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    w.write_all(out.as_bytes())
}

/// Finishes an answer: flush, FIN, and wait (bounded) for the client to close its side.
fn close(mut s: TcpStream) -> io::Result<()> {
    s.flush()?;
    let _ = s.shutdown(Shutdown::Write);
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut sink = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match s.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Ok(())
}

/// A JSON document of `size` bytes that looks like the start of a manifest.
fn huge_manifest(size: usize) -> Vec<u8> {
    let head = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"pad":""#;
    let tail = br#""}}"#;
    let mut v = Vec::with_capacity(size);
    v.extend_from_slice(head);
    v.resize(size.saturating_sub(tail.len()).max(head.len()), b'a');
    v.extend_from_slice(tail);
    v
}

/// `Basic base64(user:pass)`, for the redirect target to authenticate upstream.
pub fn basic_auth(user: &str, pass: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()))
}

#[test]
fn proxy_base64_matches_rfc_4648() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
}
