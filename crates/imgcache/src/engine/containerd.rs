//! containerd through `ctr` (the client shipped with containerd), in one namespace (`k8s.io`
//! by default: the one the kubelet's CRI reads).
//!
//! containerd keeps no image ID: an image record is a name pointing at a top-level manifest or
//! index digest (after `ctr import` of a docker-archive, a manifest ctr synthesized). The image
//! ID is that manifest's `config.digest`, read with `ctr content get`; for an index, the
//! manifest of this host's platform. Names are compared normalized (`ctr import` of an OCI
//! archive keeps `busybox:v1` as it is; `docker.io/library/busybox:v1` is the same name).

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Deserialize;

use super::cli::{Cli, EngineCli};
use super::{
    Engine, EngineImage, EngineKind, Known, LayerIds, Lookup, check_socket, engine_error,
    names_reference, parse_reference, tag_reference, unix_socket_path,
};
use crate::digest::{Digest, ImageId};
use crate::error::Error;
use crate::platform::PlatformSpec;
use crate::reference::Reference;

const KIND: EngineKind = EngineKind::Containerd;
/// Index inside index inside index: deeper is not an image anyone pulls.
const MAX_INDEX_DEPTH: usize = 4;

/// containerd, through `ctr -a ADDRESS -n NAMESPACE`.
#[derive(Debug, Clone)]
pub struct Containerd {
    cli: Cli,
    address: String,
    namespace: String,
    snapshotter: Option<String>,
    /// The major version of `ctr` (asked once, only for an import into a chosen snapshotter).
    ctr_major: OnceLock<Option<u32>>,
    content_memo: ContentMemo,
}

/// Manifests and indexes read from the content store, by digest. Content is addressed by its
/// digest, so a copy that hashes to it is never stale; a load asks for the same ones several
/// times (is the image there, does the tag name it, does it keep the digest), each a `ctr` run.
/// (Image records are not remembered: they change under the adapter.)
#[derive(Clone, Default)]
struct ContentMemo(Arc<Mutex<HashMap<Digest, Vec<u8>>>>);

impl ContentMemo {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Vec<u8>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Debug for ContentMemo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentMemo")
    }
}

/// One image record: a name and the digest it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    name: String,
    target: Digest,
    /// From `ctr images check`: whether all of this host's platform's content (manifest,
    /// config, layers) is in the content store. `None` from `ctr images ls`.
    complete: Option<bool>,
}

impl Containerd {
    pub const DEFAULT_ADDRESS: &str = "/run/containerd/containerd.sock";
    pub const DEFAULT_NAMESPACE: &str = "k8s.io";

    /// containerd at `address` (a socket path, `unix://` optional), in `namespace`.
    pub fn new(address: impl Into<String>, namespace: impl Into<String>) -> Self {
        let address: String = address.into();
        let address = unix_socket_path(&address)
            .map(|p| p.display().to_string())
            .unwrap_or(address);
        let namespace = namespace.into();
        let mut cli = Cli::new("ctr");
        cli.global_args = vec![
            "--address".into(),
            address.clone(),
            "--namespace".into(),
            namespace.clone(),
        ];
        Self {
            cli,
            address,
            namespace,
            snapshotter: None,
            ctr_major: OnceLock::new(),
            content_memo: ContentMemo::default(),
        }
    }

