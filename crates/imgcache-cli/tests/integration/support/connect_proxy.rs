//! A small HTTP proxy on loopback (test support): `CONNECT host:port` tunnels, and plain-http
//! requests in absolute form (`GET http://host:port/path`) forwarded one per connection.
//!
//! It records every request line with whether `Proxy-Authorization` and `Authorization` came
//! ([`ProxyRequest`]); it can require a `Proxy-Authorization` (`407` otherwise); it maps fake
//! host names (e.g. `registry.imgcache.test`) to loopback addresses, so that a client that reaches
//! such a name proves it went through the proxy: the name resolves nowhere else. It never
//! resolves names itself and only connects to `127.0.0.0/8`.
//!
//! Every socket has timeouts, connections are bounded in number, and dropping the proxy stops
//! its threads.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::support::base64;

/// Read and write timeout of a request head, and the idle limit of a tunnel.
const IO_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_HEAD: usize = 64 * 1024;
/// Connections served at once; more are answered 503.
const MAX_CONNECTIONS: usize = 32;

/// One request the proxy got.
#[derive(Clone, Debug)]
pub struct ProxyRequest {
    /// `CONNECT host:port HTTP/1.1`, `GET http://host:port/v2/ HTTP/1.1`, ...
    pub line: String,
    pub proxy_authorization: Option<String>,
    pub authorization: Option<String>,
    /// What the proxy answered it (`200` for a tunnel made; a forwarded request: `0`, the
    /// origin answers).
    pub status: u16,
}

impl ProxyRequest {
    pub fn method(&self) -> &str {
        self.line.split(' ').next().unwrap_or("")
    }

    /// `host:port` of a CONNECT, the absolute URI of a forwarded request.
    pub fn target(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or("")
    }
}

/// How the proxy behaves.
#[derive(Clone, Debug, Default)]
pub struct ProxyOptions {
    /// Host name (lower case) → loopback IP it stands for.
    pub hosts: HashMap<String, Ipv4Addr>,
    /// Required `Proxy-Authorization: Basic` (user, password).
    pub credentials: Option<(String, String)>,
}

impl ProxyOptions {
    /// `name` stands for 127.0.0.1.
    pub fn host(mut self, name: &str) -> Self {
        self.hosts
            .insert(name.to_ascii_lowercase(), Ipv4Addr::LOCALHOST);
        self
    }

    pub fn credentials(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some((user.to_owned(), password.to_owned()));
        self
    }
}

struct State {
    options: ProxyOptions,
    requests: Mutex<Vec<ProxyRequest>>,
    active: AtomicUsize,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The proxy; stops when dropped.
pub struct ConnectProxy {
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl ConnectProxy {
    pub fn start(options: ProxyOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(State {
            options,
            requests: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let st = state.clone();
        let accept = thread::spawn(move || {
            while !st.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let st = st.clone();
                        if st.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                            st.active.fetch_sub(1, Ordering::SeqCst);
                            let mut conn = conn;
                            let _ = conn.write_all(
                                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                            );
                            continue;
                        }
                        thread::spawn(move || {
                            let _ = serve(conn, &st);
                            st.active.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            addr,
            state,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://USER:PASSWORD@127.0.0.1:PORT` (both percent-encoded by the caller if needed).
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@{}", self.addr)
    }

    pub fn requests(&self) -> Vec<ProxyRequest> {
        lock(&self.state.requests).clone()
    }

    /// The request lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.line).collect()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, st: &State) -> io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut head: Vec<String> = Vec::new();
    let mut size = 0;
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        size += n;
        if n == 0 || size > MAX_HEAD {
            return Ok(());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let Some(line) = head.first().cloned() else {
        return Ok(());
    };
    let header = |name: &str| {
        head[1..].iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let mut req = ProxyRequest {
        line: line.clone(),
        proxy_authorization: header("proxy-authorization"),
        authorization: header("authorization"),
        status: 0,
    };
    let mut client = conn;
    let answer = |client: &mut TcpStream, req: &mut ProxyRequest, status: u16, extra: &str| {
        req.status = status;
        lock(&st.requests).push(req.clone());
        let _ = write!(
            client,
            "HTTP/1.1 {status} Proxy Says No\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        Ok(())
    };
    if let Some((user, pass)) = &st.options.credentials {
        let want = format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()));
        if req.proxy_authorization.as_deref() != Some(want.as_str()) {
            return answer(
                &mut client,
                &mut req,
                407,
                "Proxy-Authenticate: Basic realm=\"test proxy\"\r\n",
            );
        }
    }
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method == "CONNECT" {
        let Some(upstream) = upstream(st, target) else {
            return answer(&mut client, &mut req, 502, "");
        };
        req.status = 200;
        lock(&st.requests).push(req);
        client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        // What the client sent after its head is already in `reader`'s buffer.
        let early = reader.buffer().to_vec();
        let mut up_w = upstream.try_clone()?;
        up_w.write_all(&early)?;
        pipe_both(client, upstream);
        return Ok(());
    }
    // Absolute form: `GET http://host:port/path HTTP/1.1`.
    let Some(rest) = target.strip_prefix("http://") else {
        return answer(&mut client, &mut req, 400, "");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let Some(mut upstream) = upstream(st, &authority) else {
        return answer(&mut client, &mut req, 502, "");
    };
    lock(&st.requests).push(req);
    let version = parts.next().unwrap_or("HTTP/1.1");
    let mut out = format!("{method} {path} {version}\r\n");
    let mut body_len = 0usize;
    for h in &head[1..] {
        let name = h
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "proxy-authorization" | "proxy-connection" | "connection" | "keep-alive"
        ) {
            continue;
        }
        if name == "content-length" {
            body_len = h.split_once(':').unwrap().1.trim().parse().unwrap_or(0);
        }
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    upstream.write_all(out.as_bytes())?;
    if body_len > 0 {
        let mut body = reader.take(body_len as u64);
        io::copy(&mut body, &mut upstream)?;
    }
    // The origin closes after its answer (Connection: close), which ends the client's too.
    let mut up_r = upstream.try_clone()?;
    let _ = io::copy(&mut up_r, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
    Ok(())
}

/// A connection to `host:port` when the host is a mapped name or a loopback address.
fn upstream(st: &State, target: &str) -> Option<TcpStream> {
    let (host, port) = target.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.to_ascii_lowercase();
    let ip = match st.options.hosts.get(&host) {
        Some(ip) => *ip,
        None => host
            .parse::<Ipv4Addr>()
            .ok()
            .filter(|ip| ip.is_loopback())?,
    };
    let s = TcpStream::connect_timeout(&SocketAddr::from((ip, port)), CONNECT_TIMEOUT).ok()?;
    s.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    s.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
    Some(s)
}

/// Relays both ways until either side closes or stays idle past the timeout.
fn pipe_both(client: TcpStream, upstream: TcpStream) {
    let (c2, u2) = match (client.try_clone(), upstream.try_clone()) {
        (Ok(c), Ok(u)) => (c, u),
        _ => return,
    };
    let t = thread::spawn(move || pipe(c2, u2));
    pipe(upstream, client);
    let _ = t.join();
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
