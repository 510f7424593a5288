//! Tests against a tiny local fake registry: faults (429, 5xx, Retry-After), cross-host
//! redirects, bearer tokens, ranges, size and digest checks, and secrets in errors.
//! The happy path against a real registry is in `tests/registry.rs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::*;
use crate::reference::Reference;

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    /// Path and query.
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send no Content-Length: the body ends when the connection closes.
    no_length: bool,
}

fn reply(status: u16, body: impl Into<Vec<u8>>) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.into(),
        no_length: false,
    }
}

impl Reply {
    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_owned(), v.into()));
        self
    }
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// A one-request-per-connection HTTP/1.1 server on 127.0.0.1. A TLS ClientHello (the client
/// tries https first on loopback) gets the connection closed.
struct Mock {
    addr: SocketAddr,
    listener: Option<TcpListener>,
    log: Arc<Mutex<Vec<Recorded>>>,
}

impl Mock {
    fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Self {
            addr: listener.local_addr().unwrap(),
            listener: Some(listener),
            log: Arc::default(),
        }
    }

    /// `127.0.0.1:<port>`
    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn serve(&mut self, handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) {
        let listener = self.listener.take().unwrap();
        let handler: Arc<Handler> = Arc::new(handler);
        let log = self.log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (handler, log) = (handler.clone(), log.clone());
                std::thread::spawn(move || serve_one(conn, &*handler, &log));
            }
        });
    }

    /// Requests received, without the `/v2/` probes.
    fn requests(&self) -> Vec<Recorded> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path() != "/v2/")
            .cloned()
            .collect()
    }
}

fn serve_one(conn: TcpStream, handler: &Handler, log: &Mutex<Vec<Recorded>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || !line.ends_with("HTTP/1.1\r\n") {
        return; // TLS or junk: close
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let req = Recorded {
        method,
        target,
        headers,
        body,
    };
    log.lock().unwrap().push(req.clone());
    let r = handler(&req);
    let mut out = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", r.status);
    for (k, v) in &r.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !r.no_length {
        out.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
    }
    out.push_str("\r\n");
    let mut conn = conn;
    let _ = conn.write_all(out.as_bytes());
    if req.method != "HEAD" {
        let _ = conn.write_all(&r.body);
    }
    let _ = conn.flush();
}

fn opts() -> RegistryOptions {
    RegistryOptions {
        max_retries: 3,
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        ..RegistryOptions::default()
    }
}

fn client(o: RegistryOptions) -> RegistryClient {
    RegistryClient::new(o).unwrap()
}

const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;

fn r(text: &str) -> Reference {
    Reference::parse(text).unwrap()
}

#[tokio::test]
async fn retries_429_and_5xx_honouring_retry_after() {
    let mut m = Mock::new();
    let n = Arc::new(Mutex::new(0));
    let count = n.clone();
    m.serve(move |req| {
        if req.path() == "/v2/" {
            return reply(200, "{}");
        }
        let mut n = count.lock().unwrap();
        *n += 1;
        match *n {
            1 => reply(429, "slow down").header("Retry-After", "1"),
            2 => reply(503, "busy"),
            _ => reply(200, MANIFEST).header("Content-Type", MEDIA_TYPE_OCI_MANIFEST),
        }
    });
    let c = client(opts());
    let started = Instant::now();
    let got = c
        .fetch_manifest(&r(&format!("{}/app:v1", m.host())))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After not honoured"
    );
    assert_eq!(got.bytes, MANIFEST);
    assert_eq!(got.media_type, MEDIA_TYPE_OCI_MANIFEST);
    assert_eq!(got.digest, Digest::of_bytes(MANIFEST));
    assert_eq!(*n.lock().unwrap(), 3);
}

#[tokio::test]
async fn gives_up_after_max_retries() {
    let mut m = Mock::new();
    m.serve(|req| {
        if req.path() == "/v2/" {
            return reply(200, "{}");
        }
        reply(
            500,
            r#"{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}"#,
        )
    });
    let c = client(RegistryOptions {
        max_retries: 2,
        ..opts()
    });
    let e = c
        .fetch_manifest(&r(&format!("{}/app:v1", m.host())))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Registry { .. }), "{e:?}");
    assert!(
        msg.contains("HTTP 500") && msg.contains("UNKNOWN: disk on fire"),
        "{msg}"
    );
    assert_eq!(m.requests().len(), 3);
}

#[tokio::test]
async fn connection_refused_names_the_host_and_cause() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = client(RegistryOptions {
        max_retries: 1,
        ..opts()
    });
    let e = c
        .fetch_manifest(&r(&format!("127.0.0.1:{port}/app:v1")))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Registry { .. }), "{e:?}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    assert!(msg.contains("tried 2 times"), "{msg}");
}

