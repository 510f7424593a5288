//! The registry client: fetches manifests and blobs over the OCI distribution protocol.
//!
//! - Endpoints: `docker.io` is `https://registry-1.docker.io`; every other registry is
//!   `https://<host[:port]>`. Loopback registries (`127.0.0.0/8`, `::1`, `localhost`) and, with
//!   [`RegistryOptions::insecure`], every registry, fall back to plain http when the port does
//!   not speak TLS, as Docker does.
//! - Trust: the system roots, [`RegistryOptions::ca_certs`], and `<certs_dir>/<host[:port]>/*.crt`
//!   for that registry only.
//! - Auth: anonymous first; on `401` the `WWW-Authenticate` challenge decides: `Basic` sends the
//!   credentials, `Bearer` fetches a token (cached per registry and repository until it expires).
//!   Credentials come from [`RegistryOptions::creds`], else from the Docker/Podman auth files and
//!   credential helpers ([`RegistryOptions::auth_files`]).
//! - Resilience: `408`, `429` and `5xx` answers and connection errors are retried with exponential
//!   backoff and jitter, honouring `Retry-After`.
//!
//! Credentials never appear in an error, a log line or a `Debug` output.

mod auth;
mod client;
mod http;
pub mod mirrors;
mod proxy;
mod retry;
mod signatures;
#[cfg(test)]
mod tests;
mod tls;
mod transport;
mod upload;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use client::RegistryClient;
pub use signatures::MAX_REFERRERS;
pub use upload::{BlobPush, CHUNK_SIZE, MONOLITHIC_MAX, UploadBlob};

/// True for `localhost`, `127.0.0.0/8` and `::1` (with or without a port): registries that
/// may be reached over plain http.
pub fn http_is_loopback(host_port: &str) -> bool {
    http::is_loopback_host(host_port)
}

/// The media type a manifest or index declares (its `mediaType`, else its shape): what a
/// stored document is served as.
pub fn document_media_type(bytes: &[u8]) -> String {
    http::media_type(None, bytes)
}

use crate::digest::Digest;
use crate::error::Error;

/// `application/vnd.docker.distribution.manifest.v2+json`
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// `application/vnd.docker.distribution.manifest.list.v2+json`
pub const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// `application/vnd.oci.image.manifest.v1+json`
pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.oci.image.index.v1+json`
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The largest manifest or index accepted (distribution itself refuses larger ones).
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// A user name and password (or, with the user name `<token>`, an identity token).
///
/// `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    /// The user name Docker's credential helpers use to mark an identity (refresh) token.
    pub const IDENTITY_TOKEN_USER: &'static str = "<token>";

    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Parses `USER:PASSWORD` as given to `--creds` (the password may contain `:`). `None` when
    /// there is no `:` or the user name is empty; the caller's message must not echo the text.
    pub fn parse(text: &str) -> Option<Self> {
        let (user, pass) = text.split_once(':')?;
        (!user.is_empty()).then(|| Self::new(user, pass))
    }

    /// True when this is an identity token (a refresh token for the registry's token server).
    pub fn is_identity_token(&self) -> bool {
        self.username == Self::IDENTITY_TOKEN_USER
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:<redacted>", self.username)
    }
}

/// How to reach and authenticate to registries. [`RegistryOptions::from_env`] gives the defaults.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Allow plain http, and TLS without certificate verification, for every registry.
    pub insecure: bool,
    /// Extra trusted CA certificates (PEM files, possibly bundles), for every registry.
    pub ca_certs: Vec<PathBuf>,
    /// Directories holding `<host[:port]>/*.crt`: CAs trusted for that registry only.
    pub certs_dirs: Vec<PathBuf>,
    /// Explicit credentials (`--creds`): used for every registry, before any auth file.
    pub creds: Option<Credentials>,
    /// Docker `config.json` / containers `auth.json` files, searched in order.
    pub auth_files: Vec<PathBuf>,
    /// Limit for a whole small request (manifest, token), and for each read of a blob body.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Retries on 408/429/5xx answers and connection errors (0: one attempt only).
    pub max_retries: u32,
    /// Settings of one host (`host[:port]`, as endpoints are keyed) from a mirror configuration:
    /// they apply to that host only, on top of the ones above.
    pub hosts: HashMap<String, HostSettings>,
    /// Set in a `serve`'s client: its requests say `serve/<ID>` in their User-Agent, so that a
    /// request reaching that same serve (a mirror configuration naming it, as `serve
    /// --print-config` writes for the engines of its own machine) is told "unknown" at once
    /// instead of being pulled through again.
    pub serve_id: Option<String>,
}

