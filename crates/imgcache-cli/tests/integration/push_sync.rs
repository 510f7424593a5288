//! `push` and `sync` into real registries (Debian's distribution 2.8), each test into a private
//! registry of its own so that its access log holds this test's requests and nothing else.
//!
//! What is checked: the destination serves the very bytes of the cached manifest or index
//! (`skopeo inspect --raw`), engines pulling from it get the image the cache holds, the JSON
//! reports count what the registry's log shows was sent, a second push or sync costs one
//! `HEAD` per image, blobs another repository of the registry holds are mounted, large blobs
//! go up in `PATCH` chunks, and faults (injected by [`UploadProxy`], which streams uploads of
//! any size back through itself: the registry's upload `Location` is built from the `Host`
//! the proxy passes on) are retried, resumed or refused, never reported as a success.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// Chunk size of a chunked upload, and the largest blob sent in one `PUT` (upload.rs).
const CHUNK_SIZE: u64 = 64 * 1024 * 1024;
const MONOLITHIC_MAX: u64 = 16 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Helpers

/// The image of the shared registry most tests push: `busybox:v1` (two layers).
fn busybox() -> String {
    format!("{}/busybox:v1", registry())
}

fn multiarch() -> String {
    format!("{}/multiarch:v1", registry())
}

/// (digest, size) of the config and the layers of a manifest.
fn blobs_of(manifest: &[u8]) -> Vec<(String, u64)> {
    let doc: Value = serde_json::from_slice(manifest).unwrap();
    std::iter::once(&doc["config"])
        .chain(doc["layers"].as_array().unwrap())
        .map(|d| {
            (
                d["digest"].as_str().unwrap().to_owned(),
                d["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// (digest, `os/arch[/variant]`) of each manifest an index names.
fn children_of(index: &[u8]) -> Vec<(String, String)> {
    let doc: Value = serde_json::from_slice(index).unwrap();
    doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut platform = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                platform.push('/');
                platform.push_str(v);
            }
            (m["digest"].as_str().unwrap().to_owned(), platform)
        })
        .collect()
}

/// A sandbox that pulled `reference` (every platform in `platforms`, or the default one).
fn sandbox_with(reference: &str, platforms: &[&str]) -> Sandbox {
    let sb = Sandbox::new();
    if platforms.is_empty() {
        sb.pull(reference);
    }
    for p in platforms {
        sb.json(&["pull", "--platform", p, reference]);
    }
    sb
}

/// `push --json ARGS`, which must exit 0.
fn push(sb: &Sandbox, args: &[&str]) -> Value {
    let mut a = vec!["push"];
    a.extend_from_slice(args);
    sb.json(&a)
}

/// The request closes the upload of `digest` (`PUT ...?digest=`, the query encoded or not).
fn closes(path: &str, digest: &str) -> bool {
    path.contains(&format!("digest={digest}"))
        || path.contains(&format!("digest=sha256%3A{}", hex(digest)))
}

/// Hits of `method` whose path contains `fragment`.
fn count(hits: &[Hit], method: &str, fragment: &str) -> usize {
    hits.iter()
        .filter(|h| h.method == method && h.path.contains(fragment))
        .count()
}

/// The run failed with `code`, saying every one of `fragments` on stderr.
fn assert_failed(r: &Run, code: i32, fragments: &[&str], ctx: &str) {
    assert_eq!(
        r.code, code,
        "{ctx}: exit code\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    for f in fragments {
        assert!(
            r.stderr.contains(f),
            "{ctx}: no {f:?} in stderr:\n{}",
            r.stderr
        );
    }
}

/// A `--json` run that failed: its document says `ok: false` and is no push report.
fn assert_failed_json(r: &Run, ctx: &str) -> Value {
    let doc = r.json();
    assert_eq!(doc["ok"], false, "{ctx}: {doc:#}");
    for k in ["digest", "already_present", "blobs_uploaded", "images"] {
        assert!(
            doc.get(k).is_none(),
            "{ctx}: a failure reports {k}: {doc:#}"
        );
    }
    doc
}

// ---------------------------------------------------------------------------------------------
// 1-3. One platform: to an empty registry, again, and to another repository.

#[test]
fn push_to_an_empty_registry_keeps_the_digest_and_engines_get_the_cached_image() {
    let origin = Manifest::of(registry(), "busybox:v1");
    let blobs = blobs_of(&origin.raw);
    let sb = sandbox_with(&busybox(), &[]);
    let reg = PrivateRegistry::start();
    let dest = reg.reference("pushed/bb:v1");
    let mark = reg.mark();

    let doc = push(&sb, &[&busybox(), &dest]);
    assert_eq!(doc["source"], busybox());
    assert_eq!(doc["destination"], dest);
    assert_eq!(doc["digest"], origin.digest);
    assert_eq!(doc["media_type"], origin.media_type);
    assert_eq!(doc["platforms"], serde_json::json!(["linux/amd64"]));
    assert_eq!(doc["blobs_uploaded"], blobs.len(), "{doc:#}");
    assert_eq!(
        doc["bytes_uploaded"],
        blobs.iter().map(|b| b.1).sum::<u64>(),
        "{doc:#}"
    );
    assert_eq!(doc["blobs_mounted"], 0);
    assert_eq!(doc["blobs_present"], 0);
    assert_eq!(doc["manifests_pushed"], 1);
    assert_eq!(doc["already_present"], false);

    let there = Manifest::of(&reg.addr, "pushed/bb:v1");
    assert_eq!(there.digest, origin.digest);
    assert_eq!(there.raw, origin.raw, "the destination serves other bytes");

    // What was sent: a HEAD of the tag, a HEAD, a POST and a monolithic PUT per blob (each
    // under 16 MiB), the manifest last.
    let hits = hits_since(&mark);
    let lines = hit_lines(&hits);
    assert_eq!(
        hits[0].line(),
        "HEAD /v2/pushed/bb/manifests/v1 404",
        "{lines}"
    );
    for (digest, _) in &blobs {
        let head = format!("HEAD /v2/pushed/bb/blobs/{digest} 404");
        assert_eq!(
            hits.iter().filter(|h| h.line() == head).count(),
            1,
            "{lines}"
        );
        let put = hits
            .iter()
            .filter(|h| h.method == "PUT" && closes(&h.path, digest))
            .collect::<Vec<_>>();
        assert_eq!(put.len(), 1, "{digest}: {lines}");
        assert_eq!(put[0].status, 201, "{lines}");
    }
    assert_eq!(
        count(&hits, "POST", "/blobs/uploads/"),
        blobs.len(),
        "{lines}"
    );
    assert_eq!(count(&hits, "PATCH", ""), 0, "{lines}");
    assert_eq!(
        hits.last().unwrap().line(),
        "PUT /v2/pushed/bb/manifests/v1 201",
        "{lines}"
    );
    assert_eq!(hits.len(), 2 + 3 * blobs.len(), "{lines}");

    // podman pulls it from there and holds the image the cache holds.
    let image_id = sb.json(&["inspect", &busybox()])["image_id"]
        .as_str()
        .unwrap()
        .to_owned();
    sb.podman(&["pull", "--quiet", "--tls-verify=false", &dest])
        .ok("podman pull from the destination");
    let id = sb
        .podman(&["image", "inspect", "--format", "{{.Id}}", &dest])
        .ok("podman image inspect");
    assert_eq!(format!("sha256:{}", id.stdout.trim()), image_id);
    let digest = sb
        .podman(&["image", "inspect", "--format", "{{.Digest}}", &dest])
        .ok("podman image inspect");
    assert_eq!(digest.stdout.trim(), origin.digest);
}

#[test]
fn a_second_push_of_the_same_image_costs_one_manifest_head() {
    let origin = Manifest::of(registry(), "busybox:v1");
    let sb = sandbox_with(&busybox(), &[]);
    let reg = PrivateRegistry::start();
    let dest = reg.reference("bb:v1");
    push(&sb, &[&busybox(), &dest]);

    let mark = reg.mark();
    let doc = push(&sb, &[&busybox(), &dest]);
    assert_eq!(doc["already_present"], true, "{doc:#}");
    assert_eq!(doc["digest"], origin.digest);
    assert_eq!(doc["blobs_uploaded"], 0);
    assert_eq!(doc["bytes_uploaded"], 0);
    assert_eq!(doc["manifests_pushed"], 0);
    let hits = hits_since(&mark);
    assert_eq!(
        hit_lines(&hits),
        "HEAD /v2/bb/manifests/v1 200",
        "nothing but the manifest HEAD"
    );

    // The text output says so too.
    let r = sb.run(&["push", &busybox(), &dest]).ok("push, text");
    assert!(r.stdout.contains("nothing sent"), "{}", r.stdout);
    assert!(r.stdout.contains(&origin.digest), "{}", r.stdout);
}

#[test]
fn a_push_to_another_repository_of_the_registry_mounts_every_blob() {
    let origin = Manifest::of(registry(), "busybox:v1");
    let blobs = blobs_of(&origin.raw);
    let sb = sandbox_with(&busybox(), &[]);
    let reg = PrivateRegistry::start();
    push(&sb, &[&busybox(), &reg.reference("first/bb:v1")]);

    let mark = reg.mark();
    let doc = push(&sb, &[&busybox(), &reg.reference("second/bb:v2")]);
    assert_eq!(doc["blobs_mounted"], blobs.len(), "{doc:#}");
    assert_eq!(doc["blobs_uploaded"], 0, "{doc:#}");
    assert_eq!(doc["bytes_uploaded"], 0, "{doc:#}");
    assert_eq!(doc["already_present"], false);
    assert_eq!(
        Manifest::of(&reg.addr, "second/bb:v2").raw,
        origin.raw,
        "the mounted copy serves other bytes"
    );
    let hits = hits_since(&mark);
    let lines = hit_lines(&hits);
    for (digest, _) in &blobs {
        let mount = format!("POST /v2/second/bb/blobs/uploads/?mount={digest}&from=first%2Fbb 201");
        let alt = format!("POST /v2/second/bb/blobs/uploads/?mount={digest}&from=first/bb 201");
        assert_eq!(
            hits.iter()
                .filter(|h| h.line() == mount || h.line() == alt)
                .count(),
            1,
            "{digest} not mounted once:\n{lines}"
        );
    }
    assert_eq!(count(&hits, "PATCH", ""), 0, "{lines}");
    assert_eq!(count(&hits, "PUT", "/blobs/"), 0, "{lines}");
    assert_eq!(count(&hits, "POST", ""), blobs.len(), "{lines}");
    assert_eq!(count(&hits, "PUT", "/manifests/v2"), 1, "{lines}");
}

#[test]
fn a_blob_location_recorded_at_pull_is_mounted_from() {
    // The image comes from a repository of the destination registry itself: the pull records
    // where its blobs are, and the push mounts them from there without sending a byte.
    let reg = PrivateRegistry::start();
    let origin = reg.copy_from_main("busybox:v1");
    let blobs = blobs_of(&origin.raw);
    let source = reg.reference("busybox:v1");
    let sb = sandbox_with(&source, &[]);
    let mark = reg.mark();
    let doc = push(&sb, &[&source, &reg.reference("mirror/busybox:v1")]);
    assert_eq!(doc["blobs_mounted"], blobs.len(), "{doc:#}");
    assert_eq!(doc["bytes_uploaded"], 0, "{doc:#}");
    let hits = hits_since(&mark);
    assert_eq!(
        count(&hits, "POST", "&from=busybox"),
        blobs.len(),
        "{}",
        hit_lines(&hits)
    );
    assert_eq!(count(&hits, "PUT", "/blobs/"), 0, "{}", hit_lines(&hits));
    assert_eq!(Manifest::of(&reg.addr, "mirror/busybox:v1").raw, origin.raw);
}

#[test]
fn a_mount_from_a_repository_that_lost_the_blob_falls_back_to_an_upload() {
    let origin = Manifest::of(registry(), "busybox:v1");
    let blobs = blobs_of(&origin.raw);
    let (layer, size) = blobs.iter().max_by_key(|b| b.1).unwrap().clone();
    let sb = sandbox_with(&busybox(), &[]);
    let reg = PrivateRegistry::start();
    push(&sb, &[&busybox(), &reg.reference("first/bb:v1")]);
    // The repository the cache remembers for the layer no longer holds it.
    let deleted = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "DELETE",
        ])
        .arg(format!("http://{}/v2/first/bb/blobs/{layer}", reg.addr))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&deleted.stdout),
        "202",
        "DELETE the blob"
    );

    let mark = reg.mark();
    let doc = push(&sb, &[&busybox(), &reg.reference("second/bb:v1")]);
    assert_eq!(doc["blobs_mounted"], blobs.len() - 1, "{doc:#}");
    assert_eq!(doc["blobs_uploaded"], 1, "{doc:#}");
    assert_eq!(doc["bytes_uploaded"], size, "{doc:#}");
    assert_eq!(Manifest::of(&reg.addr, "second/bb:v1").raw, origin.raw);
    let hits = hits_since(&mark);
    let lines = hit_lines(&hits);
    let refused = hits
        .iter()
        .find(|h| h.method == "POST" && h.path.contains(&format!("mount={layer}")))
        .unwrap_or_else(|| panic!("no mount asked for {layer}:\n{lines}"));
    assert_eq!(
        refused.status, 202,
        "the mount became an upload session:\n{lines}"
    );
    let closing: Vec<u16> = hits
        .iter()
        .filter(|h| h.method == "PUT" && closes(&h.path, &layer))
        .map(|h| h.status)
        .collect();
    assert_eq!(closing, vec![201], "{lines}");
}

