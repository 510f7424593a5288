//! A containerd hosts directory's `hosts.toml`: the `[host]` tables in file order, the
//! `server`, and the settings of each.

use super::*;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct HostsToml {
    pub(super) server: Option<String>,
    /// Keyed with their spans: without toml's `preserve_order` feature (not enabled in this
    /// workspace) a map loses the order of the file, and hosts are tried in that order.
    pub(super) host: BTreeMap<toml::Spanned<String>, HostToml>,
    // The top-level table is also the server's host table.
    pub(super) capabilities: Option<Vec<String>>,
    pub(super) ca: Option<CaCerts>,
    pub(super) client: Option<ClientCerts>,
    pub(super) skip_verify: Option<bool>,
    pub(super) override_path: bool,
    pub(super) header: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct HostToml {
    pub(super) capabilities: Option<Vec<String>>,
    pub(super) ca: Option<CaCerts>,
    pub(super) client: Option<ClientCerts>,
    pub(super) skip_verify: Option<bool>,
    pub(super) override_path: bool,
    pub(super) header: Option<IgnoredAny>,
}

/// `ca = "file"` or `ca = ["a", "b"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum CaCerts {
    One(String),
    Many(Vec<String>),
}

/// `client = "both.pem"`, `["both-1.pem", "both-2.pem"]` or `[["cert", "key"], ...]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ClientCerts {
    One(String),
    Many(Vec<ClientCert>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ClientCert {
    /// Certificate and key in one PEM file.
    Combined(String),
    /// `[cert, key]`; an empty key means the key is in the certificate's file.
    Pair(Vec<String>),
}

/// One parsed hosts.toml.
#[derive(Debug, Clone)]
pub(super) struct HostsFile {
    pub(super) path: PathBuf,
    /// The `[host."..."]` tables imgcache can use, in the order of the file.
    pub(super) hosts: Vec<ConfiguredHost>,
    /// The origin; None when `server` names one imgcache cannot use.
    pub(super) server: Option<ConfiguredHost>,
}

#[derive(Debug, Clone)]
pub(super) struct ConfiguredHost {
    /// host[:port]; None for the registry itself (no `server` in the file).
    pub(super) host: Option<String>,
    pub(super) pull: bool,
    pub(super) resolve: bool,
    pub(super) settings: HostSettings,
}

impl HostsFile {
    pub(super) fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let mut toml: HostsToml =
            toml::from_str(text).map_err(|e| invalid(path, format!("not valid TOML: {e}")))?;
        let base = path.parent().unwrap_or(Path::new(""));
        let mut tables: Vec<_> = std::mem::take(&mut toml.host).into_iter().collect();
        tables.sort_by_key(|(url, _)| url.span().start);
        if tables.len() > MAX_MIRRORS_PER_ENTRY {
            tracing::warn!(
                "{}: {} hosts; only the first {MAX_MIRRORS_PER_ENTRY} are used",
                path.display(),
                tables.len()
            );
            tables.truncate(MAX_MIRRORS_PER_ENTRY);
        }
        let mut hosts = Vec::new();
        for (url, table) in tables {
            hosts.extend(configured_host(Some(url.get_ref()), table, base, path)?);
        }
        let server_table = HostToml {
            capabilities: toml.capabilities,
            ca: toml.ca,
            client: toml.client,
            skip_verify: toml.skip_verify,
            override_path: toml.override_path,
            header: toml.header,
        };
        let server = configured_host(toml.server.as_deref(), server_table, base, path)?;
        Ok(Self {
            path: path.to_owned(),
            hosts,
            server,
        })
    }

    pub(super) fn sources(&self, reference: &Reference) -> Result<Vec<Source>, Error> {
        let digest_pinned = reference.digest.is_some();
        // containerd needs `pull` to fetch and, for a tag, `resolve` to turn it into a digest.
        let may_serve = |h: &&ConfiguredHost| h.pull && (digest_pinned || h.resolve);
        let source = |host: &ConfiguredHost, role: Role| {
            let registry = host
                .host
                .clone()
                .unwrap_or_else(|| reference.registry.clone());
            Source {
                ns: (registry != reference.registry).then(|| reference.registry.clone()),
                registry,
                repository: reference.repository.clone(),
                role,
                configured_in: host.host.as_ref().map(|_| self.path.clone()),
            }
        };
        let mirrors = self.hosts.iter().filter(may_serve);
        let mirrors = mirrors.map(|h| source(h, Role::Mirror)).collect();
        let origin = self
            .server
            .iter()
            .find(may_serve)
            .map(|h| source(h, Role::Origin));
        let sources = in_order(mirrors, origin);
        if sources.is_empty() {
            let hint = if digest_pinned {
                "none has the \"pull\" capability"
            } else {
                "a tag needs a host with the \"pull\" and \"resolve\" capabilities; pull by digest \
                 or add \"resolve\""
            };
            return Err(Error::Usage(format!(
                "{reference}: no host in {} may serve it ({hint})",
                self.path.display()
            )));
        }
        Ok(sources)
    }
}

