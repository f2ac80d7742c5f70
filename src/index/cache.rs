//! The local SQLite cache of index files and snapshots. It never holds the truth: it is keyed
//! by repository ID, carries a schema version, and is dropped and rebuilt from the backend on
//! any mismatch, failed integrity check, or when objects it knows vanished from the backend.
//! The only file that uses rusqlite.

use crate::error::{Error, ErrorKind, Result};
use crate::format::index::IndexFile;
use crate::hostfile;
use crate::id::{IndexId, KeyId, PackId, RepoId, SnapshotId};
use crate::index::{Index, IndexBuilder};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Bump whenever the tables below change; an older cache is then rebuilt.
const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE indexes (id BLOB PRIMARY KEY, blobs INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE snapshots (id BLOB PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE wal (name BLOB PRIMARY KEY, head BLOB NOT NULL);
";

pub struct Cache {
    conn: Connection,
    path: PathBuf,
}

fn db_err(e: rusqlite::Error) -> Error {
    // A file that is not (or no longer) a database is damage, which `open` repairs by
    // starting again; anything else (busy, I/O) is reported.
    let kind = match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
            ErrorKind::Corrupt
        }
        // Another process holds the file for a moment (switching it to WAL, creating it).
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            ErrorKind::Locked
        }
        _ => ErrorKind::Io,
    };
    Error::new(kind, format!("local cache: {e}"))
}

