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

// ---------------------------------------------------------------------------------------------
// registries.conf

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConfKind {
    Main,
    DropIn,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
struct RegistriesConfToml {
    registry: Vec<RegistryToml>,
    /// The version 1 format.
    registries: Option<V1Toml>,
    // Read only to detect a file mixing both formats, which containers/image refuses.
    unqualified_search_registries: Option<IgnoredAny>,
    short_name_mode: Option<IgnoredAny>,
    aliases: Option<IgnoredAny>,
    credential_helpers: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
struct RegistryToml {
    prefix: String,
    location: String,
    insecure: bool,
    blocked: bool,
    mirror_by_digest_only: bool,
    pull_from_mirror: String,
    mirror: Vec<MirrorToml>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
struct MirrorToml {
    location: String,
    insecure: bool,
    pull_from_mirror: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct V1Toml {
    insecure: V1List,
    block: V1List,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct V1List {
    registries: Vec<String>,
}

/// One `[[registry]]`, checked and normalized.
#[derive(Debug, Clone)]
struct RegistryEntry {
    /// Without a trailing `/`; `*.example.com` for a wildcard.
    prefix: String,
    /// Empty only for a wildcard prefix: the reference is not rewritten.
    location: String,
    insecure: bool,
    blocked: bool,
    mirrors: Vec<MirrorEntry>,
    configured_in: PathBuf,
}

#[derive(Debug, Clone)]
struct MirrorEntry {
    location: String,
    insecure: bool,
    used_for: UsedFor,
}

/// Which references a registries.conf mirror may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UsedFor {
    All,
    DigestOnly,
    TagOnly,
}

impl UsedFor {
    fn allows(self, digest_pinned: bool) -> bool {
        match self {
            UsedFor::All => true,
            UsedFor::DigestOnly => digest_pinned,
            UsedFor::TagOnly => !digest_pinned,
        }
    }
}

fn parse_registries_conf(
    text: &str,
    path: &Path,
    kind: ConfKind,
) -> Result<Vec<RegistryEntry>, Error> {
    let conf: RegistriesConfToml =
        toml::from_str(text).map_err(|e| invalid(path, format!("not valid TOML: {e}")))?;
    if let Some(v1) = conf.registries {
        let has_v2 = !conf.registry.is_empty()
            || conf.unqualified_search_registries.is_some()
            || conf.short_name_mode.is_some()
            || conf.aliases.is_some()
            || conf.credential_helpers.is_some();
        if has_v2 {
            return Err(invalid(
                path,
                "mixes the version 1 format ([registries.*]) with the version 2 format".into(),
            ));
        }
        if kind == ConfKind::DropIn {
            return Err(invalid(
                path,
                "drop-in files must use the version 2 format ([[registry]])".into(),
            ));
        }
        return v1_entries(v1, path);
    }
    let mut entries: Vec<RegistryEntry> = Vec::new();
    for table in conf.registry {
        let entry = checked_entry(table, path)?;
        // Within one file the first entry for a prefix wins, as in containers/image.
        if !entries.iter().any(|e| e.prefix == entry.prefix) {
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// `[registries.insecure]` and `[registries.block]` as the entries they stand for.
fn v1_entries(v1: V1Toml, path: &Path) -> Result<Vec<RegistryEntry>, Error> {
    let mut entries: BTreeMap<String, RegistryEntry> = BTreeMap::new();
    let lists = [
        (&v1.insecure.registries, false),
        (&v1.block.registries, true),
    ];
    for (registries, blocked) in lists {
        for registry in registries {
            let location = clean_location(registry, path)?;
            let entry = entries
                .entry(location.clone())
                .or_insert_with(|| RegistryEntry {
                    prefix: location.clone(),
                    location,
                    insecure: false,
                    blocked: false,
                    mirrors: Vec::new(),
                    configured_in: path.to_owned(),
                });
            if blocked {
                entry.blocked = true;
            } else {
                entry.insecure = true;
            }
        }
    }
    Ok(entries.into_values().collect())
}

/// A `prefix` or `location` without its trailing `/`; URL schemes are refused.
fn clean_location(text: &str, path: &Path) -> Result<String, Error> {
    let trimmed = text.trim_end_matches('/');
    if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        return Err(invalid(
            path,
            format!("location \"{text}\": write host[:port][/path], without http:// or https://"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// One `[[registry]]` table, checked as containers/image checks it.
fn checked_entry(table: RegistryToml, path: &Path) -> Result<RegistryEntry, Error> {
    let location = clean_location(&table.location, path)?;
    let prefix = match clean_location(&table.prefix, path)? {
        p if p.is_empty() && location.is_empty() => {
            return Err(invalid(
                path,
                "a [[registry]] has neither prefix nor location".into(),
            ));
        }
        p if p.is_empty() => location.clone(),
        p => p,
    };
    let fail = |message: String| {
        Err(invalid(
            path,
            format!("[[registry]] \"{prefix}\": {message}"),
        ))
    };
    if let Some(domain) = prefix.strip_prefix("*.") {
        if domain.contains(['/', '@', ':']) {
            return fail("a wildcard prefix is *.domain, without port or path".into());
        }
    } else if location.is_empty() {
        return fail("location is required unless the prefix is *.domain".into());
    }
    if let Some((_, path_part)) = prefix.split_once('/')
        && path_part.contains([':', '@'])
    {
        tracing::warn!(
            "{}: [[registry]] prefix \"{prefix}\" holds a tag or digest; entries are looked up \
             by repository name, so it never applies",
            path.display()
        );
    }
    if !table.pull_from_mirror.is_empty() {
        return fail("pull-from-mirror belongs in a [[registry.mirror]], not the registry".into());
    }
    let mut mirrors = Vec::new();
    for mirror in table.mirror {
        let mirror_location = clean_location(&mirror.location, path)?;
        if mirror_location.is_empty() {
            return fail("a [[registry.mirror]] has no location".into());
        }
        let used_for = match mirror.pull_from_mirror.as_str() {
            _ if table.mirror_by_digest_only && !mirror.pull_from_mirror.is_empty() => {
                return fail(format!(
                    "mirror \"{mirror_location}\": pull-from-mirror and the registry's \
                     mirror-by-digest-only cannot both be set"
                ));
            }
            _ if table.mirror_by_digest_only => UsedFor::DigestOnly,
            "" | "all" => UsedFor::All,
            "digest-only" => UsedFor::DigestOnly,
            "tag-only" => UsedFor::TagOnly,
            other => {
                return fail(format!(
                    "mirror \"{mirror_location}\": pull-from-mirror is \"all\", \"digest-only\" \
                     or \"tag-only\", not \"{other}\""
                ));
            }
        };
        mirrors.push(MirrorEntry {
            location: mirror_location,
            insecure: mirror.insecure,
            used_for,
        });
    }
    if mirrors.len() > MAX_MIRRORS_PER_ENTRY {
        tracing::warn!(
            "{}: [[registry]] \"{prefix}\" lists {} mirrors; only the first {MAX_MIRRORS_PER_ENTRY} are used",
            path.display(),
            mirrors.len()
        );
        mirrors.truncate(MAX_MIRRORS_PER_ENTRY);
    }
    Ok(RegistryEntry {
        prefix,
        location,
        insecure: table.insecure,
        blocked: table.blocked,
        mirrors,
        configured_in: path.to_owned(),
    })
}

/// The host part of a registries.conf location.
fn location_host(location: &str) -> &str {
    location.split('/').next().unwrap_or(location)
}

/// The host without its port, for wildcard matching.
fn host_without_port(registry: &str) -> &str {
    match registry.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => registry,
    }
}

impl RegistryEntry {
    /// When this entry applies to `reference` (`name` is its `registry/repository`), how many
    /// bytes of `name` its prefix stands for: what a location replaces.
    fn matched_len(&self, reference: &Reference, name: &str) -> Option<usize> {
        if let Some(domain) = self.prefix.strip_prefix('*') {
            // `domain` keeps its leading dot: example.com itself does not match *.example.com.
            let host = host_without_port(&reference.registry);
            return (host.len() > domain.len() && host.ends_with(domain))
                .then_some(reference.registry.len());
        }
        // Whole path components only; unlike containers/image, `:` after a host prefix is a
        // port, not a boundary (it documents that match as unintended).
        let rest = name.strip_prefix(self.prefix.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then_some(self.prefix.len())
    }

    fn sources(&self, reference: &Reference) -> Result<Vec<Source>, Error> {
        let name = reference.name();
        let rest = &name[self.matched_len(reference, &name).unwrap_or(0)..];
        let digest_pinned = reference.digest.is_some();
        let mut mirrors = Vec::new();
        for mirror in self
            .mirrors
            .iter()
            .filter(|m| m.used_for.allows(digest_pinned))
        {
            let (registry, repository) = self.rewrite(&mirror.location, rest, reference)?;
            mirrors.push(Source {
                registry,
                repository,
                role: Role::Mirror,
                ns: None,
                configured_in: Some(self.configured_in.clone()),
            });
        }
        let mut origin = Source::unconfigured_origin(reference);
        if !self.location.is_empty() {
            (origin.registry, origin.repository) = self.rewrite(&self.location, rest, reference)?;
            if !origin.same_endpoint(&Source::unconfigured_origin(reference)) {
                origin.configured_in = Some(self.configured_in.clone());
            }
        }
        Ok(in_order(mirrors, Some(origin)))
    }

    /// `location` followed by what the prefix left of the name, as registry and repository.
    fn rewrite(
        &self,
        location: &str,
        rest: &str,
        reference: &Reference,
    ) -> Result<(String, String), Error> {
        let rewritten = format!("{location}{rest}");
        let unusable = |why: &str| {
            Error::Usage(format!(
                "{}: [[registry]] \"{}\": location \"{location}\" turns {reference} into \
                 \"{rewritten}\", {why}",
                self.configured_in.display(),
                self.prefix
            ))
        };
        let Some((host, path)) = rewritten.split_once('/') else {
            return Err(unusable("which has no repository after the registry"));
        };
        let parsed = Reference::parse(&rewritten)
            .map_err(|_| unusable("which is not a registry/repository name"))?;
        let host = canonical_registry(host);
        // Reference::parse reads a first component without `.` or `:` as a Docker Hub path,
        // and a last `:x` as a tag: neither is what the location meant.
        let as_written = parsed.repository == path
            || (host == DEFAULT_REGISTRY && parsed.repository == format!("library/{path}"));
        if canonical_registry(&parsed.registry) != host || !as_written || parsed.digest.is_some() {
            return Err(unusable("which does not start with a registry host"));
        }
        Ok((host.to_owned(), parsed.repository))
    }
}

// ---------------------------------------------------------------------------------------------
// containerd hosts.toml

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HostsToml {
    server: Option<String>,
    /// Keyed with their spans: without toml's `preserve_order` feature (not enabled in this
    /// workspace) a map loses the order of the file, and hosts are tried in that order.
    host: BTreeMap<toml::Spanned<String>, HostToml>,
    // The top-level table is also the server's host table.
    capabilities: Option<Vec<String>>,
    ca: Option<CaCerts>,
    client: Option<ClientCerts>,
    skip_verify: Option<bool>,
    override_path: bool,
    header: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HostToml {
    capabilities: Option<Vec<String>>,
    ca: Option<CaCerts>,
    client: Option<ClientCerts>,
    skip_verify: Option<bool>,
    override_path: bool,
    header: Option<IgnoredAny>,
}

/// `ca = "file"` or `ca = ["a", "b"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CaCerts {
    One(String),
    Many(Vec<String>),
}

/// `client = "both.pem"`, `["both-1.pem", "both-2.pem"]` or `[["cert", "key"], ...]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ClientCerts {
    One(String),
    Many(Vec<ClientCert>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ClientCert {
    /// Certificate and key in one PEM file.
    Combined(String),
    /// `[cert, key]`; an empty key means the key is in the certificate's file.
    Pair(Vec<String>),
}

/// One parsed hosts.toml.
#[derive(Debug, Clone)]
struct HostsFile {
    path: PathBuf,
    /// The `[host."..."]` tables imgcache can use, in the order of the file.
    hosts: Vec<ConfiguredHost>,
    /// The origin; None when `server` names one imgcache cannot use.
    server: Option<ConfiguredHost>,
}

#[derive(Debug, Clone)]
struct ConfiguredHost {
    /// host[:port]; None for the registry itself (no `server` in the file).
    host: Option<String>,
    pull: bool,
    resolve: bool,
    settings: HostSettings,
}

impl HostsFile {
    fn parse(text: &str, path: &Path) -> Result<Self, Error> {
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

    fn sources(&self, reference: &Reference) -> Result<Vec<Source>, Error> {
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
fn configured_host(
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
fn parse_host_url(url: &str) -> Result<(String, bool), String> {
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
fn registry_of_namespace(name: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn reference(text: &str) -> Reference {
        Reference::parse(text).unwrap()
    }

    fn conf(text: &str) -> Mirrors {
        Mirrors::from_registries_conf_str(text, Path::new("/etc/containers/registries.conf"))
            .unwrap()
    }

    /// `registry/repository` of each source, in order.
    fn tried(mirrors: &Mirrors, reference_text: &str) -> Vec<String> {
        let sources = mirrors.sources(&reference(reference_text)).unwrap();
        sources
            .iter()
            .map(|s| format!("{}/{}", s.registry, s.repository))
            .collect()
    }

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn error_text(result: Result<Mirrors, Error>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn nothing_configured_is_the_origin_alone() {
        let mirrors = Mirrors::load(&MirrorSettings::default()).unwrap();
        assert!(mirrors.is_empty());
        let sources = mirrors.sources(&reference("busybox")).unwrap();
        assert_eq!(
            sources,
            [Source {
                registry: "docker.io".into(),
                repository: "library/busybox".into(),
                role: Role::Origin,
                ns: None,
                configured_in: None,
            }]
        );
        assert!(mirrors.host_settings().is_empty());
        // Only search settings: still nothing that changes a pull.
        assert!(conf("unqualified-search-registries = [\"docker.io\"]").is_empty());
    }

    #[test]
    fn longest_prefix_wins() {
        let mirrors = conf(
            r#"
            [[registry]]
            prefix = "docker.io"
            location = "docker.io"
            [[registry.mirror]]
            location = "hub-mirror.example"

            [[registry]]
            prefix = "docker.io/library"
            location = "docker.io/library"
            [[registry.mirror]]
            location = "library-mirror.example/lib"
            "#,
        );
        assert_eq!(
            tried(&mirrors, "busybox"),
            [
                "library-mirror.example/lib/busybox",
                "docker.io/library/busybox"
            ]
        );
        assert_eq!(
            tried(&mirrors, "grafana/grafana"),
            [
                "hub-mirror.example/grafana/grafana",
                "docker.io/grafana/grafana"
            ]
        );
        assert_eq!(tried(&mirrors, "quay.io/x/y"), ["quay.io/x/y"]);
    }

    #[test]
    fn prefixes_match_whole_path_components() {
        let mirrors = conf(
            r#"
            [[registry]]
            prefix = "docker.io/lib"
            location = "wrong.example"
            [[registry]]
            location = "localhost"
            blocked = true
            [[registry]]
            location = "quay.io/org/"
            [[registry.mirror]]
            location = "quay-mirror.example/org"
            "#,
        );
        assert_eq!(tried(&mirrors, "busybox"), ["docker.io/library/busybox"]);
        assert_eq!(tried(&mirrors, "docker.io/lib/x"), ["wrong.example/x"]);
        // `localhost` is not `localhost:5000`.
        assert_eq!(tried(&mirrors, "localhost:5000/x"), ["localhost:5000/x"]);
        assert!(mirrors.sources(&reference("localhost/x")).is_err());
        // The trailing `/` is not part of the prefix; a whole repository matches too.
        assert_eq!(
            tried(&mirrors, "quay.io/org/app:1"),
            ["quay-mirror.example/org/app", "quay.io/org/app"]
        );
        assert_eq!(
            tried(&mirrors, "quay.io/organization/app"),
            ["quay.io/organization/app"]
        );
    }

    #[test]
    fn wildcard_prefix_matches_subdomains_only() {
        let mirrors = conf(
            r#"
            [[registry]]
            prefix = "*.example.com"
            insecure = true
            [[registry.mirror]]
            location = "cache.internal/example"
            "#,
        );
        assert_eq!(
            tried(&mirrors, "a.b.example.com:5000/team/app"),
            [
                "cache.internal/example/team/app",
                "a.b.example.com:5000/team/app"
            ]
        );
        assert_eq!(tried(&mirrors, "example.com/app"), ["example.com/app"]);
        assert_eq!(
            tried(&mirrors, "notexample.com/app"),
            ["notexample.com/app"]
        );
        assert_eq!(
            tried(&mirrors, "quay.io/example.com/app"),
            ["quay.io/example.com/app"]
        );
        // Its `insecure` is known only for a given reference.
        assert!(!mirrors.host_settings().contains_key("a.example.com"));
        let settings = mirrors.host_settings_for(&reference("a.example.com/app"));
        assert_eq!(settings["a.example.com"], insecure());
        let bad = Mirrors::from_registries_conf_str(
            "[[registry]]\nprefix = \"*.example.com/foo\"\n",
            Path::new("w.conf"),
        );
        assert!(error_text(bad).contains("*.domain"));
    }

    #[test]
    fn locations_rewrite_origin_and_mirrors() {
        let mirrors = conf(
            r#"
            [[registry]]
            prefix = "docker.io"
            location = "hub.corp.example/proxy"
            [[registry.mirror]]
            location = "mirror.site:5000/dockerhub"
            "#,
        );
        let sources = mirrors.sources(&reference("busybox")).unwrap();
        let file = Some(PathBuf::from("/etc/containers/registries.conf"));
        assert_eq!(
            sources,
            [
                Source {
                    registry: "mirror.site:5000".into(),
                    repository: "dockerhub/library/busybox".into(),
                    role: Role::Mirror,
                    ns: None,
                    configured_in: file.clone(),
                },
                Source {
                    registry: "hub.corp.example".into(),
                    repository: "proxy/library/busybox".into(),
                    role: Role::Origin,
                    ns: None,
                    configured_in: file,
                },
            ]
        );
        // Onto Docker Hub: its library/ normalization applies.
        let onto_hub =
            conf("[[registry]]\nprefix = \"corp.example/hub\"\nlocation = \"docker.io\"");
        assert_eq!(
            tried(&onto_hub, "corp.example/hub/busybox"),
            ["docker.io/library/busybox"]
        );
        // A location without a registry host is refused when used, naming file and prefix.
        let hostless =
            conf("[[registry]]\nprefix = \"quay.io/a/b\"\nlocation = \"mirror.example\"");
        let e = hostless
            .sources(&reference("quay.io/a/b"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("registries.conf") && e.contains("quay.io/a/b"),
            "{e}"
        );
    }

    #[test]
    fn digest_only_and_tag_only_mirrors() {
        let mirrors = conf(
            r#"
            [[registry]]
            location = "quay.io"
            [[registry.mirror]]
            location = "digests.example"
            pull-from-mirror = "digest-only"
            [[registry.mirror]]
            location = "tags.example"
            pull-from-mirror = "tag-only"
            [[registry.mirror]]
            location = "all.example"
            pull-from-mirror = "all"

            [[registry]]
            location = "ghcr.io"
            mirror-by-digest-only = true
            [[registry.mirror]]
            location = "old-style.example"
            "#,
        );
        assert_eq!(
            tried(&mirrors, "quay.io/a/b:1"),
            ["tags.example/a/b", "all.example/a/b", "quay.io/a/b"]
        );
        // A tag and a digest: the digest is what is pulled.
        assert_eq!(
            tried(&mirrors, &format!("quay.io/a/b:1@{DIGEST}")),
            ["digests.example/a/b", "all.example/a/b", "quay.io/a/b"]
        );
        assert_eq!(tried(&mirrors, "ghcr.io/a/b"), ["ghcr.io/a/b"]);
        assert_eq!(
            tried(&mirrors, &format!("ghcr.io/a/b@{DIGEST}")),
            ["old-style.example/a/b", "ghcr.io/a/b"]
        );
    }

    #[test]
    fn invalid_registry_entries_name_the_file() {
        for (text, expected) in [
            (
                "[[registry]]\nlocation = \"q.io\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.io\"\npull-from-mirror = \"tag-only\"",
                "cannot both be set",
            ),
            (
                "[[registry]]\nlocation = \"q.io\"\n[[registry.mirror]]\nlocation = \"m.io\"\npull-from-mirror = \"sometimes\"",
                "sometimes",
            ),
            (
                "[[registry]]\nlocation = \"https://q.io\"",
                "without http://",
            ),
            (
                "[[registry]]\ninsecure = true",
                "neither prefix nor location",
            ),
            ("[[registry]]\nprefix = \"q.io\"", "location is required"),
            (
                "[[registry]]\nlocation = \"q.io\"\n[[registry.mirror]]\ninsecure = true",
                "no location",
            ),
            (
                "[[registry]]\nlocation = \"q.io\"\ninsecure = \"yes\"",
                "not valid TOML",
            ),
        ] {
            let e = error_text(Mirrors::from_registries_conf_str(
                text,
                Path::new("/x/bad.conf"),
            ));
            assert!(
                e.contains("/x/bad.conf") && e.contains(expected),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn blocked_is_an_error_naming_reference_prefix_and_file() {
        let mirrors = conf(
            "[[registry]]\nprefix = \"docker.io/evil\"\nlocation = \"docker.io/evil\"\nblocked = true",
        );
        let e = mirrors
            .sources(&reference("evil/app:1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("docker.io/evil/app:1"), "{e}");
        assert!(e.contains("\"docker.io/evil\""), "{e}");
        assert!(e.contains("/etc/containers/registries.conf"), "{e}");
        assert!(mirrors.sources(&reference("busybox")).is_ok());
    }

    #[test]
    fn insecure_registries_and_mirrors_get_host_settings() {
        let mirrors = conf(
            r#"
            [[registry]]
            prefix = "docker.io"
            location = "proxy.corp:8080/hub"
            insecure = true
            [[registry.mirror]]
            location = "10.0.0.5:5000/hub"
            insecure = true
            [[registry.mirror]]
            location = "secure.example/hub"
            "#,
        );
        let settings = mirrors.host_settings();
        assert_eq!(settings.len(), 2, "{settings:?}");
        assert_eq!(settings["proxy.corp:8080"], insecure());
        assert_eq!(settings["10.0.0.5:5000"], insecure());
    }

    #[test]
    fn version_1_block_and_insecure_are_honoured() {
        let mirrors = conf(
            r#"
            [registries.search]
            registries = ["docker.io"]
            [registries.insecure]
            registries = ["http-only.example:5000"]
            [registries.block]
            registries = ["blocked.example"]
            "#,
        );
        assert!(mirrors.sources(&reference("blocked.example/a")).is_err());
        assert_eq!(
            mirrors.host_settings()["http-only.example:5000"],
            insecure()
        );
        let mixed =
            "[registries.block]\nregistries = [\"a.io\"]\n[[registry]]\nlocation = \"b.io\"";
        let e = error_text(Mirrors::from_registries_conf_str(
            mixed,
            Path::new("m.conf"),
        ));
        assert!(e.contains("mixes"), "{e}");
    }

    #[test]
    fn drop_ins_apply_in_lexical_order_and_replace_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("registries.conf");
        let drop_ins = dir.path().join("registries.conf.d");
        write(
            &main,
            "[[registry]]\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"main.example\"\n\
             [[registry]]\nlocation = \"quay.io\"\n[[registry.mirror]]\nlocation = \"quay-main.example\"",
        );
        write(
            &drop_ins.join("20-late.conf"),
            "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"late.example\"",
        );
        write(
            &drop_ins.join("10-early.conf"),
            "[[registry]]\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"early.example\"",
        );
        write(&drop_ins.join("99-ignored.conf.bak"), "garbage [[");
        write(&drop_ins.join("sub.conf/x.conf"), "garbage [[");
        let settings = MirrorSettings {
            registries_conf: vec![main.clone(), drop_ins.clone(), dir.path().join("missing.d")],
            hosts_dir: None,
        };
        let mirrors = Mirrors::load(&settings).unwrap();
        let sources = mirrors.sources(&reference("busybox")).unwrap();
        assert_eq!(sources[0].registry, "late.example");
        assert_eq!(
            sources[0].configured_in,
            Some(drop_ins.join("20-late.conf"))
        );
        assert_eq!(sources.len(), 2);
        // Other prefixes of the main file stay.
        assert_eq!(tried(&mirrors, "quay.io/a/b")[0], "quay-main.example/a/b");
        // Drop-ins must use the version 2 format.
        write(
            &drop_ins.join("30-v1.conf"),
            "[registries.block]\nregistries = [\"x.io\"]",
        );
        let e = error_text(Mirrors::load(&settings));
        assert!(e.contains("30-v1.conf") && e.contains("version 2"), "{e}");
    }

    #[test]
    fn registries_conf_list_follows_containers_image() {
        let home = tempfile::tempdir().unwrap();
        let home_text = home.path().as_os_str().to_owned();
        // The list for a process environment of `vars` plus HOME.
        let paths = |vars: &[(&str, &str)]| {
            registries_conf_paths(|name: &str| {
                if name == "HOME" {
                    return Some(home_text.clone());
                }
                vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.into())
            })
        };
        let user_d = home.path().join(".config/containers/registries.conf.d");
        let system = PathBuf::from("/etc/containers/registries.conf");
        let system_d = PathBuf::from("/etc/containers/registries.conf.d");

        assert_eq!(
            paths(&[]),
            [system.clone(), system_d.clone(), user_d.clone()]
        );
        // The variable replaces the main file only; drop-ins still apply.
        let explicit = [("CONTAINERS_REGISTRIES_CONF", "/tmp/r.conf")];
        assert_eq!(
            paths(&explicit),
            [
                PathBuf::from("/tmp/r.conf"),
                system_d.clone(),
                user_d.clone()
            ]
        );
        let old = [("REGISTRIES_CONFIG_PATH", "/tmp/old.conf")];
        assert_eq!(paths(&old)[0], PathBuf::from("/tmp/old.conf"));
        // Set but empty: the default, and the older name is not consulted.
        let empty = [
            ("CONTAINERS_REGISTRIES_CONF", ""),
            ("REGISTRIES_CONFIG_PATH", "/tmp/old.conf"),
        ];
        assert_eq!(paths(&empty)[0], system);

        // A user registries.conf replaces the system file and the system drop-ins.
        let user = home.path().join(".config/containers/registries.conf");
        write(&user, "");
        assert_eq!(paths(&[]), [user, user_d.clone()]);
        assert_eq!(paths(&explicit)[0], PathBuf::from("/tmp/r.conf"));

        // No home: system files only.
        let no_home = |name: &str| (name == "PATH").then(|| OsString::from("/bin"));
        assert_eq!(registries_conf_paths(no_home), [system, system_d]);
    }

    /// A hosts directory with `files` (path under it, text).
    fn hosts_dir(files: &[(&str, &str)]) -> (tempfile::TempDir, Mirrors) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            write(&dir.path().join(path), text);
        }
        let settings = MirrorSettings {
            registries_conf: Vec::new(),
            hosts_dir: Some(dir.path().to_owned()),
        };
        let mirrors = Mirrors::load(&settings).unwrap();
        (dir, mirrors)
    }

    #[test]
    fn hosts_toml_hosts_in_file_order_then_server() {
        let (dir, mirrors) = hosts_dir(&[(
            "docker.io/hosts.toml",
            r#"
            server = "https://registry-1.docker.io"

            [host."https://zz-first.example:5000"]
              capabilities = ["pull", "resolve"]
              [host."https://zz-first.example:5000".header]
                x-custom = "ignored"
            [host."https://aa-second.example"]
            [host."mm-third.example"]
              capabilities = ["pull", "resolve", "push"]
            "#,
        )]);
        let file = Some(dir.path().join("docker.io/hosts.toml"));
        let sources = mirrors.sources(&reference("busybox")).unwrap();
        let mirror = |registry: &str| Source {
            registry: registry.into(),
            repository: "library/busybox".into(),
            role: Role::Mirror,
            ns: Some("docker.io".into()),
            configured_in: file.clone(),
        };
        assert_eq!(
            sources,
            [
                mirror("zz-first.example:5000"),
                mirror("aa-second.example"),
                mirror("mm-third.example"),
                Source {
                    registry: "docker.io".into(),
                    repository: "library/busybox".into(),
                    role: Role::Origin,
                    ns: None,
                    configured_in: file.clone(),
                },
            ]
        );
        assert!(!mirrors.is_empty());
        // Other registries: not configured by a docker.io hosts.toml.
        assert_eq!(tried(&mirrors, "quay.io/a/b"), ["quay.io/a/b"]);
    }

    #[test]
    fn hosts_toml_capabilities() {
        let (_dir, mirrors) = hosts_dir(&[(
            "quay.io/hosts.toml",
            r#"
            [host."https://public-mirror.example"]
              capabilities = ["pull"]
            [host."https://push-only.example"]
              capabilities = ["push"]
            [host."https://private-mirror.example"]
              capabilities = ["pull", "resolve"]
            "#,
        )]);
        assert_eq!(
            tried(&mirrors, "quay.io/a/b:1"),
            ["private-mirror.example/a/b", "quay.io/a/b"]
        );
        assert_eq!(
            tried(&mirrors, &format!("quay.io/a/b@{DIGEST}")),
            [
                "public-mirror.example/a/b",
                "private-mirror.example/a/b",
                "quay.io/a/b"
            ]
        );
        // A server that may not resolve tags is no origin for a tag.
        let (_dir, pull_only) = hosts_dir(&[(
            "quay.io/hosts.toml",
            "server = \"https://only.example\"\ncapabilities = [\"pull\"]",
        )]);
        let e = pull_only
            .sources(&reference("quay.io/a/b:1"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("quay.io/a/b:1") && e.contains("hosts.toml") && e.contains("resolve"),
            "{e}"
        );
        let by_digest = pull_only
            .sources(&reference(&format!("quay.io/a/b@{DIGEST}")))
            .unwrap();
        assert_eq!(by_digest[0].registry, "only.example");
        assert_eq!(by_digest[0].ns.as_deref(), Some("quay.io"));
        let unknown = Mirrors::from_hosts_toml_str(
            "quay.io",
            "[host.\"https://m.example\"]\ncapabilities = [\"fly\"]",
            Path::new("/d/quay.io/hosts.toml"),
        );
        assert!(error_text(unknown).contains("fly"));
    }

    #[test]
    fn hosts_toml_server_replaces_the_origin() {
        let (_dir, mirrors) = hosts_dir(&[(
            "_default/hosts.toml",
            "server = \"https://registry.example.com\"",
        )]);
        let sources = mirrors.sources(&reference("ghcr.io/a/b")).unwrap();
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0].registry, "registry.example.com");
        assert_eq!(sources[0].role, Role::Origin);
        // containerd sends ns to any host other than the registry, the server included.
        assert_eq!(sources[0].ns.as_deref(), Some("ghcr.io"));
        // The registry itself as a host: no ns, and tried once (as the origin).
        let (_dir, itself) = hosts_dir(&[(
            "docker.io/hosts.toml",
            "server = \"https://docker.io\"\n[host.\"https://registry-1.docker.io\"]\ncapabilities = [\"pull\", \"resolve\"]",
        )]);
        let sources = itself.sources(&reference("busybox")).unwrap();
        assert_eq!(sources.len(), 1, "{sources:?}");
        assert_eq!(
            (sources[0].registry.as_str(), sources[0].ns.as_ref()),
            ("docker.io", None)
        );
    }

    #[test]
    fn hosts_toml_certificates_and_schemes() {
        let (dir, mirrors) = hosts_dir(&[(
            "reg.example:5000/hosts.toml",
            r#"
            ca = "server-ca.pem"
            skip_verify = true

            [host."http://plain.example:5000"]
            [host."http://plain-with-ca.example:5000"]
              ca = ["/abs/ca-1.pem", "rel/ca-2.pem"]
            [host."https://client-one.example"]
              client = "both.pem"
            [host."https://client-list.example"]
              client = ["both-1.pem", "/abs/both-2.pem"]
            [host."https://client-pairs.example"]
              client = [["c.cert", "c.key"], ["/abs/combined.pem", ""]]
            "#,
        )]);
        let base = dir.path().join("reg.example:5000");
        let settings = mirrors.host_settings();
        let plain = &settings["plain.example:5000"];
        assert!(plain.force_http && !plain.allow_http);
        let with_ca = &settings["plain-with-ca.example:5000"];
        assert!(with_ca.allow_http && !with_ca.force_http);
        assert_eq!(
            with_ca.ca_certs,
            [PathBuf::from("/abs/ca-1.pem"), base.join("rel/ca-2.pem")]
        );
        assert_eq!(
            settings["client-one.example"].client_certs,
            [(base.join("both.pem"), base.join("both.pem"))]
        );
        assert_eq!(
            settings["client-list.example"].client_certs,
            [
                (base.join("both-1.pem"), base.join("both-1.pem")),
                ("/abs/both-2.pem".into(), "/abs/both-2.pem".into()),
            ]
        );
        assert_eq!(
            settings["client-pairs.example"].client_certs,
            [
                (base.join("c.cert"), base.join("c.key")),
                ("/abs/combined.pem".into(), "/abs/combined.pem".into()),
            ]
        );
        // Top-level settings are the server's: here the registry itself.
        let server = &settings["reg.example:5000"];
        assert!(server.skip_verify);
        assert_eq!(server.ca_certs, [base.join("server-ca.pem")]);
        let bad_pair = Mirrors::from_hosts_toml_str(
            "x.io",
            "[host.\"https://m.example\"]\nclient = [[\"a\", \"b\", \"c\"]]",
            Path::new("/d/x.io/hosts.toml"),
        );
        assert!(error_text(bad_pair).contains("pair"));
    }

    #[test]
    fn hosts_under_a_path_are_left_out() {
        let (_dir, mirrors) = hosts_dir(&[(
            "docker.io/hosts.toml",
            r#"
            [host."https://mirror.example/v2/upstream"]
              capabilities = ["pull", "resolve"]
            [host."https://non-compliant.example"]
              override_path = true
            [host."ftp://odd.example"]
            [host."https://with-v2.example/v2"]
            "#,
        )]);
        assert_eq!(
            tried(&mirrors, "busybox"),
            [
                "with-v2.example/library/busybox",
                "docker.io/library/busybox"
            ]
        );
    }

    #[test]
    fn hosts_directory_lookup_order() {
        let (_dir, mirrors) = hosts_dir(&[
            (
                "_default/hosts.toml",
                "[host.\"https://default-mirror.example\"]",
            ),
            (
                "reg.example_5000_/hosts.toml",
                "[host.\"https://underscored.example\"]",
            ),
            (
                "reg.example:5000/hosts.toml",
                "[host.\"https://coloned.example\"]",
            ),
            (
                "other.example:5000/hosts.toml",
                "[host.\"https://other-mirror.example\"]",
            ),
            // A directory without hosts.toml (certificates only) shadows _default.
            ("certs-only.example/ca.crt", "not read here"),
        ]);
        assert_eq!(
            tried(&mirrors, "reg.example:5000/a")[0],
            "underscored.example/a"
        );
        assert_eq!(
            tried(&mirrors, "other.example:5000/a")[0],
            "other-mirror.example/a"
        );
        assert_eq!(
            tried(&mirrors, "quay.io/a/b"),
            ["default-mirror.example/a/b", "quay.io/a/b"]
        );
        assert_eq!(
            tried(&mirrors, "busybox")[0],
            "default-mirror.example/library/busybox"
        );
        assert_eq!(
            tried(&mirrors, "certs-only.example/a"),
            ["certs-only.example/a"]
        );
    }

    #[test]
    fn hosts_toml_takes_precedence_but_blocked_still_applies() {
        let dir = tempfile::tempdir().unwrap();
        let conf_path = dir.path().join("registries.conf");
        write(
            &conf_path,
            r#"
            [[registry]]
            location = "docker.io"
            [[registry.mirror]]
            location = "conf-mirror.example"
            [[registry]]
            location = "quay.io"
            [[registry.mirror]]
            location = "quay-conf-mirror.example"
            [[registry]]
            location = "ghcr.io"
            blocked = true
            "#,
        );
        let certs = dir.path().join("certs.d");
        write(
            &certs.join("docker.io/hosts.toml"),
            "[host.\"https://toml-mirror.example\"]",
        );
        write(
            &certs.join("ghcr.io/hosts.toml"),
            "[host.\"https://ghcr-mirror.example\"]",
        );
        let mirrors = Mirrors::load(&MirrorSettings {
            registries_conf: vec![conf_path],
            hosts_dir: Some(certs),
        })
        .unwrap();
        assert_eq!(
            tried(&mirrors, "busybox"),
            [
                "toml-mirror.example/library/busybox",
                "docker.io/library/busybox"
            ]
        );
        assert_eq!(
            tried(&mirrors, "quay.io/a/b")[0],
            "quay-conf-mirror.example/a/b"
        );
        assert!(mirrors.sources(&reference("ghcr.io/a/b")).is_err());
    }

    #[test]
    fn default_hosts_toml_top_level_settings_apply_to_each_registry() {
        let (_dir, mirrors) = hosts_dir(&[("_default/hosts.toml", "skip_verify = true")]);
        assert!(mirrors.host_settings().is_empty());
        let settings = mirrors.host_settings_for(&reference("quay.io/a/b"));
        assert!(settings["quay.io"].skip_verify);
    }

    #[test]
    fn unparsable_files_are_errors_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let conf_path = dir.path().join("registries.conf");
        write(&conf_path, "[[registry]\nlocation = ");
        let e = error_text(Mirrors::load(&MirrorSettings {
            registries_conf: vec![conf_path.clone()],
            hosts_dir: None,
        }));
        assert!(
            e.contains(&conf_path.display().to_string()) && e.contains("TOML"),
            "{e}"
        );

        let certs = dir.path().join("certs.d");
        let hosts_path = certs.join("docker.io/hosts.toml");
        write(&hosts_path, "server = \n");
        let e = error_text(Mirrors::load(&MirrorSettings {
            registries_conf: Vec::new(),
            hosts_dir: Some(certs),
        }));
        assert!(
            e.contains(&hosts_path.display().to_string()) && e.contains("TOML"),
            "{e}"
        );
    }

    #[test]
    fn files_over_one_mib_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registries.conf");
        let mut text = String::from("# padding\n");
        text.push_str(&"#".repeat(MAX_CONFIG_BYTES as usize));
        write(&path, &text);
        let e = Mirrors::load(&MirrorSettings {
            registries_conf: vec![path.clone()],
            hosts_dir: None,
        })
        .unwrap_err();
        assert!(matches!(e, Error::TooLarge { .. }), "{e}");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    }

    #[test]
    fn mirrors_per_entry_are_capped() {
        let mut text = String::from("[[registry]]\nlocation = \"quay.io\"\n");
        for i in 0..40 {
            text.push_str(&format!(
                "[[registry.mirror]]\nlocation = \"m{i}.example\"\n"
            ));
        }
        let sources = conf(&text).sources(&reference("quay.io/a/b")).unwrap();
        assert_eq!(sources.len(), MAX_MIRRORS_PER_ENTRY + 1);
        assert_eq!(sources[MAX_MIRRORS_PER_ENTRY].registry, "quay.io");
    }
}
