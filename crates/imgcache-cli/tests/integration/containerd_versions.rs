//! The `imgcache` binary against containerd 1.7 and 2.1 (the shared daemons of
//! `scripts/testenv/newer-engines.sh`, each with its own `ctr`), in namespace k8s.io and in a
//! namespace of the test's own: the status / load / already present / re-tag flow of
//! `engines`; `ctr images export` of a pulled image imported (`imgcache import`) under the
//! image ID containerd reports, and verified deep; `imgcache save` imported with `ctr images
//! import` under the digests the cache names. imgcache imports into the daemons' snapshotter
//! (`CONTAINERD_SNAPSHOTTER`; with ctr 2.x through `--local`), and the layers are unpacked there.
//!
//! containerd 2.1 comes from Debian sid: when newer-engines.sh could not fetch it,
//! `NEWER_SKIP_CONTAINERD21` says why and its tests print `SKIP <test>: <reason>` and pass. 1.7
//! is required. The daemons are shared, so every image is new (a repository of its own) and a
//! guard removes the records a test made (and its own namespace) when it ends.

use serde_json::json;

use crate::engines::{Engine, load, push_fresh_image, status, status_load_reload_retag};
use crate::support::*;

/// Whether containerd `version` is missing (2.1 from sid, when it could not be fetched): then
/// a visible SKIP line for `test`.
fn skipped(test: &str, version: &str) -> bool {
    let why = env()
        .vars
        .get("NEWER_SKIP_CONTAINERD21")
        .filter(|_| version == "21");
    if let Some(why) = why {
        eprintln!("SKIP {test}: {why}");
    }
    why.is_some()
}

/// A flow run against one shared daemon and namespace, with a fresh image.
type Flow = fn(&Sandbox, &Engine, &Image);

/// Runs `flow` against the shared containerd `version` (`17`, `21`) in `namespace` (`None`: one
/// unique to the test), through imgcache's logging `ctr` wrapper; a visible SKIP when 2.1 is
/// not there.
fn on_shared(test: &str, version: &str, namespace: Option<&str>, flow: Flow) {
    if skipped(test, version) {
        return;
    }
    let c = Sandbox::new();
    let p = push_fresh_image(&format!("c{version}"));
    let own = format!("imgcache-cli-{}", p.repo);
    let ns = namespace.unwrap_or(&own);
    let e = Engine::shared_containerd(&c, Ctr::shared(version, ns), &p.repo, namespace.is_none());
    if namespace.is_none() {
        assert_eq!(e.ctr().records(), vec![], "{ns} holds records already");
    }
    flow(&c, &e, &p);
}

/// The flow of `engines`; the one import ran in the daemons' snapshotter (ctr 2.x: `--local`),
/// where the layers are unpacked.
fn status_load_reload_retag_into_the_snapshotter(c: &Sandbox, e: &Engine, p: &Image) {
    let m = e.mark();
    status_load_reload_retag(c, e, p);
    let commands = e.commands_since(m);
    let imports: Vec<&String> = commands
        .iter()
        .filter(|l| l.contains("images import"))
        .collect();
    assert_eq!(imports.len(), 1, "{commands:#?}");
    let local = imports[0].split_whitespace().any(|a| a == "--local");
    assert_eq!(local, e.ctr().major() >= 2, "{commands:#?}");
    assert!(e.ctr().unpacked(&p.diff_ids), "not unpacked: {commands:#?}");
}

