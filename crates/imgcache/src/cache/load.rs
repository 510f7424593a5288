//! The engine side of the cache: `status` (is the image cached, valid, in the engine?) and
//! `load`, which decides in `load_cached` whether the engine gets nothing, a tag, or the image.

use std::io::Write;

use serde::Serialize;

use super::signatures::signed_digest;
use super::tarball::ForEngine;
use super::{Cache, PullOptions, blocking};
use crate::archive::MAX_MANIFEST_BYTES;
use crate::archive::write::SaveFormat;
use crate::digest::{Digest, ImageId};
use crate::engine::{Engine, EngineImage, EngineKind, Known, LayerIds, Lookup};
use crate::error::{Error, Problem};
use crate::index::{ImageRecord, RefRecord, SignatureRecord};
use crate::policy::{Policy, Signer};
use crate::reference::Reference;
use crate::verify::Level;

/// What `status` found.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub reference: String,
    pub cached: bool,
    /// The cached image passes the fast checks.
    pub valid: bool,
    pub image_id: Option<ImageId>,
    pub failures: Vec<Problem>,
    /// The signatures kept with the image: who signed, as last verified.
    pub signatures: Vec<SignatureRecord>,
    pub engine: EngineStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct EngineStatus {
    pub kind: String,
    pub endpoint: String,
    /// The engine holds the cached image ID.
    pub present: bool,
    /// What the engine itself calls that image.
    pub engine_id: Option<String>,
    /// The engine's reference names that image.
    pub tagged: bool,
    /// The image the engine's reference names now, normalized.
    pub tag_image_id: Option<ImageId>,
}

/// What `load` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadAction {
    /// The engine had the image and the tag: nothing sent.
    AlreadyPresent,
    /// The engine had the image: only the tag was added.
    Tagged,
    /// The image was streamed to the engine.
    Loaded,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub reference: String,
    pub image_id: ImageId,
    pub engine: String,
    pub endpoint: String,
    pub engine_id: String,
    pub action: LoadAction,
    /// The image was pulled first.
    pub pulled: bool,
    /// The kept signatures the policy accepted before anything was sent or tagged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signed_by: Vec<Signer>,
}

impl Cache {
    /// Is `reference` cached, does it verify (fast), and does `engine` hold its image ID
    /// (and the tag)? The engine's own ID is shown next to the image ID.
    pub fn status(&self, reference: &str, engine: &dyn Engine) -> Result<StatusReport, Error> {
        let name = Reference::parse(reference)?.to_string();
        let cached = match self.resolve(reference) {
            Ok(found) => Some(found),
            Err(Error::NotCached { .. }) => None,
            Err(e) => return Err(e),
        };
        let failures = match &cached {
            Some(_) => self.verify(reference, Level::Fast)?.failures,
            None => Vec::new(),
        };
        engine.ping()?;
        let image_id = cached.as_ref().map(|(_, i)| i.image_id);
        let seen = match &cached {
            Some((rec, img)) => engine.lookup(&img.image_id, &name, &self.known(rec, img))?,
            None => Lookup {
                image: None,
                named: engine.image_for_ref(&name)?,
            },
        };
        let in_engine = seen.image;
        let tag_image_id = seen.named.map(|i| i.image_id);
        let signatures = match &cached {
            Some((rec, img)) => self.signature_records(&signed_digest(rec.as_ref(), img))?,
            None => Vec::new(),
        };
        Ok(StatusReport {
            reference: name,
            cached: cached.is_some(),
            valid: cached.is_some() && failures.is_empty(),
            image_id,
            failures,
            signatures,
            engine: EngineStatus {
                kind: engine.kind().to_string(),
                endpoint: engine.endpoint(),
                present: in_engine.is_some(),
                engine_id: in_engine.map(|i| i.engine_id),
                tagged: image_id.is_some() && tag_image_id == image_id,
                tag_image_id,
            },
        })
    }

