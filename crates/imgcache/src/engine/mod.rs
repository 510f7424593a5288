//! Container engines: does the engine already have an image (by image ID), load a tarball into
//! it, tag it.
//!
//! Each engine names an image its own way (see the table below); every adapter normalizes the
//! answer to the image ID, `sha256:<64 hex>` of the config blob, and compares whole IDs, never
//! prefixes or substrings.
//!
//! | engine | mechanism | "ID" the engine reports | image ID from it |
//! |---|---|---|---|
//! | [`Docker`] | the Engine API over the unix socket (`/_ping`, `/images/{id}/json`, `/images/load`, `/images/{id}/tag`); the `docker` CLI for tcp, ssh and TLS hosts | classic store: `.Id` = config digest; containerd image store: `.Id` = manifest/index digest | classic: `.Id`; containerd store: read from containerd's content store through [`Containerd`] (address and namespace from `docker info`: `moby` unless `--containerd-namespace`) |
//! | [`Podman`] | `podman` CLI (`image inspect`, `load`, `tag`), local store or `--url` service | `Id`, bare hex | `sha256:` + `Id` |
//! | [`Containerd`] | `ctr -a ADDRESS -n NAMESPACE` (`images ls`, `content get`, `images import -`, `images tag`) | top-level manifest/index digest (synthesized by `ctr import` for docker-archives) | manifest's `config.digest`; for an index the manifest of this host's platform |
//! | [`Crio`] | `crictl images -o json` | `id`, bare hex | `sha256:` + `id`; CRI-O cannot import or tag: use podman on the same storage |
//!
//! Docker is asked over its socket: a `docker` process costs ~25 ms each, and `load` of an image
//! the engine already has must answer in milliseconds. The other engines are asked through their
//! CLIs, each engine's stable interface, which know the engine's configuration (Podman
//! connections, `/etc/crictl.yaml`); no engine client library has to be compiled in.
//!
//! ```no_run
//! use imgcache::engine::{self, Engine};
//! use imgcache::ImageId;
//!
//! let engine = engine::detect(None)?;
//! engine.ping()?;
//! let id = ImageId::parse("sha256:3f22b83bc3fbbd5fb965afd0dc18b64fb9adc4d430119e33b425ab2ce15875d9")?;
//! if engine.image(&id)?.is_none() {
//!     let mut tarball = std::fs::File::open("busybox.tar")
//!         .map_err(|e| imgcache::Error::Io { path: "busybox.tar".into(), source: e })?;
//!     engine.load(&mut tarball)?;
//! }
//! # Ok::<(), imgcache::Error>(())
//! ```

mod cli;
mod containerd;
mod crio;
mod docker;
mod podman;

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

pub use containerd::Containerd;
pub use crio::Crio;
pub use docker::Docker;
pub use podman::Podman;

use crate::digest::{BlobDigest, DiffId, Digest, ImageId};
use crate::error::Error;
use crate::reference::Reference;

/// The engines imgcache hands images to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Docker,
    Podman,
    Containerd,
    Crio,
}

impl EngineKind {
    pub const ALL: [EngineKind; 4] = [
        EngineKind::Docker,
        EngineKind::Podman,
        EngineKind::Containerd,
        EngineKind::Crio,
    ];

    /// `docker`, `podman`, `containerd` or `crio`.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
            EngineKind::Containerd => "containerd",
            EngineKind::Crio => "crio",
        }
    }

    /// How to point imgcache at another instance of this engine (ends every "not reachable").
    fn how_to_point(self) -> &'static str {
        match self {
            EngineKind::Docker => {
                "start Docker, or point imgcache at another daemon with DOCKER_HOST=unix:///path/to/docker.sock (or `docker context use NAME`)"
            }
            EngineKind::Podman => {
                "check `podman info`; for a Podman service set CONTAINER_HOST=unix:///path/to/podman.sock (podman --url), and put extra global podman arguments (e.g. --root/--runroot) in IMGCACHE_PODMAN_ARGS"
            }
            EngineKind::Containerd => {
                "start containerd, or set CONTAINERD_ADDRESS=/path/to/containerd.sock and CONTAINERD_NAMESPACE (default k8s.io)"
            }
            EngineKind::Crio => {
                "start CRI-O, or set CONTAINER_RUNTIME_ENDPOINT=unix:///path/to/crio.sock"
            }
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An engine name that is none of `docker`, `podman`, `containerd`, `crio`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown engine {0:?}: expected docker, podman, containerd or crio")]
pub struct UnknownEngine(pub String);

impl FromStr for EngineKind {
    type Err = UnknownEngine;
    fn from_str(s: &str) -> Result<Self, UnknownEngine> {
        match s.trim().to_ascii_lowercase().as_str() {
            "docker" => Ok(EngineKind::Docker),
            "podman" => Ok(EngineKind::Podman),
            "containerd" => Ok(EngineKind::Containerd),
            "crio" | "cri-o" => Ok(EngineKind::Crio),
            _ => Err(UnknownEngine(s.to_owned())),
        }
    }
}

/// An image as an engine holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EngineImage {
    /// `sha256:<hex>` of the config blob, normalized from what the engine reports.
    pub image_id: ImageId,
    /// What the engine itself calls the image (its ID column, or containerd's top-level
    /// manifest/index digest): use it in messages and in the engine's own commands.
    pub engine_id: String,
    /// The names the engine has for it, as the engine spells them.
    pub tags: Vec<String>,
}

