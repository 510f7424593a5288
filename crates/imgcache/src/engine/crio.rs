//! CRI-O through `crictl` (the CRI client): `crictl images -o json` lists every image with
//! its `id` (bare config hex on CRI-O, `sha256:<hex>` on containerd's CRI) and `repoTags`.
//!
//! The CRI has no image import and no tag operation. CRI-O reads the containers/storage store
//! Podman writes (as root `/var/lib/containers/storage`), so an image is handed to CRI-O by
//! loading it with Podman into that store ([`super::Podman`]); `load` and `tag` here say so.
//!
//! No CRI-O package exists on the machines this is developed on: the parsing is tested against
//! `crictl` output written per its documented format (protobuf JSON of `ListImagesResponse`).

use std::io::Write;
use std::path::PathBuf;

use serde::Deserialize;

use super::cli::{Cli, Output, PING_TIMEOUT, QUERY_TIMEOUT};
use super::{
    Engine, EngineImage, EngineKind, check_socket, engine_error, names_reference, normalize_id,
    parse_reference, run_error, unavailable,
};
use crate::digest::ImageId;
use crate::error::Error;

const KIND: EngineKind = EngineKind::Crio;
pub(crate) const DEFAULT_SOCKET: &str = "/var/run/crio/crio.sock";

/// CRI-O (or any CRI runtime), through `crictl`.
#[derive(Debug, Clone)]
pub struct Crio {
    cli: Cli,
    endpoint: String,
}

impl Crio {
    /// The CRI runtime at `endpoint` (`unix:///var/run/crio/crio.sock`, or just the path).
    pub fn new(endpoint: &str) -> Self {
        let endpoint = if endpoint.starts_with('/') {
            format!("unix://{endpoint}")
        } else {
            endpoint.to_owned()
        };
        let mut cli = Cli::new("crictl");
        cli.global_args = vec![
            "--runtime-endpoint".into(),
            endpoint.clone(),
            "--image-endpoint".into(),
            endpoint.clone(),
            "--timeout".into(),
            "30s".into(),
        ];
        Self { cli, endpoint }
    }

    /// `CONTAINER_RUNTIME_ENDPOINT`, default `unix:///var/run/crio/crio.sock`.
    pub fn from_env() -> Self {
        let ep = std::env::var("CONTAINER_RUNTIME_ENDPOINT")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| format!("unix://{DEFAULT_SOCKET}"));
        Self::new(&ep)
    }

    /// Runs this `crictl` program instead of the one on the PATH.
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.cli.program = program.into();
        self
    }

    /// Adds an environment variable for the `crictl` commands run.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.cli.env.push((key.into(), value.into()));
        self
    }

    fn run(&self, args: &[&str]) -> Result<Output, Error> {
        self.cli
            .run(args, QUERY_TIMEOUT)
            .map_err(|e| run_error(KIND, &self.endpoint, &self.cli, args, e))
    }

    /// Every image CRI-O has, IDs normalized.
    fn images(&self) -> Result<Vec<EngineImage>, Error> {
        check_socket(KIND, &self.endpoint, &self.endpoint)?;
        let args = ["images", "--output", "json"];
        let out = self.run(&args)?;
        if !out.success() {
            let msg = out.message();
            return Err(if unreachable(&msg) {
                unavailable(KIND, &self.endpoint, msg)
            } else {
                engine_error(KIND, format!("`crictl {}` failed: {msg}", args.join(" ")))
            });
        }
        parse_images(&out.stdout)
    }
}

impl Engine for Crio {
    fn kind(&self) -> EngineKind {
        KIND
    }

    fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    fn ping(&self) -> Result<(), Error> {
        check_socket(KIND, &self.endpoint, &self.endpoint)?;
        let args = ["version"];
        let out = self
            .cli
            .run(&args, PING_TIMEOUT)
            .map_err(|e| run_error(KIND, &self.endpoint, &self.cli, &args, e))?;
        if !out.success() {
            return Err(unavailable(KIND, &self.endpoint, out.message()));
        }
        Ok(())
    }

    fn image(&self, image_id: &ImageId) -> Result<Option<EngineImage>, Error> {
        Ok(self.images()?.into_iter().find(|i| i.image_id == *image_id))
    }

    fn image_for_ref(&self, reference: &str) -> Result<Option<EngineImage>, Error> {
        let r = parse_reference(reference)?;
        Ok(self.images()?.into_iter().find(|i| {
            i.tags
                .iter()
                .any(|t| t == reference || names_reference(t, &r))
        }))
    }

    fn load_with(
        &self,
        _produce: &mut dyn FnMut(&mut dyn Write) -> Result<(), Error>,
    ) -> Result<(), Error> {
        Err(engine_error(
            KIND,
            "CRI-O has no image import; load with podman into the same storage (`imgcache load --engine podman`, as root: /var/lib/containers/storage) or use `crictl pull`",
        ))
    }

    fn tag(&self, _image_id: &ImageId, _reference: &str) -> Result<(), Error> {
        Err(engine_error(
            KIND,
            "the CRI has no tag operation; tag with podman on the same storage (`podman tag`)",
        ))
    }
}

/// crictl's words for "no runtime there".
fn unreachable(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    [
        "connection error",
        "failed to connect",
        "validate service connection",
        "context deadline exceeded",
        "connect: no such file or directory",
        "connection refused",
    ]
    .iter()
    .any(|p| m.contains(p))
}

#[derive(Deserialize)]
struct ListImages {
    #[serde(default)]
    images: Option<Vec<CriImage>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CriImage {
    id: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
}

/// `crictl images -o json`.
fn parse_images(json: &[u8]) -> Result<Vec<EngineImage>, Error> {
    let list: ListImages = serde_json::from_slice(json).map_err(|e| {
        engine_error(
            KIND,
            format!("`crictl images -o json` printed unexpected JSON: {e}"),
        )
    })?;
    list.images
        .unwrap_or_default()
        .into_iter()
        .map(|i| {
            Ok(EngineImage {
                image_id: normalize_id(KIND, &i.id)?,
                engine_id: i.id,
                tags: i.repo_tags.unwrap_or_default(),
            })
        })
        .collect()
}
