//! Which cached repository a request path means. In this order:
//!
//! 1. `?ns=REGISTRY` with `/v2/REPO/...`: what containerd and Docker's containerd store send
//!    to a mirror. `GET /v2/library/busybox/manifests/1.36?ns=docker.io` is
//!    `docker.io/library/busybox:1.36`.
//! 2. `/v2/REGISTRY/REPO/...`: a path prefix, the style of a `registries.conf` mirror whose
//!    location is `HOST:PORT/REGISTRY`. The first component is a registry when it has a `.`,
//!    is `localhost`, or carries a port written `HOST__PORT` (a `:` is not allowed in a
//!    path): `/v2/127.0.0.1__5000/busybox/manifests/v1` is `127.0.0.1:5000/busybox:v1`, and
//!    `/v2/docker.io/busybox/...` is `docker.io/library/busybox` (the rules of references).
//!    A first component that no cached reference uses as a registry, in a name that is
//!    itself a cached repository, is read as rule 3 instead.
//! 3. `/v2/REPO/...` alone: the registry of the one cached repository of that name
//!    (`/v2/busybox/manifests/v1` is `127.0.0.1:5000/busybox:v1` when only that registry has a
//!    `busybox`; `docker.io/library/busybox` counts as `busybox`). Several: an error naming
//!    them. None: `docker.io`, the only registry classic dockerd mirrors.

use std::collections::BTreeSet;

use crate::cache::Origin;
use crate::reference::DEFAULT_REGISTRY;

/// Why a path names no single repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// Several registries in the cache hold this repository.
    Ambiguous(Vec<Origin>),
    /// `?ns=` is not a registry host.
    BadNamespace(String),
}

/// Maps a path's repository name (already checked against the grammar) and its `ns` query
/// parameter to the origin repository, given the repositories the cache holds.
pub fn resolve(
    name: &str,
    ns: Option<&str>,
    cached: &BTreeSet<Origin>,
) -> Result<Origin, Unresolved> {
    if let Some(ns) = ns {
        let registry = normalize_registry(ns).ok_or_else(|| Unresolved::BadNamespace(ns.into()))?;
        return Ok(origin(registry, name));
    }
    if let Some((first, rest)) = name.split_once('/')
        && let Some(registry) = prefix_registry(first)
    {
        let known = cached.iter().any(|o| o.registry == registry);
        if known || alone(name, cached).is_empty() {
            return Ok(origin(registry, rest));
        }
    }
    let found = alone(name, cached);
    match found.len() {
        0 => Ok(origin(DEFAULT_REGISTRY.into(), name)),
        1 => Ok(found[0].clone()),
        _ => Err(Unresolved::Ambiguous(found)),
    }
}

/// The cached repositories a bare name can mean.
fn alone(name: &str, cached: &BTreeSet<Origin>) -> Vec<Origin> {
    let library = format!("library/{name}");
    cached
        .iter()
        .filter(|o| {
            o.repository == name || (o.registry == DEFAULT_REGISTRY && o.repository == library)
        })
        .cloned()
        .collect()
}

/// A first path component that names a registry: `HOST` with a `.`, `localhost`, or
/// `HOST__PORT`.
fn prefix_registry(first: &str) -> Option<String> {
    let decoded = match first.rsplit_once("__") {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{host}:{port}")
        }
        _ if first.contains('.') || first == "localhost" => first.to_owned(),
        _ => return None,
    };
    normalize_registry(&decoded)
}

/// `HOST[:PORT]` as references spell it (`index.docker.io` and `registry-1.docker.io` are
/// `docker.io`), or `None` when it is not a host.
pub(super) fn normalize_registry(text: &str) -> Option<String> {
    let host_like = !text.is_empty()
        && text.len() <= 255
        && !text.starts_with(['-', '.', ':'])
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if !host_like {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    Some(match lower.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DEFAULT_REGISTRY.to_owned(),
        _ => lower,
    })
}

fn origin(registry: String, repository: &str) -> Origin {
    let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository.to_owned()
    };
    Origin {
        registry,
        repository,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(registry: &str, repository: &str) -> Origin {
        Origin {
            registry: registry.into(),
            repository: repository.into(),
        }
    }

    #[test]
    fn follows_the_documented_order() {
        let cached: BTreeSet<Origin> = [
            o("127.0.0.1:5000", "busybox"),
            o("127.0.0.1:5000", "multiarch"),
            o("127.0.0.1:5001", "multiarch"),
            o("docker.io", "library/alpine"),
        ]
        .into();
        // 1. ns, with docker.io's library rule.
        assert_eq!(
            resolve("busybox", Some("docker.io"), &cached),
            Ok(o("docker.io", "library/busybox"))
        );
        assert_eq!(
            resolve("busybox", Some("127.0.0.1:5000"), &cached),
            Ok(o("127.0.0.1:5000", "busybox"))
        );
        assert!(matches!(
            resolve("busybox", Some("a/b"), &cached),
            Err(Unresolved::BadNamespace(_))
        ));
        // 2. a registry prefix, a port written HOST__PORT.
        assert_eq!(
            resolve("127.0.0.1__5001/multiarch", None, &cached),
            Ok(o("127.0.0.1:5001", "multiarch"))
        );
        assert_eq!(
            resolve("docker.io/busybox", None, &cached),
            Ok(o("docker.io", "library/busybox"))
        );
        assert_eq!(
            resolve("registry.example.com/team/app", None, &cached),
            Ok(o("registry.example.com", "team/app"))
        );
        // 3. the name alone.
        assert_eq!(
            resolve("busybox", None, &cached),
            Ok(o("127.0.0.1:5000", "busybox"))
        );
        assert_eq!(
            resolve("alpine", None, &cached),
            Ok(o("docker.io", "library/alpine"))
        );
        assert_eq!(
            resolve("multiarch", None, &cached),
            Err(Unresolved::Ambiguous(vec![
                o("127.0.0.1:5000", "multiarch"),
                o("127.0.0.1:5001", "multiarch")
            ]))
        );
        assert_eq!(
            resolve("never/cached", None, &cached),
            Ok(o("docker.io", "never/cached"))
        );
    }

    #[test]
    fn a_dotted_repository_that_is_cached_is_not_read_as_a_registry() {
        let cached: BTreeSet<Origin> = [o("127.0.0.1:5000", "my.team/app")].into();
        assert_eq!(
            resolve("my.team/app", None, &cached),
            Ok(o("127.0.0.1:5000", "my.team/app"))
        );
    }
}
