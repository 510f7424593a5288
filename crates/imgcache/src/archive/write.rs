//! Writing loadable image archives from stored blobs: byte for byte (no recompression),
//! deterministic (the same image gives identical bytes), streamed (no temporary copy).

use std::io::{self, Read, Write};

use serde::Serialize;
use serde_json::json;

use crate::digest::{DiffId, Digest, HashingReader};
use crate::error::Error;
use crate::index::ImageRecord;
use crate::reference::Reference;
use crate::store::Store;

/// Which layout to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SaveFormat {
    /// `docker save` of engine 25 and later: OCI layout plus `manifest.json`. Loads in every
    /// engine (old Docker reads `manifest.json`, containerd and Podman the OCI index).
    #[default]
    Combined,
    /// The pre-25 Docker layout (`<id>/layer.tar`, `repositories`), for old tools.
    Legacy,
    /// A plain OCI image layout.
    Oci,
}

impl std::str::FromStr for SaveFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "combined" | "docker" => Ok(Self::Combined),
            "legacy" => Ok(Self::Legacy),
            "oci" => Ok(Self::Oci),
            _ => Err(format!("unknown format {s:?}: combined, legacy or oci")),
        }
    }
}

/// One image to write, with the name it is saved under.
pub struct SaveImage<'a> {
    pub record: &'a ImageRecord,
    pub reference: Option<&'a Reference>,
}

/// Fixed metadata so that output depends on content only.
fn header(size: u64, mode: u32, dir: bool) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h
}

struct Writer<'s, W: Write> {
    tar: tar::Builder<W>,
    store: &'s Store,
    written: std::collections::HashSet<String>,
}

impl<W: Write> Writer<'_, W> {
    fn dir(&mut self, name: &str) -> io::Result<()> {
        if self.written.insert(name.to_owned()) {
            let mut h = header(0, 0o755, true);
            self.tar.append_data(&mut h, name, io::empty())?;
        }
        Ok(())
    }

    fn bytes(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        if self.written.insert(name.to_owned()) {
            let mut h = header(data.len() as u64, 0o444, false);
            self.tar.append_data(&mut h, name, data)?;
        }
        Ok(())
    }

    /// Copies a stored blob under `name` (once, however many images share it).
    fn blob(&mut self, name: &str, digest: &Digest) -> Result<(), Error> {
        if !self.written.insert(name.to_owned()) {
            return Ok(());
        }
        let path = self.store.blob_path(digest);
        let file = self.store.open_blob(digest)?;
        let size = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let mut h = header(size, 0o444, false);
        // Hashed while copied: a blob damaged on disk must not leave as a valid-looking archive.
        // Written by hand rather than with `append_data`, whose 8 KiB copy buffer makes a
        // 600 MB save cost 75,000 reads: the header, then 1 MiB chunks, then the padding.
        let mut hashing = HashingReader::new(file);
        let read_err = |e: io::Error| crate::store::io_error(&path, e);
        h.set_path(name).map_err(output_err)?;
        h.set_cksum();
        let out = self.tar.get_mut();
        out.write_all(h.as_bytes()).map_err(output_err)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut copied = 0u64;
        loop {
            let n = hashing.read(&mut buf).map_err(read_err)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(output_err)?;
            copied += n as u64;
        }
        if copied != size {
            return Err(read_err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the blob changed size while being saved",
            )));
        }
        let pad = (512 - size % 512) % 512;
        out.write_all(&[0u8; 512][..pad as usize])
            .map_err(output_err)?;
        let (found, _) = hashing.finish();
        if found != *digest {
            return Err(Error::DigestMismatch {
                what: format!(
                    "stored blob {} (run `imgcache fsck --deep --repair`, then pull again)",
                    path.display()
                ),
                expected: digest.to_string(),
                found: found.to_string(),
            });
        }
        Ok(())
    }
}

/// Where write errors say they happened; the caller knows the real name (a file, stdout, an
/// engine's input) and may replace it.
pub const OUTPUT: &str = "<archive output>";

