//! `docker save` output of the engines users run today: dockerd 26.1 (classic store:
//! uncompressed layers) and dockerd 28.x (containerd image store: layers as pulled, gzip, and
//! `index.json` naming the pulled index), made by `scripts/testenv/make-newer-fixtures.sh` and
//! listed in `BASE/newer-fixtures/newer-fixtures.tsv` with their image IDs computed without the
//! project's code (tar + sha256sum, skopeo, the engine, the registry).
//!
//! For every archive: `verify` (fast, and deep without the memo) and `inspect` report the
//! `docker-combined` dialect and exactly the recorded image IDs and tags; `--image` picks an
//! image by its tag as `manifest.json` writes it; `import` into a sandboxed cache stores each
//! image under its ID (`ls`, `inspect REF`, `verify REF`, `fsck`).
//!
//! dockerd 28's save of a multi-platform image of which it holds only this host's platform (what
//! a plain `docker pull` leaves) names the whole index, but only this platform's manifest is in
//! the file: the platform present is read, and each absent one is a warning naming its entry
//! (imgcache refused such archives as a whole before; see
//! [`a_docker_28_save_of_an_index_holding_only_this_platform_is_read_not_refused`]).
//!
//! When newer-engines.sh could not provide dockerd 28, the script says so in `skipped.tsv`, and
//! the dockerd 28 tests print `SKIP <test>: <reason>` and return.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

use crate::support::*;

const SCRIPT: &str = "scripts/testenv/make-newer-fixtures.sh";

/// One row of `newer-fixtures.tsv`.
#[derive(Debug)]
struct Saved {
    file: PathBuf,
    producer: String,
    image_ids: Vec<String>,
    /// `manifest.json` RepoTags as docker wrote them (`busybox:x`, not `docker.io/...`).
    tags: Vec<String>,
    /// `dockerd=VERSION store=classic|containerd driver=DRIVER`
    engine: String,
}

impl Saved {
    fn store(&self) -> &str {
        self.engine
            .split(' ')
            .find_map(|kv| kv.strip_prefix("store="))
            .unwrap_or_else(|| panic!("{}: no store= in engine {:?}", self.producer, self.engine))
    }

    /// What the layers of this engine's saves are: as stored by the classic store
    /// (uncompressed), as pulled by the containerd store (the registry's gzip).
    fn layer_compression(&self) -> &'static str {
        match self.store() {
            "classic" => "none",
            "containerd" => "gzip",
            s => panic!("{}: unknown store {s}", self.producer),
        }
    }

    /// The tags as imgcache records them.
    fn references(&self) -> BTreeSet<String> {
        self.tags.iter().map(|t| normalize(t)).collect()
    }

    fn path(&self) -> &str {
        path_str(&self.file)
    }

    /// The recorded image IDs, sorted: dockerd 26 lists the images of a multi-image save in no
    /// fixed order (see make-newer-fixtures.sh), so IDs are compared as sets.
    fn sorted_ids(&self) -> Vec<String> {
        sorted(&self.image_ids)
    }

    fn host_only(&self) -> bool {
        self.producer.ends_with("-host-only")
    }
}

struct Newer {
    rows: Vec<Saved>,
    /// engine ("dockerd28") -> why make-newer-fixtures.sh made none of its saves
    skipped: BTreeMap<String, String>,
}

