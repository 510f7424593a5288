//! Writing loadable image archives from stored blobs: byte for byte (no recompression),
//! deterministic (the same image gives identical bytes), streamed (no temporary copy).

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;

use serde::Serialize;
use serde_json::json;

use crate::compression::Compression;
use crate::digest::{DiffId, Digest, hash_reader};
use crate::error::Error;
use crate::index::{ImageRecord, LayerRecord};
use crate::policy::artifact::{cosign_tag, referrer_descriptor};
use crate::policy::{SignatureArtifact, SignatureFormat};
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
    /// Layers decompressed on the way, for an engine that keeps them so and would otherwise
    /// decompress them itself, one after another (Docker's classic store): each is written
    /// under its diff_id, where `manifest.json` names it, which is all that engine reads. Only
    /// layers whose diff_id is known and whose blob declares its decompressed size (a tar
    /// header precedes the data); the others go as stored. false for a file: the OCI manifests
    /// in such an archive name blobs it does not hold.
    pub inflate_layers: bool,
    /// The signatures kept for the digest `index.json` names, written beside the image in the
    /// OCI format only (Docker's formats have no place for them): each one's blobs and manifest,
    /// listed in `index.json`, cosign's under its `sha256-<hex>.sig` name as in a registry, a
    /// referrer (whose `subject` names the image) without a name, as oras lays them out.
    pub signatures: &'a [SignatureArtifact],
}

/// How one layer goes into an archive.
struct LayerPlan {
    name: String,
    /// Decompressed on the way: the blob's compression and its declared decompressed size.
    inflate: Option<(Compression, u64)>,
}

