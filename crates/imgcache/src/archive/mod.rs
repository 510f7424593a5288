//! Reading image archives of every dialect: what images they hold and where each blob lies.
//!
//! Opening an archive reads only tar headers and the small JSON entries (manifests, indexes,
//! configs) plus the first block of each layer; layer data is never read here. Everything found
//! wrong on the way is recorded as a [`Problem`] on the image it concerns, so one report can
//! say every failed check at once.

mod oci;
mod source;
mod tar;
pub mod write;

use std::collections::HashSet;
use std::path::Path;

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

use crate::compression::Compression;
use crate::digest::{BlobDigest, DiffId, Digest, ImageId, truncate_for_message};
use crate::error::{Check, Error, Problem};
use crate::reference::Reference;
pub use oci::ArchivedSignature;
use oci::IndexManifests;
pub(crate) use source::Source;
use tar::{EntryKind, LookupError, TarIndex};

/// Cap on `manifest.json`, `index.json` and manifests.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
/// Cap on an image config.
pub const MAX_CONFIG_BYTES: u64 = 8 * 1024 * 1024;

/// How the archive is laid out (see FORMATS.md of the project docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    /// `docker save` before engine 25, `podman save`, skopeo `docker-archive:`.
    DockerLegacy,
    /// go-containerregistry / crane `tarball`: config named `sha256:<hex>`.
    Crane,
    /// `docker save` from engine 25 on: OCI layout plus `manifest.json`.
    DockerCombined,
    /// An OCI image layout in a tar: `oci-layout`, `index.json`, `blobs/`.
    Oci,
}

/// os/architecture/variant, from the image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// One layer as the archive stores it.
#[derive(Debug, Clone, Serialize)]
pub struct Layer {
    /// The entry the manifest names.
    pub entry: String,
    /// The digest of the stored bytes, where the archive records one (OCI descriptors,
    /// `blobs/sha256/<hex>` names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_digest: Option<BlobDigest>,
    /// A digest taken from the entry's file name (`<hex>.tar`, `<hex>.tar.gz`): producers use
    /// either the blob digest or the diff_id, so deep verification accepts either.
    #[serde(skip)]
    pub name_digest: Option<Digest>,
    /// `config.rootfs.diff_ids[i]`, when the config has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<DiffId>,
    /// Stored size in bytes (None when the entry is missing).
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Detected from the first bytes of the stored data.
    pub compression: Option<Compression>,
    #[serde(skip)]
    pub(crate) offset: Option<u64>,
}

impl Layer {
    fn unlocated(entry: String) -> Self {
        Self {
            entry,
            blob_digest: None,
            name_digest: None,
            diff_id: None,
            size: None,
            media_type: None,
            compression: None,
            offset: None,
        }
    }
}

/// One image found in an archive.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveImage {
    /// sha256 of the config bytes as stored; None when the config cannot be read.
    pub image_id: Option<ImageId>,
    /// The image ID the archive names the config by (its entry name or descriptor).
    pub claimed_image_id: Option<ImageId>,
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<BlobDigest>,
    /// The digest `index.json` names this image by (an index above the manifest, or the
    /// manifest): what a signature of it covers. OCI dialects only.
    #[serde(skip)]
    pub top_digest: Option<BlobDigest>,
    pub config_entry: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub layers: Vec<Layer>,
    /// Checks that failed while reading the archive (fast level).
    pub problems: Vec<Problem>,
}

impl ArchiveImage {
    /// An image whose config cannot even be located.
    fn unreadable(tags: Vec<String>, problem: Problem) -> Self {
        Self {
            image_id: None,
            claimed_image_id: None,
            tags,
            manifest_digest: None,
            top_digest: None,
            config_entry: String::new(),
            platform: None,
            created: None,
            layers: Vec::new(),
            problems: vec![problem],
        }
    }

    /// The image ID to show: the computed one, else the claimed one.
    pub fn id(&self) -> Option<ImageId> {
        self.image_id.or(self.claimed_image_id)
    }

    /// Adds tags not already present under another spelling (`busybox:v1` and
    /// `docker.io/library/busybox:v1` are one tag).
    fn add_tags(&mut self, tags: Vec<String>) {
        for t in tags {
            if !self.tags.iter().any(|have| tag_matches(have, &t)) {
                self.tags.push(t);
            }
        }
    }

    /// Sum of the stored layer sizes.
    pub fn stored_size(&self) -> u64 {
        self.layers.iter().filter_map(|l| l.size).sum()
    }
}

