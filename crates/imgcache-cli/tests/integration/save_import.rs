//! `imgcache save` and `imgcache import` against the real engines: what `save` writes (in each
//! format) verifies deep with the cached image ID, is deterministic, copies the stored blobs byte
//! for byte, and loads in dockerd 20.10, podman 4.3 and containerd 1.6 under that ID; `import`
//! of every real fixture keeps its image IDs, stores a blob once, and refuses a damaged archive
//! without recording anything.
//!
//! Every test has its own cache root (and HOME). Docker tests load images under a repository no
//! other test uses and remove the tag afterwards; podman runs on a private store per load, and
//! containerd is a private daemon started (and stopped) by the one test that uses it.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde_json::{Value, json};

use crate::support::*;

const FORMATS: [&str; 3] = ["combined", "legacy", "oci"];
/// busybox:v1 of the test registry, as every fixture of it holds it.
const BUSYBOX_ID: &str = "sha256:3f22b83bc3fbbd5fb965afd0dc18b64fb9adc4d430119e33b425ab2ce15875d9";

// ---------------------------------------------------------------------------------------------
// Helpers

/// The name a reference is recorded under: docker.io and library/ made explicit.
fn normalize(r: &str) -> String {
    match r.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => r.to_owned(),
        Some(_) => format!("docker.io/{r}"),
        None => format!("docker.io/library/{r}"),
    }
}

/// `fsck --deep` must be clean, with no blob nobody needs, and have checked every blob file.
fn assert_fsck_spotless(c: &Sandbox) {
    let doc = c.assert_fsck_deep_spotless();
    assert_eq!(
        doc["blobs_checked"].as_u64().unwrap() as usize,
        c.blob_files_with_sizes().len(),
        "{doc:#}"
    );
}

/// `verify --deep --no-memo FILE` must pass, with one image of `id` under `tags`; its dialect.
fn assert_verifies(c: &Sandbox, file: &Path, id: &str, tags: &[&str]) -> String {
    let doc = c.json(&["verify", "--deep", "--no-memo", path_str(file)]);
    assert_eq!(doc["ok"], true, "{doc:#}");
    let f = &doc["files"][0];
    let images = f["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{doc:#}");
    assert_eq!(images[0]["ok"], true, "{doc:#}");
    assert_eq!(images[0]["image_id"], id, "{doc:#}");
    assert_eq!(images[0]["tags"], json!(tags), "{doc:#}");
    f["dialect"].as_str().unwrap().to_owned()
}

// --- engines ---

/// A tag loaded into dockerd: removed when dropped (also when the test fails).
struct DockerTag(String);

impl DockerTag {
    /// `docker load -i FILE`, expecting `tag`; the image ID dockerd reports for it.
    fn load(file: &Path, tag: &str) -> (Self, String) {
        let guard = Self(tag.to_owned());
        let load = docker(&["load", "-i", path_str(file)]).ok("docker load");
        assert!(
            load.stdout.contains(&format!("Loaded image: {tag}")),
            "{}",
            load.stdout
        );
        let id = docker(&["image", "inspect", "-f", "{{.Id}}", tag]).ok("docker inspect");
        (guard, id.stdout.trim().to_owned())
    }

    /// Removes the tag now, and checks it is gone (so the next load reads every layer again).
    fn remove(self) {
        docker(&["rmi", &self.0]).ok("docker rmi");
        assert_ne!(docker(&["image", "inspect", &self.0]).code, 0);
        std::mem::forget(self);
    }
}

impl Drop for DockerTag {
    fn drop(&mut self) {
        docker(&["rmi", &self.0]);
    }
}

// --- archives ---

/// The regular files of a tarball, by name.
fn files_of(path: &Path) -> Vec<Entry> {
    read_tar(path)
        .into_iter()
        .filter(|e| e.header.entry_type().is_file())
        .collect()
}

/// Where the data of entry `name` starts in the (plain) tarball, and its size.
fn entry_range(path: &Path, name: &str) -> (u64, u64) {
    let mut a = tar::Archive::new(fs::File::open(path).unwrap());
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        if e.path_bytes().as_ref() == name.as_bytes() {
            assert!(e.header().entry_type().is_file(), "{name} is not a file");
            return (e.raw_file_position(), e.size());
        }
    }
    panic!("no entry {name} in {}", path.display())
}