/// One engine. Every method talks to the engine (no caching of answers), blocking: call from
/// async code through `tokio::task::spawn_blocking`.
pub trait Engine: Send + Sync + fmt::Debug {
    fn kind(&self) -> EngineKind;

    /// The socket, address or store this adapter talks to, for messages.
    fn endpoint(&self) -> String;

    /// Is the engine there and answering? Otherwise [`Error::EngineUnavailable`] naming the
    /// endpoint and how to point at another.
    fn ping(&self) -> Result<(), Error>;

    /// The image with exactly this image ID, if the engine has it.
    fn image(&self, image_id: &ImageId) -> Result<Option<EngineImage>, Error>;

    /// The image the engine's `reference` (a name, normalized as Docker does) points at.
    fn image_for_ref(&self, reference: &str) -> Result<Option<EngineImage>, Error>;

    /// Loads an image tarball whose bytes `produce` writes into the engine's input (streamed:
    /// no copy of the tarball is made here). If `produce` fails while the engine still reads,
    /// the engine is stopped before it sees the end of its input and the producer's error is
    /// returned; the input's last 64 KiB are held back until `produce` has succeeded (engines
    /// load a tarball once they read its end-of-archive blocks, before their input ends), so
    /// a producer failing even after its last byte loads nothing; if the engine rejects the tarball, its message is passed through in
    /// [`Error::Engine`]. Check [`Engine::image`] afterwards: engines accept archives that
    /// name no image.
    fn load_with(
        &self,
        produce: &mut dyn FnMut(&mut dyn Write) -> Result<(), Error>,
    ) -> Result<(), Error>;

    /// [`Engine::load_with`] from a reader (a tarball file, a pipe).
    fn load(&self, tarball: &mut dyn Read) -> Result<(), Error> {
        self.load_with(&mut |w: &mut dyn Write| {
            io::copy(tarball, w)
                .map(drop)
                .map_err(|e| Error::io("<image tarball>", e))
        })
    }

    /// [`Engine::image`] and [`Engine::image_for_ref`] at once, in as few requests as the engine
    /// allows: an already-present load is decided here, on every start. `known` are manifests
    /// and indexes the caller holds (checked against their digests), which an adapter that reads
    /// them back from the engine to find a config digest may use instead: content is addressed
    /// by digest, so such a copy is never stale.
    fn lookup(
        &self,
        image_id: &ImageId,
        reference: &str,
        known: &[Known],
    ) -> Result<Lookup, Error> {
        let _ = known;
        Lookup::asking(self, image_id, reference)
    }

    /// Gives the image `image_id` the name `reference` (moved there if it named another).
    fn tag(&self, image_id: &ImageId, reference: &str) -> Result<(), Error>;

    /// Whether the engine is better sent layers decompressed than as stored: it keeps them
    /// uncompressed and would otherwise decompress each itself, on one core (Docker's classic
    /// store). The diff_ids it checks are the same either way.
    fn takes_layers_uncompressed(&self) -> bool {
        false
    }

    /// How many leading `layers` of an image (in order) the engine already holds in a way that
    /// lets [`Engine::load_with`] take a tarball without their data (see `save`'s
    /// `layers_in_engine`). 0 when the engine cannot tell or cannot reuse them.
    fn reusable_layers(&self, layers: &[LayerIds]) -> Result<usize, Error> {
        let _ = layers;
        Ok(0)
    }
}

