//! Mirrors on the pull side, from the configuration users already have.
//!
//! Nothing here touches the network: [`Mirrors::load`] reads the files, [`Mirrors::sources`]
//! answers which hosts to try for a reference and in which order, and
//! [`Mirrors::host_settings`] gives the TLS and plain-http settings the files imply per host.
//!
//! # Where the configuration comes from
//!
//! **registries.conf** (containers-registries.conf(5), as podman, skopeo, buildah and CRI-O read
//! it). [`MirrorSettings::from_env`] picks the files the way containers/image does:
//!
//! - `$CONTAINERS_REGISTRIES_CONF` (else the older `$REGISTRIES_CONFIG_PATH`) replaces the main
//!   file; the drop-in directories of the last case below still apply, as in containers/image;
//! - else, if `~/.config/containers/registries.conf` exists, it alone, then only
//!   `~/.config/containers/registries.conf.d`;
//! - else `/etc/containers/registries.conf`, then `/etc/containers/registries.conf.d`, then
//!   `~/.config/containers/registries.conf.d`.
//!
//! `~` is `$HOME` (containers/image does not look at `$XDG_CONFIG_HOME` for these files). A
//! drop-in directory contributes its `*.conf` files in lexical order, other files and
//! subdirectories are ignored, and drop-ins must use the version 2 format. A `[[registry]]` in a
//! later file replaces an earlier one with the same `prefix`; within one file the first wins.
//! The version 1 format (`[registries.insecure]`, `[registries.block]`) is honoured in a main
//! file. Files that do not exist are skipped.
//!
//! **A containerd hosts directory** (`--hosts-dir DIR`, what containerd calls `config_path`,
//! often `/etc/containerd/certs.d`). For a registry `host:port`, the first of `DIR/host_port_/`,
//! `DIR/host:port/` and `DIR/_default/` that exists is its directory, as containerd looks it up;
//! Docker Hub is `DIR/docker.io/`. The `hosts.toml` in that directory, if there is one,
//! configures the registry.
//!
//! # The hosts tried, in order
//!
//! With registries.conf, the `[[registry]]` whose `prefix` is the longest match of the
//! reference's full name applies. Names are normalized first: `busybox` is
//! `docker.io/library/busybox`, so prefixes for Docker Hub's official images must spell out
//! `library/`. A prefix `host`, `host/namespace` or `host/namespace/repo` matches whole path
//! components only (`docker.io/lib` does not match `docker.io/library/x`); `*.example.com`
//! matches every host under example.com, on any port, but not example.com itself. Then:
//!
//! 1. its `[[registry.mirror]]` entries, in order, each with the matched prefix replaced by the
//!    mirror's `location` (`mirror.site:5000/hub` for prefix `docker.io` turns
//!    `docker.io/library/busybox` into `mirror.site:5000/hub/library/busybox`). A
//!    `pull-from-mirror = "digest-only"` mirror (every mirror, with `mirror-by-digest-only =
//!    true`) is used only for references pinned by digest; a `"tag-only"` mirror only for the
//!    others;
//! 2. the origin: the prefix replaced by the entry's `location` (a `*.example.com` entry without
//!    `location` keeps the reference as it is).
//!
//! With hosts.toml:
//!
//! 1. the `[host."https://mirror:5000"]` tables in the order of the file, each sent
//!    `?ns=<registry>` as containerd does for any host other than the registry itself. A host
//!    without the `pull` capability is never used, one without `resolve` only for references
//!    pinned by digest (capabilities default to all);
//! 2. the origin: `server` (default: the registry itself), under the same capability rules, and
//!    also sent `?ns=` when it is another host.
//!
//! A host listed twice is tried once; a mirror that is the origin itself is tried as the origin.
//! With nothing configured for a registry, only the registry itself is tried.
//!
//! # Precedence
//!
//! 1. `blocked = true` on the registries.conf entry that matches refuses the pull, even where a
//!    hosts.toml configures the registry: it is a prohibition, not a route.
//! 2. Where the hosts directory has a `hosts.toml` for the registry (or a `_default` one), that
//!    file alone decides the hosts tried; registries.conf mirrors and locations are not used.
//! 3. Otherwise registries.conf decides.
//!
//! # Per-host settings
//!
//! registries.conf `insecure = true`, on an entry or a mirror, allows plain http and unverified
//! TLS for that host. In hosts.toml an `http://` host is reached over plain http (tried over TLS
//! first when it also has `ca`, `client` or `skip_verify`, as containerd does); `skip_verify`,
//! `ca` and `client` apply to that host, and settings at the top of the file to the `server`.
//! Relative certificate paths are relative to the hosts.toml's directory.
//!
//! # Not supported
//!
//! Hosts imgcache cannot address are left out with a warning: a hosts.toml URL with a path
//! other than `/v2`, or `override_path = true`. hosts.toml `header` tables are not sent, and
//! `dial_timeout` is ignored. registries.conf `unqualified-search-registries`, `short-name-mode`,
//! aliases and credential helpers are ignored (references here are always fully qualified). A
//! prefix holding a tag or digest never matches, as in containers/image, which looks entries up
//! by repository name. Config files over 1 MiB are refused; at most 32 mirrors per entry are
//! used.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::HostSettings;
use crate::error::Error;
use crate::reference::{DEFAULT_REGISTRY, Reference};

