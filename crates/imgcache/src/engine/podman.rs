//! Podman through the `podman` CLI: its local store (as root `/var/lib/containers/storage`,
//! the store CRI-O reads too), or a Podman service with `--url`.
//!
//! `podman image inspect` reports `Id` as bare config hex; `sha256:` is added. `podman load`
//! reads the tarball from stdin (Podman itself spools it to a temporary file under `TMPDIR`,
//! default `/var/tmp`, before reading it).

use std::io::Write;
use std::path::PathBuf;

use super::cli::{Cli, EngineCli};
use super::{
    Engine, EngineImage, EngineKind, check_socket, engine_error, parse_reference, tag_reference,
    unix_url,
};
use crate::digest::ImageId;
use crate::error::Error;

const KIND: EngineKind = EngineKind::Podman;

/// Podman, through the `podman` CLI.
#[derive(Debug, Clone)]
pub struct Podman {
    cli: Cli,
    url: Option<String>,
}

impl Podman {
    /// Podman's local store, with extra global arguments (e.g. `--root DIR --runroot DIR
    /// --storage-driver vfs` for a private store).
    pub fn local<I, S>(global_args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut cli = Cli::new("podman");
        cli.global_args = global_args.into_iter().map(Into::into).collect();
        Self { cli, url: None }
    }

    /// A Podman service (`podman system service`) at `url`: `unix:///run/podman/podman.sock`,
    /// `ssh://user@host/run/podman/podman.sock`...
    pub fn remote(url: &str) -> Self {
        let url = unix_url(url);
        let mut cli = Cli::new("podman");
        cli.global_args = vec!["--remote".into(), "--url".into(), url.clone()];
        Self {
            cli,
            url: Some(url),
        }
    }

    /// `CONTAINER_HOST` set: that service; else the local store. Whitespace-separated global
    /// arguments from `IMGCACHE_PODMAN_ARGS` are added in both cases.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let extra: Vec<String> = var("IMGCACHE_PODMAN_ARGS")
            .map(|a| a.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let mut p = match var("CONTAINER_HOST") {
            Some(url) => Self::remote(&url),
            None => Self::local(Vec::<String>::new()),
        };
        p.cli.global_args.extend(extra);
        p
    }

    /// Runs this `podman` program instead of the one on the PATH.
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.cli.program = program.into();
        self
    }

    /// Adds an environment variable for the `podman` commands run (e.g. `TMPDIR`, where
    /// `podman load` spools its input).
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.cli.env.push((key.into(), value.into()));
        self
    }

    fn tool(&self) -> EngineCli<'_> {
        EngineCli::new(KIND, &self.cli, self.endpoint(), "podman", UNREACHABLE)
    }

    /// A Podman service's socket, named at once when missing or refusing.
    fn check_service(&self) -> Result<(), Error> {
        match &self.url {
            Some(url) => check_socket(KIND, url, url),
            None => Ok(()),
        }
    }

    /// `podman image inspect NAME`: `None` when Podman has no such image.
    fn inspect(&self, name: &str) -> Result<Option<EngineImage>, Error> {
        self.tool()
            .inspect(
                &["image", "inspect"],
                name,
                &["image not known", "no such image"],
            )?
            .map(|i| i.into_image(KIND))
            .transpose()
    }
}

impl Engine for Podman {
    fn kind(&self) -> EngineKind {
        KIND
    }

    fn endpoint(&self) -> String {
        match &self.url {
            Some(url) => url.clone(),
            None if self.cli.global_args.is_empty() => "local store".to_owned(),
            None => format!("local store (podman {})", self.cli.global_args.join(" ")),
        }
    }

    fn ping(&self) -> Result<(), Error> {
        self.check_service()?;
        self.tool()
            .ping(&["info", "--format", "{{.Store.GraphRoot}}"])
    }

    fn image(&self, image_id: &ImageId) -> Result<Option<EngineImage>, Error> {
        Ok(self
            .inspect(&image_id.to_string())?
            .filter(|i| i.image_id == *image_id))
    }

    fn image_for_ref(&self, reference: &str) -> Result<Option<EngineImage>, Error> {
        let r = parse_reference(reference)?;
        self.inspect(&r.to_string())
    }

    fn load_with(
        &self,
        produce: &mut dyn FnMut(&mut dyn Write) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.check_service()?;
        self.tool().load(&["load", "--quiet"], produce)
    }

    fn tag(&self, image_id: &ImageId, reference: &str) -> Result<(), Error> {
        let r = tag_reference(reference)?;
        let img = self.image(image_id)?.ok_or_else(|| {
            engine_error(
                KIND,
                format!(
                    "image {image_id} is not in Podman ({}); load it first",
                    self.endpoint()
                ),
            )
        })?;
        let target = r.to_string();
        self.tool()
            .query(&["tag", img.engine_id.as_str(), target.as_str()])
            .map(drop)
    }
}

/// The CLI's words for "no service there".
const UNREACHABLE: &[&str] = &["cannot connect to podman", "unable to connect to podman"];
