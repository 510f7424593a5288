//! Every archive dialect, built by the test from the test images' registry blobs (crane
//! `tarball`, Docker >= 25 combined layout); choosing images in multi-image archives; whole
//! archives compressed; several files at once; `inspect`.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use serde_json::{Value, json};

use crate::support::*;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// A layer as the registry stores it (gzip) and as its uncompressed tar.
struct Layer {
    blob: Vec<u8>,
    blob_digest: String,
    tar: Vec<u8>,
    diff_id: String,
}

/// One platform image of the test environment's OCI layout.
struct Image {
    manifest: Vec<u8>,
    manifest_digest: String,
    config: Vec<u8>,
    /// The image ID: the config's digest as the layout's manifest names it.
    id: String,
    layers: Vec<Layer>,
}

fn image(manifest_digest: &str) -> Image {
    let env = env();
    let manifest = env.blob(manifest_digest);
    let m: Value = serde_json::from_slice(&manifest).unwrap();
    let id = m["config"]["digest"].as_str().unwrap().to_owned();
    let config = env.blob(&id);
    assert_eq!(
        digest_of(&config),
        id,
        "the layout's config hashes to its name"
    );
    let cfg: Value = serde_json::from_slice(&config).unwrap();
    let diff_ids = cfg["rootfs"]["diff_ids"].as_array().unwrap();
    let layers = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(diff_ids)
        .map(|(l, diff_id)| {
            let blob = env.blob(l["digest"].as_str().unwrap());
            let tar = gunzip(&blob);
            assert_eq!(digest_of(&tar), diff_id.as_str().unwrap());
            Layer {
                blob_digest: digest_of(&blob),
                blob,
                tar,
                diff_id: diff_id.as_str().unwrap().to_owned(),
            }
        })
        .collect();
    Image {
        manifest_digest: digest_of(&manifest),
        manifest,
        config,
        id,
        layers,
    }
}

fn busybox() -> Image {
    image(&env().layout_ref("busybox-v1"))
}

/// The multiarch-v1 index of the layout (bytes) and its platform images, in index order.
fn multiarch() -> (Vec<u8>, Vec<Image>) {
    let index = env().blob(&env().layout_ref("multiarch-v1"));
    let v: Value = serde_json::from_slice(&index).unwrap();
    let images = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| image(m["digest"].as_str().unwrap()))
        .collect();
    (index, images)
}

/// `imgcache verify --json [--deep] ARGS...`: the exit code and the document.
fn verify(args: &[&str], deep: bool) -> (i32, Value) {
    let mut all = vec!["verify", "--json"];
    if deep {
        all.push("--deep");
    }
    all.extend_from_slice(args);
    let run = imgcache(&all);
    let doc = run.json();
    (run.code, doc)
}

/// Asserts one file verified clean at both levels and returns the deep document's file.
fn verifies_fast_and_deep(path: &Path, dialect: &str) -> Value {
    let mut file = Value::Null;
    for deep in [false, true] {
        let (code, doc) = verify(&[path_str(path)], deep);
        assert_eq!(code, 0, "deep={deep}: {doc:#}");
        assert_eq!(doc["level"], if deep { "deep" } else { "fast" });
        file = doc["files"][0].clone();
        assert_eq!(file["ok"], true, "{file:#}");
        assert_eq!(file["dialect"], dialect);
        assert_eq!(file["error"], Value::Null);
        for img in file["images"].as_array().unwrap() {
            assert_eq!(img["failures"], json!([]), "deep={deep}: {img:#}");
        }
    }
    file
}

fn dir_entry(name: &str) -> Entry {
    let mut e = Entry::file(name, b"");
    e.header.set_entry_type(tar::EntryType::Directory);
    e.header.set_mode(0o755);
    e
}

// ---------- crane / go-containerregistry `tarball` ----------

/// How a crane tarball stores its layers.
#[derive(Clone, Copy)]
enum Stored {
    Gzip,
    Plain,
    Zstd,
}