/// A registry that wants Basic credentials and redirects blob GETs to `to` (another host name).
fn basic_redirecting(m: &mut Mock, to: String, user: &str, pass: &str) {
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    );
    m.serve(move |req| {
        if req.header("authorization") != Some(want.as_str()) {
            return reply(401, "").header("WWW-Authenticate", r#"Basic realm="mock""#);
        }
        match req.path() {
            "/v2/app/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000" => {
                reply(307, "").header("Location", "/same-host/blob")
            }
            "/same-host/blob" => reply(302, "").header("Location", to.clone()),
            _ => reply(404, ""),
        }
    });
}

#[tokio::test]
async fn cross_host_redirect_drops_authorization() {
    let mut cdn = Mock::new();
    cdn.serve(|_| reply(200, "blob-bytes"));
    let mut reg = Mock::new();
    // "localhost" is another host name than the registry's "127.0.0.1".
    let to = format!("http://localhost:{}/cdn/blob?sig=s3cr3t", cdn.addr.port());
    basic_redirecting(&mut reg, to, "alice", "pa55word-marker");
    let c = client(RegistryOptions {
        creds: Some(Credentials::new("alice", "pa55word-marker")),
        ..opts()
    });
    let zero = Digest::from_hex(&"0".repeat(64)).unwrap();
    let mut blob = c.fetch_blob(&reg.host(), "app", &zero, 0).await.unwrap();
    assert_eq!(blob.offset, 0);
    assert_eq!(blob.length, Some(10));
    let mut body = Vec::new();
    while let Some(chunk) = blob.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    assert_eq!(body, b"blob-bytes");
    // The same-host hop kept the header; the other host never saw it.
    let reg_reqs = reg.requests();
    assert!(
        reg_reqs
            .iter()
            .any(|r| r.path() == "/same-host/blob" && r.header("authorization").is_some())
    );
    let cdn_reqs = cdn.requests();
    assert_eq!(cdn_reqs.len(), 1);
    assert_eq!(cdn_reqs[0].target, "/cdn/blob?sig=s3cr3t");
    assert!(
        cdn_reqs[0].header("authorization").is_none(),
        "{:?}",
        cdn_reqs[0]
    );
}

