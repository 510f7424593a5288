//! Hostile inputs, generated here byte by byte (never fed to any engine): every one is refused
//! with the check that names what is wrong, exit code 1, bounded memory, and nothing written
//! anywhere (the binary runs with its current directory, HOME and XDG dirs in an empty temp
//! dir that must stay empty; the input must be unchanged).

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::*;

/// Peak RSS allowed for any run on hostile input.
const MAX_RSS_KIB: u64 = 64 * 1024;

// --- building tarballs by hand --------------------------------------------------------------

/// A tarball written header by header, so names, links, types and sizes can be anything.
#[derive(Default)]
struct RawTar(Vec<u8>);

/// A GNU header with `name` and `link` copied in as raw bytes (no checks), then checksummed.
fn raw_header(name: &[u8], kind: u8, size: u64, link: &[u8]) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        assert!(name.len() <= old.name.len() && link.len() <= old.linkname.len());
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    h
}

impl RawTar {
    fn header(&mut self, h: &tar::Header) -> &mut Self {
        self.0.extend_from_slice(h.as_bytes());
        self
    }

    /// Data, padded to a whole block.
    fn data(&mut self, data: &[u8]) -> &mut Self {
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.resize(self.0.len() + pad, 0);
        self
    }

    fn entry(&mut self, name: &[u8], kind: u8, data: &[u8], link: &[u8]) -> &mut Self {
        self.header(&raw_header(name, kind, data.len() as u64, link))
            .data(data)
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name.as_bytes(), b'0', data, b"")
    }

    fn symlink(&mut self, name: &str, target: &[u8]) -> &mut Self {
        self.entry(name.as_bytes(), b'2', b"", target)
    }

    fn hardlink(&mut self, name: &str, target: &[u8]) -> &mut Self {
        self.entry(name.as_bytes(), b'1', b"", target)
    }

    /// A GNU long-name record for the next entry.
    fn gnu_long_name(&mut self, name: &[u8]) -> &mut Self {
        let mut body = name.to_vec();
        body.push(0);
        self.entry(b"././@LongLink", b'L', &body, b"")
    }

    /// A PAX extended header for the next entry.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (key, value) in records {
            body.extend(pax_record(key, value));
        }
        self.entry(b"././@PaxHeader", b'x', &body, b"")
    }

    /// A valid one-layer image (docker-archive dialect).
    fn image(&mut self, img: &MiniImage) -> &mut Self {
        self.file(&img.layer_name, &img.layer)
            .file(&img.config_name, &img.config)
            .file("manifest.json", &img.manifest)
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.0);
        out.resize(out.len() + 1024, 0);
        out
    }
}

/// `<len> key=value\n`, where len counts the whole record.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    assert_eq!(r.len(), len);
    r
}

/// A small valid image: one uncompressed layer, its config, manifest.json.
struct MiniImage {
    layer: Vec<u8>,
    layer_name: String,
    diff_id: String,
    config: Vec<u8>,
    config_name: String,
    id: String,
    manifest: Vec<u8>,
}

fn small_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let data = b"hello from a hostile test\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    b.append_data(&mut h, "hello.txt", &data[..]).unwrap();
    b.into_inner().unwrap()
}

fn config_for(diff_ids: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

impl MiniImage {
    fn new() -> Self {
        let layer = small_layer();
        let diff_id = digest_of(&layer);
        Self::with(layer, &diff_id, None)
    }

    /// An image of `layer` whose config claims `diff_id`, its layer entry named `layer_name`
    /// (default `<diff_id hex>.tar`).
    fn with(layer: Vec<u8>, diff_id: &str, layer_name: Option<String>) -> Self {
        let config = config_for(&[diff_id]);
        let id = digest_of(&config);
        let layer_name = layer_name.unwrap_or_else(|| format!("{}.tar", hex(diff_id)));
        let config_name = format!("{}.json", hex(&id));
        let manifest = serde_json::to_vec(&json!([{
            "Config": config_name,
            "RepoTags": ["hostile/test:v1"],
            "Layers": [layer_name],
        }]))
        .unwrap();
        MiniImage {
            layer,
            layer_name,
            diff_id: diff_id.to_owned(),
            config,
            config_name,
            id,
            manifest,
        }
    }

    /// The same image with another config (named by its digest, so only its content is wrong).
    fn with_config(mut self, config: Vec<u8>) -> Self {
        self.id = digest_of(&config);
        self.config_name = format!("{}.json", hex(&self.id));
        self.config = config;
        self.manifest = serde_json::to_vec(&json!([{
            "Config": self.config_name,
            "Layers": [self.layer_name],
        }]))
        .unwrap();
        self
    }
}

// --- running the binary on hostile input ----------------------------------------------------

fn write_input(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, data).unwrap();
    p
}

/// Length and sha256 of a file, read in chunks (some inputs are large, if sparse).
fn fingerprint(path: &Path) -> (u64, String) {
    use sha2::Digest;
    let mut f = fs::File::open(path).unwrap();
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    (len, hex)
}

