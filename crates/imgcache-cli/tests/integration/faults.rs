//! `pull` through a fault-injecting proxy ([`crate::proxy`]) in front of the real registries.
//!
//! Every test pushes its own small image (1-2 gzip layers of ~200 KB of random data, so that a
//! body cut in the middle is meaningful) with skopeo, then pulls it through the proxy. A pull
//! either succeeds after retrying (transient faults: the image ID is right and `fsck --deep` is
//! clean), or fails with a clear message and the contract's exit code (1 a check said no, 3
//! environment). Either way nothing corrupt is committed: every stored blob hashes to its name,
//! `fsck --deep` finds no corrupt blob, `ls` does not list a reference whose pull failed; and the
//! next pull without faults succeeds, resuming an interrupted body with `Range: bytes=N-`.

use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::proxy::{self, Fault, Listener, Proxy, Rule, Seen};
use crate::support::{self, Run, gzip, sha256_hex};

/// The longest one run of the binary may take before the test kills it and fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);
/// Layer payload: random, so gzip cannot shrink it.
const LAYER_BYTES: usize = 200 * 1024;

// ---------------------------------------------------------------------------------------------
// Test images

/// An image pushed to a registry for one test.
struct Image {
    /// `fault-<unique>`: the same path through the proxy as on the registry.
    repo: String,
    manifest: Vec<u8>,
    manifest_digest: String,
    image_id: String,
    /// (digest, size) of each layer blob.
    layers: Vec<(String, u64)>,
}

impl Image {
    fn layer(&self, i: usize) -> &str {
        &self.layers[i].0
    }

    fn layer_size(&self, i: usize) -> u64 {
        self.layers[i].1
    }

    /// The path fragment naming a blob in requests.
    fn blob_path(digest: &str) -> String {
        format!("/blobs/{digest}")
    }

    fn reference(&self, registry: &str) -> String {
        format!("{registry}/{}:v1", self.repo)
    }
}

fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// xorshift64*: data gzip cannot compress, different per seed.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// Builds an OCI layout with `layers` random layers and pushes it with skopeo to
/// `registry/fault-<unique>:v1`.
fn push_image(registry: &str, creds: Option<&str>, layers: usize) -> Image {
    let repo = unique("fault");
    let dir = support::tempdir();
    let layout = dir.path().join("oci");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> String {
        let d = sha(data);
        fs::write(blobs.join(&d[7..]), data).unwrap();
        d
    };
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ u64::from(std::process::id());
    let mut diff_ids = Vec::new();
    let mut layer_descs = Vec::new();
    let mut layer_list = Vec::new();
    for i in 0..layers {
        let mut b = tar::Builder::new(Vec::new());
        let data = random_bytes(seed.wrapping_add(i as u64 * 7919), LAYER_BYTES);
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, format!("data-{i}.bin"), &data[..])
            .unwrap();
        let tar = b.into_inner().unwrap();
        diff_ids.push(sha(&tar));
        let gz = gzip(&tar);
        let d = put(&gz);
        layer_descs.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d,
            "size": gz.len(),
        }));
        layer_list.push((d, gz.len() as u64));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": host_arch(),
        "os": "linux",
        "config": {"Env": [format!("FAULT_TEST={repo}")]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = put(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": layer_descs,
    }))
    .unwrap();
    let manifest_digest = put(&manifest);
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": "v1"},
            }],
        }))
        .unwrap(),
    )
    .unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();

    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"]);
    if let Some(c) = creds {
        cmd.args(["--dest-creds", c]);
    }
    let out = cmd
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{registry}/{repo}:v1"))
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy to {registry}/{repo}:v1 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // What the registry serves (skopeo keeps an OCI manifest as is; check rather than assume).
    let mut headers = vec![(
        "Accept".to_owned(),
        "application/vnd.oci.image.manifest.v1+json".to_owned(),
    )];
    if let Some(c) = creds {
        let (u, p) = c.split_once(':').unwrap();
        headers.push(("Authorization".to_owned(), proxy::basic_auth(u, p)));
    }
    let addr = registry.parse().unwrap();
    let up = proxy::exchange(
        addr,
        "GET",
        &format!("/v2/{repo}/manifests/v1"),
        &headers,
        b"",
    )
    .expect("fetch the pushed manifest");
    assert_eq!(up.status, 200, "GET the pushed manifest");
    let served: Value = serde_json::from_slice(&up.body).unwrap();
    assert_eq!(
        served["config"]["digest"], config_digest,
        "the registry serves another config"
    );
    Image {
        repo,
        manifest_digest: sha(&up.body),
        manifest: up.body,
        image_id: config_digest,
        layers: layer_list,
    }
}

