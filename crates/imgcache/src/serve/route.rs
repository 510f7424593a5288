//! Request paths of the distribution API, checked against its grammar before anything
//! touches the store.
//!
//! Nothing is percent-decoded: the grammar allows no `%`, so `%2e%2e` is simply an invalid
//! name, and no decoded form can smuggle `..` or `/` past the check.

use crate::cache::ManifestRef;
use crate::digest::Digest;

/// The distribution spec's limit on a repository name, used for paths too.
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags { name: String },
    /// `/v2/<name>/manifests/<tag|digest>`
    Manifest {
        name: String,
        reference: ManifestRef,
    },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: String, digest: Digest },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: String, digest: Digest },
}

/// Why a path is refused, with the spec's error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Not a path of the API at all (404).
    NotFound,
    /// The repository name breaks the grammar (`NAME_INVALID`, 400).
    Name(String),
    /// The tag breaks the grammar (`MANIFEST_INVALID`, 400).
    Reference(String),
    /// The digest is not `sha256:<64 hex>` (`DIGEST_INVALID`, 400).
    Digest(String),
}

impl Route {
    /// Parses the path of a request (without its query).
    pub fn parse(path: &str) -> Result<Route, RouteError> {
        let rest = match path.strip_prefix("/v2") {
            Some("" | "/") => return Ok(Route::Base),
            Some(rest) => rest.strip_prefix('/').ok_or(RouteError::NotFound)?,
            None => return Err(RouteError::NotFound),
        };
        if rest == "_catalog" {
            return Ok(Route::Catalog);
        }
        if let Some(name) = rest.strip_suffix("/tags/list") {
            return Ok(Route::Tags {
                name: checked_name(name)?,
            });
        }
        // The name may itself contain `manifests` or `blobs` components: split at the last.
        let (name, kind, last) = ["/manifests/", "/blobs/", "/referrers/"]
            .iter()
            .filter_map(|k| rest.rfind(k).map(|i| (i, *k)))
            .max_by_key(|(i, _)| *i)
            .map(|(i, k)| (&rest[..i], k, &rest[i + k.len()..]))
            .ok_or(RouteError::NotFound)?;
        let name = checked_name(name)?;
        match kind {
            "/manifests/" => {
                let reference = if last.contains(':') {
                    ManifestRef::Digest(checked_digest(last)?)
                } else if valid_tag(last) {
                    ManifestRef::Tag(last.to_owned())
                } else {
                    return Err(RouteError::Reference(shorten(last)));
                };
                Ok(Route::Manifest { name, reference })
            }
            "/blobs/" => Ok(Route::Blob {
                name,
                digest: checked_digest(last)?,
            }),
            _ => Ok(Route::Referrers {
                name,
                digest: checked_digest(last)?,
            }),
        }
    }

    /// The repository name in the path, when there is one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags { name }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::Referrers { name, .. } => Some(name),
        }
    }
}

/// `path-component ("/" path-component)*`, each `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn checked_name(name: &str) -> Result<String, RouteError> {
    let ok = !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('/').all(valid_component);
    if ok {
        Ok(name.to_owned())
    } else {
        Err(RouteError::Name(shorten(name)))
    }
}

pub(super) fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    // Separators: one `.`, one or two `_`, or any run of `-`, always between alphanumerics.
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let fine = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !fine {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || b"_.-".contains(x))
}

fn checked_digest(text: &str) -> Result<Digest, RouteError> {
    Digest::parse(text).map_err(|_| RouteError::Digest(shorten(text)))
}

/// Enough of a hostile path to name it in an error, never all of it.
fn shorten(text: &str) -> String {
    crate::digest::truncate_for_message(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_every_route() {
        assert_eq!(Route::parse("/v2/"), Ok(Route::Base));
        assert_eq!(Route::parse("/v2"), Ok(Route::Base));
        assert_eq!(Route::parse("/v2/_catalog"), Ok(Route::Catalog));
        assert_eq!(
            Route::parse("/v2/library/busybox/tags/list"),
            Ok(Route::Tags {
                name: "library/busybox".into()
            })
        );
        assert_eq!(
            Route::parse("/v2/busybox/manifests/v1"),
            Ok(Route::Manifest {
                name: "busybox".into(),
                reference: ManifestRef::Tag("v1".into())
            })
        );
        let digest = Digest::parse(D).unwrap();
        assert_eq!(
            Route::parse(&format!("/v2/a/manifests/b/blobs/{D}")),
            Ok(Route::Blob {
                name: "a/manifests/b".into(),
                digest
            })
        );
        assert_eq!(
            Route::parse(&format!("/v2/127.0.0.1__5000/x/referrers/{D}")),
            Ok(Route::Referrers {
                name: "127.0.0.1__5000/x".into(),
                digest
            })
        );
    }

    #[test]
    fn refuses_what_the_grammar_does_not_allow() {
        for (path, want) in [
            ("/v2/../etc/manifests/v1", "name"),
            ("/v2/%2e%2e/manifests/v1", "name"),
            ("/v2//abs/manifests/v1", "name"),
            ("/v2/a/../b/manifests/v1", "name"),
            ("/v2/A/manifests/v1", "name"),
            ("/v2/a\0b/manifests/v1", "name"),
            ("/v2/a___b/manifests/v1", "name"),
            ("/v2/a./manifests/v1", "name"),
            ("/v2/a/manifests/.v1", "reference"),
            ("/v2/a/manifests/v1%00", "reference"),
            ("/v2/a/manifests/sha256:xyz", "digest"),
            ("/v2/a/blobs/md5:00", "digest"),
            ("/v2/a/blobs/../../x", "digest"),
            ("/v3/a/manifests/v1", "not found"),
            ("/v2/a/uploads/", "not found"),
        ] {
            let got = match Route::parse(path) {
                Err(RouteError::Name(_)) => "name",
                Err(RouteError::Reference(_)) => "reference",
                Err(RouteError::Digest(_)) => "digest",
                Err(RouteError::NotFound) => "not found",
                Ok(r) => panic!("{path:?} parsed as {r:?}"),
            };
            assert_eq!(got, want, "{path:?}");
        }
        let long = format!("/v2/{}/manifests/v1", "a".repeat(256));
        assert!(matches!(Route::parse(&long), Err(RouteError::Name(_))));
        let long_tag = format!("/v2/a/manifests/{}", "t".repeat(129));
        assert!(matches!(
            Route::parse(&long_tag),
            Err(RouteError::Reference(_))
        ));
    }
}