/// Runs the binary under GNU time with its current directory, HOME, XDG dirs and TMPDIR in a
/// fresh empty temp dir, and asserts that dir is still empty afterwards and the peak RSS stays
/// under [`MAX_RSS_KIB`].
fn run_sandboxed<S: AsRef<OsStr>>(args: &[S]) -> Run {
    let sandbox = tempdir();
    let rss_dir = tempdir();
    let s = sandbox.path();
    let run = imgcache_rss(args, rss_dir.path(), |c| {
        c.current_dir(s)
            .env("HOME", s)
            .env("XDG_CACHE_HOME", s.join(".cache"))
            .env("XDG_CONFIG_HOME", s.join(".config"))
            .env("XDG_DATA_HOME", s.join(".local/share"))
            .env("XDG_STATE_HOME", s.join(".local/state"))
            .env("XDG_RUNTIME_DIR", s.join("run"))
            .env("TMPDIR", s.join("tmp"));
    });
    // A successful deep verification may be remembered in the cache (and only there); a
    // refused archive leaves nothing at all.
    let cache = s.join(".cache");
    let written: Vec<_> = fs::read_dir(s)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !(run.code == 0 && *p == cache))
        .collect();
    assert!(
        written.is_empty(),
        "imgcache {:?} wrote {written:?}",
        args.iter().map(|a| a.as_ref()).collect::<Vec<_>>()
    );
    if cache.exists() {
        let inside: Vec<_> = fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            inside,
            ["imgcache"],
            "only the cache dir may appear under XDG_CACHE_HOME"
        );
    }
    let rss = run.max_rss_kib.expect("peak RSS");
    assert!(
        rss < MAX_RSS_KIB,
        "imgcache {:?}: peak RSS {rss} KiB",
        args.iter().map(|a| a.as_ref()).collect::<Vec<_>>()
    );
    run
}

fn args<'a>(cmd: &'a [&'a str], path: &'a Path) -> Vec<&'a OsStr> {
    let mut v: Vec<&OsStr> = cmd.iter().map(OsStr::new).collect();
    v.push(path.as_os_str());
    v
}

/// `verify` (fast and deep) and `inspect` all refuse `input` as a whole: exit 1, the error's
/// check is `check` and its message contains `fragment`. Returns the error of the fast verify.
fn refused(input: &Path, check: &str, fragment: &str) -> Value {
    let before = fingerprint(input);
    let mut first = None;
    for cmd in [
        &["verify", "--json"][..],
        &["verify", "--deep", "--json"][..],
    ] {
        let run = run_sandboxed(&args(cmd, input));
        assert_eq!(run.code, 1, "{cmd:?}: {}\n{}", run.stdout, run.stderr);
        let doc = run.json();
        let file = &doc["files"][0];
        assert_eq!(file["ok"], false);
        assert!(file["images"].as_array().unwrap().is_empty(), "{file:#}");
        let err = &file["error"];
        assert_eq!(err["check"], check, "{cmd:?}: {err:#}");
        let msg = err["message"].as_str().unwrap();
        assert!(
            msg.contains(fragment),
            "{cmd:?}: {msg:?} lacks {fragment:?}"
        );
        first.get_or_insert_with(|| err.clone());
    }
    let run = run_sandboxed(&args(&["inspect", "--json"], input));
    assert_eq!(run.code, 1, "inspect: {}\n{}", run.stdout, run.stderr);
    let doc = run.json();
    assert_eq!(doc["error"]["check"], check, "inspect: {doc:#}");
    // The human form says it too, on stderr.
    let run = run_sandboxed(&args(&["verify"], input));
    assert_eq!(run.code, 1);
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains(fragment),
        "human output lacks {fragment:?}: {}{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(fingerprint(input), before, "the input changed");
    first.unwrap()
}

/// `verify` (fast and deep) reads the archive but finds its one image bad: exit 1, the image
/// has a failure `check` whose message contains `fragment`. Returns that failure.
fn image_refused(input: &Path, check: &str, fragment: &str) -> Value {
    let before = fingerprint(input);
    let mut first = None;
    for cmd in [
        &["verify", "--json"][..],
        &["verify", "--deep", "--json"][..],
    ] {
        let run = run_sandboxed(&args(cmd, input));
        assert_eq!(run.code, 1, "{cmd:?}: {}\n{}", run.stdout, run.stderr);
        let doc = run.json();
        let image = &doc["files"][0]["images"][0];
        assert_eq!(image["ok"], false, "{doc:#}");
        let failure = image["failures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == check)
            .unwrap_or_else(|| panic!("{cmd:?}: no {check} failure in {image:#}"))
            .clone();
        let msg = failure["message"].as_str().unwrap();
        assert!(
            msg.contains(fragment),
            "{cmd:?}: {msg:?} lacks {fragment:?}"
        );
        first.get_or_insert(failure);
    }
    assert_eq!(fingerprint(input), before, "the input changed");
    first.unwrap()
}

/// A valid image with `extra` entries after it (so no manifest names them).
fn beside_valid_image(extra: impl FnOnce(&mut RawTar)) -> Vec<u8> {
    let mut t = RawTar::default();
    t.image(&MiniImage::new());
    extra(&mut t);
    t.finish()
}

#[test]
fn the_mini_image_itself_verifies() {
    let tmp = tempdir();
    let img = MiniImage::new();
    let path = write_input(
        tmp.path(),
        "valid.tar",
        &RawTar::default().image(&img).finish(),
    );
    let run = run_sandboxed(&args(&["verify", "--deep", "--json"], &path));
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.json()["files"][0]["images"][0]["image_id"], img.id);
}