/// The largest registries.conf or hosts.toml accepted.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Mirrors used per `[[registry]]` entry or hosts.toml; the rest are ignored with a warning.
pub const MAX_MIRRORS_PER_ENTRY: usize = 32;

const SYSTEM_REGISTRIES_CONF: &str = "/etc/containers/registries.conf";
const SYSTEM_REGISTRIES_CONF_D: &str = "/etc/containers/registries.conf.d";
const USER_REGISTRIES_CONF: &str = ".config/containers/registries.conf";
const USER_REGISTRIES_CONF_D: &str = ".config/containers/registries.conf.d";
const HOSTS_TOML: &str = "hosts.toml";
const DEFAULT_NAMESPACE: &str = "_default";

/// Where the mirror configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct MirrorSettings {
    /// registries.conf files, then drop-in directories, in the order they apply. A directory
    /// stands for its `*.conf` files in lexical order.
    pub registries_conf: Vec<PathBuf>,
    /// A containerd hosts directory (`--hosts-dir`): `DIR/<host[:port]>/hosts.toml`,
    /// `DIR/_default/hosts.toml`.
    pub hosts_dir: Option<PathBuf>,
}

impl MirrorSettings {
    /// The registries.conf files and drop-in directories containers/image would read (see the
    /// module documentation); no hosts directory, since containerd has none by default.
    pub fn from_env() -> Self {
        Self {
            registries_conf: registries_conf_paths(|name| std::env::var_os(name)),
            hosts_dir: None,
        }
    }
}

/// The registries.conf list for the environment `env` describes (a function, so that tests
/// need not change the process environment).
fn registries_conf_paths(env: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let non_empty = |v: OsString| (!v.is_empty()).then(|| PathBuf::from(v));
    // As containers/image: a set CONTAINERS_REGISTRIES_CONF, even empty, hides the older name.
    let explicit = match env("CONTAINERS_REGISTRIES_CONF") {
        Some(v) => non_empty(v),
        None => env("REGISTRIES_CONFIG_PATH").and_then(non_empty),
    };
    let home = env("HOME").and_then(non_empty);
    let user_file = home.as_ref().map(|h| h.join(USER_REGISTRIES_CONF));
    let user_dir = home.as_ref().map(|h| h.join(USER_REGISTRIES_CONF_D));
    let mut paths = Vec::new();
    match (explicit, user_file) {
        (Some(file), _) => paths.extend([file, SYSTEM_REGISTRIES_CONF_D.into()]),
        // A user file replaces the system configuration, drop-ins included.
        (None, Some(user)) if user.exists() => paths.push(user),
        _ => paths.extend([
            SYSTEM_REGISTRIES_CONF.into(),
            SYSTEM_REGISTRIES_CONF_D.into(),
        ]),
    }
    paths.extend(user_dir);
    paths
}

