//! Advisory lock files: shared or exclusive, with a timeout and an error naming the path.
//!
//! A lock is an OS file lock (`flock` on Unix, `LockFileEx` on Windows) on a small file that
//! is created on first use. The lock belongs to the open file, so two threads (or two
//! processes) that each call [`lock`] exclude each other; it is released when the
//! [`LockGuard`] is dropped, or by the OS when the process dies.
//!
//! On Unix a lock file may be deleted while it is held exclusively
//! ([`LockGuard::remove_and_unlock`]): [`lock`] checks after locking that the path still names
//! the file it locked, and starts again otherwise, so a waiter never ends up holding a lock on
//! a deleted file.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::Error;

// File locking in std (`File::lock`, `try_lock`, `unlock`) is stable since Rust 1.89; the
// workspace `rust-version` must be at least that.

/// How a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Many holders at once; excludes [`LockMode::Exclusive`].
    Shared,
    /// One holder; excludes every other holder.
    Exclusive,
}

/// A held lock; released on drop.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    path: PathBuf,
    mode: LockMode,
}

impl LockGuard {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the lock is held.
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// Deletes the lock file, then releases the lock. Only for an exclusive lock on a file
    /// nobody needs any more (a per-blob lock after the blob is committed or swept); a process
    /// waiting on it notices and locks a fresh file. A shared lock, or a non-Unix platform,
    /// only releases the lock.
    pub fn remove_and_unlock(self) -> Result<(), Error> {
        if cfg!(unix) && self.mode == LockMode::Exclusive {
            match fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
        Ok(())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first makes the release
        // independent of any other handle to the same open file.
        let _ = self.file.unlock();
    }
}

/// Opens (creating it and its parent directory if needed) the lock file at `path` and takes
/// the lock in `mode`, retrying with a short backoff until `timeout` has passed; then
/// [`Error::LockTimeout`] naming the path. Logs once, at info level, when it has to wait.
pub fn lock(path: &Path, mode: LockMode, timeout: Duration) -> Result<LockGuard, Error> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(2);
    let mut logged = false;
    loop {
        let file = open_lock_file(path)?;
        loop {
            let attempt = match mode {
                LockMode::Shared => file.try_lock_shared(),
                LockMode::Exclusive => file.try_lock(),
            };
            match attempt {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(Error::io(path, e)),
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(Error::LockTimeout {
                    path: path.to_owned(),
                    seconds: timeout_seconds(timeout),
                });
            }
            if !logged {
                logged = true;
                tracing::info!(
                    "waiting for the lock {} (another imgcache process holds it)",
                    path.display()
                );
            }
            thread::sleep(delay.min(timeout - waited));
            delay = (delay * 2).min(Duration::from_millis(100));
        }
        if still_linked(&file, path)? {
            return Ok(LockGuard {
                file,
                path: path.to_owned(),
                mode,
            });
        }
        // The holder deleted the file while we waited: lock the new one instead.
    }
}

/// Takes the lock only if it is free right now: `Ok(None)` when another holder has it.
pub fn try_lock(path: &Path, mode: LockMode) -> Result<Option<LockGuard>, Error> {
    loop {
        let file = open_lock_file(path)?;
        let attempt = match mode {
            LockMode::Shared => file.try_lock_shared(),
            LockMode::Exclusive => file.try_lock(),
        };
        match attempt {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(Error::io(path, e)),
        }
        if still_linked(&file, path)? {
            return Ok(Some(LockGuard {
                file,
                path: path.to_owned(),
                mode,
            }));
        }
    }
}

/// The timeout as whole seconds for the error message, rounded up so that a sub-second
/// timeout does not read "0 s".
fn timeout_seconds(timeout: Duration) -> u64 {
    timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0)
}

fn open_lock_file(path: &Path) -> Result<File, Error> {
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    };
    match open() {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            open().map_err(|e| Error::io(path, e))
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// True when `path` still names the file `file` has open (it was not deleted or replaced
/// while we waited for the lock).
#[cfg(unix)]
fn still_linked(file: &File, path: &Path) -> Result<bool, Error> {
    use std::os::unix::fs::MetadataExt;
    let held = file.metadata().map_err(|e| Error::io(path, e))?;
    match fs::metadata(path) {
        Ok(now) => Ok(now.dev() == held.dev() && now.ino() == held.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

#[cfg(not(unix))]
fn still_linked(_file: &File, _path: &Path) -> Result<bool, Error> {
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_locks_coexist_and_exclude_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/a.lock");
        let short = Duration::from_millis(50);
        let a = lock(&path, LockMode::Shared, short).unwrap();
        let b = lock(&path, LockMode::Shared, short).unwrap();
        assert!(try_lock(&path, LockMode::Exclusive).unwrap().is_none());
        let err = lock(&path, LockMode::Exclusive, short).unwrap_err();
        assert!(
            matches!(err, Error::LockTimeout { seconds: 1, .. }),
            "{err}"
        );
        drop((a, b));
        let x = lock(&path, LockMode::Exclusive, short).unwrap();
        assert!(try_lock(&path, LockMode::Shared).unwrap().is_none());
        drop(x);
        assert!(try_lock(&path, LockMode::Shared).unwrap().is_some());
    }

    #[test]
    fn waiter_gets_the_lock_when_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.lock");
        let held = lock(&path, LockMode::Exclusive, Duration::ZERO).unwrap();
        let p = path.clone();
        let waiter = thread::spawn(move || lock(&p, LockMode::Exclusive, Duration::from_secs(10)));
        thread::sleep(Duration::from_millis(100));
        drop(held);
        waiter.join().unwrap().unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn waiter_relocks_after_the_holder_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.lock");
        let held = lock(&path, LockMode::Exclusive, Duration::ZERO).unwrap();
        let p = path.clone();
        let waiter = thread::spawn(move || lock(&p, LockMode::Exclusive, Duration::from_secs(10)));
        thread::sleep(Duration::from_millis(100));
        held.remove_and_unlock().unwrap();
        let guard = waiter.join().unwrap().unwrap();
        // The waiter holds a lock on the file the path names now, so others are excluded.
        assert!(path.exists());
        assert!(try_lock(&path, LockMode::Exclusive).unwrap().is_none());
        drop(guard);
    }

    #[test]
    fn timeout_seconds_round_up() {
        assert_eq!(timeout_seconds(Duration::from_millis(200)), 1);
        assert_eq!(timeout_seconds(Duration::from_secs(30)), 30);
        assert_eq!(timeout_seconds(Duration::ZERO), 0);
    }
}
