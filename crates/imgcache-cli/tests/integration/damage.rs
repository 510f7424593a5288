//! Damaged and tampered archives, each built from a real fixture: every failure names the
//! check, where (entry, layer index) and what (expected and found digests). The fixtures
//! themselves are never touched: each test checks them before and after.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::*;

/// skopeo `docker-archive:`: a legacy archive with uncompressed `<diffid>.tar` layers.
const SKOPEO: &str = "skopeo-docker-archive";
/// skopeo `oci-archive:` of a Docker image: gzip layers, `blobs/sha256/<hex>`.
const SKOPEO_OCI: &str = "skopeo-oci-archive";

/// The image of the skopeo fixtures (busybox:v1 of the test registry).
const ID: &str = "sha256:3f22b83bc3fbbd5fb965afd0dc18b64fb9adc4d430119e33b425ab2ce15875d9";
/// Its config entry in the legacy archive.
const CONFIG: &str = "3f22b83bc3fbbd5fb965afd0dc18b64fb9adc4d430119e33b425ab2ce15875d9.json";
/// Its two layers, named by diff_id.
const LAYER0: &str = "fe02a815012db219630be84b47e9f8cbc60c14811726f038a3fd72f90aebc7a0.tar";
const LAYER1: &str = "217914fac2b07e39a8cf1f52c46df95c42e5d44d6eb7e5fd4eba91c94208a45b.tar";
const DIFF_ID1: &str = "sha256:217914fac2b07e39a8cf1f52c46df95c42e5d44d6eb7e5fd4eba91c94208a45b";
/// The legacy `<v1id>/layer.tar` alias skopeo writes for layer 1.
const LAYER1_ALIAS: &str =
    "80e315279d4010133a4f37917685a0416fe91e81bab45efc30cfe90d57391617/layer.tar";
/// The multiarch:v1 linux/amd64 image of the test layout: another image altogether.
const OTHER_ID: &str = "sha256:c4aa72cd663b79ef1d0b5ae3847d3fd2cdf52f726b2fe040ef8ee22e0abfa936";
/// The gzip layers of the OCI fixture.
const OCI_LAYER0: &str =
    "blobs/sha256/4af18a157c4ee44472104124900fc3be9a3d22013baf294f288606d724f4fbfd";
const OCI_LAYER1: &str =
    "blobs/sha256/ab0e87fbb79bc546e75b81bfad59b3ec3f603360dd70d450b912330d2202a666";

/// Fixture files and the fixture directory's listing, to prove a test changed nothing there.
struct FixtureGuard {
    files: Vec<(PathBuf, String)>,
    listing: BTreeSet<String>,
}

impl FixtureGuard {
    fn new(producers: &[&str]) -> Self {
        let env = env();
        let files = producers
            .iter()
            .map(|p| {
                let f = env.fixture(p).file.clone();
                let h = sha256_hex(&fs::read(&f).unwrap());
                (f, h)
            })
            .collect();
        Self {
            files,
            listing: listing(&env.fixtures),
        }
    }

    fn assert_unchanged(&self) {
        for (f, h) in &self.files {
            assert_eq!(
                &sha256_hex(&fs::read(f).unwrap()),
                h,
                "{} changed",
                f.display()
            );
        }
        assert_eq!(
            listing(&env().fixtures),
            self.listing,
            "something appeared in or vanished from the fixture directory"
        );
    }
}

/// Where an entry lies in a plain tarball.
struct Located {
    header: u64,
    data: u64,
    size: u64,
}

fn locate(path: &Path, name: &str) -> Located {
    let mut archive = tar::Archive::new(fs::File::open(path).unwrap());
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        if e.path_bytes().as_ref() == name.as_bytes() {
            return Located {
                header: e.raw_header_position(),
                data: e.raw_file_position(),
                size: e.size(),
            };
        }
    }
    panic!("no entry {name} in {}", path.display());
}

fn verify(args: &[&str], file: &Path) -> (Run, Value) {
    let mut all: Vec<&str> = vec!["verify", "--json"];
    all.extend_from_slice(args);
    all.push(file.to_str().unwrap());
    let run = imgcache(&all);
    let doc = run.json();
    (run, doc)
}

/// `files[0]`.
fn file0(doc: &Value) -> &Value {
    &doc["files"][0]
}

/// `files[0].images[0]`.
fn image0(doc: &Value) -> &Value {
    &doc["files"][0]["images"][0]
}

