//! The cache index: SQLite (WAL) over the blob store.
//!
//! Blob files are the truth; this index says which reference resolved to which manifest, what
//! each manifest holds, when it was last used, and which deep verifications are remembered. It
//! can be rebuilt from the blobs and the reference list (`fsck --repair`). Migrations only add.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use crate::digest::{BlobDigest, DiffId, Digest, ImageId};
use crate::error::Error;

/// Each entry is applied once, in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE refs (
    name TEXT NOT NULL,              -- normalized reference as pulled (tag and/or digest)
    platform TEXT NOT NULL,          -- os/arch[/variant] it was resolved for
    index_digest TEXT,               -- the index or list the name resolved to, if any
    manifest_digest TEXT NOT NULL,   -- the platform manifest
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (name, platform)
);
CREATE TABLE manifests (
    digest TEXT PRIMARY KEY,
    media_type TEXT NOT NULL,
    image_id TEXT NOT NULL,          -- config digest
    config_size INTEGER NOT NULL,
    platform TEXT NOT NULL,
    manifest_size INTEGER NOT NULL,
    last_used INTEGER NOT NULL
);
CREATE INDEX manifests_image_id ON manifests (image_id);
CREATE TABLE manifest_layers (
    manifest_digest TEXT NOT NULL,
    position INTEGER NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    diff_id TEXT,
    PRIMARY KEY (manifest_digest, position)
);
CREATE TABLE verified_layers (      -- deep verification results: blob -> its diff_id
    blob_digest TEXT PRIMARY KEY,
    diff_id TEXT NOT NULL,
    verified_at INTEGER NOT NULL
);
CREATE TABLE file_memos (           -- deep verification of tarball files, by file identity
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    report TEXT NOT NULL,
    verified_at INTEGER NOT NULL,
    PRIMARY KEY (dev, ino)
);
"#,
    r#"
CREATE TABLE blob_locations (        -- repositories known to hold a blob: where push mounts from
    digest TEXT NOT NULL,
    registry TEXT NOT NULL,
    repository TEXT NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (digest, registry, repository)
);
"#,
    r#"
CREATE TABLE signatures (            -- signature artifacts kept beside the manifest they sign
    subject TEXT NOT NULL,           -- the manifest or index digest signed
    artifact TEXT NOT NULL,          -- the signature manifest (its blobs are in the store)
    format TEXT NOT NULL,            -- cosign | cosign-bundle | notation
    signed_by TEXT NOT NULL,         -- who, as the policy last verified it
    verified_at INTEGER NOT NULL,
    PRIMARY KEY (subject, artifact)
);
"#,
];

/// A signature artifact kept for a manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SignatureRecord {
    pub subject: Digest,
    pub artifact: Digest,
    pub format: String,
    pub signed_by: String,
    pub verified_at: i64,
}

/// What a reference resolved to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefRecord {
    pub name: String,
    pub platform: String,
    pub index_digest: Option<BlobDigest>,
    pub manifest_digest: BlobDigest,
    pub updated_at: i64,
}

/// One layer of a stored manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRecord {
    pub digest: BlobDigest,
    pub size: u64,
    pub media_type: String,
    pub diff_id: Option<DiffId>,
}

/// A stored image: one platform manifest, its config and layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    pub manifest_digest: BlobDigest,
    pub media_type: String,
    pub image_id: ImageId,
    pub config_size: u64,
    pub platform: String,
    pub manifest_size: u64,
    pub layers: Vec<LayerRecord>,
    pub last_used: i64,
}

impl ImageRecord {
    /// Bytes on disk for this image: manifest, config and layers.
    pub fn size(&self) -> u64 {
        self.manifest_size + self.config_size + self.layers.iter().map(|l| l.size).sum::<u64>()
    }

    /// Every blob this image needs.
    pub fn blobs(&self) -> impl Iterator<Item = Digest> + '_ {
        [self.manifest_digest.0, self.image_id.0]
            .into_iter()
            .chain(self.layers.iter().map(|l| l.digest.0))
    }
}

/// File identity for remembering a deep verification of a tarball.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl FileIdentity {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }
}

