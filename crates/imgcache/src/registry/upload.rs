//! The write side of the distribution protocol, what `push` sends: `HEAD` to skip what the
//! destination already has, cross-repository mounts (`?mount=&from=`), monolithic uploads for
//! small blobs, chunked ones for large blobs (resumed from the registry's own count after a
//! broken connection), and manifests by digest or tag. Every answer that names a digest is
//! checked against the digest sent: a registry that stored something else is an error, never
//! a success.

use std::path::PathBuf;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};

use super::client::{Access, Request};
use super::http::{checked_name, header_value};
use super::transport::CallBody;
use super::{
    MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST, RegistryClient,
};
use crate::digest::{Digest, truncate_for_message};
use crate::error::Error;

/// Blobs up to this size go in one `PUT`; larger ones in `PATCH` chunks that can be resumed.
pub const MONOLITHIC_MAX: u64 = 16 * 1024 * 1024;
/// The size of one `PATCH` of a chunked upload.
pub const CHUNK_SIZE: u64 = 64 * 1024 * 1024;
/// Attempts at one blob after broken connections (each resumes where the registry stopped).
const UPLOAD_ATTEMPTS: u32 = 5;

/// A blob to upload: its digest, size, and the (verified, read-only) file holding it.
#[derive(Debug, Clone)]
pub struct UploadBlob {
    pub digest: Digest,
    pub size: u64,
    pub path: PathBuf,
}

/// What pushing one blob took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobPush {
    /// The destination already had it (`HEAD`).
    Present,
    /// Mounted from another repository of the same registry: no bytes sent.
    Mounted { from: String },
    /// Uploaded: the bytes sent (more than the size when a chunk was sent again).
    Uploaded { bytes: u64 },
}

/// A failed upload step: `Broken` may be resumed (the connection broke, the registry lost
/// count); `Fatal` may not (the registry refused what was sent).
enum Step {
    Broken(Error),
    Fatal(Error),
}

impl From<Error> for Step {
    fn from(e: Error) -> Self {
        match e {
            e @ Error::Registry { .. } => Step::Broken(e),
            e => Step::Fatal(e),
        }
    }
}

