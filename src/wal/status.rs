//! The WAL archive as monitoring sees it: how fresh its newest segment is (the live RPO of
//! the database: a crash now loses what was written since), how large it is, and the
//! recovery window, from the oldest kept base backup's stop to the newest segment.
//! `status`, the metrics and the run report read it.

use super::catalog::Catalog;
use super::retention::{self, BaseBackup};
use crate::error::Result;
use crate::format::snapshot::Snapshot;
use crate::format::wal::WalKind;
use crate::id::SnapshotId;
use crate::repo::Repository;
use serde::{Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchiveStatus {
    /// Archived files (every kind) and their stored bytes.
    pub files: u64,
    pub bytes: u64,
    /// Complete and partial segments.
    pub segments: u64,
    /// The segment PostgreSQL wrote last, by its file time (`mtime_ns` in its header).
    pub newest_segment: Option<String>,
    #[serde(rename = "newest_segment_time", serialize_with = "rfc3339_opt")]
    pub newest_ns: Option<i64>,
    /// Now minus that time: how much a crash now would lose at most, as far as the archive
    /// knows (PostgreSQL archives a segment only once it is full or `archive_timeout` ends it).
    #[serde(rename = "age_seconds", serialize_with = "seconds_opt")]
    pub age_ns: Option<u64>,
    pub base_backups: u64,
    /// The span of recovery targets: from the oldest base backup's stop to the newest
    /// segment. `None` without a base backup (or without a segment after it).
    #[serde(rename = "recovery_window_start", serialize_with = "rfc3339_opt")]
    pub window_start_ns: Option<i64>,
    #[serde(rename = "recovery_window_end", serialize_with = "rfc3339_opt")]
    pub window_end_ns: Option<i64>,
}

/// The status of `catalog` with the base backups `bases`, at `now_ns`. `None` when the
/// repository holds no WAL at all.
pub fn archive_status(
    catalog: &Catalog,
    bases: &[BaseBackup],
    now_ns: i64,
) -> Option<ArchiveStatus> {
    if catalog.entries.is_empty() {
        return None;
    }
    let newest = catalog.newest_segment();
    let newest_ns = newest.map(|e| e.header.mtime_ns);
    let window_start = bases.iter().map(|b| b.stop_ns).min();
    let window = match (window_start, newest_ns) {
        (Some(s), Some(e)) if e >= s => (Some(s), Some(e)),
        _ => (None, None),
    };
    Some(ArchiveStatus {
        files: catalog.entries.len() as u64,
        bytes: catalog.entries.iter().map(|e| e.stored).sum(),
        segments: catalog
            .entries
            .iter()
            .filter(|e| matches!(e.header.kind, WalKind::Segment | WalKind::Partial))
            .count() as u64,
        newest_segment: newest.map(|e| e.header.name.clone()),
        newest_ns,
        age_ns: newest_ns.map(|t| now_ns.saturating_sub(t).max(0) as u64),
        base_backups: bases.len() as u64,
        window_start_ns: window.0,
        window_end_ns: window.1,
    })
}

/// Read the archive's status from the repository, whose snapshots are `snapshots`.
pub fn read_archive_status(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    now_ns: i64,
) -> Result<Option<ArchiveStatus>> {
    let catalog = Catalog::load(repo)?;
    let (bases, _) = retention::base_backups(snapshots);
    Ok(archive_status(&catalog, &bases, now_ns))
}

fn rfc3339_opt<S: Serializer>(ns: &Option<i64>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match ns {
        Some(ns) => s.serialize_str(&crate::browse::format_time_rfc3339(*ns)),
        None => s.serialize_none(),
    }
}

fn seconds_opt<S: Serializer>(ns: &Option<u64>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match ns {
        Some(ns) => s.serialize_f64(*ns as f64 / 1e9),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{ObjectKind, ObjectName};
    use crate::format::wal::{WalCodec, WalHeader};
    use crate::wal::WalEntry;

    fn entry(kind: WalKind, name: &str, mtime_ns: i64, start: u64) -> WalEntry {
        WalEntry {
            object: ObjectName::new(ObjectKind::Wal, [mtime_ns as u8; 32]),
            stored: 1000,
            header: WalHeader {
                kind,
                name: name.into(),
                system_id: 1,
                timeline: 1,
                start_lsn: start,
                segment_size: if kind == WalKind::History {
                    0
                } else {
                    16 << 20
                },
                size: 16 << 20,
                hash: [0; 32],
                mtime_ns,
                pushed_ns: 0,
                commits: None,
                codec: WalCodec::Raw,
            },
        }
    }

    #[test]
    fn the_newest_segment_by_file_time_gives_the_age_and_the_window_end() {
        let c = Catalog::new(
            vec![
                entry(WalKind::Segment, "000000010000000000000001", 100, 1 << 24),
                entry(WalKind::Segment, "000000010000000000000002", 300, 2 << 24),
                // A history file is newer, but it is no segment.
                entry(WalKind::History, "00000002.history", 900, 0),
            ],
            vec![],
        );
        let base = |stop_ns| BaseBackup {
            id: SnapshotId([stop_ns as u8; 32]),
            timeline: 1,
            start_lsn: 1 << 24,
            stop_lsn: None,
            stop_ns,
        };
        let s = archive_status(&c, &[base(150), base(120)], 1_000).unwrap();
        assert_eq!(
            s.newest_segment.as_deref(),
            Some("000000010000000000000002")
        );
        assert_eq!((s.newest_ns, s.age_ns), (Some(300), Some(700)));
        assert_eq!((s.files, s.segments, s.bytes), (3, 2, 3000));
        assert_eq!((s.window_start_ns, s.window_end_ns), (Some(120), Some(300)));
        // No base backup: no window. No WAL: no status at all.
        let s = archive_status(&c, &[], 1_000).unwrap();
        assert_eq!((s.window_start_ns, s.base_backups), (None, 0));
        let empty = Catalog::default();
        assert!(archive_status(&empty, &[], 1_000).is_none());
    }
}