/// One host to try for a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `host[:port]` to send requests to (what the registry client keys endpoints, TLS and
    /// credentials by). Docker Hub is always `docker.io`.
    pub registry: String,
    /// The repository at that host (a registries.conf location's path prefix applied).
    pub repository: String,
    pub role: Role,
    /// containerd hosts.toml hosts other than the registry itself get `?ns=<the reference's
    /// registry>` on every request, as containerd sends it.
    pub ns: Option<String>,
    /// Where this entry was configured (file path, for messages and `pull --json`); None for
    /// the registry itself, unrewritten.
    pub configured_in: Option<PathBuf>,
}

/// What a [`Source`] is to the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A copy, tried before the origin.
    Mirror,
    /// The registry itself, or where the configuration says it lives; tried last.
    Origin,
}

impl Source {
    fn unconfigured_origin(reference: &Reference) -> Self {
        Self {
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            role: Role::Origin,
            ns: None,
            configured_in: None,
        }
    }

    fn same_endpoint(&self, other: &Source) -> bool {
        self.registry == other.registry && self.repository == other.repository
    }
}

/// The parsed mirror configuration: see the module documentation for the rules.
#[derive(Debug, Clone, Default)]
pub struct Mirrors {
    /// `[[registry]]` entries by prefix: a later file's entry replaces an earlier one.
    registries: BTreeMap<String, RegistryEntry>,
    /// The hosts directory's subdirectories by name, with their hosts.toml if they have one.
    namespaces: HashMap<String, Option<HostsFile>>,
}