fn stored(l: &Layer, how: Stored) -> Vec<u8> {
    match how {
        Stored::Gzip => l.blob.clone(),
        Stored::Plain => l.tar.clone(),
        Stored::Zstd => zstd::encode_all(&l.tar[..], 3).unwrap(),
    }
}

/// A go-containerregistry `tarball` as `crane pull` writes it (pkg/v1/tarball/write.go): the
/// config as `sha256:<hex>`, each layer as `<hex of the stored bytes><ext>` (shared layers
/// once), and `manifest.json` `[{"Config":"sha256:<hex>","RepoTags":[...],"Layers":[...]}]`
/// written last. Uncompressed layers are named by their hex, which is then the diff_id.
/// Returns each image's layer entries as (name, stored size).
fn crane_tarball(
    path: &Path,
    images: &[(&Image, &[&str])],
    how: Stored,
    ext: &str,
) -> Vec<Vec<(String, usize)>> {
    let mut entries = Vec::new();
    let mut seen = HashSet::new();
    let mut items = Vec::new();
    let mut names = Vec::new();
    for (img, tags) in images {
        entries.push(Entry::file(&img.id, &img.config));
        let mut layers = Vec::new();
        for l in &img.layers {
            let data = stored(l, how);
            let name = format!("{}{ext}", sha256_hex(&data));
            layers.push((name.clone(), data.len()));
            if seen.insert(name.clone()) {
                entries.push(Entry::file(&name, &data));
            }
        }
        items.push(json!({
            "Config": img.id,
            "RepoTags": tags,
            "Layers": layers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        }));
        names.push(layers);
    }
    let manifest = serde_json::to_vec(&items).unwrap();
    entries.push(Entry::file("manifest.json", &manifest));
    write_tar(path, &entries);
    names
}

/// A crane tarball of busybox verifies at both levels as dialect "crane", with the layout's
/// image ID and each layer's compression as detected from its bytes.
fn crane_case(how: Stored, ext: &str, compression: &str) {
    let img = busybox();
    let dir = tempdir();
    let path = dir.path().join("crane.tar");
    let layers = crane_tarball(&path, &[(&img, &["busybox:v1"])], how, ext).remove(0);
    assert_eq!(read_tar(&path).last().unwrap().name, "manifest.json");

    let file = verifies_fast_and_deep(&path, "crane");
    assert_eq!(file["compression"], "none");
    let got = &file["images"][0];
    assert_eq!(got["image_id"], img.id);
    assert_eq!(got["tags"], json!(["busybox:v1"]));
    assert_eq!(
        got["platform"],
        json!({"os": "linux", "architecture": "amd64"})
    );
    assert_eq!(got["layer_count"], 2);
    for (i, (l, (name, size))) in img.layers.iter().zip(&layers).enumerate() {
        let g = &got["layers"][i];
        assert_eq!(g["entry"], *name, "layer {i}");
        assert_eq!(g["diff_id"], l.diff_id, "layer {i}");
        assert_eq!(g["size"], *size, "layer {i}");
        assert_eq!(g["compression"], compression, "layer {i}");
    }
    let total: usize = layers.iter().map(|(_, s)| s).sum();
    assert_eq!(got["size"], total);
}

#[test]
fn crane_tarball_with_gzip_layers_verifies_with_the_config_digest_as_image_id() {
    crane_case(Stored::Gzip, ".tar.gz", "gzip");
}

#[test]
fn crane_tarball_with_uncompressed_layers_named_by_diff_id_verifies() {
    crane_case(Stored::Plain, ".tar", "none");
}

#[test]
fn crane_tarball_with_zstd_layers_verifies_against_the_unchanged_diff_ids() {
    crane_case(Stored::Zstd, ".tar.zst", "zstd");
}

#[test]
fn crane_layer_compression_is_detected_by_magic_not_by_entry_name() {
    // gzip data named `.tar`, zstd data named `.tar.gz`: the hex still names the stored bytes.
    crane_case(Stored::Gzip, ".tar", "gzip");
    crane_case(Stored::Zstd, ".tar.gz", "zstd");
}

