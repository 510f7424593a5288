//! Reliability as a user meets it, against the real test registries and podman:
//!
//! - **disk full**: a small tmpfs as `--root` (pull, import) or as the `save -o` destination. The
//!   command fails with exit 3 and a message saying the disk is full and naming the file, no
//!   partial blob is visible in `blobs/`, no partial output file is left, `fsck` is clean; once
//!   the tmpfs is remounted bigger the same command succeeds, and a pull resumes (the registry's
//!   access log shows only the missing bytes sent).
//! - **secrets**: a marker password given with `--creds` or in `~/.docker/config.json`, right and
//!   wrong, with `IMGCACHE_LOG=trace`: no command (pull, load, status, ls, inspect, verify, save,
//!   import, rm, prune, fsck; human and `--json`) prints it or its base64 forms, no file under
//!   `--root` holds it, the credential files are never written.
//! - **concurrency**: six processes pulling, importing, pruning, removing and loading (podman,
//!   private store) overlapping references for a bounded time: every process ends (each run has
//!   a watchdog; the lock timeout is a fixed 10 minutes, there is no variable to shorten it),
//!   `fsck --deep` is clean afterwards, every reference verifies deep with the image the registry
//!   serves, every blob file hashes to its name, and the registry never sent the same blob twice
//!   at overlapping times (intervals from its log: end time and duration of each response).
//! - the index/`refs.json` window of `rm` and of `prune --max-size`, hit on purpose with strace
//!   (a SIGKILL, or a delay, at the rename of `refs.json`): ignored tests naming the bug.
//!
//! Random SIGKILLs of every operation are in `scripts/soak.sh`; see docs/RELIABILITY.md.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::support::*;

/// The longest one run of the binary may take before the test kills it and fails (a deadlock).
const WATCHDOG: Duration = Duration::from_secs(45);

// ---------------------------------------------------------------------------------------------
// The registry's log: what it sent, when.

#[test]
fn registry_log_times_and_durations_parse() {
    assert_eq!(
        parse_rfc3339_ns("1970-01-01T00:00:01.5Z"),
        Some(1_500_000_000)
    );
    assert_eq!(
        parse_rfc3339_ns("2024-01-01T00:00:00Z"),
        Some(1_704_067_200_000_000_000)
    );
    assert_eq!(parse_go_duration_ns("1.5ms"), Some(1_500_000));
    assert_eq!(parse_go_duration_ns("850µs"), Some(850_000));
    assert_eq!(parse_go_duration_ns("1m2s"), Some(62_000_000_000));
    let line = r#"time="2026-11-30T06:21:36.274459255Z" level=info msg="response completed" http.request.method=GET http.request.uri="/v2/x/blobs/sha256:27c7" http.response.duration=2.159648ms http.response.status=200 http.response.written=51985"#;
    let s = parse_served(line).unwrap();
    assert_eq!(
        (s.method.as_str(), s.uri.as_str()),
        ("GET", "/v2/x/blobs/sha256:27c7")
    );
    assert_eq!((s.status, s.written), (200, 51985));
    assert_eq!(s.end_ns - s.start_ns, 2_159_648);
}

// ---------------------------------------------------------------------------------------------
// 1. Disk full.