fn plain_registry() -> String {
    support::env().vars["TEST_REGISTRY"].clone()
}

fn auth_registry() -> (String, String, String) {
    let v = &support::env().vars;
    (
        v["TEST_REGISTRY_AUTH"].clone(),
        v["TEST_REGISTRY_USER"].clone(),
        v["TEST_REGISTRY_PASS"].clone(),
    )
}

// ---------------------------------------------------------------------------------------------
// Running the binary

/// A cache root and an empty home for credential files, per test.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = support::tempdir();
        for d in ["docker", "xdg-config", "xdg-runtime", "home"] {
            fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        Sandbox { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn root_str(&self) -> String {
        self.root().display().to_string()
    }

    /// `imgcache --root <root> --json ARGS`, with no credential file in reach, killed after
    /// [`RUN_TIMEOUT`].
    fn run(&self, args: &[&str], envs: &[(&str, &str)]) -> Run {
        let root = self.root_str();
        let mut full = vec!["--root", &root, "--json"];
        full.extend_from_slice(args);
        let d = self.dir.path();
        let mut cmd = Command::new(support::bin());
        cmd.args(&full)
            .env("HOME", d.join("home"))
            .env("DOCKER_CONFIG", d.join("docker"))
            .env("XDG_CONFIG_HOME", d.join("xdg-config"))
            .env("XDG_RUNTIME_DIR", d.join("xdg-runtime"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("IMGCACHE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("run imgcache");
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let t_out = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = out.read_to_end(&mut s);
            s
        });
        let t_err = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err.read_to_end(&mut s);
            s
        });
        let deadline = Instant::now() + RUN_TIMEOUT;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("imgcache {full:?} ran longer than {RUN_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into_owned(),
            stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
            max_rss_kib: None,
        }
    }

    fn pull(&self, reference: &str, extra: &[&str]) -> Run {
        let mut args = vec!["pull", reference];
        args.extend_from_slice(extra);
        self.run(&args, &[])
    }

    /// Every file in `blobs/sha256` hashes to its name.
    fn assert_blobs_hash_to_their_names(&self, ctx: &str) {
        let dir = self.root().join("blobs/sha256");
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for e in entries {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let data = fs::read(e.path()).unwrap();
            assert_eq!(
                sha256_hex(&data),
                name,
                "{ctx}: blobs/sha256/{name} ({} bytes) does not hash to its name",
                data.len()
            );
        }
    }

    fn fsck_deep(&self) -> Value {
        let r = self.run(&["fsck", "--deep"], &[]);
        let j = r.json();
        assert!(
            j["corrupt"].as_array().is_some_and(|c| c.is_empty()),
            "fsck --deep found corrupt blobs: {j}"
        );
        j
    }

    fn listed(&self) -> Vec<String> {
        let r = self.run(&["ls"], &[]);
        assert_eq!(r.code, 0, "ls: {}", r.stderr);
        r.json()["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["reference"].as_str().unwrap().to_owned())
            .collect()
    }

    fn partials(&self) -> Vec<(String, u64)> {
        let Ok(entries) = fs::read_dir(self.root().join("ingest")) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect()
    }

    /// After a failed pull: nothing corrupt stored, nothing listed for `repo`.
    fn assert_nothing_committed(&self, repo: &str, ctx: &str) {
        self.assert_blobs_hash_to_their_names(ctx);
        let j = self.fsck_deep();
        assert!(
            j["broken_references"]
                .as_array()
                .is_some_and(|b| b.is_empty()),
            "{ctx}: fsck found broken references: {j}"
        );
        let listed = self.listed();
        assert!(
            !listed.iter().any(|r| r.contains(repo)),
            "{ctx}: ls lists {repo} after a failed pull: {listed:?}"
        );
    }

    /// After a successful pull: the right image, intact, listed.
    fn assert_pulled(&self, run: &Run, img: &Image, reference: &str, ctx: &str) {
        assert_eq!(
            run.code, 0,
            "{ctx}: pull failed\nstdout: {}\nstderr: {}",
            run.stdout, run.stderr
        );
        let j = run.json();
        assert_eq!(j["image_id"], img.image_id.as_str(), "{ctx}: {j}");
        assert_eq!(
            j["manifest_digest"],
            img.manifest_digest.as_str(),
            "{ctx}: {j}"
        );
        self.assert_blobs_hash_to_their_names(ctx);
        let f = self.fsck_deep();
        assert_eq!(f["ok"], true, "{ctx}: fsck --deep after the pull: {f}");
        let listed = self.listed();
        assert!(
            listed.iter().any(|r| r == reference),
            "{ctx}: ls does not list {reference}: {listed:?}"
        );
    }
}

/// A failed run: the exit code, a `--json` error document, a message naming `fragment`.
fn assert_failed(run: &Run, code: i32, fragments: &[&str], ctx: &str) {
    eprintln!("{ctx}: exit {}: {}", run.code, run.stderr.trim_end());
    assert_eq!(
        run.code, code,
        "{ctx}: exit code\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    let j = run.json();
    assert_eq!(j["ok"], false, "{ctx}: {j}");
    let message = j["error"]["message"].as_str().unwrap_or("").to_owned();
    let all = format!("{message}\n{}", run.stderr);
    for f in fragments {
        assert!(
            all.to_lowercase().contains(&f.to_lowercase()),
            "{ctx}: the error does not mention {f:?}:\n{all}"
        );
    }
    assert!(!run.stderr.contains("panicked"), "{ctx}: {}", run.stderr);
}

fn gets_of<'a>(seen: &'a [Seen], fragment: &str) -> Vec<&'a Seen> {
    seen.iter()
        .filter(|s| s.method == "GET" && s.path.contains(fragment))
        .collect()
}

