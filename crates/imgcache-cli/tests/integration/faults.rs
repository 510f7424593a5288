//! `pull` through a fault-injecting proxy ([`crate::proxy`]) in front of the real registries.
//!
//! Every test pushes its own small image (1-2 gzip layers of ~200 KB of random data, so that a
//! body cut in the middle is meaningful) with skopeo, then pulls it through the proxy. A pull
//! either succeeds after retrying (transient faults: the image ID is right and `fsck --deep` is
//! clean), or fails with a clear message and the contract's exit code (1 a check said no, 3
//! environment). Either way nothing corrupt is committed: every stored blob hashes to its name,
//! `fsck --deep` finds no corrupt blob, `ls` does not list a reference whose pull failed; and the
//! next pull without faults succeeds, resuming an interrupted body with `Range: bytes=N-`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::proxy::{self, Fault, Listener, Proxy, Rule, Seen};
use crate::support::*;

/// The longest one run of the binary may take before the test kills it and fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);
/// Layer payload: random, so gzip cannot shrink it.
const LAYER_BYTES: usize = 200 * 1024;

// ---------------------------------------------------------------------------------------------
// Test images

/// Pushes an image of `layers` random layers (of [`LAYER_BYTES`]) with skopeo to
/// `registry/fault-<unique>:v1`, and checks the registry serves it as pushed.
fn push_image(registry: &str, creds: Option<&str>, layers: usize) -> Image {
    let repo = unique_name("fault");
    let layers: Vec<Layer> = (0..layers).map(|_| layer(LAYER_BYTES)).collect();
    let config = json!({
        "architecture": host_arch(),
        "os": "linux",
        "config": {"Env": [format!("FAULT_TEST={repo}")]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids(&layers)},
    });
    let mut img = push_layout(registry, creds, &repo, &config, &layers);

    // What the registry serves (skopeo keeps an OCI manifest as is; check rather than assume).
    let mut headers = vec![("Accept".to_owned(), OCI_MANIFEST.to_owned())];
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
        served["config"]["digest"], img.config_digest,
        "the registry serves another config"
    );
    img.manifest_digest = digest_of(&up.body);
    img.manifest_size = up.body.len() as u64;
    img.manifest = up.body;
    img
}

// ---------------------------------------------------------------------------------------------
// Running the binary

/// A [`Sandbox`] whose runs are `--json`, killed (failing the test) after [`RUN_TIMEOUT`], and
/// the checks that follow a pull.
struct PullSandbox(Sandbox);

impl PullSandbox {
    fn new() -> Self {
        Self(Sandbox::with_watchdog(RUN_TIMEOUT))
    }

    /// `imgcache --root <root> --json ARGS`, with `envs` set.
    fn run(&self, args: &[&str], envs: &[(&str, &str)]) -> Run {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        self.0.run_with_env(envs, &full)
    }

    fn pull(&self, reference: &str, extra: &[&str]) -> Run {
        let mut args = vec!["pull", reference];
        args.extend_from_slice(extra);
        self.run(&args, &[])
    }