// --- not archives ---------------------------------------------------------------------------

#[test]
fn a_text_file_is_not_an_archive() {
    let tmp = tempdir();
    let text = "this is a text file, not a tar archive\n".repeat(100);
    let path = write_input(tmp.path(), "notes.txt", text.as_bytes());
    refused(&path, "not-an-archive", "not a tar archive");
}

#[test]
fn a_short_file_is_not_an_archive() {
    let tmp = tempdir();
    let path = write_input(tmp.path(), "short.txt", b"hello\n");
    refused(&path, "not-an-archive", "not a tar archive");
}

#[test]
fn an_empty_file_is_not_an_archive() {
    let tmp = tempdir();
    let path = write_input(tmp.path(), "empty.tar", b"");
    refused(&path, "not-an-archive", "empty");
}

#[test]
fn gzip_of_garbage_is_not_an_archive() {
    let tmp = tempdir();
    let mut data = vec![0x1f, 0x8b, 0x08, 0x00];
    data.extend(std::iter::repeat_n(0xa5u8, 4096));
    let path = write_input(tmp.path(), "garbage.tar.gz", &data);
    refused(&path, "not-an-archive", "cannot be decompressed");
}

#[test]
fn a_directory_is_not_an_archive_to_inspect() {
    let tmp = tempdir();
    let dir = tmp.path().join("dir");
    fs::create_dir(&dir).unwrap();
    let run = run_sandboxed(&args(&["inspect", "--json"], &dir));
    assert_eq!(run.code, 1, "{}", run.stdout);
    let doc = run.json();
    assert_eq!(doc["error"]["check"], "not-an-archive");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("directory")
    );
}

#[test]
fn verifying_a_directory_checks_the_files_in_it() {
    let tmp = tempdir();
    let dir = tmp.path().join("dir");
    fs::create_dir(&dir).unwrap();
    let bad = write_input(&dir, "bad.tar", b"");
    let run = run_sandboxed(&args(&["verify", "--json"], &dir));
    assert_eq!(run.code, 1, "{}", run.stdout);
    let doc = run.json();
    assert_eq!(doc["files"].as_array().unwrap().len(), 1);
    assert_eq!(doc["files"][0]["path"], bad.to_str().unwrap());
    assert_eq!(doc["files"][0]["error"]["check"], "not-an-archive");
}

#[test]
fn verifying_a_directory_without_archives_fails() {
    let tmp = tempdir();
    let dir = tmp.path().join("empty-dir");
    fs::create_dir(&dir).unwrap();
    fs::create_dir(dir.join("subdir")).unwrap();
    let run = run_sandboxed(&args(&["verify", "--json"], &dir));
    assert_eq!(run.code, 1, "{}", run.stdout);
}

// --- names and links that escape ------------------------------------------------------------

#[test]
fn dotdot_entry_names_are_unsafe_even_when_unreferenced() {
    let tmp = tempdir();
    for (i, name) in ["../x", "a/../../x", "./../x", "blobs/../../etc/x"]
        .into_iter()
        .enumerate()
    {
        let data = beside_valid_image(|t| {
            t.file(name, b"escaped\n");
        });
        let path = write_input(tmp.path(), &format!("dotdot-{i}.tar"), &data);
        let err = refused(&path, "unsafe-entry", "\"..\"");
        assert_eq!(err["entry"], name);
    }
}

#[test]
fn absolute_entry_names_are_unsafe_even_when_unreferenced() {
    let tmp = tempdir();
    for (i, name) in ["/abs", "/etc/passwd", "//x"].into_iter().enumerate() {
        let data = beside_valid_image(|t| {
            t.file(name, b"absolute\n");
        });
        let path = write_input(tmp.path(), &format!("abs-{i}.tar"), &data);
        let err = refused(&path, "unsafe-entry", "absolute name");
        assert_eq!(err["entry"], name);
    }
}

