//! [`RegistryClient`]: the request flow. Manifest and blob fetches, one authenticated request
//! (anonymous first, then the `401` challenge: Basic or a bearer token), credential lookup, the
//! per-repository auth cache, and status errors with secrets scrubbed out. How a request gets to
//! the registry (endpoints, retries, redirects) is in `transport`, TLS trust in `tls`, pure
//! helpers in `http`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue, RANGE, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode, Url};

use super::auth::{self, Challenge};
use super::http::{
    basic_header, checked_name, header_value, is_loopback_host, media_type, parse_content_range,
    redact_url, registry_error_detail, same_origin, sensitive,
};
use super::tls::read_pem_certs;
use super::transport::{Call, CallBody, Endpoint, read_capped};
use super::{
    BlobResponse, Credentials, FetchedManifest, MAX_MANIFEST_BYTES, MEDIA_TYPE_DOCKER_LIST,
    MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, RegistryOptions,
};
use crate::digest::{Digest, truncate_for_message};
use crate::error::Error;
use crate::reference::Reference;

/// The most of an error or token answer that is read.
const MAX_SMALL_BODY: u64 = 1024 * 1024;

/// A client for OCI/Docker registries. Cheap to clone: clones share connections, endpoints,
/// credentials and cached tokens.
#[derive(Clone)]
pub struct RegistryClient {
    pub(super) inner: Arc<Inner>,
    /// Set on a client for a mirror: what its requests say and get.
    mirror: Option<MirrorRoute>,
}

/// How requests to a mirror differ: containerd's `?ns=<registry>` on every request to a
/// hosts.toml mirror, and no `--creds` (they are for the registry the user named; a mirror
/// gets only the credentials stored for its own host).
#[derive(Clone)]
struct MirrorRoute {
    ns: Option<Arc<str>>,
}

pub(super) struct Inner {
    pub(super) opts: RegistryOptions,
    /// `opts.ca_certs`, parsed once.
    pub(super) ca_certs: Vec<reqwest::Certificate>,
    /// Per registry: its base URL (scheme decided) and an HTTP client with its trust roots.
    pub(super) endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
    /// Per (registry, repository): the `Authorization` value that worked last.
    auth: Mutex<HashMap<(String, String), CachedAuth>>,
    /// Per (registry, repository): credentials found in files or helpers (or none).
    creds: Mutex<HashMap<(String, String), Option<Credentials>>>,
}

/// What a request needs the registry to allow: the token scopes asked for, and the key under
/// which its `Authorization` is cached (a pull token cannot push).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access<'a> {
    Pull,
    /// Pull and push on the repository, and pull on the one a blob is mounted from.
    Push {
        mount_from: Option<&'a str>,
    },
}

impl Access<'_> {
    fn scopes(&self, repository: &str) -> Vec<String> {
        match self {
            Access::Pull => vec![format!("repository:{repository}:pull")],
            Access::Push { mount_from } => {
                let mut s = vec![format!("repository:{repository}:pull,push")];
                if let Some(from) = mount_from {
                    s.push(format!("repository:{from}:pull"));
                }
                s
            }
        }
    }

    fn scope_key(&self, repository: &str) -> String {
        self.scopes(repository).join(" ")
    }
}

/// Where a request goes: a path on the registry, or a URL it gave (an upload location).
pub(super) enum Target {
    Path(String),
    Url(Url),
}

/// One request as [`RegistryClient::request`] sends it.
pub(super) struct Request<'a> {
    pub(super) method: Method,
    pub(super) target: Target,
    pub(super) headers: HeaderMap,
    pub(super) body: Option<CallBody>,
    pub(super) timeout: Option<Duration>,
    pub(super) access: Access<'a>,
}

impl<'a> Request<'a> {
    pub(super) fn new(method: Method, path: &str) -> Self {
        Self {
            method,
            target: Target::Path(path.to_owned()),
            headers: HeaderMap::new(),
            body: None,
            timeout: None,
            access: Access::Pull,
        }
    }

    pub(super) fn to_url(method: Method, url: Url) -> Self {
        Self {
            target: Target::Url(url),
            ..Self::new(method, "")
        }
    }

