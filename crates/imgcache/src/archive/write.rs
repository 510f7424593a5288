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
    /// The index (or Docker manifest list) the reference was pulled by, when it is stored:
    /// the OCI formats then name it in `index.json`, as Docker's containerd image store does, so
    /// that engines record the digest the image was pulled by. Only this image's platform
    /// (its manifest, config and layers) is written; the index's other entries are not.
    pub index: Option<SaveIndex>,
    /// How many leading layers the receiving engine already holds (Docker's classic store
    /// looks a layer up by its chain ID before it opens the layer's file): the combined
    /// format names them in `manifest.json` but writes none of their bytes. 0 for a file.
    pub layers_in_engine: usize,
}

/// The stored index a reference was pulled by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveIndex {
    pub digest: Digest,
    /// Its own `mediaType` (an OCI index or a Docker manifest list).
    pub media_type: String,
    pub size: u64,
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
                for l in r.layers.iter().skip(img.layers_in_engine) {
                    w.blob(&blob_name(&l.digest.0), &l.digest.0)?;
                }
                w.blob(&blob_name(&r.manifest_digest.0), &r.manifest_digest.0)?;
                // The top level is what the reference was pulled by: the index when there was
                // one (engines that keep digests record this one), else the manifest.
                let mut desc = match &img.index {
                    Some(ix) => {
                        w.blob(&blob_name(&ix.digest), &ix.digest)?;
                        json!({
                            "mediaType": ix.media_type,
                            "digest": ix.digest,
                            "size": ix.size,
                        })
                    }
                    None => json!({
                        "mediaType": r.media_type,
                        "digest": r.manifest_digest,
                        "size": r.manifest_size,
                    }),
                };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{BlobDigest, ImageId};
    use crate::index::LayerRecord;
    use std::collections::BTreeMap;
    use std::time::Duration;

    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    const INDEX: &str = "application/vnd.oci.image.index.v1+json";

    /// A store holding one image (config, one layer, manifest) and an index of two platforms
    /// listing it; the image's record and the index descriptor.
    fn fixture(store: &Store) -> (ImageRecord, SaveIndex) {
        let config = store.put_bytes(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#).unwrap();
        let layer = store.put_bytes(b"not really a layer").unwrap();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"digest":"{config}","size":1}},"layers":[{{"digest":"{layer}","size":18}}]}}"#
        );
        let manifest_digest = store.put_bytes(manifest.as_bytes()).unwrap();
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{{"mediaType":"{MANIFEST}","digest":"{manifest_digest}","size":{},"platform":{{"os":"linux","architecture":"amd64"}}}},{{"mediaType":"{MANIFEST}","digest":"{}","size":1,"platform":{{"os":"linux","architecture":"arm64"}}}}]}}"#,
            manifest.len(),
            Digest::of_bytes(b"absent")
        );
        let index_digest = store.put_bytes(index.as_bytes()).unwrap();
        let record = ImageRecord {
            manifest_digest: BlobDigest(manifest_digest),
            media_type: MANIFEST.into(),
            image_id: ImageId(config),
            config_size: 1,
            platform: "linux/amd64".into(),
            manifest_size: manifest.len() as u64,
            layers: vec![LayerRecord {
                digest: BlobDigest(layer),
                size: 18,
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                diff_id: None,
            }],
            last_used: 0,
        };
        let ix = SaveIndex {
            digest: index_digest,
            media_type: INDEX.into(),
            size: index.len() as u64,
        };
        (record, ix)
    }

    /// The regular files of an archive, by name.
    fn files(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.header().entry_type().is_file())
            .map(|mut e| {
                let name = e.path().unwrap().display().to_string();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (name, data)
            })
            .collect()
    }

    fn save(store: &Store, img: SaveImage<'_>, format: SaveFormat) -> Vec<u8> {
        let mut out = Vec::new();
        write_archive(store, &[img], format, &mut out).unwrap();
        out
    }

    #[test]
    fn an_image_pulled_by_an_index_is_saved_under_the_index_with_this_platform_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Duration::from_secs(5)).unwrap();
        let (record, ix) = fixture(&store);
        let reference = Reference::parse("example.test/a/b:v1").unwrap();
        for format in [SaveFormat::Combined, SaveFormat::Oci] {
            let img = || SaveImage {
                record: &record,
                reference: Some(&reference),
                index: Some(ix.clone()),
                layers_in_engine: 0,
            };
            let bytes = save(&store, img(), format);
            assert!(bytes == save(&store, img(), format), "not deterministic");
            let f = files(&bytes);
            let index: serde_json::Value = serde_json::from_slice(&f["index.json"]).unwrap();
            assert_eq!(
                index["manifests"],
                json!([{
                    "mediaType": INDEX,
                    "digest": ix.digest,
                    "size": ix.size,
                    "annotations": {
                        "io.containerd.image.name": "example.test/a/b:v1",
                        "org.opencontainers.image.ref.name": "v1",
                    },
                }])
            );
            // The index as stored, this platform's manifest, config and layer; nothing else.
            let mut want: Vec<String> = [ix.digest, record.manifest_digest.0, record.image_id.0]
                .iter()
                .chain(record.layers.iter().map(|l| &l.digest.0))
                .map(blob_name)
                .chain(["index.json".into(), "oci-layout".into()])
                .collect();
            if format == SaveFormat::Combined {
                want.push("manifest.json".into());
                let m: serde_json::Value = serde_json::from_slice(&f["manifest.json"]).unwrap();
                assert_eq!(m[0]["Config"], blob_name(&record.image_id.0));
            }
            want.sort();
            assert_eq!(f.keys().cloned().collect::<Vec<_>>(), want);
            for (name, data) in &f {
                if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                    assert_eq!(Digest::of_bytes(data).hex(), hex, "{name}");
                }
            }
        }
        // Without the index (single-platform image), the manifest is the top level.
        let bytes = save(
            &store,
            SaveImage {
                record: &record,
                reference: Some(&reference),
                index: None,
                layers_in_engine: 0,
            },
            SaveFormat::Oci,
        );
        let f = files(&bytes);
        let index: serde_json::Value = serde_json::from_slice(&f["index.json"]).unwrap();
        assert_eq!(
            index["manifests"][0]["digest"],
            json!(record.manifest_digest)
        );
        assert_eq!(index["manifests"][0]["mediaType"], MANIFEST);
        assert!(!f.contains_key(&blob_name(&ix.digest)));
    }

    #[test]
    fn a_damaged_stored_index_fails_the_save() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Duration::from_secs(5)).unwrap();
        let (record, ix) = fixture(&store);
        let path = store.blob_path(&ix.digest);
        let mut perm = std::fs::metadata(&path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(&path, perm).unwrap();
        let mut data = std::fs::read(&path).unwrap();
        data[10] ^= 1;
        std::fs::write(&path, data).unwrap();
        let img = SaveImage {
            record: &record,
            reference: None,
            index: Some(ix),
            layers_in_engine: 0,
        };
        let mut out = Vec::new();
        let e = write_archive(&store, &[img], SaveFormat::Combined, &mut out).unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    }
}