/// How to reach one host, as a mirror configuration says (registries.conf `insecure`, a
/// containerd hosts.toml `http://` host, `skip_verify`, `ca`, `client`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSettings {
    /// Plain http is allowed for this host (probed like a loopback registry).
    pub allow_http: bool,
    /// Plain http only: the host was configured with an `http://` URL.
    pub force_http: bool,
    /// Its TLS certificate is not verified.
    pub skip_verify: bool,
    /// Extra CA certificates (PEM) trusted for this host only.
    pub ca_certs: Vec<PathBuf>,
    /// Client certificates for mutual TLS: (certificate chain PEM, private key PEM).
    pub client_certs: Vec<(PathBuf, PathBuf)>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            insecure: false,
            ca_certs: Vec::new(),
            certs_dirs: Vec::new(),
            creds: None,
            auth_files: Vec::new(),
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(15),
            max_retries: 4,
            hosts: HashMap::new(),
            serve_id: None,
        }
    }
}

impl RegistryOptions {
    /// The defaults, with the certificate directories and auth files Docker and Podman use:
    ///
    /// - certs: `/etc/docker/certs.d`, `/etc/containers/certs.d`, `~/.docker/certs.d`
    /// - auth files: `$REGISTRY_AUTH_FILE` (an explicit choice, so first), `$DOCKER_CONFIG/config.json`
    ///   else `~/.docker/config.json`, `$XDG_RUNTIME_DIR/containers/auth.json`,
    ///   `$XDG_CONFIG_HOME/containers/auth.json` (else `~/.config/containers/auth.json`)
    pub fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let home = var("HOME");
        let mut certs_dirs = vec![
            PathBuf::from("/etc/docker/certs.d"),
            PathBuf::from("/etc/containers/certs.d"),
        ];
        if let Some(h) = &home {
            certs_dirs.push(h.join(".docker/certs.d"));
        }
        let mut auth_files = Vec::new();
        if let Some(f) = var("REGISTRY_AUTH_FILE") {
            auth_files.push(f);
        }
        match (var("DOCKER_CONFIG"), &home) {
            (Some(d), _) => auth_files.push(d.join("config.json")),
            (None, Some(h)) => auth_files.push(h.join(".docker/config.json")),
            (None, None) => {}
        }
        if let Some(d) = var("XDG_RUNTIME_DIR") {
            auth_files.push(d.join("containers/auth.json"));
        }
        match (var("XDG_CONFIG_HOME"), &home) {
            (Some(d), _) => auth_files.push(d.join("containers/auth.json")),
            (None, Some(h)) => auth_files.push(h.join(".config/containers/auth.json")),
            (None, None) => {}
        }
        Self {
            certs_dirs,
            auth_files,
            ..Self::default()
        }
    }
}

/// A manifest or index exactly as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    /// The raw bytes: never re-serialize them, or the digest changes.
    pub bytes: Vec<u8>,
    /// From `Content-Type`, else from the document's `mediaType` (or its shape).
    pub media_type: String,
    /// sha256 of [`FetchedManifest::bytes`]: the distribution digest.
    pub digest: Digest,
}

impl FetchedManifest {
    /// True for a Docker manifest list or an OCI index.
    pub fn is_index(&self) -> bool {
        self.media_type == MEDIA_TYPE_DOCKER_LIST || self.media_type == MEDIA_TYPE_OCI_INDEX
    }
}

/// A blob download in progress: read it with [`BlobResponse::chunk`].
pub struct BlobResponse {
    /// Where the body starts in the blob: the requested offset if the server answered `206` with
    /// a matching `Content-Range`, else 0 (the whole blob follows).
    pub offset: u64,
    /// The body length, when the server said.
    pub length: Option<u64>,
    response: reqwest::Response,
    registry: String,
    what: String,
}

impl BlobResponse {
    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, Error> {
        self.response.chunk().await.map_err(|e| Error::Registry {
            registry: self.registry.clone(),
            message: format!(
                "reading {}: {}",
                self.what,
                http::describe_reqwest_error(&e)
            ),
        })
    }
}

impl fmt::Debug for BlobResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobResponse")
            .field("offset", &self.offset)
            .field("length", &self.length)
            .field("status", &self.response.status().as_u16())
            .field("what", &self.what)
            .finish()
    }
}