/// An opened image archive.
pub struct Archive {
    pub(crate) source: Source,
    index: TarIndex,
    pub dialect: Dialect,
    pub images: Vec<ArchiveImage>,
    /// Signature artifacts `index.json` lists beside the images (not images themselves).
    pub signatures: Vec<ArchivedSignature>,
    /// Problems that do not make any image invalid (unreferenced entries, missing end marker).
    pub warnings: Vec<Problem>,
}

/// `manifest.json` of docker-archive-like dialects: one item per image.
#[derive(Deserialize)]
struct LegacyItem {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

impl Archive {
    /// Opens `path` and reads what every image in it claims, without reading layer data.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let mut source = Source::open(path)?;
        let index = source.walk()?;
        let mut archive = Self {
            source,
            index,
            dialect: Dialect::Oci,
            images: Vec::new(),
            signatures: Vec::new(),
            warnings: Vec::new(),
        };
        archive.read_images()?;
        Ok(archive)
    }

    pub fn path(&self) -> &Path {
        &self.source.path
    }

    /// Compression of the archive file itself (a gzipped `docker save`, say).
    pub fn compression(&self) -> Compression {
        self.source.outer
    }

    /// Bytes read from the file so far.
    pub fn bytes_read(&self) -> u64 {
        self.source.bytes_read()
    }

    fn fail(&self, p: Problem) -> Error {
        Error::archive(self.path(), p)
    }

    fn read_images(&mut self) -> Result<(), Error> {
        let has_manifest = self.index.get("manifest.json").is_some();
        let has_index = self.index.get("index.json").is_some();
        let mut referenced: HashSet<String> = HashSet::new();
        let legacy: Vec<LegacyItem> = if has_manifest {
            referenced.insert("manifest.json".into());
            let bytes = self.read_json_entry("manifest.json", MAX_MANIFEST_BYTES)?;
            serde_json::from_slice(&bytes).map_err(|e| {
                self.fail(
                    Problem::new(
                        Check::InvalidJson,
                        format!("manifest.json is not a valid image list: {e}"),
                    )
                    .entry("manifest.json"),
                )
            })?
        } else {
            Vec::new()
        };
        if has_index {
            self.dialect = if has_manifest {
                Dialect::DockerCombined
            } else {
                Dialect::Oci
            };
            for name in ["index.json", "oci-layout"] {
                referenced.insert(name.into());
            }
            let bytes = self.read_json_entry("index.json", MAX_MANIFEST_BYTES)?;
            let index = IndexManifests::parse(&bytes, "index.json").map_err(|p| self.fail(p))?;
            self.read_oci_index(&index, 0, &[], None, &mut referenced)?;
        } else if has_manifest {
            self.dialect = if legacy.iter().any(|i| i.config.starts_with("sha256:")) {
                Dialect::Crane
            } else {
                Dialect::DockerLegacy
            };
        } else {
            let hint = if self.index.closed {
                "neither manifest.json nor index.json: not an image archive"
            } else {
                "neither manifest.json nor index.json, and the archive has no end-of-archive marker: truncated, or not an image archive"
            };
            let check = if self.index.closed {
                Check::NoManifest
            } else {
                Check::Truncated
            };
            return Err(self.fail(Problem::new(check, hint)));
        }
        // manifest.json items: tags for the OCI images they match, or images of their own.
        for item in &legacy {
            let tags = item.repo_tags.clone().unwrap_or_default();
            let config_entry = normalize_name(&item.config);
            let existing = self
                .images
                .iter_mut()
                .find(|img| img.config_entry == config_entry);
            match existing {
                Some(img) => img.add_tags(tags),
                None => {
                    let img = self.read_legacy_item(item, &mut referenced);
                    self.images.push(img);
                }
            }
        }
        if self.images.is_empty() {
            return Err(self.fail(Problem::new(
                Check::NoManifest,
                "the archive lists no images",
            )));
        }
        self.check_unreferenced(&referenced);
        Ok(())
    }

