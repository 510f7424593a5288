//! The HTTP client of each registry: TLS trust, client certificates and proxies, plus the
//! settings every request shares (user agent, timeouts, no automatic redirects: `transport`
//! follows them itself).
//!
//! # What a registry's certificate is verified against
//!
//! The certificates trusted for a registry `host[:port]` are, all together:
//!
//! 1. the system roots (loaded with `rustls-native-certs`, which honours `SSL_CERT_FILE` and
//!    `SSL_CERT_DIR`),
//! 2. every `--ca-cert` file ([`RegistryOptions::ca_certs`](super::RegistryOptions::ca_certs)),
//! 3. `<certs_dir>/<host[:port]>/*.crt` of every certs dir (Docker's and Podman's `certs.d`),
//! 4. the `ca` files a mirror configuration gives this host
//!    ([`HostSettings::ca_certs`](super::HostSettings::ca_certs)).
//!
//! The chain is verified by webpki as usual. Docker's documentation makes a registry
//! certificate with `openssl req -x509`, which is its own CA (`basicConstraints CA:TRUE`) and the
//! server's at once; webpki refuses any CA certificate as a server's (`CaUsedAsEndEntity`), while
//! Docker, Podman and skopeo (Go's crypto/x509) accept a leaf that is itself a trusted root. So
//! when webpki fails only because the leaf is a CA or its issuer is unknown, the leaf is still
//! accepted if it is byte for byte one of the certificates trusted for this registry, valid now
//! (`notBefore`/`notAfter`), allowed for server authentication (no `extendedKeyUsage`, or one
//! naming `serverAuth`), and valid for the name the registry was given by (its `subjectAltName`:
//! a DNS name or an IP address, as webpki checks it; the subject's CN is never used). A
//! self-signed certificate trusted for another host is refused, and so is a trusted one that
//! names another host. The handshake's signatures are verified with the crypto provider's
//! algorithms in every case.
//!
//! `--insecure` ([`RegistryOptions::insecure`](super::RegistryOptions::insecure)) or a host's
//! `skip_verify` turns verification off for every registry, or that host.
//!
//! # Client certificates (mutual TLS)
//!
//! A mirror configuration's `client` pairs for the host come first, then
//! `<certs_dir>/<host[:port]>/*.cert` with the `*.key` of the same name (Docker's convention), in
//! certs-dir order and file-name order within a dir. The first pair is sent to servers that ask
//! for a client certificate (a debug log names it and any pair left unused). A `.cert` without
//! its `.key`, or a `.key` without its `.cert`, is an error naming both files: Docker refuses
//! them too, and a CA misnamed `.cert` would otherwise be silently ignored.
//!
//! Which proxy a registry is reached through is in `proxy`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::client::RegistryClient;
use super::http::describe_reqwest_error;
use super::proxy::ProxyEnv;
use super::{HostSettings, RegistryOptions};
use crate::error::Error;

const USER_AGENT: &str = concat!("imgcache/", env!("CARGO_PKG_VERSION"));

impl RegistryClient {
    /// The mirror configuration's settings of `registry` (else of `host`, its real endpoint).
    pub(super) fn host_settings(&self, registry: &str, host: &str) -> HostSettings {
        let hosts = &self.inner.opts.hosts;
        hosts
            .get(registry)
            .or_else(|| hosts.get(host))
            .cloned()
            .unwrap_or_default()
    }

