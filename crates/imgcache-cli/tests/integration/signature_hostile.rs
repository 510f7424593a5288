//! Hostile signature artifacts at a real registry: a `.sig` tag naming a blob of 1 GiB, a
//! signature blob far larger than its descriptor says, a blob whose bytes are not its digest,
//! 100 layers, garbage in the signature annotation, a referrers index of 5000 entries, and a
//! referrer of another subject. Each is pushed by hand (raw HTTP) to a Debian docker-registry
//! of the test's own, then `imgcache pull --policy P` runs under a `sigstoreSigned` policy:
//! the exit code, a message naming what is wrong, nothing stored, what the registry was asked
//! for (its access log), and, for the big cases, the peak RSS against a refused pull that
//! found no signature at all.
//!
//! Every case is a refusal, exit 1: an artifact that cannot be read (over the caps, lying
//! about its blobs) counts as one rejected signature with its reason, and a good signature
//! beside it still counts.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::*;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const COSIGN_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const IN_TOTO: &str = "application/vnd.in-toto+json";
/// Head room over a refused pull that read no signature: far less than any blob below.
const RSS_MARGIN_KIB: u64 = 32 * 1024;

// ---- a registry written to by hand -----------------------------------------------------------

/// One HTTP/1.1 exchange (`Connection: close`): status, head, body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, raw[end + 4..].to_vec())
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
}

