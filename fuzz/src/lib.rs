//! Helpers shared by the imgcache fuzz targets.
//!
//! - [`MemFile`]: an in-memory file (memfd) the library opens by path, so a target never
//!   leaves files behind, even when it crashes.
//! - [`TarWriter`]: writes tar archives byte by byte, including malformed ones (sizes that
//!   lie, unknown entry types, long names as GNU or PAX extensions, no end marker).
//! - [`Model`] and [`check_deep_ok`]: an independent oracle for "deep verification never says
//!   ok for an image whose layers do not hash to the config's diff_ids".

use std::fs::File;
use std::io::Read;
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use imgcache::{FileReport, Level, VerifyOptions};
use sha2::{Digest as _, Sha256};

/// An anonymous in-memory file, reachable by path as `/proc/self/fd/N`.
pub struct MemFile {
    file: File,
    path: PathBuf,
}

impl MemFile {
    pub fn new(name: &str) -> Self {
        let cname = std::ffi::CString::new(name).expect("no NUL in the name");
        // SAFETY: memfd_create with a valid C string; the fd is owned by the File below.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        // SAFETY: fd is a fresh descriptor nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        Self {
            path: PathBuf::from(format!("/proc/self/fd/{fd}")),
            file,
        }
    }

    /// Replaces the file's contents.
    pub fn set(&self, bytes: &[u8]) {
        self.file.set_len(0).expect("truncate memfd");
        self.file.write_all_at(bytes, 0).expect("write memfd");
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A string cut to a length fit for a panic message.
pub fn short(text: &str) -> String {
    if text.len() <= 160 {
        return format!("{text:?}");
    }
    let mut end = 120;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &text[..end], text.len())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip to memory");
    e.finish().expect("gzip to memory")
}

pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 1).expect("zstd to memory")
}

/// How a name longer than the 100 bytes of a tar header is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LongNames {
    Gnu,
    Pax,
}

/// A tar writer that writes exactly what it is told, valid or not.
pub struct TarWriter {
    pub out: Vec<u8>,
    pub long_names: LongNames,
}

impl TarWriter {
    pub fn new(long_names: LongNames) -> Self {
        Self {
            out: Vec::new(),
            long_names,
        }
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, data: &[u8]) {
        self.entry(name.as_bytes(), b'0', b"", data, data.len() as u64);
    }

    pub fn dir(&mut self, name: &str) {
        self.entry(name.as_bytes(), b'5', b"", b"", 0);
    }

    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name.as_bytes(), b'2', target.as_bytes(), b"", 0);
    }

    pub fn hardlink(&mut self, name: &str, target: &str) {
        self.entry(name.as_bytes(), b'1', target.as_bytes(), b"", 0);
    }

    /// One entry: long names and links become extension headers; `size` is what the header
    /// declares, `data` what follows it (padded to a block).
    pub fn entry(&mut self, name: &[u8], kind: u8, link: &[u8], data: &[u8], size: u64) {
        let long_name = name.len() > 100;
        let long_link = link.len() > 100;
        if long_name || long_link {
            match self.long_names {
                LongNames::Gnu => {
                    if long_name {
                        let mut body = name.to_vec();
                        body.push(0);
                        self.raw(b"././@LongLink", b'L', b"", &body, body.len() as u64);
                    }
                    if long_link {
                        let mut body = link.to_vec();
                        body.push(0);
                        self.raw(b"././@LongLink", b'K', b"", &body, body.len() as u64);
                    }
                }
                LongNames::Pax => {
                    let mut body = Vec::new();
                    if long_name {
                        pax_record(&mut body, b"path", name);
                    }
                    if long_link {
                        pax_record(&mut body, b"linkpath", link);
                    }
                    self.raw(b"PaxHeaders/x", b'x', b"", &body, body.len() as u64);
                }
            }
        }
        self.raw(
            &name[..name.len().min(100)],
            kind,
            &link[..link.len().min(100)],
            data,
            size,
        );
    }

    fn raw(&mut self, name: &[u8], kind: u8, link: &[u8], data: &[u8], size: u64) {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name);
            old.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_cksum();
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
    }

    /// The archive, closed by two zero blocks when `end_marker`.
    pub fn finish(mut self, end_marker: bool) -> Vec<u8> {
        if end_marker {
            self.out.extend(std::iter::repeat_n(0u8, 1024));
        }
        self.out
    }
}

fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // "<len> <key>=<value>\n", where <len> counts the whole record including itself.
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// A layer tar holding the given files (a real tar, as layers are).
pub fn layer_tar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = TarWriter::new(LongNames::Pax);
    for (name, data) in files {
        w.file(name, data);
    }
    w.finish(true)
}