    /// The HTTP client of `registry` (reached at `host`): its trust, its client certificate, and
    /// `proxies`.
    pub(super) fn http_client(
        &self,
        registry: &str,
        host: &str,
        proxies: &ProxyEnv,
    ) -> Result<reqwest::Client, Error> {
        let opts = &self.inner.opts;
        let settings = self.host_settings(registry, host);
        let tls = client_tls_config(opts, &settings, registry, host, self.inner.ca_certs.len())?;
        let proxies = Arc::new(proxies.clone());
        let agent = match &opts.serve_id {
            Some(id) => format!("{USER_AGENT} serve/{id}"),
            None => USER_AGENT.to_owned(),
        };
        reqwest::Client::builder()
            .user_agent(agent)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(opts.connect_timeout)
            .read_timeout(opts.timeout)
            .no_proxy()
            .proxy(reqwest::Proxy::custom(move |url| proxies.proxy_for(url)))
            .use_preconfigured_tls(tls)
            .build()
            .map_err(|e| Error::Tls {
                registry: registry.to_owned(),
                message: format!(
                    "cannot set up the HTTP client: {}",
                    describe_reqwest_error(&e)
                ),
            })
    }
}

// ===== Trust =====

/// The certificates of a PEM file (a bundle, possibly), as reqwest takes them.
pub(super) fn read_pem_certs(path: &Path) -> Result<Vec<reqwest::Certificate>, Error> {
    read_pem_ders(path)?
        .iter()
        .map(|der| {
            reqwest::Certificate::from_der(der).map_err(|e| {
                Error::io(
                    path,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            })
        })
        .collect()
}

/// The certificates of a PEM file (a bundle, possibly), DER-encoded; none is an error.
pub(super) fn read_pem_ders(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
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

/// What `<certs_dir>/<host[:port]>/` directories hold for one registry.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct CertsD {
    /// `*.crt`: CAs trusted for this registry only.
    pub(super) cas: Vec<PathBuf>,
    /// `*.cert` with the `*.key` of the same name: client certificates.
    pub(super) pairs: Vec<(PathBuf, PathBuf)>,
}

/// The `certs.d` files of a registry known by `names` (its name, and the host it is reached
/// at when that differs), in `dirs` order, then by `names`, then by file name. A `.cert` without
/// its `.key` (or the reverse) is an error naming both files.
pub(super) fn certs_d(dirs: &[PathBuf], names: &[&str]) -> Result<CertsD, String> {
    let mut out = CertsD::default();
    for dir in dirs {
        for name in names {
            let d = dir.join(name);
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            let mut files: Vec<PathBuf> =
                entries.filter_map(Result::ok).map(|e| e.path()).collect();
            files.sort();
            for f in &files {
                match f.extension().and_then(|x| x.to_str()) {
                    Some("crt") => out.cas.push(f.clone()),
                    Some("cert") => {
                        let key = f.with_extension("key");
                        if !key.is_file() {
                            return Err(format!(
                                "client certificate {} has no key {} beside it (CA certificates are named *.crt)",
                                f.display(),
                                key.display()
                            ));
                        }
                        out.pairs.push((f.clone(), key));
                    }
                    Some("key") => {
                        let cert = f.with_extension("cert");
                        if !cert.is_file() {
                            return Err(format!(
                                "key {} has no client certificate {} beside it",
                                f.display(),
                                cert.display()
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The system's trusted roots, loaded once per process.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(error = %e, "cannot load some system root certificates");
        }
        tracing::debug!(count = found.certs.len(), "system root certificates");
        found.certs
    })
}

/// The rustls configuration of one registry: who is trusted, which client certificate is sent.
fn client_tls_config(
    opts: &RegistryOptions,
    settings: &HostSettings,
    registry: &str,
    host: &str,
    client_ca_certs: usize,
) -> Result<ClientConfig, Error> {
    let tls_error = |message: String| Error::Tls {
        registry: registry.to_owned(),
        message,
    };
    let mut names = vec![registry];
    if host != registry {
        names.push(host);
    }
    let certs_d = certs_d(&opts.certs_dirs, &names).map_err(|message| Error::Registry {
        registry: registry.to_owned(),
        message,
    })?;
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = if opts.insecure || settings.skip_verify {
        tracing::debug!(registry, "TLS certificates are not verified");
        Arc::new(NoVerification(provider.signature_verification_algorithms))
    } else {
        // `--ca-cert` files were parsed when the client was made (`Inner::ca_certs`, which
        // reqwest's type keeps opaque): read again here for their DER.
        tracing::debug!(
            registry,
            ca_cert_certificates = client_ca_certs,
            "--ca-cert"
        );
        let mut trusted: Vec<CertificateDer<'static>> = system_roots().to_vec();
        let files = opts
            .ca_certs
            .iter()
            .chain(&certs_d.cas)
            .chain(&settings.ca_certs);
        for f in files {
            let certs = read_pem_ders(f).map_err(|e| tls_error(e.to_string()))?;
            tracing::debug!(registry, path = %f.display(), count = certs.len(), "trusting certificates");
            trusted.extend(certs);
        }
        Arc::new(RegistryVerifier::new(registry, trusted, provider.clone()))
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let pairs: Vec<&(PathBuf, PathBuf)> =
        settings.client_certs.iter().chain(&certs_d.pairs).collect();
    let mut config = match pairs.split_first() {
        None => builder.with_no_client_auth(),
        Some(((cert, key), rest)) => {
            for (unused, _) in rest {
                tracing::debug!(registry, used = %cert.display(), unused = %unused.display(), "several client certificates: using the first");
            }
            let (chain, key_der) =
                read_client_pair(cert, key).map_err(|message| Error::Registry {
                    registry: registry.to_owned(),
                    message,
                })?;
            tracing::debug!(registry, cert = %cert.display(), key = %key.display(), "client certificate");
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| Error::Registry {
                    registry: registry.to_owned(),
                    message: format!(
                        "client certificate {} with key {}: {e}",
                        cert.display(),
                        key.display()
                    ),
                })?
        }
    };
    // HTTP/1.1 only (reqwest's own configuration would offer h2 too): a TLS 1.3 server checks
    // the client certificate after the handshake, and its refusal (an alert) reaches an HTTP/2
    // request as a bare "channel closed", an HTTP/1.1 one as the alert itself. Registries and
    // the storage they redirect to all speak HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read_client_pair(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = read_pem_ders(cert).map_err(|e| format!("client certificate: {e}"))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "{}: not a PEM private key for the client certificate {} ({e})",
            key.display(),
            cert.display()
        )
    })?;
    Ok((chain, key_der))
}

/// Verification failures of a leaf that is its own trust anchor: why it is refused.
#[derive(Debug)]
enum TrustError {
    /// A self-signed or CA certificate as the server's, and not trusted for this registry.
    NotTrusted { self_signed: bool, ca: bool },
}

impl std::fmt::Display for TrustError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let TrustError::NotTrusted { self_signed, ca } = self;
        let what = match (self_signed, ca) {
            (true, true) => "self-signed (its own CA, CaUsedAsEndEntity)",
            (true, false) => "self-signed",
            (false, _) => "a CA certificate (CaUsedAsEndEntity) that no trusted CA issued",
        };
        write!(
            f,
            "the server's certificate is {what} and is not one of the certificates trusted for this registry"
        )
    }
}

impl std::error::Error for TrustError {}

/// webpki's verification, and the trusted-leaf rule of the module docs when it fails because
/// the leaf is a CA or its issuer is unknown.
#[derive(Debug)]
struct RegistryVerifier {
    registry: String,
    /// `None` when nothing at all is trusted (webpki refuses an empty root store).
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// Every certificate trusted for this registry, DER, for the byte-for-byte comparison.
    trusted: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl RegistryVerifier {
    fn new(
        registry: &str,
        trusted: Vec<CertificateDer<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        let mut roots = RootCertStore::empty();
        for c in &trusted {
            // A trusted certificate webpki cannot use as an anchor (an X.509 v1 one) may still
            // be a leaf that is trusted byte for byte.
            if let Err(e) = roots.add(c.clone()) {
                tracing::debug!(registry, error = %e, "a trusted certificate is not usable as a root");
            }
        }
        let algorithms = provider.signature_verification_algorithms;
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .ok();
        Self {
            registry: registry.to_owned(),
            webpki,
            trusted,
            algorithms,
        }
    }
}

fn is_ca_used_as_end_entity(e: &rustls::Error) -> bool {
    matches!(e, rustls::Error::InvalidCertificate(CertificateError::Other(o))
        if matches!(o.0.downcast_ref::<webpki::Error>(), Some(webpki::Error::CaUsedAsEndEntity)))
}

impl ServerCertVerifier for RegistryVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let err = match &self.webpki {
            Some(v) => {
                match v.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                ) {
                    Ok(ok) => return Ok(ok),
                    Err(e) => e,
                }
            }
            None => CertificateError::UnknownIssuer.into(),
        };
        let ca_leaf = is_ca_used_as_end_entity(&err);
        if !ca_leaf && err != rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) {
            return Err(err);
        }
        if !self
            .trusted
            .iter()
            .any(|t| t.as_ref() == end_entity.as_ref())
        {
            let self_signed = is_self_signed(end_entity);
            if !ca_leaf && !self_signed {
                return Err(err);
            }
            return Err(
                CertificateError::Other(OtherError(Arc::new(TrustError::NotTrusted {
                    self_signed,
                    ca: ca_leaf,
                })))
                .into(),
            );
        }
        check_trusted_leaf(end_entity, server_name, now)?;
        tracing::debug!(registry = %self.registry, "the server's certificate is itself trusted (a self-signed registry certificate)");
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// True when the certificate's issuer is its subject.
fn is_self_signed(der: &CertificateDer<'_>) -> bool {
    use x509_cert::der::Decode;
    x509_cert::Certificate::from_der(der)
        .is_ok_and(|c| c.tbs_certificate().issuer() == c.tbs_certificate().subject())
}