#[test]
fn push_with_the_platform_of_a_single_manifest_image_and_with_another() {
    let origin = Manifest::of(registry(), "busybox:v1");
    let sb = sandbox_with(&busybox(), &[]);
    let reg = PrivateRegistry::start();
    let doc = push(
        &sb,
        &[
            "--platform",
            "linux/amd64",
            &busybox(),
            &reg.reference("bb:v1"),
        ],
    );
    assert_eq!(doc["digest"], origin.digest, "{doc:#}");
    let mark = reg.mark();
    let r = sb.run(&[
        "push",
        "--platform",
        "linux/s390x",
        &busybox(),
        &reg.reference("bb:s390x"),
    ]);
    assert_failed(&r, 1, &["linux/s390x", "linux/amd64"], "another platform");
    assert_eq!(mark.accesses(), Vec::<String>::new());
}

#[test]
fn a_destination_without_a_tag_gets_latest() {
    let origin = Manifest::of(registry(), "busybox:v1");
    let sb = sandbox_with(&busybox(), &[]);
    let reg = PrivateRegistry::start();
    let doc = push(&sb, &[&busybox(), &reg.reference("untagged")]);
    assert_eq!(doc["destination"], reg.reference("untagged:latest"));
    assert_eq!(
        raw_at(&reg.reference("untagged:latest"), &[]),
        Some(origin.raw)
    );
}