/// Copies `src` to `dst` with the byte at `at` flipped.
fn copy_flipped(src: &Path, dst: &Path, at: u64) {
    let mut data = fs::read(src).unwrap();
    data[at as usize] ^= 0x55;
    fs::write(dst, data).unwrap();
}

/// A docker-archive as skopeo writes one (uncompressed `<diffid>.tar` layers) of random layers.
fn write_docker_archive(path: &Path, tag: &str, sizes: &[usize]) -> (String, u64) {
    let mut entries = Vec::new();
    let mut diff_ids = Vec::new();
    let mut names = Vec::new();
    let mut bytes = 0;
    for &size in sizes {
        let tar = layer_tar(size);
        let d = digest_of(&tar);
        names.push(format!("{}.tar", hex(&d)));
        entries.push(Entry::file(&format!("{}.tar", hex(&d)), &tar));
        bytes += tar.len() as u64;
        diff_ids.push(d);
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Labels": {"test.tag": tag}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let id = digest_of(&config);
    entries.push(Entry::file(&format!("{}.json", hex(&id)), &config));
    let manifest =
        json!([{"Config": format!("{}.json", hex(&id)), "RepoTags": [tag], "Layers": names}]);
    entries.push(Entry::file(
        "manifest.json",
        manifest.to_string().as_bytes(),
    ));
    write_tar(path, &entries);
    (id, bytes)
}

// ---------------------------------------------------------------------------------------------
// 1. What save writes.

/// Checks the entries of a save of `reference` against the blobs of cache `c`.
fn assert_save_layout(c: &Sandbox, file: &Path, format: &str, reference: &str) {
    let inspect = c.json(&["inspect", reference]);
    let id = inspect["image_id"].as_str().unwrap();
    let manifest_digest = inspect["manifest_digest"].as_str().unwrap();
    let layers: Vec<&str> = inspect["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    // A reference pulled by an index: index.json names the index (its bytes as stored), and
    // the file holds this platform only.
    let index_digest = inspect["index_digest"].as_str();
    let (repo, tag) = reference.rsplit_once(':').unwrap();
    let entries = files_of(file);
    let names: BTreeSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    match format {
        "combined" | "oci" => {
            let blob_name = |d: &str| format!("blobs/sha256/{}", hex(d));
            let mut want: BTreeSet<String> = ["oci-layout", "index.json"].map(String::from).into();
            want.insert(blob_name(id));
            want.insert(blob_name(manifest_digest));
            want.extend(layers.iter().map(|l| blob_name(l)));
            want.extend(index_digest.map(blob_name));
            if format == "combined" {
                want.insert("manifest.json".into());
            }
            assert_eq!(names, want.iter().map(String::as_str).collect(), "{format}");
            // Every blob byte for byte as stored, under its own digest.
            for e in entries.iter().filter(|e| e.name.starts_with("blobs/")) {
                let d = e.name.strip_prefix("blobs/sha256/").unwrap();
                assert_eq!(sha256_hex(&e.data), d, "{format}: {}", e.name);
                assert!(
                    c.blob(d) == e.data,
                    "{format}: {} differs from the store",
                    e.name
                );
            }
            let index: Value = serde_json::from_slice(&entry(&entries, "index.json").data).unwrap();
            let (top, top_type) = match index_digest {
                Some(d) => {
                    let doc: Value = serde_json::from_slice(&c.blob(d)).unwrap();
                    (d, doc["mediaType"].clone())
                }
                None => (manifest_digest, inspect["media_type"].clone()),
            };
            assert_eq!(
                index["manifests"],
                json!([{
                    "mediaType": top_type,
                    "digest": top,
                    "size": c.blob(top).len(),
                    "annotations": {
                        "io.containerd.image.name": reference,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }]),
                "{format}"
            );
            if format == "combined" {
                let m: Value =
                    serde_json::from_slice(&entry(&entries, "manifest.json").data).unwrap();
                assert_eq!(
                    m,
                    json!([{
                        "Config": blob_name(id),
                        "RepoTags": [reference],
                        "Layers": layers.iter().map(|l| blob_name(l)).collect::<Vec<_>>(),
                    }])
                );
            }
        }
        "legacy" => {
            let m: Value = serde_json::from_slice(&entry(&entries, "manifest.json").data).unwrap();
            let config_name = format!("{}.json", hex(id));
            assert_eq!(m[0]["Config"], config_name.as_str(), "{m:#}");
            assert_eq!(m[0]["RepoTags"], json!([reference]), "{m:#}");
            assert_eq!(m.as_array().unwrap().len(), 1, "{m:#}");
            assert!(c.blob(id) == entry(&entries, &config_name).data);
            let layer_names: Vec<&str> = m[0]["Layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(layer_names.len(), layers.len(), "{m:#}");
            for (name, digest) in layer_names.iter().zip(&layers) {
                let data = &entry(&entries, name).data;
                assert_eq!(digest_of(data), *digest, "legacy: {name}");
                assert!(
                    c.blob(digest) == *data,
                    "legacy: {name} differs from the store"
                );
            }
            let top = layer_names
                .last()
                .unwrap()
                .strip_suffix("/layer.tar")
                .unwrap();
            let repositories: Value =
                serde_json::from_slice(&entry(&entries, "repositories").data).unwrap();
            assert_eq!(repositories, json!({ repo: { tag: top } }));
        }
        _ => unreachable!(),
    }
}

#[test]
fn save_in_every_format_verifies_deep_is_deterministic_and_copies_blobs_byte_for_byte() {
    let c = Sandbox::new();
    // A second cache with the same pulls: the same image gives the same bytes anywhere.
    let other = Sandbox::new();
    for name in ["busybox:v1", "multiarch:v1"] {
        let reference = format!("{}/{name}", registry());
        let id = c.pull_image_id(&reference);
        assert_eq!(other.pull_image_id(&reference), id);
        for format in FORMATS {
            let a = c.path(&format!("{name}-{format}-a.tar"));
            let b = c.path(&format!("{name}-{format}-b.tar"));
            let doc = c.save(&reference, format, &a);
            let mut want = json!({"ok": true, "reference": reference, "image_id": id, "output": path_str(&a), "format": format, "signatures": 0});
            if name == "multiarch:v1" && format != "legacy" {
                // Pulled by an index of two platforms, of which the file holds this host's.
                want["index"] = json!({
                    "digest": digest_of(&skopeo_raw(&reference, &[])),
                    "platforms": ["linux/amd64", "linux/arm64/v8"],
                    "saved": [c.json(&["inspect", &reference])["platform"]],
                });
            }
            assert_eq!(doc, want);
            c.save(&reference, format, &b);
            let bytes = fs::read(&a).unwrap();
            assert!(
                bytes == fs::read(&b).unwrap(),
                "{name} {format}: two saves differ"
            );
            assert!(
                bytes == c.save_to_stdout(&reference, format),
                "{name} {format}: -o - differs from -o FILE"
            );
            let o = other.path(&format!("{name}-{format}.tar"));
            other.save(&reference, format, &o);
            assert!(
                bytes == fs::read(&o).unwrap(),
                "{name} {format}: another cache's save differs"
            );

            let dialect = assert_verifies(&c, &a, &id, &[&reference]);
            let want = match format {
                "combined" => "docker-combined",
                "legacy" => "docker-legacy",
                _ => "oci",
            };
            assert_eq!(dialect, want);
            assert_save_layout(&c, &a, format, &reference);
        }
    }
    // Nothing but the output files appeared beside them (no partial files).
    let names = listing(c.dir.path());
    assert!(
        names
            .iter()
            .all(|n| n == "root" || n == "home" || n.ends_with("-a.tar") || n.ends_with("-b.tar")),
        "{names:?}"
    );
    assert_fsck_spotless(&c);
}

// ---------------------------------------------------------------------------------------------
// 2. The saves load in the engines.

#[test]
fn combined_and_legacy_saves_load_in_dockerd_under_the_image_id_and_tag() {
    // Random layers dockerd has never seen, so that it reads (gunzips and checks) every one.
    let img = fresh_image("docker", &[300_000, 40_000]);
    let c = Sandbox::new();
    assert_eq!(c.pull_image_id(&img.reference), img.config_digest);
    for format in ["combined", "legacy"] {
        let file = c.path(&format!("{format}.tar"));
        c.save(&img.reference, format, &file);
        let (tag, id) = DockerTag::load(&file, &img.reference);
        assert_eq!(id, img.config_digest, "{format}");
        tag.remove();
    }
    // Documented limitation (FORMATS.md): docker 20.10 cannot load a plain OCI layout.
    let file = c.path("oci.tar");
    c.save(&img.reference, "oci", &file);
    let _tag = DockerTag(img.reference.clone());
    let load = docker(&["load", "-i", path_str(&file)]);
    assert_ne!(load.code, 0, "{}", load.stdout);
    assert!(load.stderr.contains("blobs/json"), "{}", load.stderr);
}

#[test]
fn combined_and_oci_saves_load_in_podman_under_the_image_id() {
    let c = Sandbox::new();
    let reference = format!("{}/busybox:v1", registry());
    let id = c.pull_image_id(&reference);
    for format in ["combined", "oci"] {
        let file = c.path(&format!("{format}.tar"));
        c.save(&reference, format, &file);
        let store = PodmanStore::new(&c.path(&format!("podman-{format}")));
        let load = store
            .run(&["load", "-i", path_str(&file)])
            .ok("podman load");
        assert!(
            load.stdout.contains(&format!("Loaded image: {reference}")),
            "{format}: {}",
            load.stdout
        );
        let got = store
            .run(&["image", "inspect", "--format", "{{.Id}}", &reference])
            .ok("podman image inspect");
        assert_eq!(got.stdout.trim(), hex(&id), "{format}");
    }
}

#[test]
fn combined_and_oci_saves_import_into_containerd_under_the_image_id() {
    let c = Sandbox::new();
    let refs = [
        format!("{}/busybox:v1", registry()),
        format!("{}/multiarch:v1", registry()),
    ];
    let ids: Vec<String> = refs.iter().map(|r| c.pull_image_id(r)).collect();
    let ctd = Containerd::start();
    for (reference, id) in refs.iter().zip(&ids) {
        // What the reference was pulled by: the index of multiarch:v1, busybox's manifest.
        let pulled_by = digest_of(&skopeo_raw(reference, &[]));
        for format in ["combined", "oci"] {
            let file = c.path(&format!("{}-{format}.tar", hex(id)));
            c.save(reference, format, &file);
            let (top, config) = ctd.import(&file, reference);
            assert_eq!(&config, id, "{reference} {format}");
            // ctr takes what index.json names: what the reference was pulled by, unchanged.
            assert_eq!(top, pulled_by, "{reference} {format}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Import of the real fixtures.

/// The references `import` records for image `i` of a fixture.
fn expected_refs(fx: &Fixture, i: usize) -> Vec<String> {
    match fx.tags.len() {
        0 => vec![fx.image_ids[i].clone()],
        n if n == fx.image_ids.len() => vec![normalize(&fx.tags[i])],
        // One tag for all the images of an index (one per platform).
        _ => vec![normalize(&fx.tags[0])],
    }
}

fn report_ids(doc: &Value) -> Vec<String> {
    doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["image_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_fixture_imports_under_its_image_ids_and_a_second_import_stores_nothing() {
    assert!(
        env().rows.len() >= 10,
        "fixtures.tsv has {} rows",
        env().rows.len()
    );
    for fx in &env().rows {
        let what = &fx.producer;
        let c = Sandbox::new();
        let first = c.import(&fx.file, &[]);
        assert_eq!(report_ids(&first), fx.image_ids, "{what}: {first:#}");
        let mut want_ls = BTreeSet::new();
        let mut manifests = BTreeSet::new();
        let mut stored = 0;
        for (i, img) in first["images"].as_array().unwrap().iter().enumerate() {
            assert_eq!(
                img["references"],
                json!(expected_refs(fx, i)),
                "{what}: {first:#}"
            );
            let p = img["platform"].as_str().unwrap();
            assert!(p.starts_with("linux/"), "{what}: {first:#}");
            for r in img["references"].as_array().unwrap() {
                want_ls.insert((
                    r.as_str().unwrap().to_owned(),
                    fx.image_ids[i].clone(),
                    p.to_owned(),
                ));
            }
            manifests.insert(img["manifest_digest"].as_str().unwrap().to_owned());
            stored += img["bytes_stored"].as_u64().unwrap();
        }
        assert_eq!(c.ls_rows(), want_ls, "{what}");
        assert_fsck_spotless(&c);
        c.assert_no_ingest();
        // bytes_stored counts the layers written: every blob but configs and manifests, once.
        let blobs = c.blob_files_with_sizes();
        let layer_bytes: u64 = blobs
            .iter()
            .filter(|(d, _)| !fx.image_ids.contains(d) && !manifests.contains(d))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(stored, layer_bytes, "{what}: {first:#}");
        assert!(stored > 0, "{what}");

        let second = c.import(&fx.file, &[]);
        assert_eq!(report_ids(&second), fx.image_ids, "{what}");
        for (a, b) in first["images"]
            .as_array()
            .unwrap()
            .iter()
            .zip(second["images"].as_array().unwrap())
        {
            assert_eq!(b["bytes_stored"], 0, "{what}: {second:#}");
            assert_eq!(a["manifest_digest"], b["manifest_digest"], "{what}");
            assert_eq!(a["references"], b["references"], "{what}");
        }
        assert_eq!(
            c.blob_files_with_sizes(),
            blobs,
            "{what}: the second import wrote blobs"
        );
        assert_eq!(c.ls_rows(), want_ls, "{what}");
        assert_fsck_spotless(&c);
    }
}

#[test]
fn import_image_picks_one_image_and_tag_names_it_and_tag_alone_wants_a_pick() {
    for producer in ["docker-save-multi", "podman-docker-archive-multi"] {
        let fx = env().fixture(producer);
        assert_eq!(fx.image_ids.len(), 2, "{producer}");
        assert_eq!(fx.tags.len(), 2, "{producer}");
        for (i, tag) in fx.tags.iter().enumerate() {
            let c = Sandbox::new();
            let doc = c.import(&fx.file, &["--image", tag]);
            assert_eq!(
                report_ids(&doc),
                [fx.image_ids[i].as_str()],
                "{producer} {tag}: {doc:#}"
            );
            assert_eq!(doc["images"][0]["references"], json!([tag]), "{doc:#}");
            let ls = c.ls_rows();
            assert_eq!(ls.len(), 1, "{ls:?}");
            assert_eq!(ls.first().unwrap().1, fx.image_ids[i]);
            // Only that image's blobs are stored: none unreferenced.
            assert_fsck_spotless(&c);
        }

        // Picked by image ID, recorded under --tag.
        let c = Sandbox::new();
        let doc = c.import(
            &fx.file,
            &["--image", &fx.image_ids[1], "--tag", "example.test/x:1"],
        );
        assert_eq!(report_ids(&doc), [fx.image_ids[1].as_str()], "{doc:#}");
        assert_eq!(doc["images"][0]["references"], json!(["example.test/x:1"]));
        let ls = c.ls_rows();
        assert_eq!(ls.len(), 1, "{ls:?}");
        let (r, id, _) = ls.first().unwrap();
        assert_eq!((r.as_str(), id), ("example.test/x:1", &fx.image_ids[1]));
        assert_fsck_spotless(&c);

        // --tag for two images: refused, nothing recorded.
        let c = Sandbox::new();
        let r = c.run(&["import", path_str(&fx.file), "--tag", "example.test/x:1"]);
        assert!(r.code == 2, "{producer}: {} {}", r.code, r.stderr);
        assert!(r.stderr.contains("pick one with --image"), "{}", r.stderr);
        assert!(c.ls_rows().is_empty());
        assert!(c.blob_files_with_sizes().is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Round trips: an imported archive saved again loads in dockerd under the same ID.

#[test]
fn an_imported_fixture_saved_combined_verifies_and_loads_in_dockerd_under_the_same_id() {
    // A docker-archive (no manifest kept: one is made) and an OCI archive (its own manifest).
    for producer in ["skopeo-docker-archive", "podman-oci-archive"] {
        let fx = env().fixture(producer);
        let id = &fx.image_ids[0];
        let tag = format!("{}/{}:v1", registry(), unique_name("rt"));
        let c = Sandbox::new();
        let doc = c.import(&fx.file, &["--tag", &tag]);
        assert_eq!(report_ids(&doc), [id.as_str()], "{doc:#}");
        let file = c.path("saved.tar");
        c.save(&tag, "combined", &file);
        assert_verifies(&c, &file, id, &[&tag]);
        let (guard, got) = DockerTag::load(&file, &tag);
        assert_eq!(&got, id, "{producer}");
        guard.remove();
    }
}

#[test]
fn a_docker_archive_of_new_layers_round_trips_through_import_and_save_into_dockerd() {
    // Layers dockerd has never seen: it must read and check every byte of what save wrote.
    let c = Sandbox::new();
    let tag = format!("{}/{}:v1", registry(), unique_name("new"));
    let src = c.path("src.tar");
    let (id, layer_bytes) = write_docker_archive(&src, &tag, &[250_000, 30_000]);
    let doc = c.import(&src, &[]);
    assert_eq!(report_ids(&doc), [id.as_str()], "{doc:#}");
    assert_eq!(doc["images"][0]["references"], json!([tag]));
    assert_eq!(doc["images"][0]["bytes_stored"], layer_bytes, "{doc:#}");
    for format in ["combined", "legacy"] {
        let file = c.path(&format!("{format}.tar"));
        c.save(&tag, format, &file);
        assert_verifies(&c, &file, &id, &[&tag]);
        let (guard, got) = DockerTag::load(&file, &tag);
        assert_eq!(got, id, "{format}");
        guard.remove();
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Damaged archives are refused, and nothing of them is recorded.

#[test]
fn damaged_archives_are_refused_by_import_and_nothing_is_recorded() {
    let c = Sandbox::new();
    // Something in the cache already, to see that it is left as it was.
    c.import(&env().fixture("docker-save-digest").file, &[]);
    let ls = c.ls_rows();
    let blobs = c.blob_files_with_sizes();

    let skopeo = &env().fixture("skopeo-docker-archive").file;
    let skopeo_layer0 = "fe02a815012db219630be84b47e9f8cbc60c14811726f038a3fd72f90aebc7a0.tar";
    let (at, size) = entry_range(skopeo, skopeo_layer0);

    let truncated = c.path("truncated.tar");
    fs::write(
        &truncated,
        &fs::read(skopeo).unwrap()[..(at + size / 2) as usize],
    )
    .unwrap();

    let flipped = c.path("flipped.tar");
    copy_flipped(skopeo, &flipped, at + size / 2);

    // An OCI archive: a gzip layer blob that no longer hashes to its digest.
    let oci = &env().fixture("skopeo-oci-archive-from-oci").file;
    let oci_layer = "blobs/sha256/4af18a157c4ee44472104124900fc3be9a3d22013baf294f288606d724f4fbfd";
    let (at, size) = entry_range(oci, oci_layer);
    let oci_flipped = c.path("oci-flipped.tar");
    copy_flipped(oci, &oci_flipped, at + size / 2);

    // Two images, the second one's own layer damaged: the intact first is not recorded either.
    let multi = env().fixture("docker-save-multi");
    let shown = c.json(&["inspect", path_str(&multi.file)]);
    let first_layers: Vec<&Value> = shown["images"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["diff_id"])
        .collect();
    let (li, own) = shown["images"][1]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .find(|(_, l)| !first_layers.contains(&&l["diff_id"]))
        .expect("a layer of the second image only");
    let (at, size) = entry_range(&multi.file, own["entry"].as_str().unwrap());
    let multi_flipped = c.path("multi-flipped.tar");
    copy_flipped(&multi.file, &multi_flipped, at + size / 2);

    // (archive, the check import names, the layer and image it names)
    let cases = [
        (truncated.as_path(), "truncated", None),
        (flipped.as_path(), "diff-id", Some((0, BUSYBOX_ID))),
        (oci_flipped.as_path(), "blob-digest", Some((0, BUSYBOX_ID))),
        (
            multi_flipped.as_path(),
            "diff-id",
            Some((li, multi.image_ids[1].as_str())),
        ),
    ];
    for (file, check, layer) in cases {
        let what = file.file_name().unwrap().to_string_lossy();
        let doc = c.json_code(&["import", path_str(file)], 1);
        assert_eq!(doc["ok"], false, "{what}: {doc:#}");
        assert_eq!(doc["error"]["check"], check, "{what}: {doc:#}");
        if let Some((i, id)) = layer {
            assert_eq!(doc["error"]["layer"], i, "{what}: {doc:#}");
            let msg = doc["error"]["message"].as_str().unwrap();
            assert!(msg.contains(id), "{what}: {msg}");
        }
        let human = c.run(&["import", path_str(file)]);
        assert_eq!(human.code, 1, "{what}");
        assert!(
            human.stderr.contains(path_str(file)),
            "{what}: {}",
            human.stderr
        );

        assert_eq!(c.ls_rows(), ls, "{what}: ls changed");
        assert_eq!(
            c.blob_files_with_sizes(),
            blobs,
            "{what}: blob files changed"
        );
        c.assert_no_ingest();
        assert_fsck_spotless(&c);
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Failed saves leave no file.

#[test]
fn failed_saves_exit_with_the_right_code_and_leave_no_file() {
    let c = Sandbox::new();
    let reference = format!("{}/busybox:v1", registry());
    let id = c.pull_image_id(&reference);
    let out_dir = c.path("out");
    fs::create_dir(&out_dir).unwrap();

    // Not in the cache: exit 1, to a file or to stdout.
    let missing_ref = format!("{}/{}:v1", registry(), unique_name("absent"));
    let file = out_dir.join("absent.tar");
    let r = c.run(&["save", &missing_ref, "-o", path_str(&file)]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("not in the cache"), "{}", r.stderr);
    let doc = c.json_code(&["save", &missing_ref, "-o", path_str(&file)], 1);
    assert_eq!(doc["ok"], false, "{doc:#}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not in the cache"),
        "{doc:#}"
    );
    let r = c.run(&["save", &missing_ref, "-o", "-"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{} bytes on stdout", r.stdout.len());
    assert!(listing(&out_dir).is_empty(), "{:?}", listing(&out_dir));

    // A directory that does not exist: exit 3, nothing created.
    let nowhere = c.path("no-such-dir").join("x.tar");
    let before = listing(c.dir.path());
    let r = c.run(&["save", &reference, "-o", path_str(&nowhere)]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("no-such-dir"), "{}", r.stderr);
    assert_eq!(listing(c.dir.path()), before);

    // A stored layer gone: exit 1 before writing; no new file, and an old one left intact.
    let layer = c.json(&["inspect", &reference])["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    fs::remove_file(c.blob_dir().join(hex(&layer))).unwrap();
    let doc = c.json_code(&["save", &reference, "-o", path_str(&file)], 1);
    assert_eq!(doc["error"]["check"], "missing-entry", "{doc:#}");
    assert!(!file.exists());
    let old = out_dir.join("old.tar");
    fs::write(&old, b"what was there before").unwrap();
    c.json_code(
        &[
            "save",
            &reference,
            "-o",
            path_str(&old),
            "--format",
            "legacy",
        ],
        1,
    );
    assert_eq!(fs::read(&old).unwrap(), b"what was there before");
    c.json_code(&["save", &id, "-o", path_str(&file)], 1);
    assert_eq!(listing(&out_dir), BTreeSet::from(["old.tar".to_owned()]));
}

#[test]
fn save_of_an_image_with_a_corrupt_stored_blob_fails_and_leaves_no_file() {
    let c = Sandbox::new();
    let reference = format!("{}/busybox:v1", registry());
    c.pull_image_id(&reference);
    let layer = c.json(&["inspect", &reference])["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = c.blob_dir().join(hex(&layer));
    let mut data = fs::read(&path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    let mut perm = fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(&path, perm).unwrap();
    fs::write(&path, &data).unwrap();

    let file = c.path("corrupt.tar");
    let r = c.run(&["save", &reference, "-o", path_str(&file)]);
    let written = file.exists();
    // What it wrote does not verify: the layer is not the one the manifest names.
    if written {
        let v = c.run(&["verify", "--deep", "--no-memo", path_str(&file)]);
        assert_eq!(v.code, 1, "{}", v.stdout);
    }
    assert_eq!(r.code, 1, "save exited {}: {}", r.code, r.stderr);
    assert!(!written, "a save that failed left {}", file.display());
    assert!(c.run(&["save", &reference, "-o", "-"]).code != 0);
}

/// Regression: an import of a layout directory that failed after the archive was open (here
/// `--image` picks nothing) named the temporary tar the directory was packed into.
#[test]
fn a_layout_directory_import_that_picks_nothing_names_the_directory_not_its_temporary_tar() {
    let sb = Sandbox::new();
    let name = format!("{}/busybox:v1-oci", registry());
    sb.pull(&name);
    let layout = sb.save_layout_dir(&name, "layout");

    let fresh = Sandbox::new();
    let run = fresh.run(&[
        "import",
        path_str(&layout),
        "--image",
        "example.test/none:1",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("{}: no image matches", layout.display())),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("layout.tar"), "{}", run.stderr);
    assert!(fresh.refs().is_empty(), "{:?}", fresh.refs());
    assert_eq!(listing(&fresh.root.join("ingest")).len(), 0);
}
