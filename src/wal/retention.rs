//! Which archived WAL files a repository keeps (format-spec §12.8), as a pure function of
//! the base backups that are kept and the archive's catalog.
//!
//! A base backup restores only with the WAL from its start on: the segments up to its stop
//! make it consistent, and every segment after that moves the recovery target forward. So
//! the archive keeps, per timeline, every segment from the start of the oldest kept base
//! backup on that timeline or an earlier one, every timeline history file, and the backup
//! history files in that window; everything older is of no use to any kept base backup.
//! A base backup whose start is unknown, a damaged snapshot (which may be one), or WAL of
//! several clusters keeps everything: deleting on a guess could make a kept base backup
//! unrestorable.

use super::catalog::{Catalog, WalEntry};
use super::names::parse_lsn;
use crate::format::snapshot::Snapshot;
use crate::format::wal::WalKind;
use crate::id::SnapshotId;

/// `Snapshot::source` of a physical base backup (`coffer backup --postgres-base`).
pub const BASE_SOURCE: &str = "postgres-base";

/// What WAL retention, `check` and `status` need of one base backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseBackup {
    pub id: SnapshotId,
    pub timeline: u32,
    /// The LSN replay starts from (the backup's checkpoint redo point).
    pub start_lsn: u64,
    /// Where replay reaches consistency, if the snapshot recorded it.
    pub stop_lsn: Option<u64>,
    /// When the backup ended (ns since the Unix epoch): the earliest moment it can restore
    /// to, so where its share of the recovery window begins.
    pub stop_ns: i64,
}

/// The timeline and start LSN a base backup recorded (info keys `timeline` and `start-lsn`,
/// the LSN as PostgreSQL prints it); `None` if it recorded none readably. The one place
/// that reads them, so that the base-backup code's own typed record can take over here.
pub fn base_start(snap: &Snapshot) -> Option<(u32, u64)> {
    let timeline = info(snap, "timeline")?.trim().parse::<u32>().ok()?;
    let start = parse_lsn(info(snap, "start-lsn")?)?;
    (timeline != 0).then_some((timeline, start))
}

/// Where and when a base backup became consistent: `stop-lsn` if recorded, and `stop-time`
/// (RFC 3339) if recorded, else the snapshot's time plus its duration.
pub fn base_stop(snap: &Snapshot) -> (Option<u64>, i64) {
    let lsn = info(snap, "stop-lsn").and_then(parse_lsn);
    let time = info(snap, "stop-time")
        .and_then(|t| t.trim().parse::<jiff::Timestamp>().ok())
        .and_then(|t| i64::try_from(t.as_nanosecond()).ok())
        .unwrap_or_else(|| {
            snap.time_ns
                .saturating_add(i64::try_from(snap.summary.duration_ns).unwrap_or(i64::MAX))
        });
    (lsn, time)
}

fn info<'a>(snap: &'a Snapshot, key: &str) -> Option<&'a str> {
    snap.info
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The base backups among `snapshots`, oldest start first, and the IDs of base-backup
/// snapshots that recorded no readable start.
pub fn base_backups(snapshots: &[(SnapshotId, Snapshot)]) -> (Vec<BaseBackup>, Vec<SnapshotId>) {
    let mut bases = Vec::new();
    let mut unknown = Vec::new();
    for (id, snap) in snapshots.iter().filter(|(_, s)| s.source == BASE_SOURCE) {
        match base_start(snap) {
            Some((timeline, start_lsn)) => {
                let (stop_lsn, stop_ns) = base_stop(snap);
                bases.push(BaseBackup {
                    id: *id,
                    timeline,
                    start_lsn,
                    stop_lsn,
                    stop_ns,
                });
            }
            None => unknown.push(*id),
        }
    }
    bases.sort_by_key(|b| (b.start_lsn, b.timeline, b.stop_ns));
    (bases, unknown)
}

/// What to keep and what to delete.
#[derive(Debug, Default)]
pub struct Selection<'a> {
    pub keep: Vec<&'a WalEntry>,
    pub delete: Vec<&'a WalEntry>,
    /// Why nothing may be deleted (then `delete` is empty).
    pub hold: Option<String>,
}

/// Split the archive into what the kept base backups `bases` need and the rest.
/// `unknown_bases` counts base backups whose start is unknown and `damaged` the snapshots
/// that could not be read (either may be a base backup): any of them keeps everything.
pub fn select<'a>(
    catalog: &'a Catalog,
    bases: &[BaseBackup],
    unknown_bases: usize,
    damaged: usize,
) -> Selection<'a> {
    let all = || catalog.entries.iter().collect::<Vec<_>>();
    let hold = |why: String| Selection {
        keep: all(),
        delete: vec![],
        hold: Some(why),
    };
    if catalog.entries.is_empty() {
        return Selection::default();
    }
    let files = catalog.entries.len();
    if unknown_bases > 0 {
        return hold(format!(
            "{unknown_bases} base backup(s) do not record their timeline and start LSN, so \
             which WAL they need is unknown: no WAL file is deleted"
        ));
    }
    if damaged > 0 {
        return hold(format!(
            "{damaged} snapshot(s) cannot be read and may be base backups: no WAL file is \
             deleted (run `coffer check`)"
        ));
    }
    if bases.is_empty() {
        return hold(format!(
            "the repository holds {files} WAL file(s) but no base backup: no WAL file is \
             deleted, since a base backup taken later may still need recent ones (take one \
             with `coffer backup --postgres-base URL`)"
        ));
    }
    if catalog.clusters().len() > 1 {
        return hold(
            "the archive holds WAL of more than one cluster: no WAL file is deleted \
             (archive each cluster into its own repository)"
                .to_string(),
        );
    }
    let mut out = Selection::default();
    for e in &catalog.entries {
        if needed(e, bases) {
            out.keep.push(e);
        } else {
            out.delete.push(e);
        }
    }
    out
}

