//! The content store: blobs on disk, named by their sha256, immutable once visible.
//!
//! ```text
//! <root>/
//!   CACHEDIR.TAG           tells backup tools this is a cache
//!   VERSION                the layout version (STORE_VERSION)
//!   blobs/sha256/<hex>     complete, verified, read-only blobs, exactly as served
//!   ingest/<hex>.partial   a download in progress or interrupted: resumable
//!   ingest/*.tmp           temporary files of small writes
//!   locks/                 lock files: gc.lock, blob-<hex>.lock, named locks
//! ```
//!
//! A blob reaches `blobs/` only by a rename of a file in `ingest/` whose size and digest were
//! checked and which was fsynced first; the directory is fsynced after the rename. So a
//! file in `blobs/` is always complete and verified, whatever crashed or filled up when.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::Error;
use crate::lock::{self, LockGuard, LockMode};

/// The on-disk layout version this build reads and writes.
pub const STORE_VERSION: u32 = 1;

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by imgcache.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

const PARTIAL_SUFFIX: &str = ".partial";
const TEMP_SUFFIX: &str = ".tmp";

/// A content store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    lock_timeout: Duration,
}

impl Store {
    /// Opens the store at `root`, creating it if needed: the directory, `CACHEDIR.TAG`,
    /// `VERSION`, `blobs/sha256/`, `ingest/` and `locks/`. A root whose `VERSION` is not
    /// [`STORE_VERSION`] (written by a newer imgcache, or not a version at all) is refused
    /// before anything is written in it. Idempotent, and safe when several processes open the
    /// same root at once (every file is written to a temporary name and renamed into place).
    pub fn open(root: &Path, lock_timeout: Duration) -> Result<Store, Error> {
        fs::create_dir_all(root).map_err(|e| io_error(root, e))?;
        let store = Store {
            root: root.to_owned(),
            lock_timeout,
        };
        let version_path = root.join("VERSION");
        let has_version = store.check_version(&version_path)?;
        for dir in [store.blob_dir(), store.ingest_dir(), store.lock_dir()] {
            fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        }
        let tag = root.join("CACHEDIR.TAG");
        if !tag.exists() {
            store.write_file_atomically(&tag, CACHEDIR_TAG.as_bytes(), false)?;
        }
        if !has_version {
            let text = format!("{STORE_VERSION}\n");
            store.write_file_atomically(&version_path, text.as_bytes(), false)?;
        }
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How long lock acquisitions wait before [`Error::LockTimeout`].
    pub fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }

    /// Where the blob with this digest lives (whether or not it is there).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blob_dir().join(digest.hex())
    }

    /// True when the blob is in the store.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_size(digest).is_some()
    }

    /// The stored blob's size, or `None` when it is not in the store.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(digest))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// Opens a stored blob for reading; [`Error::NotFound`] when it is not in the store.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, Error> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound { path: path.clone() },
            _ => io_error(&path, e),
        })
    }

    /// Reads a small stored blob (a manifest, a config) whole, checking that its bytes still
    /// hash to `digest`: [`Error::DigestMismatch`] when the file was changed on disk,
    /// [`Error::TooLarge`] when it is over `limit` bytes.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, Error> {
        let path = self.blob_path(digest);
        let file = self.open_blob(digest)?;
        let too_large = || Error::TooLarge {
            what: format!("blob {digest} ({})", path.display()),
            limit,
        };
        let len = file.metadata().map_err(|e| io_error(&path, e))?.len();
        if len > limit {
            return Err(too_large());
        }
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(&path, e))?;
        if bytes.len() as u64 > limit {
            return Err(too_large());
        }
        let found = Digest::of_bytes(&bytes);
        if found != *digest {
            return Err(corrupt_blob(&path, digest, &found));
        }
        Ok(bytes)
    }

    /// Stores `bytes` under their sha256 and returns it; does nothing when the blob is
    /// already there. Writes a temporary file in `ingest/`, fsyncs it, makes it read-only,
    /// renames it into `blobs/sha256/` and fsyncs that directory.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, Error> {
        let digest = Digest::of_bytes(bytes);
        if !self.has_blob(&digest) {
            self.write_file_atomically(&self.blob_path(&digest), bytes, true)?;
        }
        Ok(digest)
    }

    /// Begins or resumes writing the blob `digest`.
    ///
    /// Takes the blob's exclusive lock (`locks/blob-<hex>.lock`, waiting up to the store's
    /// timeout), held by the returned [`Ingest`] until it is committed or dropped. When the
    /// blob is in the store (already, or once the lock is ours because another process
    /// finished it), returns [`IngestStart::Present`]. Otherwise opens `ingest/<hex>.partial`:
    /// data left there by an interrupted run is hashed again so that writing resumes at
    /// [`Ingest::offset`]; a partial longer than `expected_size` is discarded.
    pub fn ingest(
        &self,
        digest: &Digest,
        expected_size: Option<u64>,
    ) -> Result<IngestStart, Error> {
        if self.has_blob(digest) {
            return Ok(IngestStart::Present);
        }
        let guard = lock::lock(
            &self.blob_lock_path(digest),
            LockMode::Exclusive,
            self.lock_timeout,
        )?;
        if self.has_blob(digest) {
            // Another process finished it: its leftovers are not needed either.
            let _ = fs::remove_file(self.partial_path(digest));
            guard.remove_and_unlock()?;
            return Ok(IngestStart::Present);
        }
        let path = self.partial_path(digest);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        let mut len = file.metadata().map_err(|e| io_error(&path, e))?.len();
        if expected_size.is_some_and(|size| len > size) {
            tracing::debug!(
                "discarding {}: {len} bytes, more than the {} expected",
                path.display(),
                expected_size.unwrap_or(0)
            );
            file.set_len(0).map_err(|e| io_error(&path, e))?;
            len = 0;
        }
        let mut hasher = Sha256::new();
        let mut offset = 0;
        if len > 0 {
            let mut buf = vec![0u8; 1 << 16];
            let mut reader = (&file).take(len);
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_error(&path, e)),
                };
                hasher.update(&buf[..n]);
                offset += n as u64;
            }
            tracing::debug!("resuming {} at byte {offset}", path.display());
        }
        // Writing continues after the bytes hashed, whatever the file held beyond them.
        file.set_len(offset).map_err(|e| io_error(&path, e))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| io_error(&path, e))?;
        Ok(IngestStart::Write(Ingest {
            digest: *digest,
            expected_size,
            file,
            path,
            target: self.blob_path(digest),
            blob_dir: self.blob_dir(),
            hasher,
            offset,
            poisoned: false,
            guard,
        }))
    }

    /// Removes `ingest/*.partial` files not modified for `age` whose blob lock is free (no
    /// writer is at work on them), and temporary files of small writes as old; returns how
    /// many files it removed.
    pub fn sweep_ingest(&self, age: Duration) -> Result<usize, Error> {
        let dir = self.ingest_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_error(&dir, e)),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&dir, e))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let partial = name.strip_suffix(PARTIAL_SUFFIX).and_then(Digest::from_hex);
            if partial.is_none() && !name.ends_with(TEMP_SUFFIX) {
                continue;
            }
            if !is_stale(&path, age) {
                continue;
            }
            let guard = match &partial {
                Some(digest) => {
                    match lock::try_lock(&self.blob_lock_path(digest), LockMode::Exclusive)? {
                        Some(guard) => Some(guard),
                        None => continue, // a writer is at work on it
                    }
                }
                None => None,
            };
            // Look again under the lock: a writer may have finished or touched it meanwhile.
            if !is_stale(&path, age) {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path, e)),
            }
            if let Some(guard) = guard {
                guard.remove_and_unlock()?;
            }
        }
        Ok(removed)
    }

    /// Every blob in the store with its size, sorted by digest. Files whose name is not 64
    /// lowercase hex, and anything that is not a regular file, are ignored.
    pub fn list_blobs(&self) -> Result<Vec<(Digest, u64)>, Error> {
        let dir = self.blob_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&dir, e)),
        };
        let mut blobs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&dir, e))?;
            let Some(digest) = entry.file_name().to_str().and_then(Digest::from_hex) else {
                continue;
            };
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(entry.path(), e)),
            };
            if meta.is_file() {
                blobs.push((digest, meta.len()));
            }
        }
        blobs.sort_unstable();
        Ok(blobs)
    }

    /// Deletes a blob; a blob that is not there is not an error. The caller holds the GC lock
    /// exclusively.
    pub fn remove_blob(&self, digest: &Digest) -> Result<(), Error> {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            // Where a read-only file cannot be deleted (Windows), make it writable first.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && cfg!(not(unix)) => {
                make_writable(&path).map_err(|e| io_error(&path, e))?;
                fs::remove_file(&path).map_err(|e| io_error(&path, e))
            }
            Err(e) => Err(io_error(&path, e)),
        }
    }

    /// The cache-wide lock (`locks/gc.lock`): pulls, imports and loads hold it shared for
    /// their whole run; prune and `fsck --repair` hold it exclusively.
    pub fn gc_lock(&self, mode: LockMode) -> Result<LockGuard, Error> {
        self.named_lock("gc", mode)
    }

    /// A named lock, `locks/<name>.lock` (for example for the index). `name` is one path
    /// component of ASCII letters, digits, `-`, `_` and `.`, not starting with `.`.
    pub fn named_lock(&self, name: &str, mode: LockMode) -> Result<LockGuard, Error> {
        let valid = !name.is_empty()
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        let path = self.lock_dir().join(format!("{name}.lock"));
        if !valid {
            return Err(Error::io(
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "invalid lock name"),
            ));
        }
        lock::lock(&path, mode, self.lock_timeout)
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// A new temporary file name in `ingest/` for `name`, unique to this process: one a crash
    /// leaves behind is swept with the stale partials.
    pub fn temp_path(&self, name: &str) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        self.ingest_dir().join(format!(
            "{name}.{}-{}{TEMP_SUFFIX}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    fn lock_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    fn partial_path(&self, digest: &Digest) -> PathBuf {
        self.ingest_dir()
            .join(format!("{}{PARTIAL_SUFFIX}", digest.hex()))
    }

    fn blob_lock_path(&self, digest: &Digest) -> PathBuf {
        self.lock_dir().join(format!("blob-{}.lock", digest.hex()))
    }

    /// Checks `VERSION` if there is one; returns whether there is.
    fn check_version(&self, path: &Path) -> Result<bool, Error> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_error(path, e)),
        };
        let refuse = |message: String| {
            Err(Error::io(
                path,
                io::Error::new(io::ErrorKind::InvalidData, message),
            ))
        };
        match text.trim().parse::<u32>() {
            Ok(STORE_VERSION) => Ok(true),
            Ok(v) if v > STORE_VERSION => refuse(format!(
                "the cache has layout version {v}, newer than the {STORE_VERSION} this imgcache \
                 understands: upgrade imgcache, or use another cache directory (IMGCACHE_HOME)"
            )),
            _ => refuse(format!(
                "unknown cache layout version {:?} (this imgcache writes {STORE_VERSION}): \
                 this is not an imgcache cache, or it is damaged; use another cache directory \
                 (IMGCACHE_HOME) or remove this one",
                crate::digest::truncate_for_message(text.trim())
            )),
        }
    }

    /// Writes `bytes` to `target` through a temporary file in `ingest/`: write, fsync,
    /// (read-only,) rename, fsync the target's directory. The temporary file is removed on
    /// failure.
    fn write_file_atomically(
        &self,
        target: &Path,
        bytes: &[u8],
        read_only: bool,
    ) -> Result<(), Error> {
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("file");
        let temp = self.temp_path(name);
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)
                .map_err(|e| io_error(&temp, e))?;
            file.write_all(bytes).map_err(|e| io_error(&temp, e))?;
            file.sync_all().map_err(|e| io_error(&temp, e))?;
            if read_only {
                make_read_only(&file).map_err(|e| io_error(&temp, e))?;
            }
            drop(file);
            fs::rename(&temp, target).map_err(|e| io_error(target, e))
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        if let Some(dir) = target.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