impl Cache {
    /// Open (or create) the cache of repository `repo` under `dir`.
    ///
    /// The cache holds decrypted index bodies and snapshots, so it is private: a folder made
    /// here is 0700, and the repository's folder and database files are narrowed to 0700 and
    /// 0600 when an older coffer left them readable by others.
    pub fn open(dir: &Path, repo: &RepoId) -> Result<Cache> {
        hostfile::create_dir(dir).map_err(|e| Error::io(dir.display(), e))?;
        let folder = dir.join(repo.to_hex());
        hostfile::private_dir(&folder).map_err(|e| Error::io(folder.display(), e))?;
        let path = folder.join("cache.sqlite");
        for f in [
            path.clone(),
            path.with_extension("sqlite-wal"),
            path.with_extension("sqlite-shm"),
        ] {
            hostfile::narrow(&f, hostfile::PRIVATE_FILE).map_err(|e| Error::io(f.display(), e))?;
        }
        // SQLite answers "busy" at once, without its busy timeout, when it must not wait
        // (switching to WAL, upgrading a read to a write): try again for a while.
        let started = std::time::Instant::now();
        let mut opened = Self::try_open(&path, repo);
        while matches!(&opened, Err(e) if e.kind() == ErrorKind::Locked)
            && started.elapsed() < std::time::Duration::from_secs(30)
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
            opened = Self::try_open(&path, repo);
        }
        match opened {
            Ok(c) => Ok(c),
            // Foreign, outdated or damaged: it is only a cache, start again. Other errors
            // (another process holds the file) must not delete a cache someone is using.
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(path.with_extension("sqlite-wal"));
                let _ = std::fs::remove_file(path.with_extension("sqlite-shm"));
                Self::try_open(&path, repo)
            }
            Err(e) => Err(e),
        }
    }

    /// Open the cache of `repo` under `dir` if there is one, creating nothing: lets a
    /// reader look at it before it knows that the password opens the repository.
    pub fn open_existing(dir: &Path, repo: &RepoId) -> Result<Option<Cache>> {
        if !dir.join(repo.to_hex()).join("cache.sqlite").is_file() {
            return Ok(None);
        }
        Self::open(dir, repo).map(Some)
    }

    fn try_open(path: &Path, repo: &RepoId) -> Result<Cache> {
        // SQLite creates its files with the process umask's mode, and its -wal and -shm files
        // with the mode of the database: create the database 0600 first.
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(hostfile::PRIVATE_FILE)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .map_err(|e| Error::io(path.display(), e))?;
        let conn = Connection::open(path).map_err(db_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err)?;
        // Two processes may create the cache at once: the write lock (IMMEDIATE) makes
        // one create the schema and the other find it made.
        conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err)?;
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
        conn.execute_batch("COMMIT").map_err(db_err)?;
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

    /// Forget an index file (it vanished from the backend: garbage collection rewrote it).
    pub fn remove_index(&mut self, id: &IndexId) -> Result<()> {
        self.conn
            .execute("DELETE FROM indexes WHERE id = ?1", [&id.0[..]])
            .map(|_| ())
            .map_err(db_err)
    }

    /// Record the content of index files (their decrypted bodies), in one transaction.
    pub fn add_indexes(&mut self, files: &[(IndexId, &IndexFile)]) -> Result<()> {
        let tx = self.conn.transaction().map_err(db_err)?;
        {
            let mut add = tx
                .prepare("INSERT OR IGNORE INTO indexes VALUES (?1, ?2, ?3)")
                .map_err(db_err)?;
            for (id, file) in files {
                let blobs: usize = file
                    .packs
                    .iter()
                    .flat_map(|p| &p.frames)
                    .map(|f| f.blobs.len())
                    .sum();
                add.execute(params![&id.0[..], blobs as i64, file.encode_body()])
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Build the in-memory index from the cache, one index file at a time.
    /// The union of the cached index files, without `excluded` packs (see
    /// `IndexBuilder::excluding`) and without the index files in `skipped`.
    pub fn load_index(
        &self,
        excluded: &HashSet<PackId>,
        skipped: &HashSet<IndexId>,
    ) -> Result<Index> {
        let total: i64 = self
            .conn
            .query_row("SELECT coalesce(sum(blobs), 0) FROM indexes", [], |r| {
                r.get(0)
            })
            .map_err(db_err)?;
        let mut builder = IndexBuilder::new().excluding(excluded);
        builder.reserve(total.max(0) as usize);
        self.for_each_file(|id, file| {
            if !skipped.contains(&id) {
                builder.add_file(&file);
            }
            Ok(())
        })?;
        Ok(builder.build())
    }

    /// Decode every cached index file in turn: the whole index is never held decoded.
    pub fn for_each_file(&self, mut f: impl FnMut(IndexId, IndexFile) -> Result<()>) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, body FROM indexes")
            .map_err(db_err)?;
        let mut rows = stmt.query([]).map_err(db_err)?;
        while let Some(row) = rows.next().map_err(db_err)? {
            let id = IndexId(to_id(row.get_ref(0).map_err(db_err)?.as_blob().map_err(
                |e| Error::corrupt(format!("cache holds an index ID of the wrong type: {e}")),
            )?)?);
            let body = row.get_ref(1).map_err(db_err)?.as_blob().map_err(|e| {
                Error::corrupt(format!("cache holds an index body of the wrong type: {e}"))
            })?;
            f(id, IndexFile::decode_body(body)?)?;
        }
        Ok(())
    }

    /// Cached snapshot objects (their stored, still encrypted bytes).
    pub fn snapshots(&self) -> Result<HashMap<SnapshotId, Vec<u8>>> {
        let rows = self.by_id("SELECT id, data FROM snapshots")?;
        Ok(rows
            .into_iter()
            .map(|(id, d)| (SnapshotId(id), d))
            .collect())
    }

    /// Every row of `sql`, a query of (32-byte ID, bytes).
    fn by_id(&self, sql: &str) -> Result<HashMap<[u8; 32], Vec<u8>>> {
        let mut stmt = self.conn.prepare(sql).map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(db_err)?;
        let mut out = HashMap::new();
        for row in rows {
            let (id, data) = row.map_err(db_err)?;
            out.insert(to_id(&id)?, data);
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

    /// The first bytes (prefix and sealed header, still encrypted) of the WAL objects seen
    /// before, by object name: the archive's catalog without a read per object.
    pub fn wal_heads(&self) -> Result<HashMap<[u8; 32], Vec<u8>>> {
        self.by_id("SELECT name, head FROM wal")
    }

    /// Remember WAL objects' heads, and forget those of objects no longer listed.
    pub fn update_wal_heads(
        &mut self,
        add: &[([u8; 32], Vec<u8>)],
        gone: &[[u8; 32]],
    ) -> Result<()> {
        let tx = self.conn.transaction().map_err(db_err)?;
        for (name, head) in add {
            tx.execute(
                "INSERT OR REPLACE INTO wal VALUES (?1, ?2)",
                params![&name[..], head],
            )
            .map_err(db_err)?;
        }
        for name in gone {
            tx.execute("DELETE FROM wal WHERE name = ?1", [&name[..]])
                .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// The key file that opened the repository last time on this machine. Only a hint of
    /// which key file to try first: whatever it names is checked like any other.
    pub fn last_key(&self) -> Result<Option<KeyId>> {
        let hex: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'last_key'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_err)?;
        Ok(hex.and_then(|h| KeyId::from_hex(&h).ok()))
    }

    pub fn set_last_key(&self, id: &KeyId) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta VALUES ('last_key', ?1)",
                [id.to_hex()],
            )
            .map(|_| ())
            .map_err(db_err)
    }
}

fn to_id(bytes: &[u8]) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| Error::corrupt("cache holds an ID of the wrong length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_cache_is_replaced_and_two_openers_share_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let repo = RepoId([7; 32]);
        let folder = dir.path().join(repo.to_hex());
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("cache.sqlite"), vec![0x5a; 8192]).unwrap();
        let c = Cache::open(dir.path(), &repo).unwrap();
        assert!(c.index_ids().unwrap().is_empty());
        drop(c);

        // Several processes' first use at once (threads stand in for them): every opener
        // gets a working cache, none deletes it under another.
        let fresh = tempfile::tempdir().unwrap();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let p = fresh.path().to_path_buf();
                std::thread::spawn(move || {
                    Cache::open(&p, &repo)
                        .and_then(|c| c.index_ids())
                        .map(|s| s.len())
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().unwrap(), 0);
        }
    }

    #[test]
    fn the_last_key_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let repo = RepoId([7; 32]);
        let c = Cache::open(dir.path(), &repo).unwrap();
        assert_eq!(c.last_key().unwrap(), None);
        c.set_last_key(&KeyId([1; 32])).unwrap();
        c.set_last_key(&KeyId([2; 32])).unwrap();
        drop(c);
        let c = Cache::open(dir.path(), &repo).unwrap();
        assert_eq!(c.last_key().unwrap(), Some(KeyId([2; 32])));
    }

    /// The cache holds decrypted index bodies: nobody but its owner may read it, whatever
    /// the umask, and modes an older version left wider are narrowed on open.
    #[test]
    fn the_cache_is_private_and_wider_modes_are_narrowed() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        let repo = RepoId([9; 32]);
        let c = Cache::open(&root, &repo).unwrap();
        c.put_snapshot(&SnapshotId([1; 32]), b"x").unwrap();
        let folder = root.join(repo.to_hex());
        let db = folder.join("cache.sqlite");
        let wal = folder.join("cache.sqlite-wal");
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&folder), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&wal), 0o600);
        drop(c);
        set(&folder, 0o755);
        set(&db, 0o644);
        let c = Cache::open(&root, &repo).unwrap();
        assert_eq!((mode(&folder), mode(&db)), (0o700, 0o600));
        drop(c);
    }
}