/// `ctr images pull` then `ctr images export` (the real ctr): `imgcache import` of the file
/// records the image ID containerd reports, `verify --deep` passes, no engine is asked.
fn ctr_export_imports_under_the_containerd_image_id(c: &Sandbox, e: &Engine, p: &Image) {
    let r = p.reference.as_str();
    e.ctr()
        .run(&["images", "pull", "--plain-http", r])
        .ok("ctr images pull");
    let top = e.ctr().listed(r).expect("pulled record");
    assert_eq!(top, p.manifest_digest);
    let id = e.id_of(r).unwrap();
    assert_eq!(id, p.config_digest);
    let file = c.path("export.tar");
    // `--local` (ctr 1.7+): ctr 2.1's export through the transfer service sometimes ends its
    // file early (seen here: a tar cut at 8 KiB, and ctr exiting 0).
    e.ctr()
        .run(&["images", "export", "--local", path_str(&file), r])
        .ok("ctr images export");

    let m = e.mark();
    let doc = c.import(&file, &[]);
    assert_eq!(image_ids(&doc), [id.as_str()], "{doc:#}");
    assert_eq!(doc["images"][0]["manifest_digest"], top, "{doc:#}");
    assert_eq!(doc["images"][0]["references"], json!([r]), "{doc:#}");
    assert_eq!(c.json(&["inspect", r])["image_id"], id);
    let v = c.json(&["verify", "--deep", "--no-memo", path_str(&file)]);
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(image_ids(&v["files"][0]), [id.as_str()], "{v:#}");
    assert_eq!(e.commands_since(m), Vec::<String>::new());
    c.assert_fsck_deep_spotless();
}

/// `imgcache save REF -o FILE`, then `ctr images import` with the daemons' snapshotter: the
/// record points at the manifest the cache names, whose config is the cached image ID.
fn save_imports_with_ctr_under_the_cached_digests(c: &Sandbox, e: &Engine, p: &Image) {
    let r = p.reference.as_str();
    let id = c.pull_image_id(r);
    assert_eq!(id, p.config_digest);
    let manifest = c.json(&["inspect", r])["manifest_digest"].clone();
    assert_eq!(manifest, p.manifest_digest.as_str());
    let file = c.path("save.tar");
    let m = e.mark();
    let doc = c.json(&["save", r, "-o", path_str(&file)]);
    assert_eq!(doc["ok"], true, "{doc:#}");
    assert_eq!(e.commands_since(m), Vec::<String>::new());

    let (top, config) = e.ctr().import(&file, r);
    assert_eq!(top, manifest);
    assert_eq!(config, id);
    assert!(e.ctr().unpacked(&p.diff_ids), "not unpacked");
    // imgcache sees it there, present and tagged, and a load sends nothing.
    let doc = status(c, e, r, 0);
    assert_eq!(doc["engine"]["tagged"], true, "{doc:#}");
    assert_eq!(doc["engine"]["engine_id"], manifest, "{doc:#}");
    let m = e.mark();
    assert_eq!(load(c, e, r)["action"], "already-present");
    assert_eq!(e.activity(m, &id), Vec::<String>::new());
}

/// The four tests of `flow`: containerd 1.7 and 2.1, each in k8s.io and in a namespace of the
/// test's own (`None`).
macro_rules! on_both_daemons {
    ($flow:ident: $c17_k8s:ident, $c17_own:ident, $c21_k8s:ident, $c21_own:ident) => {
        on_both_daemons!(@one $flow, $c17_k8s, "17", Some("k8s.io"));
        on_both_daemons!(@one $flow, $c17_own, "17", None);
        on_both_daemons!(@one $flow, $c21_k8s, "21", Some("k8s.io"));
        on_both_daemons!(@one $flow, $c21_own, "21", None);
    };
    (@one $flow:ident, $test:ident, $version:literal, $namespace:expr) => {
        #[test]
        fn $test() {
            on_shared(stringify!($test), $version, $namespace, $flow);
        }
    };
}

on_both_daemons! {
    status_load_reload_retag_into_the_snapshotter:
    containerd17_k8s_io_status_load_reload_retag,
    containerd17_own_namespace_status_load_reload_retag,
    containerd21_k8s_io_status_load_reload_retag,
    containerd21_own_namespace_status_load_reload_retag
}