impl LayerPlan {
    fn new(store: &Store, layer: &LayerRecord, inflate: bool) -> Result<Self, Error> {
        let as_stored = Self {
            name: blob_name(&layer.digest.0),
            inflate: None,
        };
        let Some(diff_id) = layer.diff_id.filter(|_| inflate) else {
            return Ok(as_stored);
        };
        let path = store.blob_path(&layer.digest.0);
        let file = store.open_blob(&layer.digest.0)?;
        let read_err = |e| crate::store::io_error(&path, e);
        let len = file.metadata().map_err(read_err)?.len();
        let mut magic = [0u8; 6];
        let n = file.read_at(&mut magic, 0).map_err(read_err)?;
        let compression = Compression::detect(&magic[..n]);
        if compression == Compression::None {
            return Ok(as_stored);
        }
        Ok(
            match compression.declared_size(&file, len).map_err(read_err)? {
                Some(size) => Self {
                    name: blob_name(&diff_id.0),
                    inflate: Some((compression, size)),
                },
                None => as_stored,
            },
        )
    }
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
        h.set_path(name).map_err(output_err)?;
        h.set_cksum();
        let out = self.tar.get_mut();
        out.write_all(h.as_bytes()).map_err(output_err)?;
        // Hashed while copied, on another core: a blob damaged on disk must not leave as a
        // valid-looking archive. The hasher reads the file itself: blobs are read-only and
        // content-addressed, so both reads see the same bytes.
        let (copied, hashed) = std::thread::scope(|s| {
            let hasher = s.spawn(|| hash_file(&file));
            // Written by hand rather than with `append_data` (an 8 KiB buffer). `io::copy`
            // moves the bytes in the kernel (copy_file_range) when `W` is a `File` or a
            // `BufWriter<File>`, which it flushes first; to anything else (a pipe, a socket, a
            // Vec, a `dyn Write`) it copies 1 MiB at a time through the BufReader's buffer.
            let mut blob = BufReader::with_capacity(1 << 20, (&file).take(size));
            let copied = io::copy(&mut blob, out);
            (copied, hasher.join())
        });
        let read_err = |e: io::Error| crate::store::io_error(&path, e);
        // A read error reaches the hasher too: only then is the blob to blame, else the output.
        let (found, hashed) = hashed
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
            .map_err(read_err)?;
        let copied = copied.map_err(output_err)?;
        if copied != size || hashed != size {
            return Err(read_err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the blob changed size while being saved",
            )));
        }
        let pad = (512 - size % 512) % 512;
        out.write_all(&[0u8; 512][..pad as usize])
            .map_err(output_err)?;
        check_blob(&found, digest, &path)
    }

    /// Writes an image's layers from the `skip`th on, each as its plan says. Layers that go
    /// decompressed are decompressed on other threads, the next one while this one is written
    /// (the engine reads faster than one core decompresses), in 1 MiB chunks, at most
    /// [`AHEAD`] of them waiting per layer: memory stays bounded.
    fn layers(
        &mut self,
        layers: &[LayerRecord],
        plans: &[LayerPlan],
        skip: usize,
    ) -> Result<(), Error> {
        // The layers to decompress, in order, each once.
        let jobs: Vec<(usize, Compression)> = (skip..layers.len())
            .filter(|&i| !self.written.contains(&plans[i].name))
            .filter(|&i| !plans[skip..i].iter().any(|p| p.name == plans[i].name))
            .filter_map(|i| plans[i].inflate.map(|(c, _)| (i, c)))
            .collect();
        std::thread::scope(|s| {
            let mut started = std::collections::VecDeque::new();
            let mut next = 0;
            for i in skip..layers.len() {
                let (plan, digest) = (&plans[i], &layers[i].digest.0);
                let Some((_, size)) = plan.inflate else {
                    self.blob(&plan.name, digest)?;
                    continue;
                };
                let Some(k) = jobs.iter().position(|&(j, _)| j == i) else {
                    continue; // written already
                };
                // This layer's decompression, and the next one's, are under way.
                while next < jobs.len() && next <= k + 1 {
                    let (j, c) = jobs[next];
                    started.push_back(Inflating::start(s, self.store, &layers[j].digest.0, c)?);
                    next += 1;
                }
                let inflating = started.pop_front().expect("started in order");
                self.inflated(&plan.name, digest, size, inflating)?;
            }
            Ok(())
        })
    }

    /// Writes a layer being decompressed as `size` bytes (what its blob declares). Fails when
    /// the data comes to another size than declared (gzip's trailer holds the size modulo 4 GiB
    /// of the last member only): the caller sends the layer as stored instead. The blob is not
    /// hashed here (that costs the engine's share of two cores): gzip's CRC (and zstd's checksum,
    /// when the frame has one) are checked by the decoder, and the engine checks the layer's
    /// diff_id; a blob damaged on disk fails one of them, and the load sent again as stored
    /// hashes it and names it.
    fn inflated(
        &mut self,
        name: &str,
        digest: &Digest,
        size: u64,
        inflating: Inflating<'_>,
    ) -> Result<(), Error> {
        self.written.insert(name.to_owned());
        let path = self.store.blob_path(digest);
        let read_err = |e: io::Error| crate::store::io_error(&path, e);
        let mut h = header(size, 0o444, false);
        h.set_path(name).map_err(output_err)?;
        h.set_cksum();
        let out = self.tar.get_mut();
        out.write_all(h.as_bytes()).map_err(output_err)?;
        let mut written = 0u64;
        for chunk in &inflating.chunks {
            let n = chunk
                .len()
                .min(usize::try_from(size - written).unwrap_or(usize::MAX));
            out.write_all(&chunk[..n]).map_err(output_err)?;
            written += n as u64;
            let _ = inflating.spare.try_send(chunk);
        }
        let decoded = inflating
            .done
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
            .map_err(read_err)?;
        if decoded != size {
            return Err(read_err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("decompresses to {decoded} bytes, not the {size} it declares"),
            )));
        }
        let pad = (512 - size % 512) % 512;
        out.write_all(&[0u8; 512][..pad as usize])
            .map_err(output_err)
    }
}

/// Chunks of decompressed data waiting per layer (of 1 MiB each): 32 MiB each for the layer
/// being written and the next one. More buys little: on two cores the engine needs one.
const AHEAD: usize = 32;
const CHUNK: usize = 1 << 20;