fn newer() -> &'static Newer {
    static N: OnceLock<Newer> = OnceLock::new();
    N.get_or_init(|| {
        let base = env()
            .vars
            .get("IMGCACHE_TESTENV")
            .cloned()
            .unwrap_or_else(|| "/tmp/imgcache-testenv".into());
        let dir = PathBuf::from(&base).join("newer-fixtures");
        let read = |name: &str| {
            let p = dir.join(name);
            fs::read_to_string(&p).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}. Run {SCRIPT} {base} first (after scripts/testenv/newer-engines.sh up {base})",
                    p.display()
                )
            })
        };
        let split = |s: &str| -> Vec<String> {
            if s == "-" || s.is_empty() {
                Vec::new()
            } else {
                s.split(',').map(str::to_owned).collect()
            }
        };
        let rows = read("newer-fixtures.tsv")
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let c: Vec<&str> = l.split('\t').collect();
                assert_eq!(c.len(), 5, "newer-fixtures.tsv: {l:?}");
                Saved {
                    file: dir.join(c[0]),
                    producer: c[1].to_owned(),
                    image_ids: split(c[2]),
                    tags: split(c[3]),
                    engine: c[4].to_owned(),
                }
            })
            .collect();
        let skipped = read("skipped.tsv")
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once('\t'))
            .map(|(e, why)| (e.to_owned(), why.to_owned()))
            .collect();
        Newer { rows, skipped }
    })
}

/// The saves of `engine` ("dockerd26", "dockerd28") that `pick` selects, or `None` (after a
/// `SKIP test: reason` line) when make-newer-fixtures.sh could not make them.
fn saves(engine: &str, test: &str, pick: impl Fn(&Saved) -> bool) -> Option<Vec<&'static Saved>> {
    let n = newer();
    if let Some(why) = n.skipped.get(engine) {
        eprintln!("SKIP {test}: {engine}: {why}");
        return None;
    }
    let rows: Vec<&Saved> = n
        .rows
        .iter()
        .filter(|r| r.producer.starts_with(&format!("{engine}-")) && pick(r))
        .collect();
    assert!(
        !rows.is_empty(),
        "newer-fixtures.tsv has no {engine} save for {test}, and skipped.tsv does not say why"
    );
    Some(rows)
}

/// A reference as imgcache records it: Docker's normalization (docker.io, library/).
fn normalize(r: &str) -> String {
    match r.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => r.to_owned(),
        Some(_) => format!("docker.io/{r}"),
        None => format!("docker.io/library/{r}"),
    }
}

fn sorted<S: AsRef<str>>(v: &[S]) -> Vec<String> {
    let mut out: Vec<String> = v.iter().map(|s| s.as_ref().to_owned()).collect();
    out.sort();
    out
}

fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    format!("linux/{arch}")
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

/// Every tag of the images of `file` (a verify or inspect document).
fn tags_of(file: &Value) -> BTreeSet<String> {
    file["images"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| strs(&i["tags"]).into_iter().map(str::to_owned))
        .collect()
}

