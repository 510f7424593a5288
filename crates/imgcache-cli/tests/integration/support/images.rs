//! The test registries, and fresh images of random layers pushed to them with skopeo.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use super::{
    base64, checked_stdout, digest_of, env, gzip, hex, output_of, random_bytes, sha256_hex,
    tempdir, unique_name,
};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The plain test registry (`host:port`, no TLS, no auth).
pub fn registry() -> &'static str {
    &env().vars["TEST_REGISTRY"]
}

/// The test registry that wants a password (htpasswd).
pub fn auth_registry() -> &'static str {
    &env().vars["TEST_REGISTRY_AUTH"]
}

pub fn auth_user() -> &'static str {
    &env().vars["TEST_REGISTRY_USER"]
}

pub fn auth_password() -> &'static str {
    &env().vars["TEST_REGISTRY_PASS"]
}

/// `USER:PASSWORD` of [`auth_registry`], as `--creds` takes them.
pub fn auth_creds() -> String {
    format!("{}:{}", auth_user(), auth_password())
}

/// Writes `~/.docker/config.json` under `home`, giving `registry` the credentials `user_pass`
/// (`USER:PASSWORD`).
pub fn write_docker_config(home: &Path, registry: &str, user_pass: &str) {
    let dir = home.join(".docker");
    fs::create_dir_all(&dir).unwrap();
    let doc = json!({"auths": {registry: {"auth": base64(user_pass.as_bytes())}}});
    fs::write(dir.join("config.json"), doc.to_string()).unwrap();
}

/// An uncompressed layer: a tar holding one file of `size` random bytes.
pub fn layer_tar(size: usize) -> Vec<u8> {
    let data = random_bytes(size);
    tar_of(
        &format!("data/{}", sha256_hex(&data[..64.min(size)])),
        &data,
    )
}

/// A tar holding one file, `name`, of `data`.
pub fn tar_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap()
}

/// One gzip layer: a tar holding one file of random bytes.
#[derive(Clone)]
pub struct Layer {
    pub blob: Vec<u8>,
    pub digest: String,
    pub diff_id: String,
}

pub fn layer(size: usize) -> Layer {
    let tar = layer_tar(size);
    let blob = gzip(&tar);
    Layer {
        digest: digest_of(&blob),
        diff_id: digest_of(&tar),
        blob,
    }
}

pub fn diff_ids(layers: &[Layer]) -> Vec<String> {
    layers.iter().map(|l| l.diff_id.clone()).collect()
}

/// An image pushed to a test registry as `<repo>:v1`.
#[derive(Clone, Debug)]
pub struct Image {
    pub repo: String,
    /// `<registry>/<repo>:v1`.
    pub reference: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub manifest_size: u64,
    /// The image ID.
    pub config_digest: String,
    pub config_size: u64,
    /// (digest, size) of each layer blob.
    pub layers: Vec<(String, u64)>,
    pub diff_ids: Vec<String>,
}

impl Image {
    /// The reference pinned by manifest digest.
    pub fn pinned(&self) -> String {
        let name = self.reference.strip_suffix(":v1").unwrap();
        format!("{name}@{}", self.manifest_digest)
    }

    /// The same repository and tag at another address (a proxy in front of the registry).
    pub fn reference_at(&self, registry: &str) -> String {
        format!("{registry}/{}:v1", self.repo)
    }

    pub fn layer(&self, i: usize) -> &str {
        &self.layers[i].0
    }

    pub fn layer_size(&self, i: usize) -> u64 {
        self.layers[i].1
    }

    /// The path fragment naming a blob in requests.
    pub fn blob_path(digest: &str) -> String {
        format!("/blobs/{digest}")
    }

    /// Config and layers, with their sizes: what a pull downloads.
    pub fn blob_sizes(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::from([(self.config_digest.clone(), self.config_size)]);
        m.extend(self.layers.iter().cloned());
        m
    }

    /// What a pull downloads: the config and the layers (the manifest is not a blob GET).
    pub fn blob_bytes(&self) -> u64 {
        self.blob_sizes().values().sum()
    }

    /// Manifest, config and layers: what the cache stores.
    pub fn blobs(&self) -> BTreeSet<String> {
        let mut s: BTreeSet<String> = self.blob_sizes().into_keys().collect();
        s.insert(self.manifest_digest.clone());
        s
    }