pub struct Index {
    conn: Connection,
    path: PathBuf,
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn parse_digest<T: From<Digest>>(text: String) -> rusqlite::Result<T> {
    Digest::parse(&text).map(T::from).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl Index {
    /// Opens (creating and migrating) the index at `path`.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let fail = |e: rusqlite::Error| Error::Index {
            path: path.into(),
            message: e.to_string(),
        };
        let mut conn = Connection::open(path).map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(60)).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(fail)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(fail)?;
        if version > MIGRATIONS.len() as i64 {
            return Err(Error::Index {
                path: path.into(),
                message: format!(
                    "written by a newer imgcache (schema {version}, this one knows {})",
                    MIGRATIONS.len()
                ),
            });
        }
        if version < MIGRATIONS.len() as i64 {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(fail)?;
            // Another process may have migrated while we waited for the write lock.
            let version: i64 = tx
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(fail)?;
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                tx.execute_batch(sql).map_err(fail)?;
                tx.pragma_update(None, "user_version", i as i64 + 1)
                    .map_err(fail)?;
            }
            tx.commit().map_err(fail)?;
        }
        Ok(Self {
            conn,
            path: path.into(),
        })
    }

    fn fail(&self, e: rusqlite::Error) -> Error {
        index_error(&self.path, e)
    }

    /// Records an image (idempotent).
    pub fn put_image(&mut self, img: &ImageRecord) -> Result<(), Error> {
        let path = self.path.clone();
        // IMMEDIATE: a read that later writes cannot be upgraded while another process writes
        // (SQLite then fails at once with "database is locked" instead of waiting).
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| index_error(&path, e))?;
        let r = (|| {
            tx.execute(
                "INSERT INTO manifests (digest, media_type, image_id, config_size, platform, manifest_size, last_used)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (digest) DO UPDATE SET last_used = excluded.last_used",
                params![
                    img.manifest_digest.to_string(),
                    img.media_type,
                    img.image_id.to_string(),
                    img.config_size as i64,
                    img.platform,
                    img.manifest_size as i64,
                    img.last_used
                ],
            )?;
            for (i, l) in img.layers.iter().enumerate() {
                tx.execute(
                    "INSERT OR REPLACE INTO manifest_layers (manifest_digest, position, digest, size, media_type, diff_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        img.manifest_digest.to_string(),
                        i as i64,
                        l.digest.to_string(),
                        l.size as i64,
                        l.media_type,
                        l.diff_id.map(|d| d.to_string())
                    ],
                )?;
            }
            Ok(())
        })();
        r.and_then(|()| tx.commit())
            .map_err(|e| index_error(&path, e))
    }

    pub fn put_ref(&self, r: &RefRecord) -> Result<(), Error> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO refs (name, platform, index_digest, manifest_digest, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![r.name, r.platform, r.index_digest.map(|d| d.to_string()), r.manifest_digest.to_string(), r.updated_at],
            )
            .map(drop)
            .map_err(|e| self.fail(e))
    }

    /// The record for `name`; with `platform` None, the most recently updated one.
    pub fn get_ref(&self, name: &str, platform: Option<&str>) -> Result<Option<RefRecord>, Error> {
        self.conn
            .query_row(
                // Records of one second (an import of every platform) go to this machine's.
                "SELECT name, platform, index_digest, manifest_digest, updated_at FROM refs
                 WHERE name = ?1 AND (?2 IS NULL OR platform = ?2)
                 ORDER BY updated_at DESC, platform = ?3 DESC LIMIT 1",
                params![
                    name,
                    platform,
                    crate::platform::PlatformSpec::host().to_string()
                ],
                row_to_ref,
            )
            .optional()
            .map_err(|e| self.fail(e))
    }

    pub fn refs(&self) -> Result<Vec<RefRecord>, Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, platform, index_digest, manifest_digest, updated_at FROM refs ORDER BY name, platform")
            .map_err(|e| self.fail(e))?;
        let rows = stmt.query_map([], row_to_ref).map_err(|e| self.fail(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.fail(e))
    }

    /// Removes every record of `name`; returns how many.
    pub fn remove_ref(&self, name: &str) -> Result<usize, Error> {
        self.conn
            .execute("DELETE FROM refs WHERE name = ?1", params![name])
            .map_err(|e| self.fail(e))
    }

    pub fn get_image(&self, manifest_digest: &BlobDigest) -> Result<Option<ImageRecord>, Error> {
        let head = self
            .conn
            .query_row(
                "SELECT media_type, image_id, config_size, platform, manifest_size, last_used FROM manifests WHERE digest = ?1",
                params![manifest_digest.to_string()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        parse_digest::<ImageId>(r.get(1)?)?,
                        r.get::<_, i64>(2)? as u64,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)? as u64,
                        r.get::<_, i64>(5)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.fail(e))?;
        let Some((media_type, image_id, config_size, platform, manifest_size, last_used)) = head
        else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT digest, size, media_type, diff_id FROM manifest_layers WHERE manifest_digest = ?1 ORDER BY position",
            )
            .map_err(|e| self.fail(e))?;
        let layers = stmt
            .query_map(params![manifest_digest.to_string()], |r| {
                Ok(LayerRecord {
                    digest: parse_digest(r.get(0)?)?,
                    size: r.get::<_, i64>(1)? as u64,
                    media_type: r.get(2)?,
                    diff_id: r
                        .get::<_, Option<String>>(3)?
                        .map(parse_digest)
                        .transpose()?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.fail(e))?;
        Ok(Some(ImageRecord {
            manifest_digest: *manifest_digest,
            media_type,
            image_id,
            config_size,
            platform,
            manifest_size,
            layers,
            last_used,
        }))
    }

    /// Every stored image.
    pub fn images(&self) -> Result<Vec<ImageRecord>, Error> {
        let digests: Vec<BlobDigest> = {
            let mut stmt = self
                .conn
                .prepare("SELECT digest FROM manifests ORDER BY digest")
                .map_err(|e| self.fail(e))?;
            stmt.query_map([], |r| parse_digest(r.get(0)?))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| self.fail(e))?
        };
        let mut out = Vec::with_capacity(digests.len());
        for d in digests {
            if let Some(img) = self.get_image(&d)? {
                out.push(img);
            }
        }
        Ok(out)
    }

    pub fn touch(&self, manifest_digest: &BlobDigest) -> Result<(), Error> {
        self.conn
            .execute(
                "UPDATE manifests SET last_used = ?2 WHERE digest = ?1",
                params![manifest_digest.to_string(), now()],
            )
            .map(drop)
            .map_err(|e| self.fail(e))
    }

    /// Drops images no reference points at; returns their manifest digests.
    pub fn remove_unreferenced_images(&mut self) -> Result<Vec<BlobDigest>, Error> {
        let path = self.path.clone();
        // IMMEDIATE: a read that later writes cannot be upgraded while another process writes
        // (SQLite then fails at once with "database is locked" instead of waiting).
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| index_error(&path, e))?;
        let r = (|| {
            let gone: Vec<String> = {
                let mut stmt = tx.prepare("SELECT digest FROM manifests WHERE digest NOT IN (SELECT manifest_digest FROM refs)")?;
                stmt.query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?
            };
            for d in &gone {
                tx.execute(
                    "DELETE FROM manifest_layers WHERE manifest_digest = ?1",
                    params![d],
                )?;
                tx.execute("DELETE FROM manifests WHERE digest = ?1", params![d])?;
            }
            Ok(gone)
        })();
        let gone = r
            .and_then(|g| tx.commit().map(|()| g))
            .map_err(|e| index_error(&path, e))?;
        Ok(gone
            .into_iter()
            .filter_map(|d| Digest::parse(&d).ok().map(BlobDigest))
            .collect())
    }

    /// Every blob a reference still needs (indexes, manifests, configs, layers).
    pub fn reachable_blobs(&self) -> Result<HashSet<Digest>, Error> {
        let mut out = HashSet::new();
        for r in self.refs()? {
            if let Some(i) = r.index_digest {
                out.insert(i.0);
            }
            if let Some(img) = self.get_image(&r.manifest_digest)? {
                out.extend(img.blobs());
            } else {
                out.insert(r.manifest_digest.0);
            }
        }
        Ok(out)
    }

    /// Records a signature artifact of `subject` (idempotent; the last verification wins).
    pub fn put_signature(&self, s: &SignatureRecord) -> Result<(), Error> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO signatures (subject, artifact, format, signed_by, verified_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![s.subject.to_string(), s.artifact.to_string(), s.format, s.signed_by, s.verified_at],
            )
            .map(drop)
            .map_err(|e| self.fail(e))
    }

    /// The signature artifacts kept for `subject`.
    pub fn signatures(&self, subject: &Digest) -> Result<Vec<SignatureRecord>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT subject, artifact, format, signed_by, verified_at FROM signatures WHERE subject = ?1 ORDER BY artifact")
            .map_err(|e| self.fail(e))?;
        let rows = stmt
            .query_map(params![subject.to_string()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ))
            })
            .map_err(|e| self.fail(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (s, a, format, signed_by, verified_at) = row.map_err(|e| self.fail(e))?;
            if let (Ok(subject), Ok(artifact)) = (Digest::parse(&s), Digest::parse(&a)) {
                out.push(SignatureRecord {
                    subject,
                    artifact,
                    format,
                    signed_by,
                    verified_at,
                });
            }
        }
        Ok(out)
    }

    /// Remembers that a blob's uncompressed content hashes to `diff_id`.
    pub fn record_verified_layer(&self, blob: &BlobDigest, diff_id: &DiffId) -> Result<(), Error> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO verified_layers (blob_digest, diff_id, verified_at) VALUES (?1, ?2, ?3)",
                params![blob.to_string(), diff_id.to_string(), now()],
            )
            .map(drop)
            .map_err(|e| self.fail(e))
    }

    pub fn verified_layer(&self, blob: &BlobDigest) -> Result<Option<DiffId>, Error> {
        self.conn
            .query_row(
                "SELECT diff_id FROM verified_layers WHERE blob_digest = ?1",
                params![blob.to_string()],
                |r| parse_digest(r.get(0)?),
            )
            .optional()
            .map_err(|e| self.fail(e))
    }

    /// Forgets what is known of a blob (it was removed or found corrupt).
    pub fn forget_blob(&self, blob: &Digest) -> Result<(), Error> {
        self.conn
            .execute_batch(&format!(
                "DELETE FROM verified_layers WHERE blob_digest = '{blob}'; DELETE FROM blob_locations WHERE digest = '{blob}';"
            ))
            .map_err(|e| self.fail(e))
    }

    /// Remembers that `registry/repository` holds these blobs (seen at pull or push), in one
    /// transaction.
    pub fn record_locations(
        &mut self,
        registry: &str,
        repository: &str,
        blobs: &[Digest],
    ) -> Result<(), Error> {
        let path = self.path.clone();
        let fail = |e| index_error(&path, e);
        let tx = self.conn.transaction().map_err(fail)?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO blob_locations (digest, registry, repository, seen_at) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(fail)?;
            let at = now();
            for d in blobs {
                st.execute(params![d.to_string(), registry, repository, at])
                    .map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)
    }

    /// Repositories of `registry` known to hold `blob`, most recently seen first.
    pub fn locations(&self, blob: &Digest, registry: &str) -> Result<Vec<String>, Error> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT repository FROM blob_locations WHERE digest = ?1 AND registry = ?2 ORDER BY seen_at DESC LIMIT 8",
            )
            .map_err(|e| self.fail(e))?;
        let rows = st
            .query_map(params![blob.to_string(), registry], |r| r.get(0))
            .map_err(|e| self.fail(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.fail(e))
    }

    /// A remembered verification report of a file, if its identity is unchanged.
    pub fn file_memo(&self, id: &FileIdentity) -> Result<Option<String>, Error> {
        self.conn
            .query_row(
                "SELECT report FROM file_memos WHERE dev = ?1 AND ino = ?2 AND size = ?3 AND mtime_ns = ?4 AND ctime_ns = ?5",
                params![id.dev as i64, id.ino as i64, id.size as i64, id.mtime_ns, id.ctime_ns],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.fail(e))
    }

    pub fn put_file_memo(&self, id: &FileIdentity, report: &str) -> Result<(), Error> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO file_memos (dev, ino, size, mtime_ns, ctime_ns, report, verified_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id.dev as i64, id.ino as i64, id.size as i64, id.mtime_ns, id.ctime_ns, report, now()],
            )
            .map(drop)
            .map_err(|e| self.fail(e))
    }

    /// Removes everything but references and verification memos (before a rebuild).
    pub fn clear_images(&self) -> Result<(), Error> {
        self.conn
            .execute_batch("DELETE FROM manifest_layers; DELETE FROM manifests;")
            .map_err(|e| self.fail(e))
    }
}