fn output_err(e: io::Error) -> Error {
    crate::store::io_error(OUTPUT, e)
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// The name engines record: `registry/repo:tag` (a digest-only reference has none).
fn repo_tag(r: &Reference) -> Option<String> {
    r.tag.as_ref().map(|t| format!("{}:{t}", r.name()))
}

/// Writes `images` as one archive to `out`.
pub fn write_archive(
    store: &Store,
    images: &[SaveImage<'_>],
    format: SaveFormat,
    out: impl Write,
) -> Result<(), Error> {
    let mut w = Writer {
        tar: tar::Builder::new(out),
        store,
        written: Default::default(),
    };
    let io_err = output_err;
    match format {
        SaveFormat::Combined | SaveFormat::Oci => {
            w.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
                .map_err(io_err)?;
            w.dir("blobs").map_err(io_err)?;
            w.dir("blobs/sha256").map_err(io_err)?;
            let mut descriptors = Vec::new();
            let mut legacy = Vec::new();
            for img in images {
                let r = img.record;
                w.blob(&blob_name(&r.image_id.0), &r.image_id.0)?;
                for l in &r.layers {
                    w.blob(&blob_name(&l.digest.0), &l.digest.0)?;
                }
                w.blob(&blob_name(&r.manifest_digest.0), &r.manifest_digest.0)?;
                let mut desc = json!({
                    "mediaType": r.media_type,
                    "digest": r.manifest_digest,
                    "size": r.manifest_size,
                });
                if let Some(reference) = img.reference {
                    let mut ann = serde_json::Map::new();
                    ann.insert(
                        "io.containerd.image.name".into(),
                        reference.to_string().into(),
                    );
                    if let Some(t) = &reference.tag {
                        ann.insert("org.opencontainers.image.ref.name".into(), t.clone().into());
                    }
                    desc["annotations"] = ann.into();
                }
                descriptors.push(desc);
                legacy.push(json!({
                    "Config": blob_name(&r.image_id.0),
                    "RepoTags": img.reference.and_then(repo_tag).into_iter().collect::<Vec<_>>(),
                    "Layers": r.layers.iter().map(|l| blob_name(&l.digest.0)).collect::<Vec<_>>(),
                }));
            }
            let index = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": descriptors,
            });
            w.bytes("index.json", &to_json(&index)).map_err(io_err)?;
            if format == SaveFormat::Combined {
                w.bytes("manifest.json", &to_json(&legacy))
                    .map_err(io_err)?;
            }
        }
        SaveFormat::Legacy => {
            let mut manifest = Vec::new();
            let mut repositories = serde_json::Map::new();
            for img in images {
                let r = img.record;
                let config_name = format!("{}.json", r.image_id.0.hex());
                w.blob(&config_name, &r.image_id.0)?;
                let mut parent: Option<String> = None;
                let mut layer_names = Vec::new();
                for (i, l) in r.layers.iter().enumerate() {
                    let v1 = v1_id(parent.as_deref(), l.diff_id, &l.digest.0, i);
                    w.dir(&v1).map_err(io_err)?;
                    w.bytes(&format!("{v1}/VERSION"), b"1.0").map_err(io_err)?;
                    let mut v1_json = json!({ "id": v1 });
                    if let Some(p) = &parent {
                        v1_json["parent"] = p.clone().into();
                    }
                    w.bytes(&format!("{v1}/json"), &to_json(&v1_json))
                        .map_err(io_err)?;
                    let name = format!("{v1}/layer.tar");
                    w.blob(&name, &l.digest.0)?;
                    layer_names.push(name);
                    parent = Some(v1);
                }
                let tag = img.reference.and_then(repo_tag);
                if let (Some(reference), Some(top)) = (img.reference, &parent)
                    && let Some(t) = &reference.tag
                {
                    let entry = repositories
                        .entry(reference.name())
                        .or_insert_with(|| json!({}));
                    entry[t] = top.clone().into();
                }
                manifest.push(json!({
                    "Config": config_name,
                    "RepoTags": tag.into_iter().collect::<Vec<_>>(),
                    "Layers": layer_names,
                }));
            }
            w.bytes("manifest.json", &to_json(&manifest))
                .map_err(io_err)?;
            if !repositories.is_empty() {
                w.bytes("repositories", &to_json(&repositories))
                    .map_err(io_err)?;
            }
        }
    }
    w.tar.finish().map_err(io_err)?;
    w.tar
        .into_inner()
        .and_then(|mut o| o.flush())
        .map_err(io_err)
}

/// A deterministic legacy layer ID: the chain of the layers below it (as Docker derives its
/// own v1 IDs from the chain, though not with the same inputs).
fn v1_id(parent: Option<&str>, diff_id: Option<DiffId>, blob: &Digest, i: usize) -> String {
    let text = format!(
        "{}\n{}\n{blob}\n{i}",
        parent.unwrap_or(""),
        diff_id.map(|d| d.to_string()).unwrap_or_default()
    );
    Digest::of_bytes(text.as_bytes()).hex()
}

fn to_json(v: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}