impl Mirrors {
    /// Parses everything `settings` names; files that do not exist are skipped; a file that
    /// exists but cannot be read or parsed is an error naming it.
    pub fn load(settings: &MirrorSettings) -> Result<Self, Error> {
        let mut mirrors = Self::default();
        for path in &settings.registries_conf {
            match fs::metadata(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path, e)),
                Ok(meta) if meta.is_dir() => {
                    for file in drop_in_files(path)? {
                        if let Some(text) = read_config(&file)? {
                            mirrors.add_registries_conf(&text, &file, ConfKind::DropIn)?;
                        }
                    }
                }
                Ok(_) => {
                    if let Some(text) = read_config(path)? {
                        mirrors.add_registries_conf(&text, path, ConfKind::Main)?;
                    }
                }
            }
        }
        if let Some(dir) = &settings.hosts_dir {
            mirrors.load_hosts_dir(dir)?;
        }
        Ok(mirrors)
    }

    /// The configuration of one registries.conf file, given as text; `path` names it in
    /// messages and [`Source::configured_in`].
    pub fn from_registries_conf_str(text: &str, path: &Path) -> Result<Self, Error> {
        let mut mirrors = Self::default();
        mirrors.add_registries_conf(text, path, ConfKind::Main)?;
        Ok(mirrors)
    }

    /// The configuration of one hosts.toml, given as text, as if it were `path`, the hosts.toml
    /// of the hosts directory's `namespace` subdirectory (`docker.io`, `host_5000_`, `_default`).
    pub fn from_hosts_toml_str(namespace: &str, text: &str, path: &Path) -> Result<Self, Error> {
        let mut mirrors = Self::default();
        let file = (!text.is_empty())
            .then(|| HostsFile::parse(text, path))
            .transpose()?;
        mirrors.namespaces.insert(namespace.to_owned(), file);
        Ok(mirrors)
    }

    /// The hosts to try for `reference`, in order, the origin (or the location registries.conf
    /// rewrites it to, or hosts.toml `server`) last. Mirrors that may not answer this kind of
    /// reference are left out. A blocked registry is an error naming the reference, the prefix
    /// and the file; so is a hosts.toml none of whose hosts may serve the reference.
    pub fn sources(&self, reference: &Reference) -> Result<Vec<Source>, Error> {
        let entry = self.matching_entry(reference);
        if let Some(entry) = entry
            && entry.blocked
        {
            return Err(Error::Blocked {
                reference: reference.to_string(),
                prefix: entry.prefix.clone(),
                file: entry.configured_in.clone(),
            });
        }
        if let Some(file) = self.hosts_file(&reference.registry) {
            return file.sources(reference);
        }
        match entry {
            Some(entry) => entry.sources(reference),
            None => Ok(vec![Source::unconfigured_origin(reference)]),
        }
    }

    /// Per-host TLS/http settings the configuration implies, to merge into
    /// `RegistryOptions::hosts`, keyed like [`Source::registry`]. Settings that depend on the
    /// reference (a `*.example.com` entry's `insecure`, top-level settings of
    /// `_default/hosts.toml` without `server`) are only in [`Mirrors::host_settings_for`].
    pub fn host_settings(&self) -> HashMap<String, HostSettings> {
        let mut hosts = HashMap::new();
        for entry in self.registries.values() {
            if entry.insecure && !entry.location.is_empty() {
                merge_settings(&mut hosts, location_host(&entry.location), &insecure());
            }
            for mirror in entry.mirrors.iter().filter(|m| m.insecure) {
                merge_settings(&mut hosts, location_host(&mirror.location), &insecure());
            }
        }
        for (namespace, file) in &self.namespaces {
            let Some(file) = file else { continue };
            let registry = registry_of_namespace(namespace);
            // A directory shadowed by another spelling of the same registry is not used.
            if let Some(registry) = &registry
                && self.namespace_for(registry) != Some(namespace.as_str())
            {
                continue;
            }
            for host in &file.hosts {
                if let Some(name) = &host.host {
                    merge_settings(&mut hosts, name, &host.settings);
                }
            }
            if let Some(server) = &file.server
                && let Some(name) = server.host.as_ref().or(registry.as_ref())
            {
                merge_settings(&mut hosts, name, &server.settings);
            }
        }
        hosts
    }

    /// [`Mirrors::host_settings`], plus the settings that apply to `reference`'s registry only
    /// because of a pattern (`*.example.com`, `_default`).
    pub fn host_settings_for(&self, reference: &Reference) -> HashMap<String, HostSettings> {
        let mut hosts = self.host_settings();
        let registry = canonical_registry(&reference.registry);
        if let Some(file) = self.hosts_file(&reference.registry) {
            if let Some(server) = &file.server
                && server.host.is_none()
            {
                merge_settings(&mut hosts, registry, &server.settings);
            }
        } else if let Some(entry) = self.matching_entry(reference)
            && entry.insecure
            && entry.location.is_empty()
        {
            merge_settings(&mut hosts, registry, &insecure());
        }
        hosts
    }

    /// True when nothing is configured (pull behaves as before).
    pub fn is_empty(&self) -> bool {
        self.registries.is_empty() && self.namespaces.values().all(Option::is_none)
    }

    /// The `[[registry]]` with the longest prefix matching `reference`.
    fn matching_entry(&self, reference: &Reference) -> Option<&RegistryEntry> {
        let name = reference.name();
        let mut best: Option<&RegistryEntry> = None;
        // In prefix order, and only a strictly longer prefix replaces the best so far, so that
        // ties go the way containers/image breaks them.
        for entry in self.registries.values() {
            if entry.matched_len(reference, &name).is_some()
                && best.is_none_or(|b| entry.prefix.len() > b.prefix.len())
            {
                best = Some(entry);
            }
        }
        best
    }

    /// The hosts directory's subdirectory that configures `registry`, as containerd finds it.
    fn namespace_for(&self, registry: &str) -> Option<&str> {
        let with_port = registry
            .rsplit_once(':')
            .map(|(host, port)| format!("{host}_{port}_"));
        with_port
            .iter()
            .map(String::as_str)
            .chain([registry, DEFAULT_NAMESPACE])
            .find_map(|name| self.namespaces.get_key_value(name).map(|(k, _)| k.as_str()))
    }

    fn hosts_file(&self, registry: &str) -> Option<&HostsFile> {
        self.namespaces.get(self.namespace_for(registry)?)?.as_ref()
    }

    fn add_registries_conf(
        &mut self,
        text: &str,
        path: &Path,
        kind: ConfKind,
    ) -> Result<(), Error> {
        for entry in parse_registries_conf(text, path, kind)? {
            self.registries.insert(entry.prefix.clone(), entry);
        }
        Ok(())
    }

    fn load_hosts_dir(&mut self, dir: &Path) -> Result<(), Error> {
        let entries = match fs::read_dir(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            other => other.map_err(|e| Error::io(dir, e))?,
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let (Ok(name), path) = (entry.file_name().into_string(), entry.path()) else {
                continue; // not a registry name
            };
            if !path.is_dir() {
                continue;
            }
            let file_path = path.join(HOSTS_TOML);
            // An empty hosts.toml counts as none, as in containerd.
            let file = match read_config(&file_path)? {
                Some(text) if !text.is_empty() => Some(HostsFile::parse(&text, &file_path)?),
                _ => None,
            };
            self.namespaces.insert(name, file);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Files

/// The text of a config file; None when it does not exist.
fn read_config(path: &Path) -> Result<Option<String>, Error> {
    let file = match fs::File::open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        other => other.map_err(|e| Error::io(path, e))?,
    };
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(Error::TooLarge {
            what: path.display().to_string(),
            limit: MAX_CONFIG_BYTES,
        });
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| invalid(path, "not UTF-8 text".to_owned()))
}