/// The `N` of every `Range: bytes=N-` request for `digest`.
fn range_starts(seen: &[Seen], digest: &str) -> Vec<u64> {
    gets_of(seen, &Image::blob_path(digest))
        .iter()
        .filter_map(|s| s.range_start())
        .collect()
}

/// Pulls `img` through a proxy with `rules` on the plain registry: returns the sandbox, the
/// proxy (rules still on) and the run.
fn pull_through(img: &Image, rules: Vec<Rule>) -> (Sandbox, Proxy, Run) {
    let proxy = Proxy::with_rules(&plain_registry(), rules);
    let sb = Sandbox::new();
    let run = sb.pull(&img.reference(&proxy.registry()), &[]);
    (sb, proxy, run)
}

// ---------------------------------------------------------------------------------------------
// Transient faults: the pull succeeds after retrying

#[test]
fn a_truncated_blob_body_is_resumed_with_a_range_request() {
    let img = push_image(&plain_registry(), None, 2);
    let layer = img.layer(1).to_owned();
    let (sb, proxy, run) = pull_through(
        &img,
        vec![Rule::nth(
            1,
            &Image::blob_path(&layer),
            Fault::Truncate(60_000),
        )],
    );
    sb.assert_pulled(&run, &img, &img.reference(&proxy.registry()), "truncated");
    let starts = range_starts(&proxy.seen(), &layer);
    assert!(
        starts.contains(&60_000),
        "no Range: bytes=60000- request after the cut: {starts:?}\n{:#?}",
        gets_of(&proxy.seen(), &layer)
    );
}

