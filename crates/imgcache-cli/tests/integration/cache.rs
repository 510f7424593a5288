//! The cache commands against the real test registries: pull, ls, inspect, verify REF, rm, prune
//! and fsck.
//!
//! Tests that count requests push their own fresh image (random layers, a unique repository) with
//! skopeo, and read only what the registry appended to its access log while they ran, for their
//! repository only: other tests pull from the same registry at the same time.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// Written in `--creds` or an auth file: must never be printed.
const MARKER_PASSWORD: &str = "MARKERpw123";

// ---------------------------------------------------------------------------------------------
// Helpers

fn failure_checks(verify_doc: &Value) -> Vec<String> {
    verify_doc["image"]["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap().to_owned())
        .collect()
}

/// Makes a stored blob writable and flips one byte in its middle.
fn corrupt(path: &Path) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    let mut data = fs::read(path).unwrap();
    let i = data.len() / 2;
    data[i] ^= 0x55;
    fs::write(path, data).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 1. Pull: identities as skopeo sees them; the store layout.

#[test]
fn pull_gives_the_digests_skopeo_computes_and_lays_out_the_store() {
    let c = Sandbox::new();
    let reg = registry();
    let host_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let mut expected_blobs = BTreeSet::new();
    // The image ID by skopeo; the manifest's blobs noted as expected in the store.
    let note_image = |blobs: &mut BTreeSet<String>, repo_at: &str, manifest: &[u8]| {
        let m: Value = serde_json::from_slice(manifest).unwrap();
        blobs.insert(digest_of(manifest));
        blobs.insert(m["config"]["digest"].as_str().unwrap().to_owned());
        for l in m["layers"].as_array().unwrap() {
            blobs.insert(l["digest"].as_str().unwrap().to_owned());
        }
        let config = skopeo_raw(repo_at, &["--config"]);
        assert_eq!(digest_of(&config), m["config"]["digest"].as_str().unwrap());
        digest_of(&config)
    };

    // Single manifests: Docker v2s2 and OCI, the same config and layers.
    let mut first_fetch = None;
    for tag in ["v1", "v1-oci"] {
        let reference = format!("{reg}/busybox:{tag}");
        let manifest = skopeo_raw(&reference, &[]);
        let image_id = note_image(&mut expected_blobs, &reference, &manifest);
        let doc = c.pull(&reference);
        assert_eq!(doc["reference"], reference.as_str());
        assert_eq!(doc["image_id"], image_id.as_str(), "{tag}");
        assert_eq!(
            doc["manifest_digest"],
            digest_of(&manifest).as_str(),
            "{tag}"
        );
        assert_eq!(doc["distribution_digest"], doc["manifest_digest"], "{tag}");
        assert_eq!(doc["from_cache"], false);
        let m: Value = serde_json::from_slice(&manifest).unwrap();
        let blob_bytes = m["config"]["size"].as_u64().unwrap()
            + m["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["size"].as_u64().unwrap())
                .sum::<u64>();
        match first_fetch {
            None => {
                assert_eq!(doc["bytes_fetched"], blob_bytes, "{doc:#}");
                assert_eq!(
                    doc["blobs_fetched"],
                    1 + m["layers"].as_array().unwrap().len()
                );
                first_fetch = Some(blob_bytes);
            }
            // The OCI twin shares config and layers: nothing to download.
            Some(_) => {
                assert_eq!(doc["bytes_fetched"], 0, "{doc:#}");
                assert_eq!(doc["bytes_reused"], blob_bytes, "{doc:#}");
            }
        }
    }

    // Indexes: OCI index (default platform, and linux/arm64 = linux/arm64/v8) and Docker list.
    let cases = [
        ("multiarch:v1", None, (host_arch, None)),
        ("multiarch:v1", Some("linux/arm64"), ("arm64", Some("v8"))),
        ("multiarch:v1-list", None, (host_arch, None)),
    ];
    for (tag, platform, (arch, variant)) in cases {
        let reference = format!("{reg}/{tag}");
        let index = skopeo_raw(&reference, &[]);
        expected_blobs.insert(digest_of(&index));
        let doc: Value = serde_json::from_slice(&index).unwrap();
        // Every child manifest and its config are stored, whatever platform is pulled (serve
        // answers for them).
        for m in doc["manifests"].as_array().unwrap() {
            let child = m["digest"].as_str().unwrap();
            expected_blobs.insert(child.to_owned());
            let bytes = skopeo_raw(&format!("{reg}/multiarch@{child}"), &[]);
            let parsed: Value = serde_json::from_slice(&bytes).unwrap();
            expected_blobs.insert(parsed["config"]["digest"].as_str().unwrap().to_owned());
        }
        let child = doc["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| {
                m["platform"]["os"] == "linux"
                    && m["platform"]["architecture"] == arch
                    && (variant.is_none() || m["platform"]["variant"] == variant.unwrap())
            })
            .unwrap_or_else(|| panic!("{tag} has no linux/{arch}"))["digest"]
            .as_str()
            .unwrap()
            .to_owned();
        let child_ref = format!("{reg}/multiarch@{child}");
        let manifest = skopeo_raw(&child_ref, &[]);
        assert_eq!(digest_of(&manifest), child);
        let image_id = note_image(&mut expected_blobs, &child_ref, &manifest);
        let mut args = vec!["pull", reference.as_str()];
        if let Some(p) = platform {
            args.extend(["--platform", p]);
        }
        let pulled = c.json(&args);
        let what = format!("{tag} {platform:?}");
        assert_eq!(pulled["image_id"], image_id.as_str(), "{what}");
        assert_eq!(pulled["manifest_digest"], child.as_str(), "{what}");
        assert_eq!(
            pulled["distribution_digest"],
            digest_of(&index).as_str(),
            "{what}"
        );
        let want_platform = match variant {
            Some(v) => format!("linux/{arch}/{v}"),
            None => format!("linux/{arch}"),
        };
        assert_eq!(pulled["platform"], want_platform.as_str(), "{what}");
    }

    // The store: a tagged cache dir, the index, every blob once, read-only, named by its hash.
    let tag = fs::read_to_string(c.root.join("CACHEDIR.TAG")).unwrap();
    assert!(
        tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"),
        "{tag}"
    );
    assert!(c.root.join("index.db").is_file());
    assert_eq!(c.blob_files(), expected_blobs);
    for d in &expected_blobs {
        let p = c.blob_path(d);
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o444, "{}", p.display());
        assert_eq!(digest_of(&fs::read(&p).unwrap()), *d);
    }
    c.assert_fsck_clean(&["--deep"]);
}

