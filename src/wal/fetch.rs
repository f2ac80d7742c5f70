//! `wal-fetch`: hand PostgreSQL one archived file (`restore_command`).
//!
//! Replay asks for one file at a time, in order, and waits for each. So a fetch from the
//! repository also fetches the next few segments of the timeline into a spool folder
//! (read-ahead), and the following calls find them there without opening the repository
//! at all. A restore that knows every file it needs fills the spool before the server
//! starts, and its `restore_command` reads only the spool.

use super::catalog::Catalog;
use super::names::WalName;
use crate::error::{Error, ErrorKind, Result};
use crate::format::wal::{WalHeader, WalKind};
use crate::hostfile;
use crate::repo::Repository;
use rayon::prelude::*;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The spool's folder name, beside the file PostgreSQL asked for (in `pg_wal`):
/// PostgreSQL ignores folders there that it did not make, and a rename from it into place
/// never crosses file systems.
pub const SPOOL_DIR: &str = "coffer-readahead";

/// What a fetch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// The file was in the spool.
    FromSpool,
    /// The file came from the repository, with `read_ahead` more into the spool.
    FromRepository { read_ahead: usize },
    /// The archive does not hold it (normal at the end of replay and for timeline probes).
    NotArchived,
}

/// The default spool for a fetch into `dest`.
pub fn default_spool(dest: &Path) -> PathBuf {
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty());
    dir.unwrap_or(Path::new(".")).join(SPOOL_DIR)
}

/// Check that `name` is one PostgreSQL archives (a usage error otherwise).
pub fn check_name(name: &str) -> Result<WalName> {
    WalName::parse(name).ok_or_else(|| {
        Error::invalid(format!(
            "{name} is not the name of a file PostgreSQL archives (use wal-fetch %f %p in restore_command)"
        ))
    })
}

/// Move `name` from the spool to `dest` if it is there. Files of the same timeline that
/// come before it are dropped from the spool: replay has gone past them. With `keep`, the
/// spool is left as it is and the file copied (a restore's spool, which recovery may read
/// twice around a timeline switch; the restore removes it when recovery has ended).
pub fn from_spool(spool: &Path, name: &str, dest: &Path, keep: bool) -> Result<bool> {
    check_name(name)?;
    let held = spool.join(name);
    match std::fs::symlink_metadata(&held) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(Error::invalid(format!(
                "{} is not a regular file",
                held.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(held.display(), e)),
    }
    if keep {
        let bytes = std::fs::read(&held).map_err(|e| Error::io(held.display(), e))?;
        write_atomically(dest, &bytes)?;
        return Ok(true);
    }
    // The same file system (the spool lives beside `dest`) makes this a rename; a spool
    // given elsewhere costs a copy.
    if std::fs::rename(&held, dest).is_err() {
        let bytes = std::fs::read(&held).map_err(|e| Error::io(held.display(), e))?;
        write_atomically(dest, &bytes)?;
        let _ = std::fs::remove_file(&held);
    }
    if let Ok(entries) = std::fs::read_dir(spool) {
        for e in entries.flatten() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n.len() == name.len() && n[..8] == name[..8] && *n < *name {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(true)
}

/// Fetch `name` from the repository into `dest`, and up to `read_ahead` following
/// segments of its timeline into `spool`.
pub fn fetch(
    repo: &Repository,
    catalog: &Catalog,
    name: &str,
    dest: &Path,
    spool: &Path,
    read_ahead: usize,
) -> Result<Fetched> {
    let parsed = check_name(name)?;
    let Some(bytes) = read_archived(repo, catalog, name)? else {
        return Ok(Fetched::NotArchived);
    };
    write_atomically(dest, &bytes)?;
    let mut ahead = vec![];
    if parsed.kind == WalKind::Segment && read_ahead > 0 {
        let size = catalog.find(name)[0].header.segment_size;
        let segments = catalog.timeline_segments(parsed.timeline);
        if let Some(n) = parsed.segment_number(size) {
            ahead = (n + 1..=n + read_ahead as u64)
                .filter_map(|m| segments.get(&m).map(|e| e.header.name.clone()))
                .filter(|m| !spool.join(m).exists())
                .collect();
        }
    }
    if !ahead.is_empty() {
        hostfile::create_dir(spool).map_err(|e| Error::io(spool.display(), e))?;
    }
    let fetched: Vec<Result<()>> = ahead
        .par_iter()
        .map(|m| {
            let bytes = read_archived(repo, catalog, m)?
                .ok_or_else(|| Error::not_found(format!("{m} vanished from the archive")))?;
            write_atomically(&spool.join(m), &bytes)
        })
        .collect();
    // Read-ahead is a guess: a failure here costs a later fetch, not this one.
    let read = fetched.iter().filter(|r| r.is_ok()).count();
    Ok(Fetched::FromRepository { read_ahead: read })
}

/// The bytes of the archived file `name`, checked against its object's name and its
/// header; `None` if it is not archived. Another copy is tried when one is damaged.
pub fn read_archived(repo: &Repository, catalog: &Catalog, name: &str) -> Result<Option<Vec<u8>>> {
    let mut last_err = None;
    for e in catalog.find(name) {
        let got = repo
            .read_object(&e.object)
            .and_then(|obj| WalHeader::decode_file(repo.keys(), &obj));
        match got {
            Ok((h, bytes)) if h.name == name => return Ok(Some(bytes)),
            Ok(_) => {
                last_err = Some(Error::corrupt(format!(
                    "{} holds another file than its header said",
                    e.object
                )))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(err) => last_err = Some(err.context(format!("archived {name}"))),
        }
    }
    match last_err {
        Some(e) => Err(e),
        None => Ok(None),
    }
}

/// Write `bytes` to `path` as a private file: a new temporary file beside it (never
/// following a symlink), flushed to disk, then renamed into place, so PostgreSQL never
/// sees half a segment.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{} names no file", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.coffer-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path.display(), e)
    })
}
