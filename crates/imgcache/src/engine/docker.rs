//! Docker through the `docker` CLI, whose `image inspect` prints the Engine API's JSON.
//!
//! The classic image store (graph drivers: overlay2, vfs...) reports `.Id` = `sha256:` of the
//! config: that is the image ID. The containerd image store (`docker info` `DriverStatus`
//! names `io.containerd.snapshotter...`; Docker Desktop's option, the default of fresh
//! Engine 29+) reports the manifest or index digest instead, and Docker offers no command
//! that gives the config digest; there this adapter reads names and config digests from
//! containerd itself ([`Containerd`], at the address and namespace `docker info` reports,
//! normally `/run/containerd/containerd.sock` and `moby`), which needs access to that
//! socket (root, not Docker Desktop's VM). Only the classic store is tested here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

use super::cli::{Cli, Output, PING_TIMEOUT, QUERY_TIMEOUT};
use super::{
    Containerd, Engine, EngineImage, EngineKind, check_socket, engine_error, normalize_id,
    parse_reference, run_error, tag_reference, unavailable,
};
use crate::digest::{Digest, ImageId};
use crate::error::Error;

const KIND: EngineKind = EngineKind::Docker;

/// Docker, through the `docker` CLI.
#[derive(Debug)]
pub struct Docker {
    cli: Cli,
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

    /// Docker at `host`: `unix:///path/docker.sock` (or just the path), `tcp://...`, `ssh://...`.
    pub fn new(host: &str) -> Self {
        let host = if host.starts_with('/') {
            format!("unix://{host}")
        } else {
            host.to_owned()
        };
        let mut cli = Cli::new("docker");
        cli.global_args = vec!["--host".into(), host.clone()];
        Self {
            cli,
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
                    host: t.host,
                    store: OnceLock::new(),
                }
            }
        }
    }

    /// Runs this `docker` program instead of the one on the PATH.
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.cli.program = program.into();
        self
    }

    /// Adds an environment variable for the `docker` commands run.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.cli.env.push((key.into(), value.into()));
        self
    }

    fn run(&self, args: &[&str]) -> Result<Output, Error> {
        self.cli
            .run(args, QUERY_TIMEOUT)
            .map_err(|e| run_error(KIND, &self.host, &self.cli, args, e))
    }

    fn failed(&self, args: &[&str], out: &Output) -> Error {
        let msg = out.message();
        if unreachable(&msg) {
            unavailable(KIND, &self.host, msg)
        } else {
            engine_error(KIND, format!("`docker {}` failed: {msg}", args.join(" ")))
        }
    }

    /// Which image store the daemon uses (asked once).
    fn store(&self) -> Result<&Store, Error> {
        if let Some(s) = self.store.get() {
            return Ok(s);
        }
        let args = ["info", "--format", "{{json .}}"];
        let out = self.run(&args)?;
        if !out.success() {
            return Err(self.failed(&args, &out));
        }
        let info: Info = serde_json::from_slice(&out.stdout).map_err(|e| {
            engine_error(KIND, format!("`docker info` printed unexpected JSON: {e}"))
        })?;
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

    /// `docker image inspect NAME`: `None` when Docker has no such image.
    fn inspect(&self, name: &str) -> Result<Option<EngineImage>, Error> {
        let args = ["image", "inspect", name];
        let out = self.run(&args)?;
        if !out.success() {
            if out.message().to_ascii_lowercase().contains("no such image") {
                return Ok(None);
            }
            return Err(self.failed(&args, &out));
        }
        let list: Vec<Inspect> = serde_json::from_slice(&out.stdout).map_err(|e| {
            engine_error(
                KIND,
                format!("`docker image inspect` printed unexpected JSON: {e}"),
            )
        })?;
        let Some(first) = list.into_iter().next() else {
            return Ok(None);
        };
        Ok(Some(EngineImage {
            image_id: normalize_id(KIND, &first.id)?,
            engine_id: first.id,
            tags: first.repo_tags.unwrap_or_default(),
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
}

impl Engine for Docker {
    fn kind(&self) -> EngineKind {
        KIND
    }

    fn endpoint(&self) -> String {
        self.host.clone()
    }

    fn ping(&self) -> Result<(), Error> {
        check_socket(KIND, &self.host, &self.host)?;
        let args = ["version", "--format", "{{.Server.APIVersion}}"];
        let out = self
            .cli
            .run(&args, PING_TIMEOUT)
            .map_err(|e| run_error(KIND, &self.host, &self.cli, &args, e))?;
        if !out.success() {
            return Err(unavailable(KIND, &self.host, out.message()));
        }
        Ok(())
    }

    fn image(&self, image_id: &ImageId) -> Result<Option<EngineImage>, Error> {
        match self.store()? {
            Store::Classic => Ok(self
                .inspect(&image_id.to_string())?
                .filter(|i| i.image_id == *image_id)),
            Store::Containerd(c) => self.via_containerd(c, c.image(image_id)),
        }
    }

    fn image_for_ref(&self, reference: &str) -> Result<Option<EngineImage>, Error> {
        let r = parse_reference(reference)?;
        match self.store()? {
            Store::Classic => self.inspect(&r.to_string()),
            Store::Containerd(c) => self.via_containerd(c, c.image_for_ref(reference)),
        }
    }

    fn load_with(
        &self,
        produce: &mut dyn FnMut(&mut dyn Write) -> Result<(), Error>,
    ) -> Result<(), Error> {
        check_socket(KIND, &self.host, &self.host)?;
        let args = ["load"];
        let out = self
            .cli
            .run_with_stdin(&args, produce)
            .map_err(|e| run_error(KIND, &self.host, &self.cli, &args, e))?;
        if !out.success() {
            return Err(self.failed(&args, &out));
        }
        Ok(())
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
        let args = ["tag", img.engine_id.as_str(), target.as_str()];
        let out = self.run(&args)?;
        if !out.success() {
            return Err(self.failed(&args, &out));
        }
        Ok(())
    }
}

/// The CLI's words for "no daemon there".
fn unreachable(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    [
        "cannot connect to the docker daemon",
        "permission denied while trying to connect",
        "error during connect",
        "is the docker daemon running",
    ]
    .iter()
    .any(|p| m.contains(p))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspect {
    id: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
}

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