/// The one failure of `check` in `image`.
fn failure<'a>(image: &'a Value, check: &str) -> &'a Value {
    let found: Vec<&Value> = image["failures"]
        .as_array()
        .unwrap_or_else(|| panic!("no failures array in {image:#}"))
        .iter()
        .filter(|f| f["check"] == check)
        .collect();
    assert_eq!(found.len(), 1, "one {check} failure expected in {image:#}");
    found[0]
}

fn checks(image: &Value) -> Vec<&str> {
    image["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect()
}

/// An archive-level failure: exit 1, `files[0].error.check == check`, no images.
fn assert_archive_error<'a>(run: &Run, doc: &'a Value, check: &str) -> &'a Value {
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(doc["ok"], false);
    let f = file0(doc);
    assert_eq!(f["ok"], false);
    assert_eq!(f["error"]["check"], check, "{f:#}");
    assert!(f["images"].as_array().unwrap().is_empty(), "{f:#}");
    &f["error"]
}

fn copy_prefix(src: &Path, dst: &Path, len: u64) {
    let data = fs::read(src).unwrap();
    fs::write(dst, &data[..len as usize]).unwrap();
}

/// Replaces the only occurrence of `from` in `data`.
fn replace_once(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at: Vec<usize> = data
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        at.len(),
        1,
        "{:?} occurs {} times",
        String::from_utf8_lossy(from),
        at.len()
    );
    let mut out = data[..at[0]].to_vec();
    out.extend_from_slice(to);
    out.extend_from_slice(&data[at[0] + from.len()..]);
    out
}

/// Layer 1 of the skopeo fixture with one byte of its file content changed (same size, still a
/// valid tar: `etc/`, `etc/hello.txt`, whose data starts at offset 1024).
fn changed_layer1(original: &[u8]) -> Vec<u8> {
    let mut layer = original.to_vec();
    assert_eq!(&layer[512..512 + 13], b"etc/hello.txt");
    layer[1024] ^= 0x01;
    layer
}

fn manifest_json(entries: &[Entry]) -> Value {
    serde_json::from_slice(
        &entries
            .iter()
            .find(|e| e.name == "manifest.json")
            .unwrap()
            .data,
    )
    .unwrap()
}

fn set_manifest_json(entries: &mut [Entry], v: &Value) {
    entry_mut(entries, "manifest.json").data = serde_json::to_vec(v).unwrap();
}

// --- truncation -----------------------------------------------------------------------------

#[test]
fn truncated_inside_a_tar_header() {
    let guard = FixtureGuard::new(&[SKOPEO]);
    let tmp = tempdir();
    let src = &env().fixture(SKOPEO).file;
    let at = locate(src, CONFIG).header;
    let cut = tmp.path().join("cut.tar");
    copy_prefix(src, &cut, at + 100);
    for level in [&[][..], &["--deep"][..]] {
        let (run, doc) = verify(level, &cut);
        let err = assert_archive_error(&run, &doc, "truncated");
        let msg = err["message"].as_str().unwrap();
        assert!(
            msg.contains(&format!("offset {at}")) && msg.contains("100 of 512"),
            "{msg}"
        );
    }
    guard.assert_unchanged();
}

#[test]
fn truncated_inside_a_layers_data() {
    let guard = FixtureGuard::new(&[SKOPEO]);
    let tmp = tempdir();
    let src = &env().fixture(SKOPEO).file;
    let layer = locate(src, LAYER0);
    let cut = tmp.path().join("cut.tar");
    copy_prefix(src, &cut, layer.data + 1_000_000);
    for level in [&[][..], &["--deep"][..]] {
        let (run, doc) = verify(level, &cut);
        let err = assert_archive_error(&run, &doc, "truncated");
        let msg = err["message"].as_str().unwrap();
        assert!(msg.contains(LAYER0), "{msg}");
        assert!(
            msg.contains(&format!("declares {} bytes", layer.size)),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("ends at {}", layer.data + 1_000_000)),
            "{msg}"
        );
    }
    // inspect refuses it the same way
    let run = imgcache(&["inspect", "--json", cut.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(run.json()["error"]["check"], "truncated");
    guard.assert_unchanged();
}

#[test]
fn truncated_exactly_before_manifest_json() {
    let guard = FixtureGuard::new(&[SKOPEO]);
    let tmp = tempdir();
    let src = &env().fixture(SKOPEO).file;
    let at = locate(src, "manifest.json").header;
    let cut = tmp.path().join("cut.tar");
    copy_prefix(src, &cut, at);
    let (run, doc) = verify(&[], &cut);
    let err = assert_archive_error(&run, &doc, "truncated");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("manifest.json") && msg.contains("end-of-archive marker"),
        "{msg}"
    );
    guard.assert_unchanged();
}

