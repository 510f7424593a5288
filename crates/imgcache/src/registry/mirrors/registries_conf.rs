//! containers' registries.conf: `[[registry]]` entries (and the version 1 tables), checked
//! as containers/image checks them, and the hosts each one gives a reference.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConfKind {
    Main,
    DropIn,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub(super) struct RegistriesConfToml {
    pub(super) registry: Vec<RegistryToml>,
    /// The version 1 format.
    pub(super) registries: Option<V1Toml>,
    // Read only to detect a file mixing both formats, which containers/image refuses.
    pub(super) unqualified_search_registries: Option<IgnoredAny>,
    pub(super) short_name_mode: Option<IgnoredAny>,
    pub(super) aliases: Option<IgnoredAny>,
    pub(super) credential_helpers: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub(super) struct RegistryToml {
    pub(super) prefix: String,
    pub(super) location: String,
    pub(super) insecure: bool,
    pub(super) blocked: bool,
    pub(super) mirror_by_digest_only: bool,
    pub(super) pull_from_mirror: String,
    pub(super) mirror: Vec<MirrorToml>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub(super) struct MirrorToml {
    pub(super) location: String,
    pub(super) insecure: bool,
    pub(super) pull_from_mirror: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct V1Toml {
    pub(super) insecure: V1List,
    pub(super) block: V1List,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct V1List {
    pub(super) registries: Vec<String>,
}

/// One `[[registry]]`, checked and normalized.
#[derive(Debug, Clone)]
pub(super) struct RegistryEntry {
    /// Without a trailing `/`; `*.example.com` for a wildcard.
    pub(super) prefix: String,
    /// Empty only for a wildcard prefix: the reference is not rewritten.
    pub(super) location: String,
    pub(super) insecure: bool,
    pub(super) blocked: bool,
    pub(super) mirrors: Vec<MirrorEntry>,
    pub(super) configured_in: PathBuf,
}

#[derive(Debug, Clone)]
pub(super) struct MirrorEntry {
    pub(super) location: String,
    pub(super) insecure: bool,
    pub(super) used_for: UsedFor,
}

/// Which references a registries.conf mirror may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UsedFor {
    All,
    DigestOnly,
    TagOnly,
}

impl UsedFor {
    pub(super) fn allows(self, digest_pinned: bool) -> bool {
        match self {
            UsedFor::All => true,
            UsedFor::DigestOnly => digest_pinned,
            UsedFor::TagOnly => !digest_pinned,
        }
    }
}

pub(super) fn parse_registries_conf(
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
pub(super) fn v1_entries(v1: V1Toml, path: &Path) -> Result<Vec<RegistryEntry>, Error> {
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
pub(super) fn clean_location(text: &str, path: &Path) -> Result<String, Error> {
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
pub(super) fn checked_entry(table: RegistryToml, path: &Path) -> Result<RegistryEntry, Error> {
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
pub(super) fn location_host(location: &str) -> &str {
    location.split('/').next().unwrap_or(location)
}

/// The host without its port, for wildcard matching.
pub(super) fn host_without_port(registry: &str) -> &str {
    match registry.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => registry,
    }
}

impl RegistryEntry {
    /// When this entry applies to `reference` (`name` is its `registry/repository`), how many
    /// bytes of `name` its prefix stands for: what a location replaces.
    pub(super) fn matched_len(&self, reference: &Reference, name: &str) -> Option<usize> {
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

    pub(super) fn sources(&self, reference: &Reference) -> Result<Vec<Source>, Error> {
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
    pub(super) fn rewrite(
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