/// Uploads `data` (POST, then PUT ?digest=); its digest.
fn put_blob(addr: &str, repo: &str, data: &[u8]) -> String {
    let digest = digest_of(data);
    let (status, head, body) = http(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        None,
        b"",
    );
    assert_eq!(status, 202, "{head}\n{}", String::from_utf8_lossy(&body));
    let location = header(&head, "location").expect("Location");
    let path = match location.find("://") {
        Some(i) => location[i + 3..]
            .find('/')
            .map(|j| location[i + 3 + j..].to_owned())
            .unwrap(),
        None => location,
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    let (status, head, body) = http(
        addr,
        "PUT",
        &format!("{path}{sep}digest={digest}"),
        Some("application/octet-stream"),
        data,
    );
    assert_eq!(status, 201, "{head}\n{}", String::from_utf8_lossy(&body));
    digest
}

/// PUTs a manifest or index under `tag` (or its digest); its digest.
fn put_manifest(addr: &str, repo: &str, tag: &str, media_type: &str, doc: &Value) -> String {
    let bytes = serde_json::to_vec(doc).unwrap();
    let (status, head, body) = http(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        Some(media_type),
        &bytes,
    );
    assert_eq!(status, 201, "{head}\n{}", String::from_utf8_lossy(&body));
    digest_of(&bytes)
}

fn descriptor(media_type: &str, digest: &str, size: u64) -> Value {
    json!({"mediaType": media_type, "digest": digest, "size": size})
}

/// Where a private registry keeps the bytes of blob `digest` (filesystem storage).
fn stored_blob_path(reg: &PrivateRegistry, digest: &str) -> PathBuf {
    let data = reg.ctl("registry.log");
    let data = data.parent().unwrap().parent().unwrap();
    let h = hex(digest);
    data.join("docker/registry/v2/blobs/sha256")
        .join(&h[..2])
        .join(h)
        .join("data")
}

// ---- the image, its key, its policy ----------------------------------------------------------

struct Case {
    sb: Sandbox,
    reg: PrivateRegistry,
    image: Image,
    key: PathBuf,
    policy: String,
}

impl Case {
    /// A private registry holding a fresh image, an ECDSA P-256 key pair (openssl) and a policy
    /// asking for a cosign signature by it in the image's repository.
    fn new(what: &str) -> Self {
        let sb = Sandbox::new();
        let reg = PrivateRegistry::start();
        let repo = unique_name(what);
        let layers = [layer(4096)];
        let config = json!({
            "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
            "config": {"Labels": {"test.repo": repo}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids(&layers)},
        });
        let image = push_layout(&reg.addr, None, &repo, &config, &layers);
        let key = sb.path("cosign.key");
        let public = sb.path("cosign.pub");
        output_of(
            Command::new("openssl")
                .args([
                    "ecparam",
                    "-name",
                    "prime256v1",
                    "-genkey",
                    "-noout",
                    "-out",
                ])
                .arg(&key),
        )
        .ok("openssl ecparam -genkey");
        output_of(
            Command::new("openssl")
                .args(["ec", "-pubout", "-in"])
                .arg(&key)
                .arg("-out")
                .arg(&public),
        )
        .ok("openssl ec -pubout");
        let doc = json!({
            "default": [{"type": "insecureAcceptAnything"}],
            "transports": {"docker": {format!("{}/{repo}", reg.addr): [{
                "type": "sigstoreSigned", "keyPath": public,
                "signedIdentity": {"type": "matchRepository"}
            }]}}
        });
        let policy = sb.path("policy.json");
        fs::write(&policy, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        Self {
            sb,
            reg,
            image,
            key,
            policy: policy.display().to_string(),
        }
    }

    fn repo(&self) -> &str {
        &self.image.repo
    }

    fn addr(&self) -> &str {
        &self.reg.addr
    }

    /// The DER ECDSA signature of `message` by the trusted key.
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let msg = self.sb.path(&format!("msg-{}", nanos()));
        fs::write(&msg, message).unwrap();
        let out = checked_stdout(
            Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(&self.key)
                .arg(&msg),
            "openssl dgst -sign",
        );
        fs::remove_file(&msg).ok();
        out
    }

    /// The simple-signing payload cosign 2 writes for the image.
    fn payload(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({"critical": {
            "identity": {"docker-reference": format!("{}/{}", self.addr(), self.repo())},
            "image": {"docker-manifest-digest": self.image.manifest_digest},
            "type": "cosign container image signature"
        }, "optional": null}))
        .unwrap()
    }

    /// Pushes a `.sig` manifest of `layers` (descriptors) with a config blob; its digest.
    fn push_sig_manifest(&self, layers: Vec<Value>) -> String {
        let config = br#"{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let config_digest = put_blob(self.addr(), self.repo(), config);
        let doc = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config_digest, config.len() as u64),
            "layers": layers,
        });
        let tag = format!("sha256-{}.sig", hex(&self.image.manifest_digest));
        put_manifest(self.addr(), self.repo(), &tag, OCI_MANIFEST, &doc)
    }

    /// A simple-signing layer descriptor with `annotation` as its signature.
    fn sig_layer(digest: &str, size: u64, annotation: &str) -> Value {
        let mut d = descriptor(SIMPLE_SIGNING, digest, size);
        d["annotations"] = json!({COSIGN_ANNOTATION: annotation});
        d
    }

    /// `imgcache pull --policy P IMAGE@DIGEST`, under GNU time.
    fn pull(&self) -> Run {
        let root = self.sb.root.display().to_string();
        let pinned = self.image.pinned();
        imgcache_rss(
            &[
                "--root",
                root.as_str(),
                "pull",
                "--policy",
                &self.policy,
                &pinned,
            ],
            self.sb.dir.path(),
            |c| self.sb.isolate(c),
        )
    }

    /// Blobs in the cache's store (manifests, configs, layers and signatures alike).
    fn stored(&self) -> usize {
        listing(&self.sb.blob_dir()).len()
    }

    /// imgcache's GETs of `/v2/<repo>/<kind>/...` since `mark`, per path.
    fn gets(&self, mark: &LogMark, kind: &str) -> Vec<String> {
        let prefix = format!("/v2/{}/{kind}/", self.repo());
        hits_since(mark)
            .into_iter()
            .filter(|h| h.method == "GET" && h.route().starts_with(&prefix))
            .map(|h| h.route().to_owned())
            .collect()
    }

    /// A refused pull that found no signature at all: the exit code, and the peak RSS every
    /// hostile case is measured against.
    fn baseline_rss(&self) -> u64 {
        let r = self.pull();
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stderr.contains("no cosign signature"), "{}", r.stderr);
        r.max_rss_kib.expect("GNU time's %M")
    }
}

