//! [`RegistryClient`]: endpoints, TLS trust, auth, retries and redirects.

use std::collections::HashMap;
use std::error::Error as _;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_RANGE, HeaderMap, HeaderValue, LOCATION, RANGE, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode, Url};
use serde_json::Value;

use super::auth::{self, Challenge};
use super::retry;
use super::{
    BlobResponse, Credentials, FetchedManifest, MAX_MANIFEST_BYTES, MEDIA_TYPE_DOCKER_LIST,
    MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, RegistryOptions,
};
use crate::digest::{Digest, truncate_for_message};
use crate::error::Error;
use crate::reference::Reference;

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";
const MAX_REDIRECTS: usize = 10;
/// The most of an error or token answer that is read.
const MAX_SMALL_BODY: u64 = 1024 * 1024;
const USER_AGENT: &str = concat!("imgcache/", env!("CARGO_PKG_VERSION"));

/// A client for OCI/Docker registries. Cheap to clone: clones share connections, endpoints,
/// credentials and cached tokens.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    opts: RegistryOptions,
    /// `opts.ca_certs`, parsed once.
    ca_certs: Vec<reqwest::Certificate>,
    /// Per registry: its base URL (scheme decided) and an HTTP client with its trust roots.
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
    /// Per (registry, repository): the `Authorization` value that worked last.
    auth: Mutex<HashMap<(String, String), CachedAuth>>,
    /// Per (registry, repository): credentials found in files or helpers (or none).
    creds: Mutex<HashMap<(String, String), Option<Credentials>>>,
}

struct Endpoint {
    /// The registry as named in references (`docker.io`, `127.0.0.1:5000`).
    registry: String,
    /// `https://host[:port]/` or, after fallback, `http://...`.
    base: Url,
    http: reqwest::Client,
}

#[derive(Clone)]
struct CachedAuth {
    header: HeaderValue,
    /// `None` for Basic: valid until refused.
    expires_at: Option<Instant>,
}