/// Each image has a tag when the archive records any (none when saved by digest), and together
/// they are the recorded ones.
fn assert_tags(fx: &Saved, file: &Value, ctx: &str) {
    assert_eq!(tags_of(file), fx.references(), "{ctx}: tags\n{file:#}");
    for img in file["images"].as_array().unwrap() {
        assert_eq!(
            img["tags"].as_array().unwrap().is_empty(),
            fx.tags.is_empty(),
            "{ctx}: tags of {}",
            img["image_id"]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The checks, one archive at a time

/// `verify FILE --json` (fast) and `verify --deep --no-memo FILE --json`.
fn check_verify(fx: &Saved) {
    let s = Sandbox::new();
    for deep in [false, true] {
        let mut args = vec!["verify", fx.path()];
        if deep {
            args.extend(["--deep", "--no-memo"]);
        }
        let ctx = format!("{} {args:?}", fx.producer);
        let doc = s.json(&args);
        assert_eq!(doc["ok"], true, "{ctx}\n{doc:#}");
        assert_eq!(doc["level"], if deep { "deep" } else { "fast" }, "{ctx}");
        let files = doc["files"].as_array().unwrap();
        assert_eq!(files.len(), 1, "{ctx}\n{doc:#}");
        let f = &files[0];
        assert_eq!(f["ok"], true, "{ctx}\n{f:#}");
        assert_eq!(f["dialect"], "docker-combined", "{ctx}");
        assert_eq!(f["compression"], "none", "{ctx}");
        assert!(f["error"].is_null(), "{ctx}\n{f:#}");
        assert_absent_platforms_warned(fx, &f["warnings"], &ctx);
        assert!(f.get("remembered").is_none(), "{ctx}: --no-memo\n{f:#}");
        assert_eq!(
            sorted(&image_ids(f)),
            fx.sorted_ids(),
            "{ctx}: image IDs\n{f:#}"
        );
        assert_tags(fx, f, &ctx);
        for img in f["images"].as_array().unwrap() {
            let id = &img["image_id"];
            assert_eq!(img["ok"], true, "{ctx}: {id}\n{img:#}");
            assert_eq!(
                img["failures"].as_array().unwrap().len(),
                0,
                "{ctx}: {id}\n{img:#}"
            );
            assert_eq!(
                img["warnings"].as_array().unwrap().len(),
                0,
                "{ctx}: {id}\n{img:#}"
            );
            assert!(
                img["platform"]["os"].is_string(),
                "{ctx}: {id}: platform\n{img:#}"
            );
            let layers = img["layers"].as_array().unwrap();
            assert!(!layers.is_empty(), "{ctx}: {id}");
            assert_eq!(img["layer_count"], layers.len(), "{ctx}: {id}");
            for l in layers {
                assert_eq!(l["compression"], fx.layer_compression(), "{ctx}: {id}: {l}");
                assert!(
                    l["entry"].as_str().unwrap().starts_with("blobs/sha256/"),
                    "{ctx}: {id}: {l}"
                );
            }
        }
    }
}

/// `verify --image TAG FILE`, with each tag as `manifest.json` writes it: picks the images
/// carrying it (normalized), all valid.
fn check_image_selection(fx: &Saved) {
    let s = Sandbox::new();
    for tag in &fx.tags {
        let ctx = format!("{} verify --image {tag}", fx.producer);
        let doc = s.json(&["verify", "--image", tag, fx.path()]);
        assert_eq!(doc["ok"], true, "{ctx}\n{doc:#}");
        let f = &doc["files"][0];
        let picked = f["images"].as_array().unwrap();
        assert!(!picked.is_empty(), "{ctx}\n{f:#}");
        for img in picked {
            assert!(
                strs(&img["tags"]).contains(&normalize(tag).as_str()),
                "{ctx}: picked an image without the tag\n{img:#}"
            );
            assert!(
                fx.image_ids.iter().any(|id| img["image_id"] == id.as_str()),
                "{ctx}\n{img:#}"
            );
        }
    }
    if let [id] = fx.image_ids.as_slice() {
        let doc = s.json(&["verify", "--expect", id, fx.path()]);
        assert_eq!(doc["ok"], true, "{} --expect {id}\n{doc:#}", fx.producer);
    }
}

/// `inspect FILE --json`.
fn check_inspect(fx: &Saved) {
    let s = Sandbox::new();
    let ctx = format!("{} inspect", fx.producer);
    let doc = s.json(&["inspect", fx.path()]);
    assert_eq!(doc["dialect"], "docker-combined", "{ctx}\n{doc:#}");
    assert_eq!(doc["compression"], "none", "{ctx}");
    assert_absent_platforms_warned(fx, &doc["warnings"], &ctx);
    assert_eq!(
        sorted(&image_ids(&doc)),
        fx.sorted_ids(),
        "{ctx}: image IDs\n{doc:#}"
    );
    assert_tags(fx, &doc, &ctx);
    let images = doc["images"].as_array().unwrap();
    let mut layers = 0;
    for img in images {
        let id = img["image_id"].as_str().unwrap();
        assert_eq!(img["claimed_image_id"], id, "{ctx}\n{img:#}");
        assert_eq!(
            img["config_entry"],
            format!("blobs/sha256/{}", hex(id)),
            "{ctx}\n{img:#}"
        );
        assert!(
            img["manifest_digest"]
                .as_str()
                .is_some_and(|d| d.starts_with("sha256:") && d.len() == 71),
            "{ctx}: manifest_digest\n{img:#}"
        );
        assert_eq!(
            img["problems"].as_array().unwrap().len(),
            0,
            "{ctx}\n{img:#}"
        );
        layers += img["layers"].as_array().unwrap().len();
    }
    assert_eq!(doc["totals"]["images"], images.len(), "{ctx}");
    assert_eq!(doc["totals"]["layers"], layers, "{ctx}");
    assert_eq!(
        doc["totals"]["file_bytes"],
        fs::metadata(&fx.file).unwrap().len(),
        "{ctx}"
    );
}

/// `import FILE` into an empty cache: every image under its ID, recorded under its tags (under
/// its ID when it has none); `ls`, `inspect REF`, `verify REF` and `fsck` agree.
fn check_import(fx: &Saved) {
    let s = Sandbox::new();
    let ctx = format!("{} import", fx.producer);
    let doc = s.import(&fx.file, &[]);
    let images = doc["images"].as_array().unwrap();
    let ids: Vec<&str> = images
        .iter()
        .map(|i| i["image_id"].as_str().unwrap())
        .collect();
    assert_eq!(sorted(&ids), fx.sorted_ids(), "{ctx}\n{doc:#}");
    let mut want: BTreeSet<(String, String)> = BTreeSet::new();
    for img in images {
        let id = img["image_id"].as_str().unwrap();
        let refs = strs(&img["references"]);
        if fx.tags.is_empty() {
            assert_eq!(
                refs,
                [id],
                "{ctx}: an image without tags is recorded under its ID"
            );
        } else {
            assert!(!refs.is_empty(), "{ctx}: {id} has no reference\n{doc:#}");
            assert!(
                refs.iter().all(|r| fx.references().contains(*r)),
                "{ctx}: {id}: {refs:?}, tags {:?}",
                fx.tags
            );
        }
        want.extend(refs.iter().map(|r| (r.to_string(), id.to_owned())));
    }
    if !fx.tags.is_empty() {
        let recorded: BTreeSet<String> = want.iter().map(|(r, _)| r.clone()).collect();
        assert_eq!(
            recorded,
            fx.references(),
            "{ctx}: every tag recorded\n{doc:#}"
        );
    }
    for id in &fx.image_ids {
        assert_eq!(
            digest_of(&s.blob(id)),
            *id,
            "{ctx}: the config stored as {id}"
        );
    }
    let listed: BTreeSet<(String, String)> = s.refs_with_ids_at(&s.root).into_iter().collect();
    assert_eq!(listed, want, "{ctx}: ls");
    // A reference with several platform images (an index): inspect REF answers for this host.
    let mut by_ref: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (r, id) in &want {
        by_ref.entry(r).or_default().push(id);
    }
    let rows = s.ls_rows();
    for (r, ids) in &by_ref {
        let got = s.json(&["inspect", r]);
        let id = got["image_id"].as_str().unwrap();
        assert!(
            ids.contains(&id),
            "{ctx}: inspect {r}: {id}, not one of {ids:?}"
        );
        if ids.len() > 1 {
            assert_eq!(
                got["platform"],
                host_platform(),
                "{ctx}: inspect {r}\n{got:#}"
            );
        }
        assert!(
            rows.contains(&(
                r.to_string(),
                id.to_owned(),
                got["platform"].as_str().unwrap().to_owned()
            )),
            "{ctx}: inspect {r} is not what ls lists\n{got:#}\n{rows:?}"
        );
        let v = s.json(&["verify", r]);
        assert_eq!(v["ok"], true, "{ctx}: verify {r}\n{v:#}");
        assert_eq!(v["image"]["image_id"], id, "{ctx}: verify {r}");
    }
    for id in &fx.image_ids {
        let got = s.json(&["inspect", id]);
        assert_eq!(got["image_id"], id.as_str(), "{ctx}: inspect {id}\n{got:#}");
    }
    s.assert_fsck_clean(&["--deep"]);
    s.assert_no_ingest();
}

fn check_all(fx: &Saved) {
    eprintln!(
        "{}: {} ({})",
        fx.producer,
        fx.image_ids.join(","),
        fx.engine
    );
    check_verify(fx);
    check_image_selection(fx);
    check_inspect(fx);
    check_import(fx);
}

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
fn dockerd26_saves_verify_inspect_and_import_under_the_recorded_ids() {
    let Some(rows) = saves(
        "dockerd26",
        "dockerd26_saves_verify_inspect_and_import_under_the_recorded_ids",
        |_| true,
    ) else {
        return;
    };
    for want in [
        "dockerd26-save-tag",
        "dockerd26-save-digest",
        "dockerd26-save-multi",
    ] {
        assert!(
            rows.iter().any(|r| r.producer == want),
            "no {want} in newer-fixtures.tsv"
        );
    }
    for fx in rows {
        assert_eq!(fx.store(), "classic", "{fx:?}");
        check_all(fx);
    }
}

#[test]
fn dockerd28_saves_verify_inspect_and_import_under_the_recorded_ids() {
    let test = "dockerd28_saves_verify_inspect_and_import_under_the_recorded_ids";
    let Some(rows) = saves("dockerd28", test, |r| !r.host_only()) else {
        return;
    };
    for want in [
        "dockerd28-save-tag",
        "dockerd28-save-digest",
        "dockerd28-save-index-all",
        "dockerd28-save-platform-other",
        "dockerd28-save-multi",
    ] {
        assert!(
            rows.iter().any(|r| r.producer == want),
            "no {want} in newer-fixtures.tsv"
        );
    }
    for fx in rows {
        assert_eq!(fx.store(), "containerd", "{fx:?}");
        check_all(fx);
    }
}

/// dockerd 28's save of an index of which it holds one platform: the platform present
/// verifies (fast and deep) and imports under its ID; the absent ones are warnings, not images.
#[test]
fn a_docker_28_save_of_an_index_holding_only_this_platform_is_read_not_refused() {
    let test = "a_docker_28_save_of_an_index_holding_only_this_platform_is_read_not_refused";
    let Some(rows) = saves("dockerd28", test, Saved::host_only) else {
        return;
    };
    for fx in rows {
        assert_eq!(absent_manifests(fx).len(), 1, "{}", fx.producer);
        check_all(fx);
    }
}

/// The manifest digests an archive's index.json names through nested indexes, whose blob is not
/// in the archive.
fn absent_manifests(fx: &Saved) -> Vec<String> {
    let entries = read_tar(&fx.file);
    let blob = |d: &str| {
        entries
            .iter()
            .find(|e| e.name == format!("blobs/sha256/{}", hex(d)))
            .map(|e| e.data.clone())
    };
    let index: Value = serde_json::from_slice(&entry(&entries, "index.json").data).unwrap();
    let mut absent = Vec::new();
    for top in index["manifests"].as_array().unwrap() {
        let nested: Value =
            serde_json::from_slice(&blob(top["digest"].as_str().unwrap()).unwrap()).unwrap();
        for child in nested["manifests"].as_array().into_iter().flatten() {
            let d = child["digest"].as_str().unwrap();
            if blob(d).is_none() {
                absent.push(d.to_owned());
            }
        }
    }
    absent
}

/// The file-level warnings of `verify`/`inspect`: one `missing-entry` per platform manifest the
/// archive's index names but does not hold (none for a complete archive).
fn assert_absent_platforms_warned(fx: &Saved, warnings: &Value, ctx: &str) {
    let got: BTreeSet<String> = warnings
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            assert_eq!(w["check"], "missing-entry", "{ctx}: {w:#}");
            let msg = w["message"].as_str().unwrap();
            assert!(msg.contains("is not in the archive"), "{ctx}: {w:#}");
            w["entry"].as_str().unwrap().to_owned()
        })
        .collect();
    let want: BTreeSet<String> = if fx.host_only() {
        absent_manifests(fx)
            .iter()
            .map(|d| format!("blobs/sha256/{}", hex(d)))
            .collect()
    } else {
        BTreeSet::new()
    };
    assert_eq!(got, want, "{ctx}: warnings\n{warnings:#}");
}
