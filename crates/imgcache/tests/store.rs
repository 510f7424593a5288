//! The content store and its lock files, through the public API.

mod support;

use std::fs;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use imgcache::Digest;
use imgcache::Error;
use imgcache::lock::{self, LockMode};
use imgcache::store::{Ingest, IngestStart, STORE_VERSION, Store};
#[cfg(unix)]
use support::set_mode;

const TIMEOUT: Duration = Duration::from_secs(10);

fn open(dir: &Path) -> Store {
    Store::open(dir, TIMEOUT).unwrap()
}

fn writer(store: &Store, digest: &Digest, size: Option<u64>) -> Ingest {
    match store.ingest(digest, size).unwrap() {
        IngestStart::Write(w) => w,
        IngestStart::Present => panic!("{digest} unexpectedly present"),
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn open_creates_the_layout_and_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cache");
    let store = open(&root);
    assert_eq!(store.root(), root);
    for dir in ["blobs/sha256", "ingest", "locks"] {
        assert!(root.join(dir).is_dir(), "{dir}");
    }
    let tag = fs::read_to_string(root.join("CACHEDIR.TAG")).unwrap();
    assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"));
    assert!(tag.lines().skip(1).all(|l| l.starts_with('#')), "{tag}");
    let version = fs::read_to_string(root.join("VERSION")).unwrap();
    assert_eq!(version.trim(), STORE_VERSION.to_string());
    // Nothing temporary is left behind.
    assert!(dir_names(&root.join("ingest")).is_empty());

    let d = store.put_bytes(b"kept").unwrap();
    let again = open(&root);
    assert!(again.has_blob(&d));
    assert_eq!(fs::read_to_string(root.join("CACHEDIR.TAG")).unwrap(), tag);
}

#[test]
fn open_from_many_threads_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cache");
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let root = root.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                Store::open(&root, TIMEOUT).map(|_| ())
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    assert_eq!(
        dir_names(&root),
        ["CACHEDIR.TAG", "VERSION", "blobs", "ingest", "locks"]
    );
    assert!(dir_names(&root.join("ingest")).is_empty());
}

#[test]
fn open_refuses_a_newer_or_unknown_version() {
    let tmp = tempfile::tempdir().unwrap();
    for (text, words) in [("2\n", "newer"), ("banana", "unknown")] {
        let root = tmp.path().join(text.trim());
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join("VERSION"), text).unwrap();
        let err = Store::open(&root, TIMEOUT).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("VERSION") && msg.contains(words), "{msg}");
        // Nothing was written into the foreign directory.
        assert_eq!(dir_names(&root), ["VERSION"]);
    }
}

#[test]
fn put_bytes_and_read_blob_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let bytes = br#"{"architecture":"amd64"}"#;
    let d = store.put_bytes(bytes).unwrap();
    assert_eq!(d, Digest::of_bytes(bytes));
    let path = store.blob_path(&d);
    assert_eq!(path, tmp.path().join("blobs/sha256").join(d.hex()));
    assert!(store.has_blob(&d));
    assert_eq!(store.blob_size(&d), Some(bytes.len() as u64));
    assert_eq!(store.read_blob(&d, 1024).unwrap(), bytes);
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o444);
    // Storing again is a no-op; nothing temporary remains.
    assert_eq!(store.put_bytes(bytes).unwrap(), d);
    assert!(dir_names(&tmp.path().join("ingest")).is_empty());
    // Over the limit: TooLarge.
    let err = store.read_blob(&d, 3).unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: 3, .. }), "{err}");
    // Absent blobs.
    let absent = Digest::of_bytes(b"absent");
    assert!(!store.has_blob(&absent));
    assert_eq!(store.blob_size(&absent), None);
    assert!(matches!(
        store.read_blob(&absent, 10),
        Err(Error::NotFound { .. })
    ));
}

#[cfg(unix)]
#[test]
fn read_blob_detects_a_blob_edited_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let d = store.put_bytes(b"original content").unwrap();
    let path = store.blob_path(&d);
    set_mode(&path, 0o644);
    let mut bytes = fs::read(&path).unwrap();
    bytes[0] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let err = store.read_blob(&d, 1024).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{msg}");
    assert!(msg.contains(&d.to_string()), "{msg}");
    assert!(msg.contains(&Digest::of_bytes(&bytes).to_string()), "{msg}");
}