    /// `CONTAINERD_ADDRESS` (default `/run/containerd/containerd.sock`), `CONTAINERD_NAMESPACE`
    /// (default `k8s.io`); `CONTAINERD_SNAPSHOTTER` is read by `ctr` itself on import.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self::new(
            var("CONTAINERD_ADDRESS").unwrap_or_else(|| Self::DEFAULT_ADDRESS.to_owned()),
            var("CONTAINERD_NAMESPACE").unwrap_or_else(|| Self::DEFAULT_NAMESPACE.to_owned()),
        )
    }

    /// The snapshotter images are unpacked into on load (`ctr images import --snapshotter`);
    /// it must be the one the CRI uses, or the kubelet unpacks again. With ctr 2.x (and with
    /// `CONTAINERD_SNAPSHOTTER` set) the import runs in ctr (`--local`), not through the
    /// transfer service, which unpacks only for its configured `unpack_config`.
    pub fn with_snapshotter(mut self, snapshotter: impl Into<String>) -> Self {
        self.snapshotter = Some(snapshotter.into());
        self
    }

    /// Runs this `ctr` program instead of the one on the PATH.
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.cli.program = program.into();
        self
    }

    /// Adds an environment variable for the `ctr` commands run.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.cli.env.push((key.into(), value.into()));
        self
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn tool(&self) -> EngineCli<'_> {
        let name = format!("ctr -n {}", self.namespace);
        EngineCli::new(KIND, &self.cli, self.endpoint(), name, UNREACHABLE)
    }

    /// `ctr images ls`: every image record of the namespace.
    fn records(&self) -> Result<Vec<Record>, Error> {
        let out = self.tool().query(&["images", "ls"])?;
        parse_images_table(&String::from_utf8_lossy(&out.stdout))
            .map_err(|e| engine_error(KIND, format!("`ctr images ls`: {e}")))
    }

    /// `ctr content get DIGEST`: `None` when the content store lacks it.
    fn content(&self, digest: &Digest) -> Result<Option<Vec<u8>>, Error> {
        if let Some(bytes) = self.content_memo.lock().get(digest) {
            return Ok(Some(bytes.clone()));
        }
        let d = digest.to_string();
        let out = self
            .tool()
            .query_found(&["content", "get", d.as_str()], &["not found"])?;
        let bytes = out.map(|o| o.stdout);
        if let Some(b) = &bytes {
            self.remember(digest, b);
        }
        Ok(bytes)
    }

    /// Keeps `bytes` as the content of `digest`, if they hash to it.
    fn remember(&self, digest: &Digest, bytes: &[u8]) {
        if Digest::of_bytes(bytes) == *digest {
            self.content_memo.lock().insert(*digest, bytes.to_vec());
        }
    }

    /// `ctr images check` of the records that may spell `r` (normalized, and Docker's short
    /// form, which `ctr import` of an OCI archive keeps): one `ctr` run.
    fn checked_records(&self, r: &Reference) -> Result<Vec<Record>, Error> {
        let mut filters = vec![format!("name=={r}")];
        if let Some(short) = familiar_name(r) {
            filters.push(format!("name=={short}"));
        }
        let mut args = vec!["images", "check"];
        args.extend(filters.iter().map(String::as_str));
        let out = self.tool().query(&args)?;
        parse_images_table(&String::from_utf8_lossy(&out.stdout))
            .map_err(|e| engine_error(KIND, format!("`ctr images check`: {e}")))
    }

    /// Whether the namespace's content store holds `digest` at all (one cheap call).
    fn has_content(&self, digest: &Digest) -> Result<bool, Error> {
        let filter = format!("digest=={digest}");
        let out = self
            .tool()
            .query(&["content", "ls", "--quiet", filter.as_str()])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == digest.to_string()))
    }

    /// The image ID a top-level manifest or index resolves to on this host (memoized per call).
    fn resolve(
        &self,
        target: &Digest,
        memo: &mut HashMap<Digest, Option<ImageId>>,
    ) -> Result<Option<ImageId>, Error> {
        if let Some(known) = memo.get(target) {
            return Ok(*known);
        }
        let mut digest = *target;
        let mut found = None;
        for _ in 0..MAX_INDEX_DEPTH {
            let Some(bytes) = self.content(&digest)? else {
                break;
            };
            match config_or_child(&bytes, &PlatformSpec::host())
                .map_err(|e| engine_error(KIND, format!("content {digest}: {e}")))?
            {
                Next::Config(id) => {
                    found = Some(id);
                    break;
                }
                Next::Manifest(child) => digest = child,
                Next::NoPlatform => break,
            }
        }
        memo.insert(*target, found);
        Ok(found)
    }

    /// The image `id`: every record resolving to it (the first one's target is the engine ID).
    fn describe(
        &self,
        records: &[Record],
        id: ImageId,
        memo: &mut HashMap<Digest, Option<ImageId>>,
    ) -> Result<(EngineImage, Vec<String>), Error> {
        let mut names = Vec::new();
        let mut engine_id = None;
        for r in records {
            if self.resolve(&r.target, memo)? == Some(id) {
                engine_id.get_or_insert(r.target);
                names.push(r.name.clone());
            }
        }
        let image = EngineImage {
            image_id: id,
            engine_id: engine_id.map(|d| d.to_string()).unwrap_or_default(),
            tags: names.iter().filter(|n| is_tag(n)).cloned().collect(),
        };
        Ok((image, names))
    }

    /// The image and every name it has (including `sha256:` and `@digest` records the CRI makes).
    fn find(&self, image_id: &ImageId) -> Result<Option<(EngineImage, Vec<String>)>, Error> {
        if !self.has_content(image_id.digest())? {
            return Ok(None);
        }
        let records = self.records()?;
        let mut memo = HashMap::new();
        let (image, names) = self.describe(&records, *image_id, &mut memo)?;
        Ok((!names.is_empty()).then_some((image, names)))
    }
}

