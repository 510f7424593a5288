//! Docker through its Engine API on the daemon's unix socket; through the `docker` CLI when
//! the daemon is elsewhere.
//!
//! For `unix:///path` (from `DOCKER_HOST` or the current context) this adapter speaks HTTP on
//! the socket itself (`docker_api.rs`) and runs no program: a `docker`
//! command costs ~25 ms of Go start-up each, and `imgcache load` of an image Docker already
//! has must stay well under 50 ms. `tcp://`, `ssh://` and contexts that are not a unix socket
//! go through the `docker` CLI, which knows their TLS settings (`DOCKER_TLS_VERIFY`,
//! `DOCKER_CERT_PATH`, a context's TLS material) and ssh connection helpers.
//!
//! The classic image store (graph drivers: overlay2, vfs...) reports `.Id` = `sha256:` of the
//! config: that is the image ID. The containerd image store (`/info` `DriverStatus` names
//! `io.containerd.snapshotter...`; Docker Desktop's option, the default of fresh Engine 29+)
//! reports the manifest or index digest instead, and Docker offers no API that gives the
//! config digest; there this adapter reads names and config digests from containerd itself
//! ([`Containerd`], at the address and namespace `/info` reports, normally
//! `/run/containerd/containerd.sock` and `moby`), which needs access to that socket (root, not
//! Docker Desktop's VM). `/info` is asked at most once, and only when needed: an image found
//! under its own config digest proves the classic store. Both stores are tested live:
//! `tests/engine.rs` (dockerd 20.10, classic), `tests/newer_engines.rs` (dockerd 26 classic,
//! dockerd 28 containerd store, read with ctr 1.6 and 2.1).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

use super::cli::{Cli, EngineCli, Inspect, PING_TIMEOUT, QUERY_TIMEOUT};
use super::{
    Containerd, Engine, EngineImage, EngineKind, Known, LayerIds, Lookup, check_socket,
    engine_error, listed_image, parse_reference, tag_reference, unavailable, unix_socket_path,
    unix_url,
};
use crate::digest::{Digest, ImageId};
use crate::error::Error;
use docker_api::{ApiError, Client, Response, encode};

// A submodule declared here, so that engine/mod.rs need not change.
#[path = "docker_api.rs"]
mod docker_api;

const KIND: EngineKind = EngineKind::Docker;

/// Docker, through its Engine API on a unix socket, else through the `docker` CLI.
#[derive(Debug)]
pub struct Docker {
    /// The CLI (for hosts that are not a unix socket; its environment also goes to `ctr` for
    /// the containerd image store).
    cli: Cli,
    /// The Engine API on the daemon's unix socket; `None`: through the CLI.
    api: Option<Client>,
    host: String,
    store: OnceLock<Store>,
}

#[derive(Debug)]
enum Store {
    Classic,
    Containerd(Box<Containerd>),
}

/// Where the `docker` CLI would connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The daemon's address (`unix:///...`, `tcp://...`), or a description when unknown.
    pub host: String,
    /// A Docker context other than `default` (passed as `--context`: it may carry TLS).
    pub context: Option<String>,
}

impl Docker {
    pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

    /// Docker at `host`: `unix:///path/docker.sock` (or just the path; spoken to directly),
    /// `tcp://...`, `ssh://...` (through the `docker` CLI).
    pub fn new(host: &str) -> Self {
        let host = unix_url(host);
        let mut cli = Cli::new("docker");
        cli.global_args = vec!["--host".into(), host.clone()];
        Self {
            cli,
            api: unix_socket_path(&host).map(Client::new),
            host,
            store: OnceLock::new(),
        }
    }