#[test]
fn ingest_write_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let blob = data(300_000);
    let d = Digest::of_bytes(&blob);
    let mut w = writer(&store, &d, Some(blob.len() as u64));
    assert_eq!(w.offset(), 0);
    for chunk in blob.chunks(65_536) {
        w.write(chunk).unwrap();
    }
    assert_eq!(w.offset(), blob.len() as u64);
    // Not visible before commit.
    assert!(!store.has_blob(&d));
    w.commit().unwrap();
    assert!(store.has_blob(&d));
    assert_eq!(fs::read(store.blob_path(&d)).unwrap(), blob);
    #[cfg(unix)]
    assert_eq!(mode(&store.blob_path(&d)), 0o444);
    assert!(dir_names(&tmp.path().join("ingest")).is_empty());
    // The per-blob lock file is gone too, and the blob is now simply present.
    #[cfg(unix)]
    assert!(dir_names(&tmp.path().join("locks")).is_empty());
    assert!(matches!(
        store.ingest(&d, None).unwrap(),
        IngestStart::Present
    ));
}

#[test]
fn commit_with_wrong_content_is_a_digest_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let d = Digest::of_bytes(b"expected content");
    let mut w = writer(&store, &d, Some(16));
    w.write(b"EXPECTED CONTENT").unwrap();
    let partial = w.partial_path().to_owned();
    assert!(partial.exists());
    let err = w.commit().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{msg}");
    assert!(msg.contains(&d.to_string()), "{msg}");
    assert!(
        msg.contains(&Digest::of_bytes(b"EXPECTED CONTENT").to_string()),
        "{msg}"
    );
    assert!(!store.has_blob(&d));
    assert!(dir_names(&tmp.path().join("blobs/sha256")).is_empty());
    assert!(!partial.exists());
    // A fresh attempt starts from zero.
    assert_eq!(writer(&store, &d, Some(16)).offset(), 0);
}

#[test]
fn interrupted_ingest_resumes_where_it_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let blob = data(100_001);
    let half = blob.len() / 2;
    let d = Digest::of_bytes(&blob);
    let mut w = writer(&store, &d, Some(blob.len() as u64));
    w.write(&blob[..half]).unwrap();
    drop(w); // the process "crashed"
    assert!(!store.has_blob(&d));

    let mut w = writer(&store, &d, Some(blob.len() as u64));
    assert_eq!(w.offset(), half as u64);
    w.write(&blob[half..]).unwrap();
    w.commit().unwrap();
    assert_eq!(fs::read(store.blob_path(&d)).unwrap(), blob);
}

#[test]
fn resume_without_a_known_size() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let blob = data(5000);
    let d = Digest::of_bytes(&blob);
    let mut w = writer(&store, &d, None);
    w.write(&blob[..1234]).unwrap();
    drop(w);
    let mut w = writer(&store, &d, None);
    assert_eq!(w.offset(), 1234);
    w.write(&blob[1234..]).unwrap();
    w.commit().unwrap();
    assert!(store.has_blob(&d));
}

#[test]
fn a_partial_longer_than_expected_is_discarded() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let blob = data(1000);
    let d = Digest::of_bytes(&blob);
    let partial = tmp
        .path()
        .join("ingest")
        .join(format!("{}.partial", d.hex()));
    fs::write(&partial, data(1500)).unwrap();
    let mut w = writer(&store, &d, Some(1000));
    assert_eq!(w.offset(), 0);
    assert_eq!(fs::metadata(&partial).unwrap().len(), 0);
    w.write(&blob).unwrap();
    w.commit().unwrap();
    assert_eq!(store.read_blob(&d, 4096).unwrap(), blob);
}

#[test]
fn two_writers_of_one_blob_write_it_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let blob = data(50_000);
    let d = Digest::of_bytes(&blob);

    let mut first = writer(&store, &d, Some(blob.len() as u64));
    let second = {
        let store = store.clone();
        thread::spawn(move || store.ingest(&d, Some(50_000)))
    };
    // The second waits on the lock while the first writes.
    thread::sleep(Duration::from_millis(200));
    assert!(!second.is_finished());
    first.write(&blob).unwrap();
    first.commit().unwrap();
    let inode_before = inode(&store.blob_path(&d));
    match second.join().unwrap().unwrap() {
        IngestStart::Present => {}
        IngestStart::Write(w) => panic!("second writer got to write at {}", w.offset()),
    }
    assert_eq!(inode(&store.blob_path(&d)), inode_before);
    assert_eq!(fs::read(store.blob_path(&d)).unwrap(), blob);
}

#[cfg(unix)]
fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).unwrap().ino()
}

#[cfg(not(unix))]
fn inode(_path: &Path) -> u64 {
    0
}

#[test]
fn many_threads_ingesting_one_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let blob = Arc::new(data(20_000));
    let d = Digest::of_bytes(&blob);
    let barrier = Arc::new(Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (store, blob, barrier) = (store.clone(), blob.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                match store.ingest(&d, Some(blob.len() as u64)).unwrap() {
                    IngestStart::Present => false,
                    IngestStart::Write(mut w) => {
                        w.write(&blob[w.offset() as usize..]).unwrap();
                        w.commit().unwrap();
                        true
                    }
                }
            })
        })
        .collect();
    let writes = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|&wrote| wrote)
        .count();
    assert_eq!(writes, 1);
    assert_eq!(store.read_blob(&d, 1 << 20).unwrap(), *blob);
}