/// One layer of an image to load, as the cache knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerIds {
    pub blob: BlobDigest,
    /// Known when the cached config names it.
    pub diff_id: Option<DiffId>,
}

/// What [`Engine::lookup`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lookup {
    /// The image with the image ID asked for, if the engine has it.
    pub image: Option<EngineImage>,
    /// The image the reference names there.
    pub named: Option<EngineImage>,
}

impl Lookup {
    /// The answers of [`Engine::image`] and [`Engine::image_for_ref`], asked one after the other.
    pub fn asking<E: Engine + ?Sized>(
        engine: &E,
        image_id: &ImageId,
        reference: &str,
    ) -> Result<Self, Error> {
        Ok(Self {
            image: engine.image(image_id)?,
            named: engine.image_for_ref(reference)?,
        })
    }
}

/// A manifest or index the caller holds, whose bytes hash to `digest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

/// The engine to use. `Some(kind)`: that engine, configured from its usual environment
/// variables (not pinged: [`Engine::ping`] tells whether it answers). `None`, in this order:
///
/// 1. `DOCKER_HOST` set: Docker at that host;
/// 2. `CONTAINER_HOST` set: the Podman service at that URL;
/// 3. `CONTAINERD_ADDRESS` set: containerd there, namespace `CONTAINERD_NAMESPACE` (default
///    `k8s.io`, where the kubelet looks);
/// 4. `CONTAINER_RUNTIME_ENDPOINT` set: CRI-O there (containerd when the path names
///    containerd: containerd serves CRI on its own socket);
/// 5. the current Docker context (`DOCKER_CONTEXT`, or `currentContext` of
///    `$DOCKER_CONFIG/config.json`, default `~/.docker`) when it is not `default`, else
///    `/var/run/docker.sock`, if it answers (a non-unix context is taken as is);
/// 6. `podman` on the PATH (its local store; `IMGCACHE_PODMAN_ARGS` adds global arguments);
/// 7. `/run/containerd/containerd.sock`, if it answers;
/// 8. `/var/run/crio/crio.sock`, if it answers.
///
/// None of them: [`Error::EngineUnavailable`] listing what was tried.
pub fn detect(kind: Option<EngineKind>) -> Result<Box<dyn Engine>, Error> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let probe = Probe {
        var: &var,
        socket_answers: &|p: &Path| UnixStream::connect(p).is_ok(),
        in_path: &|prog: &str| find_in_path(prog).is_some(),
        docker_config: docker::config_dir(&var),
    };
    let choice = match kind {
        Some(k) => Choice::from_env(k),
        None => choose(&probe).map_err(|tried| Error::EngineUnavailable {
            engine: "engine".into(),
            endpoint: "auto-detection".into(),
            message: format!(
                "no container engine found (tried {}); choose one with --engine, or set DOCKER_HOST, CONTAINER_HOST, CONTAINERD_ADDRESS or CONTAINER_RUNTIME_ENDPOINT",
                tried.join(", ")
            ),
        })?,
    };
    Ok(choice.build(&probe))
}

/// What the environment offers, injectable for tests.
struct Probe<'a> {
    var: &'a dyn Fn(&str) -> Option<String>,
    socket_answers: &'a dyn Fn(&Path) -> bool,
    in_path: &'a dyn Fn(&str) -> bool,
    docker_config: Option<PathBuf>,
}

/// The result of detection, before an adapter is built.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Choice {
    Docker,
    Podman,
    /// containerd at this address (`None`: from the environment).
    Containerd(Option<String>),
    Crio,
}

impl Choice {
    fn from_env(kind: EngineKind) -> Self {
        match kind {
            EngineKind::Docker => Choice::Docker,
            EngineKind::Podman => Choice::Podman,
            EngineKind::Containerd => Choice::Containerd(None),
            EngineKind::Crio => Choice::Crio,
        }
    }

    fn build(self, probe: &Probe<'_>) -> Box<dyn Engine> {
        match self {
            Choice::Docker => Box::new(Docker::from_target(docker::resolve_target(
                probe.var,
                probe.docker_config.as_deref(),
            ))),
            Choice::Podman => Box::new(Podman::from_env()),
            Choice::Containerd(None) => Box::new(Containerd::from_env()),
            Choice::Containerd(Some(addr)) => Box::new(Containerd::new(
                addr,
                (probe.var)("CONTAINERD_NAMESPACE")
                    .unwrap_or_else(|| Containerd::DEFAULT_NAMESPACE.to_owned()),
            )),
            Choice::Crio => Box::new(Crio::from_env()),
        }
    }
}