    /// Docker as the `docker` CLI would pick it: `DOCKER_HOST`, else the current context
    /// (`DOCKER_CONTEXT`, or `currentContext` in `$DOCKER_CONFIG/config.json`, default
    /// `~/.docker`), else `/var/run/docker.sock`.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self::from_target(resolve_target(&var, config_dir(&var).as_deref()))
    }

    pub(crate) fn from_target(t: Target) -> Self {
        match t.context {
            None => Self::new(&t.host),
            Some(name) => {
                let mut cli = Cli::new("docker");
                cli.global_args = vec!["--context".into(), name];
                Self {
                    cli,
                    api: t
                        .host
                        .starts_with("unix://")
                        .then(|| unix_socket_path(&t.host).map(Client::new))
                        .flatten(),
                    host: t.host,
                    store: OnceLock::new(),
                }
            }
        }
    }

    /// Talks through the `docker` CLI even when the daemon is on a unix socket.
    pub fn via_cli(mut self) -> Self {
        self.api = None;
        self
    }

    /// Runs this `docker` program instead of the one on the PATH (when the CLI is used).
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.cli.program = program.into();
        self
    }

    /// Adds an environment variable for the commands run (`docker`; `ctr` for the containerd
    /// image store).
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.cli.env.push((key.into(), value.into()));
        self
    }

    /// The `docker` CLI (for hosts that are not a unix socket).
    fn tool(&self) -> EngineCli<'_> {
        EngineCli::new(KIND, &self.cli, &self.host, "docker", UNREACHABLE)
    }

    /// A request that got no answer.
    fn api_error(&self, api: &Client, what: &str, e: ApiError) -> Error {
        let socket = api.socket().display();
        match e {
            ApiError::Connect(e) => {
                unavailable(KIND, &self.host, format!("cannot connect to {socket}: {e}"))
            }
            ApiError::Io(e) => unavailable(KIND, &self.host, format!("`{what}` on {socket}: {e}")),
            ApiError::Protocol(m) => engine_error(
                KIND,
                format!("`{what}` on {socket}: {m} (is this Docker's API socket?)"),
            ),
            ApiError::Input(e) => e,
        }
    }

    /// An answer that is an error.
    fn api_failed(what: &str, r: &Response) -> Error {
        engine_error(
            KIND,
            format!(
                "`{what}` answered {} {}: {}",
                r.status,
                r.reason,
                r.message()
            ),
        )
    }

    fn get(&self, api: &Client, path: &str) -> Result<Response, Error> {
        api.get(path, QUERY_TIMEOUT)
            .map_err(|e| self.api_error(api, &format!("GET {path}"), e))
    }

    /// The daemon's `/info` (`docker info`).
    fn info(&self) -> Result<Info, Error> {
        let bytes = match &self.api {
            Some(api) => {
                let r = self.get(api, "/info")?;
                if !r.success() {
                    return Err(Self::api_failed("GET /info", &r));
                }
                r.body
            }
            None => {
                self.tool()
                    .query(&["info", "--format", "{{json .}}"])?
                    .stdout
            }
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| engine_error(KIND, format!("`docker info` gave unexpected JSON: {e}")))
    }

    /// Which image store the daemon uses (asked once).
    fn store(&self) -> Result<&Store, Error> {
        if let Some(s) = self.store.get() {
            return Ok(s);
        }
        let info = self.info()?;
        if let Some(errors) = info.server_errors.filter(|e| !e.is_empty()) {
            return Err(unavailable(KIND, &self.host, errors.join("; ")));
        }
        let containerd_store = info
            .driver_status
            .unwrap_or_default()
            .iter()
            .flatten()
            .any(|v| v.starts_with("io.containerd.snapshotter"));
        let store = if containerd_store {
            let c = info.containerd.unwrap_or_default();
            if c.address.is_empty() {
                return Err(engine_error(
                    KIND,
                    "Docker uses the containerd image store (image IDs are manifest digests there), but `docker info` names no containerd address to read config digests from",
                ));
            }
            let ns = c
                .namespaces
                .map(|n| n.containers)
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "moby".to_owned());
            let mut ctd = Containerd::new(c.address, ns);
            for (k, v) in &self.cli.env {
                ctd = ctd.with_env(k.clone(), v.clone());
            }
            Store::Containerd(Box::new(ctd))
        } else {
            Store::Classic
        };
        Ok(self.store.get_or_init(|| store))
    }

    /// `docker image inspect NAME` (`GET /images/NAME/json`): `None` when Docker has no such
    /// image.
    fn inspect(&self, name: &str) -> Result<Option<Inspect>, Error> {
        if let Some(api) = &self.api {
            let path = format!("/images/{}/json", encode(name, b"/:@"));
            let r = self.get(api, &path)?;
            if r.status == 404 {
                return Ok(None);
            }
            if !r.success() {
                return Err(Self::api_failed(&format!("GET {path}"), &r));
            }
            return serde_json::from_slice(&r.body).map(Some).map_err(|e| {
                engine_error(KIND, format!("`GET {path}` gave unexpected JSON: {e}"))
            });
        }
        self.tool()
            .inspect(&["image", "inspect"], name, &["no such image"])
    }

    /// `GET /images/NAME/json?manifests=1`: the image `image_id`, there under the name, when
    /// this one request tells. On the classic store the name's `Id` is `image_id`. On the
    /// containerd image store (API 1.48+, Docker 28) the name points at a manifest or index the
    /// cache holds (`known`), and Docker lists a manifest among them whose config is `image_id`,
    /// with all its content available: no need to ask containerd. `None` otherwise (another
    /// image, older APIs, which list no manifests): the other requests answer.
    fn present_by_name(
        &self,
        image_id: &ImageId,
        reference: &str,
        known: &[Known],
    ) -> Result<Option<EngineImage>, Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct WithManifests {
            id: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            #[serde(default)]
            manifests: Option<Vec<Summary>>,
        }
        #[derive(Deserialize)]
        struct Summary {
            #[serde(rename = "ID")]
            id: String,
            #[serde(rename = "Available", default)]
            available: bool,
        }
        let Some(api) = &self.api else {
            return Ok(None);
        };
        let name = parse_reference(reference)?.to_string();
        let path = format!("/images/{}/json?manifests=1", encode(&name, b"/:@"));
        let r = self.get(api, &path)?;
        let Some(doc) = (r.success())
            .then(|| serde_json::from_slice::<WithManifests>(&r.body).ok())
            .flatten()
        else {
            return Ok(None);
        };
        if ImageId::parse_user(&doc.id).is_ok_and(|id| id == *image_id) {
            // Only the classic store reports config digests as IDs.
            let _ = self.store.set(Store::Classic);
            return listed_image(KIND, doc.id, doc.repo_tags).map(Some);
        }
        let ours = |digest: &str| known.iter().find(|k| k.digest.to_string() == digest);
        let holds = doc.manifests.iter().flatten().any(|m| {
            m.available && ours(&m.id).is_some_and(|k| manifest_config(&k.bytes) == Some(*image_id))
        });
        if !holds || ours(&doc.id).is_none() {
            return Ok(None);
        }
        Ok(Some(EngineImage {
            image_id: *image_id,
            engine_id: doc.id,
            tags: doc.repo_tags.unwrap_or_default(),
        }))
    }

    fn via_containerd<T>(&self, c: &Containerd, r: Result<T, Error>) -> Result<T, Error> {
        r.map_err(|e| {
            engine_error(
                KIND,
                format!(
                    "Docker uses the containerd image store, whose image IDs are manifest digests; reading config digests from containerd at {} failed: {e}",
                    c.endpoint()
                ),
            )
        })
    }

    fn load_api(
        &self,
        api: &Client,
        produce: &mut dyn FnMut(&mut dyn Write) -> Result<(), Error>,
    ) -> Result<(), Error> {
        const WHAT: &str = "POST /images/load";
        let s = api
            .post_streamed("/images/load?quiet=1", "application/x-tar", produce)
            .map_err(|e| self.api_error(api, WHAT, e))?;
        if !s.response.success() {
            return Err(Self::api_failed(WHAT, &s.response));
        }
        if let Some(message) = stream_error(&s.response.body)? {
            return Err(engine_error(KIND, message));
        }
        match s.input_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Engine for Docker {
    fn kind(&self) -> EngineKind {
        KIND
    }

    fn endpoint(&self) -> String {
        self.host.clone()
    }

    fn ping(&self) -> Result<(), Error> {
        if let Some(api) = &self.api {
            let r = api
                .get("/_ping", PING_TIMEOUT)
                .map_err(|e| self.api_error(api, "GET /_ping", e))?;
            if !r.success() {
                return Err(unavailable(
                    KIND,
                    &self.host,
                    format!(
                        "`GET /_ping` answered {} {}: {}",
                        r.status,
                        r.reason,
                        r.message()
                    ),
                ));
            }
            return Ok(());
        }
        check_socket(KIND, &self.host, &self.host)?;
        self.tool()
            .ping(&["version", "--format", "{{.Server.APIVersion}}"])
    }

    fn image(&self, image_id: &ImageId) -> Result<Option<EngineImage>, Error> {
        if let Some(Store::Containerd(c)) = self.store.get() {
            return self.via_containerd(c, c.image(image_id));
        }
        if let Some(found) = self.inspect(&image_id.to_string())?
            && ImageId::parse_user(&found.id).is_ok_and(|id| id == *image_id)
        {
            // Only the classic store reports config digests as IDs (the containerd store
            // reports manifest digests): no need to ask `/info`.
            let _ = self.store.set(Store::Classic);
            return Ok(Some(found.into_image(KIND)?));
        }
        match self.store()? {
            Store::Classic => Ok(None),
            Store::Containerd(c) => self.via_containerd(c, c.image(image_id)),
        }
    }

    fn image_for_ref(&self, reference: &str) -> Result<Option<EngineImage>, Error> {
        let r = parse_reference(reference)?;
        match self.store()? {
            Store::Classic => self
                .inspect(&r.to_string())?
                .map(|i| i.into_image(KIND))
                .transpose(),
            Store::Containerd(c) => self.via_containerd(c, c.image_for_ref(reference)),
        }
    }

    /// One request when the name names the image (see [`Docker::present_by_name`]); else, on
    /// the containerd image store, containerd's one-`ctr` answer (see [`Containerd`]).
    fn lookup(
        &self,
        image_id: &ImageId,
        reference: &str,
        known: &[Known],
    ) -> Result<Lookup, Error> {
        if let Some(found) = self.present_by_name(image_id, reference, known)? {
            return Ok(Lookup {
                image: Some(found.clone()),
                named: Some(found),
            });
        }
        if let Store::Containerd(c) = self.store()? {
            return self.via_containerd(c, c.lookup(image_id, reference, known));
        }
        Lookup::asking(self, image_id, reference)
    }

    fn load_with(
        &self,
        produce: &mut dyn FnMut(&mut dyn Write) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if let Some(api) = &self.api {
            return self.load_api(api, produce);
        }
        check_socket(KIND, &self.host, &self.host)?;
        self.tool().load(&["load"], produce)
    }

    /// The classic store keeps layers uncompressed and decompresses gzip ones with Go's
    /// decoder (or `unpigz`, when on its PATH), one layer after another; the containerd image
    /// store keeps them as their manifest names them.
    fn takes_layers_uncompressed(&self) -> bool {
        matches!(self.store(), Ok(Store::Classic))
    }

    /// The classic store's `docker load` looks each layer up by its chain ID before it opens
    /// the layer's file (moby `image/tarexport/load.go`), so a layer whose chain the engine
    /// holds needs no data. The chains it holds are the layer prefixes of its images: the
    /// answer is the longest prefix of `diff_ids` that some image in the engine starts with.
    /// Asked only over the API. The containerd image store keeps layers by blob digest: there
    /// containerd answers (the leading blobs its content store holds).
    fn reusable_layers(&self, layers: &[LayerIds]) -> Result<usize, Error> {
        let Some(api) = &self.api else {
            return Ok(0);
        };
        let store = self.store()?;
        if let Store::Containerd(c) = store {
            return self.via_containerd(c, c.reusable_layers(layers));
        }
        let Some(diff_ids) = layers.iter().map(|l| l.diff_id).collect::<Option<Vec<_>>>() else {
            return Ok(0);
        };
        if diff_ids.is_empty() {
            return Ok(0);
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Listed {
            id: String,
        }
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "PascalCase")]
        struct RootFs {
            #[serde(default)]
            layers: Vec<String>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Layers {
            #[serde(default, rename = "RootFS")]
            root_fs: RootFs,
        }
        let json = |path: &str| -> Result<Option<Vec<u8>>, Error> {
            let r = self.get(api, path)?;
            if r.status == 404 {
                return Ok(None); // removed since it was listed
            }
            if !r.success() {
                return Err(Self::api_failed(&format!("GET {path}"), &r));
            }
            Ok(Some(r.body))
        };
        let unexpected = |path: &str, e: serde_json::Error| {
            engine_error(KIND, format!("`GET {path}` gave unexpected JSON: {e}"))
        };
        let list_path = "/images/json?all=1";
        let listed: Vec<Listed> = match json(list_path)? {
            Some(b) => serde_json::from_slice(&b).map_err(|e| unexpected(list_path, e))?,
            None => return Ok(0),
        };
        let wanted: Vec<String> = diff_ids.iter().map(ToString::to_string).collect();
        let mut best = 0;
        for image in listed {
            let path = format!("/images/{}/json", encode(&image.id, b"/:@"));
            let Some(body) = json(&path)? else { continue };
            let layers: Layers = serde_json::from_slice(&body).map_err(|e| unexpected(&path, e))?;
            let common = layers
                .root_fs
                .layers
                .iter()
                .zip(&wanted)
                .take_while(|(have, want)| have == want)
                .count();
            best = best.max(common);
            if best == wanted.len() {
                break;
            }
        }
        Ok(best)
    }

    fn tag(&self, image_id: &ImageId, reference: &str) -> Result<(), Error> {
        let r = tag_reference(reference)?;
        let img = self.image(image_id)?.ok_or_else(|| {
            engine_error(
                KIND,
                format!(
                    "image {image_id} is not in Docker at {}; load it first",
                    self.host
                ),
            )
        })?;
        let target = r.to_string();
        if let Some(api) = &self.api {
            let (repo, tag) = split_tag(&target);
            let mut path = format!(
                "/images/{}/tag?repo={}",
                encode(&img.engine_id, b"/:@"),
                encode(repo, b"")
            );
            if let Some(tag) = tag {
                path.push_str("&tag=");
                path.push_str(&encode(tag, b""));
            }
            let what = format!("POST {path}");
            let resp = api
                .post(&path, QUERY_TIMEOUT)
                .map_err(|e| self.api_error(api, &what, e))?;
            if !resp.success() {
                return Err(Self::api_failed(&what, &resp));
            }
            return Ok(());
        }
        self.tool()
            .query(&["tag", img.engine_id.as_str(), target.as_str()])
            .map(drop)
    }
}

/// `name:tag` split as Docker does: the tag is what follows the last `:` after the last `/`
/// (a registry's port is not a tag).
/// The config digest a manifest names (`None` for anything else, an index included).
fn manifest_config(bytes: &[u8]) -> Option<ImageId> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    ImageId::parse(doc["config"]["digest"].as_str()?).ok()
}