/// A stored layer being decompressed on a thread of its own.
struct Inflating<'scope> {
    chunks: std::sync::mpsc::Receiver<Vec<u8>>,
    /// Written chunks go back, so that the decoder need not allocate (and zero) new ones.
    spare: std::sync::mpsc::SyncSender<Vec<u8>>,
    /// How many bytes it decompressed to.
    done: std::thread::ScopedJoinHandle<'scope, io::Result<u64>>,
}

impl<'scope> Inflating<'scope> {
    fn start<'env>(
        s: &'scope std::thread::Scope<'scope, 'env>,
        store: &Store,
        digest: &Digest,
        compression: Compression,
    ) -> Result<Self, Error> {
        let file = store.open_blob(digest)?;
        let (tx, chunks) = std::sync::mpsc::sync_channel(AHEAD);
        let (spare, spares) = std::sync::mpsc::sync_channel::<Vec<u8>>(AHEAD);
        let done = s.spawn(move || -> io::Result<u64> {
            let mut d = compression.decoder(file)?;
            let mut decoded = 0u64;
            loop {
                let mut chunk = spares.try_recv().unwrap_or_default();
                chunk.resize(CHUNK, 0);
                let n = read_full(&mut d, &mut chunk)?;
                if n == 0 {
                    return Ok(decoded);
                }
                decoded += n as u64;
                chunk.truncate(n);
                if tx.send(chunk).is_err() {
                    return Ok(decoded); // the writer stopped
                }
            }
        });
        Ok(Self {
            chunks,
            spare,
            done,
        })
    }
}

/// Reads until `buf` is full or the input ends; how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A stored blob whose bytes hashed to `found` must be `digest`.
fn check_blob(found: &Digest, digest: &Digest, path: &std::path::Path) -> Result<(), Error> {
    if found == digest {
        return Ok(());
    }
    Err(Error::DigestMismatch {
        what: format!(
            "stored blob {} (run `imgcache fsck --deep --repair`, then pull again)",
            path.display()
        ),
        expected: digest.to_string(),
        found: found.to_string(),
    })
}