    fn check_unreferenced(&mut self, referenced: &HashSet<String>) {
        if !self.index.closed {
            self.warnings.push(Problem::new(
                Check::Warning,
                "the archive has no end-of-archive marker (it may have been cut short after its last entry)",
            ));
        }
        // Link targets count as referenced when a referenced name points at them.
        let mut used: HashSet<&str> = referenced.iter().map(String::as_str).collect();
        for name in referenced {
            let mut current = name.as_str();
            for _ in 0..32 {
                match self.index.get(current).and_then(|e| e.link.as_deref()) {
                    Some(next) => {
                        used.insert(next);
                        current = next;
                    }
                    None => break,
                }
            }
        }
        let mut extra = Vec::new();
        for e in &self.index.entries {
            if e.kind == EntryKind::Dir || used.contains(e.name.as_str()) {
                continue;
            }
            // Links into referenced entries (skopeo's `<id>/layer.tar`) are compatibility aliases.
            if e.link.is_some()
                && self
                    .index
                    .resolve(&e.name)
                    .is_ok_and(|t| used.contains(t.name.as_str()))
            {
                continue;
            }
            // Metadata docker-archive writers put beside the images.
            let base = e.name.rsplit('/').next().unwrap_or("");
            // Docker's classic store also writes each layer's legacy v1 JSON as a blob.
            let legacy_blob =
                self.dialect == Dialect::DockerCombined && e.name.starts_with("blobs/");
            if legacy_blob
                || matches!(e.name.as_str(), "repositories" | "oci-layout")
                || base == "VERSION"
                || base == "json"
            {
                continue;
            }
            extra.push(e.name.clone());
        }
        if !extra.is_empty() {
            let shown: Vec<_> = extra.iter().take(5).map(|n| format!("{n:?}")).collect();
            let more = if extra.len() > 5 {
                format!(" and {} more", extra.len() - 5)
            } else {
                String::new()
            };
            let mut p = Problem::new(
                Check::Warning,
                format!(
                    "{} entries are not referenced by any manifest: {}{more}",
                    extra.len(),
                    shown.join(", ")
                ),
            );
            if extra.len() == 1 {
                p = p.entry(extra[0].clone());
            }
            self.warnings.push(p);
        }
    }

    /// Reads a JSON entry (following links) with a size cap; missing or oversized is fatal.
    fn read_json_entry(&self, name: &str, cap: u64) -> Result<Vec<u8>, Error> {
        match self.read_small(name, cap) {
            Ok(bytes) => Ok(bytes),
            Err(SmallRead::Problem(p)) => Err(self.fail(p)),
            Err(SmallRead::Error(e)) => Err(e),
        }
    }

    fn read_small(&self, name: &str, cap: u64) -> Result<Vec<u8>, SmallRead> {
        let entry = self.index.resolve(name).map_err(|e| {
            let why = match e {
                LookupError::Missing => "is missing",
                LookupError::NotAFile => "is a directory",
                LookupError::Loop => "is a link loop",
            };
            SmallRead::Problem(
                Problem::new(Check::MissingEntry, format!("entry {name:?} {why}")).entry(name),
            )
        })?;
        if entry.size > cap {
            return Err(SmallRead::Problem(
                Problem::new(
                    Check::TooLarge,
                    format!(
                        "entry {name:?} is {} bytes, over the {} MiB limit for JSON documents",
                        entry.size,
                        cap / (1024 * 1024)
                    ),
                )
                .entry(name),
            ));
        }
        self.source
            .read_range(entry.offset, entry.size)
            .map_err(SmallRead::Error)
    }

    fn read_legacy_item(
        &self,
        item: &LegacyItem,
        referenced: &mut HashSet<String>,
    ) -> ArchiveImage {
        let mut problems = Vec::new();
        let config_entry = normalize_name(&item.config);
        referenced.insert(config_entry.clone());
        let claimed = name_digest(&config_entry).map(ImageId);
        if claimed.is_none() {
            problems.push(
                Problem::new(
                    Check::Warning,
                    format!("config entry {config_entry:?} is not named by its digest, so its identity cannot be checked against the name"),
                )
                .entry(&config_entry),
            );
        }
        let tags = item.repo_tags.clone().unwrap_or_default();
        let (mut img, diff_ids) = self.read_config(&config_entry, claimed, None, tags, problems);
        for (i, name) in item.layers.iter().enumerate() {
            let entry = normalize_name(name);
            referenced.insert(entry.clone());
            let mut layer = self.locate_layer(i, entry, &mut img.problems);
            if let Some(hex) = layer.entry.strip_prefix("blobs/sha256/") {
                layer.blob_digest = Digest::from_hex(hex).map(BlobDigest);
            } else {
                layer.name_digest = name_digest(&layer.entry);
            }
            img.layers.push(layer);
        }
        Self::attach_diff_ids(&mut img, diff_ids);
        img
    }