/// One HTTP exchange as the retry and redirect loop sees it.
struct Call {
    method: Method,
    url: Url,
    headers: HeaderMap,
    /// Sent only to `url`'s origin: never across a redirect to another host.
    auth: Option<HeaderValue>,
    form: Option<Vec<(&'static str, String)>>,
    /// Limit for the whole exchange (small bodies); blobs only have the per-read timeout.
    timeout: Option<Duration>,
}

enum SendError {
    Http(reqwest::Error),
    Redirect(String),
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
        })
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
                .request(registry, repository, Method::GET, &path, headers, None)
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
                    Method::GET,
                    &path,
                    headers.clone(),
                    Some(self.inner.opts.timeout),
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
    async fn request(
        &self,
        registry: &str,
        repository: &str,
        method: Method,
        path: &str,
        headers: HeaderMap,
        timeout: Option<Duration>,
    ) -> Result<(Response, Arc<Endpoint>), Error> {
        let ep = self.endpoint(registry).await?;
        let url = ep.base.join(path).map_err(|e| Error::InvalidReference {
            text: truncate_for_message(path),
            reason: e.to_string(),
        })?;
        let key = (registry.to_owned(), repository.to_owned());
        let mut call = Call {
            method,
            url,
            headers,
            auth: self.cached_auth(&key),
            form: None,
            timeout,
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
                    let (header, with_creds) = self.authenticate(&ep, repository, &resp).await?;
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
        resp: &Response,
    ) -> Result<(HeaderValue, bool), Error> {
        let registry = &ep.registry;
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .flat_map(|v| auth::parse_challenges(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        let key = (registry.clone(), repository.to_owned());
        let creds = self.credentials(registry, repository).await;
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let token = self
                .fetch_token(ep, repository, bearer, creds.as_ref())
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
        let our_scope = format!("repository:{repository}:pull");
        let mut scopes = vec![our_scope.clone()];
        if let Some(s) = challenge.param("scope")
            && !s.is_empty()
            && s != our_scope
        {
            scopes.push(s.to_owned());
        }
        let mut call = Call {
            method: Method::GET,
            url: url.clone(),
            headers: HeaderMap::new(),
            auth: None,
            form: None,
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
        if let Some(c) = &self.inner.opts.creds {
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

    /// The endpoint of `registry`, deciding https or http on first use.
    async fn endpoint(&self, registry: &str) -> Result<Arc<Endpoint>, Error> {
        if let Some(ep) = lock(&self.inner.endpoints).get(registry) {
            return Ok(ep.clone());
        }
        check_registry(registry)?;
        let host = if registry == DOCKER_HUB {
            DOCKER_HUB_ENDPOINT
        } else {
            registry
        };
        let http = self.http_client(registry, host)?;
        let https_base = base_url("https", host, registry)?;
        let fallback = self.inner.opts.insecure || is_loopback_host(host);
        let base = if fallback {
            self.probe(registry, host, &http, https_base).await?
        } else {
            https_base
        };
        let ep = Arc::new(Endpoint {
            registry: registry.to_owned(),
            base,
            http,
        });
        lock(&self.inner.endpoints).insert(registry.to_owned(), ep.clone());
        Ok(ep)
    }

    /// For registries allowed plain http: `GET /v2/` over https; on a connection or TLS failure
    /// over http, which is used if it answers like an HTTP server that is not a TLS port
    /// (anything but 400). Retries connection failures like any request.
    async fn probe(
        &self,
        registry: &str,
        host: &str,
        http: &reqwest::Client,
        https_base: Url,
    ) -> Result<Url, Error> {
        let http_base = base_url("http", host, registry)?;
        let ping = |base: &Url| {
            let url = base.join("/v2/").unwrap_or_else(|_| base.clone());
            http.get(url).timeout(self.inner.opts.timeout).send()
        };
        let mut attempt = 0;
        loop {
            let https_err = match ping(&https_base).await {
                Ok(_) => return Ok(https_base),
                Err(e) => e,
            };
            match ping(&http_base).await {
                Ok(r) if r.status() != StatusCode::BAD_REQUEST => {
                    tracing::debug!(registry, "no TLS on this port: using plain http");
                    return Ok(http_base);
                }
                _ => {}
            }
            let url = https_base
                .join("/v2/")
                .unwrap_or_else(|_| https_base.clone());
            if is_tls_error(&https_err)
                || !is_retryable_error(&https_err)
                || attempt >= self.inner.opts.max_retries
            {
                return Err(
                    match self.transport_error(registry, &url, &https_err, attempt + 1) {
                        Error::Registry { registry, message } => Error::Registry {
                            registry,
                            message: format!("{message}; plain http failed too"),
                        },
                        e => e,
                    },
                );
            }
            let wait = retry::backoff(attempt, None);
            tracing::info!(registry, attempt = attempt + 1, wait_ms = wait.as_millis() as u64, error = %describe_reqwest_error(&https_err), "registry unreachable; retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// An HTTP client trusting the system roots, `--ca-cert`, and the registry's certs.d CAs.
    fn http_client(&self, registry: &str, host: &str) -> Result<reqwest::Client, Error> {
        let opts = &self.inner.opts;
        let mut b = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(opts.connect_timeout)
            .read_timeout(opts.timeout)
            .danger_accept_invalid_certs(opts.insecure);
        for c in &self.inner.ca_certs {
            b = b.add_root_certificate(c.clone());
        }
        let mut names = vec![registry];
        if host != registry {
            names.push(host);
        }
        for dir in &opts.certs_dirs {
            for name in &names {
                let d = dir.join(name);
                let Ok(entries) = std::fs::read_dir(&d) else {
                    continue;
                };
                let mut files: Vec<_> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "crt"))
                    .collect();
                files.sort();
                for f in files {
                    let certs = read_pem_certs(&f).map_err(|e| Error::Tls {
                        registry: registry.to_owned(),
                        message: e.to_string(),
                    })?;
                    tracing::debug!(registry, path = %f.display(), "trusting CA from certs.d");
                    for c in certs {
                        b = b.add_root_certificate(c);
                    }
                }
            }
        }
        b.build().map_err(|e| Error::Tls {
            registry: registry.to_owned(),
            message: format!(
                "cannot set up the HTTP client: {}",
                describe_reqwest_error(&e)
            ),
        })
    }

    /// Sends `call`, following redirects and retrying 408/429/5xx answers and connection errors.
    async fn send(&self, ep: &Endpoint, call: &Call) -> Result<Response, Error> {
        let max = self.inner.opts.max_retries;
        let mut attempt = 0;
        loop {
            let (why, retry_after) = match send_once(ep, call).await {
                Ok(resp) => {
                    let status = resp.status();
                    if !retry::retryable_status(status.as_u16()) || attempt >= max {
                        return Ok(resp);
                    }
                    let ra = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
                    (format!("HTTP {}", status.as_u16()), ra)
                }
                Err(SendError::Http(e)) => {
                    if is_tls_error(&e) || !is_retryable_error(&e) || attempt >= max {
                        let url = e.url().cloned().unwrap_or_else(|| call.url.clone());
                        return Err(self.transport_error(&ep.registry, &url, &e, attempt + 1));
                    }
                    (describe_reqwest_error(&e), None)
                }
                Err(SendError::Redirect(message)) => {
                    return Err(Error::Registry {
                        registry: ep.registry.clone(),
                        message: format!("{} {}: {message}", call.method, redact_url(&call.url)),
                    });
                }
            };
            let wait = retry::backoff(attempt, retry_after);
            tracing::info!(
                url = %redact_url(&call.url),
                attempt = attempt + 1,
                wait_ms = wait.as_millis() as u64,
                reason = %why,
                "retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// A request that got no answer: TLS failures name the registry and how to trust it;
    /// everything else names the host and the cause.
    fn transport_error(&self, registry: &str, url: &Url, e: &reqwest::Error, tries: u32) -> Error {
        let cause = describe_reqwest_error(e);
        if is_tls_error(e) {
            return Error::Tls {
                registry: registry.to_owned(),
                message: format!("{}: {cause}", redact_url(url)),
            };
        }
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => registry.to_owned(),
        };
        let attempts = if tries > 1 {
            format!(" (tried {tries} times)")
        } else {
            String::new()
        };
        Error::Registry {
            registry: host,
            message: format!("cannot reach {}: {cause}{attempts}", redact_url(url)),
        }
    }

    /// An unexpected status, with the registry's own error codes when it sent some.
    async fn status_error(&self, ep: &Endpoint, resp: Response, what: &str) -> Error {
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
                "{what}: GET {url} answered HTTP {}{}",
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
    fn scrub_error(&self, registry: &str, e: Error) -> Error {
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

/// One pass through the redirect chain; `Authorization` only goes to the original origin.
async fn send_once(ep: &Endpoint, call: &Call) -> Result<Response, SendError> {
    let mut url = call.url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let mut rb = ep
            .http
            .request(call.method.clone(), url.clone())
            .headers(call.headers.clone());
        if let Some(t) = call.timeout {
            rb = rb.timeout(t);
        }
        if let Some(a) = &call.auth
            && same_origin(&url, &call.url)
        {
            rb = rb.header(AUTHORIZATION, a.clone());
        }
        if let Some(form) = &call.form {
            rb = rb.form(form);
        }
        let resp = rb.send().await.map_err(SendError::Http)?;
        let status = resp.status().as_u16();
        if !matches!(status, 301 | 302 | 303 | 307 | 308) || call.method != Method::GET {
            return Ok(resp);
        }
        let Some(location) = resp.headers().get(LOCATION) else {
            return Ok(resp);
        };
        let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
        let next = url.join(&location).map_err(|e| {
            SendError::Redirect(format!(
                "redirect to an invalid location {:?}: {e}",
                truncate_for_message(&location)
            ))
        })?;
        if !matches!(next.scheme(), "http" | "https") {
            return Err(SendError::Redirect(format!(
                "redirect to a {} URL",
                next.scheme()
            )));
        }
        tracing::debug!(from = %redact_url(&url), to = %redact_url(&next), status, "following redirect");
        url = next;
    }
    Err(SendError::Redirect(format!(
        "more than {MAX_REDIRECTS} redirects"
    )))
}

/// Reads a body, refusing more than `limit` bytes (by `Content-Length` and while reading).
async fn read_capped(
    ep: &Endpoint,
    mut resp: Response,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, Error> {
    let too_large = || Error::TooLarge {
        what: what.to_owned(),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(resp.content_length().unwrap_or(0).min(limit) as usize);
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if out.len() as u64 + c.len() as u64 > limit {
                    return Err(too_large());
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(e) => {
                return Err(Error::Registry {
                    registry: ep.registry.clone(),
                    message: format!("reading {what}: {}", describe_reqwest_error(&e)),
                });
            }
        }
    }
}

/// The media type: `Content-Type` when it names a manifest type, else the document's own
/// `mediaType`, else its shape (`manifests` = index, `config` = manifest).
fn media_type(content_type: Option<&str>, bytes: &[u8]) -> String {
    let generic = |t: &str| {
        t.is_empty()
            || matches!(
                t,
                "application/json" | "text/plain" | "application/octet-stream"
            )
    };
    if let Some(t) = content_type
        && !generic(t)
    {
        return t.to_owned();
    }
    let doc: Option<Value> = serde_json::from_slice(bytes).ok();
    if let Some(doc) = &doc {
        if let Some(t) = doc.get("mediaType").and_then(Value::as_str)
            && !t.is_empty()
        {
            return t.to_owned();
        }
        if doc.get("manifests").is_some() {
            return MEDIA_TYPE_OCI_INDEX.to_owned();
        }
        if doc.get("config").is_some() {
            return MEDIA_TYPE_OCI_MANIFEST.to_owned();
        }
    }
    content_type
        .filter(|t| !t.is_empty())
        .unwrap_or("application/octet-stream")
        .to_owned()
}

/// `code: message` of a distribution error body (`{"errors":[{"code","message"}]}`), bounded.
fn registry_error_detail(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    let Some(errors) = v.get("errors").and_then(Value::as_array) else {
        return String::new();
    };
    let parts: Vec<String> = errors
        .iter()
        .take(3)
        .map(|e| {
            let code = e.get("code").and_then(Value::as_str).unwrap_or("");
            let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
            format!("{code}: {msg}")
        })
        .collect();
    truncate_for_message(&parts.join("; "))
}

/// `bytes start-end/total` → (start, Some(end)); `bytes start-*/...` forms are refused.
fn parse_content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = headers.get(CONTENT_RANGE)?.to_str().ok()?.trim();
    let rest = v.strip_prefix("bytes ")?.trim();
    let (range, _total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    (end >= start).then_some((start, Some(end)))
}

/// Registry names as references allow them, and never a path.
fn check_registry(registry: &str) -> Result<(), Error> {
    let ok = !registry.is_empty()
        && registry.len() <= 255
        && !registry.starts_with('.')
        && !registry.contains("..")
        && registry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidReference {
            text: truncate_for_message(registry),
            reason: "invalid registry host".to_owned(),
        })
    }
}

/// `registry/repository@digest`, after checking both parts as a reference would.
fn checked_name(registry: &str, repository: &str, digest: &Digest) -> Result<String, Error> {
    check_registry(registry)?;
    let name = format!("{registry}/{repository}@{digest}");
    match Reference::parse(&name) {
        Ok(r) if r.registry == registry && r.repository == repository => Ok(name),
        Ok(_) => Err(Error::InvalidReference {
            text: truncate_for_message(&name),
            reason: "registry and repository do not form a normalized reference".to_owned(),
        }),
        Err(e) => Err(e),
    }
}

fn base_url(scheme: &str, host: &str, registry: &str) -> Result<Url, Error> {
    Url::parse(&format!("{scheme}://{host}/")).map_err(|e| Error::InvalidReference {
        text: truncate_for_message(registry),
        reason: format!("invalid registry host: {e}"),
    })
}

/// `localhost`, `127.0.0.0/8` and `::1`, with or without a port.
pub(crate) fn is_loopback_host(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else if host_port.matches(':').count() == 1 {
        host_port.split(':').next().unwrap_or("")
    } else {
        host_port
    };
    let host = host.trim_end_matches('.');
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// A URL without query and fragment (signed redirect URLs carry secrets there).
fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A header value marked sensitive (hidden from `Debug`, never indexed by HTTP/2 HPACK).
fn sensitive(text: &str) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::from_str(text).map_err(|_| Error::Registry {
        registry: String::new(),
        message: "credentials or token contain characters not allowed in an HTTP header".to_owned(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn basic_header(c: &Credentials) -> Result<HeaderValue, Error> {
    let b64 =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password));
    sensitive(&format!("Basic {b64}"))
}

fn read_pem_certs(path: &Path) -> Result<Vec<reqwest::Certificate>, Error> {
    let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default();
    if certs.is_empty() {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no PEM certificate in this file",
            ),
        ));
    }
    Ok(certs)
}

/// The causes of a reqwest error, innermost last, without the URL (it may carry a signed query).
pub(crate) fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    if e.is_timeout() {
        parts.push("timed out".to_owned());
    }
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        src = s.source();
    }
    // hyper's "client error (Connect)" only restates what the next cause says.
    if parts.len() > 1 {
        parts.retain(|p| !p.starts_with("client error ("));
    }
    if parts.is_empty() {
        parts.push(e.without_url_string());
    }
    parts.join(": ")
}

trait WithoutUrl {
    fn without_url_string(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_string(&self) -> String {
        let mut s = self.to_string();
        if let Some(u) = self.url() {
            s = s.replace(u.as_str(), &redact_url(u));
        }
        s
    }
}

fn chain_text(e: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut src = e.source();
    while let Some(s) = src {
        text.push_str(&s.to_string().to_ascii_lowercase());
        text.push('\n');
        src = s.source();
    }
    text
}

/// A failure of the TLS layer: certificate verification, handshake, protocol.
fn is_tls_error(e: &reqwest::Error) -> bool {
    let t = chain_text(e);
    [
        "certificate",
        "tls",
        "ssl",
        "handshake",
        "corrupt message",
        "peer sent",
        "alert",
    ]
    .iter()
    .any(|k| t.contains(k))
}

/// Connection failures and timeouts may pass; other errors (invalid URL, body) will not.
fn is_retryable_error(e: &reqwest::Error) -> bool {
    if e.is_timeout() || e.is_connect() {
        return true;
    }
    if e.is_request() || e.is_body() {
        let mut src = e.source();
        while let Some(s) = src {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::*;
                return matches!(
                    io.kind(),
                    ConnectionReset
                        | ConnectionAborted
                        | ConnectionRefused
                        | BrokenPipe
                        | UnexpectedEof
                        | TimedOut
                );
            }
            src = s.source();
        }
        // hyper's "connection closed before message completed" and the like.
        return chain_text(e).contains("connection");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost",
            "localhost:5000",
            "LOCALHOST",
            "[::1]:5000",
            "[::1]",
            "::1",
            "registry.localhost:80",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "128.0.0.1",
            "[::2]:5000",
            "localhost.example",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn content_ranges() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(CONTENT_RANGE, HeaderValue::from_str(v).unwrap());
            parse_content_range(&m)
        };
        assert_eq!(h("bytes 100-199/200"), Some((100, Some(199))));
        assert_eq!(h("bytes 100-199/*"), Some((100, Some(199))));
        assert_eq!(h("bytes */200"), None);
        assert_eq!(h("bytes 5-1/200"), None);
        assert_eq!(h("items 1-2/3"), None);
    }

    #[test]
    fn media_types() {
        assert_eq!(
            media_type(Some(MEDIA_TYPE_DOCKER_MANIFEST), b"{}"),
            MEDIA_TYPE_DOCKER_MANIFEST
        );
        assert_eq!(
            media_type(
                Some("application/json"),
                br#"{"mediaType":"application/vnd.oci.image.index.v1+json"}"#
            ),
            MEDIA_TYPE_OCI_INDEX
        );
        assert_eq!(
            media_type(None, br#"{"manifests":[]}"#),
            MEDIA_TYPE_OCI_INDEX
        );
        assert_eq!(
            media_type(None, br#"{"config":{}}"#),
            MEDIA_TYPE_OCI_MANIFEST
        );
        assert_eq!(media_type(Some("text/plain"), b"x"), "text/plain");
        assert_eq!(media_type(None, b"x"), "application/octet-stream");
    }

    #[test]
    fn registry_names_are_checked() {
        let d = Digest::of_bytes(b"");
        assert!(checked_name("127.0.0.1:5000", "busybox", &d).is_ok());
        assert!(checked_name("docker.io", "library/busybox", &d).is_ok());
        for (reg, repo) in [
            ("..", "x"),
            ("a/b", "x"),
            ("host.example", "../x"),
            ("host.example", "UPPER"),
            ("docker.io", "busybox"), // not normalized: docker.io/library/busybox
            ("", "x"),
        ] {
            assert!(checked_name(reg, repo, &d).is_err(), "{reg} {repo}");
        }
    }

    #[test]
    fn redacts_signed_urls() {
        let u = Url::parse("https://user:pw@cdn.example/blob?X-Amz-Signature=secret#f").unwrap();
        assert_eq!(redact_url(&u), "https://cdn.example/blob");
    }
}