impl RegistryClient {
    /// `HEAD /v2/<repo>/blobs/<digest>` at a push destination: the size it holds, or `None`.
    pub async fn blob_size_at(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, Error> {
        let name = checked_name(registry, repository, digest)?;
        let path = format!("/v2/{repository}/blobs/{digest}");
        let (resp, ep) = self
            .request(registry, repository, push_req(Method::HEAD, &path, None))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(resp.content_length().unwrap_or(0))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.status_error(&ep, resp, &format!("blob {name}")).await),
        }
    }

    /// `HEAD /v2/<repo>/manifests/<tag or digest>` at a push destination: the digest it
    /// holds there (`Docker-Content-Digest`), or `None` when it has nothing (or does not say).
    pub async fn manifest_digest_at(
        &self,
        registry: &str,
        repository: &str,
        target: &str,
    ) -> Result<Option<Digest>, Error> {
        let path = format!("/v2/{repository}/manifests/{target}");
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, header_value(&accept_manifests()));
        let (resp, ep) = self
            .request(
                registry,
                repository,
                push_req(Method::HEAD, &path, None).headers(headers),
            )
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(header_digest(&resp)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self
                .status_error(
                    &ep,
                    resp,
                    &format!("manifest {registry}/{repository}:{target}"),
                )
                .await),
        }
    }

    /// Puts one blob into `repository`: nothing when it is there, a mount from `mount_from`
    /// when that works, else an upload of the file. `sent` is told every byte sent.
    pub async fn push_blob(
        &self,
        registry: &str,
        repository: &str,
        blob: &UploadBlob,
        mount_from: Option<&str>,
        sent: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<BlobPush, Error> {
        self.push_blob_inner(registry, repository, blob, mount_from, sent)
            .await
            .map_err(|e| self.scrub_error(registry, e))
    }

    async fn push_blob_inner(
        &self,
        registry: &str,
        repository: &str,
        blob: &UploadBlob,
        mount_from: Option<&str>,
        sent: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<BlobPush, Error> {
        let name = checked_name(registry, repository, &blob.digest)?;
        let present = async || -> Result<bool, Error> {
            Ok(self
                .blob_size_at(registry, repository, &blob.digest)
                .await?
                .is_some())
        };
        // With a repository to mount from, the mount is asked at once: it answers 201 whether
        // the blob was there or not, so a HEAD first would only double the requests.
        if mount_from.is_none() && present().await? {
            return Ok(BlobPush::Present);
        }
        let mut bytes = 0;
        let mut location = match self
            .start_upload(registry, repository, &blob.digest, mount_from, &name)
            .await?
        {
            Started::Mounted(from) => return Ok(BlobPush::Mounted { from }),
            Started::Session(_) if mount_from.is_some() && present().await? => {
                return Ok(BlobPush::Present);
            }
            Started::Session(url) => url,
        };
        // How much of the blob the registry holds in this session.
        let mut offset = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let step = if blob.size <= MONOLITHIC_MAX && offset == 0 {
                self.put_whole(registry, repository, blob, &location, &mut bytes, &name)
                    .await
            } else {
                self.put_chunks(
                    registry,
                    repository,
                    blob,
                    &mut location,
                    &mut offset,
                    &mut bytes,
                    &name,
                    sent,
                )
                .await
            };
            match step {
                Ok(()) => {
                    if blob.size <= MONOLITHIC_MAX {
                        sent(blob.size);
                    }
                    return Ok(BlobPush::Uploaded { bytes });
                }
                Err(Step::Fatal(e)) => return Err(e),
                Err(Step::Broken(e)) if attempt < UPLOAD_ATTEMPTS => {
                    tracing::warn!("{e}; resuming the upload of {name} (attempt {attempt})");
                    tokio::time::sleep(super::retry::backoff(attempt - 1, None)).await;
                    match self.upload_status(registry, repository, &location).await {
                        Ok(Some((at, url))) if at <= blob.size => {
                            offset = at;
                            location = url;
                        }
                        _ => {
                            // The session is gone. Its closing PUT may have gone through with
                            // only the answer lost (the transport's retry of it then finds no
                            // session): the registry holds the blob, checked against its
                            // digest. Else start again.
                            if self
                                .blob_size_at(registry, repository, &blob.digest)
                                .await?
                                .is_some()
                            {
                                // It went up whole at least once.
                                return Ok(BlobPush::Uploaded {
                                    bytes: bytes.max(blob.size),
                                });
                            }
                            offset = 0;
                            match self
                                .start_upload(registry, repository, &blob.digest, None, &name)
                                .await?
                            {
                                Started::Mounted(from) => return Ok(BlobPush::Mounted { from }),
                                Started::Session(url) => location = url,
                            }
                        }
                    }
                }
                Err(Step::Broken(e)) => return Err(e),
            }
        }
    }

    /// `PUT /v2/<repo>/manifests/<tag or digest>` with the bytes as stored. The registry's
    /// `Docker-Content-Digest` must be their digest: a registry that converted or lost them
    /// is an error. True when the registry indexed the manifest's `subject` for its referrers
    /// API (it answers `OCI-Subject`, OCI distribution 1.1).
    pub async fn put_manifest(
        &self,
        registry: &str,
        repository: &str,
        target: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<bool, Error> {
        let digest = Digest::of_bytes(bytes);
        let what = format!("manifest {registry}/{repository}:{target}");
        let path = format!("/v2/{repository}/manifests/{target}");
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, header_value(media_type));
        let body = CallBody::Bytes(bytes::Bytes::copy_from_slice(bytes));
        let (resp, ep) = self
            .request(
                registry,
                repository,
                push_req(Method::PUT, &path, Some(body)).headers(headers),
            )
            .await
            .map_err(|e| self.scrub_error(registry, e))?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(self.status_error(&ep, resp, &what).await);
        }
        check_digest(&resp, &digest, &what)?;
        Ok(resp.headers().contains_key("oci-subject"))
    }

    /// `POST .../blobs/uploads/` (with `?mount=&from=`): a mount done, or an upload session.
    async fn start_upload(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        mount_from: Option<&str>,
        name: &str,
    ) -> Result<Started, Error> {
        let mut path = format!("/v2/{repository}/blobs/uploads/");
        if let Some(from) = mount_from {
            path.push_str(&format!("?mount={digest}&from={from}"));
        }
        let req = Request::new(Method::POST, &path)
            .access(Access::Push { mount_from })
            .body(CallBody::Bytes(bytes::Bytes::new()));
        let (resp, ep) = self.request(registry, repository, req).await?;
        match resp.status() {
            StatusCode::CREATED if mount_from.is_some() => {
                check_digest(&resp, digest, &format!("blob {name} (mounted)"))?;
                Ok(Started::Mounted(mount_from.unwrap_or_default().to_owned()))
            }
            StatusCode::ACCEPTED => Ok(Started::Session(location(&resp)?)),
            _ => Err(self
                .status_error(&ep, resp, &format!("starting the upload of {name}"))
                .await),
        }
    }

    /// The whole blob in one `PUT <location>?digest=`.
    async fn put_whole(
        &self,
        registry: &str,
        repository: &str,
        blob: &UploadBlob,
        location: &Url,
        bytes: &mut u64,
        name: &str,
    ) -> Result<(), Step> {
        let body = CallBody::File {
            path: blob.path.clone(),
            offset: 0,
            len: blob.size,
        };
        self.finish(
            registry,
            repository,
            blob,
            location,
            Some(body),
            bytes,
            name,
        )
        .await
    }

    /// `PATCH` chunks from `offset` (each `Content-Range: start-end`, the registry's `Range`
    /// answer trusted over our own count), then the closing `PUT ?digest=`.
    #[allow(clippy::too_many_arguments)]
    async fn put_chunks(
        &self,
        registry: &str,
        repository: &str,
        blob: &UploadBlob,
        location: &mut Url,
        offset: &mut u64,
        bytes: &mut u64,
        name: &str,
        sent: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), Step> {
        while *offset < blob.size {
            let len = CHUNK_SIZE.min(blob.size - *offset);
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, header_value("application/octet-stream"));
            headers.insert(
                "content-range",
                header_value(&format!("{}-{}", *offset, *offset + len - 1)),
            );
            let body = CallBody::File {
                path: blob.path.clone(),
                offset: *offset,
                len,
            };
            let req = Request::to_url(Method::PATCH, location.clone())
                .headers(headers)
                .body(body)
                .access(Access::Push { mount_from: None });
            let (resp, ep) = self.request(registry, repository, req).await?;
            *bytes += len;
            match resp.status() {
                StatusCode::ACCEPTED | StatusCode::NO_CONTENT | StatusCode::CREATED => {}
                StatusCode::NOT_FOUND => {
                    return Err(Step::Broken(
                        self.status_error(&ep, resp, &session_lost(name)).await,
                    ));
                }
                StatusCode::RANGE_NOT_SATISFIABLE => {
                    return Err(Step::Broken(Error::Registry {
                        registry: registry.to_owned(),
                        message: format!("{name}: the registry refused the chunk at byte {offset}"),
                    }));
                }
                _ => {
                    return Err(Step::Fatal(
                        self.status_error(&ep, resp, &format!("uploading {name}"))
                            .await,
                    ));
                }
            }
            let next = match received_end(&resp) {
                Some(0) | None => *offset + len,
                Some(n) => n,
            };
            if let Ok(url) = location_of(&resp) {
                *location = url;
            }
            if next <= *offset || next > blob.size {
                return Err(Step::Broken(Error::Registry {
                    registry: registry.to_owned(),
                    message: format!(
                        "{name}: after bytes {}-{} the registry says it holds {next}",
                        *offset,
                        *offset + len - 1
                    ),
                }));
            }
            sent(next - *offset);
            *offset = next;
        }
        self.finish(registry, repository, blob, location, None, bytes, name)
            .await
    }

    /// `PUT <location>?digest=` (with the last bytes, or none): the registry checks the digest
    /// and makes the blob visible; its answer must name the digest sent. `bytes` counts the
    /// body once an answer came (whatever it says), as a `PATCH` is counted.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        registry: &str,
        repository: &str,
        blob: &UploadBlob,
        location: &Url,
        body: Option<CallBody>,
        bytes: &mut u64,
        name: &str,
    ) -> Result<(), Step> {
        let len = body.as_ref().map_or(0, CallBody::len);
        let mut url = location.clone();
        url.query_pairs_mut()
            .append_pair("digest", &blob.digest.to_string());
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, header_value("application/octet-stream"));
        let req = Request::to_url(Method::PUT, url)
            .headers(headers)
            .body(body.unwrap_or(CallBody::Bytes(bytes::Bytes::new())))
            .access(Access::Push { mount_from: None });
        let (resp, ep) = self.request(registry, repository, req).await?;
        *bytes += len;
        match resp.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::OK => {
                check_digest(&resp, &blob.digest, &format!("blob {name}")).map_err(Step::Fatal)
            }
            StatusCode::NOT_FOUND => Err(Step::Broken(
                self.status_error(&ep, resp, &session_lost(name)).await,
            )),
            StatusCode::RANGE_NOT_SATISFIABLE => Err(Step::Broken(Error::Registry {
                registry: registry.to_owned(),
                message: format!("{name}: the registry lost count of the upload"),
            })),
            _ => Err(Step::Fatal(
                self.status_error(&ep, resp, &format!("uploading {name}"))
                    .await,
            )),
        }
    }

    /// `GET <location>`: how many bytes the session holds, and where to send the rest.
    /// `None` when the session is gone.
    async fn upload_status(
        &self,
        registry: &str,
        repository: &str,
        location: &Url,
    ) -> Result<Option<(u64, Url)>, Error> {
        let req = Request::to_url(Method::GET, location.clone())
            .access(Access::Push { mount_from: None });
        let (resp, _) = self.request(registry, repository, req).await?;
        if !resp.status().is_success() {
            return Ok(None);
        }
        let url = location_of(&resp).unwrap_or_else(|_| location.clone());
        Ok(Some((received_end(&resp).unwrap_or(0), url)))
    }
}

