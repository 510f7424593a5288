//! How a request reaches a registry: the endpoint of each registry (Docker Hub's real host,
//! https or, where allowed, plain http decided by a probe on first use; a mirror configuration's
//! `http://` host is plain http without a probe, its `insecure` host is probed like a loopback
//! one; its HTTP client, with the proxy the environment names for it, is made in `tls`, whose
//! docs say which proxy a registry goes through and why), sending one exchange
//! with retries (408/429/5xx, connection errors, `Retry-After`) and redirects (`Authorization`
//! only to the original origin), errors for requests that got no answer, and size-capped body
//! reads.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode, Url};

use super::client::{RegistryClient, lock};
use super::http::{
    base_url, check_registry, describe_reqwest_error, is_loopback_host, is_retryable_error,
    is_tls_error, redact_url, same_origin,
};
use super::proxy::{ProxyEnv, Route};
use super::retry;
use crate::digest::truncate_for_message;
use crate::error::Error;

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";
const MAX_REDIRECTS: usize = 10;

pub(super) struct Endpoint {
    /// The registry as named in references (`docker.io`, `127.0.0.1:5000`).
    pub(super) registry: String,
    /// `https://host[:port]/` or, after fallback, `http://...`.
    pub(super) base: Url,
    http: reqwest::Client,
}

/// One HTTP exchange as the retry and redirect loop sees it.
pub(super) struct Call {
    pub(super) method: Method,
    pub(super) url: Url,
    pub(super) headers: HeaderMap,
    /// Sent only to `url`'s origin: never across a redirect to another host.
    pub(super) auth: Option<HeaderValue>,
    pub(super) form: Option<Vec<(&'static str, String)>>,
    /// Sent with `Content-Length`; made again for every attempt.
    pub(super) body: Option<CallBody>,
    /// Limit for the whole exchange (small bodies); blobs only have the per-read timeout.
    pub(super) timeout: Option<Duration>,
}

/// A request body that can be sent again (after a retry, a redirect or a 401 challenge).
#[derive(Debug, Clone)]
pub(super) enum CallBody {
    Bytes(bytes::Bytes),
    /// `len` bytes of a file from `offset`, read as the request goes out: a blob being
    /// uploaded is never held in memory whole.
    File {
        path: std::path::PathBuf,
        offset: u64,
        len: u64,
    },
}

/// Bytes read from a file per body chunk.
const FILE_BODY_CHUNK: usize = 256 * 1024;

impl CallBody {
    pub(super) fn len(&self) -> u64 {
        match self {
            CallBody::Bytes(b) => b.len() as u64,
            CallBody::File { len, .. } => *len,
        }
    }

    async fn to_body(&self) -> std::io::Result<reqwest::Body> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        match self {
            CallBody::Bytes(b) => Ok(reqwest::Body::from(b.clone())),
            CallBody::File { path, offset, len } => {
                let mut file = tokio::fs::File::open(path).await?;
                file.seek(std::io::SeekFrom::Start(*offset)).await?;
                let stream =
                    futures_util::stream::try_unfold((file, *len), |(mut file, left)| async move {
                        if left == 0 {
                            return Ok(None);
                        }
                        let mut buf = vec![0; FILE_BODY_CHUNK.min(left as usize)];
                        let n = file.read(&mut buf).await?;
                        if n == 0 {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "the file ended before the bytes to upload",
                            ));
                        }
                        buf.truncate(n);
                        Ok(Some((bytes::Bytes::from(buf), (file, left - n as u64))))
                    });
                Ok(reqwest::Body::wrap_stream(stream))
            }
        }
    }
}

enum SendError {
    Http(reqwest::Error),
    Redirect(String),
    Body(std::io::Error),
}

impl RegistryClient {
    /// The endpoint of `registry`, deciding https or http on first use.
    pub(super) async fn endpoint(&self, registry: &str) -> Result<Arc<Endpoint>, Error> {
        if let Some(ep) = lock(&self.inner.endpoints).get(registry) {
            return Ok(ep.clone());
        }
        check_registry(registry)?;
        let host = if registry == DOCKER_HUB {
            DOCKER_HUB_ENDPOINT
        } else {
            registry
        };
        // Proxies as the environment says (tls.rs documents the rules), read per registry.
        let proxies = ProxyEnv::from_env().map_err(|message| Error::Registry {
            registry: registry.to_owned(),
            message,
        })?;
        let settings = self.host_settings(registry, host);
        let http = self.http_client(registry, host, &proxies)?;
        let https_base = base_url("https", host, registry)?;
        let fallback = self.inner.opts.insecure || settings.allow_http || is_loopback_host(host);
        let base = if settings.force_http {
            tracing::debug!(registry, "configured as an http:// host: plain http only");
            base_url("http", host, registry)?
        } else if fallback {
            self.probe(registry, host, &http, https_base).await?
        } else {
            https_base
        };
        match proxies.route(&base) {
            Route::Proxy(proxy, var) if base.scheme() == "http" => tracing::warn!(
                registry,
                proxy,
                "plain-http registry reached through the proxy of {var}: the proxy sees its requests whole, credentials included; list the registry in NO_PROXY or serve it over https to keep them from the proxy"
            ),
            Route::Proxy(proxy, var) => {
                tracing::debug!(registry, proxy, var, "through the proxy (CONNECT tunnel)")
            }
            Route::Direct(why) => tracing::debug!(registry, why, "not proxied"),
        }
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

    /// Sends `call`, following redirects and retrying 408/429/5xx answers and connection errors.
    pub(super) async fn send(&self, ep: &Endpoint, call: &Call) -> Result<Response, Error> {
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
                    // A blob body cut off may have reached the registry in part: sent again to
                    // the same upload it can only be refused. `upload` asks the registry what
                    // it holds and goes on from there instead.
                    let uploading = matches!(call.body, Some(CallBody::File { .. }));
                    if is_tls_error(&e) || !is_retryable_error(&e) || attempt >= max || uploading {
                        let url = e.url().cloned().unwrap_or_else(|| call.url.clone());
                        return Err(self.transport_error(&ep.registry, &url, &e, attempt + 1));
                    }
                    (describe_reqwest_error(&e), None)
                }
                Err(SendError::Body(e)) => {
                    return Err(Error::Registry {
                        registry: ep.registry.clone(),
                        message: format!(
                            "{} {}: reading the bytes to send: {e}",
                            call.method,
                            redact_url(&call.url)
                        ),
                    });
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
        if let Some(body) = &call.body {
            rb = rb
                .header(reqwest::header::CONTENT_LENGTH, body.len())
                .body(body.to_body().await.map_err(SendError::Body)?);
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
pub(super) async fn read_capped(
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