/// A host table as imgcache uses it; None (with a warning) for one it cannot address. `url`
/// None is the top-level table without `server`: the registry itself.
pub(super) fn configured_host(
    url: Option<&str>,
    table: HostToml,
    base: &Path,
    file: &Path,
) -> Result<Option<ConfiguredHost>, Error> {
    let what = url.map_or_else(
        || "the top-level settings".to_owned(),
        |u| format!("\"{u}\""),
    );
    let fail = |message: String| Err(invalid(file, format!("{what}: {message}")));
    let (mut pull, mut resolve) = (true, true);
    if let Some(capabilities) = table.capabilities.filter(|c| !c.is_empty()) {
        (pull, resolve) = (false, false);
        for capability in capabilities {
            match capability.to_ascii_lowercase().as_str() {
                "pull" => pull = true,
                "resolve" => resolve = true,
                "push" | "referrers" => {}
                _ => return fail(format!("unknown capability \"{capability}\"")),
            }
        }
    }
    let in_dir = |p: &str| base.join(p); // join keeps an absolute path as it is
    let ca_certs = match table.ca {
        None => Vec::new(),
        Some(CaCerts::One(p)) => vec![in_dir(&p)],
        Some(CaCerts::Many(ps)) => ps.iter().map(|p| in_dir(p)).collect(),
    };
    let mut client_certs = Vec::new();
    let items = match table.client {
        None => Vec::new(),
        Some(ClientCerts::One(p)) => vec![ClientCert::Combined(p)],
        Some(ClientCerts::Many(items)) => items,
    };
    for item in items {
        match item {
            ClientCert::Combined(p) => client_certs.push((in_dir(&p), in_dir(&p))),
            ClientCert::Pair(pair) => match pair.as_slice() {
                [cert, key] if key.is_empty() => client_certs.push((in_dir(cert), in_dir(cert))),
                [cert, key] => client_certs.push((in_dir(cert), in_dir(key))),
                _ => return fail(format!("client {pair:?}: a pair is [\"cert\", \"key\"]")),
            },
        }
    }
    if table.header.is_some() {
        tracing::debug!("{}: {what}: headers are not sent", file.display());
    }
    let tls_configured =
        !ca_certs.is_empty() || !client_certs.is_empty() || table.skip_verify.is_some();
    let mut settings = HostSettings {
        skip_verify: table.skip_verify.unwrap_or(false),
        ca_certs,
        client_certs,
        ..HostSettings::default()
    };
    let host = match url {
        None => None,
        Some(url) => {
            let parsed = parse_host_url(url).and_then(|parsed| {
                if table.override_path {
                    Err("override_path is not supported".to_owned())
                } else {
                    Ok(parsed)
                }
            });
            let (host, http) = match parsed {
                Ok(parsed) => parsed,
                Err(why) => {
                    tracing::warn!("{}: host {what} left out: {why}", file.display());
                    return Ok(None);
                }
            };
            if http {
                // As containerd: with TLS settings, an http:// host is tried over TLS first
                // (unless on port 80).
                if tls_configured && !host.ends_with(":80") {
                    settings.allow_http = true;
                } else {
                    settings.force_http = true;
                }
            }
            Some(canonical_registry(&host).to_owned())
        }
    };
    Ok(Some(ConfiguredHost {
        host,
        pull,
        resolve,
        settings,
    }))
}

/// `https://host[:port]`, `http://host[:port]` or `host[:port]` (https), with no path but
/// containerd's own `/v2`: host[:port] and whether it is plain http.
pub(super) fn parse_host_url(url: &str) -> Result<(String, bool), String> {
    let (http, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (false, rest)
    } else if url.contains("://") {
        return Err("only http:// and https:// are supported".to_owned());
    } else {
        (false, url)
    };
    let (host, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let host_chars = |b: u8| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b);
    if host.is_empty() || !host.bytes().all(host_chars) {
        return Err("no host[:port] in the URL".to_owned());
    }
    if !matches!(path, "" | "/" | "/v2" | "/v2/") {
        return Err(format!(
            "the path \"{path}\": imgcache sends requests to /v2/ at the host's root"
        ));
    }
    Ok((host.to_owned(), http))
}

/// The registry a hosts directory's subdirectory is named for (`host_5000_` is `host:5000`);
/// None for `_default`.
pub(super) fn registry_of_namespace(name: &str) -> Option<String> {
    if name == DEFAULT_NAMESPACE {
        return None;
    }
    let with_port = name.strip_suffix('_').and_then(|n| n.rsplit_once('_'));
    Some(match with_port {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{host}:{port}")
        }
        _ => name.to_owned(),
    })
}
