//! `imgcache serve`: the registry protocol, read-only, over the cache.
//!
//! Every engine gets images through the distribution API, with their registry digest: manifests
//! and indexes are served exactly as the registry served them (stored media type,
//! `Docker-Content-Digest`, `ETag`), blobs as stored (with ranges). What the cache lacks is
//! pulled through, from the mirrors the machine's configuration names and then the origin
//! registry ([`crate::cache::Cache::serve_manifest`]), verified before it is served. Set
//! [`crate::registry::RegistryOptions::serve_id`] to an [`instance_id`], so that a mirror
//! configuration naming this serve itself sends no request round in a loop.
//!
//! The rooms:
//!
//! - `route.rs`: a request path, checked against the distribution grammar;
//! - `resolve.rs`: which cached repository a path means (`?ns=`, a registry prefix, or the
//!   repository alone);
//! - `respond.rs`: the answers, their headers, ranges and error bodies;
//! - `config.rs`: the engine configuration `--print-config` prints;
//! - `idle.rs`: the idle limit of a connection;
//! - this file: listening, connection limits, TLS, clean shutdown.
//!
//! ```no_run
//! # async fn demo() -> Result<(), imgcache::Error> {
//! use std::sync::Arc;
//! use imgcache::serve::{ServeOptions, Server};
//!
//! let cache = Arc::new(imgcache::Cache::open(&imgcache::cache::default_root())?);
//! let server = Server::bind(cache, ServeOptions::default()).await?;
//! println!("listening on {}", server.url());
//! server.run(async { tokio::signal::ctrl_c().await.ok(); }).await
//! # }
//! ```

mod config;
mod idle;
mod resolve;
mod respond;
mod route;

pub use config::{ConfigFile, EngineConfig, print_config};
pub use resolve::{Unresolved, resolve};
pub use route::{Route, RouteError};

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::cache::Cache;
use crate::error::Error;

/// How `serve` listens.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Default `127.0.0.1:5050`; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Answer from the cache only; never ask an origin registry.
    pub offline: bool,
    /// A PEM certificate chain and its key: serve https.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// A connection on which nothing moved for this long is closed (a stalled client).
    pub idle_timeout: Duration,
    /// The whole request head must arrive within this (slow-loris).
    pub header_timeout: Duration,
    /// Responses still running at shutdown get this long, then are cut.
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5050)),
            offline: false,
            tls: None,
            max_connections: 512,
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// An ID no other serve running now has (process ID and start time), for
/// [`crate::registry::RegistryOptions::serve_id`].
pub fn instance_id() -> String {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{}", std::process::id(), started.as_nanos())
}

/// Request heads (start line and headers) larger than this get 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;

/// A bound listener, ready to [`Server::run`].
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<respond::State>,
    opts: ServeOptions,
}

impl Server {
    /// Binds the address (reading the TLS files first, if any). A non-loopback address is
    /// logged: anyone who reaches it can read the cache.
    pub async fn bind(cache: Arc<Cache>, opts: ServeOptions) -> Result<Server, Error> {
        let tls = match &opts.tls {
            Some((cert, key)) => Some(tls_acceptor(cert, key)?),
            None => None,
        };
        let listener = TcpListener::bind(opts.listen)
            .await
            .map_err(|e| Error::io(format!("listen address {}", opts.listen), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io(format!("listen address {}", opts.listen), e))?;
        if !addr.ip().is_loopback() {
            tracing::warn!(
                "serving on {addr}, not a loopback address: anyone who can reach it can read the cache"
            );
        }
        Ok(Server {
            listener,
            addr,
            tls,
            state: Arc::new(respond::State::new(cache, opts.offline)),
            opts,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR:PORT` (or https).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Serves until `shutdown` completes; then stops accepting, lets responses in flight
    /// finish for the grace period and cuts the rest.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let graceful = GracefulShutdown::new();
        let slots = Arc::new(Semaphore::new(self.opts.max_connections));
        tokio::pin!(shutdown);
        loop {
            let slot = tokio::select! {
                s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
                () = &mut shutdown => break,
            };
            let stream = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, most likely: wait, do not spin.
                        tracing::warn!("accepting a connection on {}: {e}", self.addr);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            stream.set_nodelay(true).ok();
            let io = idle::Idle::new(stream, self.opts.idle_timeout);
            let state = self.state.clone();
            let watcher = graceful.watcher();
            let tls = self.tls.clone();
            let header_timeout = self.opts.header_timeout;
            tokio::spawn(async move {
                let _slot = slot;
                let service = service_fn(move |req| respond::handle(state.clone(), req));
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    // max_buf_size alone is checked only while a head is incomplete: a head
                    // that arrives in a few large reads got past it (up to about 110 KiB).
                    .max_header_size(MAX_HEAD_BYTES)
                    .max_buf_size(MAX_HEAD_BYTES + 16 * 1024)
                    .max_headers(MAX_HEADERS);
                let result = match tls {
                    None => {
                        let conn = http.serve_connection(TokioIo::new(io), service);
                        watcher.watch(conn).await
                    }
                    Some(acceptor) => {
                        match tokio::time::timeout(header_timeout, acceptor.accept(io)).await {
                            Ok(Ok(stream)) => {
                                let conn = http.serve_connection(TokioIo::new(stream), service);
                                watcher.watch(conn).await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!("TLS handshake: {e}");
                                return;
                            }
                            Err(_) => return,
                        }
                    }
                };
                if let Err(e) = result {
                    tracing::debug!("connection closed: {e}");
                }
            });
        }
        drop(self.listener);
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(self.opts.shutdown_grace) => {
                tracing::warn!("shutting down: cut the responses still running after {} s", self.opts.shutdown_grace.as_secs());
            }
        }
        Ok(())
    }
}

fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> Result<tokio_rustls::TlsAcceptor, Error> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &PathBuf, e: &dyn std::fmt::Display| {
        Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        )
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, &e))?;
    if chain.is_empty() {
        return Err(bad(cert, &"no PEM certificate in it"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| bad(key, &e))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