#[test]
fn truncated_gzip_compressed_archive_is_truncated() {
    let guard = FixtureGuard::new(&["docker-save-tag-gzip"]);
    let tmp = tempdir();
    let src = &env().fixture("docker-save-tag-gzip").file;
    let len = fs::metadata(src).unwrap().len();
    for (i, at) in [len / 2, len - 100].into_iter().enumerate() {
        let cut = tmp.path().join(format!("cut-{i}.tar.gz"));
        copy_prefix(src, &cut, at);
        let (run, doc) = verify(&[], &cut);
        assert_archive_error(&run, &doc, "truncated");
    }
    guard.assert_unchanged();
}

/// A crane `tarball` built from the skopeo fixture: config `sha256:<hex>`, gzip layers named by
/// blob digest, manifest.json written last.
fn crane_tarball(dir: &Path) -> PathBuf {
    let entries = read_tar(&env().fixture(SKOPEO).file);
    let config = &entry(&entries, CONFIG).data;
    let mut out = vec![Entry::file(ID, config)];
    let mut layers = Vec::new();
    for name in [LAYER0, LAYER1] {
        let gz = gzip(&entry(&entries, name).data);
        let blob_name = format!("{}.tar.gz", sha256_hex(&gz));
        out.push(Entry::file(&blob_name, &gz));
        layers.push(blob_name);
    }
    let manifest = json!([{"Config": ID, "RepoTags": ["busybox:v1"], "Layers": layers}]);
    out.push(Entry::file(
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    ));
    let path = dir.join("crane.tar");
    write_tar(&path, &out);
    path
}

#[test]
fn crane_archive_truncated_before_its_manifest() {
    let guard = FixtureGuard::new(&[SKOPEO]);
    let tmp = tempdir();
    let crane = crane_tarball(tmp.path());
    let (run, doc) = verify(&["--deep"], &crane);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(file0(&doc)["dialect"], "crane");
    assert_eq!(image0(&doc)["image_id"], ID);

    let at = locate(&crane, "manifest.json").header;
    let cut = tmp.path().join("crane-cut.tar");
    copy_prefix(&crane, &cut, at);
    let (run, doc) = verify(&[], &cut);
    let err = assert_archive_error(&run, &doc, "truncated");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("end-of-archive marker"),
        "{err}"
    );
    guard.assert_unchanged();
}

// --- configs --------------------------------------------------------------------------------

#[test]
fn config_edited_in_place_fails_config_digest() {
    let guard = FixtureGuard::new(&[SKOPEO]);
    let tmp = tempdir();
    let mut entries = read_tar(&env().fixture(SKOPEO).file);
    let edited = replace_once(
        &entry_mut(&mut entries, CONFIG).data,
        b"busybox-v1",
        b"busybox-v2",
    );
    entry_mut(&mut entries, CONFIG).data = edited.clone();
    let path = tmp.path().join("edited.tar");
    write_tar(&path, &entries);

    let (run, doc) = verify(&[], &path);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let img = image0(&doc);
    assert_eq!(img["ok"], false);
    let f = failure(img, "config-digest");
    assert_eq!(f["entry"], CONFIG);
    assert_eq!(f["expected"], ID);
    assert_eq!(f["found"], digest_of(&edited));
    assert_eq!(checks(img), ["config-digest"], "{img:#}");
    // The image reported is the one the bytes make, not the one the name claims.
    assert_eq!(img["image_id"], digest_of(&edited));
    guard.assert_unchanged();
}

#[test]
fn another_images_config_swapped_in_fails_config_digest() {
    let guard = FixtureGuard::new(&[SKOPEO]);
    let tmp = tempdir();
    let other = env().blob(OTHER_ID);
    assert_eq!(digest_of(&other), OTHER_ID);
    let mut entries = read_tar(&env().fixture(SKOPEO).file);
    entry_mut(&mut entries, CONFIG).data = other;
    let path = tmp.path().join("swapped.tar");
    write_tar(&path, &entries);

    for level in [&[][..], &["--deep"][..]] {
        let (run, doc) = verify(level, &path);
        assert_eq!(run.code, 1, "{}", run.stdout);
        let f = failure(image0(&doc), "config-digest");
        assert_eq!(f["entry"], CONFIG);
        assert_eq!(f["expected"], ID);
        assert_eq!(f["found"], OTHER_ID);
    }
    guard.assert_unchanged();
}