#[test]
fn crane_multi_image_tarball_selects_by_normalized_tag() {
    let bb = busybox();
    let (_, ma) = multiarch();
    let dir = tempdir();
    let path = dir.path().join("two.tar");
    crane_tarball(
        &path,
        &[(&bb, &["busybox:v1"]), (&ma[0], &["multiarch:v1"])],
        Stored::Gzip,
        ".tar.gz",
    );
    let file = path_str(&path);
    let (code, doc) = verify(&[file], true);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(
        image_ids(&doc["files"][0]),
        [bb.id.as_str(), ma[0].id.as_str()]
    );

    for (sel, id) in [
        ("busybox:v1", &bb.id),
        ("docker.io/library/busybox:v1", &bb.id),
        ("index.docker.io/library/multiarch:v1", &ma[0].id),
    ] {
        let (code, doc) = verify(&[file, "--image", sel], false);
        assert_eq!(code, 0, "{sel}: {doc:#}");
        assert_eq!(image_ids(&doc["files"][0]), [id.as_str()], "{sel}");
    }
    // `busybox` means busybox:latest, which the archive does not hold.
    let (code, doc) = verify(&[file, "--image", "busybox"], false);
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(doc["files"][0]["error"]["check"], "not-found");
    assert_eq!(doc["files"][0]["images"], json!([]));
}

// ---------- Docker >= 25 combined layout ----------

fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": digest_of(data), "size": data.len()})
}

/// An index.json descriptor as `docker save` names it: the full reference and the tag.
fn named(mut desc: Value, full: &str, tag: &str) -> Value {
    desc["annotations"] = json!({
        "io.containerd.image.name": full,
        "org.opencontainers.image.ref.name": tag,
    });
    desc
}

/// A `manifest.json` item of the combined layout: everything named `blobs/sha256/<hex>`.
fn item(config_id: &str, tags: &[&str], layer_digests: &[&str]) -> Value {
    let blob = |d: &str| format!("blobs/sha256/{}", hex(d));
    json!({
        "Config": blob(config_id),
        "RepoTags": tags,
        "Layers": layer_digests.iter().map(|d| blob(d)).collect::<Vec<_>>(),
    })
}

/// `docker save` from engine 25 on (moby image/tarexport/save.go): `blobs/sha256/<hex>` for
/// manifests, configs and layers, `oci-layout`, `index.json` (one descriptor per saved name),
/// and `manifest.json` for older loaders.
fn combined_tarball(path: &Path, manifests: Value, blobs: &[&[u8]], items: &[Value]) {
    let mut entries = vec![dir_entry("blobs/"), dir_entry("blobs/sha256/")];
    let mut seen = HashSet::new();
    for b in blobs {
        let name = format!("blobs/sha256/{}", sha256_hex(b));
        if seen.insert(name.clone()) {
            entries.push(Entry::file(&name, b));
        }
    }
    let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests});
    entries.push(Entry::file(
        "index.json",
        &serde_json::to_vec(&index).unwrap(),
    ));
    entries.push(Entry::file(
        "manifest.json",
        &serde_json::to_vec(items).unwrap(),
    ));
    entries.push(Entry::file(
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    ));
    write_tar(path, &entries);
}

/// The classic image store saves layers uncompressed, so the manifest docker writes names each
/// layer by its diff_id with the uncompressed media type.
fn classic_manifest(img: &Image) -> Vec<u8> {
    let m = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": descriptor(CONFIG, &img.config),
        "layers": img.layers.iter().map(|l| descriptor(LAYER_TAR, &l.tar)).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&m).unwrap()
}

/// A classic-store `docker save` of `img` under `tags` (full name, tag). Like moby, it also
/// stores each layer's legacy v1 JSON as a blob no manifest references.
fn classic_combined(path: &Path, img: &Image, tags: &[(&str, &str)]) -> Vec<u8> {
    let manifest = classic_manifest(img);
    let index: Vec<Value> = tags
        .iter()
        .map(|(full, tag)| named(descriptor(MANIFEST, &manifest), full, tag))
        .collect();
    let familiar: Vec<&str> = tags
        .iter()
        .map(|(full, _)| full.strip_prefix("docker.io/library/").unwrap())
        .collect();
    classic_combined_with(path, img, &manifest, json!(index), json!(familiar));
    manifest
}