    /// Every file in `blobs/sha256` (if there is one yet) hashes to its name.
    fn assert_blobs_hash_to_their_names(&self, ctx: &str) {
        if self.0.blob_dir().exists() {
            self.0
                .assert_blob_files_hash_to_their_names_at(&self.0.root, ctx);
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

    /// `ingest/*.partial` files, by digest, with their sizes.
    fn partials(&self) -> BTreeMap<String, u64> {
        self.0.partials_at(&self.0.root)
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
        let listed = self.0.refs();
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
        assert_eq!(j["image_id"], img.config_digest.as_str(), "{ctx}: {j}");
        assert_eq!(
            j["manifest_digest"],
            img.manifest_digest.as_str(),
            "{ctx}: {j}"
        );
        self.assert_blobs_hash_to_their_names(ctx);
        let f = self.fsck_deep();
        assert_eq!(f["ok"], true, "{ctx}: fsck --deep after the pull: {f}");
        let listed = self.0.refs();
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

/// After a pull whose bytes a fault corrupted: either they were fetched again and what is stored
/// is right, or the pull failed with exit 1 naming `fragments`, committed nothing, and the next
/// pull (without the fault) succeeds.
fn assert_refetched_or_refused(
    sb: &PullSandbox,
    run: &Run,
    img: &Image,
    reference: &str,
    fragments: &[&str],
    what: &str,
) {
    if run.code == 0 {
        // Refetched after the mismatch: fine, if what is stored is right.
        sb.assert_pulled(run, img, reference, what);
        return;
    }
    assert_failed(run, 1, fragments, what);
    sb.assert_nothing_committed(&img.repo, what);
    let again = sb.pull(reference, &[]);
    sb.assert_pulled(&again, img, reference, &format!("after the {what}"));
}

/// A rule for the first GET of blob `digest` only.
fn first_get_of(digest: &str, fault: Fault) -> Rule {
    Rule::nth(1, &Image::blob_path(digest), fault)
}

/// Pulls `img` through a proxy with `rules` on the plain registry: returns the sandbox, the
/// proxy (rules still on) and the run.
fn pull_through(img: &Image, rules: Vec<Rule>) -> (PullSandbox, Proxy, Run) {
    let proxy = Proxy::with_rules(registry(), rules);
    let sb = PullSandbox::new();
    let run = sb.pull(&img.reference_at(&proxy.registry()), &[]);
    (sb, proxy, run)
}

// ---------------------------------------------------------------------------------------------
// Transient faults: the pull succeeds after retrying

#[test]
fn a_truncated_blob_body_is_resumed_with_a_range_request() {
    let img = push_image(registry(), None, 2);
    let layer = img.layer(1).to_owned();
    let (sb, proxy, run) = pull_through(&img, vec![first_get_of(&layer, Fault::Truncate(60_000))]);
    sb.assert_pulled(
        &run,
        &img,
        &img.reference_at(&proxy.registry()),
        "truncated",
    );
    let starts = range_starts(&proxy.seen(), &layer);
    assert!(
        starts.contains(&60_000),
        "no Range: bytes=60000- request after the cut: {starts:?}\n{:#?}",
        gets_of(&proxy.seen(), &layer)
    );
}

#[test]
fn a_connection_reset_mid_blob_is_resumed() {
    let img = push_image(registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let (sb, proxy, run) = pull_through(&img, vec![first_get_of(&layer, Fault::Reset(50_000))]);
    sb.assert_pulled(&run, &img, &img.reference_at(&proxy.registry()), "reset");
    let starts = range_starts(&proxy.seen(), &layer);
    assert!(
        starts.iter().any(|&n| n > 0),
        "no resuming Range request after the reset: {:#?}",
        gets_of(&proxy.seen(), &layer)
    );
}

#[test]
fn a_connection_reset_before_the_manifest_answer_is_retried() {
    let img = push_image(registry(), None, 1);
    let (sb, proxy, run) = pull_through(&img, vec![Rule::nth(1, "/manifests/", Fault::ResetNow)]);
    sb.assert_pulled(&run, &img, &img.reference_at(&proxy.registry()), "reset");
    assert_eq!(gets_of(&proxy.seen(), "/manifests/").len(), 2);
}

#[test]
fn a_truncated_manifest_body_is_retried() {
    let img = push_image(registry(), None, 1);
    let cut = img.manifest.len() / 2;
    let (sb, proxy, run) = pull_through(
        &img,
        vec![Rule::nth(1, "/manifests/", Fault::Truncate(cut))],
    );
    let reference = img.reference_at(&proxy.registry());
    if run.code != 0 {
        sb.assert_nothing_committed(&img.repo, "truncated manifest");
    }
    sb.assert_pulled(&run, &img, &reference, "truncated manifest");
}

#[test]
fn http_500_and_503_answers_are_retried() {
    let img = push_image(registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let (sb, proxy, run) = pull_through(
        &img,
        vec![
            Rule::first(2, "/manifests/", Fault::answer(503)),
            Rule::first(2, &Image::blob_path(&layer), Fault::answer(500)),
            Rule::first(1, &Image::blob_path(&img.config_digest), Fault::answer(502)),
        ],
    );
    sb.assert_pulled(&run, &img, &img.reference_at(&proxy.registry()), "5xx");
    let seen = proxy.seen();
    assert_eq!(gets_of(&seen, "/manifests/").len(), 3);
    assert_eq!(gets_of(&seen, &layer).len(), 3);
    assert_eq!(gets_of(&seen, &img.config_digest).len(), 2);
}

#[test]
fn http_429_with_retry_after_is_waited_for_then_retried() {
    let img = push_image(registry(), None, 1);
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
    sb.assert_pulled(&run, &img, &img.reference_at(&proxy.registry()), "429");
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
    let img = push_image(registry(), None, 1);
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
    sb.assert_pulled(&run, &img, &img.reference_at(&proxy.registry()), "drip");
    assert_eq!(gets_of(&proxy.seen(), &layer).len(), 1);
}

#[test]
fn a_content_length_shorter_than_the_blob_is_completed_by_a_range_request() {
    let img = push_image(registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let (sb, proxy, run) = pull_through(&img, vec![first_get_of(&layer, Fault::LieLength(-5000))]);
    sb.assert_pulled(
        &run,
        &img,
        &img.reference_at(&proxy.registry()),
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
    let img = push_image(registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let (sb, proxy, run) = pull_through(&img, vec![first_get_of(&layer, Fault::LieLength(5000))]);
    sb.assert_pulled(
        &run,
        &img,
        &img.reference_at(&proxy.registry()),
        "long length",
    );
}

#[test]
fn a_registry_ignoring_ranges_is_read_again_from_the_start() {
    let img = push_image(registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let path = Image::blob_path(&layer);
    let (sb, proxy, run) = pull_through(
        &img,
        vec![
            Rule::nth(1, &path, Fault::Truncate(70_000)),
            Rule::always(&path, Fault::StripRange),
        ],
    );
    sb.assert_pulled(
        &run,
        &img,
        &img.reference_at(&proxy.registry()),
        "no ranges",
    );
    let seen = proxy.seen();
    let gets = gets_of(&seen, &path);
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert_eq!(gets[1].range_start(), Some(70_000), "{gets:#?}");
}

// ---------------------------------------------------------------------------------------------
// Faults that must fail the pull, cleanly

#[test]
fn a_pull_interrupted_for_good_leaves_a_partial_that_the_next_pull_resumes() {
    let img = push_image(registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let path = Image::blob_path(&layer);
    let (sb, proxy, run) = pull_through(&img, vec![Rule::always(&path, Fault::Truncate(20_000))]);
    let reference = img.reference_at(&proxy.registry());
    assert_failed(&run, 3, &[&layer], "every body cut");
    sb.assert_nothing_committed(&img.repo, "every body cut");
    let partials = sb.partials();
    let kept = partials
        .get(&layer)
        .copied()
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
    let img = push_image(registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let (sb, proxy, run) = pull_through(&img, vec![first_get_of(&layer, Fault::FlipByte(100_000))]);
    let reference = img.reference_at(&proxy.registry());
    assert_refetched_or_refused(
        &sb,
        &run,
        &img,
        &reference,
        &[&layer, "expected"],
        "flipped byte",
    );
}

#[test]
fn a_flipped_byte_in_the_config_is_never_stored() {
    let img = push_image(registry(), None, 1);
    let (sb, proxy, run) = pull_through(
        &img,
        vec![first_get_of(&img.config_digest, Fault::FlipByte(10))],
    );
    let reference = img.reference_at(&proxy.registry());
    assert_refetched_or_refused(
        &sb,
        &run,
        &img,
        &reference,
        &[&img.config_digest],
        "flipped config byte",
    );
}

#[test]
fn bytes_beyond_the_descriptor_size_are_refused() {
    let img = push_image(registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let (sb, proxy, run) = pull_through(&img, vec![first_get_of(&layer, Fault::ExtraBytes(4096))]);
    let reference = img.reference_at(&proxy.registry());
    assert_refetched_or_refused(&sb, &run, &img, &reference, &[&layer], "extra bytes");
}

#[test]
fn persistent_503_on_the_manifest_fails_with_exit_3_after_retries() {
    let img = push_image(registry(), None, 1);
    let (sb, proxy, run) =
        pull_through(&img, vec![Rule::always("/manifests/", Fault::answer(503))]);
    assert_failed(&run, 3, &["503", &img.repo], "persistent 503");
    assert_eq!(
        gets_of(&proxy.seen(), "/manifests/").len(),
        5,
        "one attempt and 4 retries"
    );
    sb.assert_nothing_committed(&img.repo, "persistent 503");
    proxy.clear_rules();
    let reference = img.reference_at(&proxy.registry());
    let again = sb.pull(&reference, &[]);
    sb.assert_pulled(&again, &img, &reference, "after the 503s");
}

#[test]
fn a_manifest_404_is_not_found_with_exit_1() {
    let img = push_image(registry(), None, 1);
    let (sb, proxy, run) = pull_through(
        &img,
        vec![Rule::always(
            "/manifests/",
            Fault::answer_with(
                404,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ),
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
    let proxy = Proxy::start(registry());
    let sb = PullSandbox::new();
    let repo = unique_name("fault-missing");
    let run = sb.pull(&format!("{}/{repo}:v1", proxy.registry()), &[]);
    assert_failed(&run, 1, &["not found", &repo], "missing repository");
    sb.assert_nothing_committed(&repo, "missing repository");
}

#[test]
fn a_blob_404_fails_with_exit_1() {
    let img = push_image(registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let (sb, proxy, run) = pull_through(
        &img,
        vec![Rule::always(&Image::blob_path(&layer), Fault::answer(404))],
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
    let img = push_image(registry(), None, 1);
    let layer = img.layer(0).to_owned();
    let (sb, proxy, run) = pull_through(
        &img,
        vec![Rule::always(&Image::blob_path(&layer), Fault::answer(404))],
    );
    assert!(run.code == 1 || run.code == 3, "exit {}", run.code);
    assert_failed(&run, run.code, &[&layer, "not found"], "blob 404");
    sb.assert_nothing_committed(&img.repo, "blob 404");
    proxy.clear_rules();
    let reference = img.reference_at(&proxy.registry());
    let again = sb.pull(&reference, &[]);
    sb.assert_pulled(&again, &img, &reference, "after the 404");
}

#[test]
fn a_manifest_not_matching_the_pinned_digest_is_refused() {
    let img = push_image(registry(), None, 1);
    let mut other = img.manifest.clone();
    other.extend_from_slice(b"\n");
    let proxy = Proxy::start(registry());
    proxy.add_rule(Rule::always(
        "/manifests/",
        Fault::ReplaceBody(Arc::new(other.clone())),
    ));
    let pinned = format!("{}/{}@{}", proxy.registry(), img.repo, img.manifest_digest);
    let sb2 = PullSandbox::new();
    let run = sb2.pull(&pinned, &[]);
    assert_failed(
        &run,
        1,
        &[&img.manifest_digest, &digest_of(&other)],
        "pinned digest",
    );
    sb2.assert_nothing_committed(&img.repo, "pinned digest");
    // The same by tag: the body differs from the registry's Docker-Content-Digest.
    let run = sb2.pull(&img.reference_at(&proxy.registry()), &[]);
    assert_failed(
        &run,
        1,
        &[&img.manifest_digest, &digest_of(&other)],
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
    let img = push_image(registry(), None, 1);
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
    let (registry, user, pass) = (auth_registry(), auth_user(), auth_password());
    let creds = format!("{user}:{pass}");
    let img = push_image(registry, Some(&creds), 1);
    let proxy = Proxy::with_rules(registry, vec![Rule::always("/blobs/", Fault::Redirect)]);
    proxy.set_redirect_upstream_auth(Some(proxy::basic_auth(user, pass)));
    let sb = PullSandbox::new();
    let reference = img.reference_at(&proxy.registry());
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
    let (registry, user, pass) = (auth_registry(), auth_user(), auth_password());
    let creds = format!("{user}:{pass}");
    let img = push_image(registry, Some(&creds), 1);
    let layer = img.layer(0).to_owned();
    let basic = proxy::basic_auth(user, pass);
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
                ..Rule::always("/manifests/", Fault::answer_with(400, &echo))
            },
        ),
        (
            "blob",
            Rule::always(&Image::blob_path(&layer), Fault::answer_with(400, &echo)),
        ),
    ] {
        let proxy = Proxy::with_rules(registry, vec![rule]);
        let sb = PullSandbox::new();
        let reference = img.reference_at(&proxy.registry());
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
        for secret in [pass, b64.as_str()] {
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
    let img = push_image(registry(), None, 1);
    for (code, expected_exit) in [(400, 3), (404, 1)] {
        let (sb, _proxy, run) =
            pull_through(&img, vec![Rule::always("/manifests/", Fault::answer(code))]);
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