impl Engine for Containerd {
    fn kind(&self) -> EngineKind {
        KIND
    }

    fn endpoint(&self) -> String {
        format!("{} (namespace {})", self.address, self.namespace)
    }

    fn ping(&self) -> Result<(), Error> {
        self.ping_socket()?;
        self.tool().ping(&["version"])
    }

    fn image(&self, image_id: &ImageId) -> Result<Option<EngineImage>, Error> {
        self.ping_socket()?;
        Ok(self.find(image_id)?.map(|(image, _)| image))
    }

    fn image_for_ref(&self, reference: &str) -> Result<Option<EngineImage>, Error> {
        let r = parse_reference(reference)?;
        self.ping_socket()?;
        let records = self.records()?;
        let Some(rec) = records
            .iter()
            .find(|rec| rec.name == reference)
            .or_else(|| records.iter().find(|rec| names_reference(&rec.name, &r)))
        else {
            return Ok(None);
        };
        let mut memo = HashMap::new();
        let Some(id) = self.resolve(&rec.target, &mut memo)? else {
            return Ok(None);
        };
        let (mut image, _) = self.describe(&records, id, &mut memo)?;
        image.engine_id = rec.target.to_string();
        Ok(Some(image))
    }

    fn load_with(
        &self,
        produce: &mut dyn FnMut(&mut dyn Write) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.ping_socket()?;
        let mut args = vec!["images", "import"];
        if let Some(s) = &self.snapshotter {
            args.extend(["--snapshotter", s.as_str()]);
        }
        if self.chooses_snapshotter() && self.ctr_major()? >= Some(2) {
            // ctr 2.x imports through the transfer service, which unpacks only into the
            // snapshotters of its `unpack_config` (by default just the default one): any other
            // fails with "no unpack platforms defined". `--local` (ctr 1.7+) imports in ctr
            // itself, into the snapshotter asked for, as ctr 1.x does.
            args.push("--local");
        }
        args.push("-");
        self.tool().load(&args, produce)
    }

    /// One `ctr images check` when the name's record holds all of the image's content for this
    /// host and resolves (through `known`, else `ctr content get`) to `image_id`: the image is
    /// present. Otherwise the full answers of [`Engine::image`] and [`Engine::image_for_ref`].
    fn lookup(
        &self,
        image_id: &ImageId,
        reference: &str,
        known: &[Known],
    ) -> Result<Lookup, Error> {
        let r = parse_reference(reference)?;
        self.ping_socket()?;
        for k in known {
            self.remember(&k.digest, &k.bytes);
        }
        let rows = self.checked_records(&r)?;
        let named = rows
            .iter()
            .find(|rec| rec.name == reference)
            .or_else(|| rows.iter().find(|rec| names_reference(&rec.name, &r)));
        if let Some(rec) = named
            && rec.complete == Some(true)
            && self.resolve(&rec.target, &mut HashMap::new())? == Some(*image_id)
        {
            let image = EngineImage {
                image_id: *image_id,
                engine_id: rec.target.to_string(),
                tags: (rows.iter())
                    .filter(|o| o.target == rec.target && is_tag(&o.name))
                    .map(|o| o.name.clone())
                    .collect(),
            };
            return Ok(Lookup {
                image: Some(image.clone()),
                named: Some(image),
            });
        }
        Lookup::asking(self, image_id, reference)
    }