on_both_daemons! {
    ctr_export_imports_under_the_containerd_image_id:
    containerd17_k8s_io_ctr_export_imports_under_the_containerd_image_id,
    containerd17_own_namespace_ctr_export_imports_under_the_containerd_image_id,
    containerd21_k8s_io_ctr_export_imports_under_the_containerd_image_id,
    containerd21_own_namespace_ctr_export_imports_under_the_containerd_image_id
}

on_both_daemons! {
    save_imports_with_ctr_under_the_cached_digests:
    containerd17_k8s_io_save_imports_with_ctr_under_the_cached_digests,
    containerd17_own_namespace_save_imports_with_ctr_under_the_cached_digests,
    containerd21_k8s_io_save_imports_with_ctr_under_the_cached_digests,
    containerd21_own_namespace_save_imports_with_ctr_under_the_cached_digests
}

/// An upgrade: v2 shares v1's first two layers (a 4 MiB one first, as a base image's). With v1
/// loaded, the archive `ctr images import` is given for v2 holds v2's new layer and not the
/// blobs the namespace's content store has; v2 is there afterwards, unpacked.
fn load_of_a_new_version_leaves_out_the_blobs_containerd_holds(test: &str, version: &str) {
    if skipped(test, version) {
        return;
    }
    let c = Sandbox::new();
    let name = unique_name(&format!("c{version}-upgrade"));
    let (base, small) = (layer(4 << 20), layer(16 << 10));
    let v1 = push_image(&format!("{name}-v1"), &[base.clone(), small.clone()]);
    let new = layer(16 << 10);
    let v2 = push_image(&format!("{name}-v2"), &[base.clone(), small, new.clone()]);
    // The wrapper keeps what each import reads.
    let kept = c.path("imports");
    std::fs::create_dir_all(&kept).unwrap();
    let hook = format!(
        "case \" $* \" in *\" images import \"*) f='{}'/$(date +%s%N).tar; cat >\"$f\"; exec 'REAL' \"$@\" <\"$f\";; esac",
        path_str(&kept)
    );
    let e = Engine::shared_containerd_with(&c, Ctr::shared(version, "k8s.io"), &name, false, &hook);
    for img in [&v1, &v2] {
        assert_eq!(load(&c, &e, &img.reference)["action"], "loaded");
        assert_eq!(
            e.id_of(&img.reference).as_deref(),
            Some(img.config_digest.as_str())
        );
    }
    assert!(e.ctr().unpacked(&v2.diff_ids), "v2 not unpacked");
    let mut imports: Vec<_> = std::fs::read_dir(&kept)
        .unwrap()
        .map(|d| d.unwrap().path())
        .collect();
    imports.sort();
    assert_eq!(imports.len(), 2, "{imports:?}");
    let blobs = |path: &std::path::Path| -> Vec<String> {
        let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
        (a.entries().unwrap())
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .filter_map(|n| {
                n.strip_prefix("blobs/sha256/")
                    .map(|h| format!("sha256:{h}"))
            })
            .collect()
    };
    assert!(
        blobs(&imports[0]).contains(&base.digest),
        "v1 went without its base layer"
    );
    let for_v2 = blobs(&imports[1]);
    assert!(for_v2.contains(&new.digest), "{for_v2:?}");
    assert!(
        !for_v2.contains(&base.digest),
        "v2's archive holds the base layer: {for_v2:?}"
    );
    assert!(std::fs::metadata(&imports[1]).unwrap().len() < 1 << 20);
}

#[test]
fn containerd17_load_of_a_new_version_leaves_out_the_blobs_containerd_holds() {
    load_of_a_new_version_leaves_out_the_blobs_containerd_holds(
        "containerd17_load_of_a_new_version_leaves_out_the_blobs_containerd_holds",
        "17",
    );
}

#[test]
fn containerd21_load_of_a_new_version_leaves_out_the_blobs_containerd_holds() {
    load_of_a_new_version_leaves_out_the_blobs_containerd_holds(
        "containerd21_load_of_a_new_version_leaves_out_the_blobs_containerd_holds",
        "21",
    );
}