/// What [`Store::ingest`] found.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // made once per blob; boxing would buy nothing
pub enum IngestStart {
    /// The blob is in the store: nothing to write.
    Present,
    /// Write the blob (from [`Ingest::offset`]) and commit it.
    Write(Ingest),
}

/// A blob being written into `ingest/<hex>.partial`, under the blob's exclusive lock.
///
/// Dropping it without [`Ingest::commit`] keeps the partial file for a later resume and
/// releases the lock.
#[derive(Debug)]
pub struct Ingest {
    digest: Digest,
    expected_size: Option<u64>,
    file: File,
    path: PathBuf,
    target: PathBuf,
    blob_dir: PathBuf,
    hasher: Sha256,
    offset: u64,
    /// A failed write could not be rolled back: the file and the hash may disagree.
    poisoned: bool,
    guard: LockGuard,
}

impl Ingest {
    /// The digest being written.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The size promised for the blob, if known.
    pub fn expected_size(&self) -> Option<u64> {
        self.expected_size
    }

    /// Bytes written so far, including those resumed from an earlier run: fetch the rest
    /// from here (an HTTP `Range: bytes=<offset>-` request).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The partial file being written.
    pub fn partial_path(&self) -> &Path {
        &self.path
    }

    /// Appends `data`, hashing it. [`Error::TooLarge`] (nothing written) when it would take
    /// the blob past its expected size. A failed write (disk full) leaves the file as it was
    /// before the call, so writing may be retried or resumed later.
    pub fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        self.check_usable()?;
        if let Some(size) = self.expected_size
            && self.offset.saturating_add(data.len() as u64) > size
        {
            return Err(Error::TooLarge {
                what: format!("blob {} (more data than the size promised)", self.digest),
                limit: size,
            });
        }
        if let Err(e) = self.file.write_all(data) {
            let rolled_back = self.file.set_len(self.offset).is_ok()
                && self.file.seek(SeekFrom::Start(self.offset)).is_ok();
            self.poisoned = !rolled_back;
            return Err(io_error(&self.path, e));
        }
        self.hasher.update(data);
        self.offset += data.len() as u64;
        Ok(())
    }

    /// Starts over from byte 0 (the server ignored our range request).
    pub fn reset(&mut self) -> Result<(), Error> {
        self.file.set_len(0).map_err(|e| io_error(&self.path, e))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| io_error(&self.path, e))?;
        self.hasher = Sha256::new();
        self.offset = 0;
        self.poisoned = false;
        Ok(())
    }

    /// Checks the size (when known) and the digest of what was written. On a mismatch the
    /// partial file is deleted and [`Error::DigestMismatch`] names the blob and both values.
    /// Otherwise fsyncs the file, makes it read-only, renames it to `blobs/sha256/<hex>`,
    /// fsyncs that directory and releases the lock.
    pub fn commit(mut self) -> Result<(), Error> {
        self.check_usable()?;
        if let Some(size) = self.expected_size
            && self.offset != size
        {
            self.discard();
            return Err(Error::DigestMismatch {
                what: format!("size of blob {}", self.digest),
                expected: format!("{size} bytes"),
                found: format!("{} bytes", self.offset),
            });
        }
        let found = finish(std::mem::take(&mut self.hasher));
        if found != self.digest {
            self.discard();
            return Err(Error::DigestMismatch {
                what: format!("blob {} ({} bytes written)", self.digest, self.offset),
                expected: self.digest.to_string(),
                found: found.to_string(),
            });
        }
        if let Err(e) = self.file.sync_all() {
            // After a failed fsync the data may be lost without a trace: do not keep it.
            self.discard();
            return Err(io_error(&self.path, e));
        }
        make_read_only(&self.file).map_err(|e| io_error(&self.path, e))?;
        if let Err(e) = fs::rename(&self.path, &self.target) {
            let _ = make_writable_file(&self.file);
            return Err(io_error(&self.target, e));
        }
        sync_dir(&self.blob_dir)?;
        let Ingest { file, guard, .. } = self;
        drop(file);
        // Nobody needs this blob's lock file any more; a waiter notices it is gone.
        guard.remove_and_unlock()
    }

    fn check_usable(&self) -> Result<(), Error> {
        if self.poisoned {
            return Err(Error::io(
                &self.path,
                io::Error::other(
                    "an earlier write failed and could not be undone; start the ingest again",
                ),
            ));
        }
        Ok(())
    }

    fn discard(&self) {
        if let Err(e) = fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove {}: {e}", self.path.display());
        }
    }
}

