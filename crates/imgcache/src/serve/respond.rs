//! One request, one answer: the distribution API's responses over the cache, with its
//! headers, ranges and error bodies.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::sync::OnceCell;

use super::resolve::{Unresolved, resolve};
use super::route::{Route, RouteError};
use crate::cache::{Cache, ManifestRef, Origin, ServedBlob};
use crate::digest::Digest;
use crate::error::Error;
use crate::registry::{FetchedManifest, MEDIA_TYPE_OCI_INDEX};

pub type Body = BoxBody<Bytes, io::Error>;

/// Bytes read from a blob file per chunk; a response holds one at a time.
const CHUNK: usize = 64 * 1024;

/// `tags/list` and `_catalog` pages are at most this long, whatever `n` asks.
const MAX_PAGE: usize = 10_000;

type Answer = Result<Arc<FetchedManifest>, Failure>;

/// A manifest request in progress, by what it asks for.
type InFlight = HashMap<(Origin, ManifestRef), Arc<OnceCell<Answer>>>;

/// What every request shares.
pub struct State {
    pub cache: Arc<Cache>,
    pub offline: bool,
    /// Manifest requests in progress: the same one asked again meanwhile waits for that
    /// answer, so that many clients cause one request at the origin.
    inflight: Mutex<InFlight>,
}

impl State {
    pub fn new(cache: Arc<Cache>, offline: bool) -> Self {
        Self {
            cache,
            offline,
            inflight: Mutex::default(),
        }
    }

    /// True when the request is this serve's own pull-through come back to it (a mirror
    /// configuration names this serve). It is told "unknown" at once: this serve has nothing
    /// it does not have, and an answer from its cache would pass for the upstream's (a tag
    /// never refreshed), or wait on the very request that sent it.
    fn is_its_own(&self, headers: &HeaderMap) -> bool {
        let Some(id) = self.cache.serve_id() else {
            return false;
        };
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|agent| {
                agent
                    .split(' ')
                    .any(|w| w.strip_prefix("serve/") == Some(id))
            })
    }

    async fn manifest(&self, origin: &Origin, wanted: &ManifestRef, asked: &str) -> Answer {
        let key = (origin.clone(), wanted.clone());
        let cell = lock(&self.inflight).entry(key.clone()).or_default().clone();
        let answer = cell
            .get_or_init(|| async {
                self.cache
                    .serve_manifest(origin, wanted, self.offline)
                    .await
                    .map(Arc::new)
                    .map_err(|e| Failure::from_error(&e, "MANIFEST_UNKNOWN", asked))
            })
            .await
            .clone();
        let mut map = lock(&self.inflight);
        if map.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            map.remove(&key);
        }
        answer
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An error answer: the spec's status and code, and a message naming what was asked for.
#[derive(Debug, Clone)]
pub struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// Whatever the origin or the cache said, a client is told "unknown" (404), so that it
    /// moves on to its next host; only failures of this machine are a 500.
    fn from_error(e: &Error, code: &'static str, asked: &str) -> Self {
        let local = matches!(
            e,
            Error::Io { .. } | Error::Index { .. } | Error::LockTimeout { .. }
        );
        let status = if local {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::NOT_FOUND
        };
        let code = if local { "UNKNOWN" } else { code };
        Self::new(status, code, format!("{asked}: {e}"))
    }

    fn response(&self, head: bool) -> Response<Body> {
        let body = json!({"errors": [{"code": self.code, "message": self.message}]}).to_string();
        let mut resp = Response::new(if head { empty() } else { full(body.clone()) });
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            h.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        resp
    }
}

impl From<RouteError> for Failure {
    fn from(e: RouteError) -> Self {
        let bad = StatusCode::BAD_REQUEST;
        match e {
            RouteError::NotFound => Failure::new(
                StatusCode::NOT_FOUND,
                "UNSUPPORTED",
                "not a path of the distribution API served here",
            ),
            RouteError::Name(n) => Failure::new(
                bad,
                "NAME_INVALID",
                format!("invalid repository name {n:?}"),
            ),
            RouteError::Reference(r) => {
                Failure::new(bad, "MANIFEST_INVALID", format!("invalid tag {r:?}"))
            }
            RouteError::Digest(d) => Failure::new(
                bad,
                "DIGEST_INVALID",
                format!("invalid digest {d:?}: expected sha256:<64 lowercase hex>"),
            ),
        }
    }
}

