//! What goes to Docker's classic store, seen from outside by a relay in front of dockerd's
//! socket that counts the bytes the engine was given: `load` of a new version into an engine
//! that holds the previous one sends only the layers the engine lacks, and layers go
//! decompressed (the store keeps them so), except those whose blob misdeclares its size.

use crate::support::*;

/// Removes the named images from the dockerd at `.0` when dropped.
struct Loaded(String, Vec<String>);

impl Drop for Loaded {
    fn drop(&mut self) {
        for r in &self.1 {
            let _ = docker_at(&self.0, &["rmi", "--force", r]);
        }
    }
}

#[test]
fn docker_load_of_a_new_version_sends_only_the_layers_the_engine_lacks() {
    sends_only_the_layers_the_engine_lacks(&env().vars["DOCKER_HOST"]);
}

#[test]
fn docker_26_load_of_a_new_version_sends_only_the_layers_the_engine_lacks() {
    sends_only_the_layers_the_engine_lacks(&env().vars["NEWER_DOCKERD26_HOST"]);
}

/// On a dockerd with the classic store at `docker_host`.
fn sends_only_the_layers_the_engine_lacks(docker_host: &str) {
    let docker = |args: &[&str]| docker_at(docker_host, args);
    let c = Sandbox::new();
    // v2 shares v1's two layers (a 4 MiB one first, as a base image's) and adds one.
    let big = layer(4 << 20);
    let small = layer(16 << 10);
    let v1 = push_image(&unique_name("reuse-v1"), &[big.clone(), small.clone()]);
    let v2 = push_image(&unique_name("reuse-v2"), &[big, small, layer(16 << 10)]);
    // An unrelated image of the same size: the relay must see its big layer go through.
    let other = fresh_image("reuse-other", &[4 << 20, 16 << 10, 16 << 10]);
    let _cleanup = Loaded(
        docker_host.to_owned(),
        vec![
            v1.reference.clone(),
            v2.reference.clone(),
            other.reference.clone(),
        ],
    );
    for img in [&v1, &v2, &other] {
        c.pull(&img.reference);
    }
    let socket = docker_host.strip_prefix("unix://").unwrap();
    let load = |img: &Image, host: &str| {
        let doc = c.json_with_env(
            &[("DOCKER_HOST".to_owned(), host.to_owned())],
            &["load", &img.reference, "--engine", "docker"],
            0,
        );
        assert_eq!(doc["action"], "loaded", "{doc:#}");
        assert_eq!(doc["image_id"], img.config_digest.as_str(), "{doc:#}");
    };
    load(&v1, docker_host);

    let relay = UnixRelay::start(&c.path("docker.sock"), std::path::Path::new(socket));
    load(&v2, &relay.url());
    let for_v2 = relay.bytes_sent();
    assert!(
        for_v2 < 1 << 20,
        "{for_v2} bytes went to the engine for v2, whose only new layer is 16 KiB"
    );
    load(&other, &relay.url());
    let for_other = relay.bytes_sent() - for_v2;
    assert!(
        for_other > 4 << 20,
        "only {for_other} bytes went to the engine for an image of 4 MiB it lacks"
    );
    drop(relay);

    let id = docker(&["image", "inspect", "--format", "{{.Id}}", &v2.reference]);
    assert_eq!(
        id.ok("docker image inspect").stdout.trim(),
        v2.config_digest
    );
    let layers = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        &v2.reference,
    ]);
    let layers: Vec<String> =
        serde_json::from_str(layers.ok("inspect layers").stdout.trim()).unwrap();
    assert_eq!(layers, v2.diff_ids);
    c.assert_fsck_deep_spotless();
}

/// A gzip layer of `size` zeros (a few KiB compressed) in a tar of a file named `name`, and the
/// same tar compressed as two gzip members, whose trailer declares only the second's size.
fn zeros_layer(name: &str, size: usize) -> (Layer, Layer) {
    let tar = tar_of(name, &vec![0u8; size]);
    let one = gzip(&tar);
    let two = [gzip(&tar[..tar.len() / 2]), gzip(&tar[tar.len() / 2..])].concat();
    let layer = |blob: Vec<u8>| Layer {
        digest: digest_of(&blob),
        diff_id: digest_of(&tar),
        blob,
    };
    (layer(one), layer(two))
}

#[test]
fn docker_classic_store_gets_layers_decompressed_and_a_misdeclared_size_as_stored() {
    let host = &env().vars["DOCKER_HOST"];
    let c = Sandbox::new();
    let name = unique_name("inflate");
    let (plain, two_members) = zeros_layer(&name, 8 << 20);
    assert!(plain.blob.len() < 1 << 20 && two_members.blob.len() < 1 << 20);
    let inflated = push_image(&format!("{name}-a"), std::slice::from_ref(&plain));
    // The same diff_id again would be reused from the first image: another file name.
    let (_, misdeclared) = zeros_layer(&format!("{name}-b"), 8 << 20);
    let misdeclared = push_image(&format!("{name}-b"), &[misdeclared]);
    let _cleanup = Loaded(
        host.clone(),
        vec![inflated.reference.clone(), misdeclared.reference.clone()],
    );
    let socket = host.strip_prefix("unix://").unwrap();
    let relay = UnixRelay::start(&c.path("docker.sock"), std::path::Path::new(socket));
    let load = |img: &Image| {
        c.pull(&img.reference);
        let before = relay.bytes_sent();
        let run = c
            .run_with_env(
                &[("DOCKER_HOST", relay.url().as_str())],
                &["--json", "load", &img.reference, "--engine", "docker"],
            )
            .ok("imgcache load");
        let doc = run.json();
        assert_eq!(doc["action"], "loaded", "{doc:#}");
        assert_eq!(doc["image_id"], img.config_digest.as_str(), "{doc:#}");
        let id = docker_at(
            host,
            &["image", "inspect", "--format", "{{.Id}}", &img.reference],
        );
        assert_eq!(
            id.ok("docker image inspect").stdout.trim(),
            img.config_digest
        );
        (relay.bytes_sent() - before, run.stderr)
    };

    // 8 MiB of zeros went as 8 MiB, not as the few KiB stored; nothing was retried.
    let (sent, stderr) = load(&inflated);
    assert!(
        (8 << 20..9 << 20).contains(&sent),
        "{sent} bytes went for a layer of 8 MiB decompressed ({} stored)",
        plain.blob.len()
    );
    assert!(!stderr.contains("as stored"), "{stderr}");

    // Two gzip members: the trailer declares half the size, so the decompressed attempt fails
    // before the engine sees the end of the archive; the retry sends the layer as stored.
    let (sent, stderr) = load(&misdeclared);
    assert!(
        stderr.contains("again with every layer as stored") && stderr.contains("declares"),
        "{stderr}"
    );
    assert!(
        sent > 3 << 20,
        "{sent}: the first attempt went decompressed, up to the declared 4 MiB"
    );
    c.assert_fsck_deep_spotless();
}