/// What a `404` to a request of an upload session means: the registry no longer has the
/// session. Distribution answers so (`BLOB_UPLOAD_INVALID`, and cancels the session) to any
/// request whose `_state` offset is not what it holds, which is what a retry of a `PATCH` or
/// `PUT` that broke mid-body (part of it stored) or lost its answer sends; and
/// (`BLOB_UPLOAD_UNKNOWN`) to a retry of a closing `PUT` that went through. Either way the
/// upload is resumed (the blob may be there) or started again, not given up.
fn session_lost(name: &str) -> String {
    format!("uploading {name}: the registry lost the upload session")
}

enum Started {
    Mounted(String),
    Session(Url),
}

fn push_req<'a>(method: Method, path: &str, body: Option<CallBody>) -> Request<'a> {
    let req = Request::new(method, path).access(Access::Push { mount_from: None });
    match body {
        Some(b) => req.body(b),
        None => req,
    }
}

fn accept_manifests() -> String {
    [
        MEDIA_TYPE_OCI_INDEX,
        MEDIA_TYPE_OCI_MANIFEST,
        MEDIA_TYPE_DOCKER_LIST,
        MEDIA_TYPE_DOCKER_MANIFEST,
    ]
    .join(", ")
}

fn header_digest(resp: &Response) -> Option<Digest> {
    resp.headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Digest::parse(v.trim()).ok())
}