/// A cached blob damaged on disk after it was verified: the registry refuses its digest, the
/// push fails, and no manifest names the bad blob.
#[test]
fn a_blob_damaged_in_the_cache_is_refused_by_the_registry_and_nothing_is_tagged() {
    let origin = Manifest::of(registry(), "busybox:v1");
    let (layer, _) = blobs_of(&origin.raw)
        .into_iter()
        .max_by_key(|b| b.1)
        .unwrap();
    let sb = sandbox_with(&busybox(), &[]);
    let path = sb.blob_path(&layer);
    let mut bytes = fs::read(&path).unwrap();
    bytes[1000] ^= 0xff;
    let mut perms = fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&path, perms).unwrap();
    fs::write(&path, &bytes).unwrap();
    let reg = PrivateRegistry::start();
    let dest = reg.reference("damaged/bb:v1");
    let r = sb.run(&["--json", "push", &busybox(), &dest]);
    assert_ne!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&layer),
        "does not name the blob: {}",
        r.stderr
    );
    assert_failed_json(&r, "a damaged blob");
    assert!(
        raw_at(&dest, &[]).is_none(),
        "a manifest naming a bad blob was pushed"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. An index.

#[test]
fn an_index_with_every_platform_cached_is_pushed_whole_children_first() {
    let origin = Manifest::of(registry(), "multiarch:v1");
    let children = children_of(&origin.raw);
    assert_eq!(children.len(), 2, "the test image has two platforms");
    let sb = sandbox_with(&multiarch(), &["linux/amd64", "linux/arm64/v8"]);
    let reg = PrivateRegistry::start();
    let mark = reg.mark();
    let doc = push(&sb, &[&multiarch(), &reg.reference("ma:v1")]);
    assert_eq!(doc["digest"], origin.digest, "{doc:#}");
    assert_eq!(doc["media_type"], origin.media_type);
    assert_eq!(
        doc["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64/v8"])
    );
    assert_eq!(doc["manifests_pushed"], 3);
    assert_eq!(Manifest::of(&reg.addr, "ma:v1").raw, origin.raw);

    let mut all_blobs = BTreeMap::new();
    for (digest, platform) in &children {
        let want = Manifest::of(registry(), &format!("multiarch@{digest}"));
        let got = raw_at(&reg.reference(&format!("ma@{digest}")), &[])
            .unwrap_or_else(|| panic!("{platform}: {digest} is not at the destination"));
        assert_eq!(got, want.raw, "{platform}");
        all_blobs.extend(blobs_of(&want.raw));
    }
    assert_eq!(doc["blobs_uploaded"], all_blobs.len(), "{doc:#}");
    assert_eq!(doc["bytes_uploaded"], all_blobs.values().sum::<u64>());

    // Children by digest, before the index by tag.
    let hits = hits_since(&mark);
    let lines = hit_lines(&hits);
    let manifest_puts: Vec<String> = hits
        .iter()
        .filter(|h| h.method == "PUT" && h.path.contains("/manifests/"))
        .map(Hit::line)
        .collect();
    let mut want: Vec<String> = children
        .iter()
        .map(|(d, _)| format!("PUT /v2/ma/manifests/{d} 201"))
        .collect();
    want.push("PUT /v2/ma/manifests/v1 201".to_owned());
    assert_eq!(manifest_puts, want, "{lines}");
    let first_manifest = hits
        .iter()
        .position(|h| h.method == "PUT" && h.path.contains("/manifests/"))
        .unwrap();
    let last_blob = hits
        .iter()
        .rposition(|h| h.method == "PUT" && h.path.contains("/blobs/"))
        .unwrap();
    assert!(
        last_blob < first_manifest,
        "a manifest before its blobs:\n{lines}"
    );
}

/// Each kind of document goes up with its own media type, byte for byte: a Docker manifest
/// list and its Docker manifests, an OCI manifest (distribution 2.8 refuses a payload whose
/// `Content-Type` is not its `mediaType`).
#[test]
fn a_docker_manifest_list_and_an_oci_manifest_are_pushed_with_their_media_types() {
    let list = Manifest::of(registry(), "multiarch:v1-list");
    let oci = Manifest::of(registry(), "busybox:v1-oci");
    let list_ref = format!("{}/multiarch:v1-list", registry());
    let oci_ref = format!("{}/busybox:v1-oci", registry());
    let sb = sandbox_with(&list_ref, &["linux/amd64", "linux/arm64/v8"]);
    sb.pull(&oci_ref);
    let reg = PrivateRegistry::start();
    for (source, m, dest) in [
        (&list_ref, &list, "kinds/list:v1"),
        (&oci_ref, &oci, "kinds/oci:v1"),
    ] {
        let doc = push(&sb, &[source, &reg.reference(dest)]);
        assert_eq!(doc["digest"], m.digest, "{doc:#}");
        assert_eq!(doc["media_type"], m.media_type, "{doc:#}");
        let there = Manifest::of(&reg.addr, dest);
        assert_eq!(there.raw, m.raw, "{dest}");
    }
    for (digest, platform) in children_of(&list.raw) {
        let want = Manifest::of(registry(), &format!("multiarch@{digest}"));
        assert_eq!(
            raw_at(&reg.reference(&format!("kinds/list@{digest}")), &[]),
            Some(want.raw),
            "{platform}"
        );
    }
}

#[test]
fn an_index_with_a_platform_missing_is_refused_naming_it_and_one_platform_can_be_pushed() {
    let origin = Manifest::of(registry(), "multiarch:v1");
    let children = children_of(&origin.raw);
    let (amd64, _) = children.iter().find(|c| c.1 == "linux/amd64").unwrap();
    let sb = sandbox_with(&multiarch(), &["linux/amd64"]);
    let reg = PrivateRegistry::start();
    let mark = reg.mark();

    let r = sb.run(&["push", &multiarch(), &reg.reference("ma:v1")]);
    assert_failed(
        &r,
        1,
        &["linux/arm64/v8", "not cached", "--platform"],
        "whole index",
    );
    let missing = r.stderr.split("not cached:").nth(1).unwrap_or("");
    assert!(
        !missing.lines().next().unwrap_or("").contains("linux/amd64"),
        "names a cached platform as missing: {}",
        r.stderr
    );
    let j = sb.run(&["--json", "push", &multiarch(), &reg.reference("ma:v1")]);
    assert_eq!(j.code, 1);
    let doc = assert_failed_json(&j, "whole index, --json");
    assert!(
        doc["error"].to_string().contains("linux/arm64/v8"),
        "{doc:#}"
    );
    assert_eq!(
        mark.accesses(),
        Vec::<String>::new(),
        "a refused push asked the registry"
    );
    assert!(raw_at(&reg.reference("ma:v1"), &[]).is_none());

    // The cached platform alone: its manifest, its digest.
    let doc = push(
        &sb,
        &[
            "--platform",
            "linux/amd64",
            &multiarch(),
            &reg.reference("ma:amd64"),
        ],
    );
    assert_eq!(doc["digest"], amd64.as_str(), "{doc:#}");
    assert_eq!(doc["manifests_pushed"], 1);
    assert_eq!(doc["platforms"], serde_json::json!(["linux/amd64"]));
    let want = Manifest::of(registry(), &format!("multiarch@{amd64}"));
    assert_eq!(Manifest::of(&reg.addr, "ma:amd64").raw, want.raw);
    let hits = hits_since(&mark);
    assert_eq!(
        count(&hits, "PUT", "/manifests/"),
        1,
        "{}",
        hit_lines(&hits)
    );

    // The other one, not cached: refused, naming it.
    let r = sb.run(&[
        "push",
        "--platform",
        "linux/arm64/v8",
        &multiarch(),
        &reg.reference("ma:arm64"),
    ]);
    assert_failed(
        &r,
        1,
        &["linux/arm64/v8"],
        "--platform of an uncached platform",
    );
    assert!(raw_at(&reg.reference("ma:arm64"), &[]).is_none());
}