    /// The leading layers whose blobs the namespace's content store holds (one `ctr content
    /// ls`): an import takes an archive without them, its unpacker finding them in the store
    /// (and their snapshots, when unpacked already).
    fn reusable_layers(&self, layers: &[LayerIds]) -> Result<usize, Error> {
        self.ping_socket()?;
        let out = self.tool().query(&["content", "ls", "--quiet"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let held: std::collections::HashSet<&str> = text.lines().map(str::trim).collect();
        Ok(layers
            .iter()
            .take_while(|l| held.contains(l.blob.to_string().as_str()))
            .count())
    }

    fn tag(&self, image_id: &ImageId, reference: &str) -> Result<(), Error> {
        let r = tag_reference(reference)?;
        self.ping_socket()?;
        let (_, names) = self.find(image_id)?.ok_or_else(|| {
            engine_error(
                KIND,
                format!(
                    "image {image_id} is not in containerd at {}; load it first",
                    self.endpoint()
                ),
            )
        })?;
        let target = r.to_string();
        let args = [
            "images",
            "tag",
            "--force",
            names[0].as_str(),
            target.as_str(),
        ];
        self.tool().query(&args).map(drop)
    }
}

impl Containerd {
    /// A missing or refusing socket, named at once (ctr itself waits for its dial timeout).
    fn ping_socket(&self) -> Result<(), Error> {
        check_socket(KIND, &self.address, &self.endpoint())
    }

    /// Whether an import goes to a snapshotter chosen here or by `CONTAINERD_SNAPSHOTTER`
    /// (which ctr reads itself) rather than containerd's default.
    fn chooses_snapshotter(&self) -> bool {
        const VAR: &str = "CONTAINERD_SNAPSHOTTER";
        self.snapshotter.is_some()
            || match self.cli.env.iter().rev().find(|(k, _)| k == VAR) {
                Some((_, v)) => !v.is_empty(),
                None => std::env::var_os(VAR).is_some_and(|v| !v.is_empty()),
            }
    }

    /// `ctr --version`'s major version (`None`: not understood).
    fn ctr_major(&self) -> Result<Option<u32>, Error> {
        if let Some(v) = self.ctr_major.get() {
            return Ok(*v);
        }
        let out = self.tool().query(&["--version"])?;
        let v = ctr_major_version(&String::from_utf8_lossy(&out.stdout));
        Ok(*self.ctr_major.get_or_init(|| v))
    }
}

/// The major version in `ctr --version` (`ctr github.com/containerd/containerd/v2 2.1.9`,
/// `ctr github.com/containerd/containerd 1.6.20~ds1`, `... v2.0.0-beta.2-452-gb6ffa2794`).
fn ctr_major_version(text: &str) -> Option<u32> {
    let version = text.split_whitespace().last()?;
    let version = version.strip_prefix('v').unwrap_or(version);
    version.split('.').next()?.parse().ok()
}

/// Whether a record's name is a tag (not one of the `sha256:` and `@digest` records the CRI
/// makes).
fn is_tag(name: &str) -> bool {
    !name.starts_with("sha256:") && !name.contains('@')
}

/// Docker's short spelling of a Docker Hub reference (`busybox:v1` for
/// `docker.io/library/busybox:v1`), if it has one.
fn familiar_name(r: &Reference) -> Option<String> {
    if r.registry != "docker.io" {
        return None;
    }
    let full = r.to_string();
    let rest = full.strip_prefix("docker.io/")?;
    Some(rest.strip_prefix("library/").unwrap_or(rest).to_owned())
}

/// ctr's words for "no daemon there".
const UNREACHABLE: &[&str] = &[
    "failed to dial",
    "connection refused",
    "transport: error while dialing",
];

/// `ctr images ls` (`REF TYPE DIGEST SIZE PLATFORMS LABELS`) or `ctr images check` (`REF TYPE
/// DIGEST STATUS SIZE UNPACKED`, the status `complete (3/3)` or `incomplete (1/3)`),
/// whitespace-aligned; a name never contains whitespace. Records whose digest is not sha256
/// are skipped.
fn parse_images_table(text: &str) -> Result<Vec<Record>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Ok(Vec::new());
    };
    let cols: Vec<&str> = header.split_whitespace().collect();
    if cols.get(..3) != Some(&["REF", "TYPE", "DIGEST"][..]) {
        return Err(format!("unexpected header {header:?}"));
    }
    let checked = cols.get(3) == Some(&"STATUS");
    let mut out = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(name), Some(digest)) = (f.first(), f.get(2)) else {
            return Err(format!("unexpected line {line:?}"));
        };
        if !digest.starts_with("sha256:") {
            continue;
        }
        let target = Digest::parse(digest).map_err(|e| format!("line {line:?}: {e}"))?;
        out.push(Record {
            name: (*name).to_owned(),
            target,
            complete: checked.then(|| f.get(3) == Some(&"complete")),
        });
    }
    Ok(out)
}

/// What a manifest or index leads to.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Config(ImageId),
    Manifest(Digest),
    NoPlatform,
}