#[tokio::test]
async fn bearer_tokens_are_fetched_and_cached() {
    let mut m = Mock::new();
    let realm = format!("http://{}/token", m.host());
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("bob:hunter2-marker")
    );
    m.serve(move |req| match req.path() {
        "/token" => {
            if req.header("authorization") != Some(basic.as_str()) {
                return reply(401, "");
            }
            reply(200, r#"{"access_token":"tok-1","expires_in":300}"#)
        }
        _ if req.header("authorization") != Some("Bearer tok-1") => reply(401, "").header(
            "WWW-Authenticate",
            format!(r#"Bearer realm="{realm}",service="mock",scope="repository:team/app:pull""#),
        ),
        "/v2/team/app/manifests/v1" => reply(200, MANIFEST)
            .header("Content-Type", MEDIA_TYPE_OCI_MANIFEST)
            .header(
                "Docker-Content-Digest",
                Digest::of_bytes(MANIFEST).to_string(),
            ),
        _ => reply(404, ""),
    });
    let c = client(RegistryOptions {
        creds: Some(Credentials::new("bob", "hunter2-marker")),
        ..opts()
    });
    let reference = r(&format!("{}/team/app:v1", m.host()));
    for _ in 0..3 {
        let got = c.fetch_manifest(&reference).await.unwrap();
        assert_eq!(got.bytes, MANIFEST);
    }
    let reqs = m.requests();
    let tokens: Vec<_> = reqs.iter().filter(|r| r.path() == "/token").collect();
    assert_eq!(tokens.len(), 1, "{reqs:#?}");
    assert_eq!(
        tokens[0].target,
        "/token?service=mock&scope=repository%3Ateam%2Fapp%3Apull&account=bob"
    );
    // One anonymous try, then three with the token.
    assert_eq!(reqs.len(), 5, "{reqs:#?}");

    // Wrong credentials: the token server refuses them.
    let c = client(RegistryOptions {
        creds: Some(Credentials::new("bob", "wrong")),
        ..opts()
    });
    let e = c.fetch_manifest(&reference).await.unwrap_err();
    assert!(matches!(e, Error::Forbidden { status: 401, .. }), "{e:?}");
    // None: anonymous token refused.
    let e = client(opts()).fetch_manifest(&reference).await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
    assert!(e.to_string().contains("team/app"), "{e}");
}

#[tokio::test]
async fn identity_tokens_use_the_refresh_grant() {
    let mut m = Mock::new();
    let realm = format!("http://{}/token", m.host());
    m.serve(move |req| match req.path() {
        "/token" if req.method == "POST" => {
            let form = String::from_utf8_lossy(&req.body);
            if form.contains("grant_type=refresh_token")
                && form.contains("refresh_token=refresh-marker")
                && form.contains("scope=repository%3Aapp%3Apull")
            {
                reply(200, r#"{"access_token":"tok-2"}"#)
            } else {
                reply(400, "")
            }
        }
        _ if req.header("authorization") != Some("Bearer tok-2") => reply(401, "").header(
            "WWW-Authenticate",
            format!(r#"Bearer realm="{realm}",service="mock""#),
        ),
        _ => reply(200, MANIFEST),
    });
    let c = client(RegistryOptions {
        creds: Some(Credentials::new("<token>", "refresh-marker")),
        ..opts()
    });
    let got = c
        .fetch_manifest(&r(&format!("{}/app:v1", m.host())))
        .await
        .unwrap();
    assert_eq!(got.media_type, MEDIA_TYPE_OCI_MANIFEST);
}

#[tokio::test]
async fn manifest_checks_size_and_digest() {
    let mut m = Mock::new();
    let other = Digest::of_bytes(b"something else");
    m.serve(move |req| match req.path() {
        "/v2/" => reply(200, "{}"),
        "/v2/app/manifests/big" => reply(200, vec![b' '; 4 * 1024 * 1024 + 1]),
        "/v2/app/manifests/big-no_length" => Reply {
            no_length: true,
            ..reply(200, vec![b' '; 4 * 1024 * 1024 + 1])
        },
        "/v2/app/manifests/exact" => reply(200, vec![b' '; 4 * 1024 * 1024]),
        "/v2/app/manifests/lying" => {
            reply(200, MANIFEST).header("Docker-Content-Digest", other.to_string())
        }
        "/v2/app/manifests/missing" => reply(404, r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#),
        "/v2/app/manifests/denied" => reply(403, ""),
        p if p.starts_with("/v2/app/manifests/sha256:") => reply(200, MANIFEST),
        _ => reply(404, ""),
    });
    let c = client(opts());
    let h = m.host();
    for tag in ["big", "big-no_length"] {
        let e = c
            .fetch_manifest(&r(&format!("{h}/app:{tag}")))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::TooLarge { limit, .. } if *limit == MAX_MANIFEST_BYTES),
            "{tag}: {e:?}"
        );
    }
    let exact = c
        .fetch_manifest(&r(&format!("{h}/app:exact")))
        .await
        .unwrap();
    assert_eq!(exact.bytes.len(), 4 * 1024 * 1024);
    assert_eq!(exact.media_type, "application/octet-stream");

    let e = c
        .fetch_manifest(&r(&format!("{h}/app:lying")))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e:?}");

    // By digest: the bytes must hash to it; the digest wins over a tag.
    let e = c
        .fetch_manifest_by_digest(&h, "app", &other)
        .await
        .unwrap_err();
    match &e {
        Error::DigestMismatch {
            expected, found, ..
        } => {
            assert_eq!(expected, &other.to_string());
            assert_eq!(found, &Digest::of_bytes(MANIFEST).to_string());
        }
        _ => panic!("{e:?}"),
    }
    let e = c
        .fetch_manifest(&r(&format!("{h}/app:missing@{other}")))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e:?}");
    let good = Digest::of_bytes(MANIFEST);
    let got = c
        .fetch_manifest(&r(&format!("{h}/app:missing@{good}")))
        .await
        .unwrap();
    assert_eq!(got.digest, good);

    let e = c
        .fetch_manifest(&r(&format!("{h}/app:missing")))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ManifestNotFound { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("{h}/app:missing: not found in the registry")
    );
    let e = c
        .fetch_manifest(&r(&format!("{h}/app:denied")))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Forbidden { status: 403, .. }), "{e:?}");
}