#[test]
fn a_single_platform_image_is_not_recorded_under_another_platform() {
    // busybox:v1 is one linux/amd64 manifest, no index.
    let c = Sandbox::new();
    let reference = format!("{}/busybox:v1", registry());
    let r = c.run(&["--json", "pull", &reference, "--platform", "linux/arm64"]);
    if r.code == 0 {
        // Accepted: then what the cache says must be the image's own platform.
        assert_eq!(r.json()["platform"], "linux/amd64", "{}", r.stdout);
        let ls = c.json(&["ls"]);
        assert_eq!(ls["images"][0]["platform"], "linux/amd64", "{ls:#}");
    } else {
        // Refused: a check that said no, naming the platforms.
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stderr.contains("linux/arm64"), "{}", r.stderr);
        assert!(r.stderr.contains("linux/amd64"), "{}", r.stderr);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Pulling again: nothing downloaded; pinned and offline pulls never touch the network.

#[test]
fn second_pull_fetches_nothing_and_pinned_and_offline_pulls_make_no_request() {
    let img = fresh_image("again", &[40_000, 30_000]);
    let c = Sandbox::new();

    let log = RegistryLog::mark();
    let first = c.pull(&img.reference);
    assert_eq!(first["image_id"], img.config_digest.as_str());
    assert_eq!(first["manifest_digest"], img.manifest_digest.as_str());
    assert_eq!(first["bytes_fetched"], img.blob_bytes());
    assert_eq!(first["blobs_fetched"], 3);
    assert_eq!(first["blobs_reused"], 0);
    assert_eq!(first["from_cache"], false);
    let gets = log.blob_gets_per_digest(&img.repo);
    assert_eq!(gets.len(), 3, "{gets:?}");
    assert!(gets.values().all(|&n| n == 1), "{gets:?}");

    let log = RegistryLog::mark();
    let second = c.pull(&img.reference);
    assert_eq!(second["image_id"], img.config_digest.as_str());
    assert_eq!(second["bytes_fetched"], 0, "{second:#}");
    assert_eq!(second["blobs_fetched"], 0);
    assert_eq!(second["bytes_reused"], img.blob_bytes());
    assert_eq!(second["blobs_reused"], 3);
    assert!(log.blob_gets_per_digest(&img.repo).is_empty());

    // Pinned by digest and cached: answered from the cache, not one request.
    let log = RegistryLog::mark();
    let pinned = c.pull(&img.pinned());
    assert_eq!(pinned["from_cache"], true, "{pinned:#}");
    assert_eq!(pinned["reference"], img.pinned().as_str());
    assert_eq!(pinned["image_id"], img.config_digest.as_str());
    assert_eq!(pinned["manifest_digest"], img.manifest_digest.as_str());
    assert_eq!(pinned["distribution_digest"], img.manifest_digest.as_str());
    assert_eq!(pinned["bytes_fetched"], 0);
    assert_eq!(pinned["blobs_fetched"], 0);
    let offline = c.pull_offline(&img.reference);
    assert_eq!(offline["from_cache"], true, "{offline:#}");
    assert_eq!(offline["image_id"], img.config_digest.as_str());
    assert_eq!(offline["manifest_digest"], img.manifest_digest.as_str());

    // Offline and not cached: a check that says no (1), naming the reference.
    let missing = format!("{}/{}:v2", registry(), img.repo);
    let r = c.run(&["pull", "--offline", &missing]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("not in the cache"), "{}", r.stderr);
    assert!(r.stderr.contains(&missing), "{}", r.stderr);
    let doc = c.json_code(&["pull", "--offline", &missing], 1);
    assert_eq!(doc["ok"], false);
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.contains("not in the cache"), "{doc:#}");
    assert!(doc["error"]["check"].is_string(), "{doc:#}");
    let requests = log.access_lines(&img.repo);
    assert!(requests.is_empty(), "{requests:#?}");

    // Offline never tries the network: an uncached reference of an unreachable registry is
    // "not in the cache" (1), not a network failure (3).
    let r = c.run(&["pull", "--offline", "127.0.0.1:9/nothing/here:v1"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("not in the cache"), "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------------
// 3. A tag that moves.

#[test]
fn a_moved_tag_downloads_only_the_new_blobs() {
    let shared = layer(60_000);
    let repo = unique_name("moving");
    let a = push_image(&repo, &[shared.clone(), layer(20_000)]);
    let c = Sandbox::new();
    let first = c.pull(&a.reference);
    assert_eq!(first["image_id"], a.config_digest.as_str());

    let new_layer = layer(25_000);
    let b = push_image(&repo, &[shared.clone(), new_layer.clone()]);
    assert_eq!(a.reference, b.reference);
    let log = RegistryLog::mark();
    let second = c.pull(&b.reference);
    assert_eq!(second["image_id"], b.config_digest.as_str(), "{second:#}");
    assert_eq!(second["manifest_digest"], b.manifest_digest.as_str());
    let new_bytes = b.config_size + new_layer.blob.len() as u64;
    assert_eq!(second["bytes_fetched"], new_bytes, "{second:#}");
    assert_eq!(second["blobs_fetched"], 2);
    assert_eq!(second["bytes_reused"], shared.blob.len() as u64);
    assert_eq!(second["blobs_reused"], 1);
    let gets = log.blob_gets_per_digest(&repo);
    let want: BTreeMap<String, usize> =
        BTreeMap::from([(b.config_digest.clone(), 1), (new_layer.digest.clone(), 1)]);
    assert_eq!(gets, want, "the shared layer must not be downloaded again");

    // The tag now names B; A's blobs stay until prune.
    let ls = c.json(&["ls"]);
    let images = ls["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{ls:#}");
    assert_eq!(images[0]["image_id"], b.config_digest.as_str());
    let inspect = c.json(&["inspect", &b.reference]);
    assert_eq!(inspect["image_id"], b.config_digest.as_str());
    let pruned = c.json(&["prune"]);
    assert_eq!(pruned["blobs_removed"], 3, "{pruned:#}");
    assert_eq!(c.blob_files(), b.blobs());
}

// ---------------------------------------------------------------------------------------------
// 4. Credentials and TLS.

#[test]
fn base64_helper_matches_the_rfc() {
    assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    assert_eq!(base64(b"a"), "YQ==");
    assert_eq!(base64(b"ab"), "YWI=");
}

#[test]
fn htpasswd_registry_takes_creds_or_a_docker_config_and_refuses_without() {
    let reg = auth_registry();
    let reference = format!("{reg}/busybox:v1");
    let busybox_id = skopeo_image_id("busybox:v1");

    let c = Sandbox::new();
    let r = c.run(&["pull", &reference]);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(reg), "{}", r.stderr);
    assert!(r.stderr.contains("docker login"), "{}", r.stderr);

    let wrong = format!("{}:{MARKER_PASSWORD}", env().vars["TEST_REGISTRY_USER"]);
    let r = c.run(&["pull", &reference, "--creds", &wrong]);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(reg), "{}", r.stderr);
    assert!(c.json(&["ls"])["images"].as_array().unwrap().is_empty());

    let doc = c.json(&["pull", &reference, "--creds", &auth_creds()]);
    assert_eq!(doc["image_id"], busybox_id.as_str());

    // From ~/.docker/config.json.
    let c = Sandbox::new();
    write_docker_config(&c.home, reg, &auth_creds());
    let doc = c.pull(&reference);
    assert_eq!(doc["image_id"], busybox_id.as_str());
    c.assert_fsck_clean(&["--deep"]);
}

/// The image ID of `<repo:tag>` on the plain registry, by skopeo.
fn skopeo_image_id(repo_tag: &str) -> String {
    digest_of(&skopeo_raw(
        &format!("{}/{repo_tag}", registry()),
        &["--config"],
    ))
}

#[test]
fn tls_registry_needs_its_ca() {
    let reg = &env().vars["TEST_REGISTRY_TLS"];
    let ca = &env().vars["TEST_REGISTRY_TLS_CA"];
    let reference = format!("{reg}/busybox:v1");
    let c = Sandbox::new();
    let r = c.run(&["pull", &reference]);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("--ca-cert"), "{}", r.stderr);
    assert!(r.stderr.contains(reg.as_str()), "{}", r.stderr);
    assert!(c.json(&["ls"])["images"].as_array().unwrap().is_empty());

    let doc = c.json(&["pull", &reference, "--ca-cert", ca]);
    assert_eq!(doc["image_id"], skopeo_image_id("busybox:v1").as_str());
}

