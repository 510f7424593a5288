//! TLS trust and the HTTP client of each registry: the system roots, `--ca-cert`, and the
//! `<certs_dir>/<host[:port]>/*.crt` CAs of that registry only (or no verification with
//! `--insecure`), plus the client settings every request shares (user agent, timeouts, no
//! automatic redirects: `transport` follows them itself).

use std::path::Path;

use super::client::RegistryClient;
use super::http::describe_reqwest_error;
use crate::error::Error;

const USER_AGENT: &str = concat!("imgcache/", env!("CARGO_PKG_VERSION"));

impl RegistryClient {
    /// An HTTP client trusting the system roots, `--ca-cert`, and the registry's certs.d CAs.
    pub(super) fn http_client(&self, registry: &str, host: &str) -> Result<reqwest::Client, Error> {
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
}

pub(super) fn read_pem_certs(path: &Path) -> Result<Vec<reqwest::Certificate>, Error> {
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