#[test]
fn symlinks_pointing_outside_are_unsafe() {
    let tmp = tempdir();
    let cases: [(&str, &[u8], &str); 4] = [
        ("evil", b"../../etc/passwd", "outside the archive"),
        ("sub/dir/evil", b"../../../x", "outside the archive"),
        ("evil", b"/etc/passwd", "absolute path"),
        ("evil", b"/", "absolute path"),
    ];
    for (i, (name, target, fragment)) in cases.into_iter().enumerate() {
        let data = beside_valid_image(|t| {
            t.symlink(name, target);
        });
        let path = write_input(tmp.path(), &format!("symlink-{i}.tar"), &data);
        let err = refused(&path, "unsafe-entry", fragment);
        assert_eq!(err["entry"], name);
    }
}

#[test]
fn symlink_loops_are_unsafe() {
    let tmp = tempdir();
    let data = beside_valid_image(|t| {
        t.symlink("a", b"b").symlink("b", b"a");
    });
    let path = write_input(tmp.path(), "loop.tar", &data);
    let err = refused(&path, "unsafe-entry", "link loop");
    assert_eq!(err["entry"], "a");

    let data = beside_valid_image(|t| {
        t.symlink("self", b"./self");
    });
    let path = write_input(tmp.path(), "self-loop.tar", &data);
    refused(&path, "unsafe-entry", "link loop");
}

#[test]
fn hardlinks_pointing_outside_are_unsafe() {
    let tmp = tempdir();
    let cases: [(&[u8], &str); 2] = [
        (b"../etc/passwd", "outside the archive"),
        (b"/etc/passwd", "absolute path"),
    ];
    for (i, (target, fragment)) in cases.into_iter().enumerate() {
        let data = beside_valid_image(|t| {
            t.hardlink("evil", target);
        });
        let path = write_input(tmp.path(), &format!("hardlink-{i}.tar"), &data);
        let err = refused(&path, "unsafe-entry", fragment);
        assert_eq!(err["entry"], "evil");
    }
}

#[test]
fn device_nodes_and_fifos_are_unsafe() {
    let tmp = tempdir();
    for (kind, fragment) in [
        (b'3', "device node"),
        (b'4', "device node"),
        (b'6', "named pipe"),
    ] {
        let data = beside_valid_image(|t| {
            t.entry(b"dev/thing", kind, b"", b"");
        });
        let path = write_input(tmp.path(), &format!("type-{}.tar", kind as char), &data);
        let err = refused(&path, "unsafe-entry", fragment);
        assert_eq!(err["entry"], "dev/thing");
    }
}

#[test]
fn non_utf8_entry_names_are_unsafe() {
    let tmp = tempdir();
    // Raw header bytes.
    let data = beside_valid_image(|t| {
        t.entry(b"caf\xe9.txt", b'0', b"latin-1\n", b"");
    });
    let path = write_input(tmp.path(), "raw-name.tar", &data);
    refused(&path, "unsafe-entry", "not UTF-8");
    // A GNU long name.
    let mut long = vec![b'd'; 150];
    long.extend_from_slice(b"/\xff\xfe.txt");
    let data = beside_valid_image(|t| {
        t.gnu_long_name(&long)
            .entry(b"truncated-name", b'0', b"x\n", b"");
    });
    let path = write_input(tmp.path(), "long-name.tar", &data);
    refused(&path, "unsafe-entry", "not UTF-8");
    // A PAX path.
    let data = beside_valid_image(|t| {
        t.pax(&[("path", b"\xc3\x28.txt")])
            .entry(b"plain-name", b'0', b"x\n", b"");
    });
    let path = write_input(tmp.path(), "pax-name.tar", &data);
    refused(&path, "unsafe-entry", "not UTF-8");
    // A link target.
    let data = beside_valid_image(|t| {
        t.symlink("link", b"\xff");
    });
    let path = write_input(tmp.path(), "link-target.tar", &data);
    let err = refused(&path, "unsafe-entry", "non-UTF-8 link target");
    assert_eq!(err["entry"], "link");
}

// --- sizes ----------------------------------------------------------------------------------

#[test]
fn a_manifest_json_over_4_mib_is_too_large() {
    let tmp = tempdir();
    let img = MiniImage::new();
    let mut manifest = img.manifest.clone();
    manifest.resize(4 * 1024 * 1024 + 1, b' ');
    let data = RawTar::default()
        .file(&img.layer_name, &img.layer)
        .file(&img.config_name, &img.config)
        .file("manifest.json", &manifest)
        .finish();
    let path = write_input(tmp.path(), "big-manifest.tar", &data);
    let err = refused(&path, "too-large", "4 MiB");
    assert_eq!(err["entry"], "manifest.json");
}

#[test]
fn a_config_over_8_mib_is_too_large() {
    let tmp = tempdir();
    let img = MiniImage::new();
    let mut config = img.config.clone();
    config.resize(8 * 1024 * 1024 + 1, b' ');
    let img = img.with_config(config);
    let path = write_input(
        tmp.path(),
        "big-config.tar",
        &RawTar::default().image(&img).finish(),
    );
    let f = image_refused(&path, "too-large", "8 MiB");
    assert_eq!(f["entry"], img.config_name);
}

