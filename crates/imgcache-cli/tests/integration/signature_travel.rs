//! Signatures go where the image goes: `serve` answers them, `push` and `sync` copy them,
//! `save --format oci` carries them and `import` under a policy takes them from such a file.
//! At each other end the signing tool's own verify is asked, and must say yes.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::*;

/// busybox:v1-oci in a private registry, signed by cosign 2 and, when the tools are here, by
/// cosign 3 and notation, with a policy whose scope requires every one of those signatures.
struct Signed {
    reg: PrivateRegistry,
    digest: String,
    pinned: String,
    keys2: CosignKeys,
    cosign3: Option<(&'static Cosign, CosignKeys)>,
    notation: Option<(NotationHome, &'static str)>,
    policy: String,
    /// How many signatures the policy keeps.
    count: usize,
}

const NOTATION_CERT: &str = "travel.example";

fn signed(sb: &Sandbox, test: &str) -> Signed {
    let (reg, m, pinned) = private_busybox();
    let keys2 = CosignKeys::generate_named(cosign2(), sb.dir.path(), "c2");
    cosign2_sign(&keys2, &pinned);
    let mut requirements = vec![
        json!({"type": "sigstoreSigned", "keyPath": keys2.pub_key, "signedIdentity": {"type": "matchRepository"}}),
    ];
    let cosign3 = cosign3(test).map(|c3| {
        let keys = CosignKeys::generate_named(c3, sb.dir.path(), "c3");
        cosign3_sign(&keys, &pinned);
        requirements.push(json!({"type": "sigstoreSigned", "keyPath": keys.pub_key, "signedIdentity": {"type": "matchRepository"}}));
        (c3, keys)
    });
    let notation = notation(test).map(|tool| {
        let home = NotationHome::new(tool, &sb.dir.path().join("notation"));
        let cert = home.generate_test_cert(NOTATION_CERT);
        home.sign(&pinned);
        requirements.push(json!({"type": "notationSigned", "trustStore": cert}));
        (home, NOTATION_CERT)
    });
    let count = requirements.len();
    let doc = json!({
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {"docker": {format!("{}/busybox", reg.addr): requirements}}
    });
    let policy = sb.dir.path().join("policy.json");
    fs::write(&policy, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    Signed {
        reg,
        digest: m.digest,
        pinned,
        keys2,
        cosign3,
        notation,
        policy: policy.display().to_string(),
        count,
    }
}

impl Signed {
    /// Pulls under the policy: every signature verified and kept.
    fn pull(&self, sb: &Sandbox) {
        let doc = sb.json(&["pull", "--policy", &self.policy, &self.pinned]);
        assert_eq!(
            doc["signed_by"].as_array().map(Vec::len),
            Some(self.count),
            "{doc}"
        );
    }

    /// Each signing tool verifies `reference` (the same image, elsewhere).
    fn assert_tools_verify(&self, reference: &str) {
        assert!(
            cosign_verify(cosign2(), &self.keys2.pub_key, reference),
            "cosign 2 verify {reference}"
        );
        if let Some((c3, keys)) = &self.cosign3 {
            assert!(
                cosign_verify(c3, &keys.pub_key, reference),
                "cosign 3 verify {reference}"
            );
        }
        if let Some((home, store)) = &self.notation {
            assert!(
                home.verify(reference, &[&format!("ca:{store}")], &["*"]),
                "notation verify {reference}"
            );
        }
    }
}

#[test]
fn serve_answers_kept_signatures_so_each_tool_verifies_through_it_with_the_origin_gone() {
    let sb = Sandbox::new();
    let mut s = signed(&sb, "serve_answers_kept_signatures");
    s.pull(&sb);
    s.reg.stop();
    let serving = Serving::start(&sb, &["--offline"]);
    let via = format!("{}/busybox@{}", serving.addr, s.digest);
    s.assert_tools_verify(&via);

    // The referrers API lists the referrers kept (cosign 3's bundle, notation's JWS), each with
    // its artifact type; a filter says it was applied.
    let referrers = |query: &str| -> (serde_json::Value, String) {
        let url = format!("{}/v2/busybox/referrers/{}{query}", serving.url, s.digest);
        let out = checked_stdout(
            std::process::Command::new("curl").args(["-sS", "-D", "/dev/stderr", &url]),
            "curl referrers",
        );
        (serde_json::from_slice(&out).unwrap(), url)
    };
    let (index, url) = referrers("");
    let listed = index["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), s.count - 1, "{url}: {index}");
    let notary = "application/vnd.cncf.notary.signature";
    if s.notation.is_some() {
        assert!(
            listed.iter().any(|d| d["artifactType"] == notary),
            "{index}"
        );
        let (filtered, _) = referrers(&format!("?artifactType={notary}"));
        assert_eq!(
            filtered["manifests"].as_array().unwrap().len(),
            1,
            "{filtered}"
        );
    }
    // A signature tag of a digest nothing signs is a 404, never asked upstream.
    let other = format!(
        "{}/v2/busybox/manifests/sha256-{}.sig",
        serving.url,
        "0".repeat(64)
    );
    let code = checked_stdout(
        std::process::Command::new("curl").args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &other,
        ]),
        "curl sig tag",
    );
    assert_eq!(String::from_utf8_lossy(&code), "404");
    let (status, log) = serving.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn push_and_sync_copy_kept_signatures_so_each_tool_verifies_at_the_destination() {
    let sb = Sandbox::new();
    let s = signed(&sb, "push_and_sync_copy_kept_signatures");
    s.pull(&sb);
    let dest = PrivateRegistry::start();
    let target = format!("{}/copied/busybox:v1", dest.addr);
    let doc = sb.json(&["push", &s.pinned, &target]);
    assert_eq!(doc["signatures_pushed"], s.count, "{doc}");
    s.assert_tools_verify(&format!("{}/copied/busybox@{}", dest.addr, s.digest));
    // Again: everything is there, nothing is put (one HEAD per signature).
    let mark = dest.mark();
    let doc = sb.json(&["push", &s.pinned, &target]);
    assert_eq!(doc["already_present"], true, "{doc}");
    assert_eq!(doc["signatures_pushed"], 0, "{doc}");
    let puts: Vec<String> = mark
        .accesses()
        .into_iter()
        .filter(|l| !l.contains("\"HEAD ") && !l.contains("\"GET /v2/ "))
        .collect();
    assert!(puts.is_empty(), "{puts:?}");

    // sync pulls under the policy into another cache and pushes the signatures along.
    let other = Sandbox::new();
    let list = other.dir.path().join("images.txt");
    fs::write(&list, format!("{}/busybox:v1-oci\n", s.reg.addr)).unwrap();
    let mirror = PrivateRegistry::start();
    let doc = other.json(&[
        "sync",
        "--policy",
        &s.policy,
        path_str(&list),
        "--to",
        &mirror.addr,
    ]);
    assert_eq!(doc["pushed"], 1, "{doc}");
    s.assert_tools_verify(&format!("{}/busybox@{}", mirror.addr, s.digest));
}

#[test]
fn save_oci_carries_kept_signatures_and_import_under_the_policy_keeps_them() {
    let sb = Sandbox::new();
    let s = signed(&sb, "save_oci_carries_kept_signatures");
    s.pull(&sb);
    let oci: PathBuf = sb.path("signed.oci.tar");
    let doc = sb.save(&s.pinned, "oci", &oci);
    assert_eq!(doc["signatures"], s.count, "{doc}");
    // Still one image to verify: the signatures are not read as images.
    let doc = sb.json(&["verify", "--deep", path_str(&oci)]);
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(image_ids(&doc["files"][0]).len(), 1, "{doc}");

    // A fresh cache imports it under the policy, signatures and all; load's check then
    // finds them, offline.
    let fresh = Sandbox::new();
    let name = format!("{}/busybox:v1-oci", s.reg.addr);
    fresh.import(&oci, &["--policy", &s.policy, "--tag", &name]);
    let verified = fresh.json(&["verify", "--signatures", "--policy", &s.policy, &name]);
    assert_eq!(
        verified["signers"].as_array().map(Vec::len),
        Some(s.count),
        "{verified}"
    );
    // (exit 1: the engine lacks the image; the cache's side is what is checked here)
    let status = fresh.json_code(&["status", &name], 1);
    assert_eq!(
        status["signatures"].as_array().map(Vec::len),
        Some(s.count),
        "{status}"
    );
    // Regression: the text of `status` named no signer.
    let text = fresh.run(&["status", &name]).stdout;
    assert!(text.contains("signed        cosign by "), "{text}");

    // A Docker archive has no place for them: the same import is refused, saying so.
    let docker: PathBuf = sb.path("signed.docker.tar");
    sb.save(&s.pinned, "docker", &docker);
    let refused = Sandbox::new();
    let run = refused.run(&[
        "import",
        "--policy",
        &s.policy,
        "--tag",
        &name,
        path_str(&docker),
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("Docker's archive formats cannot carry them"),
        "{}",
        run.stderr
    );
    assert!(refused.refs().is_empty(), "{:?}", refused.refs());
}

#[test]
fn a_signed_index_saved_as_oci_imports_with_its_index_digest_so_its_signature_is_found() {
    let sb = Sandbox::new();
    let reg = PrivateRegistry::start();
    let m = reg.copy_from_main("multiarch:v1");
    assert!(m.media_type.contains("index"), "{}", m.media_type);
    let pinned = format!("{}/multiarch@{}", reg.addr, m.digest);
    let keys = CosignKeys::generate(cosign2(), sb.dir.path());
    cosign2_sign(&keys, &pinned);
    let doc = json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {format!("{}/multiarch", reg.addr): [
            {"type": "sigstoreSigned", "keyPath": keys.pub_key, "signedIdentity": {"type": "matchRepository"}}
        ]}}
    });
    let policy = sb.path("policy.json");
    fs::write(&policy, serde_json::to_vec(&doc).unwrap()).unwrap();
    let policy = path_str(&policy);
    let name = format!("{}/multiarch:v1", reg.addr);
    let pulled = sb.json(&["pull", "--policy", policy, &name]);
    assert_eq!(pulled["signed_by"][0]["format"], "cosign", "{pulled}");
    let oci = sb.path("multiarch.oci.tar");
    let saved = sb.save(&name, "oci", &oci);
    assert_eq!(saved["signatures"], 1, "{saved}");

    let fresh = Sandbox::new();
    fresh.import(&oci, &["--policy", policy]);
    // The reference is recorded with the index the signature covers, not only the manifest.
    let ls = fresh.ls();
    assert!(ls.to_string().contains(&m.digest), "{ls}");
    let verified = fresh.json(&["verify", "--signatures", "--policy", policy, &name]);
    assert_eq!(verified["signers"][0]["format"], "cosign", "{verified}");
    fresh.assert_fsck_deep_spotless();
}

#[test]
fn push_leaves_a_destinations_own_cosign_signatures_in_place() {
    let sb = Sandbox::new();
    let (reg, m, pinned) = private_busybox();
    let ours = CosignKeys::generate_named(cosign2(), sb.dir.path(), "ours");
    cosign2_sign(&ours, &pinned);
    let policy = write_policy(
        &sb,
        &format!("{}/busybox", reg.addr),
        json!({"type": "sigstoreSigned", "keyPath": ours.pub_key}),
    );
    sb.json(&["pull", "--policy", &policy, &pinned]);
    // The destination has the image, signed there by another key.
    let dest = PrivateRegistry::start();
    dest.copy_from_main("busybox:v1-oci");
    let there = format!("{}/busybox@{}", dest.addr, m.digest);
    let theirs = CosignKeys::generate_named(cosign2(), sb.dir.path(), "theirs");
    cosign2_sign(&theirs, &there);
    let run = sb.run(&[
        "--json",
        "push",
        &pinned,
        &format!("{}/busybox:v1-oci", dest.addr),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.json()["signatures_pushed"],
        0,
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stderr.contains("holds other signatures"),
        "{}",
        run.stderr
    );
    assert!(
        cosign_verify(cosign2(), &theirs.pub_key, &there),
        "theirs kept"
    );
    assert!(!cosign_verify(cosign2(), &ours.pub_key, &there));
}

#[test]
fn a_cosign_save_layout_directory_imports_under_the_policy_with_its_signature() {
    let sb = Sandbox::new();
    let (reg, _, pinned) = private_busybox();
    let keys = CosignKeys::generate(cosign2(), sb.dir.path());
    let other = CosignKeys::generate_named(cosign2(), sb.dir.path(), "other");
    cosign2_sign(&keys, &pinned);
    let layout = sb.path("layout");
    cosign2().save_layout(&pinned, &layout);
    let scope = format!("{}/busybox", reg.addr);
    let name = format!("{scope}:v1");

    // Another key: refused, nothing recorded; the layout is left as it was.
    let p = write_policy(
        &sb,
        &scope,
        json!({"type": "sigstoreSigned", "keyPath": other.pub_key,
               "signedIdentity": {"type": "matchRepository"}}),
    );
    let before = listing(&layout.join("blobs/sha256"));
    let run = sb.run(&["import", "--policy", &p, "--tag", &name, path_str(&layout)]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("does not trust"), "{}", run.stderr);
    assert!(sb.refs().is_empty(), "{:?}", sb.refs());
    assert_eq!(listing(&layout.join("blobs/sha256")), before);

    // The signing key: imported from the directory, the signature kept and found offline.
    let p = write_policy(
        &sb,
        &scope,
        json!({"type": "sigstoreSigned", "keyPath": keys.pub_key,
               "signedIdentity": {"type": "matchRepository"}}),
    );
    sb.import(&layout, &["--policy", &p, "--tag", &name]);
    let doc = sb.json(&["verify", "--signatures", "--policy", &p, &name]);
    assert_eq!(doc["signers"][0]["format"], "cosign", "{doc}");
    // No temporary tar of the layout is left in the cache.
    assert_eq!(listing(&sb.root.join("ingest")).len(), 0);
}

#[test]
fn prune_keeps_kept_signatures_with_their_image_and_removes_them_with_it() {
    let sb = Sandbox::new();
    let (reg, _, pinned) = private_busybox();
    let keys = CosignKeys::generate(cosign2(), sb.dir.path());
    cosign2_sign(&keys, &pinned);
    let p = write_policy(
        &sb,
        &format!("{}/busybox", reg.addr),
        json!({"type": "sigstoreSigned", "keyPath": keys.pub_key}),
    );
    sb.json(&["pull", "--policy", &p, &pinned]);
    let signature = signature_material_in_store(&sb.root);
    assert!(signature.len() >= 2, "{signature:?}");
    let pruned = sb.json(&["prune"]);
    assert_eq!(pruned["blobs_removed"], 0, "{pruned:#}");
    assert_eq!(signature_material_in_store(&sb.root), signature);
    sb.json(&["verify", "--signatures", "--policy", &p, &pinned]);

    sb.json(&["rm", &pinned]);
    sb.json(&["prune"]);
    assert!(
        store_blobs(&sb.root).is_empty(),
        "{:?}",
        store_blobs(&sb.root)
    );
}

#[test]
fn a_layout_directory_whose_blob_links_outside_it_is_refused_and_nothing_outside_is_read() {
    let sb = Sandbox::new();
    let reg = PrivateRegistry::start();
    reg.copy_from_main("busybox:v1-oci");
    let name = format!("{}/busybox:v1-oci", reg.addr);
    sb.json(&["pull", &name]);
    let layout = sb.save_layout_dir(&name, "layout");
    // The largest blob (a layer) becomes a link to a file outside the layout.
    let blobs = layout.join("blobs/sha256");
    let largest = fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let outside = sb.path("outside-secret");
    fs::write(&outside, b"not for imgcache").unwrap();
    fs::remove_file(&largest).unwrap();
    std::os::unix::fs::symlink(&outside, &largest).unwrap();

    let fresh = Sandbox::new();
    let run = fresh.run(&["import", path_str(&layout)]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("{}: entry \"blobs/sha256/", layout.display())),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("links to the absolute path"),
        "{}",
        run.stderr
    );
    assert!(fresh.refs().is_empty(), "{:?}", fresh.refs());
    assert!(
        !store_blobs(&fresh.root).contains(&digest_of(b"not for imgcache")),
        "a file outside the layout reached the store"
    );
    assert_eq!(listing(&fresh.root.join("ingest")).len(), 0);
}

#[test]
fn fsck_repair_after_a_lost_index_records_the_kept_signatures_again_so_prune_keeps_them() {
    let sb = Sandbox::new();
    let s = signed(&sb, "fsck_repair_records_the_kept_signatures");
    s.pull(&sb);
    let kept = signature_material_in_store(&sb.root);
    // The index is gone (refs.json is kept beside it): references and images come back from
    // the blobs, and so must the signatures.
    for f in ["index.db", "index.db-wal", "index.db-shm"] {
        let _ = fs::remove_file(sb.root.join(f));
    }
    let doc = sb.json_code(&["fsck", "--repair"], 0);
    let restored = doc["repaired"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.as_str().unwrap().contains("signature"))
        .count();
    assert_eq!(restored, s.count, "{doc:#}");
    sb.json(&["prune"]);
    assert_eq!(signature_material_in_store(&sb.root), kept);
    let verified = sb.json(&["verify", "--signatures", "--policy", &s.policy, &s.pinned]);
    assert_eq!(
        verified["signers"].as_array().map(Vec::len),
        Some(s.count),
        "{verified}"
    );
}

/// A signed OCI save lists the signatures beside the image, and `podman load` reads a file of
/// one manifest only. Podman picks the image by the tag a save by tag names it with; and
/// `--no-signatures` writes the one-manifest file `podman load` takes.
/// Regression: the README said podman picks the image by name, untested; the hint now printed
/// is checked here.
#[test]
fn a_signed_oci_save_reaches_podman_by_its_tag_or_without_its_signatures() {
    let sb = Sandbox::new();
    let s = signed(&sb, "a_signed_oci_save_reaches_podman");
    let tagged = s.reg.reference("busybox:v1-oci");
    sb.json(&["pull", "--policy", &s.policy, &tagged]);
    let busybox_id = sb.json(&["inspect", &tagged])["image_id"].clone();
    let index_of = |file: &Path| -> Value {
        let raw = checked_stdout(
            std::process::Command::new("tar").args(["-xOf", path_str(file), "index.json"]),
            "tar -xO index.json",
        );
        serde_json::from_slice(&raw).unwrap()
    };

    let signed_file = sb.path("signed.oci.tar");
    let text = sb
        .run(&[
            "save",
            &tagged,
            "-o",
            path_str(&signed_file),
            "--format",
            "oci",
        ])
        .ok("save --format oci");
    let hint = format!("podman pull oci-archive:{}:v1-oci", signed_file.display());
    assert!(text.stdout.contains(&hint), "{}", text.stdout);
    let manifests = index_of(&signed_file)["manifests"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(manifests, 1 + s.count, "the image and each signature");
    let store = PodmanStore::new(&sb.path("podman-signed"));
    let pulled = store
        .run(&[
            "pull",
            &format!("oci-archive:{}:v1-oci", path_str(&signed_file)),
        ])
        .ok("podman pull oci-archive:FILE:TAG");
    assert_eq!(
        format!("sha256:{}", pulled.stdout.trim()),
        busybox_id.as_str().unwrap(),
        "{}",
        pulled.stderr
    );

    let plain = sb.path("plain.oci.tar");
    let doc = sb.json(&[
        "save",
        &tagged,
        "-o",
        path_str(&plain),
        "--format",
        "oci",
        "--no-signatures",
    ]);
    assert_eq!(doc["signatures"], 0, "{doc}");
    assert_eq!(index_of(&plain)["manifests"].as_array().unwrap().len(), 1);
    let store = PodmanStore::new(&sb.path("podman-plain"));
    let loaded = store
        .run(&["load", "-i", path_str(&plain)])
        .ok("podman load");
    assert!(loaded.stdout.contains("Loaded image"), "{}", loaded.stdout);
    let got = store
        .run(&["image", "inspect", "--format", "{{.Id}}", &tagged])
        .ok("podman image inspect");
    assert_eq!(
        format!("sha256:{}", got.stdout.trim()),
        busybox_id.as_str().unwrap()
    );
}