// ---------------------------------------------------------------------------------------------
// 5. Large blobs: PATCH chunks with Content-Range.

#[test]
fn blobs_over_16_mib_go_up_in_patch_chunks_with_content_range() {
    // One layer between 16 and 64 MiB (one PATCH), one over 64 MiB (two).
    let img = fresh_image("push-chunks", &[20 << 20, 70 << 20]);
    let (mid, big) = (img.layers[0].clone(), img.layers[1].clone());
    assert!(mid.1 > MONOLITHIC_MAX && mid.1 < CHUNK_SIZE && big.1 > CHUNK_SIZE);
    let origin = Manifest::of(registry(), &format!("{}:v1", img.repo));
    let sb = sandbox_with(&img.reference, &[]);
    let reg = PrivateRegistry::start();
    let proxy = UploadProxy::start(&reg.addr, Vec::new());
    let mark = reg.mark();
    let dest = format!("{}/chunks:v1", proxy.registry());
    let doc = push(&sb, &[&img.reference, &dest]);
    assert_eq!(doc["digest"], origin.digest, "{doc:#}");
    assert_eq!(doc["bytes_uploaded"], img.blob_bytes(), "{doc:#}");
    assert_eq!(Manifest::of(&reg.addr, "chunks:v1").raw, origin.raw);

    let passed = proxy.passed();
    for p in &passed {
        assert_eq!(p.host.as_deref(), Some(proxy.registry().as_str()), "{p:?}");
    }
    let patches = |digest_session: &str| -> Vec<(u64, u64, Option<u64>)> {
        passed
            .iter()
            .filter(|p| p.method == "PATCH" && p.route() == digest_session)
            .map(|p| {
                let (a, b) = p
                    .range()
                    .unwrap_or_else(|| panic!("no Content-Range: {p:?}"));
                (a, b, p.content_length)
            })
            .collect()
    };
    // Each blob's session is the one its closing PUT names.
    let session_of = |digest: &str| -> String {
        let put = passed
            .iter()
            .find(|p| p.method == "PUT" && closes(&p.path, digest))
            .unwrap_or_else(|| panic!("no closing PUT of {digest}"));
        assert_eq!(put.content_length.unwrap_or(0), 0, "{put:?}");
        assert_eq!(put.upstream_status, Some(201), "{put:?}");
        put.route().to_owned()
    };
    assert_eq!(
        patches(&session_of(&mid.0)),
        vec![(0, mid.1 - 1, Some(mid.1))]
    );
    assert_eq!(
        patches(&session_of(&big.0)),
        vec![
            (0, CHUNK_SIZE - 1, Some(CHUNK_SIZE)),
            (CHUNK_SIZE, big.1 - 1, Some(big.1 - CHUNK_SIZE))
        ]
    );
    // Every request reached the registry through the proxy, uploads included.
    let hits = hits_since(&mark);
    let through: Vec<String> = passed
        .iter()
        .filter(|p| !(p.method == "GET" && p.path == "/v2/"))
        .map(|p| format!("{} {}", p.method, p.path))
        .collect();
    let logged: Vec<String> = hits
        .iter()
        .map(|h| format!("{} {}", h.method, h.path))
        .collect();
    assert_eq!(
        through.iter().collect::<BTreeSet<_>>(),
        logged.iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(count(&hits, "PATCH", ""), 3, "{}", hit_lines(&hits));

    // What the destination holds reads back whole: a pull from there checks every digest.
    let other = Sandbox::new();
    let pulled = other.pull(&reg.reference("chunks:v1"));
    assert_eq!(pulled["image_id"], img.config_digest);
    other.assert_fsck_clean(&["--deep"]);
}

// ---------------------------------------------------------------------------------------------
// 6-8. Credentials, TLS, a pinned destination.

#[test]
fn a_registry_wanting_credentials_says_so_and_push_with_creds_never_prints_the_password() {
    let password = format!("pw-{}", unique_name("secret"));
    let reg = PrivateRegistry::start_mode(
        "htpasswd",
        &[("REG_USER", "pusher"), ("REG_PASS", password.as_str())],
    );
    let creds = format!("pusher:{password}");
    let origin = Manifest::of(registry(), "busybox:v1");
    let sb = sandbox_with(&busybox(), &[]);
    let dest = reg.reference("private/bb:v1");
    let debug = [("IMGCACHE_LOG", "debug")];
    let secrets = [password.clone(), base64(creds.as_bytes())];

    let r = sb.run(&["push", &busybox(), &dest]);
    assert_failed(&r, 3, &[&reg.addr, "docker login"], "without credentials");
    let r = sb.run_with_env(&debug, &["push", &busybox(), &dest]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(raw_at(&dest, &["--creds", &creds]).is_none());

    let wrong = sb.run_with_env(
        &debug,
        &["push", "--creds", "pusher:not-it", &busybox(), &dest],
    );
    assert_failed(
        &wrong,
        3,
        &[&reg.addr, "refused the credentials"],
        "wrong password",
    );
    for s in ["not-it".to_owned(), base64(b"pusher:not-it")] {
        assert!(
            !wrong.stdout.contains(&s) && !wrong.stderr.contains(&s),
            "the wrong password is printed:\n{}",
            wrong.stderr
        );
    }

    let r = sb.run_with_env(
        &debug,
        &["--json", "push", "--creds", &creds, &busybox(), &dest],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.assert_shows_none(&secrets, "push --creds, debug log");
    assert_eq!(r.json()["digest"], origin.digest);
    assert_eq!(
        raw_at(&dest, &["--creds", &creds]),
        Some(origin.raw.clone())
    );
}

#[test]
fn a_tls_registry_is_pushed_to_with_its_ca_and_refused_without() {
    let reg = PrivateRegistry::start_mode("tls", &[]);
    let ca = reg.ctl("tls/ca.crt");
    let origin = Manifest::of(registry(), "busybox:v1");
    let sb = sandbox_with(&busybox(), &[]);
    let dest = reg.reference("tls/bb:v1");
    let mark = reg.mark();
    let r = sb.run(&["push", &busybox(), &dest]);
    assert_failed(&r, 3, &["TLS", "--ca-cert"], "an unknown CA");
    assert!(
        hits_since(&mark).is_empty(),
        "sent something without trusting the server"
    );

    let doc = push(&sb, &["--ca-cert", path_str(&ca), &busybox(), &dest]);
    assert_eq!(doc["digest"], origin.digest, "{doc:#}");
    // --insecure: no verification.
    let doc = push(
        &sb,
        &["--insecure", &busybox(), &reg.reference("insecure/bb:v1")],
    );
    assert_eq!(doc["digest"], origin.digest, "{doc:#}");
    let cert_dir = reg.ctl("tls");
    let raw = raw_at(
        &dest,
        &["--tls-verify=true", "--cert-dir", path_str(&cert_dir)],
    );
    assert_eq!(raw, Some(origin.raw));
}

#[test]
fn a_destination_digest_that_is_not_the_images_is_refused_before_anything_is_sent() {
    let origin = Manifest::of(registry(), "busybox:v1");
    let other = Manifest::of(registry(), "multiarch:v1");
    let sb = sandbox_with(&busybox(), &[]);
    let reg = PrivateRegistry::start();
    let mark = reg.mark();
    let wrong = reg.reference(&format!("bb@{}", other.digest));
    let r = sb.run(&["push", &busybox(), &wrong]);
    assert_failed(&r, 1, &[&other.digest, &origin.digest], "another digest");
    let r = sb.run(&[
        "push",
        &busybox(),
        &format!("{}:v1@{}", reg.reference("bb"), other.digest),
    ]);
    assert_failed(&r, 1, &[&other.digest], "a tag and another digest");
    assert_eq!(
        mark.accesses(),
        Vec::<String>::new(),
        "a refused push asked the registry"
    );

    // Its own digest: pushed by digest, no tag made.
    let pinned = reg.reference(&format!("bb@{}", origin.digest));
    let doc = push(&sb, &[&busybox(), &pinned]);
    assert_eq!(doc["digest"], origin.digest);
    assert_eq!(raw_at(&pinned, &[]), Some(origin.raw.clone()));
    let hits = hits_since(&mark);
    assert_eq!(
        hits.iter()
            .filter(|h| h.path.contains("/manifests/"))
            .map(Hit::line)
            .collect::<Vec<_>>(),
        vec![
            format!("HEAD /v2/bb/manifests/{} 404", origin.digest),
            format!("PUT /v2/bb/manifests/{} 201", origin.digest),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// 9. sync

#[test]
fn sync_mirrors_a_list_then_skips_it_with_one_head_per_image_and_reports_a_bad_image() {
    let reg = PrivateRegistry::start();
    let sb = Sandbox::new();
    let list = sb.path("images.txt");
    fs::write(
        &list,
        format!(
            "# images for the mirror\n\n   \n{}   # the small one\n\n#{}\n{}\n{}\n",
            busybox(),
            "127.0.0.1:1/commented-out:v1",
            multiarch(),
            busybox()
        ),
    )
    .unwrap();
    let to = format!("{}/mirror", reg.addr);
    let bb = Manifest::of(registry(), "busybox:v1");
    let ma = Manifest::of(registry(), "multiarch:v1");
    let dest_bb = reg.reference("mirror/busybox:v1");
    let dest_ma = reg.reference("mirror/multiarch:v1");

    let doc = sb.json(&["sync", path_str(&list), "--to", &to]);
    assert_eq!(doc["destination"], to);
    assert_eq!(
        (
            doc["pushed"].as_u64(),
            doc["skipped"].as_u64(),
            doc["failed"].as_u64()
        ),
        (Some(2), Some(0), Some(0)),
        "{doc:#}"
    );
    let items = doc["images"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{doc:#}");
    let expect = [(&busybox(), &dest_bb, &bb), (&multiarch(), &dest_ma, &ma)];
    let mut total = 0;
    for (item, (src, dest, m)) in items.iter().zip(expect) {
        assert_eq!(item["source"], src.as_str(), "{item:#}");
        assert_eq!(item["destination"], dest.as_str(), "{item:#}");
        assert_eq!(item["status"], "pushed", "{item:#}");
        assert_eq!(item["digest"], m.digest, "{item:#}");
        assert!(item.get("error").is_none(), "{item:#}");
        assert_eq!(raw_at(dest, &[]).as_ref(), Some(&m.raw), "{dest}");
        total += item["bytes_uploaded"].as_u64().unwrap();
    }
    assert_eq!(doc["bytes_uploaded"], total);
    assert_eq!(
        items[1]["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64/v8"])
    );
    for (digest, platform) in children_of(&ma.raw) {
        let want = Manifest::of(registry(), &format!("multiarch@{digest}"));
        assert_eq!(
            raw_at(&reg.reference(&format!("mirror/multiarch@{digest}")), &[]),
            Some(want.raw),
            "{platform}"
        );
    }

    // Again: every image skipped, one manifest HEAD each, nothing else.
    let mark = reg.mark();
    let doc = sb.json(&["sync", path_str(&list), "--to", &to]);
    assert_eq!(
        (
            doc["pushed"].as_u64(),
            doc["skipped"].as_u64(),
            doc["failed"].as_u64()
        ),
        (Some(0), Some(2), Some(0)),
        "{doc:#}"
    );
    assert_eq!(doc["bytes_uploaded"], 0);
    for item in doc["images"].as_array().unwrap() {
        assert_eq!(item["status"], "skipped", "{item:#}");
        assert_eq!(item["bytes_uploaded"], 0, "{item:#}");
    }
    let hits = hits_since(&mark);
    let mut lines: Vec<String> = hits.iter().map(Hit::line).collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "HEAD /v2/mirror/busybox/manifests/v1 200".to_owned(),
            "HEAD /v2/mirror/multiarch/manifests/v1 200".to_owned(),
        ]
    );

    // A tag that does not exist: that image fails, the others are done, the exit code says so.
    let bad = format!("{}/busybox:no-such-tag", registry());
    fs::write(&list, format!("{}\n{bad}\n{}\n", busybox(), multiarch())).unwrap();
    let r = sb.run(&["--json", "sync", path_str(&list), "--to", &to]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let doc = r.json();
    assert_eq!(
        (
            doc["pushed"].as_u64(),
            doc["skipped"].as_u64(),
            doc["failed"].as_u64()
        ),
        (Some(0), Some(2), Some(1)),
        "{doc:#}"
    );
    let items = doc["images"].as_array().unwrap();
    assert_eq!(items[1]["source"], bad);
    assert_eq!(items[1]["status"], "failed");
    let error = items[1]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("no-such-tag") && error.contains("not found"),
        "{error}"
    );
    assert!(items[1].get("digest").is_none(), "{:#}", items[1]);
    assert_eq!(items[0]["status"], "skipped");
    assert_eq!(items[2]["status"], "skipped");
    assert!(raw_at(&reg.reference("mirror/busybox:no-such-tag"), &[]).is_none());

    // The text report names the failure.
    let r = sb.run(&["sync", path_str(&list), "--to", &to]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("FAILED") && r.stdout.contains(&bad),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("0 pushed, 2 skipped, 1 failed"),
        "{}",
        r.stdout
    );
}

#[test]
fn sync_of_one_platform_pushes_that_manifest() {
    let reg = PrivateRegistry::start();
    let sb = Sandbox::new();
    let ma = Manifest::of(registry(), "multiarch:v1");
    let (arm, _) = children_of(&ma.raw)
        .into_iter()
        .find(|c| c.1 == "linux/arm64/v8")
        .unwrap();
    let doc = sb.json(&[
        "sync",
        &multiarch(),
        "--platform",
        "linux/arm64/v8",
        "--to",
        &reg.addr,
    ]);
    assert_eq!(doc["images"][0]["digest"], arm.as_str(), "{doc:#}");
    let want = Manifest::of(registry(), &format!("multiarch@{arm}"));
    assert_eq!(raw_at(&reg.reference("multiarch:v1"), &[]), Some(want.raw));
}

/// Regression: an index with an attestation manifest (what buildx pushes, most of Docker
/// Hub) could not be synced: pull stores the attestation's manifest and config but not its
/// in-toto layer, and push refused the index for a platform `unknown/unknown` "not cached",
/// advising a `pull --platform unknown/unknown` that cannot be done.
#[test]
fn sync_of_an_index_with_an_attestation_manifest_pushes_it_whole() {
    let img = push_attested_index("push-attested");
    assert_eq!(
        Manifest::of(registry(), &format!("{}:v1", img.repo)).raw,
        img.index
    );
    let reg = PrivateRegistry::start();
    let sb = Sandbox::new();
    let doc = sb.json(&["sync", &img.reference, "--to", &format!("{}/m", reg.addr)]);
    let item = &doc["images"][0];
    assert_eq!(item["status"], "pushed", "{doc:#}");
    assert_eq!(item["digest"], img.digest, "{doc:#}");
    assert_eq!(
        item["platforms"],
        // arm64 without a variant is arm64/v8, as containerd normalizes it.
        serde_json::json!(["linux/amd64", "linux/arm64/v8", "unknown/unknown"])
    );
    let dest = reg.reference(&format!("m/{}", img.repo));
    assert_eq!(raw_at(&format!("{dest}:v1"), &[]), Some(img.index.clone()));
    for (digest, bytes, platform) in &img.entries {
        assert_eq!(
            raw_at(&format!("{dest}@{digest}"), &[]).as_ref(),
            Some(bytes),
            "{platform}"
        );
    }
    // The statement itself is there, byte for byte.
    let blob = Command::new("curl")
        .args(["-sf"])
        .arg(format!(
            "http://{}/v2/m/{}/blobs/{}",
            reg.addr, img.repo, img.statement.0
        ))
        .output()
        .expect("curl");
    assert!(blob.status.success());
    assert_eq!(digest_of(&blob.stdout), img.statement.0);

    // A push of what was synced needs nothing more.
    let doc = push(&sb, &[&img.reference, &reg.reference("again:v1")]);
    assert_eq!(doc["digest"], img.digest, "{doc:#}");
}

/// Regression: the same through `pull` of each platform then `push`: the attestation's layer
/// was never cached, so the index could not be pushed whole.
#[test]
fn push_of_an_index_with_an_attestation_after_pulling_its_platforms() {
    let img = push_attested_index("push-attested2");
    let reg = PrivateRegistry::start();
    let sb = sandbox_with(&img.reference, &["linux/amd64", "linux/arm64"]);
    let dest = reg.reference("attested:v1");
    let r = sb.run(&["--json", "push", &img.reference, &dest]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(r.json()["digest"], img.digest);
    assert_eq!(raw_at(&dest, &[]), Some(img.index.clone()));
}

#[test]
fn an_attestation_that_cannot_be_fetched_fails_the_push_naming_it() {
    let img = push_attested_index("push-attested3");
    let mut origin = PrivateRegistry::start();
    let source = origin.reference("att:v1");
    copy_between_registries(&img.reference, &source);
    let sb = sandbox_with(&source, &["linux/amd64", "linux/arm64"]);
    origin.stop();
    let reg = PrivateRegistry::start();
    let r = sb.run(&["push", &source, &reg.reference("att:v1")]);
    let (attestation, _, _) = img.entries.last().unwrap();
    assert_failed(
        &r,
        3,
        &[attestation, &origin.addr, "--platform"],
        "the origin is gone",
    );
    assert!(raw_at(&reg.reference("att:v1"), &[]).is_none());
    // One platform needs no attestation.
    let doc = push(
        &sb,
        &[
            "--platform",
            "linux/amd64",
            &source,
            &reg.reference("att:amd64"),
        ],
    );
    assert_eq!(doc["digest"], img.entries[0].0.as_str(), "{doc:#}");
}

// ---------------------------------------------------------------------------------------------
// 10. Faults between imgcache and the registry.

/// `push` of `source` (cached in `sb`) through `proxy` to `<proxy>/<repo_tag>`: the run.
fn push_through(sb: &Sandbox, proxy: &UploadProxy, source: &str, repo_tag: &str) -> Run {
    sb.run(&[
        "--json",
        "push",
        source,
        &format!("{}/{repo_tag}", proxy.registry()),
    ])
}

#[test]
fn a_503_on_an_upload_post_and_a_429_on_a_blob_put_are_retried() {
    let origin = Manifest::of(registry(), "busybox:v1");
    let blobs = blobs_of(&origin.raw);
    let sb = sandbox_with(&busybox(), &[]);
    let reg = PrivateRegistry::start();
    let proxy = UploadProxy::start(
        &reg.addr,
        vec![
            UploadRule::nth(
                "POST",
                "/blobs/uploads/",
                1,
                UploadFault::Answer {
                    code: 503,
                    retry_after: None,
                },
            ),
            UploadRule::nth(
                "PUT",
                "/blobs/uploads/",
                1,
                UploadFault::Answer {
                    code: 429,
                    retry_after: Some(1),
                },
            ),
        ],
    );
    let mark = reg.mark();
    let r = push_through(&sb, &proxy, &busybox(), "retried/bb:v1").ok("push through 503/429");
    assert_eq!(r.json()["digest"], origin.digest);
    assert_eq!(Manifest::of(&reg.addr, "retried/bb:v1").raw, origin.raw);

    let passed = proxy.passed();
    let faulted: Vec<&Passed> = passed.iter().filter(|p| p.fault.is_some()).collect();
    assert_eq!(faulted.len(), 2, "{passed:#?}");
    for f in &faulted {
        // The same request again, answered by the registry.
        let again = passed
            .iter()
            .filter(|p| p.fault.is_none() && p.method == f.method && p.path == f.path)
            .count();
        assert!(
            again >= 1,
            "{} {} not retried: {passed:#?}",
            f.method,
            f.path
        );
    }
    // The registry saw one POST and one PUT per blob: the faulted ones never reached it.
    let hits = hits_since(&mark);
    assert_eq!(
        count(&hits, "POST", "/blobs/uploads/"),
        blobs.len(),
        "{}",
        hit_lines(&hits)
    );
    let put = faulted.iter().find(|f| f.method == "PUT").unwrap();
    assert_eq!(
        hits.iter()
            .filter(|h| h.method == "PUT" && h.path == put.path)
            .map(|h| h.status)
            .collect::<Vec<_>>(),
        vec![201],
        "{}",
        hit_lines(&hits)
    );
}

#[test]
fn relative_upload_locations_are_followed() {
    let origin = Manifest::of(registry(), "busybox:v1");
    let sb = sandbox_with(&busybox(), &[]);
    let reg = PrivateRegistry::start();
    let proxy = UploadProxy::start(
        &reg.addr,
        vec![UploadRule::always(
            "POST",
            "/blobs/uploads/",
            UploadFault::RelativeLocation,
        )],
    );
    let r = push_through(&sb, &proxy, &busybox(), "relative/bb:v1").ok("push, relative");
    assert_eq!(r.json()["digest"], origin.digest);
    assert_eq!(Manifest::of(&reg.addr, "relative/bb:v1").raw, origin.raw);
    let passed = proxy.passed();
    assert_eq!(
        passed.iter().filter(|p| p.fault.is_some()).count(),
        blobs_of(&origin.raw).len()
    );
    let closing = passed
        .iter()
        .filter(|p| p.method == "PUT" && p.path.contains("/blobs/uploads/"))
        .filter(|p| p.upstream_status == Some(201))
        .count();
    assert_eq!(closing, blobs_of(&origin.raw).len(), "{passed:#?}");
}

/// A fresh image of one layer over 64 MiB (two PATCH chunks), cached in a new sandbox; the
/// big layer (digest, size).
fn big_image(what: &str) -> (Image, (String, u64), Sandbox) {
    let img = fresh_image(what, &[70 << 20]);
    let big = img.layers[0].clone();
    assert!(big.1 > CHUNK_SIZE);
    let sb = sandbox_with(&img.reference, &[]);
    (img, big, sb)
}

#[test]
fn a_connection_broken_before_a_patch_reaches_the_registry_is_resumed_from_its_offset() {
    let (img, big, sb) = big_image("push-resume");
    let origin = Manifest::of(registry(), &format!("{}:v1", img.repo));
    let reg = PrivateRegistry::start();
    // The second chunk's PATCH breaks three times in a row (the transport never sends a blob
    // body again itself): each time the upload asks the registry what it holds, and goes on
    // from there.
    let proxy = UploadProxy::start(
        &reg.addr,
        vec![UploadRule::from_nth(
            "PATCH",
            "/blobs/uploads/",
            2,
            3,
            UploadFault::ResetBeforeBody,
        )],
    );
    let mark = reg.mark();
    let r = push_through(&sb, &proxy, &img.reference, "resumed:v1").ok("push, resumed");
    assert_eq!(r.json()["digest"], origin.digest);
    assert_eq!(Manifest::of(&reg.addr, "resumed:v1").raw, origin.raw);

    let passed = proxy.passed();
    let session: Vec<&Passed> = passed
        .iter()
        .filter(|p| {
            p.path.contains("/blobs/uploads/")
                && p.method != "POST"
                && !closes(&p.path, &img.config_digest)
        })
        .collect();
    let second = (CHUNK_SIZE, big.1 - 1);
    // The three broken attempts are all at the second chunk.
    let broken: Vec<Option<(u64, u64)>> = session
        .iter()
        .filter(|p| p.fault.is_some())
        .map(|p| p.range())
        .collect();
    assert_eq!(broken, vec![Some(second); 3], "{session:#?}");
    // The rest: the first chunk, the session's state asked (as often as the attempts were
    // given up), the second chunk from the registry's offset, the closing PUT.
    let shape: Vec<String> = session
        .iter()
        .filter(|p| p.fault.is_none())
        .map(|p| match p.range() {
            Some((a, b)) => format!("{} {a}-{b} {:?}", p.method, p.upstream_status),
            None => format!("{} {:?}", p.method, p.upstream_status),
        })
        .collect();
    let gets = shape.len().saturating_sub(3);
    let mut want = vec![format!("PATCH 0-{} Some(202)", CHUNK_SIZE - 1)];
    want.extend((0..gets.max(1)).map(|_| "GET Some(204)".to_owned()));
    want.push(format!("PATCH {}-{} Some(202)", second.0, second.1));
    want.push("PUT Some(201)".to_owned());
    assert_eq!(shape, want, "{session:#?}");
    // One session all along; the registry said how far it had got.
    let hits = hits_since(&mark);
    let lines = hit_lines(&hits);
    assert_eq!(count(&hits, "POST", "/blobs/uploads/"), 2, "{lines}");
    let get = hits
        .iter()
        .find(|h| h.method == "GET" && h.path.contains("/blobs/uploads/"))
        .unwrap_or_else(|| panic!("no GET of the session:\n{lines}"));
    assert_eq!(get.status, 204, "{lines}");
    assert_eq!(
        count(&hits, "PATCH", ""),
        2,
        "none of the broken ones got through:\n{lines}"
    );
}

/// Regression: a `PATCH` that broke mid-body failed the push. The transport retried it with
/// the session's `_state` offset, which distribution (holding the part that got through)
/// answers `404 BLOB_UPLOAD_INVALID`, cancelling the session; upload.rs took that 404 for a
/// refusal and gave up instead of starting the upload again.
#[test]
fn a_patch_broken_mid_body_restarts_the_lost_upload_session() {
    let (img, big, sb) = big_image("push-midbody");
    let origin = Manifest::of(registry(), &format!("{}:v1", img.repo));
    let reg = PrivateRegistry::start();
    // 8 MiB of the second chunk reach the registry, then the connection breaks.
    let proxy = UploadProxy::start(
        &reg.addr,
        vec![UploadRule::nth(
            "PATCH",
            "/blobs/uploads/",
            2,
            UploadFault::ResetAfterBody(8 << 20),
        )],
    );
    let mark = reg.mark();
    let r = push_through(&sb, &proxy, &img.reference, "midbody:v1");
    let hits = hits_since(&mark);
    let lines = hit_lines(&hits);
    assert_eq!(r.code, 0, "stderr:\n{}\nregistry:\n{lines}", r.stderr);
    assert_eq!(r.json()["digest"], origin.digest);
    assert_eq!(Manifest::of(&reg.addr, "midbody:v1").raw, origin.raw);
    let passed = proxy.passed();
    let cut = passed.iter().find(|p| p.fault.is_some()).unwrap();
    assert_eq!(cut.forwarded, 8 << 20, "{cut:?}");
    assert_eq!(cut.range(), Some((CHUNK_SIZE, big.1 - 1)), "{cut:?}");

    // The registry's side: the broken PATCH, its retry refused (the session cancelled), a new
    // session (POSTs: the config's, the big blob's twice) sent whole, closed once.
    let patches: Vec<u16> = hits
        .iter()
        .filter(|h| h.method == "PATCH")
        .map(|h| h.status)
        .collect();
    // The retries of the broken one get 404 (how many depends on whether the client reads
    // that answer or sees the registry close the connection while it still sends).
    assert!(patches.len() >= 4, "{lines}");
    assert_eq!(patches[0], 202, "{lines}");
    assert!(matches!(patches[1], 499 | 500), "the cut PATCH:\n{lines}");
    let retries = &patches[2..patches.len() - 2];
    assert!(retries.iter().all(|s| *s == 404), "{lines}");
    assert_eq!(&patches[patches.len() - 2..], &[202, 202], "{lines}");
    assert_eq!(count(&hits, "POST", "/blobs/uploads/"), 3, "{lines}");
    let closing: Vec<u16> = hits
        .iter()
        .filter(|h| h.method == "PUT" && closes(&h.path, &big.0))
        .map(|h| h.status)
        .collect();
    assert_eq!(closing, vec![201], "{lines}");
    // The blob is whole at the destination: read back by a pull that checks every digest.
    let other = Sandbox::new();
    assert_eq!(
        other.pull(&reg.reference("midbody:v1"))["image_id"],
        img.config_digest
    );
}

/// Regression: the same with a blob sent in one `PUT ?digest=` (under 16 MiB): the part that
/// got through made distribution refuse the retried `PUT` (`404 BLOB_UPLOAD_INVALID`), and the
/// push failed.
#[test]
fn a_monolithic_put_broken_mid_body_restarts_the_lost_upload_session() {
    let origin = Manifest::of(registry(), "busybox:v1");
    let layer = blobs_of(&origin.raw)
        .into_iter()
        .max_by_key(|b| b.1)
        .unwrap();
    assert!(layer.1 > 512 * 1024 && layer.1 <= MONOLITHIC_MAX);
    let sb = sandbox_with(&busybox(), &[]);
    let reg = PrivateRegistry::start();
    let proxy = UploadProxy::start(
        &reg.addr,
        vec![UploadRule::nth(
            "PUT",
            hex(&layer.0),
            1,
            UploadFault::ResetAfterBody(256 * 1024),
        )],
    );
    let mark = reg.mark();
    let r = push_through(&sb, &proxy, &busybox(), "midput/bb:v1");
    let hits = hits_since(&mark);
    let lines = hit_lines(&hits);
    assert_eq!(r.code, 0, "stderr:\n{}\nregistry:\n{lines}", r.stderr);
    assert_eq!(r.json()["digest"], origin.digest);
    assert_eq!(Manifest::of(&reg.addr, "midput/bb:v1").raw, origin.raw);
    let cut = proxy
        .passed()
        .into_iter()
        .find(|p| p.fault.is_some())
        .unwrap();
    assert_eq!(cut.forwarded, 256 * 1024, "{cut:?}");
    let puts: Vec<u16> = hits
        .iter()
        .filter(|h| h.method == "PUT" && closes(&h.path, &layer.0))
        .map(|h| h.status)
        .collect();
    assert_eq!(puts.last(), Some(&201), "{lines}");
    assert!(puts[..puts.len() - 1].iter().all(|s| *s != 201), "{lines}");
    assert_eq!(
        count(&hits, "POST", "/blobs/uploads/"),
        blobs_of(&origin.raw).len() + 1,
        "one new session for the broken blob:\n{lines}"
    );
}

/// Regression: when the answer to the closing `PUT ?digest=` was lost (the registry had
/// committed the blob), the transport's retry found no session (`404 BLOB_UPLOAD_UNKNOWN`) and
/// the push failed, though the destination held the blob.
#[test]
fn a_lost_answer_to_the_closing_blob_put_finds_the_blob_committed() {
    let origin = Manifest::of(registry(), "busybox:v1");
    let blobs = blobs_of(&origin.raw);
    let sb = sandbox_with(&busybox(), &[]);
    let reg = PrivateRegistry::start();
    // The registry commits the blob; the client never hears it.
    let proxy = UploadProxy::start(
        &reg.addr,
        vec![UploadRule::nth(
            "PUT",
            "/blobs/uploads/",
            1,
            UploadFault::LoseAnswer,
        )],
    );
    let mark = reg.mark();
    let r = push_through(&sb, &proxy, &busybox(), "lost/bb:v1");
    let hits = hits_since(&mark);
    let lines = hit_lines(&hits);
    assert_eq!(r.code, 0, "stderr:\n{}\nregistry:\n{lines}", r.stderr);
    let doc = r.json();
    assert_eq!(doc["digest"], origin.digest);
    assert_eq!(Manifest::of(&reg.addr, "lost/bb:v1").raw, origin.raw);
    let lost = proxy
        .passed()
        .into_iter()
        .find(|p| p.fault.is_some())
        .unwrap();
    assert_eq!(lost.upstream_status, Some(201), "{lost:?}");
    let (digest, size) = blobs.iter().find(|(d, _)| closes(&lost.path, d)).unwrap();
    // Every blob counted as uploaded, its bytes too (regression: the one whose answer was
    // lost was counted with 0 bytes); at most that one sent twice (the transport's retry).
    assert_eq!(doc["blobs_uploaded"], blobs.len(), "{doc:#}");
    let total: u64 = blobs.iter().map(|b| b.1).sum();
    let reported = doc["bytes_uploaded"].as_u64().unwrap();
    assert!(
        (total..=total + size).contains(&reported),
        "{reported} bytes reported, {total} sent at least: {doc:#}"
    );
    let after: Vec<String> = hits
        .iter()
        .skip_while(|h| !(h.method == "PUT" && h.path == lost.path))
        .filter(|h| h.path.contains(hex(digest)) || h.path == lost.path)
        .map(|h| format!("{} {}", h.method, h.status))
        .collect();
    // No second PUT: a blob body is never sent again to a session (the transport does not
    // retry it); the upload asks the session, finds it closed, and the HEAD finds the blob.
    assert_eq!(after, vec!["PUT 201", "HEAD 200"], "{lines}");
    assert_eq!(
        count(&hits, "POST", "/blobs/uploads/"),
        blobs.len(),
        "{lines}"
    );
}

/// The registry (here the proxy for it) says it stored another digest than the bytes sent:
/// the push fails (exit 1, a digest mismatch naming both), whatever the registry really did.
/// (Here the real registry did store the right bytes: only its answer was forged, so this
/// case says nothing about what the destination holds; the index case below does.)
#[test]
fn a_manifest_put_answered_with_another_digest_fails_the_push() {
    let origin = Manifest::of(registry(), "busybox:v1");
    let liar = format!("sha256:{}", "e".repeat(64));
    let sb = sandbox_with(&busybox(), &[]);
    let reg = PrivateRegistry::start();
    let proxy = UploadProxy::start(
        &reg.addr,
        vec![UploadRule::always(
            "PUT",
            "/manifests/",
            UploadFault::SwapDigest(liar.clone()),
        )],
    );
    let r = push_through(&sb, &proxy, &busybox(), "liar/bb:v1");
    assert_failed(
        &r,
        1,
        &["Docker-Content-Digest", &liar, &origin.digest],
        "manifest digest swapped",
    );
    assert_failed_json(&r, "manifest digest swapped");
    assert!(!r.stderr.to_lowercase().contains("success"), "{}", r.stderr);
}

#[test]
fn an_index_whose_child_put_is_answered_with_another_digest_never_gets_its_tag() {
    let origin = Manifest::of(registry(), "multiarch:v1");
    let liar = format!("sha256:{}", "d".repeat(64));
    let sb = sandbox_with(&multiarch(), &["linux/amd64", "linux/arm64/v8"]);
    let reg = PrivateRegistry::start();
    let proxy = UploadProxy::start(
        &reg.addr,
        vec![UploadRule::nth(
            "PUT",
            "/manifests/sha256:",
            1,
            UploadFault::SwapDigest(liar.clone()),
        )],
    );
    let mark = reg.mark();
    let r = push_through(&sb, &proxy, &multiarch(), "ma:v1");
    assert_failed(
        &r,
        1,
        &["Docker-Content-Digest", &liar],
        "child digest swapped",
    );
    assert_failed_json(&r, "child digest swapped");
    assert!(
        raw_at(&reg.reference("ma:v1"), &[]).is_none(),
        "the tag was pushed"
    );
    let hits = hits_since(&mark);
    assert_eq!(
        count(&hits, "PUT", "/manifests/v1"),
        0,
        "{}",
        hit_lines(&hits)
    );

    // Without the fault, the next push completes: every blob is there already.
    proxy.clear_rules();
    let r = push_through(&sb, &proxy, &multiarch(), "ma:v1").ok("the second push");
    let doc = r.json();
    assert_eq!(doc["digest"], origin.digest);
    assert_eq!(doc["blobs_uploaded"], 0, "{doc:#}");
    assert_eq!(Manifest::of(&reg.addr, "ma:v1").raw, origin.raw);
}

#[test]
fn a_blob_put_answered_with_another_digest_fails_and_no_manifest_is_pushed() {
    let origin = Manifest::of(registry(), "busybox:v1");
    let blobs = blobs_of(&origin.raw);
    let liar = format!("sha256:{}", "c".repeat(64));
    let sb = sandbox_with(&busybox(), &[]);
    let reg = PrivateRegistry::start();
    let proxy = UploadProxy::start(
        &reg.addr,
        vec![UploadRule::nth(
            "PUT",
            "/blobs/uploads/",
            1,
            UploadFault::SwapDigest(liar.clone()),
        )],
    );
    let mark = reg.mark();
    let r = push_through(&sb, &proxy, &busybox(), "bad/bb:v1");
    assert_failed(
        &r,
        1,
        &["Docker-Content-Digest", &liar],
        "blob digest swapped",
    );
    assert_failed_json(&r, "blob digest swapped");
    let swapped = proxy
        .passed()
        .into_iter()
        .find(|p| p.fault.is_some())
        .unwrap();
    let blob = blobs
        .iter()
        .find(|(d, _)| closes(&swapped.path, d))
        .unwrap();
    assert!(
        r.stderr.contains(&blob.0),
        "does not name the blob: {}",
        r.stderr
    );
    assert!(raw_at(&reg.reference("bad/bb:v1"), &[]).is_none());
    let hits = hits_since(&mark);
    assert_eq!(
        count(&hits, "PUT", "/manifests/"),
        0,
        "{}",
        hit_lines(&hits)
    );

    proxy.clear_rules();
    let r = push_through(&sb, &proxy, &busybox(), "bad/bb:v1").ok("the second push");
    let doc = r.json();
    assert_eq!(doc["digest"], origin.digest);
    assert_eq!(Manifest::of(&reg.addr, "bad/bb:v1").raw, origin.raw);
    assert!(doc["blobs_present"].as_u64().unwrap() >= 1, "{doc:#}");
}