/// Answers one request; never fails (errors are answers).
pub async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let head = req.method() == Method::HEAD;
    let mut resp = match respond(&state, &req, head).await {
        Ok(r) => r,
        Err(f) => f.response(head),
    };
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    tracing::info!(
        target: "imgcache::serve::access",
        "{} {} {}",
        req.method(),
        req.uri(),
        resp.status().as_u16()
    );
    Ok(resp)
}

async fn respond(
    state: &State,
    req: &Request<Incoming>,
    head: bool,
) -> Result<Response<Body>, Failure> {
    if req.method() != Method::GET && !head {
        return Err(Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            format!(
                "imgcache serve is read-only: {} is not supported",
                req.method()
            ),
        ));
    }
    let route = Route::parse(req.uri().path())?;
    let query = Query::parse(req.uri().query());
    let origin = match route.name() {
        Some(name) => Some(origin_of(state, name, query.get("ns"))?),
        None => None,
    };
    let asked = |what: String| match &origin {
        Some(o) => format!("{o}{what}"),
        None => what,
    };
    if matches!(route, Route::Manifest { .. } | Route::Blob { .. })
        && state.is_its_own(req.headers())
    {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!(
                "{}: asked by this serve itself (a mirror configuration names it)",
                asked(String::new())
            ),
        ));
    }
    match (route, origin.as_ref()) {
        (Route::Base, _) => Ok(json_response(StatusCode::OK, "{}", head)),
        (Route::Catalog, _) => {
            let names: Vec<String> = cached_origins(state)?.iter().map(catalog_name).collect();
            let page = query.page(&names);
            Ok(json_response(
                StatusCode::OK,
                json!({ "repositories": page }).to_string(),
                head,
            ))
        }
        (Route::Tags { name }, Some(origin)) => {
            let tags = state
                .cache
                .tags(origin)
                .map_err(|e| Failure::from_error(&e, "NAME_UNKNOWN", &asked(String::new())))?;
            if tags.is_empty() {
                return Err(Failure::new(
                    StatusCode::NOT_FOUND,
                    "NAME_UNKNOWN",
                    format!(
                        "{}: no tag of this repository is cached",
                        asked(String::new())
                    ),
                ));
            }
            let page = query.page(&tags);
            Ok(json_response(
                StatusCode::OK,
                json!({ "name": name, "tags": page }).to_string(),
                head,
            ))
        }
        (Route::Manifest { reference, .. }, Some(origin)) => {
            let what = match &reference {
                ManifestRef::Tag(t) => asked(format!(":{t}")),
                ManifestRef::Digest(d) => asked(format!("@{d}")),
            };
            let m = state.manifest(origin, &reference, &what).await?;
            Ok(manifest_response(&m, req.headers(), head))
        }
        (Route::Blob { digest, .. }, Some(origin)) => {
            blob_response(state, origin, &digest, req.headers(), head).await
        }
        (Route::Referrers { digest, .. }, Some(_)) => {
            // The signatures the cache kept that name this digest as their subject.
            let filter = query.get("artifactType");
            let bytes = state.cache.referrers_index(&digest, filter).map_err(|e| {
                Failure::from_error(&e, "MANIFEST_UNKNOWN", &asked(format!("@{digest}")))
            })?;
            let mut resp = json_response(StatusCode::OK, bytes, head);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(MEDIA_TYPE_OCI_INDEX),
            );
            if filter.is_some() {
                resp.headers_mut().insert(
                    "oci-filters-applied",
                    HeaderValue::from_static("artifactType"),
                );
            }
            Ok(resp)
        }
        (_, None) => Err(RouteError::NotFound.into()),
    }
}

fn cached_origins(state: &State) -> Result<std::collections::BTreeSet<Origin>, Failure> {
    state
        .cache
        .origins()
        .map_err(|e| Failure::from_error(&e, "UNKNOWN", "the cache's repositories"))
}

