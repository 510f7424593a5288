//! A small blocking HTTP/1.1 client for the Docker Engine API on a unix socket: one request
//! per connection (`Connection: close`), responses with `Content-Length`, chunked or
//! read-to-close bodies, request bodies streamed chunked from a producer.
//!
//! Why not hyper (which is in the dependency tree through reqwest): [`Engine`](crate::engine::Engine) is
//! blocking and its loads are driven by a blocking producer writing into a `dyn Write`. Over a
//! `std` socket the producer writes straight into the connection (backpressure for free,
//! aborting is closing the socket); with hyper every call would cross to a runtime on another
//! thread and the tarball would travel through a channel into a body stream. dockerd speaks
//! plain HTTP/1.1 on its socket, and the subset needed here is small. (reqwest 0.12 itself
//! cannot connect to unix sockets.)
//!
//! Paths are unversioned (`/_ping`, `/images/...`): dockerd serves them at its own API
//! version (1.41 for 20.10), so no version negotiation is needed, and the fields read here
//! (`Id`, `RepoTags`, `DriverStatus`, the load's JSON stream) are the same in every version.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::engine::cli::HoldBack;
use crate::error::Error;

/// Deadline of connecting to the socket (a unix connect blocks only when the daemon's accept
/// backlog is full: a stuck daemon).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body kept (image inspect and info answers are kilobytes).
const MAX_BODY: usize = 64 << 20;
/// Largest status line or header line, and largest header section.
const MAX_LINE: usize = 16 << 10;
const MAX_HEAD: usize = 256 << 10;
/// Size of the chunks a streamed request body is sent in.
const CHUNK: usize = 256 << 10;

/// The Docker Engine API at a unix socket.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    socket: PathBuf,
}

/// A complete answer.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub reason: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The daemon's message: `message` of its JSON error body, else the body as text, else
    /// the status line; bounded.
    pub fn message(&self) -> String {
        #[derive(serde::Deserialize)]
        struct ApiMessage {
            message: String,
        }
        let text = match serde_json::from_slice::<ApiMessage>(&self.body) {
            Ok(m) => m.message,
            Err(_) => String::from_utf8_lossy(&self.body).into_owned(),
        };
        let text = text.trim();
        if text.is_empty() {
            format!("HTTP {} {}", self.status, self.reason)
        } else {
            crate::engine::cli::bounded(text, 4000)
        }
    }
}

/// The answer to a streamed request.
#[derive(Debug)]
pub(crate) struct Streamed {
    pub response: Response,
    /// The producer's error when the daemon stopped reading first (its answer says why).
    pub input_error: Option<Error>,
}