/// A `Docker-Content-Digest` that is not the digest sent means the registry holds something
/// else; a missing one is accepted (not every registry sends it).
fn check_digest(resp: &Response, sent: &Digest, what: &str) -> Result<(), Error> {
    match resp.headers().get("docker-content-digest") {
        None => Ok(()),
        Some(v) => match v.to_str().ok().map(str::trim) {
            Some(v) if v == sent.to_string() => Ok(()),
            other => Err(Error::DigestMismatch {
                what: format!("{what}: the destination's Docker-Content-Digest"),
                expected: sent.to_string(),
                found: truncate_for_message(other.unwrap_or("(not text)")),
            }),
        },
    }
}

/// The upload location an answer gives (relative ones resolved against the request URL).
fn location_of(resp: &Response) -> Result<Url, String> {
    let loc = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| "no Location header".to_owned())?;
    let url = resp
        .url()
        .join(loc)
        .map_err(|e| format!("Location {:?}: {e}", truncate_for_message(loc)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "Location {:?} is not http(s)",
            truncate_for_message(loc)
        ));
    }
    Ok(url)
}

fn location(resp: &Response) -> Result<Url, Error> {
    location_of(resp).map_err(|message| Error::Registry {
        registry: resp.url().host_str().unwrap_or("").to_owned(),
        message: format!("starting an upload: {message}"),
    })
}

/// The count of bytes held that `Range: 0-<last>` in an upload answer gives. Distribution
/// says `0-0` for an empty session as well as for one byte: read as empty (at worst one byte
/// is sent again and refused, and the count asked again).
fn received_end(resp: &Response) -> Option<u64> {
    let v = resp.headers().get("range")?.to_str().ok()?.trim();
    let v = v.strip_prefix("bytes=").unwrap_or(v);
    let (start, end) = v.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    match (start, end) {
        (0, 0) => Some(0),
        (0, end) => Some(end + 1),
        _ => None,
    }
}