fn split_tag(reference: &str) -> (&str, Option<&str>) {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => (
            &reference[..last_slash + i],
            Some(&reference[last_slash + i + 1..]),
        ),
        None => (reference, None),
    }
}

/// The first error of a JSON message stream (`{"stream":...}{"errorDetail":...,"error":...}`),
/// which is how the daemon reports a failure after it has answered 200.
fn stream_error(body: &[u8]) -> Result<Option<String>, Error> {
    use serde_json::Value;
    for v in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
        let v = v.map_err(|e| {
            engine_error(
                KIND,
                format!(
                    "`POST /images/load` answered something other than a JSON stream ({e}): {}",
                    super::cli::bounded(&String::from_utf8_lossy(body), 1000)
                ),
            )
        })?;
        let text = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        if let Some(m) = text("/errorDetail/message").or_else(|| text("/error")) {
            return Ok(Some(super::cli::bounded(m, 4000)));
        }
        if v.get("errorDetail").is_some() || v.get("error").is_some() {
            return Ok(Some(format!("the load failed: {v}")));
        }
    }
    Ok(None)
}

/// The CLI's words for "no daemon there".
const UNREACHABLE: &[&str] = &[
    "cannot connect to the docker daemon",
    "permission denied while trying to connect",
    "error during connect",
    "is the docker daemon running",
];

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Info {
    driver_status: Option<Vec<Vec<String>>>,
    containerd: Option<ContainerdInfo>,
    server_errors: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ContainerdInfo {
    address: String,
    namespaces: Option<ContainerdNamespaces>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ContainerdNamespaces {
    containers: String,
}

/// `$DOCKER_CONFIG`, else `~/.docker`.
pub(crate) fn config_dir(var: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    var("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| Path::new(&h).join(".docker")))
}

/// Where the `docker` CLI would connect: `DOCKER_HOST`, the current context, the default.
pub(crate) fn resolve_target(
    var: &dyn Fn(&str) -> Option<String>,
    config: Option<&Path>,
) -> Target {
    if let Some(host) = var("DOCKER_HOST") {
        return Target {
            host,
            context: None,
        };
    }
    let name = var("DOCKER_CONTEXT").or_else(|| config.and_then(current_context));
    match name {
        Some(name) if name != "default" => Target {
            host: config
                .and_then(|c| context_host(c, &name))
                .unwrap_or_else(|| format!("docker context {name:?}")),
            context: Some(name),
        },
        _ => Target {
            host: Docker::DEFAULT_HOST.to_owned(),
            context: None,
        },
    }
}

/// Reads a small JSON file (config and context files are kilobytes).
fn read_json(path: &Path) -> Option<serde_json::Value> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > 1 << 20 {
        return None;
    }
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// `currentContext` of `config.json`.
fn current_context(config: &Path) -> Option<String> {
    read_json(&config.join("config.json"))?
        .get("currentContext")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// `Endpoints.docker.Host` of `contexts/meta/<sha256 of the name>/meta.json`.
fn context_host(config: &Path, name: &str) -> Option<String> {
    let dir = Digest::of_bytes(name.as_bytes()).hex();
    read_json(&config.join("contexts/meta").join(dir).join("meta.json"))?
        .pointer("/Endpoints/docker/Host")?
        .as_str()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn target(vars: &[(&str, &str)], config: Option<&Path>) -> Target {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        resolve_target(&|n: &str| vars.get(n).cloned(), config)
    }

    #[test]
    fn docker_host_wins_then_context_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path();
        std::fs::write(cfg.join("config.json"), r#"{"currentContext":"colima"}"#).unwrap();
        // The CLI's layout: contexts/meta/<sha256("colima")>/meta.json
        let real = cfg
            .join("contexts/meta")
            .join(Digest::of_bytes(b"colima").hex());
        std::fs::create_dir_all(&real).unwrap();
        std::fs::write(
            real.join("meta.json"),
            r#"{"Name":"colima","Metadata":{"Description":"colima"},"Endpoints":{"docker":{"Host":"unix:///Users/me/.colima/default/docker.sock","SkipTLSVerify":false}}}"#,
        )
        .unwrap();

        let t = target(&[("DOCKER_HOST", "tcp://10.0.0.1:2376")], Some(cfg));
        assert_eq!(t.host, "tcp://10.0.0.1:2376");
        assert_eq!(t.context, None);

        let t = target(&[], Some(cfg));
        assert_eq!(t.host, "unix:///Users/me/.colima/default/docker.sock");
        assert_eq!(t.context.as_deref(), Some("colima"));

        let t = target(&[("DOCKER_CONTEXT", "default")], Some(cfg));
        assert_eq!(t.host, Docker::DEFAULT_HOST);
        assert_eq!(t.context, None);

        let t = target(&[("DOCKER_CONTEXT", "missing")], Some(cfg));
        assert_eq!(t.context.as_deref(), Some("missing"));
        assert!(t.host.contains("missing"));

        let t = target(&[], None);
        assert_eq!(t.host, Docker::DEFAULT_HOST);
    }

    #[test]
    fn sha256_of_context_name_matches_the_cli() {
        // `docker context create` for "desktop-linux" makes this directory.
        assert_eq!(
            Digest::of_bytes(b"desktop-linux").hex(),
            "fe9c6bd7a66301f49ca9b6a70b217107cd1284598bfc254700c989b916da791e"
        );
    }

    #[test]
    fn unix_hosts_use_the_api_others_the_cli() {
        assert!(Docker::new("unix:///run/docker.sock").api.is_some());
        assert!(Docker::new("/run/docker.sock").api.is_some());
        assert!(Docker::new("/run/docker.sock").via_cli().api.is_none());
        assert!(Docker::new("tcp://10.0.0.1:2376").api.is_none());
        assert!(Docker::new("ssh://me@host").api.is_none());
        let ctx = |host: &str| Target {
            host: host.to_owned(),
            context: Some("c".into()),
        };
        let d = Docker::from_target(ctx("unix:///Users/me/.colima/default/docker.sock"));
        assert_eq!(
            d.api.unwrap().socket(),
            Path::new("/Users/me/.colima/default/docker.sock")
        );
        assert!(
            Docker::from_target(ctx("tcp://10.0.0.1:2376"))
                .api
                .is_none()
        );
        assert!(
            Docker::from_target(ctx("docker context \"c\""))
                .api
                .is_none()
        );
    }

    #[test]
    fn tag_split_like_docker() {
        assert_eq!(
            split_tag("127.0.0.1:5000/busybox:v1"),
            ("127.0.0.1:5000/busybox", Some("v1"))
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/busybox"),
            ("127.0.0.1:5000/busybox", None)
        );
        assert_eq!(
            split_tag("docker.io/library/busybox:latest"),
            ("docker.io/library/busybox", Some("latest"))
        );
    }

    #[test]
    fn load_stream_errors() {
        let ok = br#"{"stream":"Loaded image: 127.0.0.1:5000/busybox:v1\n"}"#;
        assert_eq!(stream_error(ok).unwrap(), None);
        let bad = br#"{"stream":"x"}
{"errorDetail":{"message":"Error processing tar file(exit status 1): unexpected EOF"},"error":"Error processing tar file(exit status 1): unexpected EOF"}"#;
        assert_eq!(
            stream_error(bad).unwrap().as_deref(),
            Some("Error processing tar file(exit status 1): unexpected EOF")
        );
        assert_eq!(
            stream_error(br#"{"error":"only this"}"#)
                .unwrap()
                .as_deref(),
            Some("only this")
        );
        assert!(stream_error(b"<html>").is_err());
    }

    #[test]
    fn containerd_store_is_recognized_from_info() {
        let info: Info = serde_json::from_str(
            r#"{"Driver":"overlayfs","DriverStatus":[["driver-type","io.containerd.snapshotter.v1"]],
                "Containerd":{"Address":"/run/containerd/containerd.sock","Namespaces":{"Containers":"moby","Plugins":"plugins.moby"}}}"#,
        )
        .unwrap();
        assert!(
            info.driver_status
                .unwrap()
                .iter()
                .flatten()
                .any(|v| v.starts_with("io.containerd.snapshotter"))
        );
        let c = info.containerd.unwrap();
        assert_eq!(c.address, "/run/containerd/containerd.sock");
        assert_eq!(c.namespaces.unwrap().containers, "moby");
        let classic: Info =
            serde_json::from_str(r#"{"Driver":"vfs","DriverStatus":null}"#).unwrap();
        assert!(classic.driver_status.is_none());
    }
}