fn finish(hasher: Sha256) -> Digest {
    let bytes: [u8; 32] = hasher.finalize().into();
    let mut hex = String::with_capacity(64);
    for b in bytes {
        hex.push_str(&format!("{b:02x}"));
    }
    Digest::from_hex(&hex).expect("64 lowercase hex characters")
}

fn corrupt_blob(path: &Path, expected: &Digest, found: &Digest) -> Error {
    Error::DigestMismatch {
        what: format!(
            "stored blob {} was changed on disk (run `imgcache fsck --repair`)",
            path.display()
        ),
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

/// [`Error::Io`] for `path`; a full disk (or quota) says so in words and what to do.
pub(crate) fn io_error(path: impl Into<PathBuf>, e: io::Error) -> Error {
    let source = match e.kind() {
        io::ErrorKind::StorageFull => io::Error::new(
            io::ErrorKind::StorageFull,
            format!("the disk is full ({e}): free some space (`imgcache prune`) and try again"),
        ),
        io::ErrorKind::QuotaExceeded => io::Error::new(
            io::ErrorKind::QuotaExceeded,
            format!(
                "the disk quota is exhausted ({e}): free some space (`imgcache prune`) and try again"
            ),
        ),
        _ => e,
    };
    Error::io(path, source)
}

fn is_stale(path: &Path, age: Duration) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|elapsed| elapsed >= age)
}

