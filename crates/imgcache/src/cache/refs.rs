//! The `refs.json` mirror: every reference the index holds, written beside it so that a lost
//! or corrupt `index.db` can be rebuilt (`fsck --repair`) and `prune` can refuse to run on an
//! index that forgot references.

use std::path::PathBuf;

use super::Cache;
use crate::error::Error;
use crate::index::{Index, RefRecord};
use crate::lock::LockMode;

impl Cache {
    /// Mirrors the references into `refs.json`, so that the index can be rebuilt from it and
    /// the blobs if `index.db` is ever lost (`fsck --repair`). Written under a lock, from the
    /// index (the point where concurrent processes agree), temp file then rename.
    pub(super) fn save_refs(&self) -> Result<(), Error> {
        let _lock = self.store.named_lock("refs", LockMode::Exclusive)?;
        self.write_refs(&[])
    }

    /// Removes references: `refs.json` first, then the index, under the refs lock. A process
    /// killed in between leaves the references in the index only, which `fsck` does not count
    /// as lost (the other order would make `fsck --repair` bring them back).
    pub(super) fn remove_refs(&self, names: &[String]) -> Result<usize, Error> {
        let _lock = self.store.named_lock("refs", LockMode::Exclusive)?;
        self.write_refs(names)?;
        let index = self.index();
        let mut n = 0;
        for name in names {
            n += index.remove_ref(name)?;
        }
        Ok(n)
    }

    /// Writes the index's references, less `removed`; the caller holds the refs lock.
    fn write_refs(&self, removed: &[String]) -> Result<(), Error> {
        let mut refs = self.index().refs()?;
        refs.retain(|r| !removed.contains(&r.name));
        let json = serde_json::to_vec_pretty(&refs).map_err(|e| Error::Index {
            path: self.refs_path(),
            message: e.to_string(),
        })?;
        let tmp = self
            .root()
            .join("ingest")
            .join(format!("refs.json.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.refs_path())
        };
        write().map_err(|e| Error::io(self.refs_path(), e))
    }

    /// References `refs.json` lists but the index lacks (the index was lost or replaced).
    pub(super) fn lost_refs(&self, index: &Index) -> Result<Vec<RefRecord>, Error> {
        let saved: Vec<RefRecord> = std::fs::read(self.refs_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut lost = Vec::new();
        for r in saved {
            if index.get_ref(&r.name, Some(&r.platform))?.is_none() {
                lost.push(r);
            }
        }
        Ok(lost)
    }

    fn refs_path(&self) -> PathBuf {
        self.root().join("refs.json")
    }
}