fn assert_refused(r: &Run, code: i32, needles: &[&str]) {
    assert_eq!(r.code, code, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    for n in needles {
        assert!(r.stderr.contains(n), "{n:?} not in:\n{}", r.stderr);
    }
}

fn assert_bounded(r: &Run, baseline_kib: u64) {
    let rss = r.max_rss_kib.expect("GNU time's %M");
    assert!(
        rss < baseline_kib + RSS_MARGIN_KIB,
        "peak RSS {rss} KiB, a pull that read no signature {baseline_kib} KiB"
    );
}

// ---- cosign 2 `.sig` tags ---------------------------------------------------------------------

#[test]
fn a_sig_tag_naming_a_1_gib_layer_is_refused_from_the_descriptor_without_a_download() {
    let c = Case::new("sig-1gib");
    let baseline = c.baseline_rss();
    // The blob exists (the registry checks that), its descriptor says 1 GiB: distribution
    // does not compare sizes.
    let payload = c.payload();
    let d = put_blob(c.addr(), c.repo(), &payload);
    let sig = base64(&c.sign(&payload));
    c.push_sig_manifest(vec![Case::sig_layer(&d, 1 << 30, &sig)]);
    let mark = c.reg.mark();
    let r = c.pull();
    // A refusal naming why (regression: a hostile artifact was a registry error, exit 3, and
    // failed the pull even beside a good signature).
    assert_refused(
        &r,
        1,
        &[
            &format!("blob {d} is 1073741824 bytes"),
            "a signature blob is at most 262144",
        ],
    );
    assert_eq!(c.gets(&mark, "blobs"), Vec::<String>::new(), "no blob read");
    assert_eq!(c.stored(), 0, "nothing stored");
    assert_bounded(&r, baseline);
}

#[test]
fn a_sig_layer_far_larger_than_its_descriptor_is_cut_at_the_cap_in_bounded_memory() {
    let c = Case::new("sig-bigblob");
    let baseline = c.baseline_rss();
    // 64 MiB behind a descriptor of 1000 bytes.
    let big = random_bytes(64 << 20);
    let d = put_blob(c.addr(), c.repo(), &big);
    drop(big);
    c.push_sig_manifest(vec![Case::sig_layer(&d, 1000, "MEUCIQ==")]);
    let mark = c.reg.mark();
    let r = c.pull();
    // Error::TooLarge: exit 1.
    assert_refused(
        &r,
        1,
        &[
            &format!("signature blob {}/{}@{d}", c.addr(), c.repo()),
            "is larger than 262144 bytes",
        ],
    );
    let layer_gets = c.gets(&mark, "blobs");
    assert!(
        layer_gets.iter().filter(|p| p.ends_with(&d)).count() == 1,
        "{layer_gets:?}"
    );
    assert_eq!(c.stored(), 0, "nothing stored");
    assert_bounded(&r, baseline);
}

#[test]
fn a_sig_layer_whose_bytes_are_not_its_digest_is_refused_before_it_is_judged() {
    let c = Case::new("sig-liar");
    let payload = c.payload();
    let d = put_blob(c.addr(), c.repo(), &payload);
    let sig = base64(&c.sign(&payload));
    c.push_sig_manifest(vec![Case::sig_layer(&d, payload.len() as u64, &sig)]);
    // The registry checked the digest on upload; its storage then changes under it (the same
    // length, a payload of another image): what it serves for `d` is not `d`.
    let other = digest_of(b"another image");
    let lie = String::from_utf8(payload.clone())
        .unwrap()
        .replace(&c.image.manifest_digest, &other)
        .into_bytes();
    assert_eq!(lie.len(), payload.len());
    fs::write(stored_blob_path(&c.reg, &d), &lie).unwrap();
    let r = c.pull();
    // Error::DigestMismatch: exit 1.
    assert_refused(
        &r,
        1,
        &[
            &format!("signature blob {}/{}@{d}", c.addr(), c.repo()),
            &format!("expected {d}, got {}", digest_of(&lie)),
        ],
    );
    assert_eq!(c.stored(), 0, "nothing stored");
}

#[test]
fn a_sig_manifest_of_100_layers_is_refused_over_the_64_blob_cap_without_reading_one() {
    let c = Case::new("sig-100");
    let payload = c.payload();
    let d = put_blob(c.addr(), c.repo(), &payload);
    let sig = base64(&c.sign(&payload));
    let layers = (0..100)
        .map(|_| Case::sig_layer(&d, payload.len() as u64, &sig))
        .collect();
    c.push_sig_manifest(layers);
    let mark = c.reg.mark();
    let r = c.pull();
    // A refusal naming why (regression: a hostile artifact was a registry error, exit 3, and
    // failed the pull even beside a good signature).
    assert_refused(
        &r,
        1,
        &["the signature manifest names 101 blobs (at most 64)"],
    );
    assert_eq!(c.gets(&mark, "blobs"), Vec::<String>::new(), "no blob read");
    assert_eq!(c.stored(), 0, "nothing stored");
}

#[test]
fn garbage_in_the_signature_annotation_is_refused_saying_what_each_layer_holds() {
    let c = Case::new("sig-garbage");
    let payload = c.payload();
    let d = put_blob(c.addr(), c.repo(), &payload);
    let size = payload.len() as u64;
    // Not base64; base64 of text; base64 of a truncated DER signature.
    let der = c.sign(&payload);
    c.push_sig_manifest(vec![
        Case::sig_layer(&d, size, "%%% not base64 %%%"),
        Case::sig_layer(&d, size, &base64(b"this is not DER")),
        Case::sig_layer(&d, size, &base64(&der[..der.len() / 2])),
    ]);
    let r = c.pull();
    assert_refused(
        &r,
        1,
        &[
            "refused by the policy",
            &format!(
                "no cosign signature of {} is acceptable",
                c.image.manifest_digest
            ),
            "malformed signature: the signature annotation is not base64",
        ],
    );
    // Regression: DER garbage was reported as a signature by an untrusted key.
    assert!(
        r.stderr
            .contains("the signature is not a DER ECDSA signature"),
        "{}",
        r.stderr
    );
    assert_eq!(c.stored(), 0, "nothing stored");
}

// ---- referrers (cosign 3 bundles behind the `sha256-<hex>` tag) ------------------------------

impl Case {
    /// A bundle referrer manifest of `bundle` (a blob) about `subject`; pushed by digest.
    fn push_referrer(&self, bundle: &[u8], subject: &str, n: usize) -> (String, u64) {
        let empty = put_blob(self.addr(), self.repo(), b"{}");
        let layer = put_blob(self.addr(), self.repo(), bundle);
        let doc = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": BUNDLE,
            "config": descriptor(EMPTY, &empty, 2),
            "layers": [descriptor(BUNDLE, &layer, bundle.len() as u64)],
            "subject": descriptor(OCI_MANIFEST, subject, self.image.manifest_size),
            "annotations": {"n": n.to_string()},
        });
        let bytes = serde_json::to_vec(&doc).unwrap();
        let d = put_manifest(
            self.addr(),
            self.repo(),
            &digest_of(&bytes),
            OCI_MANIFEST,
            &doc,
        );
        (d, bytes.len() as u64)
    }

    /// Tags an index of `entries` (digest, size) as the referrers of the image.
    fn push_referrers_tag(&self, entries: &[(String, u64)]) {
        let doc = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries.iter().map(|(d, s)| {
                let mut e = descriptor(OCI_MANIFEST, d, *s);
                e["artifactType"] = json!(BUNDLE);
                e
            }).collect::<Vec<_>>(),
        });
        let tag = format!("sha256-{}", hex(&self.image.manifest_digest));
        put_manifest(self.addr(), self.repo(), &tag, OCI_INDEX, &doc);
    }

    /// A sigstore bundle: a DSSE envelope over an in-toto statement naming `subject`, signed
    /// by the trusted key.
    fn bundle(&self, subject: &str) -> Vec<u8> {
        let statement = serde_json::to_vec(&json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "", "digest": {"sha256": hex(subject)}}],
            "predicateType": "https://sigstore.dev/cosign/sign/v1",
            "predicate": {}
        }))
        .unwrap();
        let mut pae =
            format!("DSSEv1 {} {IN_TOTO} {} ", IN_TOTO.len(), statement.len()).into_bytes();
        pae.extend_from_slice(&statement);
        serde_json::to_vec(&json!({
            "mediaType": BUNDLE,
            "verificationMaterial": {"publicKey": {"hint": ""}},
            "dsseEnvelope": {
                "payload": base64(&statement),
                "payloadType": IN_TOTO,
                "signatures": [{"sig": base64(&self.sign(&pae)), "keyid": ""}]
            }
        }))
        .unwrap()
    }
}