#[tokio::test]
async fn blob_ranges() {
    const BLOB: &[u8] = b"0123456789";
    let mut m = Mock::new();
    m.serve(|req| {
        let from: Option<usize> = req
            .header("range")
            .and_then(|v| v.strip_prefix("bytes="))
            .and_then(|v| v.strip_suffix('-'))
            .and_then(|v| v.parse().ok());
        let repo = req.path().split('/').nth(2).unwrap_or("");
        match (repo, from) {
            ("gone", _) => reply(404, ""),
            (_, None) => reply(200, BLOB),
            ("honest", Some(n)) if n < BLOB.len() => {
                reply(206, &BLOB[n..]).header("Content-Range", format!("bytes {n}-9/10"))
            }
            ("honest", Some(_)) => reply(416, ""),
            ("ignores", Some(_)) => reply(200, BLOB),
            ("confused", Some(_)) => reply(206, &BLOB[2..]).header("Content-Range", "bytes 2-9/10"),
            _ => reply(404, ""),
        }
    });
    let c = client(opts());
    let d = Digest::of_bytes(BLOB);
    async fn read(b: &mut BlobResponse) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = b.chunk().await.unwrap() {
            out.extend_from_slice(&c);
        }
        out
    }
    let mut b = c.fetch_blob(&m.host(), "honest", &d, 4).await.unwrap();
    assert_eq!((b.offset, b.length), (4, Some(6)));
    assert_eq!(read(&mut b).await, b"456789");
    for (repo, offset) in [
        ("honest", 0),
        ("honest", 10),
        ("ignores", 4),
        ("confused", 4),
    ] {
        let mut b = c.fetch_blob(&m.host(), repo, &d, offset).await.unwrap();
        assert_eq!((b.offset, b.length), (0, Some(10)), "{repo} {offset}");
        assert_eq!(read(&mut b).await, BLOB, "{repo} {offset}");
    }
    let e = c.fetch_blob(&m.host(), "gone", &d, 0).await.unwrap_err();
    assert!(
        matches!(e, Error::BlobNotFound { .. })
            && e.to_string().contains("not found in repository gone"),
        "{e}"
    );
}

/// Captures every tracing event and span field as text.
#[derive(Default, Clone)]
struct Capture(Arc<Mutex<String>>);

struct FieldText<'a>(&'a mut String);

impl tracing::field::Visit for FieldText<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::always()
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        span.record(&mut FieldText(&mut self.0.lock().unwrap()));
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        values.record(&mut FieldText(&mut self.0.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut text = self.0.lock().unwrap();
        event.record(&mut FieldText(&mut text));
        text.push('\n');
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn secrets_never_in_errors_logs_or_debug() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    const MARKER: &str = "S3CRET-PASSWORD-MARKER";
    // A hostile registry that echoes the Authorization header back in its error body.
    let mut m = Mock::new();
    m.serve(|req| match req.header("authorization") {
        None => reply(401, "").header("WWW-Authenticate", r#"Basic realm="x""#),
        Some(a) => reply(
            500,
            format!(r#"{{"errors":[{{"code":"ECHO","message":"you sent {a}"}}]}}"#),
        ),
    });
    let creds = Credentials::new("user", MARKER);
    let o = RegistryOptions {
        creds: Some(creds.clone()),
        max_retries: 1,
        ..opts()
    };
    let c = client(o.clone());
    let e = c
        .fetch_manifest(&r(&format!("{}/app:v1", m.host())))
        .await
        .unwrap_err();
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("user:{MARKER}"));
    for text in [
        e.to_string(),
        format!("{e:?}"),
        format!("{creds:?}"),
        format!("{creds}"),
        format!("{o:?}"),
        format!("{c:?}"),
        capture.0.lock().unwrap().clone(),
    ] {
        assert!(!text.contains(MARKER) && !text.contains(&b64), "{text}");
    }
    assert!(e.to_string().contains("ECHO"), "{e}");
    assert!(
        capture.0.lock().unwrap().contains("retrying"),
        "no log captured"
    );
    assert_eq!(format!("{creds}"), "user:<redacted>");
    assert_eq!(
        Credentials::parse("u:p:q"),
        Some(Credentials::new("u", "p:q"))
    );
    assert_eq!(Credentials::parse("nocolon"), None);
    assert_eq!(Credentials::parse(":p"), None);
}

/// Regression: a challenge naming two scopes (`scope="a b"`, as distribution writes them) was
/// asked for as one `scope` parameter holding a space, and one ours covered was asked again.
#[test]
fn a_challenge_naming_two_scopes_is_asked_as_two_and_what_ours_cover_is_not_asked_again() {
    use super::client::token_scopes;
    let ours = vec!["repository:team/app:pull,push".to_owned()];
    assert_eq!(
        token_scopes(
            ours.clone(),
            Some("repository:team/app:pull repository:base/os:pull")
        ),
        ["repository:team/app:pull,push", "repository:base/os:pull"]
    );
    assert_eq!(
        token_scopes(ours.clone(), Some("repository:team/app:delete")),
        [
            "repository:team/app:pull,push",
            "repository:team/app:delete"
        ]
    );
    assert_eq!(
        token_scopes(ours.clone(), Some("  ")),
        ["repository:team/app:pull,push"]
    );
    assert_eq!(
        token_scopes(Vec::new(), Some("registry:catalog:*")),
        ["registry:catalog:*"]
    );
}