/// Writes the valid image's layer and config, then a header for `manifest.json` claiming
/// `size` bytes, then `data_len` bytes (a hole: the file is sparse).
fn huge_manifest_file(path: &Path, size: u64, data_len: u64) {
    let img = MiniImage::new();
    let head = RawTar::default()
        .file(&img.layer_name, &img.layer)
        .file(&img.config_name, &img.config)
        .header(&raw_header(b"manifest.json", b'0', size, b""))
        .0
        .clone();
    let mut f = fs::File::create(path).unwrap();
    f.write_all(&head).unwrap();
    f.seek(SeekFrom::Current(data_len as i64)).unwrap();
    f.set_len(head.len() as u64 + data_len).unwrap();
}

#[test]
fn a_100_mb_manifest_json_is_too_large_without_being_read() {
    let tmp = tempdir();
    let path = tmp.path().join("100mb-manifest.tar");
    let size = 100_000_000;
    huge_manifest_file(&path, size, size.div_ceil(512) * 512 + 1024);
    let err = refused(&path, "too-large", "4 MiB");
    assert_eq!(err["entry"], "manifest.json");
    assert!(err["message"].as_str().unwrap().contains(&size.to_string()));
}

#[test]
fn a_header_claiming_100_gb_in_a_short_file_is_truncated() {
    let tmp = tempdir();
    let path = tmp.path().join("100gb-claim.tar");
    let size = 100 * 1024 * 1024 * 1024u64;
    huge_manifest_file(&path, size, 4096);
    let err = refused(&path, "truncated", &format!("declares {size} bytes"));
    assert!(err["message"].as_str().unwrap().contains("manifest.json"));
}

#[test]
fn a_pax_header_declaring_a_huge_size_is_refused() {
    let tmp = tempdir();
    // The extension header itself claims a huge body.
    let mut t = RawTar::default();
    t.header(&raw_header(b"././@PaxHeader", b'x', 1 << 40, b""))
        .data(&[0u8; 1024]);
    let path = write_input(tmp.path(), "pax-body.tar", &t.finish());
    refused(&path, "too-large", "extension header");
    // So does a GNU long-name header.
    let mut t = RawTar::default();
    t.header(&raw_header(b"././@LongLink", b'L', 1 << 40, b""))
        .data(&[0u8; 1024]);
    let path = write_input(tmp.path(), "long-name-body.tar", &t.finish());
    refused(&path, "too-large", "extension header");
    // A PAX `size` record claims 100 GB for the next entry of a short file.
    let size = 100 * 1024 * 1024 * 1024u64;
    let img = MiniImage::new();
    let mut t = RawTar::default();
    t.file(&img.layer_name, &img.layer)
        .file(&img.config_name, &img.config)
        .pax(&[("size", size.to_string().as_bytes())])
        .file("manifest.json", &img.manifest);
    let path = write_input(tmp.path(), "pax-size.tar", &t.finish());
    refused(&path, "truncated", &format!("declares {size} bytes"));
    // A PAX size that is not a number.
    let data = beside_valid_image(|t| {
        t.pax(&[("size", b"-1")]).file("x", b"");
    });
    let path = write_input(tmp.path(), "pax-bad-size.tar", &data);
    refused(&path, "unsafe-entry", "PAX");
}

// --- JSON -----------------------------------------------------------------------------------

#[test]
fn invalid_json_in_manifest_json_is_refused() {
    let tmp = tempdir();
    let img = MiniImage::new();
    for (i, manifest) in [
        &br#"[{"Config": "#[..],
        b"",
        b"{}",
        b"null",
        b"\xff\xfe[]",
        br#"[{"Layers": []}]"#,
    ]
    .into_iter()
    .enumerate()
    {
        let data = RawTar::default()
            .file(&img.layer_name, &img.layer)
            .file(&img.config_name, &img.config)
            .file("manifest.json", manifest)
            .finish();
        let path = write_input(tmp.path(), &format!("manifest-{i}.tar"), &data);
        let err = refused(&path, "invalid-json", "manifest.json");
        assert_eq!(err["entry"], "manifest.json");
    }
}

#[test]
fn invalid_json_in_a_config_is_refused() {
    let tmp = tempdir();
    for (i, config) in [&b"{not json"[..], b"[]", b"{\"rootfs\": 5}", b""]
        .into_iter()
        .enumerate()
    {
        let img = MiniImage::new().with_config(config.to_vec());
        let path = write_input(
            tmp.path(),
            &format!("config-{i}.tar"),
            &RawTar::default().image(&img).finish(),
        );
        let f = image_refused(&path, "invalid-json", "is not an image config");
        assert_eq!(f["entry"], img.config_name);
    }
}

#[test]
fn invalid_json_in_index_json_is_refused() {
    let tmp = tempdir();
    for (i, index) in [
        &b"{\"manifests\": ["[..],
        b"{\"manifests\": 7}",
        b"",
        b"\xff",
    ]
    .into_iter()
    .enumerate()
    {
        let data = RawTar::default()
            .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
            .file("index.json", index)
            .finish();
        let path = write_input(tmp.path(), &format!("index-{i}.tar"), &data);
        let err = refused(&path, "invalid-json", "index.json");
        assert_eq!(err["entry"], "index.json");
    }
}