    /// Reads and checks a config: present, within its cap, hashing to the name it is stored by.
    fn read_config(
        &self,
        entry: &str,
        claimed: Option<ImageId>,
        declared_size: Option<u64>,
        tags: Vec<String>,
        mut problems: Vec<Problem>,
    ) -> (ArchiveImage, Option<Vec<String>>) {
        let mut diff_ids = None;
        let mut img = ArchiveImage {
            image_id: None,
            claimed_image_id: claimed,
            tags,
            manifest_digest: None,
            top_digest: None,
            config_entry: entry.to_owned(),
            platform: None,
            created: None,
            layers: Vec::new(),
            problems: Vec::new(),
        };
        match self.read_small(entry, MAX_CONFIG_BYTES) {
            Err(SmallRead::Problem(p)) => problems.push(p),
            Err(SmallRead::Error(e)) => problems.push(
                Problem::new(
                    Check::LayerData,
                    format!("cannot read config {entry:?}: {e}"),
                )
                .entry(entry),
            ),
            Ok(bytes) => {
                let actual = ImageId(Digest::of_bytes(&bytes));
                img.image_id = Some(actual);
                if let Some(c) = claimed
                    && c != actual
                {
                    problems.push(
                        Problem::new(
                            Check::ConfigDigest,
                            format!("config {entry:?} does not hash to the digest it is named by (edited or swapped config)"),
                        )
                        .entry(entry)
                        .mismatch(c, actual),
                    );
                }
                if let Some(size) = declared_size
                    && size != bytes.len() as u64
                {
                    problems.push(
                        Problem::new(
                            Check::ConfigDigest,
                            format!("config {entry:?} size differs from its descriptor"),
                        )
                        .entry(entry)
                        .mismatch(size, bytes.len()),
                    );
                }
                match serde_json::from_slice::<ImageConfiguration>(&bytes) {
                    Ok(cfg) => {
                        img.platform = Some(Platform {
                            os: cfg.os().to_string(),
                            architecture: cfg.architecture().to_string(),
                            variant: cfg.variant().clone(),
                        });
                        img.created = cfg.created().clone();
                        diff_ids = Some(cfg.rootfs().diff_ids().clone());
                    }
                    Err(e) => problems.push(
                        Problem::new(
                            Check::InvalidJson,
                            format!("config {entry:?} is not an image config: {e}"),
                        )
                        .entry(entry),
                    ),
                }
            }
        }
        img.problems = problems;
        (img, diff_ids)
    }

    /// Pairs the config's diff_ids with the located layers.
    fn attach_diff_ids(img: &mut ArchiveImage, diff_ids: Option<Vec<String>>) {
        let Some(diff_ids) = diff_ids else {
            return;
        };
        if diff_ids.len() != img.layers.len() {
            img.problems.push(
                Problem::new(
                    Check::LayerCount,
                    format!(
                        "the manifest names {} layers but the config lists {} diff_ids",
                        img.layers.len(),
                        diff_ids.len()
                    ),
                )
                .entry(&img.config_entry)
                .mismatch(img.layers.len(), diff_ids.len()),
            );
        }
        for (i, text) in diff_ids.iter().enumerate() {
            match DiffId::parse(text) {
                Ok(d) => {
                    if let Some(layer) = img.layers.get_mut(i) {
                        layer.diff_id = Some(d);
                    }
                }
                Err(_) => img.problems.push(
                    Problem::new(
                        Check::InvalidDigest,
                        format!(
                            "diff_id {i} in the config is not a sha256 digest: {:?}",
                            truncate_for_message(text)
                        ),
                    )
                    .entry(&img.config_entry)
                    .layer(i),
                ),
            }
        }
    }

    /// Finds a layer's entry and reads its first block to detect compression.
    fn locate_layer(&self, i: usize, entry: String, problems: &mut Vec<Problem>) -> Layer {
        let mut layer = Layer::unlocated(entry);
        match self.index.resolve(&layer.entry) {
            Ok(e) => {
                layer.size = Some(e.size);
                layer.offset = Some(e.offset);
                let n = e.size.min(source::PREFIX_LEN);
                match self.source.read_range(e.offset, n) {
                    Ok(prefix) => {
                        let c = Compression::detect(&prefix);
                        layer.compression = Some(c);
                        if c == Compression::None && !plausible_tar_start(&prefix) {
                            problems.push(
                                Problem::new(
                                    Check::LayerData,
                                    format!(
                                        "layer {i} ({:?}) is neither compressed nor a tar archive",
                                        layer.entry
                                    ),
                                )
                                .entry(&layer.entry)
                                .layer(i),
                            );
                        }
                    }
                    Err(e) => problems.push(
                        Problem::new(Check::LayerData, format!("cannot read layer {i}: {e}"))
                            .layer(i),
                    ),
                }
            }
            Err(why) => {
                let what = match why {
                    LookupError::Missing => "is missing from the archive",
                    LookupError::NotAFile => "is a directory",
                    LookupError::Loop => "is a link loop",
                };
                problems.push(
                    Problem::new(
                        Check::MissingEntry,
                        format!("layer {i} entry {:?} {what}", layer.entry),
                    )
                    .entry(&layer.entry)
                    .layer(i),
                );
            }
        }
        layer
    }