fn index_error(path: &Path, e: rusqlite::Error) -> Error {
    Error::Index {
        path: path.into(),
        message: e.to_string(),
    }
}

fn row_to_ref(r: &rusqlite::Row<'_>) -> rusqlite::Result<RefRecord> {
    Ok(RefRecord {
        name: r.get(0)?,
        platform: r.get(1)?,
        index_digest: r
            .get::<_, Option<String>>(2)?
            .map(parse_digest)
            .transpose()?,
        manifest_digest: parse_digest(r.get(3)?)?,
        updated_at: r.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::of_bytes(&[n])
    }

    fn image(n: u8) -> ImageRecord {
        ImageRecord {
            manifest_digest: BlobDigest(d(n)),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            image_id: ImageId(d(n + 100)),
            config_size: 10,
            platform: "linux/amd64".into(),
            manifest_size: 20,
            layers: vec![LayerRecord {
                digest: BlobDigest(d(n + 200)),
                size: 30,
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                diff_id: Some(DiffId(d(n + 50))),
            }],
            last_used: 7,
        }
    }

    #[test]
    fn round_trips_images_and_refs_and_finds_reachable_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = Index::open(&dir.path().join("index.db")).unwrap();
        idx.put_image(&image(1)).unwrap();
        idx.put_image(&image(2)).unwrap();
        assert_eq!(idx.get_image(&BlobDigest(d(1))).unwrap(), Some(image(1)));
        let r = RefRecord {
            name: "example.test/a:v1".into(),
            platform: "linux/amd64".into(),
            index_digest: Some(BlobDigest(d(9))),
            manifest_digest: BlobDigest(d(1)),
            updated_at: 5,
        };
        idx.put_ref(&r).unwrap();
        assert_eq!(idx.get_ref("example.test/a:v1", None).unwrap(), Some(r));
        let reach = idx.reachable_blobs().unwrap();
        assert_eq!(reach, HashSet::from([d(9), d(1), d(101), d(201)]));
        assert_eq!(
            idx.remove_unreferenced_images().unwrap(),
            vec![BlobDigest(d(2))]
        );
        assert_eq!(idx.remove_ref("example.test/a:v1").unwrap(), 1);
        assert!(idx.reachable_blobs().unwrap().is_empty());
        // Reopening migrates nothing and keeps the data.
        drop(idx);
        let idx = Index::open(&dir.path().join("index.db")).unwrap();
        assert!(idx.get_image(&BlobDigest(d(1))).unwrap().is_some());
    }

    /// Regression: an import of every platform records them all in the same second, and which
    /// one a bare name meant (inspect, save, load) was whichever SQLite returned first.
    #[test]
    fn a_name_recorded_for_several_platforms_in_one_second_means_this_machines() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(&dir.path().join("index.db")).unwrap();
        let host = crate::platform::PlatformSpec::host().to_string();
        let other = if host == "linux/arm64/v8" {
            "linux/amd64"
        } else {
            "linux/arm64/v8"
        };
        for (platform, n) in [(other, 1), (host.as_str(), 2), ("linux/s390x", 3)] {
            idx.put_ref(&RefRecord {
                name: "example.test/multi:v1".into(),
                platform: platform.into(),
                index_digest: Some(BlobDigest(d(9))),
                manifest_digest: BlobDigest(d(n)),
                updated_at: 5,
            })
            .unwrap();
        }
        let got = idx.get_ref("example.test/multi:v1", None).unwrap().unwrap();
        assert_eq!(got.platform, host);
        assert_eq!(got.manifest_digest, BlobDigest(d(2)));
    }
}