#[test]
fn an_index_json_naming_no_images_is_refused() {
    let tmp = tempdir();
    for (i, index) in [
        &b"{}"[..],
        b"[]",
        br#"{"manifests": null}"#,
        br#"{"manifests": []}"#,
    ]
    .into_iter()
    .enumerate()
    {
        let data = RawTar::default()
            .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
            .file("index.json", index)
            .finish();
        let path = write_input(tmp.path(), &format!("index-{i}.tar"), &data);
        refused(&path, "no-manifest", "no images");
    }
}

#[test]
fn deeply_nested_json_is_refused_without_crashing() {
    let tmp = tempdir();
    let deep = "[".repeat(100_000);
    let img = MiniImage::new();
    let data = RawTar::default()
        .file(&img.layer_name, &img.layer)
        .file(&img.config_name, &img.config)
        .file("manifest.json", deep.as_bytes())
        .finish();
    let path = write_input(tmp.path(), "nested-manifest.tar", &data);
    refused(&path, "invalid-json", "manifest.json");

    let data = RawTar::default()
        .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .file("index.json", format!("{{\"manifests\":{deep}").as_bytes())
        .finish();
    let path = write_input(tmp.path(), "nested-index.tar", &data);
    refused(&path, "invalid-json", "index.json");

    let img = MiniImage::new().with_config(deep.clone().into_bytes());
    let path = write_input(
        tmp.path(),
        "nested-config.tar",
        &RawTar::default().image(&img).finish(),
    );
    image_refused(&path, "invalid-json", "is not an image config");
}

#[test]
fn deeply_nested_unknown_fields_are_skipped_without_crashing() {
    let tmp = tempdir();
    let img = MiniImage::new();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let manifest = format!(
        r#"[{{"Config":"{}","Layers":["{}"],"Extra":{deep}}}]"#,
        img.config_name, img.layer_name
    );
    let data = RawTar::default()
        .file(&img.layer_name, &img.layer)
        .file(&img.config_name, &img.config)
        .file("manifest.json", manifest.as_bytes())
        .finish();
    let path = write_input(tmp.path(), "nested-extra.tar", &data);
    let run = run_sandboxed(&args(&["verify", "--deep", "--json"], &path));
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
}

// --- digests --------------------------------------------------------------------------------

#[test]
fn config_diff_ids_that_are_not_sha256_digests_are_invalid() {
    let tmp = tempdir();
    let img = MiniImage::new();
    let good = img.diff_id.clone();
    let bad = [
        "sha256:abc".to_owned(),
        good.to_ascii_uppercase().replace("SHA256", "sha256"),
        format!("sha512:{}", "a".repeat(128)),
        "md5:d41d8cd98f00b204e9800998ecf8427e".to_owned(),
        format!("sha256:{}", "g".repeat(64)),
        hex(&good).to_owned(),
        format!("{good}00"),
        format!(" {good}"),
    ];
    for (i, text) in bad.iter().enumerate() {
        let img = MiniImage::new().with_config(config_for(&[text]));
        let path = write_input(
            tmp.path(),
            &format!("diff-id-{i}.tar"),
            &RawTar::default().image(&img).finish(),
        );
        let f = image_refused(&path, "invalid-digest", "not a sha256 digest");
        assert_eq!(f["layer"], 0, "{text}");
        assert_eq!(f["entry"], img.config_name);
    }
}

/// An OCI archive of the mini image, its layer gzipped; `edit` may change the manifest and the
/// index (as JSON) before they are written. The index names the manifest by its digest unless
/// `edit` set one.
fn oci_archive(edit: impl FnOnce(&mut Value, &mut Value)) -> Vec<u8> {
    oci_archive_of(&[small_layer()], edit)
}

/// An OCI archive of an image of `layers` (uncompressed tars, stored gzipped).
fn oci_archive_of(layers: &[Vec<u8>], edit: impl FnOnce(&mut Value, &mut Value)) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| digest_of(l)).collect();
    let config = config_for(&diff_ids.iter().map(String::as_str).collect::<Vec<_>>());
    let blobs: Vec<Vec<u8>> = layers.iter().map(|l| gzip(l)).collect();
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest_of(&config),
            "size": config.len(),
        },
        "layers": blobs.iter().map(|b| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest_of(b),
            "size": b.len(),
        })).collect::<Vec<_>>(),
    });
    let mut index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": null,
            "size": 0,
            "annotations": {"org.opencontainers.image.ref.name": "v1"},
        }],
    });
    edit(&mut manifest, &mut index);
    let manifest = serde_json::to_vec(&manifest).unwrap();
    if index["manifests"][0]["digest"].is_null() {
        index["manifests"][0]["digest"] = json!(digest_of(&manifest));
    }
    index["manifests"][0]["size"] = json!(manifest.len());
    let mut t = RawTar::default();
    t.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    for b in &blobs {
        t.file(&format!("blobs/sha256/{}", sha256_hex(b)), b);
    }
    t.file(&format!("blobs/sha256/{}", sha256_hex(&config)), &config)
        .file(
            &format!("blobs/sha256/{}", sha256_hex(&manifest)),
            &manifest,
        )
        .file("index.json", &serde_json::to_vec(&index).unwrap())
        .finish()
}

