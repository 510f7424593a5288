//! `sync`: mirror a list of images into a registry through the cache. Each image is pulled
//! (only what the cache lacks is fetched; every platform of an index unless one is asked for),
//! then pushed to `REGISTRY/PREFIX/PATH:TAG`, the path a registries.conf mirror with that
//! location asks for. An image the destination already holds at that tag, by digest, costs one
//! `HEAD`. Images go in parallel; one that fails does not stop the others. Under a policy, the
//! pulls are judged by it and the signatures it accepted go along (see `push`).

use std::sync::Arc;

use serde::Serialize;

use super::Cache;
use super::pull::is_index;
use super::push::{PushOptions, PushReport};
use crate::archive::MAX_MANIFEST_BYTES;
use crate::digest::BlobDigest;
use crate::error::Error;
use crate::platform::PlatformSpec;
use crate::policy::Policy;
use crate::reference::Reference;
use crate::registry::document_media_type;

/// Images synced at once by default.
pub const DEFAULT_SYNC_PARALLEL: usize = 4;

/// What `sync` should do.
#[derive(Clone)]
pub struct SyncOptions {
    /// Sync this platform alone (its manifest, not the index) instead of every platform.
    pub platform: Option<PlatformSpec>,
    /// Images synced at once (at least 1).
    pub parallel: usize,
    /// Called as each image is done.
    pub progress: Option<SyncCallback>,
    /// Pull under this signature policy; the signatures it accepts are kept and pushed along.
    pub policy: Option<Arc<Policy>>,
}

/// What `sync` calls as each image is done.
pub type SyncCallback = Arc<dyn Fn(&SyncItem) + Send + Sync>;

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            platform: None,
            parallel: DEFAULT_SYNC_PARALLEL,
            progress: None,
            policy: None,
        }
    }
}

/// What happened to one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncStatus {
    /// Something was sent (blobs and manifests, or only manifests when every blob was there).
    Pushed,
    /// The destination already held this digest at this tag.
    Skipped,
    Failed,
}

/// One image of a sync.
#[derive(Debug, Clone, Serialize)]
pub struct SyncItem {
    pub source: String,
    pub destination: String,
    pub status: SyncStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<BlobDigest>,
    pub platforms: Vec<String>,
    pub bytes_uploaded: u64,
    pub blobs_uploaded: usize,
    pub blobs_mounted: usize,
    pub blobs_present: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The failure came from the environment (network, disk), not a check that said no.
    #[serde(skip)]
    pub environment: bool,
}

/// The result of a sync.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub destination: String,
    pub images: Vec<SyncItem>,
    pub pushed: usize,
    pub skipped: usize,
    pub failed: usize,
    pub bytes_uploaded: u64,
}

/// The references of an image list: one per line; `#` starts a comment; blank lines are
/// skipped.
pub fn read_image_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_once('#').map_or(l, |(before, _)| before).trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Where `source` lands under `to` (`REGISTRY[/PREFIX]`): `REGISTRY/PREFIX/PATH`, with the
/// source's tag and digest.
pub fn sync_destination(source: &Reference, to: &str) -> Result<Reference, Error> {
    let to = to.trim_end_matches('/');
    let (registry, prefix) = to.split_once('/').unwrap_or((to, ""));
    let invalid = |reason: &str| Error::InvalidReference {
        text: crate::digest::truncate_for_message(to),
        reason: reason.to_owned(),
    };
    if registry.is_empty() || !(registry.contains(['.', ':']) || registry == "localhost") {
        return Err(invalid(
            "--to is REGISTRY[/PREFIX], where REGISTRY is a host (with a dot or a port, or localhost)",
        ));
    }
    let repository = if prefix.is_empty() {
        source.repository.clone()
    } else {
        format!("{prefix}/{}", source.repository)
    };
    let mut text = format!("{registry}/{repository}");
    if let Some(t) = &source.tag {
        text.push(':');
        text.push_str(t);
    }
    if let Some(d) = &source.digest {
        text.push('@');
        text.push_str(&d.to_string());
    }
    let dest = Reference::parse(&text)?;
    if dest.registry != registry || dest.repository != repository {
        return Err(invalid(
            "the destination does not form a normalized reference",
        ));
    }
    Ok(dest)
}

impl Cache {
    /// Syncs `images` into `to` (`REGISTRY[/PREFIX]`). Fails only when a reference does not
    /// parse; each image's own failure is in its item.
    pub async fn sync(
        &self,
        images: &[String],
        to: &str,
        opts: &SyncOptions,
    ) -> Result<SyncReport, Error> {
        let mut jobs: Vec<(Reference, Reference)> = Vec::new();
        for text in images {
            let source = Reference::parse(text)?;
            let dest = sync_destination(&source, to)?;
            if !jobs.iter().any(|(s, _)| *s == source) {
                jobs.push((source, dest));
            }
        }
        use futures_util::StreamExt;
        let items: Vec<SyncItem> =
            futures_util::stream::iter(jobs.iter().map(|(s, d)| async move {
                let item = match self.sync_one(s, d, opts).await {
                    Ok(r) => item_of(s, d, Ok(r)),
                    Err(e) => item_of(s, d, Err(e)),
                };
                if let Some(p) = &opts.progress {
                    p(&item);
                }
                item
            }))
            .buffered(opts.parallel.max(1))
            .collect()
            .await;
        let count = |s: SyncStatus| items.iter().filter(|i| i.status == s).count();
        Ok(SyncReport {
            destination: to.to_owned(),
            pushed: count(SyncStatus::Pushed),
            skipped: count(SyncStatus::Skipped),
            failed: count(SyncStatus::Failed),
            bytes_uploaded: items.iter().map(|i| i.bytes_uploaded).sum(),
            images: items,
        })
    }