/// The auto-detection order of [`detect`]; `Err` lists what was tried.
fn choose(p: &Probe<'_>) -> Result<Choice, Vec<String>> {
    let set = |name: &str| (p.var)(name).is_some();
    if set("DOCKER_HOST") {
        return Ok(Choice::Docker);
    }
    if set("CONTAINER_HOST") {
        return Ok(Choice::Podman);
    }
    if set("CONTAINERD_ADDRESS") {
        return Ok(Choice::Containerd(None));
    }
    if let Some(ep) = (p.var)("CONTAINER_RUNTIME_ENDPOINT") {
        return Ok(if ep.contains("containerd") {
            let path = unix_socket_path(&ep).map_or(ep.clone(), |p| p.display().to_string());
            Choice::Containerd(Some(path))
        } else {
            Choice::Crio
        });
    }
    let mut tried = Vec::new();
    let target = docker::resolve_target(p.var, p.docker_config.as_deref());
    match unix_socket_path(&target.host) {
        Some(path) if (p.socket_answers)(&path) => return Ok(Choice::Docker),
        Some(path) => tried.push(format!("docker at {}", path.display())),
        None if target.context.is_some() => return Ok(Choice::Docker),
        None => tried.push(format!("docker at {}", target.host)),
    }
    if (p.in_path)("podman") {
        return Ok(Choice::Podman);
    }
    tried.push("podman on the PATH".into());
    let ctd = Path::new(Containerd::DEFAULT_ADDRESS);
    if (p.socket_answers)(ctd) {
        return Ok(Choice::Containerd(None));
    }
    tried.push(format!("containerd at {}", ctd.display()));
    let crio = Path::new(crio::DEFAULT_SOCKET);
    if (p.socket_answers)(crio) {
        return Ok(Choice::Crio);
    }
    tried.push(format!("crio at {}", crio.display()));
    Err(tried)
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The socket path of a `unix://` endpoint or of a bare absolute path; `None` for tcp, ssh...
pub(crate) fn unix_socket_path(endpoint: &str) -> Option<PathBuf> {
    let e = endpoint.trim();
    if let Some(p) = e.strip_prefix("unix://") {
        return Some(PathBuf::from(p));
    }
    (e.starts_with('/')).then(|| PathBuf::from(e))
}

/// A bare socket path as a `unix://` URL; any other endpoint as it is.
pub(crate) fn unix_url(endpoint: &str) -> String {
    if endpoint.starts_with('/') {
        format!("unix://{endpoint}")
    } else {
        endpoint.to_owned()
    }
}

pub(crate) fn unavailable(kind: EngineKind, endpoint: &str, why: impl fmt::Display) -> Error {
    Error::EngineUnavailable {
        engine: kind.to_string(),
        endpoint: endpoint.to_owned(),
        message: format!("{why}; {}", kind.how_to_point()),
    }
}

pub(crate) fn engine_error(kind: EngineKind, message: impl fmt::Display) -> Error {
    Error::Engine {
        engine: kind.to_string(),
        message: message.to_string(),
    }
}

/// When `socket` is a unix socket, connect to it: a missing file or a refused connection is
/// reported at once, naming the path, instead of after a CLI's own dial timeout.
pub(crate) fn check_socket(kind: EngineKind, socket: &str, endpoint: &str) -> Result<(), Error> {
    if let Some(path) = unix_socket_path(socket) {
        UnixStream::connect(&path).map_err(|e| {
            unavailable(
                kind,
                endpoint,
                format!("cannot connect to {}: {e}", path.display()),
            )
        })?;
    }
    Ok(())
}

/// A user's reference, parsed (names are compared normalized: `busybox` is
/// `docker.io/library/busybox:latest`).
pub(crate) fn parse_reference(reference: &str) -> Result<Reference, Error> {
    Reference::parse(reference)
}

/// A reference an engine can tag with: a name and a tag, no digest.
pub(crate) fn tag_reference(reference: &str) -> Result<Reference, Error> {
    let r = Reference::parse(reference)?;
    if r.digest.is_some() {
        return Err(Error::InvalidReference {
            text: reference.to_owned(),
            reason: "an engine tag is name:tag, without @digest".into(),
        });
    }
    Ok(r)
}

/// Whether the engine's name `name` is the reference `r` (both normalized).
pub(crate) fn names_reference(name: &str, r: &Reference) -> bool {
    Reference::parse(name).is_ok_and(|n| n == *r)
}

/// An engine's image ID (`sha256:<hex>` or bare hex) as an [`ImageId`].
pub(crate) fn normalize_id(kind: EngineKind, text: &str) -> Result<ImageId, Error> {
    ImageId::parse_user(text).map_err(|_| {
        engine_error(
            kind,
            format!(
                "reported the image ID {:?}, which is not sha256:<64 hex>",
                crate::digest::truncate_for_message(text)
            ),
        )
    })
}

/// An image as an engine lists it: the ID the engine reports (normalized into the image ID)
/// and its names, if any.
pub(crate) fn listed_image(
    kind: EngineKind,
    engine_id: String,
    tags: Option<Vec<String>>,
) -> Result<EngineImage, Error> {
    Ok(EngineImage {
        image_id: normalize_id(kind, &engine_id)?,
        engine_id,
        tags: tags.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn choose_with(
        vars: &[(&str, &str)],
        sockets: &[&str],
        podman: bool,
    ) -> Result<Choice, Vec<String>> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let var = move |n: &str| vars.get(n).cloned();
        let sockets: Vec<PathBuf> = sockets.iter().map(PathBuf::from).collect();
        let answers = move |p: &Path| sockets.iter().any(|s| s == p);
        let in_path = move |_: &str| podman;
        let probe = Probe {
            var: &var,
            socket_answers: &answers,
            in_path: &in_path,
            docker_config: None,
        };
        choose(&probe)
    }

    #[test]
    fn kind_parses_and_prints() {
        for k in EngineKind::ALL {
            assert_eq!(k.to_string().parse::<EngineKind>().unwrap(), k);
        }
        assert_eq!("CRI-O".parse::<EngineKind>().unwrap(), EngineKind::Crio);
        let e = "rkt".parse::<EngineKind>().unwrap_err();
        assert!(e.to_string().contains("docker, podman, containerd or crio"));
    }

    #[test]
    fn environment_variables_come_first_in_documented_order() {
        let all = [
            ("DOCKER_HOST", "unix:///d.sock"),
            ("CONTAINER_HOST", "unix:///p.sock"),
            ("CONTAINERD_ADDRESS", "/c.sock"),
            (
                "CONTAINER_RUNTIME_ENDPOINT",
                "unix:///var/run/crio/crio.sock",
            ),
        ];
        assert_eq!(choose_with(&all, &[], true), Ok(Choice::Docker));
        assert_eq!(choose_with(&all[1..], &[], true), Ok(Choice::Podman));
        assert_eq!(
            choose_with(&all[2..], &[], true),
            Ok(Choice::Containerd(None))
        );
        assert_eq!(choose_with(&all[3..], &[], true), Ok(Choice::Crio));
        assert_eq!(
            choose_with(
                &[(
                    "CONTAINER_RUNTIME_ENDPOINT",
                    "unix:///run/containerd/containerd.sock"
                )],
                &[],
                true
            ),
            Ok(Choice::Containerd(Some(
                "/run/containerd/containerd.sock".into()
            )))
        );
    }

    #[test]
    fn default_sockets_that_answer_then_podman() {
        assert_eq!(
            choose_with(
                &[],
                &["/var/run/docker.sock", "/run/containerd/containerd.sock"],
                true
            ),
            Ok(Choice::Docker)
        );
        assert_eq!(
            choose_with(&[], &["/run/containerd/containerd.sock"], true),
            Ok(Choice::Podman)
        );
        assert_eq!(
            choose_with(&[], &["/run/containerd/containerd.sock"], false),
            Ok(Choice::Containerd(None))
        );
        assert_eq!(
            choose_with(&[], &["/var/run/crio/crio.sock"], false),
            Ok(Choice::Crio)
        );
        let tried = choose_with(&[], &[], false).unwrap_err();
        assert_eq!(tried.len(), 4, "{tried:?}");
        assert!(tried[0].contains("/var/run/docker.sock"), "{tried:?}");
    }

    #[test]
    fn unix_endpoints() {
        assert_eq!(
            unix_socket_path("unix:///a/b.sock"),
            Some(PathBuf::from("/a/b.sock"))
        );
        assert_eq!(
            unix_socket_path("/a/b.sock"),
            Some(PathBuf::from("/a/b.sock"))
        );
        assert_eq!(unix_socket_path("tcp://127.0.0.1:2375"), None);
        assert_eq!(unix_socket_path("ssh://me@host"), None);
    }
}