/// Digests of other algorithms, which parse as OCI digests but are not sha256.
fn foreign_digests() -> [String; 2] {
    [
        format!("sha512:{}", "a".repeat(128)),
        "md5:d41d8cd98f00b204e9800998ecf8427e".to_owned(),
    ]
}

/// sha256 digests that are malformed.
fn malformed_sha256() -> [String; 3] {
    [
        "sha256:abc".to_owned(),
        format!("sha256:{}", "A".repeat(64)),
        format!("sha256:{}", "g".repeat(64)),
    ]
}

#[test]
fn the_mini_oci_archive_itself_verifies() {
    let tmp = tempdir();
    let path = write_input(tmp.path(), "oci.tar", &oci_archive(|_, _| {}));
    let run = run_sandboxed(&args(&["verify", "--deep", "--json"], &path));
    assert_eq!(run.code, 0, "{}", run.stdout);
}

/// An OCI index naming its manifest by each of `digests` is refused as a whole:
/// `invalid-digest`, its message containing `fragment`.
fn assert_index_digests_refused(digests: &[String], fragment: &str) {
    let tmp = tempdir();
    for (i, d) in digests.iter().enumerate() {
        let data = oci_archive(|_, index| index["manifests"][0]["digest"] = json!(d));
        let path = write_input(tmp.path(), &format!("index-digest-{i}.tar"), &data);
        refused(&path, "invalid-digest", fragment);
    }
}

/// An OCI manifest naming its layer, or its config, by each of `digests` fails its image:
/// `invalid-digest` (of layer 0 for the layer), its message containing `fragment`.
fn assert_descriptor_digests_refused(digests: &[String], fragment: &str) {
    let tmp = tempdir();
    for (i, d) in digests.iter().enumerate() {
        let data = oci_archive(|m, _| m["layers"][0]["digest"] = json!(d));
        let path = write_input(tmp.path(), &format!("layer-digest-{i}.tar"), &data);
        let f = image_refused(&path, "invalid-digest", fragment);
        assert_eq!(f["layer"], 0);

        let data = oci_archive(|m, _| m["config"]["digest"] = json!(d));
        let path = write_input(tmp.path(), &format!("config-digest-{i}.tar"), &data);
        image_refused(&path, "invalid-digest", fragment);
    }
}

#[test]
fn oci_index_digests_of_other_algorithms_are_invalid() {
    assert_index_digests_refused(&foreign_digests(), "is not sha256:<64 hex>");
}

#[test]
fn oci_manifest_descriptor_digests_of_other_algorithms_are_invalid() {
    assert_descriptor_digests_refused(&foreign_digests(), "is not sha256:<64 hex>");
}

#[test]
fn oci_index_with_malformed_sha256_digests_is_invalid_digest() {
    assert_index_digests_refused(&malformed_sha256(), "sha256");
}

#[test]
fn oci_manifest_with_malformed_sha256_digests_is_invalid_digest() {
    assert_descriptor_digests_refused(&malformed_sha256(), "sha256");
}

#[test]
fn an_invalid_layer_digest_is_the_only_failure() {
    let tmp = tempdir();
    let second = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, "second.txt", &b"two\n"[..]).unwrap();
        b.into_inner().unwrap()
    };
    let d = &foreign_digests()[1];
    let data = oci_archive_of(&[small_layer(), second], |m, _| {
        m["layers"][0]["digest"] = json!(d)
    });
    let path = write_input(tmp.path(), "layer-digest.tar", &data);
    for cmd in [
        &["verify", "--json"][..],
        &["verify", "--deep", "--json"][..],
    ] {
        let run = run_sandboxed(&args(cmd, &path));
        assert_eq!(run.code, 1);
        let doc = run.json();
        let failures = doc["files"][0]["images"][0]["failures"].as_array().unwrap();
        assert_eq!(failures.len(), 1, "{cmd:?}: {failures:#?}");
        assert_eq!(failures[0]["check"], "invalid-digest");
        assert_eq!(failures[0]["layer"], 0);
    }
}