/// Does some kept base backup need `e`?
fn needed(e: &WalEntry, bases: &[BaseBackup]) -> bool {
    let h = &e.header;
    // The last byte `e` covers, for the comparison with each backup's start.
    let end = match h.kind {
        // History files are tiny, and recovery reads every one it is pointed at.
        WalKind::History => return true,
        WalKind::Segment | WalKind::Partial => h
            .start_lsn
            .saturating_add(u64::from(h.segment_size.max(1)) - 1),
        WalKind::Backup => h.start_lsn,
    };
    // A base backup on timeline t replays t and the timelines after it: a file of
    // timeline h.timeline is kept if it ends at or after the start of some kept base backup
    // on that timeline or an earlier one.
    bases
        .iter()
        .any(|b| b.timeline <= h.timeline && end >= b.start_lsn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{ObjectKind, ObjectName};
    use crate::format::snapshot::Summary;
    use crate::format::wal::{WalCodec, WalHeader};
    use crate::id::BlobId;

    const SEG: u32 = 16 << 20;

    fn snap(source: &str, info: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            time_ns: 1_000,
            host: "db".into(),
            user: "postgres".into(),
            tags: vec![],
            paths: vec![b"/pg".to_vec()],
            root: BlobId([0; 32]),
            parent: None,
            source: source.into(),
            info: info
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            summary: Summary {
                duration_ns: 500,
                ..Summary::default()
            },
        }
    }

    fn base(timeline: u32, segment: u64) -> BaseBackup {
        BaseBackup {
            id: SnapshotId([segment as u8; 32]),
            timeline,
            start_lsn: segment * u64::from(SEG) + 0x28,
            stop_lsn: None,
            stop_ns: 0,
        }
    }

    fn entry(kind: WalKind, timeline: u32, segment: u64, n: u8) -> WalEntry {
        let seg_name = super::super::names::segment_name(timeline, segment, SEG);
        let name = match kind {
            WalKind::History => format!("{timeline:08X}.history"),
            WalKind::Backup => format!("{seg_name}.00000028.backup"),
            WalKind::Partial => format!("{seg_name}.partial"),
            WalKind::Segment => seg_name,
        };
        WalEntry {
            object: ObjectName::new(ObjectKind::Wal, [n; 32]),
            stored: 1000,
            header: WalHeader {
                kind,
                name,
                system_id: 7,
                timeline,
                start_lsn: if kind == WalKind::History {
                    0
                } else {
                    segment * u64::from(SEG) + if kind == WalKind::Backup { 0x28 } else { 0 }
                },
                segment_size: if matches!(kind, WalKind::Segment | WalKind::Partial) {
                    SEG
                } else {
                    0
                },
                size: u64::from(SEG),
                hash: [0; 32],
                mtime_ns: segment as i64,
                pushed_ns: 0,
                commits: None,
                codec: WalCodec::Raw,
            },
        }
    }

    fn catalog(entries: Vec<WalEntry>) -> Catalog {
        Catalog::new(entries, vec![])
    }

    fn names(v: &[&WalEntry]) -> Vec<String> {
        v.iter().map(|e| e.header.name.clone()).collect()
    }

    #[test]
    fn the_start_and_stop_come_from_the_snapshot_info() {
        let s = snap(
            BASE_SOURCE,
            &[
                ("timeline", "2"),
                ("start-lsn", "0/2000028"),
                ("stop-lsn", "0/2000100"),
                ("stop-time", "2026-12-01T10:00:00Z"),
            ],
        );
        assert_eq!(base_start(&s), Some((2, 0x200_0028)));
        let (lsn, time) = base_stop(&s);
        assert_eq!(lsn, Some(0x200_0100));
        assert_eq!(time, 1_796_119_200_000_000_000);
        // Without a stop time: the snapshot's time plus its duration.
        let s = snap(BASE_SOURCE, &[("timeline", "1"), ("start-lsn", "0/28")]);
        assert_eq!(base_stop(&s), (None, 1_500));
        for bad in [
            &[("timeline", "x"), ("start-lsn", "0/28")][..],
            &[("timeline", "0"), ("start-lsn", "0/28")],
            &[("timeline", "1"), ("start-lsn", "28")],
            &[("start-lsn", "0/28")],
        ] {
            assert_eq!(base_start(&snap(BASE_SOURCE, bad)), None, "{bad:?}");
        }
        let snaps = vec![
            (SnapshotId([1; 32]), snap("files", &[])),
            (
                SnapshotId([2; 32]),
                snap(
                    BASE_SOURCE,
                    &[("timeline", "1"), ("start-lsn", "0/5000028")],
                ),
            ),
            (SnapshotId([3; 32]), snap(BASE_SOURCE, &[("timeline", "1")])),
            (
                SnapshotId([4; 32]),
                snap(
                    BASE_SOURCE,
                    &[("timeline", "1"), ("start-lsn", "0/3000028")],
                ),
            ),
        ];
        let (bases, unknown) = base_backups(&snaps);
        assert_eq!(
            bases.iter().map(|b| b.id).collect::<Vec<_>>(),
            [SnapshotId([4; 32]), SnapshotId([2; 32])]
        );
        assert_eq!(unknown, [SnapshotId([3; 32])]);
    }

    #[test]
    fn everything_from_the_oldest_kept_start_is_kept() {
        let mut entries: Vec<WalEntry> = (1..=9)
            .map(|s| entry(WalKind::Segment, 1, s, s as u8))
            .collect();
        entries.push(entry(WalKind::Backup, 1, 2, 20));
        entries.push(entry(WalKind::Backup, 1, 4, 21));
        entries.push(entry(WalKind::Backup, 1, 7, 22));
        let c = catalog(entries);
        let s = select(&c, &[base(1, 4), base(1, 7)], 0, 0);
        assert!(s.hold.is_none());
        let deleted = names(&s.delete);
        // In the catalog's order: by timeline and position, a backup file after its segment.
        assert_eq!(
            deleted,
            [
                "000000010000000000000001",
                "000000010000000000000002",
                "000000010000000000000002.00000028.backup",
                "000000010000000000000003",
            ]
        );
        // The start segment itself is kept, and the kept backups' history files.
        assert!(names(&s.keep).contains(&"000000010000000000000004".to_string()));
        assert_eq!(s.keep.len() + s.delete.len(), c.entries.len());
        assert_eq!(
            s.keep
                .iter()
                .filter(|e| e.header.kind == WalKind::Backup)
                .count(),
            2
        );
    }

    #[test]
    fn later_timelines_are_kept_from_the_start_and_history_files_always() {
        // Timeline 2 branched off 1 in segment 5; a base backup on 1 at 3, one on 2 at 8.
        let mut entries: Vec<WalEntry> = (1..=6)
            .map(|s| entry(WalKind::Segment, 1, s, s as u8))
            .collect();
        entries.extend((5..=9).map(|s| entry(WalKind::Segment, 2, s, 10 + s as u8)));
        entries.push(entry(WalKind::Partial, 1, 5, 30));
        entries.push(entry(WalKind::History, 2, 0, 31));
        let c = catalog(entries);
        let s = select(&c, &[base(1, 3), base(2, 8)], 0, 0);
        let deleted = names(&s.delete);
        assert_eq!(
            deleted,
            ["000000010000000000000001", "000000010000000000000002"]
        );
        // Only the base backup on timeline 2: timeline 1 goes entirely, timeline 2 from 8.
        let s = select(&c, &[base(2, 8)], 0, 0);
        let deleted = names(&s.delete);
        assert_eq!(deleted.len(), 6 + 1 + 3, "{deleted:?}");
        assert!(deleted
            .iter()
            .all(|n| n.starts_with("00000001") || n.as_str() < "000000020000000000000008"));
        assert!(names(&s.keep).contains(&"00000002.history".to_string()));
    }

    #[test]
    fn nothing_goes_without_a_known_base_backup() {
        let c = catalog(
            (1..=3)
                .map(|s| entry(WalKind::Segment, 1, s, s as u8))
                .collect(),
        );
        for (bases, unknown, damaged, says) in [
            (vec![], 0, 0, "no base backup"),
            (vec![base(1, 3)], 1, 0, "do not record"),
            (vec![base(1, 3)], 0, 2, "cannot be read"),
        ] {
            let s = select(&c, &bases, unknown, damaged);
            assert!(s.delete.is_empty());
            assert_eq!(s.keep.len(), 3);
            assert!(s.hold.as_deref().unwrap().contains(says), "{:?}", s.hold);
        }
        // Two clusters in one archive: nothing goes either.
        let mut entries: Vec<WalEntry> = (1..=3)
            .map(|s| entry(WalKind::Segment, 1, s, s as u8))
            .collect();
        entries[0].header.system_id = 8;
        let two = catalog(entries);
        let s = select(&two, &[base(1, 3)], 0, 0);
        assert!(s.delete.is_empty() && s.hold.is_some());
        // An empty archive: nothing to say.
        let empty = catalog(vec![]);
        let s = select(&empty, &[], 0, 0);
        assert!(s.hold.is_none() && s.keep.is_empty());
    }
}