fn origin_of(state: &State, name: &str, ns: Option<&str>) -> Result<Origin, Failure> {
    resolve(name, ns, &cached_origins(state)?).map_err(|e| match e {
        Unresolved::Ambiguous(candidates) => Failure::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!(
                "{name:?} is cached from several registries ({}); ask for REGISTRY/{name} (a port as HOST__PORT) or add ?ns=REGISTRY",
                candidates
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Unresolved::BadNamespace(ns) => Failure::new(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            format!("ns={:?} is not a registry host", crate::digest::truncate_for_message(&ns)),
        ),
    })
}

/// The name a repository has in `_catalog`: the path prefix form, which pulls it back.
fn catalog_name(o: &Origin) -> String {
    format!("{}/{}", o.registry.replace(':', "__"), o.repository)
}

fn manifest_response(m: &FetchedManifest, headers: &HeaderMap, head: bool) -> Response<Body> {
    let etag = format!("\"{}\"", m.digest);
    let mut resp = if not_modified(headers, &m.digest) {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(if head { empty() } else { full(m.bytes.clone()) });
        let h = r.headers_mut();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(m.bytes.len()));
        if let Ok(v) = HeaderValue::from_str(&m.media_type) {
            h.insert(header::CONTENT_TYPE, v);
        }
        r
    };
    let h = resp.headers_mut();
    h.insert("docker-content-digest", value(&m.digest.to_string()));
    h.insert(header::ETAG, value(&etag));
    resp
}

async fn blob_response(
    state: &State,
    origin: &Origin,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response<Body>, Failure> {
    let asked = format!("{origin}@{digest}");
    let unknown = || {
        Failure::new(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            format!("blob {asked} is not in the cache, nor named by a cached manifest of it"),
        )
    };
    let present = state
        .cache
        .serve_blob(origin, digest, state.offline)
        .await
        .map_err(|e| Failure::from_error(&e, "BLOB_UNKNOWN", &format!("blob {asked}")))?;
    if !present {
        return Err(unknown());
    }
    let mut resp = Response::new(empty());
    let h = resp.headers_mut();
    h.insert("docker-content-digest", value(&digest.to_string()));
    h.insert(header::ETAG, value(&format!("\"{digest}\"")));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=31536000"),
    );
    if not_modified(headers, digest) {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(resp);
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    // HEAD never opens the file.
    let (blob, len) = if head {
        (None, state.cache.blob_len(digest).ok_or_else(unknown)?)
    } else {
        let cache = state.cache.clone();
        let d = *digest;
        let blob = tokio::task::spawn_blocking(move || cache.open_served_blob(&d))
            .await
            .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e.to_string()))?
            .map_err(|e| Failure::from_error(&e, "BLOB_UNKNOWN", &format!("blob {asked}")))?
            .ok_or_else(unknown)?;
        let len = blob.len;
        (Some(blob), len)
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map_or(Range::Whole, |r| Range::parse(r, len));
    let (start, end) = match range {
        Range::Whole => (0, len),
        Range::Part(start, end) => {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            resp.headers_mut().insert(
                header::CONTENT_RANGE,
                value(&format!("bytes {start}-{}/{len}", end - 1)),
            );
            (start, end)
        }
        Range::Unsatisfiable => {
            *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            resp.headers_mut()
                .insert(header::CONTENT_RANGE, value(&format!("bytes */{len}")));
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            return Ok(resp);
        }
    };
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if let Some(blob) = blob {
        *resp.body_mut() = FileBody::new(blob, start, end).boxed();
    }
    Ok(resp)
}

/// `If-None-Match` lists this digest's ETag (or `*`).
fn not_modified(headers: &HeaderMap, digest: &Digest) -> bool {
    let want = digest.to_string();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|t| t == "*" || t == want)
}

/// One `Range` header against a blob of `len` bytes. Several ranges, or one that does not
/// parse, are answered with the whole blob, as RFC 9110 allows.
#[derive(Debug, PartialEq, Eq)]
enum Range {
    Whole,
    /// `start..end`, end exclusive.
    Part(u64, u64),
    Unsatisfiable,
}

impl Range {
    fn parse(header: &str, len: u64) -> Range {
        let Some(spec) = header.trim().strip_prefix("bytes=") else {
            return Range::Whole;
        };
        if spec.contains(',') {
            return Range::Whole;
        }
        let Some((a, b)) = spec.trim().split_once('-') else {
            return Range::Whole;
        };
        let num = |s: &str| s.trim().parse::<u64>().ok();
        match (a.trim().is_empty(), num(a), num(b)) {
            // bytes=-N: the last N bytes.
            (true, _, Some(n)) if n == 0 || len == 0 => Range::Unsatisfiable,
            (true, _, Some(n)) => Range::Part(len.saturating_sub(n), len),
            (false, Some(start), _) if start >= len => Range::Unsatisfiable,
            (false, Some(start), None) if b.trim().is_empty() => Range::Part(start, len),
            (false, Some(start), Some(last)) if last >= start => {
                Range::Part(start, last.saturating_add(1).min(len))
            }
            _ => Range::Whole,
        }
    }
}