#[test]
fn a_referrers_tag_listing_5000_entries_fetches_at_most_16_of_them() {
    let c = Case::new("ref-5000");
    let baseline = c.baseline_rss();
    // 40 distinct referrers (the registry wants every entry of an index to exist), each a
    // bundle that is not JSON, listed 125 times over.
    let subject = c.image.manifest_digest.clone();
    let referrers: Vec<(String, u64)> = (0..40)
        .map(|n| c.push_referrer(b"not a bundle", &subject, n))
        .collect();
    let entries: Vec<(String, u64)> = (0..5000).map(|i| referrers[i % 40].clone()).collect();
    c.push_referrers_tag(&entries);
    let mark = c.reg.mark();
    let r = c.pull();
    assert_refused(
        &r,
        1,
        &[
            "refused by the policy",
            "cosign-bundle",
            "malformed signature: the sigstore bundle",
        ],
    );
    let manifest_gets: Vec<String> = c
        .gets(&mark, "manifests")
        .into_iter()
        .filter(|p| referrers.iter().any(|(d, _)| p.ends_with(d.as_str())))
        .collect();
    assert!(
        !manifest_gets.is_empty() && manifest_gets.len() <= 16,
        "{} referrer GETs: {manifest_gets:?}",
        manifest_gets.len()
    );
    // Each referrer fetched has two blobs (its empty config and its bundle): at most 32.
    let blob_gets = c.gets(&mark, "blobs");
    assert!(blob_gets.len() <= 32, "{} blob GETs", blob_gets.len());
    assert!(
        r.stderr.matches("cosign-bundle ").count() <= 16,
        "{}",
        r.stderr
    );
    assert_eq!(c.stored(), 0, "nothing stored");
    assert_bounded(&r, baseline);
}

