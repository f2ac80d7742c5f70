//! The local SQLite cache of index files and snapshots. It never holds the truth: it is keyed
//! by repository ID, carries a schema version, and is dropped and rebuilt from the backend on
//! any mismatch, failed integrity check, or when objects it knows vanished from the backend.
//! The only file that uses rusqlite.

use crate::error::{Error, ErrorKind, Result};
use crate::format::index::{IndexBlob, IndexPack};
use crate::format::BlobType;
use crate::id::{BlobId, IndexId, PackId, RepoId, SnapshotId};
use crate::index::Index;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Bump whenever the tables below change; an older cache is then rebuilt.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE indexes (id BLOB PRIMARY KEY);
CREATE TABLE packs (pid INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, size INTEGER NOT NULL);
CREATE TABLE blobs (id BLOB NOT NULL, type INTEGER NOT NULL, pack INTEGER NOT NULL,
                    offset INTEGER NOT NULL, length INTEGER NOT NULL, raw_length INTEGER NOT NULL);
CREATE TABLE snapshots (id BLOB PRIMARY KEY, data BLOB NOT NULL);
";

pub struct Cache {
    conn: Connection,
    path: PathBuf,
}

fn db_err(e: rusqlite::Error) -> Error {
    Error::new(ErrorKind::Io, format!("local cache: {e}"))
}

impl Cache {
    /// Open (or create) the cache of repository `repo` under `dir`.
    pub fn open(dir: &Path, repo: &RepoId) -> Result<Cache> {
        let folder = dir.join(repo.to_hex());
        std::fs::create_dir_all(&folder).map_err(|e| Error::io(folder.display(), e))?;
        let path = folder.join("cache.sqlite");
        match Self::try_open(&path, repo) {
            Ok(c) => Ok(c),
            Err(_) => {
                // Unreadable, foreign or outdated: it is only a cache, start again.
                let _ = std::fs::remove_file(&path);
                Self::try_open(&path, repo)
            }
        }
    }

    fn try_open(path: &Path, repo: &RepoId) -> Result<Cache> {
        let conn = Connection::open(path).map_err(db_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err)?;
        let has_meta: bool = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'meta'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(db_err)?
            > 0;
        if !has_meta {
            conn.execute_batch(SCHEMA).map_err(db_err)?;
            conn.execute(
                "INSERT INTO meta VALUES ('schema', ?1), ('repo', ?2)",
                params![SCHEMA_VERSION.to_string(), repo.to_hex()],
            )
            .map_err(db_err)?;
        }
        let get = |k: &str| -> Result<Option<String>> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
                .optional()
                .map_err(db_err)
        };
        if get("schema")? != Some(SCHEMA_VERSION.to_string()) || get("repo")? != Some(repo.to_hex())
        {
            return Err(Error::corrupt("cache schema or repository mismatch"));
        }
        let ok: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(db_err)?;
        if ok != "ok" {
            return Err(Error::corrupt("cache integrity check failed"));
        }
        Ok(Cache {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Index files whose content the cache holds.
    pub fn index_ids(&self) -> Result<HashSet<IndexId>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM indexes")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .map_err(db_err)?;
        let mut out = HashSet::new();
        for row in rows {
            if let Ok(arr) = <[u8; 32]>::try_from(row.map_err(db_err)?.as_slice()) {
                out.insert(IndexId(arr));
            }
        }
        Ok(out)
    }

    /// Forget every index entry (an index file vanished: GC rewrote the index).
    pub fn clear_index(&mut self) -> Result<()> {
        self.conn
            .execute_batch("DELETE FROM indexes; DELETE FROM blobs; DELETE FROM packs;")
            .map_err(db_err)
    }

    /// Record the content of index files, in one transaction.
    pub fn add_indexes(&mut self, files: &[(IndexId, Vec<IndexPack>)]) -> Result<()> {
        let tx = self.conn.transaction().map_err(db_err)?;
        {
            let mut add_index = tx
                .prepare("INSERT OR IGNORE INTO indexes VALUES (?1)")
                .map_err(db_err)?;
            let mut add_pack = tx
                .prepare("INSERT OR IGNORE INTO packs (id, size) VALUES (?1, ?2)")
                .map_err(db_err)?;
            let mut pack_pid = tx
                .prepare("SELECT pid FROM packs WHERE id = ?1")
                .map_err(db_err)?;
            let mut add_blob = tx
                .prepare("INSERT INTO blobs VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .map_err(db_err)?;
            for (id, packs) in files {
                add_index.execute([&id.0[..]]).map_err(db_err)?;
                for p in packs {
                    add_pack
                        .execute(params![&p.id.0[..], p.size as i64])
                        .map_err(db_err)?;
                    let pid: i64 = pack_pid
                        .query_row([&p.id.0[..]], |r| r.get(0))
                        .map_err(db_err)?;
                    for b in &p.blobs {
                        add_blob
                            .execute(params![
                                &b.id.0[..],
                                b.blob_type as u8,
                                pid,
                                b.offset,
                                b.length,
                                b.raw_length
                            ])
                            .map_err(db_err)?;
                    }
                }
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Build the in-memory index from the cache.
    pub fn load_index(&self) -> Result<Index> {
        let mut packs: HashMap<i64, IndexPack> = HashMap::new();
        let mut stmt = self
            .conn
            .prepare("SELECT pid, id, size FROM packs")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(db_err)?;
        for row in rows {
            let (pid, id, size) = row.map_err(db_err)?;
            packs.insert(
                pid,
                IndexPack {
                    id: PackId(to_id(&id)?),
                    size: size as u64,
                    blobs: vec![],
                },
            );
        }
        let mut stmt = self
            .conn
            .prepare("SELECT id, type, pack, offset, length, raw_length FROM blobs")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, u8>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, u32>(3)?,
                    r.get::<_, u32>(4)?,
                    r.get::<_, u32>(5)?,
                ))
            })
            .map_err(db_err)?;
        for row in rows {
            let (id, t, pid, offset, length, raw_length) = row.map_err(db_err)?;
            let pack = packs
                .get_mut(&pid)
                .ok_or_else(|| Error::corrupt("cache: blob refers to an unknown pack"))?;
            pack.blobs.push(IndexBlob {
                blob_type: BlobType::from_u8(t)?,
                id: BlobId(to_id(&id)?),
                offset,
                length,
                raw_length,
            });
        }
        let mut index = Index::new();
        for p in packs.values() {
            index.add_pack(p);
        }
        Ok(index)
    }

    /// Cached snapshot objects (their stored, still encrypted bytes).
    pub fn snapshots(&self) -> Result<HashMap<SnapshotId, Vec<u8>>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, data FROM snapshots")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(db_err)?;
        let mut out = HashMap::new();
        for row in rows {
            let (id, data) = row.map_err(db_err)?;
            out.insert(SnapshotId(to_id(&id)?), data);
        }
        Ok(out)
    }

    pub fn put_snapshot(&self, id: &SnapshotId, data: &[u8]) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO snapshots VALUES (?1, ?2)",
                params![&id.0[..], data],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.conn
            .execute("DELETE FROM snapshots WHERE id = ?1", [&id.0[..]])
            .map(|_| ())
            .map_err(db_err)
    }
}

fn to_id(bytes: &[u8]) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| Error::corrupt("cache holds an ID of the wrong length"))
}