/// A blob's bytes `start..end`, read a chunk at a time as hyper asks for the next one, so a
/// response holds one chunk at most, however slow its client. The read happens on the runtime's
/// thread: served blobs are mostly in the page cache (a read of a chunk takes tens of
/// microseconds), and handing each chunk over from a blocking thread cost more than the read
/// (measured: futex wake-ups were most of serve's system time, and skopeo clients got slower).
struct FileBody {
    blob: ServedBlob,
    offset: u64,
    end: u64,
}

impl FileBody {
    fn new(blob: ServedBlob, start: u64, end: u64) -> Self {
        Self {
            blob,
            offset: start,
            end,
        }
    }
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.offset >= self.end {
            return Poll::Ready(None);
        }
        let n = usize::try_from(self.end - self.offset)
            .unwrap_or(CHUNK)
            .min(CHUNK);
        let mut buf = BytesMut::zeroed(n);
        match self.blob.file.read_exact_at(&mut buf, self.offset) {
            Ok(()) => {
                self.offset += n as u64;
                Poll::Ready(Some(Ok(Frame::data(buf.freeze()))))
            }
            Err(e) => {
                // No more frames after a failed read: hyper cuts the response.
                self.offset = self.end;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.offset >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end - self.offset)
    }
}

/// The query parameters the API uses (`ns`, `n`, `last`, `artifactType`), decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .take(32)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The page `n` and `last` ask for, of a sorted list.
    fn page<'a>(&self, sorted: &'a [String]) -> &'a [String] {
        let from = match self.get("last") {
            Some(last) => sorted.partition_point(|s| s.as_str() <= last),
            None => 0,
        };
        let n = self
            .get("n")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(MAX_PAGE)
            .min(MAX_PAGE);
        &sorted[from..(from + n).min(sorted.len())]
    }
}

fn json_response(status: StatusCode, body: impl Into<Bytes>, head: bool) -> Response<Body> {
    let body: Bytes = body.into();
    let len = body.len();
    let mut resp = Response::new(if head { empty() } else { full(body) });
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_as_rfc_9110_reads_them() {
        assert_eq!(Range::parse("bytes=0-9", 100), Range::Part(0, 10));
        assert_eq!(Range::parse("bytes=90-", 100), Range::Part(90, 100));
        assert_eq!(Range::parse("bytes=90-200", 100), Range::Part(90, 100));
        assert_eq!(Range::parse("bytes=-10", 100), Range::Part(90, 100));
        assert_eq!(Range::parse("bytes=-200", 100), Range::Part(0, 100));
        assert_eq!(Range::parse("bytes=100-", 100), Range::Unsatisfiable);
        assert_eq!(Range::parse("bytes=-0", 100), Range::Unsatisfiable);
        assert_eq!(Range::parse("bytes=0-1,5-6", 100), Range::Whole);
        assert_eq!(Range::parse("bytes=9-3", 100), Range::Whole);
        assert_eq!(Range::parse("items=0-1", 100), Range::Whole);
        assert_eq!(Range::parse("bytes=x-", 100), Range::Whole);
    }

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_star() {
        let d = Digest::of_bytes(b"x");
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, &d));
        h.insert(header::IF_NONE_MATCH, value(&format!("\"a\", W/\"{d}\"")));
        assert!(not_modified(&h, &d));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&h, &d));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!not_modified(&h, &d));
    }

    #[test]
    fn pages_follow_n_and_last() {
        let all: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(Query::parse(Some("n=2")).page(&all), &all[..2]);
        assert_eq!(Query::parse(Some("n=2&last=b")).page(&all), &all[2..]);
        assert_eq!(Query::parse(Some("last=d")).page(&all), &all[4..]);
        assert_eq!(
            Query::parse(Some("ns=127.0.0.1%3A5000")).get("ns"),
            Some("127.0.0.1:5000")
        );
    }
}