fn classic_combined_with(path: &Path, img: &Image, manifest: &[u8], index: Value, tags: Value) {
    let v1: Vec<Vec<u8>> = img
        .layers
        .iter()
        .map(|l| {
            format!(
                r#"{{"id":"{}","created":"1970-01-01T00:00:00Z","os":"linux"}}"#,
                hex(&l.diff_id)
            )
            .into_bytes()
        })
        .collect();
    let mut blobs: Vec<&[u8]> = vec![manifest, &img.config];
    blobs.extend(img.layers.iter().map(|l| &l.tar[..]));
    blobs.extend(v1.iter().map(|b| &b[..]));
    let diff_ids: Vec<&str> = img.layers.iter().map(|l| l.diff_id.as_str()).collect();
    let mut it = item(&img.id, &[], &diff_ids);
    it["RepoTags"] = tags;
    combined_tarball(path, index, &blobs, &[it]);
}

fn inspect_json(path: &Path) -> Value {
    let run = imgcache(&["inspect", "--json", path_str(path)]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    run.json()
}

#[test]
fn docker_combined_classic_store_uncompressed_layers_verify() {
    let img = busybox();
    let dir = tempdir();
    let path = dir.path().join("combined.tar");
    let manifest = classic_combined(&path, &img, &[("docker.io/library/busybox:v1", "v1")]);

    let file = verifies_fast_and_deep(&path, "docker-combined");
    let got = &file["images"][0];
    assert_eq!(file["images"].as_array().unwrap().len(), 1);
    assert_eq!(got["image_id"], img.id);
    // The index's full name and manifest.json's familiar tag are one tag: listed once.
    assert_eq!(got["tags"], json!(["docker.io/library/busybox:v1"]));
    for (i, l) in img.layers.iter().enumerate() {
        let g = &got["layers"][i];
        assert_eq!(g["blob_digest"], l.diff_id, "layer {i}");
        assert_eq!(g["diff_id"], l.diff_id, "layer {i}");
        assert_eq!(g["media_type"], LAYER_TAR, "layer {i}");
        assert_eq!(g["compression"], "none", "layer {i}");
        assert_eq!(g["size"], l.tar.len(), "layer {i}");
    }

    let doc = inspect_json(&path);
    assert_eq!(doc["dialect"], "docker-combined");
    assert_eq!(doc["images"][0]["manifest_digest"], digest_of(&manifest));
    assert_eq!(doc["images"][0]["claimed_image_id"], img.id);
    assert_eq!(
        doc["images"][0]["config_entry"],
        format!("blobs/sha256/{}", hex(&img.id))
    );
}

/// `docker save busybox:v1 busybox:latest` of one image writes one index.json descriptor per
/// name, both pointing at the same manifest (moby image/tarexport/save.go), and one
/// manifest.json item holding both tags: that is one image, not two.
#[test]
fn docker_combined_one_image_saved_under_two_tags_is_one_image() {
    let img = busybox();
    let dir = tempdir();
    let path = dir.path().join("two-tags.tar");
    classic_combined(
        &path,
        &img,
        &[
            ("docker.io/library/busybox:v1", "v1"),
            ("docker.io/library/busybox:latest", "latest"),
        ],
    );
    let (code, doc) = verify(&[path_str(&path)], false);
    assert_eq!(code, 0, "{doc:#}");
    let file = &doc["files"][0];
    assert_eq!(image_ids(file), [img.id.as_str()], "{file:#}");
    let tags: HashSet<&str> = file["images"][0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for t in [
        "docker.io/library/busybox:v1",
        "docker.io/library/busybox:latest",
    ] {
        assert!(tags.contains(t), "{t} missing: {file:#}");
    }
}

/// `docker save <image ID or name@digest>` from engine 25.0.2 on (moby pull 47232): an index
/// descriptor without names, and `"RepoTags": null`.
#[test]
fn docker_combined_saved_by_id_has_one_untagged_image() {
    let img = busybox();
    let dir = tempdir();
    let path = dir.path().join("by-id.tar");
    let manifest = classic_manifest(&img);
    let mut desc = descriptor(MANIFEST, &manifest);
    desc["platform"] = json!({"architecture": "amd64", "os": "linux"});
    classic_combined_with(&path, &img, &manifest, json!([desc]), Value::Null);
    let file = verifies_fast_and_deep(&path, "docker-combined");
    assert_eq!(image_ids(&file), [img.id.as_str()]);
    assert_eq!(file["images"][0]["tags"], json!([]));
}

/// Engines 25.0.0 and 25.0.1 wrote `"manifests": null` in index.json when saving by image ID
/// or digest (moby issue 47210); `docker load` reads such archives through manifest.json.
#[test]
fn docker_combined_saved_by_id_on_engine_25_0_0_with_null_manifests_verifies() {
    let img = busybox();
    let dir = tempdir();
    let path = dir.path().join("by-id-25.0.0.tar");
    let manifest = classic_manifest(&img);
    classic_combined_with(&path, &img, &manifest, Value::Null, Value::Null);
    let file = verifies_fast_and_deep(&path, "docker-combined");
    assert_eq!(image_ids(&file), [img.id.as_str()]);
}

#[test]
fn docker_combined_containerd_store_gzip_layers_verify() {
    let img = busybox();
    let dir = tempdir();
    let path = dir.path().join("combined-gzip.tar");
    let index = [named(
        descriptor(MANIFEST, &img.manifest),
        "docker.io/library/busybox:v1",
        "v1",
    )];
    let mut blobs: Vec<&[u8]> = vec![&img.manifest, &img.config];
    blobs.extend(img.layers.iter().map(|l| &l.blob[..]));
    let layer_digests: Vec<&str> = img.layers.iter().map(|l| l.blob_digest.as_str()).collect();
    combined_tarball(
        &path,
        json!(index),
        &blobs,
        &[item(&img.id, &["busybox:v1"], &layer_digests)],
    );

    let file = verifies_fast_and_deep(&path, "docker-combined");
    let got = &file["images"][0];
    assert_eq!(image_ids(&file), [img.id.as_str()]);
    assert_eq!(got["tags"], json!(["docker.io/library/busybox:v1"]));
    for (i, l) in img.layers.iter().enumerate() {
        let g = &got["layers"][i];
        assert_eq!(g["blob_digest"], l.blob_digest, "layer {i}");
        assert_eq!(g["diff_id"], l.diff_id, "layer {i}");
        assert_eq!(g["compression"], "gzip", "layer {i}");
        assert_eq!(g["size"], l.blob.len(), "layer {i}");
    }
    let doc = inspect_json(&path);
    assert_eq!(doc["images"][0]["manifest_digest"], img.manifest_digest);
    assert_eq!(img.manifest_digest, env().layout_ref("busybox-v1"));
}

#[test]
fn docker_combined_index_pointing_to_a_nested_index_lists_every_platform() {
    let (index_bytes, imgs) = multiarch();
    assert_eq!(imgs.len(), 2);
    let dir = tempdir();
    let path = dir.path().join("combined-multi.tar");
    let index = [named(
        descriptor(INDEX, &index_bytes),
        "docker.io/library/multiarch:v1",
        "v1",
    )];
    let mut blobs: Vec<&[u8]> = vec![&index_bytes];
    for img in &imgs {
        blobs.extend([&img.manifest[..], &img.config[..]]);
        blobs.extend(img.layers.iter().map(|l| &l.blob[..]));
    }
    // manifest.json lists only the platform the engine runs (amd64).
    let amd64_layers: Vec<&str> = imgs[0]
        .layers
        .iter()
        .map(|l| l.blob_digest.as_str())
        .collect();
    combined_tarball(
        &path,
        json!(index),
        &blobs,
        &[item(&imgs[0].id, &["multiarch:v1"], &amd64_layers)],
    );

    let file = verifies_fast_and_deep(&path, "docker-combined");
    let ids = image_ids(&file);
    assert_eq!(ids, [imgs[0].id.as_str(), imgs[1].id.as_str()]);
    // The same IDs skopeo's independent computation gives for this index.
    assert_eq!(ids, env().fixture("skopeo-oci-archive-index").image_ids);
    let got = file["images"].as_array().unwrap();
    assert_eq!(
        got[0]["platform"],
        json!({"os": "linux", "architecture": "amd64"})
    );
    assert_eq!(
        got[1]["platform"],
        json!({"os": "linux", "architecture": "arm64", "variant": "v8"})
    );
    // manifest.json's "multiarch:v1" is the index's name spelled short: one tag, not two.
    assert_eq!(got[0]["tags"], json!(["docker.io/library/multiarch:v1"]));
    assert_eq!(got[1]["tags"], json!(["docker.io/library/multiarch:v1"]));

    let doc = inspect_json(&path);
    assert_eq!(doc["totals"]["images"], 2);
    for (i, img) in imgs.iter().enumerate() {
        assert_eq!(doc["images"][i]["manifest_digest"], img.manifest_digest);
    }
    // Both platforms share the base layer: 3 distinct layers, 4 listed.
    assert_eq!(doc["totals"]["layers"], 4);
}

// ---------- multi-image archives: --image and --expect ----------

const MULTI: [&str; 2] = ["docker-save-multi", "podman-docker-archive-multi"];

#[test]
fn image_selector_picks_one_image_of_a_multi_image_archive_by_tag_or_id() {
    for producer in MULTI {
        let f = env().fixture(producer);
        let file = path_str(&f.file);
        assert_eq!(f.image_ids.len(), 2, "{producer}");
        assert_eq!(f.tags.len(), 2, "{producer}");
        for (id, tag) in f.image_ids.iter().zip(&f.tags) {
            let hex = hex(id);
            for sel in [tag.as_str(), &hex[..12], &hex[..20], hex, id.as_str()] {
                let (code, doc) = verify(&[file, "--image", sel], sel == id.as_str());
                assert_eq!(code, 0, "{producer} {sel}: {doc:#}");
                let got = &doc["files"][0];
                assert_eq!(image_ids(got), [id.as_str()], "{producer} {sel}");
                assert_eq!(got["images"][0]["tags"], json!([tag]), "{producer} {sel}");
            }
        }
    }
}

#[test]
fn image_selector_matching_nothing_fails_naming_what_the_archive_holds() {
    for producer in MULTI {
        let f = env().fixture(producer);
        let file = path_str(&f.file);
        // An unknown tag, an unknown ID, and an ID prefix too short to count as one.
        let short = &hex(&f.image_ids[0])[..11];
        for sel in ["127.0.0.1:5000/nothing:v1", "0123456789abcdef", short] {
            let (code, doc) = verify(&[file, "--image", sel], false);
            assert_eq!(code, 1, "{producer} {sel}: {doc:#}");
            let got = &doc["files"][0];
            assert_eq!(got["ok"], false);
            assert_eq!(got["images"], json!([]));
            assert_eq!(got["error"]["check"], "not-found", "{producer} {sel}");
            let msg = got["error"]["message"].as_str().unwrap();
            assert!(msg.contains("no image matches"), "{msg}");
            for (id, tag) in f.image_ids.iter().zip(&f.tags) {
                assert!(msg.contains(&hex(id)[..12]), "{producer}: {msg}");
                assert!(msg.contains(tag.as_str()), "{producer}: {msg}");
            }
        }
    }
}

#[test]
fn expect_selects_the_matching_image_of_a_multi_image_archive() {
    for producer in MULTI {
        let f = env().fixture(producer);
        let second = &f.image_ids[1];
        for expect in [second.as_str(), hex(second)] {
            let (code, doc) = verify(&[path_str(&f.file), "--expect", expect], true);
            assert_eq!(code, 0, "{producer}: {doc:#}");
            assert_eq!(image_ids(&doc["files"][0]), [second.as_str()], "{producer}");
        }
    }
}

#[test]
fn expect_an_image_the_multi_image_archive_does_not_hold_fails() {
    let absent = digest_of(b"not an image config");
    for producer in MULTI {
        let f = env().fixture(producer);
        let (code, doc) = verify(&[path_str(&f.file), "--expect", &absent], false);
        assert_eq!(code, 1, "{producer}: {doc:#}");
        let got = &doc["files"][0];
        assert_eq!(got["ok"], false);
        assert_eq!(got["images"], json!([]));
        assert_eq!(got["error"]["check"], "expected-image-id", "{got:#}");
        assert_eq!(got["error"]["expected"], absent);
        let msg = got["error"]["message"].as_str().unwrap();
        for id in &f.image_ids {
            assert!(msg.contains(id.as_str()), "{producer}: {msg}");
        }
    }
}

#[test]
fn expect_a_different_image_than_the_single_one_held_fails_on_that_image() {
    let f = env().fixture("docker-save-tag");
    let absent = digest_of(b"not an image config");
    let (code, doc) = verify(&[path_str(&f.file), "--expect", &absent], false);
    assert_eq!(code, 1, "{doc:#}");
    let img = &doc["files"][0]["images"][0];
    assert_eq!(img["ok"], false);
    assert_eq!(img["image_id"], f.image_ids[0]);
    assert_eq!(img["failures"][0]["check"], "expected-image-id", "{img:#}");
    assert_eq!(img["failures"][0]["expected"], absent);
    assert_eq!(img["failures"][0]["found"], f.image_ids[0]);
}

// ---------- compressed whole archives ----------

#[test]
fn gzip_compressed_docker_save_verifies_fast_and_deep() {
    let f = env().fixture("docker-save-tag-gzip");
    let file = verifies_fast_and_deep(&f.file, "docker-legacy");
    assert_eq!(file["compression"], "gzip");
    assert_eq!(image_ids(&file), f.image_ids);
}

#[test]
fn zstd_compressed_docker_save_verifies_fast_and_deep() {
    let f = env().fixture("docker-save-tag");
    let dir = tempdir();
    let path = dir.path().join("docker-save-tag.tar.zst");
    let data = zstd::encode_all(&fs::read(&f.file).unwrap()[..], 3).unwrap();
    fs::write(&path, data).unwrap();
    let file = verifies_fast_and_deep(&path, "docker-legacy");
    assert_eq!(file["compression"], "zstd");
    assert_eq!(image_ids(&file), f.image_ids);
    for l in file["images"][0]["layers"].as_array().unwrap() {
        assert_eq!(l["compression"], "none");
    }
}

// ---------- several files at once ----------

#[test]
fn verify_directory_reports_each_file_and_fails_for_the_truncated_one() {
    let env = env();
    let dir = tempdir();
    let tag = env.fixture("docker-save-tag");
    let oci = env.fixture("skopeo-oci-archive");
    fs::copy(&tag.file, dir.path().join("a-docker.tar")).unwrap();
    fs::copy(&oci.file, dir.path().join("b-oci.tar")).unwrap();
    let bytes = fs::read(&tag.file).unwrap();
    fs::write(dir.path().join("c-cut.tar"), &bytes[..bytes.len() / 2]).unwrap();

    let (code, doc) = verify(&[path_str(dir.path())], false);
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(doc["ok"], false);
    let files = doc["files"].as_array().unwrap();
    assert_eq!(files.len(), 3, "{doc:#}");
    let name = |f: &Value| {
        Path::new(f["path"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    assert_eq!(
        files.iter().map(name).collect::<Vec<_>>(),
        ["a-docker.tar", "b-oci.tar", "c-cut.tar"]
    );
    assert_eq!(files[0]["ok"], true);
    assert_eq!(image_ids(&files[0]), tag.image_ids);
    assert_eq!(files[1]["ok"], true);
    assert_eq!(files[1]["dialect"], "oci");
    assert_eq!(image_ids(&files[1]), oci.image_ids);
    assert_eq!(files[2]["ok"], false);
    assert_eq!(files[2]["error"]["check"], "truncated", "{:#}", files[2]);
}

#[test]
fn verify_with_a_nonexistent_path_among_files_reports_not_found() {
    let f = env().fixture("docker-save-tag");
    let dir = tempdir();
    let missing = dir.path().join("missing.tar");
    let (code, doc) = verify(&[path_str(&f.file), path_str(&missing)], false);
    assert_eq!(code, 1, "{doc:#}");
    let files = doc["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["ok"], true);
    assert_eq!(image_ids(&files[0]), f.image_ids);
    assert_eq!(files[1]["ok"], false);
    assert_eq!(files[1]["error"]["check"], "not-found");
    let msg = files[1]["error"]["message"].as_str().unwrap();
    assert!(msg.contains("missing.tar"), "{msg}");
}

// ---------- inspect ----------

#[test]
fn inspect_json_of_docker_save_lists_layers_and_totals() {
    let f = env().fixture("docker-save-tag");
    let img = busybox();
    let doc = inspect_json(&f.file);
    assert_eq!(doc["dialect"], "docker-legacy");
    assert_eq!(doc["compression"], "none");
    let got = &doc["images"][0];
    assert_eq!(got["image_id"], f.image_ids[0]);
    assert_eq!(got["claimed_image_id"], f.image_ids[0]);
    assert_eq!(got["tags"], json!(f.tags));
    assert_eq!(got["config_entry"], format!("{}.json", hex(&img.id)));
    assert_eq!(got["created"], "2024-01-01T00:00:00Z");
    assert_eq!(got["problems"], json!([]));
    assert!(got.get("manifest_digest").is_none(), "{got:#}");
    for (i, l) in img.layers.iter().enumerate() {
        let g = &got["layers"][i];
        assert_eq!(g["diff_id"], l.diff_id, "layer {i}");
        assert_eq!(g["size"], l.tar.len(), "layer {i}");
        assert_eq!(g["compression"], "none", "layer {i}");
        assert!(g["entry"].as_str().unwrap().ends_with("/layer.tar"));
    }
    let layer_bytes: usize = img.layers.iter().map(|l| l.tar.len()).sum();
    assert_eq!(
        doc["totals"],
        json!({
            "images": 1,
            "layers": 2,
            "layer_bytes": layer_bytes,
            "file_bytes": fs::metadata(&f.file).unwrap().len(),
        })
    );
}

#[test]
fn inspect_of_a_file_that_is_not_an_archive_exits_1() {
    let dir = tempdir();
    let path = dir.path().join("notes.txt");
    fs::write(&path, "just some text\n".repeat(200)).unwrap();
    let run = imgcache(&["inspect", "--json", path_str(&path)]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let doc = run.json();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["error"]["check"], "not-an-archive", "{doc:#}");
    let run = imgcache(&["inspect", path_str(&path)]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("not a tar archive"), "{}", run.stderr);
}

// ---------- OCI archives re-serialize the config ----------

/// skopeo copying the registry's Docker v2s2 image into `oci-archive:` re-serializes the
/// config, so the image ID changes; its `docker-archive:` keeps the config bytes and the ID.
#[test]
fn skopeo_oci_archive_of_a_docker_image_has_a_different_image_id() {
    let env = env();
    let mut ids = Vec::new();
    for (producer, dialect) in [
        ("skopeo-docker-archive", "docker-legacy"),
        ("skopeo-oci-archive", "oci"),
    ] {
        let f = env.fixture(producer);
        let file = verifies_fast_and_deep(&f.file, dialect);
        assert_eq!(image_ids(&file), f.image_ids, "{producer}");
        ids.push(f.image_ids[0].clone());
    }
    assert_ne!(ids[0], ids[1]);
    assert_eq!(
        ids[0],
        busybox().id,
        "docker-archive keeps the registry's config"
    );
}