#[derive(Deserialize)]
struct ManifestOrIndex {
    config: Option<Descriptor>,
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

/// A manifest's config digest, or the child of an index for `host`.
fn config_or_child(bytes: &[u8], host: &PlatformSpec) -> Result<Next, String> {
    let doc: ManifestOrIndex =
        serde_json::from_slice(bytes).map_err(|e| format!("not a manifest or index: {e}"))?;
    if let Some(config) = doc.config {
        return ImageId::parse(&config.digest)
            .map(Next::Config)
            .map_err(|e| e.to_string());
    }
    let Some(manifests) = doc.manifests else {
        return Err("neither a manifest (config) nor an index (manifests)".into());
    };
    let pick = manifests
        .iter()
        .find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| host.matches(&p.os, &p.architecture, p.variant.as_deref()))
        })
        .or_else(|| match manifests.as_slice() {
            [only] if only.platform.is_none() => Some(only),
            _ => None,
        });
    match pick {
        Some(m) => Digest::parse(&m.digest)
            .map(Next::Manifest)
            .map_err(|e| e.to_string()),
        None => Ok(Next::NoPlatform),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
REF                       TYPE                                                 DIGEST                                                                  SIZE       PLATFORMS                  LABELS \n\
127.0.0.1:5000/busybox:v1 application/vnd.docker.distribution.manifest.v2+json sha256:8438aff91c7202a7e6ceecf64f17fde3c24cfcb2114440d41f0c71ba9bc5384a 2.1 MiB    linux/amd64                -      \n\
multiarch:v1              application/vnd.oci.image.index.v1+json              sha256:cb6d1ac22f5eaae43430bff9cd996eb5bc3867dad218c14c552d5d00587892df 1012.8 KiB linux/amd64,linux/arm64/v8 -      \n";

    #[test]
    fn ctr_versions() {
        for (text, major) in [
            (
                "ctr github.com/containerd/containerd/v2 2.1.9+unknown\n",
                Some(2),
            ),
            ("ctr github.com/containerd/containerd 1.7.24~ds1\n", Some(1)),
            ("ctr github.com/containerd/containerd 1.6.20~ds1\n", Some(1)),
            (
                "ctr github.com/containerd/containerd/v2 v2.0.0-beta.2-452-gb6ffa2794\n",
                Some(2),
            ),
            ("", None),
            ("ctr version unknown", None),
        ] {
            assert_eq!(ctr_major_version(text), major, "{text:?}");
        }
    }

    #[test]
    fn parses_ctr_images_ls() {
        let recs = parse_images_table(TABLE).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].name, "127.0.0.1:5000/busybox:v1");
        assert_eq!(
            recs[1].target.to_string(),
            "sha256:cb6d1ac22f5eaae43430bff9cd996eb5bc3867dad218c14c552d5d00587892df"
        );
        assert_eq!(parse_images_table("").unwrap(), vec![]);
        assert!(parse_images_table("NAME DIGEST\nx y\n").is_err());
    }

    #[test]
    fn picks_the_host_platform_from_an_index() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:8058216c40425c23092204b5ec5b7df8edd80f9656d4b315671cd8c99e4de3d5","size":1,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:52106583316cb3f6f6d8a1fa70775d8b677613bd3fb294a943c055c9ab551a49","size":1,"platform":{"architecture":"amd64","os":"linux"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":1,"platform":{"architecture":"unknown","os":"unknown"}}]}"#;
        let amd64 = PlatformSpec::new("linux", "amd64", None);
        let arm64 = PlatformSpec::new("linux", "arm64", None);
        let s390x = PlatformSpec::new("linux", "s390x", None);
        assert_eq!(
            config_or_child(index, &amd64).unwrap(),
            Next::Manifest(
                Digest::parse(
                    "sha256:52106583316cb3f6f6d8a1fa70775d8b677613bd3fb294a943c055c9ab551a49"
                )
                .unwrap()
            )
        );
        assert_eq!(
            config_or_child(index, &arm64).unwrap(),
            Next::Manifest(
                Digest::parse(
                    "sha256:8058216c40425c23092204b5ec5b7df8edd80f9656d4b315671cd8c99e4de3d5"
                )
                .unwrap()
            )
        );
        assert_eq!(config_or_child(index, &s390x).unwrap(), Next::NoPlatform);

        let manifest = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:3f22b83bc3fbbd5fb965afd0dc18b64fb9adc4d430119e33b425ab2ce15875d9","size":713},"layers":[]}"#;
        assert_eq!(
            config_or_child(manifest, &amd64).unwrap(),
            Next::Config(
                ImageId::parse(
                    "sha256:3f22b83bc3fbbd5fb965afd0dc18b64fb9adc4d430119e33b425ab2ce15875d9"
                )
                .unwrap()
            )
        );
        assert!(config_or_child(b"not json", &amd64).is_err());
        assert!(config_or_child(br#"{"layers":[]}"#, &amd64).is_err());
    }
}