    /// Hands `reference` to `engine` only when the engine lacks its image ID: pulls it first
    /// when it is not cached (unless `opts.offline`), verifies it (fast), re-tags when only the
    /// tag is missing, otherwise streams a tarball to the engine and confirms the engine then
    /// reports the same image ID under the tag. The tarball names the digest the reference was
    /// pulled by (its index, else its manifest), which containerd, Docker's containerd image
    /// store and Podman record: an engine holding the image by another digest (pulled or
    /// loaded under another one) is sent the tarball rather than a tag, so that
    /// `REPO@DIGEST` resolves there afterwards. A failed load changes nothing in the cache.
    pub async fn load(
        &self,
        reference: &str,
        engine: &dyn Engine,
        opts: &PullOptions,
    ) -> Result<LoadReport, Error> {
        let parsed = Reference::parse(reference)?;
        let name = parsed.to_string();
        let pulled = match self.resolve(&name) {
            Ok(_) => false,
            Err(Error::NotCached { .. }) if !opts.offline => {
                // An engine that cannot take the image makes pulling it pointless.
                blocking(|| engine.ping())?;
                self.pull(&name, opts).await?;
                true
            }
            Err(e) => return Err(e),
        };
        blocking(|| self.load_cached(&parsed, engine, pulled, opts.policy.as_deref()))
    }

    fn load_cached(
        &self,
        parsed: &Reference,
        engine: &dyn Engine,
        pulled: bool,
        policy: Option<&Policy>,
    ) -> Result<LoadReport, Error> {
        let name = &parsed.to_string();
        let tagged_ref = parsed.tag.is_some();
        let (rec, img) = self.resolve(name)?;
        let report = self.verify(name, Level::Fast)?;
        if let Some(f) = report.failures.first() {
            let mut p = f.clone();
            p.message = format!(
                "{name}: {} (run `imgcache fsck --repair`, then pull again)",
                p.message
            );
            return Err(Error::archive(self.root(), p));
        }
        // Judged offline, before the engine is sent or told anything.
        let signed_by = match policy {
            Some(p) => {
                self.check_stored_signatures(p, parsed, &signed_digest(rec.as_ref(), &img))?
                    .signers
            }
            None => Vec::new(),
        };
        let id = img.image_id;
        // What a save names in index.json: the digest the reference was pulled by.
        let top = match &rec {
            Some(r) => self.save_top_digest(r, &img)?,
            None => img.manifest_digest.0,
        };
        let names_id = |named: &Option<EngineImage>| {
            !tagged_ref || named.as_ref().is_some_and(|i| i.image_id == id)
        };
        // The decision on every start, in as few requests as the engine allows; an engine that
        // does not answer is named by its ping.
        let seen = match engine.lookup(&id, name, &self.known(&rec, &img)) {
            Ok(seen) => seen,
            Err(e) => {
                engine.ping()?;
                return Err(e);
            }
        };
        let mut action = LoadAction::Loaded;
        if let Some(found) = seen.image {
            if names_id(&seen.named) {
                if digest_kept(engine, name, &id, &top, seen.named)? {
                    // Nothing changed: no need to ask the engine again.
                    return Ok(LoadReport {
                        reference: name.to_owned(),
                        image_id: id,
                        engine: engine.kind().to_string(),
                        endpoint: engine.endpoint(),
                        engine_id: found.engine_id,
                        action: LoadAction::AlreadyPresent,
                        pulled,
                        signed_by,
                    });
                }
            } else if !other_top_digest(&found, &id, &top) {
                // Only the name is missing: a tag is enough, unless the engine's copy came by
                // another digest than the one `name` was pulled by (Podman tells only once the
                // name is there).
                engine.tag(&id, name)?;
                if digest_kept(engine, name, &id, &top, engine.image_for_ref(name)?)? {
                    action = LoadAction::Tagged;
                }
            }
        }
        if action == LoadAction::Loaded {
            // Not there, or there by another digest: the engine records the one index.json
            // names. Layers the engine already holds (the previous version's, usually) go
            // without their bytes; should the engine lose them meanwhile, everything is sent.
            // Layers go decompressed to an engine that would decompress them itself on one
            // core; should that fail (a blob declaring another size than it has), as stored.
            let cut = ForEngine {
                layers_in_engine: self.layers_in_engine(engine, &img),
                inflate_layers: engine.takes_layers_uncompressed(),
                signatures: false,
            };
            let send = |cut: ForEngine| {
                engine.load_with(&mut |w: &mut dyn Write| {
                    self.save_for_engine(name, SaveFormat::Combined, cut, w)
                        .map(drop)
                })
            };
            match send(cut) {
                Err(e) if cut != ForEngine::default() => {
                    tracing::warn!("{e}; loading {name} again with every layer as stored");
                    send(ForEngine::default())?;
                }
                r => r?,
            }
        }
        let found = engine.image(&id)?;
        let Some(found) = found else {
            let tag_points = engine.image_for_ref(name)?.map(|i| i.image_id.to_string());
            return Err(Error::Engine {
                engine: engine.kind().to_string(),
                message: format!(
                    "after loading {name}, the engine does not report image {id}{}",
                    tag_points
                        .map(|t| format!(" (its {name} is {t})"))
                        .unwrap_or_default()
                ),
            });
        };
        if !names_id(&engine.image_for_ref(name)?) {
            return Err(Error::Engine {
                engine: engine.kind().to_string(),
                message: format!("after loading, {name} does not name image {id} in the engine"),
            });
        }
        Ok(LoadReport {
            reference: name.to_owned(),
            image_id: id,
            engine: engine.kind().to_string(),
            endpoint: engine.endpoint(),
            engine_id: found.engine_id,
            action,
            pulled,
            signed_by,
        })
    }