    /// What the cache stores, in bytes: manifest, config and layers.
    pub fn size(&self) -> u64 {
        self.manifest_size + self.blob_bytes()
    }
}

/// An OCI layout being built in a temporary directory: blobs by digest, one tag `v1`.
pub struct Layout {
    dir: tempfile::TempDir,
}

impl Layout {
    pub fn new() -> Self {
        let dir = tempdir();
        fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        fs::write(
            dir.path().join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        Self { dir }
    }

    /// Stores a blob; its digest.
    pub fn put(&self, data: &[u8]) -> String {
        let d = digest_of(data);
        fs::write(self.dir.path().join("blobs/sha256").join(hex(&d)), data).unwrap();
        d
    }

    /// Tags `top` (a manifest or index of `media_type`, stored here) `v1` and pushes the layout
    /// with skopeo as `docker://<dest>`, every platform, digests kept (with `creds`,
    /// `USER:PASSWORD`, when given).
    pub fn push_v1(&self, media_type: &str, top: &[u8], dest: &str, creds: Option<&str>) {
        let index = json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": media_type, "digest": self.put(top), "size": top.len(),
                "annotations": {"org.opencontainers.image.ref.name": "v1"}
            }]
        });
        fs::write(self.dir.path().join("index.json"), index.to_string()).unwrap();
        let mut cmd = Command::new("skopeo");
        cmd.args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        cmd.arg(format!("oci:{}:v1", self.dir.path().display()))
            .arg(format!("docker://{dest}"));
        output_of(&mut cmd).ok(&format!("skopeo copy to {dest}"));
    }
}

/// Builds an OCI layout (`config`, `layers`, a manifest tagged `v1`) and pushes it with skopeo
/// as `registry/repo:v1` (with `creds`, `USER:PASSWORD`, when given).
pub fn push_layout(
    registry: &str,
    creds: Option<&str>,
    repo: &str,
    config: &Value,
    layers: &[Layer],
) -> Image {
    let layout = Layout::new();
    let config = serde_json::to_vec(config).unwrap();
    let config_digest = layout.put(&config);
    for l in layers {
        layout.put(&l.blob);
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": layers.iter().map(|l| json!({
            "mediaType": OCI_LAYER_GZIP, "digest": l.digest, "size": l.blob.len()
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let reference = format!("{registry}/{repo}:v1");
    layout.push_v1(OCI_MANIFEST, &manifest, &reference, creds);
    Image {
        repo: repo.to_owned(),
        reference,
        manifest_size: manifest.len() as u64,
        manifest_digest: digest_of(&manifest),
        manifest,
        config_digest,
        config_size: config.len() as u64,
        layers: layers
            .iter()
            .map(|l| (l.digest.clone(), l.blob.len() as u64))
            .collect(),
        diff_ids: diff_ids(layers),
    }
}

/// Pushes an image of `layers` to the plain test registry as `<repo>:v1`: linux/amd64, its
/// config labelled with the repository (so that no two repositories share a config).
pub fn push_image(repo: &str, layers: &[Layer]) -> Image {
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Labels": {"test.repo": repo}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids(layers)},
    });
    push_layout(registry(), None, repo, &config, layers)
}

/// A fresh image of `sizes.len()` random layers in a new repository of the plain registry.
pub fn fresh_image(what: &str, sizes: &[usize]) -> Image {
    let layers: Vec<Layer> = sizes.iter().map(|&s| layer(s)).collect();
    push_image(&unique_name(what), &layers)
}

/// `skopeo inspect --raw [extra] docker://REF` (stdout bytes exactly).
pub fn skopeo_raw(reference: &str, extra: &[&str]) -> Vec<u8> {
    checked_stdout(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--raw"])
            .args(extra)
            .arg(format!("docker://{reference}")),
        &format!("skopeo inspect {reference}"),
    )
}

/// `skopeo inspect --raw` of `reference`, or `None` when the registry does not serve it.
pub fn raw_at(reference: &str, extra: &[&str]) -> Option<Vec<u8>> {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .args(extra)
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo");
    out.status.success().then_some(out.stdout)
}

/// `skopeo copy` of `from` to `to`, two registry references: every platform, digests kept.
pub fn copy_between_registries(from: &str, to: &str) {
    output_of(Command::new("skopeo").args([
        "--insecure-policy",
        "copy",
        "--quiet",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{from}"),
        &format!("docker://{to}"),
    ]))
    .ok(&format!("skopeo copy {from} {to}"));
}