/// What the generator put in an archive, for the oracle.
#[derive(Debug)]
pub struct Model {
    pub entries: Vec<ModelEntry>,
    /// False when the reader may see entries the model does not know (after a header whose
    /// size lies, or an extension header the generator placed): then only what the model
    /// knows is checked.
    pub exact: bool,
}

impl Default for Model {
    fn default() -> Self {
        Self { entries: Vec::new(), exact: true }
    }
}

#[derive(Debug)]
pub struct ModelEntry {
    /// Normalized as the library normalizes names (no `.` or empty components).
    pub name: String,
    pub kind: u8,
    /// For links: the target, normalized and relative to the archive root.
    pub link: Option<String>,
    pub data: Vec<u8>,
}

pub fn normalize(name: &str) -> String {
    name.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

impl Model {
    pub fn add(&mut self, name: &str, kind: u8, link: Option<String>, data: &[u8]) {
        self.entries.push(ModelEntry {
            name: normalize(name),
            kind,
            link,
            data: data.to_vec(),
        });
    }

    /// The data a name leads to, following links (None: missing, a loop, not a file).
    pub fn resolve(&self, name: &str) -> Option<&[u8]> {
        let mut current = normalize(name);
        for _ in 0..64 {
            let e = self.entries.iter().find(|e| e.name == current)?;
            match e.kind {
                b'0' | b'\0' | b'7' => return Some(&e.data),
                b'1' | b'2' => current = e.link.clone()?,
                _ => return None,
            }
        }
        None
    }

    /// A regular file whose content hashes to `hex`.
    pub fn by_digest(&self, hex: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .filter(|e| matches!(e.kind, b'0' | b'\0' | b'7'))
            .map(|e| e.data.as_slice())
            .find(|d| sha256_hex(d) == hex)
    }
}

/// sha256 (hex) of `data` as stored and of every way it decompresses (bounded output).
pub fn content_digests(data: &[u8]) -> Vec<String> {
    const MAX_OUT: u64 = 256 * 1024 * 1024;
    let mut out = vec![sha256_hex(data)];
    let mut buf = Vec::new();
    if flate2::read::MultiGzDecoder::new(data)
        .take(MAX_OUT)
        .read_to_end(&mut buf)
        .is_ok()
    {
        out.push(sha256_hex(&buf));
    }
    buf.clear();
    if let Ok(d) = zstd::stream::read::Decoder::new(data)
        && d.take(MAX_OUT).read_to_end(&mut buf).is_ok()
    {
        out.push(sha256_hex(&buf));
    }
    out
}

/// Checks a deep report against what was written: every image reported ok has a config we
/// wrote (by its sha256), as many layers as the config has diff_ids, and each layer entry
/// leads to data that, stored or decompressed, hashes to its diff_id (and to its blob digest
/// as stored, when the archive records one).
pub fn check_deep_ok(report: &FileReport, model: &Model) {
    if !report.ok {
        return;
    }
    for img in report.images.iter().filter(|i| i.ok) {
        let id = img.image_id.expect("an ok image has an image ID");
        let hex = id.0.hex();
        let Some(config) = model.by_digest(&hex) else {
            assert!(!model.exact, "ok image {id}: no entry written hashes to its ID");
            continue;
        };
        let cfg: oci_spec::image::ImageConfiguration = serde_json::from_slice(config)
            .unwrap_or_else(|e| panic!("ok image {id}: its config does not parse: {e}"));
        let diff_ids = cfg.rootfs().diff_ids();
        assert_eq!(
            img.layers.len(),
            diff_ids.len(),
            "ok image {id}: layer count differs from the config's diff_ids"
        );
        for (i, (layer, want)) in img.layers.iter().zip(diff_ids).enumerate() {
            let Some(data) = model.resolve(&layer.entry) else {
                assert!(
                    !model.exact,
                    "ok image {id}: layer {i} entry {:?} leads to no file written",
                    layer.entry
                );
                continue;
            };
            let want_hex = want.strip_prefix("sha256:").unwrap_or(want);
            let got = content_digests(data);
            assert!(
                got.iter().any(|g| g == want_hex),
                "ok image {id}: layer {i} ({:?}) does not hash to diff_id {want}: {got:?}",
                layer.entry
            );
            if let Some(blob) = layer.blob_digest {
                assert_eq!(
                    blob.0.hex(),
                    got[0],
                    "ok image {id}: layer {i} ({:?}) does not hash to its blob digest",
                    layer.entry
                );
            }
        }
    }
}

/// What a report says, without what legitimately depends on how the file is stored (messages
/// with offsets, bytes read, compression): the verdict, the dialect, and per image its ID,
/// verdict and the checks that failed.
pub fn verdict(r: &FileReport) -> String {
    let problem = |p: &imgcache::Problem| format!("{:?}@{:?}#{:?}", p.check, p.entry, p.layer);
    let mut out = format!(
        "ok={} dialect={:?} error={:?}",
        r.ok,
        r.dialect,
        r.error.as_ref().map(problem)
    );
    for img in &r.images {
        let mut failures: Vec<String> = img.failures.iter().map(problem).collect();
        failures.sort();
        out += &format!(
            "\n  image {:?} ok={} layers={} failures={failures:?}",
            img.image_id, img.ok, img.layer_count
        );
    }
    out
}

/// Whether the library reads `bytes` as a compressed archive (by its magic bytes).
pub fn looks_compressed(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
        || bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || bytes.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00])
        || bytes.starts_with(b"BZh")
}