#[test]
fn a_consistent_archive_of_another_image_fails_expect() {
    let guard = FixtureGuard::new(&[SKOPEO_OCI, "docker-save-multi"]);
    // skopeo re-serialized the config for oci-archive: same content, another image ID.
    let fixture = env().fixture(SKOPEO_OCI);
    let other = fixture.image_ids[0].as_str();
    assert_ne!(other, ID);
    let (run, _) = verify(&["--deep"], &fixture.file);
    assert_eq!(run.code, 0, "{}", run.stdout);

    for level in [&["--expect", ID][..], &["--deep", "--expect", ID][..]] {
        let (run, doc) = verify(level, &fixture.file);
        assert_eq!(run.code, 1, "{}", run.stdout);
        let img = image0(&doc);
        let f = failure(img, "expected-image-id");
        assert_eq!(f["expected"], ID);
        assert_eq!(f["found"], other);
        assert_eq!(checks(img), ["expected-image-id"], "{img:#}");
    }

    // In an archive of several images, none of which is the one expected.
    let multi = &env().fixture("docker-save-multi").file;
    let (run, doc) = verify(&["--expect", other], multi);
    let err = assert_archive_error(&run, &doc, "expected-image-id");
    assert_eq!(err["expected"], other);
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains(ID) && msg.contains(OTHER_ID), "{msg}");
    guard.assert_unchanged();
}

// --- layers ---------------------------------------------------------------------------------

#[test]
fn layer_bytes_changed_in_place_pass_fast_and_fail_deep_diff_id() {
    let guard = FixtureGuard::new(&[SKOPEO]);
    let tmp = tempdir();
    let src = &env().fixture(SKOPEO).file;
    let mut bytes = fs::read(src).unwrap();
    let layer = locate(src, LAYER1);
    let range = layer.data as usize..(layer.data + layer.size) as usize;
    let changed = changed_layer1(&bytes[range.clone()]);
    bytes[range].copy_from_slice(&changed);
    let path = tmp.path().join("flipped.tar");
    fs::write(&path, &bytes).unwrap();

    let (run, doc) = verify(&[], &path);
    assert_eq!(run.code, 0, "fast reads no layer data: {}", run.stdout);
    assert_eq!(image0(&doc)["image_id"], ID);

    let (run, doc) = verify(&["--deep"], &path);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let img = image0(&doc);
    let f = failure(img, "diff-id");
    assert_eq!(f["layer"], 1);
    assert_eq!(f["entry"], LAYER1);
    assert_eq!(f["expected"], DIFF_ID1);
    assert_eq!(f["found"], digest_of(&changed));
    // Only layer 1 is blamed (its file name also names the old digest).
    for f in img["failures"].as_array().unwrap() {
        assert_eq!(f["layer"], 1, "{f}");
    }
    guard.assert_unchanged();
}

/// The substitution attack: layer 1 replaced and re-tarred under its new diff_id, manifest.json
/// and the config's diff_ids edited to match. Returns the archive's entries and the new config.
fn substituted(rename_config: bool) -> (Vec<Entry>, Vec<u8>) {
    let mut entries = read_tar(&env().fixture(SKOPEO).file);
    let new_layer = changed_layer1(&entry_mut(&mut entries, LAYER1).data);
    let new_diff_id = digest_of(&new_layer);
    let new_name = format!("{}.tar", new_diff_id.strip_prefix("sha256:").unwrap());
    {
        let e = entry_mut(&mut entries, LAYER1);
        e.name = new_name.clone();
        e.data = new_layer;
    }
    // The legacy alias follows the layer, as a careful attacker would have it.
    let alias = entry_mut(&mut entries, LAYER1_ALIAS);
    alias
        .header
        .set_link_name(format!("../{new_name}"))
        .unwrap();

    let config = replace_once(
        &entry_mut(&mut entries, CONFIG).data,
        DIFF_ID1.as_bytes(),
        new_diff_id.as_bytes(),
    );
    entry_mut(&mut entries, CONFIG).data = config.clone();
    let mut manifest = manifest_json(&entries);
    manifest[0]["Layers"][1] = json!(new_name);
    if rename_config {
        let name = format!("{}.json", sha256_hex(&config));
        entry_mut(&mut entries, CONFIG).name = name.clone();
        manifest[0]["Config"] = json!(name);
    }
    set_manifest_json(&mut entries, &manifest);
    (entries, config)
}

