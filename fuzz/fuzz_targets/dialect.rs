//! Structured archives: images of every dialect (docker save legacy and >= 25, crane, skopeo/
//! podman aliases, OCI layouts with nested indexes), their layers plain, gzip or zstd,
//! stored as files or behind links, inside a plain, gzip or zstd archive, plus arbitrary extra
//! entries and mutations (corrupted bytes, wrong diff_ids, dropped, duplicated or swapped
//! entries, headers whose size lies, truncation).
//!
//! Checks, at both levels (and for the plain and the compressed archive, the same verdict):
//! - soundness: deep verification never says ok for an image whose layers do not hash to the
//!   config's diff_ids (checked against what was written, see `check_deep_ok`);
//! - completeness: an archive written without mutations or extras verifies ok, fast and
//!   deep, and holds exactly the images written.
#![no_main]

use std::collections::{BTreeSet, HashSet};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use imgcache_fuzz::{
    LongNames, MemFile, Model, TarWriter, gzip, layer_tar, looks_compressed, normalize,
    open_and_verify, sha256_hex, verdict, zstd,
};
use libfuzzer_sys::fuzz_target;

const MANIFEST_MT: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_MT: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST_MT: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum DialectChoice {
    /// docker save before 25: `<id>.json`, `<v1>/layer.tar`, manifest.json, repositories.
    Legacy,
    /// crane tarball: config `sha256:<id>`, layers `<digest>.tar.gz`.
    Crane,
    Oci,
    /// index.json -> nested index (OCI or docker manifest list) -> manifests.
    OciNested { docker_list: bool },
    /// docker save from 25 on: OCI layout plus manifest.json.
    Combined,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Comp {
    None,
    Gzip,
    Zstd,
    /// Two gzip members (pigz, some registries).
    GzipTwoMembers,
}

#[derive(Arbitrary, Debug)]
enum Content {
    Files(Vec<(u8, Vec<u8>)>),
    Empty,
    /// Not a tar at all.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum LayerName {
    /// `<v1id>/layer.tar` (docker save before 25)
    DirLayerTar,
    /// `<diff_id>.tar` (podman, skopeo)
    DiffIdTar,
    /// `<blob>.tar.gz` (crane)
    BlobTarGz,
    /// `blobs/sha256/<blob>`
    BlobsPath,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum LayerStore {
    Regular,
    /// The file, plus `<v1id>/layer.tar` linking to it (skopeo); the manifest names the file.
    AliasSymlink,
    /// The manifest names `<v1id>/layer.tar`, a symlink to the file.
    ViaSymlink,
    /// The manifest names `<v1id>/layer.tar`, a hardlink to the file.
    ViaHardlink,
}

#[derive(Arbitrary, Debug)]
struct LayerSpec {
    content: Content,
    comp: Comp,
    name: LayerName,
    store: LayerStore,
}

#[derive(Arbitrary, Debug)]
enum Text {
    Vocab(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct ImageSpec {
    layers: Vec<u8>,
    tags: Vec<Text>,
    os: u8,
    arch: u8,
    created: bool,
}

#[derive(Arbitrary, Debug)]
enum ExtraKind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Other(u8),
}

#[derive(Arbitrary, Debug)]
enum ExtraData {
    Bytes(Vec<u8>),
    /// The data of a generated entry.
    CopyOf(u8),
}

#[derive(Arbitrary, Debug)]
enum Name {
    /// A generated entry's name.
    Generated(u8),
    Vocab(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Extra {
    name: Name,
    kind: ExtraKind,
    link: Name,
    data: ExtraData,
    /// Insert before the generated entry with this index (else append).
    at: Option<u8>,
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    /// Config diff_id of a layer: the stored blob's digest (a classic mix-up) or a stranger's.
    WrongDiffId { image: u8, layer: u8, use_stored: bool },
    ExtraDiffId { image: u8 },
    MissingDiffId { image: u8 },
    /// A descriptor size that differs from the blob's.
    WrongDescriptorSize { image: u8, layer: u8 },
    CorruptEntry { entry: u8, pos: u16, xor: u8 },
    TruncateEntryData { entry: u8, keep: u16 },
    DropEntry { entry: u8 },
    DuplicateEntry { entry: u8 },
    SwapData { a: u8, b: u8 },
    /// The header declares a size other than the data written.
    SizeLies { entry: u8, delta: i16 },
    /// Cut the archive (before compression) this many bytes before its end.
    TruncateArchive { cut: u16 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    dialect: DialectChoice,
    outer: Comp,
    pax: bool,
    end_marker: bool,
    dirs: bool,
    repositories: bool,
    layers: Vec<LayerSpec>,
    images: Vec<ImageSpec>,
    extras: Vec<Extra>,
    mutations: Vec<Mutation>,
}

const FILE_NAMES: &[&str] = &[
    "hello.txt",
    "bin/sh",
    "etc/passwd",
    ".wh.removed",
    "usr/lib/deep/dir/file",
    "a-name-longer-than-one-hundred-bytes/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.txt",
];
const TAGS: &[&str] = &[
    "busybox:v1",
    "127.0.0.1:5000/busybox:v1",
    "docker.io/library/busybox:latest",
    "multiarch:v1",
    "localhost/x",
    "busybox",
];
const OSES: &[&str] = &["linux", "windows", "unknown"];
const ARCHES: &[&str] = &["amd64", "arm64", "arm", "unknown"];
const NAMES: &[&str] = &[
    "manifest.json",
    "index.json",
    "oci-layout",
    "repositories",
    "blobs",
    "blobs/sha256",
    "./manifest.json",
    "x/../manifest.json",
    "/etc/passwd",
    "../escape",
    "dir/",
    "blobs/sha256/../../index.json",
];

fn pick<'a>(v: &[&'a str], i: u8) -> &'a str {
    v[usize::from(i) % v.len()]
}

fn text(t: &Text, vocab: &[&str]) -> String {
    match t {
        Text::Vocab(i) => pick(vocab, *i).to_owned(),
        Text::Raw(s) => s.clone(),
    }
}

/// One entry to write.
#[derive(Clone, Debug)]
struct Planned {
    name: String,
    kind: u8,
    link: String,
    data: Vec<u8>,
    /// What the header declares when it lies.
    declared: Option<u64>,
}

impl Planned {
    fn file(name: String, data: Vec<u8>) -> Self {
        Self { name, kind: b'0', link: String::new(), data, declared: None }
    }
}

struct Layer {
    stored: Vec<u8>,
    /// sha256 of the content before compression.
    diff_id: String,
    blob: String,
    comp: Comp,
    name: LayerName,
    store: LayerStore,
    v1: String,
}

fn compress(c: Comp, data: &[u8]) -> Vec<u8> {
    match c {
        Comp::None => data.to_vec(),
        Comp::Gzip => gzip(data),
        Comp::Zstd => zstd(data),
        Comp::GzipTwoMembers => {
            let (a, b) = data.split_at(data.len() / 2);
            let mut out = gzip(a);
            out.extend(gzip(b));
            out
        }
    }
}

fn layer_media_type(c: Comp) -> &'static str {
    match c {
        Comp::None => "application/vnd.oci.image.layer.v1.tar",
        Comp::Gzip | Comp::GzipTwoMembers => "application/vnd.oci.image.layer.v1.tar+gzip",
        Comp::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

/// The normalized name a link's raw target leads to, as tar semantics define it (None when
/// it leaves the archive).
fn link_target(name: &str, kind: u8, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let norm = normalize(name);
    // Symlinks are relative to the link's directory, hardlinks to the archive root.
    let mut parts: Vec<&str> = Vec::new();
    if kind == b'2' {
        parts = norm.split('/').collect();
        parts.pop();
    }
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// A JSON string.
fn json(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// What tar's 100-byte name field keeps of a name: up to the first NUL.
fn header_name(s: &str) -> &str {
    if s.len() <= 100 { s.split('\0').next().unwrap_or("") } else { s }
}

fuzz_target!(|input: Input| {
    static FILE: OnceLock<MemFile> = OnceLock::new();
    let file = FILE.get_or_init(|| MemFile::new("imgcache-fuzz-dialect"));
    run(file, input);
});

fn run(file: &MemFile, mut input: Input) {
    input.layers.truncate(4);
    input.images.truncate(3);
    input.extras.truncate(4);
    input.mutations.truncate(3);
    let dialect = input.dialect;
    let clean = input.extras.is_empty() && input.mutations.is_empty();
    let mut all_tars = true;

    // Layers.
    let layers: Vec<Layer> = input
        .layers
        .iter()
        .map(|spec| {
            let content = match &spec.content {
                Content::Files(files) => layer_tar(
                    &files
                        .iter()
                        .take(3)
                        .map(|(n, d)| (pick(FILE_NAMES, *n).to_owned(), d.clone()))
                        .collect::<Vec<_>>(),
                ),
                Content::Empty => layer_tar(&[]),
                Content::Raw(b) => {
                    all_tars = false;
                    b.clone()
                }
            };
            let stored = compress(spec.comp, &content);
            let diff_id = sha256_hex(&content);
            let blob = sha256_hex(&stored);
            let v1 = sha256_hex(format!("v1 {diff_id} {blob}").as_bytes());
            Layer { stored, diff_id, blob, comp: spec.comp, name: spec.name, store: spec.store, v1 }
        })
        .collect();

    let mut planned: Vec<Planned> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut add = |planned: &mut Vec<Planned>, p: Planned| {
        if seen.insert(p.name.clone()) {
            planned.push(p);
        }
    };
    let oci = matches!(
        dialect,
        DialectChoice::Oci | DialectChoice::OciNested { .. } | DialectChoice::Combined
    );
    if input.dirs && oci {
        add(&mut planned, Planned { kind: b'5', ..Planned::file("blobs/".into(), vec![]) });
        add(&mut planned, Planned { kind: b'5', ..Planned::file("blobs/sha256/".into(), vec![]) });
    }
    if oci {
        add(&mut planned, Planned::file("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()));
    }

    let mut expected_ids: BTreeSet<String> = BTreeSet::new();
    let mut unknown_platform = false;
    let mut legacy_items = Vec::new();
    let mut descriptors = Vec::new();
    for (i, img) in input.images.iter().enumerate() {
        let img_layers: Vec<&Layer> = if layers.is_empty() {
            Vec::new()
        } else {
            img.layers.iter().take(5).map(|&j| &layers[usize::from(j) % layers.len()]).collect()
        };
        let mut diff_ids: Vec<String> =
            img_layers.iter().map(|l| format!("sha256:{}", l.diff_id)).collect();
        let mut sizes: Vec<usize> = img_layers.iter().map(|l| l.stored.len()).collect();
        for m in &input.mutations {
            match *m {
                Mutation::WrongDiffId { image, layer, use_stored }
                    if usize::from(image) % 3 == i && !diff_ids.is_empty() =>
                {
                    let k = usize::from(layer) % diff_ids.len();
                    diff_ids[k] = match img_layers.get(k) {
                        Some(l) if use_stored => format!("sha256:{}", l.blob),
                        _ => format!("sha256:{}", sha256_hex(b"a stranger")),
                    };
                }
                Mutation::ExtraDiffId { image } if usize::from(image) % 3 == i => {
                    diff_ids.push(format!("sha256:{}", sha256_hex(b"extra")));
                }
                Mutation::MissingDiffId { image } if usize::from(image) % 3 == i => {
                    diff_ids.pop();
                }
                Mutation::WrongDescriptorSize { image, layer }
                    if usize::from(image) % 3 == i && !sizes.is_empty() =>
                {
                    let k = usize::from(layer) % sizes.len();
                    sizes[k] += 1;
                }
                _ => {}
            }
        }
        let (os, arch) = (pick(OSES, img.os), pick(ARCHES, img.arch));
        unknown_platform |= os == "unknown" && arch == "unknown";
        let ids_json: Vec<String> = diff_ids.iter().map(|d| json(d)).collect();
        let created = if img.created { r#""created":"2024-01-01T00:00:00Z","# } else { "" };
        let config = format!(
            r#"{{"architecture":"{arch}","os":"{os}",{created}"config":{{"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
            ids_json.join(",")
        )
        .into_bytes();
        let config_hex = sha256_hex(&config);
        if !(os == "unknown" && arch == "unknown" && matches!(dialect, DialectChoice::OciNested { .. })) {
            expected_ids.insert(config_hex.clone());
        }
        let tags: Vec<String> = img.tags.iter().take(3).map(|t| text(t, TAGS)).collect();

        if oci {
            add(&mut planned, Planned::file(format!("blobs/sha256/{config_hex}"), config.clone()));
            for l in &img_layers {
                add(&mut planned, Planned::file(format!("blobs/sha256/{}", l.blob), l.stored.clone()));
            }
            let layer_descs: Vec<String> = img_layers
                .iter()
                .zip(&sizes)
                .map(|(l, size)| {
                    format!(
                        r#"{{"mediaType":"{}","digest":"sha256:{}","size":{size}}}"#,
                        layer_media_type(l.comp),
                        l.blob
                    )
                })
                .collect();
            let manifest = format!(
                r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_MT}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config_hex}","size":{}}},"layers":[{}]}}"#,
                config.len(),
                layer_descs.join(",")
            )
            .into_bytes();
            let manifest_hex = sha256_hex(&manifest);
            add(&mut planned, Planned::file(format!("blobs/sha256/{manifest_hex}"), manifest.clone()));
            let annotations = match tags.first() {
                Some(t) => format!(
                    r#","annotations":{{"io.containerd.image.name":{t},"org.opencontainers.image.ref.name":{t}}}"#,
                    t = json(t)
                ),
                None => String::new(),
            };
            descriptors.push(format!(
                r#"{{"mediaType":"{MANIFEST_MT}","digest":"sha256:{manifest_hex}","size":{},"platform":{{"os":"{os}","architecture":"{arch}"}}{annotations}}}"#,
                manifest.len()
            ));
            if dialect == DialectChoice::Combined {
                let layer_names: Vec<String> =
                    img_layers.iter().map(|l| format!("blobs/sha256/{}", l.blob)).collect();
                legacy_items.push((format!("blobs/sha256/{config_hex}"), tags, layer_names));
            }
        } else {
            let config_name = if dialect == DialectChoice::Crane {
                format!("sha256:{config_hex}")
            } else {
                format!("{config_hex}.json")
            };
            add(&mut planned, Planned::file(config_name.clone(), config.clone()));
            let mut layer_names = Vec::new();
            for l in &img_layers {
                let name = if dialect == DialectChoice::Crane {
                    format!("{}.tar.gz", l.blob)
                } else {
                    match l.name {
                        LayerName::DirLayerTar => format!("{}/layer.tar", l.v1),
                        LayerName::DiffIdTar => format!("{}.tar", l.diff_id),
                        LayerName::BlobTarGz => format!("{}.tar.gz", l.blob),
                        LayerName::BlobsPath => format!("blobs/sha256/{}", l.blob),
                    }
                };
                let alias = format!("{}/layer.tar", l.v1);
                if input.dirs {
                    add(&mut planned, Planned { kind: b'5', ..Planned::file(format!("{}/", l.v1), vec![]) });
                    add(&mut planned, Planned::file(format!("{}/VERSION", l.v1), b"1.0".to_vec()));
                    add(&mut planned, Planned::file(format!("{}/json", l.v1), b"{}".to_vec()));
                }
                add(&mut planned, Planned::file(name.clone(), l.stored.clone()));
                let listed = if name == alias {
                    name
                } else {
                    let up = "../".repeat(alias.matches('/').count());
                    match l.store {
                        LayerStore::Regular => name,
                        LayerStore::AliasSymlink | LayerStore::ViaSymlink => {
                            add(&mut planned, Planned { kind: b'2', link: format!("{up}{name}"), ..Planned::file(alias.clone(), vec![]) });
                            if l.store == LayerStore::AliasSymlink { name } else { alias }
                        }
                        LayerStore::ViaHardlink => {
                            add(&mut planned, Planned { kind: b'1', link: name, ..Planned::file(alias.clone(), vec![]) });
                            alias
                        }
                    }
                };
                layer_names.push(listed);
            }
            legacy_items.push((config_name, tags, layer_names));
        }
    }
    if !legacy_items.is_empty() {
        let items: Vec<String> = legacy_items
            .iter()
            .map(|(c, tags, layers)| {
                let tags: Vec<String> = tags.iter().map(|t| json(t)).collect();
                let layers: Vec<String> = layers.iter().map(|l| json(l)).collect();
                format!(
                    r#"{{"Config":{},"RepoTags":[{}],"Layers":[{}]}}"#,
                    json(c),
                    tags.join(","),
                    layers.join(",")
                )
            })
            .collect();
        add(&mut planned, Planned::file("manifest.json".into(), format!("[{}]", items.join(",")).into_bytes()));
        if input.repositories {
            add(&mut planned, Planned::file("repositories".into(), b"{}".to_vec()));
        }
    }
    if oci {
        let top = match dialect {
            DialectChoice::OciNested { docker_list } => {
                let mt = if docker_list { DOCKER_LIST_MT } else { INDEX_MT };
                let nested = format!(
                    r#"{{"schemaVersion":2,"mediaType":"{mt}","manifests":[{}]}}"#,
                    descriptors.join(",")
                )
                .into_bytes();
                let hex = sha256_hex(&nested);
                add(&mut planned, Planned::file(format!("blobs/sha256/{hex}"), nested.clone()));
                vec![format!(
                    r#"{{"mediaType":"{mt}","digest":"sha256:{hex}","size":{}}}"#,
                    nested.len()
                )]
            }
            _ => descriptors,
        };
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{INDEX_MT}","manifests":[{}]}}"#,
            top.join(",")
        );
        add(&mut planned, Planned::file("index.json".into(), index.into_bytes()));
    }

    // Extras.
    let generated: Vec<Planned> = planned.clone();
    let name_of = |n: &Name| -> String {
        match n {
            Name::Generated(i) if !generated.is_empty() => {
                generated[usize::from(*i) % generated.len()].name.clone()
            }
            Name::Generated(_) => "manifest.json".into(),
            Name::Vocab(i) => pick(NAMES, *i).to_owned(),
            Name::Raw(s) => s.clone(),
        }
    };
    for e in &input.extras {
        let name = name_of(&e.name);
        let link = name_of(&e.link);
        let (kind, link) = match e.kind {
            ExtraKind::File => (b'0', String::new()),
            ExtraKind::Dir => (b'5', String::new()),
            ExtraKind::Symlink => (b'2', link),
            ExtraKind::Hardlink => (b'1', link),
            ExtraKind::Other(k) => (k, link),
        };
        let data = match &e.data {
            ExtraData::Bytes(b) => b.clone(),
            ExtraData::CopyOf(i) if !generated.is_empty() => {
                generated[usize::from(*i) % generated.len()].data.clone()
            }
            ExtraData::CopyOf(_) => Vec::new(),
        };
        let p = Planned { name, kind, link, data, declared: None };
        match e.at {
            Some(at) if !planned.is_empty() => {
                let at = usize::from(at) % planned.len();
                planned.insert(at, p)
            }
            _ => planned.push(p),
        }
    }

    // Entry mutations.
    let mut cut = 0usize;
    for m in &input.mutations {
        let n = planned.len();
        if n == 0 {
            break;
        }
        match *m {
            Mutation::CorruptEntry { entry, pos, xor } => {
                let d = &mut planned[usize::from(entry) % n].data;
                if !d.is_empty() {
                    let p = usize::from(pos) % d.len();
                    d[p] ^= xor.max(1);
                }
            }
            Mutation::TruncateEntryData { entry, keep } => {
                planned[usize::from(entry) % n].data.truncate(usize::from(keep));
            }
            Mutation::DropEntry { entry } => {
                planned.remove(usize::from(entry) % n);
            }
            Mutation::DuplicateEntry { entry } => {
                let p = planned[usize::from(entry) % n].clone();
                planned.push(p);
            }
            Mutation::SwapData { a, b } => {
                let (a, b) = (usize::from(a) % n, usize::from(b) % n);
                let da = std::mem::take(&mut planned[a].data);
                let db = std::mem::replace(&mut planned[b].data, da);
                planned[a].data = db;
            }
            Mutation::SizeLies { entry, delta } => {
                let p = &mut planned[usize::from(entry) % n];
                p.declared = Some((p.data.len() as i64 + i64::from(delta)).max(0) as u64);
            }
            Mutation::TruncateArchive { cut: c } => cut = cut.max(usize::from(c)),
            _ => {}
        }
    }

    // Write, and model what a reader sees.
    let mut tar = TarWriter::new(if input.pax { LongNames::Pax } else { LongNames::Gnu });
    let mut model = Model::default();
    let mut ends = Vec::new();
    let mut lie = None;
    for p in &planned {
        let size = p.declared.unwrap_or(p.data.len() as u64);
        tar.entry(p.name.as_bytes(), p.kind, p.link.as_bytes(), &p.data, size);
        ends.push(tar.out.len());
        let name = header_name(&p.name);
        let link = matches!(p.kind, b'1' | b'2')
            .then(|| link_target(name, p.kind, header_name(&p.link)))
            .flatten();
        model.add(name, p.kind, link, &p.data);
        if let Some(d) = p.declared {
            let start = tar.out.len() - p.data.len().div_ceil(512) * 512;
            lie = Some((model.entries.len() - 1, start, d));
        }
        // Past a lying size or an extension header, the reader sees entries the model does
        // not know.
        if p.declared.is_some() || matches!(p.kind, b'x' | b'g' | b'L' | b'K') {
            model.exact = false;
            break;
        }
    }
    let mut bytes = tar.finish(input.end_marker);
    if cut > 0 {
        let keep = bytes.len().saturating_sub(cut);
        bytes.truncate(keep);
        // Entries cut short are refused by the reader; those before the cut remain.
        let whole = ends.iter().filter(|&&e| e <= keep).count();
        model.entries.truncate(whole.min(model.entries.len()));
    }
    // A lying entry's data is whatever lies where its header says.
    if let Some((i, start, declared)) = lie
        && let Some(e) = model.entries.get_mut(i)
    {
        let end = (start as u64).saturating_add(declared).min(bytes.len() as u64) as usize;
        e.data = bytes[start.min(end)..end].to_vec();
    }
    file.set(&bytes);
    let report = open_and_verify(file.path(), true, Some(&model)).expect("deep report");
    if input.outer != Comp::None {
        // The same archive compressed as a whole gets the same verdict.
        file.set(&compress(input.outer, &bytes));
        let stored = open_and_verify(file.path(), true, Some(&model)).expect("deep report");
        if !looks_compressed(&bytes) {
            assert_eq!(
                verdict(&report),
                verdict(&stored),
                "deep verification differs between the plain and the {:?}-compressed archive",
                input.outer
            );
        }
    }

    // Completeness: a clean archive of valid layers verifies, and holds the images written.
    if clean && all_tars && !input.images.is_empty() && !unknown_platform {
        assert!(
            report.ok,
            "a valid {dialect:?} archive fails deep verification: {report:#?}"
        );
        let got: BTreeSet<String> =
            report.images.iter().filter_map(|i| i.image_id).map(|d| d.0.hex()).collect();
        assert_eq!(got, expected_ids, "a valid {dialect:?} archive holds other images");
    }
}