    /// Pull (every platform of an index, unless one is asked for), then push.
    async fn sync_one(
        &self,
        source: &Reference,
        dest: &Reference,
        opts: &SyncOptions,
    ) -> Result<PushReport, Error> {
        let name = source.to_string();
        let pull = super::PullOptions {
            platform: opts.platform.clone(),
            policy: opts.policy.clone(),
            ..Default::default()
        };
        let pulled = self.pull(&name, &pull).await?;
        if opts.platform.is_none() && pulled.distribution_digest != pulled.manifest_digest {
            let index = pulled.distribution_digest.0;
            let bytes = super::blocking(|| self.store.read_blob(&index, MAX_MANIFEST_BYTES))?;
            if is_index(&document_media_type(&bytes), &bytes) {
                for platform in index_platforms(&bytes) {
                    if platform.to_string() != pulled.platform {
                        let opts = super::PullOptions {
                            platform: Some(platform),
                            ..Default::default()
                        };
                        self.pull(&name, &opts).await?;
                    }
                }
            }
        }
        let push = PushOptions {
            platform: opts.platform.clone(),
            progress: None,
        };
        self.push(&name, &dest.to_string(), &push).await
    }
}

/// The platforms an index offers (attestations and other `unknown` entries left out).
fn index_platforms(bytes: &[u8]) -> Vec<PlatformSpec> {
    #[derive(serde::Deserialize)]
    struct IndexDoc {
        #[serde(default)]
        manifests: Vec<oci_spec::image::Descriptor>,
    }
    let Ok(doc) = serde_json::from_slice::<IndexDoc>(bytes) else {
        return Vec::new();
    };
    doc.manifests
        .iter()
        .filter_map(|d| d.platform().as_ref())
        .map(|p| {
            PlatformSpec::new(
                &p.os().to_string(),
                &p.architecture().to_string(),
                p.variant().as_deref(),
            )
        })
        .filter(|p| !p.to_string().starts_with("unknown/"))
        .collect()
}

fn item_of(source: &Reference, dest: &Reference, result: Result<PushReport, Error>) -> SyncItem {
    match result {
        Ok(r) => SyncItem {
            source: source.to_string(),
            destination: dest.to_string(),
            status: if r.already_present {
                SyncStatus::Skipped
            } else {
                SyncStatus::Pushed
            },
            digest: Some(r.digest),
            platforms: r.platforms,
            bytes_uploaded: r.bytes_uploaded,
            blobs_uploaded: r.blobs_uploaded,
            blobs_mounted: r.blobs_mounted,
            blobs_present: r.blobs_present,
            error: None,
            environment: false,
        },
        Err(e) => SyncItem {
            source: source.to_string(),
            destination: dest.to_string(),
            status: SyncStatus::Failed,
            digest: None,
            platforms: Vec::new(),
            bytes_uploaded: 0,
            blobs_uploaded: 0,
            blobs_mounted: 0,
            blobs_present: 0,
            error: Some(e.to_string()),
            environment: e.is_environment(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_list_skips_comments_and_blank_lines() {
        let text = "# site images\nbusybox:1.36\n\n  registry.k8s.io/pause:3.9  # for kind\n#x\n";
        assert_eq!(
            read_image_list(text),
            vec!["busybox:1.36", "registry.k8s.io/pause:3.9"]
        );
    }

    #[test]
    fn destination_keeps_the_path_under_the_prefix() {
        let r = |s| Reference::parse(s).unwrap();
        let d = sync_destination(&r("busybox:1.36"), "mirror.site:5000/dockerhub").unwrap();
        assert_eq!(
            d.to_string(),
            "mirror.site:5000/dockerhub/library/busybox:1.36"
        );
        let d = sync_destination(&r("registry.k8s.io/pause:3.9"), "127.0.0.1:5000/").unwrap();
        assert_eq!(d.to_string(), "127.0.0.1:5000/pause:3.9");
        let pinned = format!("quay.io/a/b@sha256:{}", "a".repeat(64));
        let d = sync_destination(&r(&pinned), "127.0.0.1:5000/m").unwrap();
        assert_eq!(d.repository, "m/a/b");
        assert_eq!(d.digest, r(&pinned).digest);
        assert!(sync_destination(&r("busybox"), "mirror").is_err());
        assert!(sync_destination(&r("busybox"), "mirror:5000/UPPER").is_err());
    }
}
