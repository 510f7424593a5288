//! Manifest, index and config parsing as the archive reader does it. The parsers are private,
//! so the input becomes one JSON document of a small valid archive (chosen by the first byte)
//! which is then opened and verified, fast and deep. The input is also parsed directly with
//! the oci-spec types the library uses.
//!
//! Placeholders in the document are replaced before it is stored, so the fuzzer need not
//! guess 64-digit hashes: `@D@` diff_id, `@L@` layer (gzip) blob, `@U@` layer (plain) blob,
//! `@C@` config, `@M@` manifest, `@N@` nested index (all bare hex), and `@LS@`, `@US@`, `@CS@`,
//! `@MS@`, `@NS@` their sizes.
#![no_main]

use std::sync::OnceLock;

use imgcache_fuzz::{LongNames, MemFile, Model, TarWriter, gzip, layer_tar, open_and_verify, sha256_hex};
use libfuzzer_sys::fuzz_target;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

const MANIFEST_MT: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_MT: &str = "application/vnd.oci.image.index.v1+json";

/// The blobs of one small valid image.
struct Base {
    layer: Vec<u8>,
    layer_gz: Vec<u8>,
    config: Vec<u8>,
    manifest: Vec<u8>,
    nested: Vec<u8>,
    vars: Vec<(&'static str, String)>,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let layer = layer_tar(&[("hello.txt".into(), b"hello\n".to_vec())]);
        let layer_gz = gzip(&layer);
        let (d, l, u) = (sha256_hex(&layer), sha256_hex(&layer_gz), sha256_hex(&layer));
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/bin/sh"]}},"created":"2024-01-01T00:00:00Z","rootfs":{{"type":"layers","diff_ids":["sha256:{d}"]}},"history":[{{"created_by":"ADD hello.txt"}}]}}"#
        )
        .into_bytes();
        let c = sha256_hex(&config);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_MT}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{c}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{l}","size":{}}}]}}"#,
            config.len(),
            layer_gz.len()
        )
        .into_bytes();
        let m = sha256_hex(&manifest);
        let nested = format!(
            r#"{{"schemaVersion":2,"mediaType":"{INDEX_MT}","manifests":[{{"mediaType":"{MANIFEST_MT}","digest":"sha256:{m}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            manifest.len()
        )
        .into_bytes();
        let n = sha256_hex(&nested);
        let vars = vec![
            ("@LS@", layer_gz.len().to_string()),
            ("@US@", layer.len().to_string()),
            ("@CS@", config.len().to_string()),
            ("@MS@", manifest.len().to_string()),
            ("@NS@", nested.len().to_string()),
            ("@D@", d),
            ("@L@", l),
            ("@U@", u),
            ("@C@", c),
            ("@M@", m),
            ("@N@", n),
        ];
        Base { layer, layer_gz, config, manifest, nested, vars }
    })
}

fn expand(doc: &[u8], vars: &[(&str, String)]) -> Vec<u8> {
    let mut out = doc.to_vec();
    if !out.contains(&b'@') {
        return out;
    }
    for (k, v) in vars {
        out = replace(&out, k.as_bytes(), v.as_bytes());
    }
    out
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// An archive being assembled, with its model for the oracle.
struct Build {
    tar: TarWriter,
    model: Model,
}

impl Build {
    fn new() -> Self {
        Self { tar: TarWriter::new(LongNames::Pax), model: Model::default() }
    }
    fn file(&mut self, name: &str, data: &[u8]) {
        self.tar.file(name, data);
        self.model.add(name, b'0', None, data);
    }
    fn blob(&mut self, data: &[u8]) {
        self.file(&format!("blobs/sha256/{}", sha256_hex(data)), data);
    }
    fn oci_layout(&mut self) {
        self.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    }
    /// Blobs of the base image, except those `skip` says the document replaces.
    fn base_blobs(&mut self, b: &Base, skip: &[&[u8]]) {
        for blob in [&b.layer_gz, &b.layer, &b.config, &b.manifest, &b.nested] {
            if !skip.contains(&blob.as_slice()) {
                self.blob(blob);
            }
        }
    }
}

fn index_of(digest: &str, size: usize, media_type: &str) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{media_type}","digest":"sha256:{digest}","size":{size},"annotations":{{"org.opencontainers.image.ref.name":"v1"}}}}]}}"#
    )
    .into_bytes()
}