#[test]
fn an_invalid_config_digest_is_the_only_failure() {
    let tmp = tempdir();
    let d = &foreign_digests()[0];
    let data = oci_archive(|m, _| m["config"]["digest"] = json!(d));
    let path = write_input(tmp.path(), "config-digest.tar", &data);
    let run = run_sandboxed(&args(&["verify", "--json"], &path));
    let doc = run.json();
    let checks: Vec<&str> = doc["files"][0]["images"][0]["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(checks, ["invalid-digest"], "{doc:#}");
}

// --- decompression bombs --------------------------------------------------------------------

/// MiB of zeros in each bomb layer (at most 1 GiB). Override with IMGCACHE_TEST_BOMB_MIB.
fn bomb_mib() -> u64 {
    std::env::var("IMGCACHE_TEST_BOMB_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_BOMB_MIB)
        .min(1024)
}

const DEFAULT_BOMB_MIB: u64 = 128;

#[derive(Clone, Copy)]
enum Codec {
    Gzip,
    Zstd,
}

/// A layer tar holding one file of `mib` MiB of zeros, compressed as it is generated (the
/// test never holds the uncompressed layer): returns the compressed blob and the diff_id.
///
/// The gzip stream is multi-member (RFC 1952 allows it; `gzip -d`, Docker and the library
/// read every member): one member per MiB, so the test compresses a MiB of zeros once
/// instead of deflating the whole layer with an unoptimized encoder.
fn bomb_layer(codec: Codec, mib: u64) -> (Vec<u8>, String) {
    match codec {
        Codec::Gzip => {
            let mut out = GzipMembers::default();
            let diff_id = zeros_tar(&mut out, mib);
            (out.finish(), diff_id)
        }
        Codec::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
            let diff_id = zeros_tar(&mut enc, mib);
            (enc.finish().unwrap(), diff_id)
        }
    }
}

/// Writes each write as one gzip member, reusing the member made for a previous equal write.
#[derive(Default)]
struct GzipMembers {
    out: Vec<u8>,
    last: Option<(Vec<u8>, Vec<u8>)>,
}

impl Write for GzipMembers {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let member = match &self.last {
            Some((input, member)) if input.as_slice() == data => member.clone(),
            _ => {
                let member = gzip(data);
                self.last = Some((data.to_vec(), member.clone()));
                member
            }
        };
        self.out.extend_from_slice(&member);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl GzipMembers {
    fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// Writes a tar of one file of `mib` MiB of zeros to `out` in 1 MiB pieces; returns its digest.
fn zeros_tar(out: &mut impl Write, mib: u64) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut put = |data: &[u8]| {
        hasher.update(data);
        out.write_all(data).unwrap();
    };
    let mut h = tar::Header::new_gnu();
    h.set_path("zeros").unwrap();
    h.set_size(mib << 20);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    put(h.as_bytes());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        put(&chunk);
    }
    put(&[0u8; 1024]);
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// An honest bomb verifies (deep reads every byte) in bounded memory; a dishonest one, whose
/// config claims another diff_id, passes fast (no layer data read) and fails deep.
fn bomb(codec: Codec, ext: &str) {
    let tmp = tempdir();
    let mib = bomb_mib();
    let (blob, diff_id) = bomb_layer(codec, mib);
    let name = format!("{}.tar.{ext}", sha256_hex(&blob));

    let honest = MiniImage::with(blob, &diff_id, Some(name));
    let path = write_input(
        tmp.path(),
        "honest.tar",
        &RawTar::default().image(&honest).finish(),
    );
    let before = fingerprint(&path);
    let run = run_sandboxed(&args(&["verify", "--deep", "--json"], &path));
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let doc = run.json();
    assert_eq!(doc["files"][0]["images"][0]["image_id"], honest.id);
    assert_eq!(
        doc["files"][0]["images"][0]["layers"][0]["compression"],
        if ext == "gz" { "gzip" } else { "zstd" }
    );
    assert_eq!(fingerprint(&path), before);

    // Smaller: the point here is the verdict, and the unoptimized test build inflates slowly.
    let (blob, diff_id) = bomb_layer(codec, (mib / 4).max(1));
    let name = format!("{}.tar.{ext}", sha256_hex(&blob));
    let claimed = digest_of(b"something else altogether");
    let liar = MiniImage::with(blob, &claimed, Some(name.clone()));
    let path = write_input(
        tmp.path(),
        "dishonest.tar",
        &RawTar::default().image(&liar).finish(),
    );
    let before = fingerprint(&path);
    let run = run_sandboxed(&args(&["verify", "--json"], &path));
    assert_eq!(run.code, 0, "fast reads no layer data: {}", run.stdout);
    let run = run_sandboxed(&args(&["verify", "--deep", "--json"], &path));
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let doc = run.json();
    let failures = doc["files"][0]["images"][0]["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    let f = &failures[0];
    assert_eq!(f["check"], "diff-id");
    assert_eq!(f["layer"], 0);
    assert_eq!(f["entry"], name);
    assert_eq!(f["expected"], claimed);
    assert_eq!(f["found"], diff_id);
    assert_eq!(fingerprint(&path), before);
}

#[test]
fn a_gzip_bomb_layer_is_verified_in_bounded_memory() {
    bomb(Codec::Gzip, "gz");
}

#[test]
fn a_zstd_bomb_layer_is_verified_in_bounded_memory() {
    bomb(Codec::Zstd, "zst");
}