#[test]
fn passwords_never_appear_in_any_output() {
    let reg = auth_registry();
    let reference = format!("{reg}/busybox:v1");
    let user = &env().vars["TEST_REGISTRY_USER"];
    let right_pass = &env().vars["TEST_REGISTRY_PASS"];
    let wrong = format!("{user}:{MARKER_PASSWORD}");
    let right = auth_creds();
    let secrets = [
        MARKER_PASSWORD.to_owned(),
        base64(wrong.as_bytes()),
        right_pass.clone(),
        base64(right.as_bytes()),
    ];
    let check = |what: &str, r: &Run| r.assert_shows_none(&secrets, what);
    let c = Sandbox::new();
    let traced = |args: &[&str]| -> Run { output_of(c.command(args).env("IMGCACHE_LOG", "trace")) };
    for json in [false, true] {
        let mut base: Vec<&str> = if json { vec!["--json"] } else { vec![] };
        base.extend(["pull", &reference, "--creds"]);
        let mut bad = base.clone();
        bad.push(&wrong);
        let r = traced(&bad);
        assert_eq!(r.code, 3, "{}", r.stderr);
        check("wrong --creds", &r);
        let mut good = base.clone();
        good.push(&right);
        let r = traced(&good);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stderr.contains("TRACE"),
            "tracing was not on: {}",
            r.stderr
        );
        check("right --creds", &r);
        // A --creds without ':' is refused without being echoed.
        let r = traced(&["pull", &reference, "--creds", MARKER_PASSWORD]);
        assert_ne!(r.code, 0);
        check("malformed --creds", &r);
    }
    // Credentials from an auth file, wrong then right.
    let c2 = Sandbox::new();
    write_docker_config(&c2.home, reg, &wrong);
    let r = output_of(
        c2.command(&["--json", "pull", &reference])
            .env("IMGCACHE_LOG", "trace"),
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    check("wrong password in config.json", &r);
    write_docker_config(&c2.home, reg, &right);
    let r = output_of(
        c2.command(&["pull", &reference])
            .env("IMGCACHE_LOG", "trace"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    check("right password in config.json", &r);
    // Nor anything the cache says afterwards.
    for args in [
        vec!["ls"],
        vec!["--json", "ls"],
        vec!["inspect", reference.as_str()],
        vec!["--json", "verify", "--deep", reference.as_str()],
        vec!["--json", "fsck", "--deep"],
    ] {
        let r = traced(&args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        check(&format!("{args:?}"), &r);
    }
    // The index does not keep them either.
    let db = fs::read(c.root.join("index.db")).unwrap();
    let db = String::from_utf8_lossy(&db);
    for s in &secrets {
        assert!(!db.contains(s.as_str()), "index.db holds a secret");
    }
}

#[test]
fn malformed_creds_is_a_usage_error() {
    let c = Sandbox::new();
    let r = c.run(&[
        "pull",
        &format!("{}/busybox:v1", auth_registry()),
        "--creds",
        "no-colon-here",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("USER:PASSWORD"), "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------------
// 5. Not in the registry.

#[test]
fn a_reference_the_registry_does_not_have_exits_1_naming_it() {
    let c = Sandbox::new();
    for reference in [
        format!("{}/{}:v1", registry(), unique_name("nothing")),
        format!("{}/busybox:no-such-tag", registry()),
    ] {
        let r = c.run(&["pull", &reference]);
        assert_eq!(r.code, 1, "{reference}: {}\n{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(&reference), "{}", r.stderr);
        assert!(r.stderr.contains("not found"), "{}", r.stderr);
        let doc = c.json_code(&["pull", &reference], 1);
        assert_eq!(doc["ok"], false);
        let message = doc["error"]["message"].as_str().unwrap();
        assert!(message.contains(&reference), "{doc:#}");
    }
    assert!(c.json(&["ls"])["images"].as_array().unwrap().is_empty());
    assert!(c.blob_files().is_empty());
}

// ---------------------------------------------------------------------------------------------
// 6. ls, inspect, verify, rm, prune.

#[test]
fn ls_inspect_verify_rm_and_prune_keep_blobs_another_reference_needs() {
    let shared = layer(50_000);
    let a = push_image(&unique_name("lsa"), &[shared.clone(), layer(10_000)]);
    let b = push_image(&unique_name("lsb"), &[shared.clone(), layer(12_000)]);
    let c = Sandbox::new();
    c.pull(&a.reference);
    c.pull(&b.reference);

    let ls = c.json(&["ls"]);
    let mut rows: Vec<&Value> = ls["images"].as_array().unwrap().iter().collect();
    rows.sort_by_key(|r| r["reference"].as_str().unwrap().to_owned());
    assert_eq!(rows.len(), 2, "{ls:#}");
    for (row, img) in rows.iter().zip([&a, &b]) {
        assert_eq!(row["reference"], img.reference.as_str());
        assert_eq!(row["image_id"], img.config_digest.as_str());
        assert_eq!(row["manifest_digest"], img.manifest_digest.as_str());
        assert_eq!(row["platform"], "linux/amd64");
        assert_eq!(row["size"], img.size());
        assert!(row.get("index_digest").is_none(), "{row:#}");
        assert!(row["last_used"].as_i64().unwrap() > 1_600_000_000);
    }
    let human = c.run(&["ls"]);
    assert_eq!(human.code, 0);
    assert!(human.stdout.contains(&a.reference) && human.stdout.contains(&b.reference));

    // inspect, by reference and by image ID.
    for target in [a.reference.clone(), a.config_digest.clone()] {
        let doc = c.json(&["inspect", &target]);
        assert_eq!(doc["image_id"], a.config_digest.as_str(), "{target}");
        assert_eq!(doc["manifest_digest"], a.manifest_digest.as_str());
        assert_eq!(doc["media_type"], OCI_MANIFEST);
        assert_eq!(doc["size"], a.size());
        let layers = doc["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2);
        for (l, ((d, s), diff)) in layers.iter().zip(a.layers.iter().zip(&a.diff_ids)) {
            assert_eq!(l["digest"], d.as_str());
            assert_eq!(l["size"], *s);
            assert_eq!(l["diff_id"], diff.as_str());
            assert_eq!(l["present"], true);
        }
    }
    assert_eq!(
        c.json(&["inspect", &a.reference])["reference"],
        a.reference.as_str()
    );

    for level in [&[][..], &["--deep"][..]] {
        let mut args = vec!["verify", a.reference.as_str()];
        args.extend_from_slice(level);
        let doc = c.json(&args);
        assert_eq!(doc["ok"], true, "{doc:#}");
        assert_eq!(doc["level"], if level.is_empty() { "fast" } else { "deep" });
        assert_eq!(doc["reference"], a.reference.as_str());
        assert_eq!(doc["image"]["ok"], true);
        assert_eq!(doc["image"]["image_id"], a.config_digest.as_str());
        assert_eq!(doc["image"]["failures"], json!([]));
    }
    let doc = c.json_code(&["verify", &a.reference, "--expect", &b.config_digest], 1);
    assert_eq!(failure_checks(&doc), ["expected-image-id"]);

    // rm: the reference goes, its blobs stay.
    let all = c.blob_files();
    let mut want_all = a.blobs();
    want_all.extend(b.blobs());
    assert_eq!(all, want_all);
    let rm = c.json(&["rm", &a.reference]);
    assert_eq!(rm["ok"], true);
    assert_eq!(c.refs(), [b.reference.as_str()]);
    assert_eq!(c.blob_files(), all);
    let r = c.run(&["inspect", &a.reference]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("not in the cache"), "{}", r.stderr);
    let r = c.run(&["verify", &a.reference]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let r = c.run(&["rm", &a.reference]);
    assert_eq!(r.code, 1, "{}", r.stderr);

    // fsck names what prune will remove; prune removes exactly that.
    let only_a: BTreeSet<String> = a.blobs().difference(&b.blobs()).cloned().collect();
    assert_eq!(only_a.len(), 3);
    let fsck = c.assert_fsck_clean(&[]);
    assert_eq!(
        fsck["unreferenced"],
        json!(only_a.iter().collect::<Vec<_>>())
    );
    let freed: u64 = a.manifest_size + a.config_size + a.layers[1].1;
    let pruned = c.json(&["prune"]);
    assert_eq!(pruned["blobs_removed"], 3, "{pruned:#}");
    assert_eq!(pruned["bytes_freed"], freed, "{pruned:#}");
    assert_eq!(pruned["images_removed"], 1, "{pruned:#}");
    assert_eq!(pruned["references_evicted"], json!([]));
    assert_eq!(c.blob_files(), b.blobs());
    assert!(c.blob_path(&shared.digest).exists());
    let fsck = c.assert_fsck_clean(&["--deep"]);
    assert_eq!(fsck["unreferenced"], json!([]));
    assert_eq!(c.json(&["verify", "--deep", &b.reference])["ok"], true);
    let again = c.json(&["prune"]);
    assert_eq!(again["blobs_removed"], 0, "{again:#}");
}

#[test]
fn prune_max_size_evicts_the_least_recently_used_first() {
    let x = fresh_image("lrux", &[30_000]);
    let y = fresh_image("lruy", &[30_000]);
    let c = Sandbox::new();
    c.pull(&x.reference);
    c.pull(&y.reference);
    // last_used has a resolution of one second.
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(c.pull(&x.pinned())["from_cache"], true);
    let ls = c.json(&["ls"]);
    let used = |reference: &str| {
        ls["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["reference"] == reference)
            .unwrap_or_else(|| panic!("{reference} not in {ls:#}"))["last_used"]
            .as_i64()
            .unwrap()
    };
    assert!(used(&x.reference) > used(&y.reference), "{ls:#}");

    // A copy of the cache, to prune it to nothing.
    let copy = Sandbox::new();
    let status = Command::new("cp")
        .arg("-a")
        .arg(&c.root)
        .arg(&copy.root)
        .status()
        .unwrap();
    assert!(status.success());

    // Room for X only: Y goes, X (touched later) stays.
    let max = x.size().to_string();
    let pruned = c.json(&["prune", "--max-size", &max]);
    assert_eq!(
        pruned["references_evicted"],
        json!([y.reference]),
        "{pruned:#}"
    );
    assert_eq!(pruned["images_removed"], 1, "{pruned:#}");
    assert_eq!(pruned["blobs_removed"], 3, "{pruned:#}");
    assert_eq!(pruned["bytes_freed"], y.size(), "{pruned:#}");
    assert_eq!(c.blob_files(), x.blobs());
    let mut refs = c.refs();
    refs.sort();
    assert_eq!(refs, [x.reference.clone(), x.pinned()]);
    c.assert_fsck_clean(&["--deep"]);

    // Room for nothing: everything goes, least recently used first.
    let pruned = copy.json(&["prune", "--max-size", "1"]);
    let evicted: Vec<&str> = pruned["references_evicted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(evicted.len(), 3, "{pruned:#}");
    assert_eq!(evicted[0], y.reference, "{pruned:#}");
    let rest: BTreeSet<&str> = evicted[1..].iter().copied().collect();
    assert_eq!(
        rest,
        BTreeSet::from([x.reference.as_str(), x.pinned().as_str()])
    );
    assert_eq!(pruned["images_removed"], 2);
    assert_eq!(pruned["bytes_freed"], x.size() + y.size());
    assert!(copy.blob_files().is_empty());
    assert!(copy.refs().is_empty());
}

// ---------------------------------------------------------------------------------------------
// 7. fsck.

#[test]
fn fsck_finds_a_deleted_blob_and_a_pull_restores_it() {
    let img = fresh_image("fsckmissing", &[20_000, 30_000]);
    let c = Sandbox::new();
    c.pull(&img.reference);
    let doc = c.assert_fsck_clean(&[]);
    assert_eq!(doc["blobs_checked"], 4);
    assert_eq!(doc["unreferenced"], json!([]));
    c.assert_fsck_clean(&["--deep"]);

    let gone = &img.layers[1].0;
    fs::remove_file(c.blob_path(gone)).unwrap();
    let doc = c.json_code(&["fsck"], 1);
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["missing"], json!([gone]), "{doc:#}");
    assert_eq!(doc["broken_references"], json!([img.reference]), "{doc:#}");
    assert_eq!(doc["corrupt"], json!([]));
    let human = c.run(&["fsck"]);
    assert_eq!(human.code, 1);
    assert!(human.stdout.contains(gone.as_str()), "{}", human.stdout);

    let doc = c.json_code(&["verify", &img.reference], 1);
    assert_eq!(doc["ok"], false);
    assert_eq!(failure_checks(&doc), ["missing-entry"], "{doc:#}");
    assert_eq!(doc["image"]["failures"][0]["layer"], 1);
    let inspect = c.json(&["inspect", &img.reference]);
    assert_eq!(inspect["layers"][1]["present"], false);
    assert_eq!(inspect["layers"][0]["present"], true);

    // A pinned pull of an incomplete image goes to the registry for what is missing.
    let log = RegistryLog::mark();
    let doc = c.pull(&img.pinned());
    assert_eq!(doc["from_cache"], false, "{doc:#}");
    assert_eq!(doc["bytes_fetched"], img.layers[1].1, "{doc:#}");
    assert_eq!(
        log.blob_gets_per_digest(&img.repo),
        BTreeMap::from([(gone.clone(), 1)])
    );
    c.assert_fsck_clean(&["--deep"]);
    assert_eq!(c.json(&["verify", "--deep", &img.reference])["ok"], true);
}

#[test]
fn fsck_deep_finds_a_corrupt_blob_and_repair_removes_it() {
    let img = fresh_image("fsckcorrupt", &[40_000, 20_000]);
    let c = Sandbox::new();
    c.pull(&img.reference);
    let bad = &img.layers[0].0;
    corrupt(&c.blob_path(bad));

    // Sizes are unchanged: the fast checks cannot see it.
    c.assert_fsck_clean(&[]);
    assert_eq!(c.json(&["verify", &img.reference])["ok"], true);

    let doc = c.json_code(&["fsck", "--deep"], 1);
    assert_eq!(doc["corrupt"], json!([bad]), "{doc:#}");
    assert_eq!(doc["missing"], json!([]), "{doc:#}");
    assert_eq!(doc["broken_references"], json!([img.reference]), "{doc:#}");
    let doc = c.json_code(&["verify", "--deep", &img.reference], 1);
    let checks = failure_checks(&doc);
    assert!(
        checks.iter().any(|c| c == "blob-digest" || c == "diff-id"),
        "{doc:#}"
    );
    assert_eq!(doc["image"]["failures"][0]["layer"], 0, "{doc:#}");

    let doc = c.json_code(&["fsck", "--deep", "--repair"], 1);
    assert_eq!(doc["corrupt"], json!([bad]), "{doc:#}");
    let repaired = doc["repaired"].as_array().unwrap();
    assert_eq!(repaired.len(), 1, "{doc:#}");
    assert!(repaired[0].as_str().unwrap().contains(bad.as_str()));
    assert!(!c.blob_path(bad).exists());
    let mut others = img.blobs();
    others.remove(bad);
    assert_eq!(c.blob_files(), others);

    let doc = c.json_code(&["fsck"], 1);
    assert_eq!(doc["missing"], json!([bad]), "{doc:#}");
    let pulled = c.pull(&img.reference);
    assert_eq!(pulled["bytes_fetched"], img.layers[0].1, "{pulled:#}");
    c.assert_fsck_clean(&["--deep"]);
    assert_eq!(c.json(&["verify", "--deep", &img.reference])["ok"], true);
}

// ---------------------------------------------------------------------------------------------
// 8. Concurrency.

#[test]
fn the_child_manifests_of_an_index_and_their_configs_are_stored_and_kept_by_prune() {
    let c = Sandbox::new();
    let reference = format!("{}/multiarch:v1-list", registry());
    let index = skopeo_raw(&reference, &[]);
    let doc: Value = serde_json::from_slice(&index).unwrap();
    let children: BTreeSet<String> = doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect();
    assert!(children.len() >= 2, "{doc:#}");
    c.pull(&reference);
    let stored = c.blob_files();
    for d in &children {
        assert!(stored.contains(d), "{d} not stored: {stored:?}");
        assert_eq!(digest_of(&c.blob(d)), *d);
        let child: Value = serde_json::from_slice(&c.blob(d)).unwrap();
        let config = child["config"]["digest"].as_str().unwrap();
        assert!(stored.contains(config), "config {config} of {d} not stored");
    }
    // Reachable: prune keeps them, fsck does not call them unreferenced.
    let pruned = c.json(&["prune"]);
    assert_eq!(pruned["blobs_removed"], 0, "{pruned:#}");
    assert_eq!(c.blob_files(), stored);
    let fsck = c.assert_fsck_clean(&[]);
    assert_eq!(fsck["unreferenced"], json!([]), "{fsck:#}");
    // Once the reference goes, so do they.
    c.json(&["rm", &reference]);
    c.json(&["prune"]);
    assert_eq!(c.blob_files(), BTreeSet::new());
}

fn wait_all(children: Vec<Child>) -> Vec<Run> {
    children
        .into_iter()
        .map(|ch| to_run(ch.wait_with_output().unwrap()))
        .collect()
}

#[test]
fn eight_concurrent_pulls_download_each_blob_once() {
    let img = fresh_image("eight", &[1_500_000, 1_000_000, 700_000]);
    let c = Sandbox::new();
    let log = RegistryLog::mark();
    let children: Vec<Child> = (0..8)
        .map(|_| c.spawn(&["--json", "pull", &img.reference]))
        .collect();
    let runs = wait_all(children);
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r.code, 0, "pull {i}: {}\n{}", r.stdout, r.stderr);
        let doc = r.json();
        assert_eq!(doc["image_id"], img.config_digest.as_str(), "pull {i}");
        assert_eq!(doc["manifest_digest"], img.manifest_digest.as_str());
    }
    let fetched: u64 = runs
        .iter()
        .map(|r| r.json()["bytes_fetched"].as_u64().unwrap())
        .sum();
    assert_eq!(fetched, img.blob_bytes(), "bytes counted once in all");

    let gets = log.blob_gets_per_digest(&img.repo);
    let want: BTreeMap<String, usize> = img
        .blobs()
        .into_iter()
        .filter(|d| *d != img.manifest_digest)
        .map(|d| (d, 1))
        .collect();
    assert_eq!(gets, want, "blob GETs per digest (Range GETs included)");

    assert_eq!(c.blob_files(), img.blobs());
    let partials: Vec<_> = fs::read_dir(c.root.join("ingest"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(partials.is_empty(), "{partials:?}");
    c.assert_fsck_clean(&["--deep"]);
    assert_eq!(c.refs(), [img.reference.as_str()]);
}

#[test]
fn prune_during_pulls_removes_nothing_they_need() {
    // Z shares a layer with W; Z is dropped, so prune has that layer to remove.
    let shared = layer(600_000);
    let z = push_image(&unique_name("prunez"), &[shared.clone(), layer(50_000)]);
    let w = push_image(
        &unique_name("prunew"),
        &[
            shared.clone(),
            layer(800_000),
            layer(500_000),
            layer(300_000),
        ],
    );
    let c = Sandbox::new();
    c.pull(&z.reference);
    c.json(&["rm", &z.reference]);

    let mut children: Vec<Child> = (0..4)
        .map(|_| c.spawn(&["--json", "pull", &w.reference]))
        .collect();
    thread::sleep(Duration::from_millis(30));
    children.push(c.spawn(&["--json", "prune"]));
    let runs = wait_all(children);
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r.code, 0, "process {i}: {}\n{}", r.stdout, r.stderr);
    }
    for r in &runs[..4] {
        assert_eq!(r.json()["image_id"], w.config_digest.as_str());
    }
    let pruned = runs[4].json();
    assert!(
        pruned["blobs_removed"].as_u64().unwrap() >= 3,
        "Z's own blobs go: {pruned:#}"
    );

    assert!(c.blob_path(&shared.digest).exists());
    for d in z.blobs().difference(&w.blobs()) {
        assert!(!c.blob_path(d).exists(), "{d} of Z survived prune");
    }
    assert_eq!(c.blob_files(), w.blobs());
    c.assert_fsck_clean(&["--deep"]);
    assert_eq!(c.json(&["verify", "--deep", &w.reference])["ok"], true);
    assert_eq!(c.refs(), [w.reference.as_str()]);
}

// ---------------------------------------------------------------------------------------------
// 9. The deep-verification memo of files.

fn remembered(doc: &Value) -> bool {
    assert_eq!(doc["ok"], true, "{doc:#}");
    doc["files"][0]["remembered"].as_bool().unwrap_or(false)
}

#[test]
fn deep_verify_of_an_unchanged_file_is_remembered_until_it_changes() {
    let fixture = &env().fixture("skopeo-docker-archive").file;
    let c = Sandbox::new();
    let file = c.dir.path().join("image.tar");
    fs::copy(fixture, &file).unwrap();
    let f = file.to_str().unwrap();
    let deep = ["verify", "--deep", f];
    assert!(!remembered(&c.json(&deep)));
    assert!(remembered(&c.json(&deep)));
    // Fast verification neither uses nor needs the memo.
    assert!(!remembered(&c.json(&["verify", f])));

    let touched = Command::new("touch").arg(&file).status().unwrap();
    assert!(touched.success());
    assert!(
        !remembered(&c.json(&deep)),
        "a touched file is verified again"
    );
    assert!(remembered(&c.json(&deep)));

    // --no-memo neither uses nor records one.
    let no_memo = ["verify", "--deep", "--no-memo", f];
    assert!(!remembered(&c.json(&no_memo)));
    let other = Sandbox::new();
    assert!(!remembered(&other.json(&no_memo)));
    assert!(!remembered(&other.json(&no_memo)));
    assert!(!other.root.join("index.db").exists());
    // The image IDs are those of the fixture either way.
    let doc = c.json(&deep);
    assert_eq!(
        image_ids(&doc["files"][0]),
        env().fixture("skopeo-docker-archive").image_ids
    );
}