#[test]
fn a_connection_reset_mid_blob_is_resumed() {
    let img = push_image(&plain_registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let (sb, proxy, run) = pull_through(
        &img,
        vec![Rule::nth(
            1,
            &Image::blob_path(&layer),
            Fault::Reset(50_000),
        )],
    );
    sb.assert_pulled(&run, &img, &img.reference(&proxy.registry()), "reset");
    let starts = range_starts(&proxy.seen(), &layer);
    assert!(
        starts.iter().any(|&n| n > 0),
        "no resuming Range request after the reset: {:#?}",
        gets_of(&proxy.seen(), &layer)
    );
}

#[test]
fn a_connection_reset_before_the_manifest_answer_is_retried() {
    let img = push_image(&plain_registry(), None, 1);
    let (sb, proxy, run) = pull_through(&img, vec![Rule::nth(1, "/manifests/", Fault::ResetNow)]);
    sb.assert_pulled(&run, &img, &img.reference(&proxy.registry()), "reset");
    assert_eq!(gets_of(&proxy.seen(), "/manifests/").len(), 2);
}

#[test]
fn a_truncated_manifest_body_is_retried() {
    let img = push_image(&plain_registry(), None, 1);
    let cut = img.manifest.len() / 2;
    let (sb, proxy, run) = pull_through(
        &img,
        vec![Rule::nth(1, "/manifests/", Fault::Truncate(cut))],
    );
    let reference = img.reference(&proxy.registry());
    if run.code != 0 {
        sb.assert_nothing_committed(&img.repo, "truncated manifest");
    }
    sb.assert_pulled(&run, &img, &reference, "truncated manifest");
}

#[test]
fn http_500_and_503_answers_are_retried() {
    let img = push_image(&plain_registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let answer = |code| Fault::Answer {
        code,
        retry_after: None,
        body: None,
    };
    let (sb, proxy, run) = pull_through(
        &img,
        vec![
            Rule::first(2, "/manifests/", answer(503)),
            Rule::first(2, &Image::blob_path(&layer), answer(500)),
            Rule::first(1, &Image::blob_path(&img.image_id), answer(502)),
        ],
    );
    sb.assert_pulled(&run, &img, &img.reference(&proxy.registry()), "5xx");
    let seen = proxy.seen();
    assert_eq!(gets_of(&seen, "/manifests/").len(), 3);
    assert_eq!(gets_of(&seen, &layer).len(), 3);
    assert_eq!(gets_of(&seen, &img.image_id).len(), 2);
}

#[test]
fn http_429_with_retry_after_is_waited_for_then_retried() {
    let img = push_image(&plain_registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let (sb, proxy, run) = pull_through(
        &img,
        vec![Rule::first(
            1,
            &Image::blob_path(&layer),
            Fault::Answer {
                code: 429,
                retry_after: Some(1),
                body: None,
            },
        )],
    );
    sb.assert_pulled(&run, &img, &img.reference(&proxy.registry()), "429");
    let seen = proxy.seen();
    let gets = gets_of(&seen, &layer);
    assert_eq!(gets.len(), 2, "{gets:#?}");
    let waited = gets[1].at.duration_since(gets[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 not honoured: retried after {waited:?}"
    );
}

#[test]
fn a_slow_drip_blob_completes() {
    let img = push_image(&plain_registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let (sb, proxy, run) = pull_through(
        &img,
        vec![Rule::always(
            &Image::blob_path(&layer),
            Fault::Drip {
                chunk: 8 * 1024,
                pause: Duration::from_millis(20),
            },
        )],
    );
    sb.assert_pulled(&run, &img, &img.reference(&proxy.registry()), "drip");
    assert_eq!(gets_of(&proxy.seen(), &layer).len(), 1);
}

#[test]
fn a_content_length_shorter_than_the_blob_is_completed_by_a_range_request() {
    let img = push_image(&plain_registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let (sb, proxy, run) = pull_through(
        &img,
        vec![Rule::nth(
            1,
            &Image::blob_path(&layer),
            Fault::LieLength(-5000),
        )],
    );
    sb.assert_pulled(
        &run,
        &img,
        &img.reference(&proxy.registry()),
        "short length",
    );
    let starts = range_starts(&proxy.seen(), &layer);
    assert!(
        starts.contains(&(img.layer_size(0) - 5000)),
        "no Range request for the missing tail: {starts:?}"
    );
}

#[test]
fn a_content_length_longer_than_the_body_sent_is_survived() {
    let img = push_image(&plain_registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let (sb, proxy, run) = pull_through(
        &img,
        vec![Rule::nth(
            1,
            &Image::blob_path(&layer),
            Fault::LieLength(5000),
        )],
    );
    sb.assert_pulled(&run, &img, &img.reference(&proxy.registry()), "long length");
}

#[test]
fn a_registry_ignoring_ranges_is_read_again_from_the_start() {
    let img = push_image(&plain_registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let path = Image::blob_path(&layer);
    let (sb, proxy, run) = pull_through(
        &img,
        vec![
            Rule::nth(1, &path, Fault::Truncate(70_000)),
            Rule::always(&path, Fault::StripRange),
        ],
    );
    sb.assert_pulled(&run, &img, &img.reference(&proxy.registry()), "no ranges");
    let seen = proxy.seen();
    let gets = gets_of(&seen, &path);
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert_eq!(gets[1].range_start(), Some(70_000), "{gets:#?}");
}

// ---------------------------------------------------------------------------------------------
// Faults that must fail the pull, cleanly

#[test]
fn a_pull_interrupted_for_good_leaves_a_partial_that_the_next_pull_resumes() {
    let img = push_image(&plain_registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let path = Image::blob_path(&layer);
    let (sb, proxy, run) = pull_through(&img, vec![Rule::always(&path, Fault::Truncate(20_000))]);
    let reference = img.reference(&proxy.registry());
    assert_failed(&run, 3, &[&layer], "every body cut");
    sb.assert_nothing_committed(&img.repo, "every body cut");
    let partials = sb.partials();
    let kept = partials
        .iter()
        .find(|(n, _)| n.starts_with(&layer[7..]))
        .map(|(_, len)| *len)
        .unwrap_or_else(|| panic!("no partial download of {layer} kept: {partials:?}"));
    assert!(kept > 0 && kept < img.layer_size(0), "partial: {kept}");

    proxy.clear_rules();
    proxy.clear_seen();
    let again = sb.pull(&reference, &[]);
    sb.assert_pulled(&again, &img, &reference, "after the cuts");
    let starts = range_starts(&proxy.seen(), &layer);
    assert_eq!(
        starts,
        vec![kept],
        "the next pull did not resume at the partial's {kept} bytes"
    );
}

#[test]
fn a_flipped_byte_in_a_blob_is_never_stored() {
    let img = push_image(&plain_registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let (sb, proxy, run) = pull_through(
        &img,
        vec![Rule::nth(
            1,
            &Image::blob_path(&layer),
            Fault::FlipByte(100_000),
        )],
    );
    let reference = img.reference(&proxy.registry());
    if run.code == 0 {
        // Refetched after the mismatch: fine, if what is stored is right.
        sb.assert_pulled(&run, &img, &reference, "flipped byte");
        return;
    }
    assert_failed(&run, 1, &[&layer, "expected"], "flipped byte");
    sb.assert_nothing_committed(&img.repo, "flipped byte");
    let again = sb.pull(&reference, &[]);
    sb.assert_pulled(&again, &img, &reference, "after the flipped byte");
}

#[test]
fn a_flipped_byte_in_the_config_is_never_stored() {
    let img = push_image(&plain_registry(), None, 1);
    let (sb, proxy, run) = pull_through(
        &img,
        vec![Rule::nth(
            1,
            &Image::blob_path(&img.image_id),
            Fault::FlipByte(10),
        )],
    );
    let reference = img.reference(&proxy.registry());
    if run.code == 0 {
        sb.assert_pulled(&run, &img, &reference, "flipped config byte");
        return;
    }
    assert_failed(&run, 1, &[&img.image_id], "flipped config byte");
    sb.assert_nothing_committed(&img.repo, "flipped config byte");
    let again = sb.pull(&reference, &[]);
    sb.assert_pulled(&again, &img, &reference, "after the flipped config byte");
}

#[test]
fn bytes_beyond_the_descriptor_size_are_refused() {
    let img = push_image(&plain_registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let (sb, proxy, run) = pull_through(
        &img,
        vec![Rule::nth(
            1,
            &Image::blob_path(&layer),
            Fault::ExtraBytes(4096),
        )],
    );
    let reference = img.reference(&proxy.registry());
    if run.code == 0 {
        sb.assert_pulled(&run, &img, &reference, "extra bytes");
        return;
    }
    assert_failed(&run, 1, &[&layer], "extra bytes");
    sb.assert_nothing_committed(&img.repo, "extra bytes");
    let again = sb.pull(&reference, &[]);
    sb.assert_pulled(&again, &img, &reference, "after the extra bytes");
}

#[test]
fn persistent_503_on_the_manifest_fails_with_exit_3_after_retries() {
    let img = push_image(&plain_registry(), None, 1);
    let (sb, proxy, run) = pull_through(
        &img,
        vec![Rule::always(
            "/manifests/",
            Fault::Answer {
                code: 503,
                retry_after: None,
                body: None,
            },
        )],
    );
    assert_failed(&run, 3, &["503", &img.repo], "persistent 503");
    assert_eq!(
        gets_of(&proxy.seen(), "/manifests/").len(),
        5,
        "one attempt and 4 retries"
    );
    sb.assert_nothing_committed(&img.repo, "persistent 503");
    proxy.clear_rules();
    let reference = img.reference(&proxy.registry());
    let again = sb.pull(&reference, &[]);
    sb.assert_pulled(&again, &img, &reference, "after the 503s");
}

#[test]
fn a_manifest_404_is_not_found_with_exit_1() {
    let img = push_image(&plain_registry(), None, 1);
    let (sb, proxy, run) = pull_through(
        &img,
        vec![Rule::always(
            "/manifests/",
            Fault::Answer {
                code: 404,
                retry_after: None,
                body: Some(
                    r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
                        .into(),
                ),
            },
        )],
    );
    assert_failed(&run, 1, &["not found", &img.repo], "manifest 404");
    assert_eq!(
        gets_of(&proxy.seen(), "/manifests/").len(),
        1,
        "404 retried"
    );
    sb.assert_nothing_committed(&img.repo, "manifest 404");
}

#[test]
fn a_repository_missing_from_the_registry_is_not_found_with_exit_1() {
    let proxy = Proxy::start(&plain_registry());
    let sb = Sandbox::new();
    let repo = unique("fault-missing");
    let run = sb.pull(&format!("{}/{repo}:v1", proxy.registry()), &[]);
    assert_failed(&run, 1, &["not found", &repo], "missing repository");
    sb.assert_nothing_committed(&repo, "missing repository");
}

#[test]
fn a_blob_404_fails_with_exit_1() {
    let img = push_image(&plain_registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let (sb, proxy, run) = pull_through(
        &img,
        vec![Rule::always(
            &Image::blob_path(&layer),
            Fault::Answer {
                code: 404,
                retry_after: None,
                body: None,
            },
        )],
    );
    sb.assert_nothing_committed(&img.repo, "blob 404");
    let gets = gets_of(&proxy.seen(), &layer).len();
    assert_eq!(
        (run.code, gets),
        (1, 1),
        "(exit code, GETs of the blob) for a blob the registry does not have\nstderr: {}",
        run.stderr
    );
    assert_failed(&run, 1, &[&layer, "not found"], "blob 404");
}

#[test]
fn a_blob_404_fails_cleanly_and_names_the_blob() {
    let img = push_image(&plain_registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let (sb, proxy, run) = pull_through(
        &img,
        vec![Rule::always(
            &Image::blob_path(&layer),
            Fault::Answer {
                code: 404,
                retry_after: None,
                body: None,
            },
        )],
    );
    assert!(run.code == 1 || run.code == 3, "exit {}", run.code);
    assert_failed(&run, run.code, &[&layer, "not found"], "blob 404");
    sb.assert_nothing_committed(&img.repo, "blob 404");
    proxy.clear_rules();
    let reference = img.reference(&proxy.registry());
    let again = sb.pull(&reference, &[]);
    sb.assert_pulled(&again, &img, &reference, "after the 404");
}

#[test]
fn a_manifest_not_matching_the_pinned_digest_is_refused() {
    let img = push_image(&plain_registry(), None, 1);
    let mut other = img.manifest.clone();
    other.extend_from_slice(b"\n");
    let proxy = Proxy::start(&plain_registry());
    proxy.add_rule(Rule::always(
        "/manifests/",
        Fault::ReplaceBody(Arc::new(other.clone())),
    ));
    let pinned = format!("{}/{}@{}", proxy.registry(), img.repo, img.manifest_digest);
    let sb2 = Sandbox::new();
    let run = sb2.pull(&pinned, &[]);
    assert_failed(
        &run,
        1,
        &[&img.manifest_digest, &sha(&other)],
        "pinned digest",
    );
    sb2.assert_nothing_committed(&img.repo, "pinned digest");
    // The same by tag: the body differs from the registry's Docker-Content-Digest.
    let run = sb2.pull(&img.reference(&proxy.registry()), &[]);
    assert_failed(
        &run,
        1,
        &[&img.manifest_digest, &sha(&other)],
        "Docker-Content-Digest",
    );
    sb2.assert_nothing_committed(&img.repo, "Docker-Content-Digest");
    assert!(
        gets_of(&proxy.seen(), "/blobs/").is_empty(),
        "blobs fetched for a refused manifest"
    );
    proxy.clear_rules();
    let again = sb2.pull(&pinned, &[]);
    sb2.assert_pulled(&again, &img, &pinned, "after the wrong manifest");
}

#[test]
fn a_manifest_over_4_mib_is_refused_with_or_without_a_content_length() {
    let img = push_image(&plain_registry(), None, 1);
    for declare_length in [true, false] {
        let ctx = format!("huge manifest, Content-Length declared: {declare_length}");
        let (sb, proxy, run) = pull_through(
            &img,
            vec![Rule::always(
                "/manifests/",
                Fault::Huge {
                    size: 4 * 1024 * 1024 + 1,
                    declare_length,
                },
            )],
        );
        assert_failed(&run, 1, &["larger than 4194304"], &ctx);
        sb.assert_nothing_committed(&img.repo, &ctx);
        assert!(gets_of(&proxy.seen(), "/blobs/").is_empty(), "{ctx}");
    }
}

// ---------------------------------------------------------------------------------------------
// Credentials

#[test]
fn a_cross_host_redirect_does_not_carry_the_authorization_header() {
    let (registry, user, pass) = auth_registry();
    let creds = format!("{user}:{pass}");
    let img = push_image(&registry, Some(&creds), 1);
    let proxy = Proxy::with_rules(&registry, vec![Rule::always("/blobs/", Fault::Redirect)]);
    proxy.set_redirect_upstream_auth(Some(proxy::basic_auth(&user, &pass)));
    let sb = Sandbox::new();
    let reference = img.reference(&proxy.registry());
    let run = sb.pull(&reference, &["--creds", &creds]);
    sb.assert_pulled(&run, &img, &reference, "redirected blobs");
    let seen = proxy.seen();
    let front: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.listener == Listener::Front && s.path.contains("/blobs/"))
        .collect();
    let target: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.listener == Listener::RedirectTarget)
        .collect();
    assert!(
        !front.is_empty() && front.iter().all(|s| s.authorization),
        "the blob requests to the registry itself should carry credentials: {front:#?}"
    );
    assert_eq!(target.len(), 2, "config and layer redirected: {target:#?}");
    assert!(
        target.iter().all(|s| !s.authorization),
        "Authorization sent to {} after a redirect: {target:#?}",
        proxy.redirect_target()
    );
}

#[test]
fn credentials_never_appear_in_the_output_of_a_failed_pull() {
    let (registry, user, pass) = auth_registry();
    let creds = format!("{user}:{pass}");
    let img = push_image(&registry, Some(&creds), 1);
    let layer = img.layer(0).to_owned();
    let basic = proxy::basic_auth(&user, &pass);
    let b64 = basic.trim_start_matches("Basic ").to_owned();
    let echo = format!(
        r#"{{"errors":[{{"code":"DENIED","message":"you sent {{authorization}}, that is {user}:{pass}"}}]}}"#
    );
    // A hostile registry echoing the credentials: on the manifest, then on a blob.
    for (what, rule) in [
        (
            "manifest",
            // The first manifest GET is anonymous (the registry answers 401): echo on the
            // next, which carries the credentials.
            Rule {
                skip: 1,
                ..Rule::always(
                    "/manifests/",
                    Fault::Answer {
                        code: 400,
                        retry_after: None,
                        body: Some(echo.clone()),
                    },
                )
            },
        ),
        (
            "blob",
            Rule::always(
                &Image::blob_path(&layer),
                Fault::Answer {
                    code: 400,
                    retry_after: None,
                    body: Some(echo.clone()),
                },
            ),
        ),
    ] {
        let proxy = Proxy::with_rules(&registry, vec![rule]);
        let sb = Sandbox::new();
        let reference = img.reference(&proxy.registry());
        let run = sb.run(
            &["pull", &reference, "--creds", &creds],
            &[("IMGCACHE_LOG", "debug")],
        );
        let ctx = format!("echoed credentials on the {what}");
        assert_failed(&run, 3, &["400"], &ctx);
        assert!(
            proxy.seen().iter().any(|s| s.authorization),
            "{ctx}: the credentials were never sent, the test proves nothing"
        );
        for secret in [pass.as_str(), b64.as_str()] {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "{ctx}: {secret:?} in the output\nstdout: {}\nstderr: {}",
                run.stdout,
                run.stderr
            );
        }
        let message = run.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert!(
            message.contains("<redacted>"),
            "{ctx}: the echoed text should reach the message, scrubbed: {message}"
        );
        sb.assert_nothing_committed(&img.repo, &ctx);
    }
}

// ---------------------------------------------------------------------------------------------
// The --json error document

#[test]
fn a_failed_pull_is_not_reported_as_not_an_archive() {
    let img = push_image(&plain_registry(), None, 1);
    for (code, expected_exit) in [(400, 3), (404, 1)] {
        let (sb, _proxy, run) = pull_through(
            &img,
            vec![Rule::always(
                "/manifests/",
                Fault::Answer {
                    code,
                    retry_after: None,
                    body: None,
                },
            )],
        );
        let ctx = format!("manifest answered {code}");
        assert_failed(&run, expected_exit, &[&img.repo], &ctx);
        let check = run.json()["error"]["check"].clone();
        assert_ne!(check, "not-an-archive", "{ctx}: {}", run.stdout);
        if expected_exit == 3 {
            assert_eq!(check, "environment", "{ctx}: {}", run.stdout);
        }
        sb.assert_nothing_committed(&img.repo, &ctx);
    }
}