/// Verifies `tar` as a plain file and compressed (gzip and zstd, as a whole) at both levels,
/// and checks that the three agree: how an archive is stored must not change the verdict.
/// Returns the deep report of the plain file.
pub fn verify_stored_three_ways(
    file: &MemFile,
    tar: &[u8],
    deep: bool,
    model: Option<&Model>,
) -> Option<FileReport> {
    file.set(tar);
    let plain = open_and_verify(file.path(), deep, model);
    let plain_fast = imgcache::verify_file(file.path(), &VerifyOptions::default());
    for (name, stored) in [("gzip", gzip(tar)), ("zstd", zstd(tar))] {
        file.set(&stored);
        let report = open_and_verify(file.path(), deep, model);
        // Bytes that start like a compressed stream are read as one when plain.
        if looks_compressed(tar) {
            continue;
        }
        if let (Some(p), Some(c)) = (&plain, &report) {
            assert_eq!(
                verdict(p),
                verdict(c),
                "deep verification differs between the plain and the {name}-compressed archive"
            );
        }
        let fast = imgcache::verify_file(file.path(), &VerifyOptions::default());
        assert_eq!(
            verdict(&plain_fast),
            verdict(&fast),
            "fast verification differs between the plain and the {name}-compressed archive"
        );
    }
    plain
}

/// Opens and verifies the archive at `path` at both levels, checking that the levels agree
/// (deep ok implies fast ok; opening fails exactly when verification reports a file error)
/// and the deep oracle when a model is given. Returns the deep report.
pub fn open_and_verify(path: &Path, deep: bool, model: Option<&Model>) -> Option<FileReport> {
    let opened = imgcache::Archive::open(path);
    if let Ok(a) = &opened {
        assert!(!a.images.is_empty(), "an opened archive lists images");
        let _ = a.select("busybox:latest");
        let _ = a.select("sha256:0000000000000000");
        if let Some(img) = a.images.first() {
            if let Some(id) = img.id() {
                let found = a.select(&id.to_string());
                assert!(found.is_ok(), "selecting an image by its own ID fails: {found:?}",
                    found = found.err());
            }
            // (select trims what the user typed, so only tags without surrounding spaces.)
            for t in img.tags.iter().filter(|t| t.trim() == t.as_str()) {
                assert!(a.select(t).is_ok(), "selecting an image by its own tag {t:?} fails");
            }
        }
        let _ = a.read_entry("manifest.json", 1 << 20);
    }
    let fast = imgcache::verify_file(path, &VerifyOptions::default());
    assert_eq!(
        opened.is_err(),
        fast.error.is_some(),
        "Archive::open and verify_file disagree: {:?} vs {:?}",
        opened.err(),
        fast.error
    );
    let _ = serde_json::to_string(&fast).expect("a report serializes");
    if !deep {
        return None;
    }
    let opts = VerifyOptions {
        level: Level::Deep,
        ..VerifyOptions::default()
    };
    let report = imgcache::verify_file(path, &opts);
    if report.ok {
        assert!(fast.ok, "deep verification ok but fast verification failed: {fast:?}");
    }
    if let Some(m) = model {
        check_deep_ok(&report, m);
    }
    // With an expected ID, ok means the image is that one.
    if let Some(id) = report.images.first().and_then(|i| i.image_id) {
        let opts = VerifyOptions {
            level: Level::Fast,
            expect: Some(id),
            image: None,
        };
        let r = imgcache::verify_file(path, &opts);
        if r.ok {
            assert!(r.images.iter().all(|i| i.image_id == Some(id)));
        }
    }
    Some(report)
}