/// Why a request got no [`Response`].
#[derive(Debug)]
pub(crate) enum ApiError {
    /// The socket could not be connected to (missing, refused, permission, timeout).
    Connect(io::Error),
    /// The exchange broke off after connecting (daemon gone, deadline passed).
    Io(io::Error),
    /// The answer is not the HTTP expected.
    Protocol(String),
    /// The request body's producer failed while the daemon still read: the connection was
    /// closed before the end of the body, so the daemon discards what it got.
    Input(Error),
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET path`, the whole exchange within `timeout`.
    pub fn get(&self, path: &str, timeout: Duration) -> Result<Response, ApiError> {
        self.small("GET", path, "", timeout)
    }

    /// `POST path` with an empty body, the whole exchange within `timeout`.
    pub fn post(&self, path: &str, timeout: Duration) -> Result<Response, ApiError> {
        self.small("POST", path, "Content-Length: 0\r\n", timeout)
    }

    fn small(
        &self,
        method: &str,
        path: &str,
        headers: &str,
        timeout: Duration,
    ) -> Result<Response, ApiError> {
        let mut conn = Conn {
            stream: self.connect(timeout.min(CONNECT_TIMEOUT))?,
            deadline: Some((Instant::now() + timeout, timeout)),
        };
        conn.write_all(head(method, path, headers).as_bytes())
            .map_err(ApiError::Io)?;
        read_response(&mut BufReader::new(conn))
    }

    /// `POST path` with a body of type `content_type` that `produce` writes, sent chunked as
    /// it comes; no deadline once connected (a big load takes as long as it takes). If
    /// `produce` fails while the daemon still reads, the connection is closed without the
    /// body's last chunk (the daemon sees a truncated body and keeps nothing) and
    /// [`ApiError::Input`] carries the producer's error.
    pub fn post_streamed(
        &self,
        path: &str,
        content_type: &str,
        produce: &mut dyn FnMut(&mut dyn Write) -> Result<(), Error>,
    ) -> Result<Streamed, ApiError> {
        let mut conn = Conn {
            stream: self.connect(CONNECT_TIMEOUT)?,
            deadline: None,
        };
        let headers = format!("Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n");
        conn.write_all(head("POST", path, &headers).as_bytes())
            .map_err(ApiError::Io)?;
        // The tarball's end is held back until the producer succeeds: dockerd loads a
        // complete tar without waiting for the end of the body.
        let mut body = HoldBack::new(ChunkedBody {
            conn: &mut conn,
            buf: Vec::with_capacity(CHUNK),
            broken: false,
        });
        let result = produce(&mut body).and_then(|()| {
            body.release()
                .and_then(|()| body.inner.finish())
                .map_err(|e| Error::io("<Docker API request body>", e))
        });
        let broken = body.inner.broken;
        match result {
            Ok(()) => Ok(Streamed {
                response: read_response(&mut BufReader::new(conn))?,
                input_error: None,
            }),
            Err(e) if !broken => {
                // Our side failed while the daemon still reads: never send the last chunk.
                let _ = conn.stream.shutdown(Shutdown::Both);
                Err(ApiError::Input(e))
            }
            // The daemon stopped reading: its answer says why.
            Err(e) => match read_response(&mut BufReader::new(conn)) {
                Ok(response) => Ok(Streamed {
                    response,
                    input_error: Some(e),
                }),
                Err(ApiError::Io(read)) => Err(ApiError::Io(io::Error::new(
                    read.kind(),
                    format!(
                        "the daemon closed the connection while reading the request body, without an answer ({read}; {e})"
                    ),
                ))),
                Err(other) => Err(other),
            },
        }
    }

    /// Connects within `timeout`. std has no connect timeout for unix sockets, so a helper
    /// thread connects; when it is still blocked at the deadline it is left to finish alone
    /// (it then drops the connection).
    fn connect(&self, timeout: Duration) -> Result<UnixStream, ApiError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let path = self.socket.clone();
        thread::Builder::new()
            .name("imgcache-docker-connect".into())
            .spawn(move || {
                let _ = tx.send(UnixStream::connect(&path));
            })
            .map_err(ApiError::Connect)?;
        match rx.recv_timeout(timeout) {
            Ok(r) => r.map_err(ApiError::Connect),
            Err(_) => Err(ApiError::Connect(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no connection within {} s (the daemon accepts none)",
                    timeout.as_secs_f32()
                ),
            ))),
        }
    }
}

fn head(method: &str, path: &str, headers: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: imgcache/{}\r\n{headers}Connection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// A connection whose reads and writes share one deadline.
struct Conn {
    stream: UnixStream,
    /// When the exchange must be over, and its length (for messages).
    deadline: Option<(Instant, Duration)>,
}

impl Conn {
    /// Arms the socket's timeout with what is left of the deadline.
    fn arm(&self, read: bool) -> io::Result<()> {
        let Some((at, total)) = self.deadline else {
            return Ok(());
        };
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(total));
        }
        if read {
            self.stream.set_read_timeout(Some(left))
        } else {
            self.stream.set_write_timeout(Some(left))
        }
    }

    fn expired(&self, e: io::Error) -> io::Error {
        match (self.deadline, e.kind()) {
            (Some((_, total)), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                timed_out(total)
            }
            _ => e,
        }
    }
}

fn timed_out(total: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no answer within {} s", total.as_secs_f32()),
    )
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm(true)?;
        self.stream.read(buf).map_err(|e| self.expired(e))
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm(false)?;
        self.stream.write(buf).map_err(|e| self.expired(e))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A request body in `Transfer-Encoding: chunked`, sent in chunks of [`CHUNK`] bytes (and at
/// each flush). Remembers whether the connection failed.
struct ChunkedBody<'a> {
    conn: &'a mut Conn,
    buf: Vec<u8>,
    broken: bool,
}

impl ChunkedBody<'_> {
    fn send_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let size = format!("{:x}\r\n", self.buf.len());
        let r = (|| {
            self.conn.write_all(size.as_bytes())?;
            self.conn.write_all(&self.buf)?;
            self.conn.write_all(b"\r\n")
        })();
        self.buf.clear();
        self.note(r)
    }

    /// The last chunk: the body is complete.
    fn finish(&mut self) -> io::Result<()> {
        self.send_chunk()?;
        let r = self.conn.write_all(b"0\r\n\r\n");
        self.note(r)
    }

    fn note(&mut self, r: io::Result<()>) -> io::Result<()> {
        if r.is_err() {
            self.broken = true;
        }
        r
    }
}

impl Write for ChunkedBody<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.broken {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the daemon stopped reading the image",
            ));
        }
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the daemon stopped reading the image",
            ));
        }
        self.send_chunk()
    }
}

/// Reads one response (after any `1xx` interim ones).
fn read_response(r: &mut impl BufRead) -> Result<Response, ApiError> {
    loop {
        let (status, reason, framing) = read_head(r)?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let body = match framing {
            _ if status == 204 || status == 304 => Vec::new(),
            Framing::Chunked => read_chunked(r)?,
            Framing::Length(n) => {
                if n > MAX_BODY as u64 {
                    return Err(too_big());
                }
                let mut body = vec![0; n as usize];
                r.read_exact(&mut body).map_err(cut_short)?;
                body
            }
            Framing::Close => {
                let mut body = Vec::new();
                r.take(MAX_BODY as u64 + 1)
                    .read_to_end(&mut body)
                    .map_err(ApiError::Io)?;
                if body.len() > MAX_BODY {
                    return Err(too_big());
                }
                body
            }
        };
        return Ok(Response {
            status,
            reason,
            body,
        });
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Chunked,
    Length(u64),
    /// Neither: the body ends when the connection does.
    Close,
}

fn read_head(r: &mut impl BufRead) -> Result<(u16, String, Framing), ApiError> {
    let status_line = read_line(r)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    let (true, Some(status)) = (version.starts_with("HTTP/1."), status) else {
        return Err(ApiError::Protocol(format!(
            "not an HTTP answer: {:?}",
            crate::engine::cli::bounded(&status_line, 200)
        )));
    };
    let reason = parts.next().unwrap_or_default().to_owned();
    let mut framing = Framing::Close;
    let mut total = status_line.len();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        total += line.len();
        if total > MAX_HEAD {
            return Err(ApiError::Protocol(
                "the answer's headers are too long".into(),
            ));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ApiError::Protocol(format!(
                "malformed header line {:?}",
                crate::engine::cli::bounded(&line, 200)
            )));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or_default().trim();
            if last.eq_ignore_ascii_case("chunked") {
                framing = Framing::Chunked;
            }
        } else if name.eq_ignore_ascii_case("content-length") && framing != Framing::Chunked {
            let n = value
                .parse()
                .map_err(|_| ApiError::Protocol(format!("bad Content-Length {:?}", value)))?;
            framing = Framing::Length(n);
        }
    }
    Ok((status, reason, framing))
}

fn read_chunked(r: &mut impl BufRead) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?;
        let hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(hex, 16)
            .map_err(|_| ApiError::Protocol(format!("bad chunk size {:?}", line)))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(r)?.is_empty() {}
            return Ok(body);
        }
        if size > MAX_BODY - body.len() {
            return Err(too_big());
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..]).map_err(cut_short)?;
        if !read_line(r)?.is_empty() {
            return Err(ApiError::Protocol("chunk not followed by CRLF".into()));
        }
    }
}

/// One line without its CRLF (or LF).
fn read_line(r: &mut impl BufRead) -> Result<String, ApiError> {
    let mut line = Vec::new();
    r.take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(ApiError::Io)?;
    if !line.ends_with(b"\n") {
        if line.len() > MAX_LINE {
            return Err(ApiError::Protocol(
                "a line of the answer is too long".into(),
            ));
        }
        return Err(cut_short(io::ErrorKind::UnexpectedEof.into()));
    }
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn cut_short(e: io::Error) -> ApiError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        ApiError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection in the middle of its answer",
        ))
    } else {
        ApiError::Io(e)
    }
}

fn too_big() -> ApiError {
    ApiError::Protocol(format!("answer larger than {} MiB", MAX_BODY >> 20))
}

/// `s` percent-encoded except for unreserved characters and those in `keep`.
pub(crate) fn encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A one-connection server: reads the request up to the end of its headers (with
    /// `read_body`, up to the last chunk of its body, or until the client closes), answers
    /// `answer`, returns what it read.
    fn serve(
        answer: &'static [u8],
        read_body: bool,
    ) -> (tempfile::TempDir, Client, thread::JoinHandle<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("d.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let t = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap_or(0);
                got.extend_from_slice(&buf[..n]);
                let done = if read_body {
                    got.ends_with(b"\r\n0\r\n\r\n")
                } else {
                    got.windows(4).any(|w| w == b"\r\n\r\n")
                };
                if n == 0 || done {
                    break;
                }
            }
            let _ = s.write_all(answer);
            got
        });
        (dir, Client::new(sock), t)
    }

    #[test]
    fn content_length_answer() {
        let (_d, c, t) = serve(
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 28\r\n\r\n{\"message\":\"no such image\"}\n\nextra",
            false,
        );
        let r = c.get("/images/x/json", Duration::from_secs(5)).unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.message(), "no such image");
        let req = String::from_utf8(t.join().unwrap()).unwrap();
        assert!(
            req.starts_with("GET /images/x/json HTTP/1.1\r\nHost: docker\r\n"),
            "{req}"
        );
    }

    #[test]
    fn chunked_answer_after_continue() {
        let (_d, c, _t) = serve(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: 1\r\n\r\n",
            false,
        );
        let r = c.post("/x", Duration::from_secs(5)).unwrap();
        assert!(r.success());
        assert_eq!(r.body, b"hello, world");
    }

    #[test]
    fn body_until_close_and_cut_answers() {
        let (_d, c, _t) = serve(b"HTTP/1.1 200 OK\r\n\r\nall of it", false);
        assert_eq!(
            c.get("/", Duration::from_secs(5)).unwrap().body,
            b"all of it"
        );
        let (_d, c, _t) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", false);
        assert!(matches!(
            c.get("/", Duration::from_secs(5)),
            Err(ApiError::Io(_))
        ));
        let (_d, c, _t) = serve(b"SSH-2.0-OpenSSH\r\n", false);
        assert!(matches!(
            c.get("/", Duration::from_secs(5)),
            Err(ApiError::Protocol(_))
        ));
    }

    #[test]
    fn silent_daemon_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("d.sock");
        let _listener = UnixListener::bind(&sock).unwrap();
        let start = Instant::now();
        match Client::new(&sock).get("/_ping", Duration::from_millis(300)) {
            Err(ApiError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn missing_socket_is_a_connect_error() {
        let dir = tempfile::tempdir().unwrap();
        let c = Client::new(dir.path().join("none.sock"));
        assert!(matches!(
            c.get("/_ping", Duration::from_secs(5)),
            Err(ApiError::Connect(_))
        ));
    }

    #[test]
    fn streamed_body_is_chunked_and_complete() {
        let (_d, c, t) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", true);
        let data: Vec<u8> = (0..CHUNK * 2 + 100).map(|i| (i % 251) as u8).collect();
        let mut produce = |w: &mut dyn Write| -> Result<(), Error> {
            for part in data.chunks(10_000) {
                w.write_all(part).map_err(|e| Error::io("x", e))?;
            }
            Ok(())
        };
        let s = c
            .post_streamed("/images/load?quiet=1", "application/x-tar", &mut produce)
            .unwrap();
        assert_eq!(s.response.body, b"{}");
        assert!(s.input_error.is_none());
        let got = t.join().unwrap();
        let split = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&got[..split]);
        assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
        assert!(
            head.contains("Content-Type: application/x-tar\r\n"),
            "{head}"
        );
        let mut r = &got[split..];
        assert_eq!(read_chunked(&mut r).unwrap(), data);
    }

    #[test]
    fn failing_producer_never_sends_the_last_chunk() {
        let (_d, c, t) = serve(b"", true);
        let mut produce = |w: &mut dyn Write| -> Result<(), Error> {
            w.write_all(b"partial").map_err(|e| Error::io("x", e))?;
            w.flush().map_err(|e| Error::io("x", e))?;
            Err(Error::Usage("producer failed".into()))
        };
        match c.post_streamed("/images/load", "application/x-tar", &mut produce) {
            Err(ApiError::Input(Error::Usage(m))) => assert_eq!(m, "producer failed"),
            other => panic!("{other:?}"),
        }
        // Not even the body's tail: the daemon got the head and nothing else.
        let got = t.join().unwrap();
        assert!(
            got.ends_with(b"\r\n\r\n"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        assert!(!got.windows(7).any(|w| w == b"partial"));
    }

    /// dockerd loads a complete tar without waiting for the end of the body: a producer that
    /// fails after its last byte must not have sent the tar's end.
    #[test]
    fn producer_failing_after_its_last_byte_holds_back_the_tail() {
        let (_d, c, t) = serve(b"", true);
        let data: Vec<u8> = (0..CHUNK * 2 + 100).map(|i| (i % 251) as u8).collect();
        let mut produce = |w: &mut dyn Write| -> Result<(), Error> {
            w.write_all(&data).map_err(|e| Error::io("x", e))?;
            w.flush().map_err(|e| Error::io("x", e))?;
            Err(Error::Usage("digest mismatch at the end".into()))
        };
        match c.post_streamed("/images/load", "application/x-tar", &mut produce) {
            Err(ApiError::Input(Error::Usage(_))) => {}
            other => panic!("{other:?}"),
        }
        let got = t.join().unwrap();
        let split = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        // Whole chunks, no last chunk.
        let (mut body, mut rest) = (Vec::new(), &got[split..]);
        while !rest.is_empty() {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16);
            let size = size.unwrap();
            assert_ne!(size, 0, "the last chunk was sent");
            body.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        assert!(!body.is_empty());
        assert!(body.len() <= data.len() - crate::engine::cli::HOLD_BACK);
        assert_eq!(body, data[..body.len()]);
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(
            encode("127.0.0.1:5000/a b", b""),
            "127.0.0.1%3A5000%2Fa%20b"
        );
        assert_eq!(
            encode("docker.io/x@sha256:ab", b"/:@"),
            "docker.io/x@sha256:ab"
        );
    }
}