#[test]
fn a_referrer_whose_subject_is_another_digest_is_no_signature_of_the_image() {
    let c = Case::new("ref-other");
    let subject = c.image.manifest_digest.clone();
    // A bundle that is a good signature of the image, in a referrer that says it is about
    // another manifest: not a signature of this one.
    let bundle = c.bundle(&subject);
    let elsewhere = c.push_referrer(&bundle, &digest_of(b"another manifest"), 0);
    c.push_referrers_tag(std::slice::from_ref(&elsewhere));
    let r = c.pull();
    assert_refused(
        &r,
        1,
        &[
            "refused by the policy",
            &format!("no cosign signature of {subject} was found"),
        ],
    );
    assert_eq!(c.stored(), 0, "nothing stored");
    // The same bundle in a referrer about the image is accepted: the subject made the refusal.
    let here = c.push_referrer(&bundle, &subject, 1);
    c.push_referrers_tag(&[elsewhere, here]);
    let r = c.pull();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(c.stored() > 0);
}

#[test]
fn a_hostile_referrer_beside_a_good_signature_neither_fails_the_pull_nor_is_stored() {
    let c = Case::new("hostile-beside-good");
    let payload = c.payload();
    let d = put_blob(c.addr(), c.repo(), &payload);
    let sig = base64(&c.sign(&payload));
    c.push_sig_manifest(vec![Case::sig_layer(&d, payload.len() as u64, &sig)]);
    // A referrer of the image whose bundle layer claims 1 GiB.
    let empty = put_blob(c.addr(), c.repo(), b"{}");
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE,
        "config": descriptor(EMPTY, &empty, 2),
        "layers": [descriptor(BUNDLE, &d, 1 << 30)],
        "subject": descriptor(OCI_MANIFEST, &c.image.manifest_digest, c.image.manifest_size),
    });
    let bytes = serde_json::to_vec(&doc).unwrap();
    let hostile = put_manifest(c.addr(), c.repo(), &digest_of(&bytes), OCI_MANIFEST, &doc);
    c.push_referrers_tag(&[(hostile.clone(), bytes.len() as u64)]);
    // Regression: the hostile referrer was a registry error (exit 3) that failed the pull.
    let r = c.pull();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let stored = listing(&c.sb.blob_dir());
    assert!(
        !stored.iter().any(|f| hostile.ends_with(f.as_str())),
        "the hostile referrer was stored: {stored:?}"
    );
}

#[test]
fn a_referrers_tag_that_is_no_index_beside_a_good_signature_does_not_fail_the_pull() {
    let c = Case::new("ref-not-index");
    let payload = c.payload();
    let d = put_blob(c.addr(), c.repo(), &payload);
    let sig = base64(&c.sign(&payload));
    c.push_sig_manifest(vec![Case::sig_layer(&d, payload.len() as u64, &sig)]);
    // The `sha256-<hex>` tag names the image's own manifest, not a referrers index.
    let manifest: Value = serde_json::from_slice(&skopeo_raw(&c.image.pinned(), &[])).unwrap();
    let tag = format!("sha256-{}", hex(&c.image.manifest_digest));
    put_manifest(c.addr(), c.repo(), &tag, OCI_MANIFEST, &manifest);
    // Regression: "the referrers of ... are not an OCI index" failed the pull (exit 3).
    let r = c.pull();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("are not an OCI index"), "{}", r.stderr);
}
