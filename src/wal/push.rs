//! `wal-push`: archive one file PostgreSQL hands to `archive_command`.
//!
//! PostgreSQL recycles a segment once its `archive_command` exits 0, so this returns only
//! after the object is stored in the regions the repository requires (`Regions`' write
//! quorum), and a process killed at any point before that has stored either the whole
//! object or nothing: the backend publishes objects atomically (format-spec §3).

use super::catalog::Catalog;
use super::names::WalName;
use super::scan;
use crate::backend::{ObjectKind, ObjectName};
use crate::error::{Error, ErrorKind, Result};
use crate::format::wal::{WalCodec, WalHeader, WalKind, MAX_FILE_LEN};
use crate::repo::Repository;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// zstd level for WAL: level 1 compresses a busy segment almost as well as 3 at two thirds
/// of the CPU, and archiving must keep up with the database.
const ZSTD_LEVEL: i32 = 1;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// A new object holds the file.
    Stored { object: ObjectName, stored: u64 },
    /// The archive already held the same bytes under this name (PostgreSQL retries a file
    /// whose earlier push it did not see finish).
    AlreadyArchived,
}

/// The outcome with what was pushed.
#[derive(Debug, Clone)]
pub struct PushReport {
    pub header: WalHeader,
    pub pushed: Pushed,
}

/// Read the file at `path` (a file name PostgreSQL archives, opened without following a
/// symlink), check it, and store it unless the archive already has it.
pub fn push_file(repo: &Repository, path: &Path) -> Result<PushReport> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::invalid(format!("{} is not a WAL file name", path.display())))?;
    let name = WalName::parse(file_name).ok_or_else(|| {
        Error::invalid(format!(
            "{file_name} is not the name of a file PostgreSQL archives (use wal-push %p in archive_command)"
        ))
    })?;
    let (bytes, mtime_ns) = read_file(path)?;
    let catalog = Catalog::load(repo)?;
    let header = describe(repo, &catalog, name, file_name, &bytes, mtime_ns)?;

    // The same name twice: fine if the bytes are the same, an alarm if not.
    let same = catalog.find(file_name);
    if same
        .iter()
        .any(|e| e.header.hash == header.hash && e.header.size == header.size)
    {
        return Ok(PushReport {
            header,
            pushed: Pushed::AlreadyArchived,
        });
    }
    if let Some(e) = same.first() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{file_name} is already archived with different contents ({} bytes, archived at {}); \
                 two clusters or two timelines may be archiving into this repository: check archive_command on every server",
                e.header.size,
                crate::browse::format_time_rfc3339(e.header.pushed_ns)
            ),
        ));
    }

    let (codec, stored) = match zstd::bulk::compress(&bytes, ZSTD_LEVEL) {
        Ok(z) if z.len() < bytes.len() => (WalCodec::Zstd, z),
        _ => (WalCodec::Raw, bytes),
    };
    let header = WalHeader { codec, ..header };
    let object_bytes = header.encode(repo.keys(), &stored, None)?;
    let stored_len = object_bytes.len() as u64;
    let head = object_bytes[..crate::format::wal::HEAD_LEN.min(object_bytes.len())].to_vec();
    let object = repo.write_object(ObjectKind::Wal, object_bytes)?;
    repo.with_cache(|c| c.update_wal_heads(&[(object.hash, head)], &[]))?;
    Ok(PushReport {
        header,
        pushed: Pushed::Stored {
            object,
            stored: stored_len,
        },
    })
}

/// The header for `bytes`: what the name says, checked against what a segment's first
/// page says, and against the cluster this archive belongs to.
fn describe(
    repo: &Repository,
    catalog: &Catalog,
    name: WalName,
    file_name: &str,
    bytes: &[u8],
    mtime_ns: i64,
) -> Result<WalHeader> {
    let clusters = catalog.clusters();
    let mut header = WalHeader {
        kind: name.kind,
        name: file_name.to_string(),
        system_id: clusters.iter().next().copied().unwrap_or(0),
        timeline: name.timeline,
        start_lsn: 0,
        segment_size: 0,
        size: bytes.len() as u64,
        hash: *blake3::hash(bytes).as_bytes(),
        mtime_ns,
        pushed_ns: repo.clock().now(),
        commits: None,
        codec: WalCodec::Raw,
    };
    match name.kind {
        WalKind::Segment | WalKind::Partial => {
            let head = scan::segment_head(bytes)
                .map_err(|e| Error::invalid(format!("{file_name}: {}", e.message())))?;
            let expected = name.lsn(head.segment_size);
            // The first segment of a new timeline starts as a copy of its parent's segment
            // up to the switch point, so its first page carries the parent's (smaller)
            // timeline; a larger one is never right.
            if head.timeline > name.timeline && name.kind == WalKind::Segment
                || expected != Some(head.start_lsn)
            {
                return Err(Error::invalid(format!(
                    "{file_name}: its first page says timeline {} at {}, not what its name says",
                    head.timeline,
                    super::names::lsn_text(head.start_lsn)
                )));
            }
            if name.kind == WalKind::Segment && bytes.len() as u64 != u64::from(head.segment_size) {
                return Err(Error::invalid(format!(
                    "{file_name} is {} bytes, but its segments are {} bytes: PostgreSQL had not finished it",
                    bytes.len(),
                    head.segment_size
                )));
            }
            if let Some(other) = clusters.iter().find(|&&c| c != head.system_id) {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "{file_name} comes from the cluster with system identifier {}, but this repository \
                         archives the WAL of cluster {other}; archive each cluster into its own repository",
                        head.system_id
                    ),
                ));
            }
            header.system_id = head.system_id;
            header.start_lsn = head.start_lsn;
            header.segment_size = head.segment_size;
            header.commits = scan::commit_times(bytes, &head);
        }
        WalKind::Backup => {
            // The backup's start, in the segment size of the archive (16 MiB if empty).
            let size = catalog
                .segments()
                .next()
                .map_or(16 << 20, |e| e.header.segment_size);
            header.start_lsn = name.lsn(size).unwrap_or(0);
        }
        WalKind::History => {}
    }
    Ok(header)
}

/// The whole file and its modification time, read without following a symlink.
fn read_file(path: &Path) -> Result<(Vec<u8>, i64)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io(path.display(), e))?;
    let meta = file.metadata().map_err(|e| Error::io(path.display(), e))?;
    if !meta.is_file() {
        return Err(Error::invalid(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    if meta.len() > MAX_FILE_LEN {
        return Err(Error::invalid(format!(
            "{} is {} bytes, larger than any WAL file",
            path.display(),
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path.display(), e))?;
    let mtime_ns = meta.mtime().saturating_mul(1_000_000_000) + meta.mtime_nsec();
    Ok((bytes, mtime_ns))
}