/// A leaf trusted byte for byte: valid now, for server authentication, for `server_name`.
fn check_trusted_leaf(
    der: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    use x509_cert::der::Decode;
    use x509_cert::ext::pkix::ExtendedKeyUsage;
    let cert = x509_cert::Certificate::from_der(der)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let tbs = cert.tbs_certificate();
    let validity = tbs.validity();
    let time = |t: x509_cert::time::Time| UnixTime::since_unix_epoch(t.to_unix_duration());
    let (not_before, not_after) = (time(validity.not_before), time(validity.not_after));
    if now.as_secs() < not_before.as_secs() {
        return Err(CertificateError::NotValidYetContext {
            time: now,
            not_before,
        }
        .into());
    }
    if now.as_secs() > not_after.as_secs() {
        return Err(CertificateError::ExpiredContext {
            time: now,
            not_after,
        }
        .into());
    }
    const SERVER_AUTH: x509_cert::der::asn1::ObjectIdentifier =
        x509_cert::der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
    const ANY_EKU: x509_cert::der::asn1::ObjectIdentifier =
        x509_cert::der::asn1::ObjectIdentifier::new_unwrap("2.5.29.37.0");
    match tbs.get_extension::<ExtendedKeyUsage>() {
        Ok(None) => {}
        Ok(Some((_, eku))) if eku.0.iter().any(|o| *o == SERVER_AUTH || *o == ANY_EKU) => {}
        Ok(Some(_)) => return Err(CertificateError::InvalidPurpose.into()),
        Err(_) => return Err(CertificateError::BadEncoding.into()),
    }
    let ee = webpki::EndEntityCert::try_from(der)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    ee.verify_is_valid_for_subject_name(server_name)
        .map_err(|e| match e {
            webpki::Error::CertNotValidForName(cx) => CertificateError::NotValidForNameContext {
                expected: cx.expected,
                presented: cx.presented,
            },
            _ => CertificateError::NotValidForName,
        })?;
    Ok(())
}