#[cfg(unix)]
fn make_read_only(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o444))
}

#[cfg(not(unix))]
fn make_read_only(file: &File) -> io::Result<()> {
    let mut perms = file.metadata()?.permissions();
    perms.set_readonly(true);
    file.set_permissions(perms)
}

#[cfg(unix)]
fn make_writable_file(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
#[allow(clippy::permissions_set_readonly_false)]
fn make_writable_file(file: &File) -> io::Result<()> {
    let mut perms = file.metadata()?.permissions();
    perms.set_readonly(false);
    file.set_permissions(perms)
}

#[cfg(not(unix))]
fn make_writable(path: &Path) -> io::Result<()> {
    make_writable_file(&OpenOptions::new().read(true).open(path)?)
}

#[cfg(unix)]
fn make_writable(_path: &Path) -> io::Result<()> {
    Ok(())
}

/// Makes a rename in `dir` durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), Error> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_errors_name_the_path_and_say_the_disk_is_full() {
        let err = io_error(
            "/cache/ingest/x.partial",
            io::Error::from(io::ErrorKind::StorageFull),
        );
        let text = err.to_string();
        assert!(matches!(err, Error::Io { .. }));
        assert!(text.contains("/cache/ingest/x.partial"), "{text}");
        assert!(text.contains("disk is full"), "{text}");
        assert!(err.is_environment());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn enospc_maps_to_disk_full() {
        let err = io_error("/x", io::Error::from_raw_os_error(28));
        assert!(err.to_string().contains("disk is full"), "{err}");
    }

    #[test]
    fn finish_matches_of_bytes() {
        let mut h = Sha256::new();
        h.update(b"hello");
        assert_eq!(finish(h), Digest::of_bytes(b"hello"));
    }

    #[test]
    fn write_past_expected_size_is_refused_and_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Duration::from_secs(5)).unwrap();
        let data = b"0123456789";
        let d = Digest::of_bytes(data);
        let IngestStart::Write(mut w) = store.ingest(&d, Some(10)).unwrap() else {
            panic!("present")
        };
        w.write(&data[..6]).unwrap();
        let err = w.write(&data[..6]).unwrap_err();
        assert!(matches!(err, Error::TooLarge { limit: 10, .. }), "{err}");
        assert_eq!(w.offset(), 6);
        assert_eq!(fs::metadata(w.partial_path()).unwrap().len(), 6);
        w.write(&data[6..]).unwrap();
        w.commit().unwrap();
        assert_eq!(store.read_blob(&d, 100).unwrap(), data);
    }

    #[test]
    fn short_commit_is_a_size_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Duration::from_secs(5)).unwrap();
        let d = Digest::of_bytes(b"abcdef");
        let IngestStart::Write(mut w) = store.ingest(&d, Some(6)).unwrap() else {
            panic!("present")
        };
        w.write(b"abc").unwrap();
        let partial = w.partial_path().to_owned();
        let err = w.commit().unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{text}");
        assert!(
            text.contains("6 bytes") && text.contains("3 bytes"),
            "{text}"
        );
        assert!(!partial.exists());
        assert!(!store.has_blob(&d));
    }

    #[test]
    fn reset_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Duration::from_secs(5)).unwrap();
        let d = Digest::of_bytes(b"right");
        let IngestStart::Write(mut w) = store.ingest(&d, None).unwrap() else {
            panic!("present")
        };
        w.write(b"wrong bytes").unwrap();
        w.reset().unwrap();
        assert_eq!(w.offset(), 0);
        w.write(b"right").unwrap();
        w.commit().unwrap();
        assert_eq!(store.read_blob(&d, 100).unwrap(), b"right");
    }

    #[test]
    fn invalid_lock_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Duration::from_secs(5)).unwrap();
        for bad in ["", "../x", "a/b", ".hidden"] {
            assert!(store.named_lock(bad, LockMode::Shared).is_err(), "{bad:?}");
        }
        store.named_lock("index", LockMode::Exclusive).unwrap();
        assert!(dir.path().join("locks/index.lock").exists());
    }
}