fn legacy_manifest(config: &str, layers: &[String]) -> Vec<u8> {
    let layers: Vec<String> = layers.iter().map(|l| serde_json::to_string(l).unwrap()).collect();
    format!(
        r#"[{{"Config":{},"RepoTags":["busybox:v1"],"Layers":[{}]}}]"#,
        serde_json::to_string(config).unwrap(),
        layers.join(",")
    )
    .into_bytes()
}

fuzz_target!(|data: &[u8]| {
    static FILE: OnceLock<MemFile> = OnceLock::new();
    let file = FILE.get_or_init(|| MemFile::new("imgcache-fuzz-json-docs"));
    let Some((&role, doc)) = data.split_first() else {
        return;
    };
    // The oci-spec types, directly.
    let _ = serde_json::from_slice::<ImageManifest>(doc);
    let _ = serde_json::from_slice::<ImageIndex>(doc);
    let _ = serde_json::from_slice::<ImageConfiguration>(doc);

    let b = base();
    let doc = expand(doc, &b.vars);
    let d = sha256_hex(&b.layer);
    let mut a = Build::new();
    match role % 8 {
        // manifest.json of docker-archive dialects, with every name producers use present.
        0 => {
            a.file("manifest.json", &doc);
            a.file("repositories", b"{}");
            let c = sha256_hex(&b.config);
            a.file(&format!("{c}.json"), &b.config);
            a.file(&format!("sha256:{c}"), &b.config);
            a.file(&format!("{d}/layer.tar"), &b.layer);
            a.file(&format!("{d}/VERSION"), b"1.0");
            a.file(&format!("{d}.tar"), &b.layer);
            a.file(&format!("{}.tar.gz", sha256_hex(&b.layer_gz)), &b.layer_gz);
            a.base_blobs(b, &[]);
        }
        // index.json of an OCI layout (1), of a docker save >= 25 (2).
        r @ (1 | 2) => {
            a.oci_layout();
            a.file("index.json", &doc);
            if r == 2 {
                let m = legacy_manifest(
                    &format!("blobs/sha256/{}", sha256_hex(&b.config)),
                    &[format!("blobs/sha256/{}", sha256_hex(&b.layer_gz))],
                );
                a.file("manifest.json", &m);
            }
            a.base_blobs(b, &[]);
        }
        // An image manifest (3) or a nested index (4) that index.json names.
        r @ (3 | 4) => {
            a.oci_layout();
            let mt = if r == 3 { MANIFEST_MT } else { INDEX_MT };
            a.file("index.json", &index_of(&sha256_hex(&doc), doc.len(), mt));
            a.blob(&doc);
            a.base_blobs(b, &[&doc]);
        }
        // A config in an OCI layout.
        5 => {
            a.oci_layout();
            let manifest = format!(
                r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_MT}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{}","size":{}}}]}}"#,
                sha256_hex(&doc),
                doc.len(),
                sha256_hex(&b.layer_gz),
                b.layer_gz.len()
            )
            .into_bytes();
            a.file("index.json", &index_of(&sha256_hex(&manifest), manifest.len(), MANIFEST_MT));
            a.blob(&manifest);
            a.blob(&doc);
            a.blob(&b.layer_gz);
        }
        // A config in a docker-archive.
        6 => {
            let config_name = format!("{}.json", sha256_hex(&doc));
            a.file("manifest.json", &legacy_manifest(&config_name, &[format!("{d}/layer.tar")]));
            a.file(&config_name, &doc);
            a.file(&format!("{d}/layer.tar"), &b.layer);
        }
        // manifest.json beside a valid OCI layout (docker save >= 25).
        _ => {
            a.oci_layout();
            a.file("manifest.json", &doc);
            a.file("index.json", &index_of(&sha256_hex(&b.manifest), b.manifest.len(), MANIFEST_MT));
            a.base_blobs(b, &[]);
        }
    }
    let Build { tar, model } = a;
    file.set(&tar.finish(true));
    open_and_verify(file.path(), true, Some(&model));
});