/// `--insecure` / `skip_verify`: any certificate, any handshake signature.
#[derive(Debug)]
struct NoVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A rustls error as a user should read it: the failure, and for the common ones what it means.
pub(super) fn explain_tls_error(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(o)) => {
            if let Some(t) = o.0.downcast_ref::<TrustError>() {
                format!("invalid peer certificate: {t}")
            } else {
                format!("invalid peer certificate: {o}")
            }
        }
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "invalid peer certificate: UnknownIssuer (no trusted CA issued it)".to_owned()
        }
        rustls::Error::AlertReceived(a) => {
            explain_alert(&format!("{a:?}")).unwrap_or_else(|| e.to_string())
        }
        e => e.to_string(),
    }
}

/// `received fatal alert: NAME`, as rustls reports an alert after the handshake (a TLS 1.3
/// server checks the client certificate then), explained for the alerts of client certificates;
/// and the errors of a proxy's `CONNECT` (hyper-util's "tunnel error: ...").
pub(super) fn explain_error_text(text: &str) -> String {
    if let Some(alert) = text
        .strip_prefix("received fatal alert: ")
        .and_then(explain_alert)
    {
        return alert;
    }
    match text {
        "tunnel error: proxy authorization required" => format!(
            "{text} (HTTP 407: the proxy wants a user and password, given in its URL: http://USER:PASSWORD@HOST:PORT)"
        ),
        "tunnel error: unsuccessful" => {
            format!("{text} (the proxy refused the CONNECT to the registry)")
        }
        _ => text.to_owned(),
    }
}