#[test]
fn substituted_layer_with_config_not_renamed_fails_config_digest() {
    let guard = FixtureGuard::new(&[SKOPEO]);
    let tmp = tempdir();
    let (entries, config) = substituted(false);
    let path = tmp.path().join("substituted.tar");
    write_tar(&path, &entries);
    for level in [&[][..], &["--deep"][..]] {
        let (run, doc) = verify(level, &path);
        assert_eq!(run.code, 1, "{}", run.stdout);
        let img = image0(&doc);
        let f = failure(img, "config-digest");
        assert_eq!(f["entry"], CONFIG);
        assert_eq!(f["expected"], ID);
        assert_eq!(f["found"], digest_of(&config));
        assert_eq!(checks(img), ["config-digest"], "{img:#}");
    }
    guard.assert_unchanged();
}

#[test]
fn substituted_layer_with_config_renamed_is_another_image() {
    let guard = FixtureGuard::new(&[SKOPEO]);
    let tmp = tempdir();
    let (entries, config) = substituted(true);
    let new_id = digest_of(&config);
    assert_ne!(new_id, ID);
    let path = tmp.path().join("substituted.tar");
    write_tar(&path, &entries);

    // A consistent archive: it verifies, deep too, but as the image it really is.
    for level in [&[][..], &["--deep"][..]] {
        let (run, doc) = verify(level, &path);
        assert_eq!(run.code, 0, "{}", run.stdout);
        assert_eq!(image0(&doc)["image_id"], new_id.as_str());
    }
    // Only knowing which image to expect catches it.
    for level in [&["--expect", ID][..], &["--deep", "--expect", ID][..]] {
        let (run, doc) = verify(level, &path);
        assert_eq!(run.code, 1, "{}", run.stdout);
        let img = image0(&doc);
        let f = failure(img, "expected-image-id");
        assert_eq!(f["expected"], ID);
        assert_eq!(f["found"], new_id.as_str());
        assert_eq!(checks(img), ["expected-image-id"], "{img:#}");
    }
    guard.assert_unchanged();
}

#[test]
fn missing_layer_entry_fails_missing_entry() {
    let guard = FixtureGuard::new(&[SKOPEO]);
    let tmp = tempdir();
    let mut entries = read_tar(&env().fixture(SKOPEO).file);
    entries.retain(|e| e.name != LAYER1 && e.name != LAYER1_ALIAS);
    let path = tmp.path().join("missing.tar");
    write_tar(&path, &entries);
    for level in [&[][..], &["--deep"][..]] {
        let (run, doc) = verify(level, &path);
        assert_eq!(run.code, 1, "{}", run.stdout);
        let img = image0(&doc);
        let f = failure(img, "missing-entry");
        assert_eq!(f["layer"], 1);
        assert_eq!(f["entry"], LAYER1);
        assert_eq!(checks(img), ["missing-entry"], "{img:#}");
    }
    guard.assert_unchanged();
}