#[test]
fn lock_timeout_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), Duration::from_millis(200)).unwrap();
    let held = store.gc_lock(LockMode::Exclusive).unwrap();
    let start = std::time::Instant::now();
    let err = store.gc_lock(LockMode::Shared).unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(200));
    let path = tmp.path().join("locks/gc.lock");
    match &err {
        Error::LockTimeout { path: p, .. } => assert_eq!(p, &path),
        other => panic!("{other}"),
    }
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(err.is_environment());
    drop(held);
    let a = store.gc_lock(LockMode::Shared).unwrap();
    let b = store.gc_lock(LockMode::Shared).unwrap();
    drop((a, b));

    // The same through a blob lock: an ingest in progress blocks a second one.
    let d = Digest::of_bytes(b"x");
    let _w = writer(&store, &d, None);
    let err = store.ingest(&d, None).unwrap_err();
    assert!(
        matches!(&err, Error::LockTimeout { path, .. } if path.ends_with(format!("blob-{}.lock", d.hex()))),
        "{err}"
    );
}

#[test]
fn lock_function_with_explicit_path() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("sub/dir/x.lock");
    let g = lock::lock(&path, LockMode::Exclusive, Duration::ZERO).unwrap();
    assert_eq!(g.path(), path);
    let err = lock::lock(&path, LockMode::Shared, Duration::from_millis(50)).unwrap_err();
    assert!(matches!(err, Error::LockTimeout { .. }));
}

#[test]
fn sweep_removes_only_stale_unlocked_partials() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let ingest = tmp.path().join("ingest");

    // A stale, abandoned partial.
    let abandoned = Digest::of_bytes(b"abandoned");
    let mut w = writer(&store, &abandoned, None);
    w.write(b"aban").unwrap();
    drop(w);
    // A partial whose writer is still at work (holds the lock).
    let busy = Digest::of_bytes(b"busy");
    let mut busy_writer = writer(&store, &busy, None);
    busy_writer.write(b"bu").unwrap();
    // Junk that is not ours to remove.
    fs::write(ingest.join("notes.txt"), "x").unwrap();

    thread::sleep(Duration::from_millis(300));
    // A fresh partial (not stale yet).
    let fresh = Digest::of_bytes(b"fresh");
    let mut w = writer(&store, &fresh, None);
    w.write(b"fr").unwrap();
    drop(w);

    assert_eq!(store.sweep_ingest(Duration::from_millis(250)).unwrap(), 1);
    let mut expected = vec![
        format!("{}.partial", busy.hex()),
        format!("{}.partial", fresh.hex()),
        "notes.txt".to_owned(),
    ];
    expected.sort();
    assert_eq!(dir_names(&ingest), expected);

    // With a zero age everything unlocked goes, but the busy writer keeps its partial.
    assert_eq!(store.sweep_ingest(Duration::ZERO).unwrap(), 1);
    assert!(ingest.join(format!("{}.partial", busy.hex())).exists());
    busy_writer.write(b"sy").unwrap();
    busy_writer.commit().unwrap();
    assert!(store.has_blob(&busy));
}

#[test]
fn list_blobs_ignores_junk_and_remove_blob_deletes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let a = store.put_bytes(b"aaa").unwrap();
    let b = store.put_bytes(b"bbbbb").unwrap();
    let dir = tmp.path().join("blobs/sha256");
    fs::write(dir.join("README"), "junk").unwrap();
    fs::write(dir.join(a.hex().to_uppercase()), "junk").unwrap();
    fs::write(dir.join(format!("{}.tmp", a.hex())), "junk").unwrap();
    fs::create_dir(dir.join("0".repeat(64))).unwrap();

    let mut expected = vec![(a, 3), (b, 5)];
    expected.sort();
    assert_eq!(store.list_blobs().unwrap(), expected);

    let _gc = store.gc_lock(LockMode::Exclusive).unwrap();
    store.remove_blob(&a).unwrap();
    assert!(!store.has_blob(&a));
    store.remove_blob(&a).unwrap(); // already gone: fine
    assert_eq!(store.list_blobs().unwrap(), vec![(b, 5)]);
}

#[test]
fn named_locks_live_under_locks() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), Duration::from_millis(100)).unwrap();
    let g = store.named_lock("index", LockMode::Exclusive).unwrap();
    assert_eq!(g.path(), tmp.path().join("locks/index.lock"));
    assert!(matches!(
        store.named_lock("index", LockMode::Shared),
        Err(Error::LockTimeout { .. })
    ));
    // A different name is a different lock.
    store.named_lock("other", LockMode::Exclusive).unwrap();
}