/// A failed command's JSON error is `environment` and its message says the disk is full and
/// names a file under `dir`; stderr says so too.
fn assert_disk_full(r: &Run, dir: &Path, ctx: &str) {
    assert_eq!(
        r.code, 3,
        "{ctx}: exit code\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    let doc = r.json();
    assert_eq!(doc["ok"], false, "{ctx}: {doc:#}");
    assert_eq!(doc["error"]["check"], "environment", "{ctx}: {doc:#}");
    let msg = doc["error"]["message"].as_str().unwrap();
    assert!(msg.contains("disk is full"), "{ctx}: {msg}");
    assert!(
        msg.contains(&dir.display().to_string()),
        "{ctx}: the path is not named: {msg}"
    );
    assert!(r.stderr.contains("disk is full"), "{ctx}: {}", r.stderr);
}

#[test]
fn pull_into_a_full_disk_exits_3_naming_the_file_and_resumes_once_there_is_room() {
    let img = fresh_image("fullpull", &[2_000_000, 1_500_000]);
    let sb = Sandbox::with_watchdog(WATCHDOG);
    let mnt = sb.path("mnt");
    let tmpfs = Tmpfs::mount(&mnt, "3m");
    let root = mnt.join("root");

    let r = sb.run_at(&root, &["--json", "pull", &img.reference]);
    assert_disk_full(&r, &mnt, "pull into 3 MiB");
    let stored = sb.assert_blob_files_hash_to_their_names_at(&root, "after the full disk");
    assert!(stored.is_subset(&img.blobs()), "{stored:?}");
    assert!(
        !stored.contains(&img.manifest_digest),
        "the manifest is stored only once every blob is"
    );
    assert!(
        sb.refs_with_ids_at(&root).is_empty(),
        "a failed pull recorded a reference"
    );
    sb.assert_fsck_deep_clean_at(&root, "after the full disk");
    let kept = sb.partials_at(&root);
    let kept_bytes: u64 = kept.values().sum();
    assert!(
        kept_bytes > 0,
        "no partial download kept to resume: {kept:?}"
    );

    tmpfs.resize("64m");
    let sizes = img.blob_sizes();
    let missing: u64 = sizes
        .iter()
        .filter(|(d, _)| !stored.contains(*d))
        .map(|(_, s)| s)
        .sum();
    let log = RegistryLog::mark();
    let doc = sb.json_at(&root, &["pull", &img.reference], 0);
    assert_eq!(doc["image_id"], img.config_digest.as_str());
    let (sent, ranged) = log.blob_bytes_sent(&[&img.repo]);
    assert_eq!(
        sent,
        missing - kept_bytes,
        "the registry sent {sent} bytes; missing blobs {missing} bytes, of which {kept_bytes} were kept in {kept:?}"
    );
    assert!(sent < img.blob_bytes(), "nothing was resumed");
    assert!(
        ranged >= 1,
        "no Range request resumed the partial downloads"
    );
    assert!(
        sb.partials_at(&root).is_empty(),
        "{:?}",
        sb.partials_at(&root)
    );
    sb.assert_fsck_deep_clean_at(&root, "after the resumed pull");
    assert_eq!(
        sb.assert_blob_files_hash_to_their_names_at(&root, "after"),
        img.blobs()
    );
    let v = sb.json_at(&root, &["verify", "--deep", &img.reference], 0);
    assert_eq!(v["ok"], true, "{v:#}");
}

#[test]
fn import_into_a_full_disk_exits_3_naming_the_file_and_succeeds_once_there_is_room() {
    let img = fresh_image("fullimport", &[2_000_000, 1_500_000]);
    let sb = Sandbox::with_watchdog(WATCHDOG);
    // The archive, saved from an ordinary cache.
    let seed = sb.path("seed");
    sb.json_at(&seed, &["pull", &img.reference], 0);
    let tarball = sb.path("image.tar");
    sb.json_at(
        &seed,
        &["save", &img.reference, "-o", tarball.to_str().unwrap()],
        0,
    );

    let mnt = sb.path("mnt");
    let tmpfs = Tmpfs::mount(&mnt, "3m");
    let root = mnt.join("root");
    let r = sb.run_at(&root, &["--json", "import", tarball.to_str().unwrap()]);
    assert_disk_full(&r, &mnt, "import into 3 MiB");
    let stored = sb.assert_blob_files_hash_to_their_names_at(&root, "after the full disk");
    assert!(stored.is_subset(&img.blobs()), "{stored:?}");
    assert!(
        sb.refs_with_ids_at(&root).is_empty(),
        "a failed import recorded a reference"
    );
    sb.assert_fsck_deep_clean_at(&root, "after the full disk");

    tmpfs.resize("64m");
    let doc = sb.json_at(&root, &["import", tarball.to_str().unwrap()], 0);
    assert_eq!(
        doc["images"][0]["image_id"],
        img.config_digest.as_str(),
        "{doc:#}"
    );
    sb.assert_fsck_deep_clean_at(&root, "after the import");
    let v = sb.json_at(
        &root,
        &[
            "verify",
            "--deep",
            "--expect",
            &img.config_digest,
            &img.reference,
        ],
        0,
    );
    assert_eq!(v["ok"], true, "{v:#}");
}

/// What `save -o` into a 1 MiB tmpfs does with a ~3.5 MB image.
fn save_into_a_full_disk() -> (Sandbox, Image, PathBuf, Run, Tmpfs) {
    let img = fresh_image("fullsave", &[2_000_000, 1_500_000]);
    let sb = Sandbox::with_watchdog(WATCHDOG);
    sb.json(&["pull", &img.reference]);
    let mnt = sb.path("mnt");
    let tmpfs = Tmpfs::mount(&mnt, "1m");
    let out = mnt.join("image.tar");
    let r = sb.run(&[
        "--json",
        "save",
        &img.reference,
        "-o",
        out.to_str().unwrap(),
    ]);
    (sb, img, out, r, tmpfs)
}

#[test]
fn save_into_a_full_disk_exits_3_leaves_no_file_and_succeeds_once_there_is_room() {
    let (sb, img, out, r, tmpfs) = save_into_a_full_disk();
    assert_eq!(r.code, 3, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let doc = r.json();
    assert_eq!(doc["error"]["check"], "environment", "{doc:#}");
    let left: Vec<_> = fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "a failed save left {left:?}");
    sb.assert_fsck_deep_clean_at(&sb.root, "the cache after the failed save");

    tmpfs.resize("64m");
    sb.json(&["save", &img.reference, "-o", out.to_str().unwrap()]);
    let v = sb.json(&[
        "verify",
        "--deep",
        "--no-memo",
        "--expect",
        &img.config_digest,
        out.to_str().unwrap(),
    ]);
    assert_eq!(v["ok"], true, "{v:#}");
}

#[test]
fn save_into_a_full_disk_says_the_disk_is_full_and_names_the_output_file() {
    let (_sb, _img, out, r, _tmpfs) = save_into_a_full_disk();
    assert_disk_full(&r, out.parent().unwrap(), "save -o into 1 MiB");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("image.tar"), "names the output file: {msg}");
}