    /// The manifest and index `img` was pulled by, as stored (each checked against its digest),
    /// for [`Engine::lookup`]; what cannot be read is left to the engine.
    fn known(&self, rec: &Option<RefRecord>, img: &ImageRecord) -> Vec<Known> {
        let index = rec.as_ref().and_then(|r| r.index_digest);
        [Some(img.manifest_digest), index]
            .into_iter()
            .flatten()
            .filter_map(|d| {
                let bytes = self.store.read_blob(&d.0, MAX_MANIFEST_BYTES).ok()?;
                Some(Known { digest: d.0, bytes })
            })
            .collect()
    }

    /// How many leading layers of `img` `engine` holds already (0 when it cannot tell).
    fn layers_in_engine(&self, engine: &dyn Engine, img: &ImageRecord) -> usize {
        let layers: Vec<LayerIds> = (img.layers.iter())
            .map(|l| LayerIds {
                blob: l.digest,
                diff_id: l.diff_id,
            })
            .collect();
        engine.reusable_layers(&layers).unwrap_or_else(|e| {
            tracing::debug!("which layers the engine holds: {e}; sending every layer");
            0
        })
    }
}

/// Whether `engine` calls the image by a top-level digest (containerd, Docker's containerd image
/// store: the manifest or index an image record points at) other than `top`.
fn other_top_digest(found: &EngineImage, id: &ImageId, top: &Digest) -> bool {
    match Digest::parse(&found.engine_id) {
        Ok(d) => d != id.0 && d != *top,
        Err(_) => false,
    }
}

/// Whether `name` in `engine` keeps the digest `top` it was pulled by, as far as the engine
/// keeps any: Podman resolves `REPO@TOP` to the image; containerd and Docker's containerd image
/// store point the record of `name` at `top`; Docker's classic store keeps no digest of a
/// loaded image at all (moby#22011), so there is nothing to keep.
/// `named` is what the engine's `name` points at now.
fn digest_kept(
    engine: &dyn Engine,
    name: &str,
    id: &ImageId,
    top: &Digest,
    named: Option<EngineImage>,
) -> Result<bool, Error> {
    if engine.kind() == EngineKind::Podman {
        let pinned = format!("{}@{top}", Reference::parse(name)?.name());
        return Ok(engine
            .image_for_ref(&pinned)?
            .is_some_and(|i| i.image_id == *id));
    }
    Ok(match named {
        Some(found) => !other_top_digest(&found, id, top),
        None => true,
    })
}