#[test]
fn extra_unreferenced_entry_is_a_warning() {
    let guard = FixtureGuard::new(&[SKOPEO]);
    let tmp = tempdir();
    let mut entries = read_tar(&env().fixture(SKOPEO).file);
    entries.push(Entry::file("notes/extra.txt", b"not part of any image\n"));
    let path = tmp.path().join("extra.tar");
    write_tar(&path, &entries);
    for level in [&[][..], &["--deep"][..]] {
        let (run, doc) = verify(level, &path);
        assert_eq!(run.code, 0, "{}", run.stdout);
        let warnings = file0(&doc)["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0]["check"], "warning");
        assert_eq!(warnings[0]["entry"], "notes/extra.txt");
        assert!(
            warnings[0]["message"]
                .as_str()
                .unwrap()
                .contains("notes/extra.txt"),
            "{warnings:?}"
        );
    }
    guard.assert_unchanged();
}

#[test]
fn duplicate_entry_names_fail_the_archive() {
    let guard = FixtureGuard::new(&[SKOPEO]);
    let tmp = tempdir();
    // Docker would load the second config, podman and skopeo the first.
    let mut entries = read_tar(&env().fixture(SKOPEO).file);
    entries.push(Entry::file(CONFIG, &env().blob(OTHER_ID)));
    let path = tmp.path().join("duplicate.tar");
    write_tar(&path, &entries);
    for level in [&[][..], &["--deep"][..]] {
        let (run, doc) = verify(level, &path);
        let err = assert_archive_error(&run, &doc, "duplicate-entry");
        assert_eq!(err["entry"], CONFIG);
        assert!(
            err["message"].as_str().unwrap().contains("appears twice"),
            "{err}"
        );
    }
    guard.assert_unchanged();
}

#[test]
fn diff_id_count_differing_from_layer_count_fails_layer_count() {
    let guard = FixtureGuard::new(&[SKOPEO]);
    let tmp = tempdir();
    let mut entries = read_tar(&env().fixture(SKOPEO).file);
    let mut config: Value = serde_json::from_slice(&entry_mut(&mut entries, CONFIG).data).unwrap();
    config["rootfs"]["diff_ids"].as_array_mut().unwrap().pop();
    let bytes = serde_json::to_vec(&config).unwrap();
    // Renamed consistently, so that the count is the only thing wrong.
    let name = format!("{}.json", sha256_hex(&bytes));
    {
        let e = entry_mut(&mut entries, CONFIG);
        e.name = name.clone();
        e.data = bytes;
    }
    let mut manifest = manifest_json(&entries);
    manifest[0]["Config"] = json!(name);
    set_manifest_json(&mut entries, &manifest);
    let path = tmp.path().join("count.tar");
    write_tar(&path, &entries);

    let (run, doc) = verify(&[], &path);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let img = image0(&doc);
    let f = failure(img, "layer-count");
    assert_eq!(f["entry"], name);
    assert_eq!(f["expected"], "2");
    assert_eq!(f["found"], "1");
    assert_eq!(checks(img), ["layer-count"], "{img:#}");
    guard.assert_unchanged();
}

// --- gzip layers of an OCI archive ----------------------------------------------------------

#[test]
fn oci_gzip_layer_with_a_flipped_byte_passes_fast_and_fails_deep() {
    let guard = FixtureGuard::new(&[SKOPEO_OCI]);
    let tmp = tempdir();
    let src = &env().fixture(SKOPEO_OCI).file;
    let mut bytes = fs::read(src).unwrap();
    let layer = locate(src, OCI_LAYER0);
    let at = (layer.data + layer.size / 2) as usize;
    bytes[at] ^= 0x40;
    let blob = &bytes[layer.data as usize..(layer.data + layer.size) as usize];
    let found = digest_of(blob);
    let path = tmp.path().join("flipped.tar");
    fs::write(&path, &bytes).unwrap();

    let (run, _) = verify(&[], &path);
    assert_eq!(run.code, 0, "fast reads no layer data: {}", run.stdout);

    let (run, doc) = verify(&["--deep"], &path);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let img = image0(&doc);
    let f = failure(img, "blob-digest");
    assert_eq!(f["layer"], 0);
    assert_eq!(f["entry"], OCI_LAYER0);
    assert_eq!(
        f["expected"],
        format!("sha256:{}", OCI_LAYER0.rsplit('/').next().unwrap())
    );
    assert_eq!(f["found"], found);
    // The gzip stream is corrupt too: it cannot decompress, or decompresses to other bytes.
    for f in img["failures"].as_array().unwrap() {
        assert_eq!(f["layer"], 0, "{f}");
        assert!(
            ["blob-digest", "layer-data", "diff-id"].contains(&f["check"].as_str().unwrap()),
            "{f}"
        );
    }
    guard.assert_unchanged();
}

#[test]
fn oci_layer_blob_size_differing_from_its_descriptor_fails_layer_size() {
    let guard = FixtureGuard::new(&[SKOPEO_OCI]);
    let tmp = tempdir();
    let mut entries = read_tar(&env().fixture(SKOPEO_OCI).file);
    let blob = entry_mut(&mut entries, OCI_LAYER1);
    let declared = blob.data.len();
    blob.data.extend_from_slice(b"0123456789");
    let path = tmp.path().join("size.tar");
    write_tar(&path, &entries);

    let (run, doc) = verify(&[], &path);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let img = image0(&doc);
    let f = failure(img, "layer-size");
    assert_eq!(f["layer"], 1);
    assert_eq!(f["entry"], OCI_LAYER1);
    assert_eq!(f["expected"], declared.to_string());
    assert_eq!(f["found"], (declared + 10).to_string());
    assert_eq!(checks(img), ["layer-size"], "{img:#}");
    guard.assert_unchanged();
}