/// A drop-in directory's `*.conf` files, in lexical order.
fn drop_in_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.as_os_str().as_encoded_bytes().ends_with(b".conf") && !path.is_dir() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// A config file that is there but unusable: the message says why.
fn invalid(path: &Path, message: String) -> Error {
    Error::io(path, io::Error::new(io::ErrorKind::InvalidData, message))
}

/// How Docker Hub is named in sources and host settings: the client maps `docker.io` to its
/// endpoint, and credentials for it are stored under Docker Hub's names.
fn canonical_registry(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" => DEFAULT_REGISTRY,
        other => other,
    }
}

fn insecure() -> HostSettings {
    HostSettings {
        allow_http: true,
        skip_verify: true,
        ..HostSettings::default()
    }
}

fn merge_settings(hosts: &mut HashMap<String, HostSettings>, host: &str, add: &HostSettings) {
    let settings = hosts
        .entry(canonical_registry(host).to_owned())
        .or_default();
    settings.allow_http |= add.allow_http;
    settings.force_http |= add.force_http;
    settings.skip_verify |= add.skip_verify;
    for ca in &add.ca_certs {
        if !settings.ca_certs.contains(ca) {
            settings.ca_certs.push(ca.clone());
        }
    }
    for pair in &add.client_certs {
        if !settings.client_certs.contains(pair) {
            settings.client_certs.push(pair.clone());
        }
    }
}

/// The mirrors before the origin, each endpoint once; a mirror that is the origin goes.
fn in_order(mirrors: Vec<Source>, origin: Option<Source>) -> Vec<Source> {
    let mut sources: Vec<Source> = Vec::with_capacity(mirrors.len() + 1);
    for mirror in mirrors {
        let is_origin = origin.as_ref().is_some_and(|o| o.same_endpoint(&mirror));
        if !is_origin && !sources.iter().any(|s| s.same_endpoint(&mirror)) {
            sources.push(mirror);
        }
    }
    sources.extend(origin);
    sources
}

mod hosts_toml;
mod registries_conf;
#[cfg(test)]
mod tests;

use hosts_toml::*;
use registries_conf::*;
