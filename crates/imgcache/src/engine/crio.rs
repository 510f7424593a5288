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

use super::cli::{Cli, EngineCli, parse_json};
use super::{
    Engine, EngineImage, EngineKind, check_socket, engine_error, listed_image, names_reference,
    parse_reference, unix_url,
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
        let endpoint = unix_url(endpoint);
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

    fn tool(&self) -> EngineCli<'_> {
        EngineCli::new(KIND, &self.cli, &self.endpoint, "crictl", UNREACHABLE)
    }

    /// Every image CRI-O has, IDs normalized.
    fn images(&self) -> Result<Vec<EngineImage>, Error> {
        check_socket(KIND, &self.endpoint, &self.endpoint)?;
        let out = self.tool().query(&["images", "--output", "json"])?;
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
        self.tool().ping(&["version"])
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
const UNREACHABLE: &[&str] = &[
    "connection error",
    "failed to connect",
    "validate service connection",
    "context deadline exceeded",
    "connect: no such file or directory",
    "connection refused",
];

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
    let list: ListImages = parse_json(KIND, "crictl images -o json", json)?;
    list.images
        .unwrap_or_default()
        .into_iter()
        .map(|i| listed_image(KIND, i.id, i.repo_tags))
        .collect()
}