    /// Images matching `selector`: a tag (as stored, or equal once normalized), or an image ID
    /// (full, bare hex, or a unique prefix of at least 12 hex digits).
    pub fn select(&self, selector: &str) -> Result<Vec<&ArchiveImage>, Error> {
        let sel = selector.trim();
        let by_tag: Vec<_> = self
            .images
            .iter()
            .filter(|img| img.tags.iter().any(|t| tag_matches(t, sel)))
            .collect();
        if !by_tag.is_empty() {
            return Ok(by_tag);
        }
        let hex = sel.strip_prefix("sha256:").unwrap_or(sel);
        let is_hex =
            hex.len() >= 12 && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex {
            let hex = hex.to_ascii_lowercase();
            let by_id: Vec<_> = self
                .images
                .iter()
                .filter(|img| img.id().is_some_and(|id| id.0.hex().starts_with(&hex)))
                .collect();
            let distinct: HashSet<_> = by_id.iter().filter_map(|i| i.id()).collect();
            if distinct.len() > 1 {
                return Err(Error::AmbiguousImage {
                    path: self.path().into(),
                    selector: selector.into(),
                    matches: distinct
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            if !by_id.is_empty() {
                return Ok(by_id);
            }
        }
        Err(Error::NoSuchImage {
            path: self.path().into(),
            selector: selector.into(),
            available: self.describe_images(),
        })
    }

    fn describe_images(&self) -> String {
        self.images
            .iter()
            .map(|img| {
                let id = img.id().map_or("?".to_string(), |d| d.0.short());
                if img.tags.is_empty() {
                    id
                } else {
                    format!("{id} ({})", img.tags.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Reads a small entry (a config or manifest) by name, following links.
    pub fn read_entry(&self, name: &str, cap: u64) -> Result<Vec<u8>, Error> {
        self.read_json_entry(name, cap)
    }

    /// Calls `f` with a reader over the data at `offset`.
    pub(crate) fn with_range<T>(
        &self,
        offset: u64,
        len: u64,
        f: impl FnOnce(&mut dyn std::io::Read) -> std::io::Result<T>,
    ) -> Result<T, Error> {
        self.source.with_range(offset, len, f)
    }

    /// Where a layer's data lies, for deep verification.
    pub(crate) fn layer_range(layer: &Layer) -> Option<(u64, u64)> {
        Some((layer.offset?, layer.size?))
    }
}

enum SmallRead {
    Problem(Problem),
    Error(Error),
}

fn normalize_name(name: &str) -> String {
    name.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// The digest a file name carries: `<hex>.json`, `sha256:<hex>`, `blobs/sha256/<hex>`,
/// `<hex>.tar`, `<hex>.tar.gz`, `<hex>.tar.zst`.
fn name_digest(name: &str) -> Option<Digest> {
    if let Some(hex) = name.strip_prefix("blobs/sha256/") {
        return Digest::from_hex(hex);
    }
    if let Some(hex) = name.strip_prefix("sha256:") {
        return Digest::from_hex(hex);
    }
    let base = name.rsplit('/').next()?;
    let stem = [".tar.gz", ".tar.zst", ".tgz", ".tar", ".json"]
        .iter()
        .find_map(|ext| base.strip_suffix(ext))
        .unwrap_or(base);
    Digest::from_hex(stem)
}

fn tag_matches(tag: &str, selector: &str) -> bool {
    if tag == selector {
        return true;
    }
    match (Reference::parse(tag), Reference::parse(selector)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// An uncompressed layer starts with a tar header (or is an empty archive of zero blocks).
fn plausible_tar_start(prefix: &[u8]) -> bool {
    match <&[u8; 512]>::try_from(prefix) {
        Ok(block) => block.iter().all(|&b| b == 0) || tar::checksum_ok(block),
        Err(_) => false,
    }
}