/// The sha256 and length of `file`, by positioned reads, which leave the file offset (the
/// copy's) alone; large ones, as few syscalls as possible.
fn hash_file(file: &File) -> io::Result<(Digest, u64)> {
    struct At<'a>(&'a File, u64);
    impl Read for At<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read_at(buf, self.1)?;
            self.1 += n as u64;
            Ok(n)
        }
    }
    hash_reader(At(file, 0), &mut vec![0u8; 4 << 20])
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
                let inflate = img.inflate_layers && format == SaveFormat::Combined;
                let plans = (r.layers.iter())
                    .map(|l| LayerPlan::new(store, l, inflate))
                    .collect::<Result<Vec<_>, _>>()?;
                w.layers(&r.layers, &plans, img.layers_in_engine)?;
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
                let top = desc["digest"].as_str().and_then(|d| Digest::parse(d).ok());
                descriptors.push(desc);
                if let (Some(top), SaveFormat::Oci) = (top, format) {
                    for a in img.signatures {
                        for (d, _) in &a.blobs {
                            w.blob(&blob_name(d), d)?;
                        }
                        w.blob(&blob_name(&a.digest), &a.digest)?;
                        descriptors.extend(match a.format {
                            SignatureFormat::CosignTag => Some(json!({
                                "mediaType": crate::registry::document_media_type(&a.manifest),
                                "digest": a.digest,
                                "size": a.manifest.len(),
                                "annotations": {
                                    "org.opencontainers.image.ref.name": cosign_tag(&top),
                                },
                            })),
                            _ => referrer_descriptor(a),
                        });
                    }
                }
                legacy.push(json!({
                    "Config": blob_name(&r.image_id.0),
                    "RepoTags": img.reference.and_then(repo_tag).into_iter().collect::<Vec<_>>(),
                    "Layers": plans.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
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
                inflate_layers: false,
                signatures: &[],
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
                inflate_layers: false,
                signatures: &[],
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
        damage(&store.blob_path(&ix.digest), 10);
        let img = SaveImage {
            record: &record,
            reference: None,
            index: Some(ix),
            layers_in_engine: 0,
            inflate_layers: false,
            signatures: &[],
        };
        let mut out = Vec::new();
        let e = write_archive(&store, &[img], SaveFormat::Combined, &mut out).unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    }

    /// Flips one bit of the stored (read-only) file at `path`, keeping its size.
    fn damage(path: &std::path::Path, at: usize) {
        let mut perm = std::fs::metadata(path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(path, perm).unwrap();
        let mut data = std::fs::read(path).unwrap();
        data[at] ^= 1;
        std::fs::write(path, data).unwrap();
    }

    /// Saves to a file as the CLI does (a `BufWriter` of it, where the blobs are copied in the
    /// kernel); its bytes.
    fn save_to_file(
        store: &Store,
        img: SaveImage<'_>,
        format: SaveFormat,
        path: &std::path::Path,
    ) -> Result<Vec<u8>, Error> {
        let out = io::BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
        write_archive(store, &[img], format, out)?;
        Ok(std::fs::read(path).unwrap())
    }

    #[test]
    fn a_damaged_layer_fails_a_save_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), Duration::from_secs(5)).unwrap();
        let (mut record, ix) = fixture(&store);
        // Larger than the copy's and the hasher's buffers, and not a multiple of 512.
        let big: Vec<u8> = (0..(9u32 << 20) + 7)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        record.layers[0].digest = BlobDigest(store.put_bytes(&big).unwrap());
        let reference = Reference::parse("example.test/a/b:v1").unwrap();
        let img = || SaveImage {
            record: &record,
            reference: Some(&reference),
            index: Some(ix.clone()),
            layers_in_engine: 0,
            inflate_layers: false,
            signatures: &[],
        };
        let out = dir.path().join("out.tar");
        for format in [SaveFormat::Combined, SaveFormat::Legacy, SaveFormat::Oci] {
            let bytes = save_to_file(&store, img(), format, &out).unwrap();
            assert!(
                bytes == save(&store, img(), format),
                "{format:?}: not as to a Vec"
            );
        }
        damage(&store.blob_path(&record.layers[0].digest.0), 5 << 20);
        for format in [SaveFormat::Combined, SaveFormat::Legacy, SaveFormat::Oci] {
            let e = save_to_file(&store, img(), format, &out).unwrap_err();
            assert!(matches!(e, Error::DigestMismatch { .. }), "{format:?}: {e}");
        }
    }
    #[test]
    fn inflated_layers_go_decompressed_under_their_diff_id_and_a_damaged_blob_fails() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Duration::from_secs(5)).unwrap();
        let (mut record, ix) = fixture(&store);
        let tar: Vec<u8> = (0..(3u32 << 20) + 5).map(|i| (i % 251) as u8).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let blob = gz.finish().unwrap();
        let diff_id = DiffId(Digest::of_bytes(&tar));
        record.layers[0].digest = BlobDigest(store.put_bytes(&blob).unwrap());
        record.layers[0].diff_id = Some(diff_id);
        let img = || SaveImage {
            record: &record,
            reference: None,
            index: Some(ix.clone()),
            layers_in_engine: 0,
            inflate_layers: true,
            signatures: &[],
        };
        let f = files(&save(&store, img(), SaveFormat::Combined));
        assert_eq!(f[&blob_name(&diff_id.0)], tar);
        assert!(!f.contains_key(&blob_name(&record.layers[0].digest.0)));
        let m: serde_json::Value = serde_json::from_slice(&f["manifest.json"]).unwrap();
        assert_eq!(m[0]["Layers"], json!([blob_name(&diff_id.0)]));
        // Files any engine loads keep the layers as stored.
        let f = files(&save(&store, img(), SaveFormat::Oci));
        assert_eq!(f[&blob_name(&record.layers[0].digest.0)], blob);

        damage(&store.blob_path(&record.layers[0].digest.0), blob.len() / 2);
        let mut out = Vec::new();
        let e = write_archive(&store, &[img()], SaveFormat::Combined, &mut out).unwrap_err();
        assert!(
            matches!(e, Error::DigestMismatch { .. } | Error::Io { .. }),
            "{e}"
        );
    }
}