#[test]
fn a_disk_full_error_is_printed_once_on_stderr() {
    let sb = Sandbox::with_watchdog(WATCHDOG);
    let mnt = sb.path("mnt");
    let _tmpfs = Tmpfs::mount(&mnt, "600k");
    let r = sb.run_at(
        &mnt.join("root"),
        &["pull", &format!("{}/busybox:v1", registry())],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(r.stderr.matches("disk is full").count(), 1, "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------------
// 2. Secrets.

/// `secret` and the base64 forms it may take: of itself and of `user:secret` (Basic auth),
/// at the three alignments inside a longer base64 text.
fn secret_forms(user: &str, secret: &str) -> Vec<String> {
    let mut out = vec![
        secret.to_owned(),
        base64(format!("{user}:{secret}").as_bytes()),
    ];
    for text in [secret.to_owned(), format!("{user}:{secret}")] {
        for pad in 0..3 {
            let b = base64(format!("{}{text}", "x".repeat(pad)).as_bytes());
            // Drop the characters the padding or what follows may change.
            let (skip, trim) = (if pad == 0 { 0 } else { 4 }, 4);
            if b.len() > skip + trim + 8 {
                out.push(b[skip..b.len() - trim].to_owned());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn secret_forms_find_a_password_inside_a_basic_auth_header() {
    let forms = secret_forms("someone", "MARKER-pw-0123456789");
    for prefix in ["", "a", "ab", "abc:"] {
        let header = base64(format!("{prefix}someone:MARKER-pw-0123456789").as_bytes());
        assert!(
            forms.iter().any(|f| header.contains(f.as_str())),
            "{prefix:?}"
        );
    }
}

/// Every file under `dir`, for a byte search.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// (modification time, bytes) of each credential file imgcache might read, or None.
fn credential_files(home: &Path) -> BTreeMap<PathBuf, Option<(SystemTime, Vec<u8>)>> {
    [
        home.join(".docker/config.json"),
        home.join(".config/containers/auth.json"),
    ]
    .into_iter()
    .map(|p| {
        let v = fs::metadata(&p)
            .ok()
            .map(|m| (m.modified().unwrap(), fs::read(&p).unwrap()));
        (p, v)
    })
    .collect()
}

#[test]
fn no_command_prints_or_stores_a_password_nor_writes_a_credential_file() {
    let reg = auth_registry();
    let reference = format!("{reg}/busybox:v1");
    let user = env().vars["TEST_REGISTRY_USER"].clone();
    let right_pass = env().vars["TEST_REGISTRY_PASS"].clone();
    let marker = format!("MARKERpw{}x", nanos() % 1_000_000_007);
    let mut needles = secret_forms(&user, &marker);
    needles.extend(secret_forms(&user, &right_pass));
    let wrong = format!("{user}:{marker}");
    let right = format!("{user}:{right_pass}");
    let sb = Sandbox::with_watchdog(WATCHDOG);
    let mut runs = 0;

    let check_text = |what: &str, text: &str| {
        for n in &needles {
            assert!(
                !text.contains(n.as_str()),
                "{what}: a secret form ({n}) appears:\n{text}"
            );
        }
    };
    let check_files = |what: &str, dir: &Path| {
        for f in files_under(dir) {
            let bytes = fs::read(&f).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            for n in &needles {
                assert!(
                    !text.contains(n.as_str()),
                    "{what}: {} holds a secret form ({n})",
                    f.display()
                );
            }
        }
    };
    // Runs `args` (and again with --json) with tracing on; `code` expected.
    let mut run = |root: &Path, args: &[&str], code: i32, podman: bool| {
        for json in [false, true] {
            let mut a: Vec<&str> = if json { vec!["--json"] } else { vec![] };
            a.extend_from_slice(args);
            let mut cmd = sb.command_at(root, &a);
            cmd.env("IMGCACHE_LOG", "trace");
            if podman {
                sb.with_podman(&mut cmd);
            }
            let (r, timed_out) = watched(&mut cmd, WATCHDOG);
            runs += 1;
            assert!(!timed_out, "{a:?} did not finish");
            assert_eq!(
                r.code, code,
                "{a:?}\nstdout:\n{}\nstderr:\n{}",
                r.stdout, r.stderr
            );
            if args[0] == "pull" && code == 0 {
                assert!(
                    r.stderr.contains("TRACE"),
                    "tracing was not on: {}",
                    r.stderr
                );
            }
            check_text(&format!("{a:?} stdout"), &r.stdout);
            check_text(&format!("{a:?} stderr"), &r.stderr);
        }
    };
    let docker_config = |pair: &str| {
        write_docker_config(&sb.home, reg, pair);
        // An mtime in the past, so that a rewrite within the same second shows.
        let f = fs::File::options()
            .write(true)
            .open(sb.home.join(".docker/config.json"))
            .unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
    };

    // The wrong marker password, with --creds, then in config.json: refused (exit 3).
    let bad = sb.path("bad-root");
    run(&bad, &["pull", &reference, "--creds", &wrong], 3, false);
    run(
        &bad,
        &["load", &reference, "--engine", "podman", "--creds", &wrong],
        3,
        true,
    );
    docker_config(&wrong);
    let before = credential_files(&sb.home);
    run(&bad, &["pull", &reference], 3, false);
    run(&bad, &["load", &reference, "--engine", "podman"], 3, true);
    assert_eq!(
        credential_files(&sb.home),
        before,
        "a credential file was written"
    );
    check_files("a cache after refused pulls", &bad);
    fs::remove_dir_all(sb.home.join(".docker")).unwrap();

    // The right password with --creds, then in config.json: every command.
    let save_to = sb.path("saved.tar");
    let save_to = save_to.to_str().unwrap();
    for (phase, creds) in [("--creds", Some(right.as_str())), ("config.json", None)] {
        let root = sb.path(&format!("root-{}", phase.trim_start_matches('-')));
        if creds.is_none() {
            docker_config(&right);
        }
        let before = credential_files(&sb.home);
        // load first, into an empty cache: it pulls with the credentials.
        let mut load = vec!["load", reference.as_str(), "--engine", "podman"];
        let mut pull = vec!["pull", reference.as_str()];
        if let Some(c) = creds {
            load.extend(["--creds", c]);
            pull.extend(["--creds", c]);
        }
        run(&root, &load, 0, true);
        run(&root, &pull, 0, false);
        run(
            &root,
            &["status", &reference, "--engine", "podman"],
            0,
            true,
        );
        run(&root, &["ls"], 0, false);
        run(&root, &["inspect", &reference], 0, false);
        run(&root, &["verify", &reference], 0, false);
        run(&root, &["verify", "--deep", &reference], 0, false);
        run(&root, &["save", &reference, "-o", save_to], 0, false);
        run(&root, &["verify", "--deep", save_to], 0, false);
        run(&root, &["import", save_to], 0, false);
        run(&root, &["fsck", "--deep"], 0, false);
        // rm once per mode: the second run of each pair finds it gone (exit 1), so split them.
        for json in [false, true] {
            let mut a: Vec<&str> = if json { vec!["--json"] } else { vec![] };
            a.extend(["rm", &reference]);
            let mut cmd = sb.command_at(&root, &a);
            cmd.env("IMGCACHE_LOG", "trace");
            let (r, _) = watched(&mut cmd, WATCHDOG);
            assert_eq!(r.code, 0, "{a:?}: {}", r.stderr);
            check_text("rm", &r.stdout);
            check_text("rm", &r.stderr);
            if !json {
                run(&root, &["import", save_to], 0, false);
            }
        }
        run(&root, &["prune"], 0, false);
        run(&root, &["fsck"], 0, false);
        run(
            &root,
            &["status", &reference, "--engine", "podman"],
            1,
            true,
        );
        assert_eq!(
            credential_files(&sb.home),
            before,
            "{phase}: a credential file was written"
        );
        check_files(&format!("{phase}: the cache"), &root);
        check_text(
            &format!("{phase}: the saved tarball"),
            &String::from_utf8_lossy(&fs::read(save_to).unwrap()),
        );
        for leftover in ["config.json.tmp", "config.json.lock"] {
            assert!(!sb.home.join(".docker").join(leftover).exists());
        }
    }
    assert!(!sb.home.join(".config/containers/auth.json").exists());
    eprintln!(
        "secrets: {runs} runs with IMGCACHE_LOG=trace (and 4 of rm), {} secret forms searched",
        needles.len()
    );
    assert!(runs >= 60, "{runs} runs");
}

// ---------------------------------------------------------------------------------------------
// 3. Six processes at once.

#[derive(Default)]
struct Tally {
    /// (role, outcome) -> count
    outcomes: BTreeMap<(String, String), usize>,
    failures: Vec<String>,
}

#[test]
fn six_processes_pulling_importing_pruning_removing_and_loading_keep_the_cache_consistent() {
    six_processes_at_once(Duration::from_secs(15), true);
}

#[test]
#[ignore = "slow (60 s): run with --ignored; it once caught an intermittent `database is locked`, since fixed by IMMEDIATE index transactions"]
fn no_process_of_the_mix_fails_with_database_is_locked() {
    six_processes_at_once(Duration::from_secs(60), false);
}

/// Six processes (2 pulls, import, prune, rm, load into podman) in loops for `run_for`; then the
/// cache must be consistent. With `tolerate_locked`, a `database is locked` failure is counted
/// as a known bug (see [`no_process_of_the_mix_fails_with_database_is_locked`]), not a failure.
fn six_processes_at_once(run_for: Duration, tolerate_locked: bool) {
    // A and B share their first layer.
    let shared = layer(900_000);
    let a = push_image(&unique_name("mixa"), &[shared.clone(), layer(700_000)]);
    let b = push_image(
        &unique_name("mixb"),
        &[shared, layer(600_000), layer(400_000)],
    );
    let images = [a.clone(), b.clone()];
    let ids: HashMap<String, String> = images
        .iter()
        .map(|i| (i.reference.clone(), i.config_digest.clone()))
        .collect();
    let sb = Arc::new(Sandbox::with_watchdog(WATCHDOG));
    // Tarballs for the importer, saved from a seed cache.
    let seed = sb.path("seed");
    let mut tars = Vec::new();
    for (n, img) in images.iter().enumerate() {
        sb.json_at(&seed, &["pull", &img.reference], 0);
        let t = sb.path(&format!("img{n}.tar"));
        sb.json_at(
            &seed,
            &["save", &img.reference, "-o", t.to_str().unwrap()],
            0,
        );
        tars.push(t);
    }
    let log = RegistryLog::mark();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let deadline = Instant::now() + run_for;
    let roles = ["pull", "pull", "import", "prune", "rm", "load"];
    let workers: Vec<_> = roles
        .iter()
        .enumerate()
        .map(|(w, role)| {
            let (sb, tally, images, tars, ids) = (
                sb.clone(),
                tally.clone(),
                images.clone(),
                tars.clone(),
                ids.clone(),
            );
            let role = (*role).to_owned();
            thread::spawn(move || {
                let mut n = w;
                while Instant::now() < deadline {
                    n += 1;
                    let img = &images[n % 2];
                    let tar = tars[n % 2].to_str().unwrap().to_owned();
                    let args: Vec<String> = match role.as_str() {
                        "pull" => vec!["pull".into(), img.reference.clone()],
                        "import" => vec!["import".into(), tar],
                        "prune" if n % 4 == 0 => {
                            vec!["prune".into(), "--max-size".into(), "2M".into()]
                        }
                        "prune" => vec!["prune".into()],
                        "rm" => vec!["rm".into(), img.reference.clone()],
                        _ => vec![
                            "load".into(),
                            img.reference.clone(),
                            "--engine".into(),
                            "podman".into(),
                        ],
                    };
                    let mut a = vec!["--json"];
                    a.extend(args.iter().map(String::as_str));
                    let mut cmd = sb.command(&a);
                    if role == "load" {
                        sb.with_podman(&mut cmd);
                    }
                    let (r, timed_out) = watched(&mut cmd, WATCHDOG);
                    let outcome = if timed_out {
                        format!(
                            "DEADLOCK: {a:?} did not finish in {WATCHDOG:?}; /proc/locks:\n{}",
                            fs::read_to_string("/proc/locks").unwrap_or_default()
                        )
                    } else if r.code == 0 {
                        let doc = r.json();
                        let want = &ids[&img.reference];
                        let got = match role.as_str() {
                            "pull" | "load" => doc["image_id"].as_str().map(str::to_owned),
                            "import" => doc["images"][0]["image_id"].as_str().map(str::to_owned),
                            _ => Some(want.clone()),
                        };
                        if got.as_ref() == Some(want) {
                            "ok".into()
                        } else {
                            format!("WRONG IMAGE: {a:?} gave {got:?}, want {want}")
                        }
                    } else if r.stderr.contains("is not in the cache")
                        && matches!(role.as_str(), "rm" | "load")
                    {
                        // rm of a reference another rm or an eviction already dropped; a load
                        // whose image was removed under it by rm + prune.
                        "not cached (benign)".into()
                    } else if role == "load"
                        && r.code == 1
                        && (r.stderr.contains("is missing from the store")
                            || r.stderr
                                .to_lowercase()
                                .contains("no such file or directory"))
                    {
                        // Resolved, then rm + prune removed its blobs before it read them (the
                        // message then suggests `fsck --repair`, which finds nothing to do).
                        // Regression: the fast verify's "manifest ...: no such file or
                        // directory" (lower case) failed this test in CI.
                        "blobs pruned under the load (benign)".into()
                    } else if role == "prune"
                        && r.code == 3
                        && r.stderr.contains("references that refs.json lists")
                    {
                        // The rm/prune race of prune_and_fsck_during_an_rm_neither_refuse_nor_report_lost_references.
                        "refused: rm in progress (known bug)".into()
                    } else if tolerate_locked
                        && r.code == 3
                        && r.stderr.contains("database is locked")
                    {
                        "database is locked (known bug)".into()
                    } else {
                        format!(
                            "FAILED: {a:?} exit {}\nstdout:\n{}\nstderr:\n{}",
                            r.code, r.stdout, r.stderr
                        )
                    };
                    let mut t = tally.lock().unwrap();
                    let key = if outcome.starts_with(char::is_uppercase) && outcome != "ok" {
                        t.failures.push(outcome.clone());
                        "FAILED".to_owned()
                    } else {
                        outcome
                    };
                    *t.outcomes.entry((role.clone(), key)).or_insert(0) += 1;
                    drop(t);
                    if role == "load" && n % 2 == 0 {
                        // Make the next load of this image stream a tarball again.
                        sb.podman(&["rmi", "-f", &img.reference]);
                    }
                    thread::sleep(Duration::from_millis(nanos() % 40));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let tally = tally.lock().unwrap();
    let total: usize = tally.outcomes.values().sum();
    eprintln!(
        "six processes at once, {run_for:?}: {total} runs: {:#?}",
        tally.outcomes
    );
    assert!(tally.failures.is_empty(), "{}", tally.failures.join("\n\n"));
    for role in ["pull", "import", "prune", "rm", "load"] {
        assert!(
            tally
                .outcomes
                .iter()
                .any(|((r, o), _)| r == role && o == "ok"),
            "no {role} succeeded: {:#?}",
            tally.outcomes
        );
    }

    // The cache is consistent: fsck deep, every reference the registry's image, every blob intact.
    sb.assert_fsck_deep_clean_at(&sb.root, "after the mix");
    let stored = sb.assert_blob_files_hash_to_their_names_at(&sb.root, "after the mix");
    for (reference, id) in sb.refs_with_ids_at(&sb.root) {
        assert_eq!(Some(&id), ids.get(&reference), "{reference}");
        let v = sb.json(&["verify", "--deep", "--expect", &id, &reference]);
        assert_eq!(v["ok"], true, "{v:#}");
        let img = images.iter().find(|i| i.reference == reference).unwrap();
        for d in img.blob_sizes().keys() {
            assert!(stored.contains(d), "{reference} needs {d}, not stored");
        }
    }

    // No blob was downloaded twice at the same time.
    let gets = log.blob_responses(&[&a.repo, &b.repo]);
    let mut by_blob: BTreeMap<String, Vec<&Served>> = BTreeMap::new();
    for g in &gets {
        let digest = g.uri.rsplit('/').next().unwrap().to_owned();
        by_blob.entry(digest).or_default().push(g);
    }
    let mut again = 0;
    for (digest, mut v) in by_blob {
        v.sort_by_key(|s| s.start_ns);
        again += v.len() - 1;
        for w in v.windows(2) {
            assert!(
                w[1].start_ns >= w[0].end_ns,
                "blob {digest} was sent twice at overlapping times: {:?} and {:?}",
                w[0],
                w[1]
            );
        }
    }
    eprintln!(
        "registry: {} blob GETs, {again} of them for a blob sent before (after a prune removed it), none overlapping",
        gets.len()
    );
}

// ---------------------------------------------------------------------------------------------
// 4. The window between index.db and refs.json.

/// Runs imgcache under strace, applying `inject` (an strace tampering spec, e.g.
/// `signal=SIGKILL:when=1`) to rename(2): `rm` and `prune --max-size` rename exactly one file,
/// refs.json, after changing the index.
fn strace_rename(sb: &Sandbox, args: &[&str], inject: &str) -> Child {
    let mut c = Command::new("strace");
    c.args([
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=rename,renameat,renameat2",
    ])
    .arg("-e")
    .arg(format!("inject=rename,renameat,renameat2:{inject}"))
    .arg(bin())
    .arg("--root")
    .arg(&sb.root)
    .args(args);
    sb.isolate(&mut c);
    c.spawn().expect("strace (apt package strace)")
}

/// A cache holding busybox and multiarch, and how a kill at the refs.json rename of `args`
/// leaves it.
fn killed_at_the_refs_json_rename(args: &[&str]) -> (Sandbox, Value) {
    let sb = Sandbox::with_watchdog(WATCHDOG);
    let busybox = format!("{}/busybox:v1", registry());
    sb.json(&["pull", &busybox]);
    sb.json(&["pull", &format!("{}/multiarch:v1", registry())]);
    let mut child = strace_rename(&sb, args, "signal=SIGKILL:when=1");
    let (r, _) = wait_watched(&mut child, WATCHDOG);
    assert_ne!(r.code, 0, "{args:?} was not killed: {}", r.stderr);
    let fsck = sb.run(&["--json", "fsck"]).json();
    (sb, fsck)
}

#[test]
fn rm_killed_before_refs_json_is_rewritten_leaves_a_clean_cache() {
    let busybox = format!("{}/busybox:v1", registry());
    let (sb, fsck) = killed_at_the_refs_json_rename(&["rm", &busybox]);
    assert_eq!(fsck["ok"], true, "{fsck:#}");
    assert_eq!(fsck["lost_references"], json!([]), "{fsck:#}");
    sb.json(&["prune"]);
    // Killed before it removed anything, the reference is still listed; once rm completes,
    // repair must not bring it back.
    let before = sb.refs_with_ids_at(&sb.root);
    let repaired = sb.json(&["fsck", "--repair"]);
    assert_eq!(sb.refs_with_ids_at(&sb.root), before, "{repaired:#}");
    sb.json(&["rm", &busybox]);
    let repaired = sb.json(&["fsck", "--repair"]);
    assert!(
        !sb.refs_with_ids_at(&sb.root)
            .iter()
            .any(|(r, _)| *r == busybox),
        "the removed reference came back: {repaired:#}"
    );
}

#[test]
fn prune_max_size_killed_before_refs_json_is_rewritten_leaves_a_clean_cache() {
    let (sb, fsck) = killed_at_the_refs_json_rename(&["prune", "--max-size", "1"]);
    assert_eq!(fsck["ok"], true, "{fsck:#}");
    assert_eq!(fsck["lost_references"], json!([]), "{fsck:#}");
    sb.json(&["prune"]);
}

#[test]
fn prune_and_fsck_during_an_rm_neither_refuse_nor_report_lost_references() {
    let sb = Sandbox::with_watchdog(WATCHDOG);
    let busybox = format!("{}/busybox:v1", registry());
    sb.json(&["pull", &busybox]);
    sb.json(&["pull", &format!("{}/multiarch:v1", registry())]);
    // rm sleeps 2 s at its refs.json rename (strace delays the syscall): the window, widened.
    let mut rm = strace_rename(&sb, &["rm", &busybox], "delay_enter=2000000");
    thread::sleep(Duration::from_millis(900));
    let fsck = sb.run(&["--json", "fsck"]);
    let prune = sb.run(&["--json", "prune"]);
    let (r, _) = wait_watched(&mut rm, WATCHDOG);
    assert_eq!(r.code, 0, "rm: {}", r.stderr);
    assert_eq!(
        fsck.json()["lost_references"],
        json!([]),
        "fsck during rm: {}",
        fsck.stdout
    );
    assert_eq!(fsck.code, 0, "fsck during rm: {}", fsck.stdout);
    assert_eq!(
        prune.code, 0,
        "prune during rm: {}\n{}",
        prune.stdout, prune.stderr
    );
}