    pub(super) fn headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    pub(super) fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub(super) fn body(mut self, body: CallBody) -> Self {
        self.body = Some(body);
        self
    }

    pub(super) fn access(mut self, access: Access<'a>) -> Self {
        self.access = access;
        self
    }
}

#[derive(Clone)]
struct CachedAuth {
    header: HeaderValue,
    /// `None` for Basic: valid until refused.
    expires_at: Option<Instant>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let registries: Vec<String> = lock(&self.inner.endpoints)
            .values()
            .map(|e| e.base.to_string())
            .collect();
        f.debug_struct("RegistryClient")
            .field("opts", &self.inner.opts)
            .field("endpoints", &registries)
            .finish_non_exhaustive()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RegistryClient {
    /// Reads the `--ca-cert` files; registries are contacted only on the first request.
    pub fn new(opts: RegistryOptions) -> Result<Self, Error> {
        let mut ca_certs = Vec::new();
        for path in &opts.ca_certs {
            ca_certs.extend(read_pem_certs(path)?);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                opts,
                ca_certs,
                endpoints: Mutex::new(HashMap::new()),
                auth: Mutex::new(HashMap::new()),
                creds: Mutex::new(HashMap::new()),
            }),
            mirror: None,
        })
    }

    /// This client, for requests to a mirror (sharing connections and tokens): no `--creds`,
    /// and `?ns=<ns>` on every request when `ns` is given.
    pub fn for_mirror(&self, ns: Option<&str>) -> Self {
        Self {
            inner: self.inner.clone(),
            mirror: Some(MirrorRoute {
                ns: ns.map(Arc::from),
            }),
        }
    }

    /// The options this client was made with.
    pub fn options(&self) -> &RegistryOptions {
        &self.inner.opts
    }

    /// `GET /v2/<repo>/manifests/<digest or tag>`: by `reference.digest` when set (the digest
    /// wins), else by its tag. See [`RegistryClient::fetch_manifest_by_digest`].
    pub async fn fetch_manifest(&self, reference: &Reference) -> Result<FetchedManifest, Error> {
        let (target, expected) = match (&reference.digest, &reference.tag) {
            (Some(d), _) => (d.to_string(), Some(*d)),
            (None, Some(t)) => (t.clone(), None),
            (None, None) => (crate::reference::DEFAULT_TAG.to_owned(), None),
        };
        self.manifest(
            &reference.registry,
            &reference.repository,
            &target,
            expected,
            &reference.to_string(),
        )
        .await
        .map_err(|e| self.scrub_error(&reference.registry, e))
    }

    /// `GET /v2/<repo>/manifests/<digest>` accepting the Docker v2, Docker list, OCI manifest
    /// and OCI index types. Refuses a body over 4 MiB ([`Error::TooLarge`]); bytes that do not
    /// hash to `digest` are [`Error::DigestMismatch`]; 404 is [`Error::ManifestNotFound`].
    pub async fn fetch_manifest_by_digest(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<FetchedManifest, Error> {
        let name = checked_name(registry, repository, digest)?;
        self.manifest(
            registry,
            repository,
            &digest.to_string(),
            Some(*digest),
            &name,
        )
        .await
        .map_err(|e| self.scrub_error(registry, e))
    }

    /// `GET /v2/<repo>/blobs/<digest>`, from `offset` (`Range: bytes=<offset>-`) when it is not 0.
    /// Redirects are followed; the `Authorization` header is never sent to another host.
    /// [`BlobResponse::offset`] says where the body starts: a server that ignores the range sends
    /// the whole blob (offset 0). The caller verifies the digest.
    pub async fn fetch_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        offset: u64,
    ) -> Result<BlobResponse, Error> {
        self.blob(registry, repository, digest, offset)
            .await
            .map_err(|e| self.scrub_error(registry, e))
    }

    async fn blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        offset: u64,
    ) -> Result<BlobResponse, Error> {
        let name = checked_name(registry, repository, digest)?;
        let what = format!("blob {name}");
        let path = format!("/v2/{repository}/blobs/{digest}");
        let mut range = offset;
        loop {
            let mut headers = HeaderMap::new();
            if range > 0 {
                headers.insert(RANGE, header_value(&format!("bytes={range}-")));
            }
            let (resp, ep) = self
                .request(
                    registry,
                    repository,
                    Request::new(Method::GET, &path).headers(headers),
                )
                .await?;
            let status = resp.status();
            match status {
                StatusCode::OK => {
                    if range > 0 {
                        tracing::debug!(blob = %name, "the registry ignored the range: reading the whole blob");
                    }
                    return Ok(BlobResponse {
                        offset: 0,
                        length: resp.content_length(),
                        response: resp,
                        registry: ep.registry.clone(),
                        what,
                    });
                }
                StatusCode::PARTIAL_CONTENT if range > 0 => {
                    match parse_content_range(resp.headers()) {
                        Some((start, end)) if start == range => {
                            let length = resp.content_length().or(end.map(|e| e + 1 - start));
                            return Ok(BlobResponse {
                                offset: start,
                                length,
                                response: resp,
                                registry: ep.registry.clone(),
                                what,
                            });
                        }
                        other => {
                            tracing::warn!(blob = %name, asked = range, got = ?other, "unexpected Content-Range: reading the whole blob");
                        }
                    }
                }
                StatusCode::RANGE_NOT_SATISFIABLE if range > 0 => {
                    tracing::debug!(blob = %name, offset = range, "range not satisfiable: reading the whole blob");
                }
                StatusCode::NOT_FOUND => {
                    return Err(Error::BlobNotFound {
                        registry: ep.registry.clone(),
                        repository: repository.to_owned(),
                        digest: digest.to_string(),
                    });
                }
                _ => return Err(self.status_error(&ep, resp, &what).await),
            }
            range = 0;
        }
    }

    async fn manifest(
        &self,
        registry: &str,
        repository: &str,
        target: &str,
        expected: Option<Digest>,
        name: &str,
    ) -> Result<FetchedManifest, Error> {
        let what = format!("manifest {name}");
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            header_value(
                &[
                    MEDIA_TYPE_OCI_INDEX,
                    MEDIA_TYPE_OCI_MANIFEST,
                    MEDIA_TYPE_DOCKER_LIST,
                    MEDIA_TYPE_DOCKER_MANIFEST,
                ]
                .join(", "),
            ),
        );
        let path = format!("/v2/{repository}/manifests/{target}");
        // A body cut short is retried like a failed request (the request itself retries inside).
        let mut attempt = 0;
        let (bytes, content_type, header_digest) = loop {
            attempt += 1;
            let (resp, ep) = self
                .request(
                    registry,
                    repository,
                    Request::new(Method::GET, &path)
                        .headers(headers.clone())
                        .timeout(self.inner.opts.timeout),
                )
                .await?;
            match resp.status() {
                s if s.is_success() => {}
                StatusCode::NOT_FOUND => {
                    return Err(Error::ManifestNotFound {
                        reference: name.to_owned(),
                    });
                }
                _ => return Err(self.status_error(&ep, resp, &what).await),
            }
            let content_type = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(';').next().unwrap_or("").trim().to_owned());
            let header_digest = resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| Digest::parse(v.trim()).ok());
            match read_capped(&ep, resp, MAX_MANIFEST_BYTES, &what).await {
                Ok(bytes) => break (bytes, content_type, header_digest),
                Err(e @ Error::Registry { .. }) if attempt <= self.inner.opts.max_retries => {
                    tracing::warn!("{e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e),
            }
        };
        let digest = Digest::of_bytes(&bytes);
        if let Some(expected) = expected {
            if expected != digest {
                return Err(Error::DigestMismatch {
                    what,
                    expected: expected.to_string(),
                    found: digest.to_string(),
                });
            }
        } else if let Some(announced) = header_digest
            && announced != digest
        {
            return Err(Error::DigestMismatch {
                what: format!("{what} (the registry's Docker-Content-Digest)"),
                expected: announced.to_string(),
                found: digest.to_string(),
            });
        }
        let media_type = media_type(content_type.as_deref(), &bytes);
        tracing::debug!(manifest = name, %digest, media_type, size = bytes.len(), "fetched manifest");
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Sends a request to the registry, authenticating on demand. Any status but 401/403 from
    /// the registry is returned as is (after retries).
    pub(super) async fn request(
        &self,
        registry: &str,
        repository: &str,
        req: Request<'_>,
    ) -> Result<(Response, Arc<Endpoint>), Error> {
        let ep = self.endpoint(registry).await?;
        let url = match req.target {
            Target::Path(path) => {
                let mut url = ep.base.join(&path).map_err(|e| Error::InvalidReference {
                    text: truncate_for_message(&path),
                    reason: e.to_string(),
                })?;
                if let Some(ns) = self.mirror.as_ref().and_then(|m| m.ns.as_deref()) {
                    url.query_pairs_mut().append_pair("ns", ns);
                }
                url
            }
            Target::Url(url) => url,
        };
        // An upload location on another origin gets no credentials, as a redirect would not.
        let ours = same_origin(&url, &ep.base);
        let key = (registry.to_owned(), req.access.scope_key(repository));
        let mut call = Call {
            method: req.method,
            url,
            headers: req.headers,
            auth: if ours { self.cached_auth(&key) } else { None },
            form: None,
            body: req.body,
            timeout: req.timeout,
        };
        let mut challenged = false;
        let mut sent_credentials = false;
        loop {
            let resp = self.send(&ep, &call).await?;
            let from_registry = same_origin(resp.url(), &ep.base);
            match resp.status() {
                StatusCode::UNAUTHORIZED if from_registry => {
                    if challenged {
                        lock(&self.inner.auth).remove(&key);
                        return Err(if sent_credentials {
                            Error::Forbidden {
                                registry: registry.to_owned(),
                                repository: repository.to_owned(),
                                status: 401,
                            }
                        } else {
                            Error::Unauthorized {
                                registry: registry.to_owned(),
                                repository: repository.to_owned(),
                            }
                        });
                    }
                    challenged = true;
                    lock(&self.inner.auth).remove(&key);
                    let (header, with_creds) = self
                        .authenticate(&ep, repository, req.access, &resp)
                        .await?;
                    call.auth = Some(header);
                    sent_credentials = with_creds;
                }
                StatusCode::FORBIDDEN if from_registry => {
                    return Err(Error::Forbidden {
                        registry: registry.to_owned(),
                        repository: repository.to_owned(),
                        status: 403,
                    });
                }
                _ => return Ok((resp, ep)),
            }
        }
    }

    fn cached_auth(&self, key: &(String, String)) -> Option<HeaderValue> {
        let mut cache = lock(&self.inner.auth);
        match cache.get(key) {
            Some(a) if a.expires_at.is_none_or(|t| Instant::now() < t) => Some(a.header.clone()),
            Some(_) => {
                cache.remove(key);
                None
            }
            None => None,
        }
    }

    /// Answers a 401: returns the `Authorization` value to retry with, and whether it carries
    /// credentials (so that a second 401 means "refused", not "wanted").
    async fn authenticate(
        &self,
        ep: &Endpoint,
        repository: &str,
        access: Access<'_>,
        resp: &Response,
    ) -> Result<(HeaderValue, bool), Error> {
        let registry = &ep.registry;
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .flat_map(|v| auth::parse_challenges(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        let key = (registry.clone(), access.scope_key(repository));
        let creds = self.credentials(registry, repository).await;
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let token = self
                .fetch_token(ep, repository, access, bearer, creds.as_ref())
                .await?;
            let header = sensitive(&format!("Bearer {}", token.token))?;
            lock(&self.inner.auth).insert(
                key,
                CachedAuth {
                    header: header.clone(),
                    expires_at: Some(token.expires_at),
                },
            );
            return Ok((header, creds.is_some()));
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            return match creds {
                Some(c) if !c.is_identity_token() => {
                    let header = basic_header(&c)?;
                    lock(&self.inner.auth).insert(
                        key,
                        CachedAuth {
                            header: header.clone(),
                            expires_at: None,
                        },
                    );
                    Ok((header, true))
                }
                _ => Err(Error::Unauthorized {
                    registry: registry.clone(),
                    repository: repository.to_owned(),
                }),
            };
        }
        let schemes: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
        Err(Error::Registry {
            registry: registry.clone(),
            message: format!(
                "answered 401 for {repository} without a Basic or Bearer challenge (got {})",
                if schemes.is_empty() {
                    "none".to_owned()
                } else {
                    truncate_for_message(&schemes.join(", "))
                }
            ),
        })
    }

    /// Gets a bearer token from the challenge's realm: `GET realm?service=..&scope=..` (Basic
    /// credentials if any, anonymous otherwise), or the OAuth2 refresh-token `POST` for an
    /// identity token.
    async fn fetch_token(
        &self,
        ep: &Endpoint,
        repository: &str,
        access: Access<'_>,
        challenge: &Challenge,
        creds: Option<&Credentials>,
    ) -> Result<auth::Token, Error> {
        let registry = &ep.registry;
        let fail = |message: String| Error::Registry {
            registry: registry.clone(),
            message,
        };
        let realm = challenge
            .param("realm")
            .ok_or_else(|| fail("Bearer challenge without a realm".to_owned()))?;
        let mut url = Url::parse(realm).map_err(|e| {
            fail(format!(
                "Bearer realm {:?} is not a URL: {e}",
                truncate_for_message(realm)
            ))
        })?;
        if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
            return Err(fail(format!(
                "Bearer realm {:?} is not an http(s) URL",
                truncate_for_message(realm)
            )));
        }
        url.set_fragment(None);
        if creds.is_some()
            && url.scheme() == "http"
            && !self.inner.opts.insecure
            && !url.host_str().is_some_and(is_loopback_host)
        {
            return Err(fail(format!(
                "refusing to send credentials over plain http to the token server {}; use --insecure to allow it",
                url.host_str().unwrap_or("")
            )));
        }
        let service = challenge.param("service").unwrap_or("");
        let scopes = token_scopes(access.scopes(repository), challenge.param("scope"));
        let mut call = Call {
            method: Method::GET,
            url: url.clone(),
            headers: HeaderMap::new(),
            auth: None,
            form: None,
            body: None,
            timeout: Some(self.inner.opts.timeout),
        };
        match creds {
            Some(c) if c.is_identity_token() => {
                call.method = Method::POST;
                let mut form = vec![
                    ("grant_type", "refresh_token".to_owned()),
                    ("refresh_token", c.password.clone()),
                    ("service", service.to_owned()),
                    ("client_id", "imgcache".to_owned()),
                ];
                form.extend(scopes.iter().map(|s| ("scope", s.clone())));
                call.form = Some(form);
            }
            _ => {
                {
                    let mut q = call.url.query_pairs_mut();
                    if !service.is_empty() {
                        q.append_pair("service", service);
                    }
                    for s in &scopes {
                        q.append_pair("scope", s);
                    }
                    if let Some(c) = creds {
                        q.append_pair("account", &c.username);
                    }
                }
                if let Some(c) = creds {
                    call.auth = Some(basic_header(c)?);
                }
            }
        }
        let what = format!(
            "token for {repository} from {}",
            url.host_str().unwrap_or("")
        );
        let resp = self.send(ep, &call).await?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if creds.is_some() => {
                return Err(Error::Forbidden {
                    registry: registry.clone(),
                    repository: repository.to_owned(),
                    status: resp.status().as_u16(),
                });
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(Error::Unauthorized {
                    registry: registry.clone(),
                    repository: repository.to_owned(),
                });
            }
            _ => return Err(self.status_error(ep, resp, &what).await),
        }
        let body = read_capped(ep, resp, MAX_SMALL_BODY, &what).await?;
        let token = auth::parse_token_response(&body, Instant::now())
            .ok_or_else(|| fail(format!("{what}: the answer holds no token")))?;
        tracing::debug!(registry = %registry, repository, with_credentials = creds.is_some(), "got a bearer token");
        Ok(token)
    }

    /// `--creds`, else the first match in the auth files and helpers (looked up once per
    /// registry and repository, off the async threads: helpers are processes).
    async fn credentials(&self, registry: &str, repository: &str) -> Option<Credentials> {
        if let Some(c) = &self.inner.opts.creds
            && self.mirror.is_none()
        {
            return Some(c.clone());
        }
        let key = (registry.to_owned(), repository.to_owned());
        if let Some(c) = lock(&self.inner.creds).get(&key) {
            return c.clone();
        }
        let files = self.inner.opts.auth_files.clone();
        let (reg, repo) = key.clone();
        let found = tokio::task::spawn_blocking(move || {
            auth::lookup_credentials(&reg, &repo, &files, None)
        })
        .await
        .ok()
        .flatten();
        let creds = found.map(|(c, origin)| {
            tracing::debug!(registry, repository, ?origin, "using stored credentials");
            c
        });
        lock(&self.inner.creds).insert(key, creds.clone());
        creds
    }

    /// An unexpected status, with the registry's own error codes when it sent some.
    pub(super) async fn status_error(&self, ep: &Endpoint, resp: Response, what: &str) -> Error {
        let status = resp.status();
        let url = redact_url(resp.url());
        let body = read_capped(ep, resp, 64 * 1024, what)
            .await
            .unwrap_or_default();
        let detail = registry_error_detail(&body);
        let detail = self.scrub(&ep.registry, &detail);
        Error::Registry {
            registry: ep.registry.clone(),
            message: format!(
                "{what}: {url} answered HTTP {}{}",
                status.as_u16(),
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({detail})")
                }
            ),
        }
    }

    /// Errors carrying server-provided text, with any secret removed (a hostile server could
    /// echo what it was sent).
    pub(super) fn scrub_error(&self, registry: &str, e: Error) -> Error {
        match e {
            Error::Registry {
                registry: r,
                message,
            } => Error::Registry {
                registry: r,
                message: self.scrub(registry, &message),
            },
            Error::Tls {
                registry: r,
                message,
            } => Error::Tls {
                registry: r,
                message: self.scrub(registry, &message),
            },
            e => e,
        }
    }

    /// Removes any credential or token of `registry` from server-provided text.
    fn scrub(&self, registry: &str, text: &str) -> String {
        let mut secrets: Vec<String> = Vec::new();
        let mut add = |c: &Credentials| {
            secrets.push(c.password.clone());
            secrets.push(
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password)),
            );
        };
        if let Some(c) = &self.inner.opts.creds {
            add(c);
        }
        for ((reg, _), c) in lock(&self.inner.creds).iter() {
            if reg == registry
                && let Some(c) = c
            {
                add(c);
            }
        }
        for ((reg, _), a) in lock(&self.inner.auth).iter() {
            if reg == registry
                && let Ok(v) = a.header.to_str()
                && let Some((_, secret)) = v.split_once(' ')
            {
                secrets.push(secret.to_owned());
            }
        }
        let mut out = text.to_owned();
        for s in secrets.iter().filter(|s| s.len() >= 3) {
            out = out.replace(s.as_str(), "<redacted>");
        }
        out
    }
}

/// The scopes a token is asked for: ours, then each of the challenge's (distribution joins
/// several with spaces; each is its own `scope` parameter) that ours do not already cover.
pub(super) fn token_scopes(mut ours: Vec<String>, challenge: Option<&str>) -> Vec<String> {
    for theirs in challenge.unwrap_or("").split_whitespace() {
        if !ours.iter().any(|o| scope_covers(o, theirs)) {
            ours.push(theirs.to_owned());
        }
    }
    ours
}

/// `repository:a/b:pull,push` covers `repository:a/b:pull`: the same resource, and at least
/// its actions.
fn scope_covers(ours: &str, theirs: &str) -> bool {
    match (ours.rsplit_once(':'), theirs.rsplit_once(':')) {
        (Some((resource, have)), Some((wanted_resource, wanted))) => {
            resource == wanted_resource
                && (wanted.split(',').filter(|a| !a.is_empty()))
                    .all(|a| have.split(',').any(|h| h == a || h == "*"))
        }
        _ => ours == theirs,
    }
}