fn explain_alert(name: &str) -> Option<String> {
    let what = match name {
        "CertificateRequired" => "the registry requires a client certificate and got none",
        "BadCertificate"
        | "UnknownCA"
        | "UnsupportedCertificate"
        | "CertificateUnknown"
        | "AccessDenied"
        | "CertificateExpired"
        | "CertificateRevoked" => {
            "the registry refused the client certificate, or wants one and got none"
        }
        _ => return None,
    };
    Some(format!(
        "received fatal alert: {name}: {what} (a client certificate is client.cert with client.key in certs.d/<host:port>/)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LEAF: &str = "-----BEGIN CERTIFICATE-----\nMIIBrDCCAVOgAwIBAgIUQd4gAtD6ih+zdprD6A+/ftvrGjAwCgYIKoZIzj0EAwIw\nHTEbMBkGA1UEAwwSaW1nY2FjaGUgdW5pdCBsZWFmMCAXDTI2MTIwMjA2MDIwMloY\nDzIxMjYxMTA4MDYwMjAyWjAdMRswGQYDVQQDDBJpbWdjYWNoZSB1bml0IGxlYWYw\nWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATxB3sxBZyrvAuGdf5pOWpdlMRrVh+l\nzQLmeDW/kbZd7cac6OwFh+wfnzpMIRV/h954yBjhQeYWl2v1Yf7PdnZfo28wbTAd\nBgNVHQ4EFgQU/dL1WG9LbIaA9uhvDmP+x62Vhn0wHwYDVR0jBBgwFoAU/dL1WG9L\nbIaA9uhvDmP+x62Vhn0wDwYDVR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2Nh\nbGhvc3SHBH8AAAEwCgYIKoZIzj0EAwIDRwAwRAIgB6f/7jPlFNfGM9xaOd2uDcI1\nV8Yn7syOqaVqQeHLz54CIH5fhR19mI/5CYEvTgyR8SMm5birX+GnStIpeA6PGDX3\n-----END CERTIFICATE-----";
    const OTHER: &str = "-----BEGIN CERTIFICATE-----\nMIIBrDCCAVOgAwIBAgIUQ+NQGssXkndc05AUQIhln+bMPPQwCgYIKoZIzj0EAwIw\nHjEcMBoGA1UEAwwTaW1nY2FjaGUgdW5pdCBvdGhlcjAgFw0yNjEyMDIwNjAyMDJa\nGA8yMTI2MTEwODA2MDIwMlowHjEcMBoGA1UEAwwTaW1nY2FjaGUgdW5pdCBvdGhl\ncjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABBj4fk4nFUjis5ZyZBBsMiIrwTFn\n9p3Q97G6YZvE4D8MDB/KUO+R2bwps1jTzQVOGWAPC0+DuUnnHmBqRxXlzSyjbTBr\nMB0GA1UdDgQWBBR6CUj3L/20OIX+RW22VPL/Ao4NITAfBgNVHSMEGDAWgBR6CUj3\nL/20OIX+RW22VPL/Ao4NITAPBgNVHRMBAf8EBTADAQH/MBgGA1UdEQQRMA+CDW90\naGVyLmV4YW1wbGUwCgYIKoZIzj0EAwIDRwAwRAIgeCAJO+we8djDFXv1e+YKUdsA\n9foKJePOnlFkGCiOcesCIDzEMBshErYz9H9jUYl+yxyQlqVbL3auEYwI7b9HLFUK\n-----END CERTIFICATE-----";
    const CLIENT_ONLY: &str = "-----BEGIN CERTIFICATE-----\nMIIByjCCAXCgAwIBAgIUFAeQAPunWIeH0Aug14om2tmRCWowCgYIKoZIzj0EAwIw\nJDEiMCAGA1UEAwwZaW1nY2FjaGUgdW5pdCBjbGllbnQtb25seTAgFw0yNjEyMDIw\nNjAyMDJaGA8yMTI2MTEwODA2MDIwMlowJDEiMCAGA1UEAwwZaW1nY2FjaGUgdW5p\ndCBjbGllbnQtb25seTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABMOXgcmfLQPw\nYGU/uVDZEddpytIwEPtH7ewJ9SpnUUJq3411rW5POzsCuKMpUCMWL7RC8wEwM15C\nZh0q1d8kTbyjfjB8MB0GA1UdDgQWBBRfiiCbQWKARMfaCEpy38daUCiYpDAfBgNV\nHSMEGDAWgBRfiiCbQWKARMfaCEpy38daUCiYpDAPBgNVHRMBAf8EBTADAQH/MBQG\nA1UdEQQNMAuCCWxvY2FsaG9zdDATBgNVHSUEDDAKBggrBgEFBQcDAjAKBggqhkjO\nPQQDAgNIADBFAiB4vfRnMopiQFXqgKe+6IwZk/PYnxb3bKN7E3QeD4e8LAIhALgm\n7d1kUQeE9PGHXbUEWqIeK2vw5lMZwTGIV0ZlUtKI\n-----END CERTIFICATE-----";

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    /// A day after the certificate's notBefore.
    fn valid_time(pem: &str) -> UnixTime {
        use x509_cert::der::Decode;
        let c = x509_cert::Certificate::from_der(&der(pem)).unwrap();
        let nb = c.tbs_certificate().validity().not_before.to_unix_duration();
        UnixTime::since_unix_epoch(nb + Duration::from_secs(86_400))
    }

    fn verify(trusted: &[&str], presented: &str, name: &str, now: UnixTime) -> Result<(), String> {
        let v = RegistryVerifier::new(
            "reg.test",
            trusted.iter().map(|p| der(p)).collect(),
            provider(),
        );
        let name = ServerName::try_from(name.to_owned()).unwrap();
        v.verify_server_cert(&der(presented), &[], &name, &[], now)
            .map(|_| ())
            .map_err(|e| explain_tls_error(&e))
    }

    #[test]
    fn a_trusted_self_signed_leaf_is_accepted_for_its_names_only() {
        let now = valid_time(LEAF);
        assert_eq!(verify(&[LEAF], LEAF, "localhost", now), Ok(()));
        assert_eq!(verify(&[OTHER, LEAF], LEAF, "127.0.0.1", now), Ok(()));
        // trusted, but for other names
        let err = verify(&[LEAF], LEAF, "reg.example", now).unwrap_err();
        assert!(err.contains("not valid for name \"reg.example\""), "{err}");
        let err = verify(&[OTHER], OTHER, "127.0.0.1", now).unwrap_err();
        assert!(err.contains("other.example"), "{err}");
        // another host's self-signed certificate is trusted, not the one presented
        let err = verify(&[OTHER], LEAF, "localhost", now).unwrap_err();
        assert!(
            err.contains("self-signed") && err.contains("not one of the certificates trusted"),
            "{err}"
        );
        // nothing trusted at all
        let err = verify(&[], LEAF, "localhost", now).unwrap_err();
        assert!(err.contains("self-signed"), "{err}");
    }

    #[test]
    fn a_trusted_self_signed_leaf_must_be_valid_now_and_for_servers() {
        let before = UnixTime::since_unix_epoch(Duration::from_secs(1_000_000_000));
        let err = verify(&[LEAF], LEAF, "localhost", before).unwrap_err();
        assert!(err.contains("not valid yet"), "{err}");
        let after = UnixTime::since_unix_epoch(Duration::from_secs(7_000_000_000));
        let err = verify(&[LEAF], LEAF, "localhost", after).unwrap_err();
        assert!(err.contains("expired"), "{err}");
        let err = verify(
            &[CLIENT_ONLY],
            CLIENT_ONLY,
            "localhost",
            valid_time(CLIENT_ONLY),
        )
        .unwrap_err();
        assert!(err.contains("InvalidPurpose"), "{err}");
    }

    fn touch(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"x").unwrap();
        p
    }

    #[test]
    fn certs_d_pairs_and_cas_in_docker_order() {
        let t = tempfile::tempdir().unwrap();
        let (d1, d2) = (t.path().join("etc"), t.path().join("home"));
        let reg = "reg.example:5000";
        let ca_b = touch(&d1, &format!("{reg}/b.crt"));
        let ca_a = touch(&d1, &format!("{reg}/a.crt"));
        let z_cert = touch(&d1, &format!("{reg}/z.cert"));
        let z_key = touch(&d1, &format!("{reg}/z.key"));
        let c_cert = touch(&d1, &format!("{reg}/client.cert"));
        let c_key = touch(&d1, &format!("{reg}/client.key"));
        touch(&d1, &format!("{reg}/README"));
        touch(&d1, "other.example/ca.crt");
        let home_ca = touch(&d2, &format!("{reg}/ca.crt"));
        let hub = touch(&d2, "registry-1.docker.io/hub.crt");
        let missing = t.path().join("nowhere");

        let found = certs_d(&[missing, d1.clone(), d2.clone()], &[reg]).unwrap();
        assert_eq!(found.cas, vec![ca_a, ca_b, home_ca]);
        assert_eq!(found.pairs, vec![(c_cert, c_key), (z_cert, z_key)]);

        let found = certs_d(
            &[d1.clone(), d2.clone()],
            &["docker.io", "registry-1.docker.io"],
        )
        .unwrap();
        assert_eq!(found.cas, vec![hub]);
        assert!(found.pairs.is_empty());
        assert_eq!(
            certs_d(std::slice::from_ref(&d1), &["none.example"]).unwrap(),
            CertsD::default()
        );
    }

    #[test]
    fn certs_d_half_pairs_are_errors_naming_both_files() {
        let t = tempfile::tempdir().unwrap();
        let cert = touch(t.path(), "r.example/client.cert");
        let err = certs_d(&[t.path().to_path_buf()], &["r.example"]).unwrap_err();
        let key = t.path().join("r.example/client.key");
        assert!(
            err.contains(&cert.display().to_string()) && err.contains(&key.display().to_string()),
            "{err}"
        );
        std::fs::remove_file(&cert).unwrap();
        touch(t.path(), "r.example/client.key");
        let err = certs_d(&[t.path().to_path_buf()], &["r.example"]).unwrap_err();
        assert!(
            err.contains(&cert.display().to_string()) && err.contains(&key.display().to_string()),
            "{err}"
        );
    }
}
