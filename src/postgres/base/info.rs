//! What a base backup's snapshot records (`Snapshot::info`), in one typed place: the backup
//! writes it with [`BaseBackupInfo::to_info`], and the restore reads it back with
//! [`BaseBackupInfo::from_snapshot`] to pick a base backup for a recovery target (the newest
//! whose `stop_time_ns` is before it) and to know where WAL replay starts.
//!
//! Keys: `system-identifier`, `timeline`, `start-lsn`, `stop-lsn`, `start-wal-file`,
//! `stop-wal-file`, `start-time`, `stop-time` (RFC 3339, UTC, the server's clock),
//! `server-version`, `wal-segment-size` (bytes), `data-checksums` (`on`/`off`),
//! `pages-checked`, `checksum-failures`, `relation-block` (the bytes relation files were
//! cut into), `data-directory`, `server` (host:port), and per
//! tablespace `tablespace:<oid>` = its original location; `tablespace-map` holds the map
//! `pg_backup_stop` returned, if any.

use super::page::Lsn;
use super::SOURCE;
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;

const TABLESPACE_PREFIX: &str = "tablespace:";

/// A tablespace that the backup stored under `pg_tblspc/<oid>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tablespace {
    pub oid: u32,
    /// Where its symlink pointed on the backed-up server.
    pub location: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseBackupInfo {
    pub system_identifier: u64,
    /// The timeline the backup started on (`START TIMELINE` of the label).
    pub timeline: u32,
    /// Where WAL replay must start (the label's `START WAL LOCATION`).
    pub start_lsn: Lsn,
    /// Where the restored cluster becomes consistent: recovery must replay at least to here.
    pub stop_lsn: Lsn,
    pub start_wal_file: String,
    pub stop_wal_file: String,
    /// When `pg_backup_start` was called, by the server's clock.
    pub start_time_ns: i64,
    /// After `pg_backup_stop` returned, by the server's clock: no earlier recovery target
    /// can be reached from this backup.
    pub stop_time_ns: i64,
    pub server_version: String,
    pub wal_segment_size: u64,
    pub data_checksums: bool,
    /// Pages whose checksum was verified (new pages and pages written during the backup
    /// are not counted).
    pub pages_checked: u64,
    pub checksum_failures: u64,
    /// Relation files were cut every this many bytes; the next base backup keeps it unless
    /// the cluster's size calls for another (`layout::choose_block`).
    pub relation_block: u32,
    pub data_directory: String,
    /// `host:port` from the URL.
    pub server: String,
    pub tablespaces: Vec<Tablespace>,
    pub tablespace_map: Option<String>,
}

impl BaseBackupInfo {
    pub fn to_info(&self) -> Vec<(String, String)> {
        let time = crate::browse::format_time_rfc3339;
        let mut info: Vec<(String, String)> = [
            ("system-identifier", self.system_identifier.to_string()),
            ("timeline", self.timeline.to_string()),
            ("start-lsn", self.start_lsn.to_string()),
            ("stop-lsn", self.stop_lsn.to_string()),
            ("start-wal-file", self.start_wal_file.clone()),
            ("stop-wal-file", self.stop_wal_file.clone()),
            ("start-time", time(self.start_time_ns)),
            ("stop-time", time(self.stop_time_ns)),
            ("server-version", self.server_version.clone()),
            ("wal-segment-size", self.wal_segment_size.to_string()),
            ("data-checksums", on_off(self.data_checksums).to_string()),
            ("pages-checked", self.pages_checked.to_string()),
            ("checksum-failures", self.checksum_failures.to_string()),
            ("relation-block", self.relation_block.to_string()),
            ("data-directory", self.data_directory.clone()),
            ("server", self.server.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for t in &self.tablespaces {
            info.push((format!("{TABLESPACE_PREFIX}{}", t.oid), t.location.clone()));
        }
        if let Some(map) = &self.tablespace_map {
            info.push(("tablespace-map".to_string(), map.clone()));
        }
        info
    }

    /// The record of a base backup snapshot; fails for any other snapshot, or one whose
    /// record is incomplete.
    pub fn from_snapshot(s: &Snapshot) -> Result<BaseBackupInfo> {
        if s.source != SOURCE {
            return Err(Error::invalid(format!(
                "this snapshot is not a PostgreSQL base backup (its source is {:?}); take one \
                 with `coffer backup --postgres-base URL`",
                s.source
            )));
        }
        let get = |key: &str| {
            s.info
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .ok_or_else(|| bad_record(key, "is missing"))
        };
        fn parse<T: std::str::FromStr>(key: &str, v: &str) -> Result<T> {
            v.parse().map_err(|_| bad_record(key, &format!("is {v:?}")))
        }
        let num = |key: &str| -> Result<u64> { parse(key, get(key)?) };
        let lsn = |key: &str| -> Result<Lsn> { parse(key, get(key)?) };
        let time = |key: &str| -> Result<i64> {
            let ts: jiff::Timestamp = parse(key, get(key)?)?;
            i64::try_from(ts.as_nanosecond()).map_err(|_| bad_record(key, "is out of range"))
        };
        let mut tablespaces = Vec::new();
        for (k, v) in &s.info {
            if let Some(oid) = k.strip_prefix(TABLESPACE_PREFIX) {
                tablespaces.push(Tablespace {
                    oid: parse(k, oid)?,
                    location: v.clone(),
                });
            }
        }
        Ok(BaseBackupInfo {
            system_identifier: num("system-identifier")?,
            timeline: parse("timeline", get("timeline")?)?,
            start_lsn: lsn("start-lsn")?,
            stop_lsn: lsn("stop-lsn")?,
            start_wal_file: get("start-wal-file")?.to_string(),
            stop_wal_file: get("stop-wal-file")?.to_string(),
            start_time_ns: time("start-time")?,
            stop_time_ns: time("stop-time")?,
            server_version: get("server-version")?.to_string(),
            wal_segment_size: num("wal-segment-size")?,
            data_checksums: get("data-checksums")? == "on",
            pages_checked: num("pages-checked")?,
            checksum_failures: num("checksum-failures")?,
            relation_block: parse("relation-block", get("relation-block")?)?,
            data_directory: get("data-directory")?.to_string(),
            server: get("server")?.to_string(),
            tablespaces,
            tablespace_map: get("tablespace-map").ok().map(str::to_string),
        })
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn bad_record(key: &str, what: &str) -> Error {
    Error::corrupt(format!(
        "the base backup's record is damaged: {key} {what}; take a new base backup"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snapshot::Summary;
    use crate::id::BlobId;

    fn sample() -> BaseBackupInfo {
        BaseBackupInfo {
            system_identifier: 7_714_709_260_116_162_097,
            timeline: 3,
            start_lsn: Lsn(0x1_0200_0028),
            stop_lsn: Lsn(0x1_0300_0100),
            start_wal_file: "000000030000000100000002".into(),
            stop_wal_file: "000000030000000100000003".into(),
            start_time_ns: 1_796_220_723_356_123_000,
            stop_time_ns: 1_796_220_725_001_000_000,
            server_version: "15.18 (Debian 15.18-0+deb12u1)".into(),
            wal_segment_size: 16 << 20,
            data_checksums: true,
            pages_checked: 99_568,
            checksum_failures: 1,
            relation_block: 8192,
            data_directory: "/var/lib/postgresql/15/main".into(),
            server: "127.0.0.1:5432".into(),
            tablespaces: vec![Tablespace {
                oid: 16_384,
                location: "/srv/fast space".into(),
            }],
            tablespace_map: Some("16384 /srv/fast space\n".into()),
        }
    }

    fn snapshot(source: &str, info: Vec<(String, String)>) -> Snapshot {
        Snapshot {
            time_ns: 0,
            host: "h".into(),
            user: "u".into(),
            tags: vec![],
            paths: vec![],
            root: BlobId([0; 32]),
            parent: None,
            source: source.into(),
            info,
            summary: Summary::default(),
        }
    }

    #[test]
    fn the_record_round_trips() {
        let info = sample();
        let back = BaseBackupInfo::from_snapshot(&snapshot(SOURCE, info.to_info())).unwrap();
        assert_eq!(back, info);
        let mut plain = sample();
        plain.tablespaces.clear();
        plain.tablespace_map = None;
        plain.data_checksums = false;
        let back = BaseBackupInfo::from_snapshot(&snapshot(SOURCE, plain.to_info())).unwrap();
        assert_eq!(back, plain);
    }

    #[test]
    fn other_snapshots_and_damaged_records_are_refused() {
        let e = BaseBackupInfo::from_snapshot(&snapshot("postgres", sample().to_info()));
        assert!(e.unwrap_err().to_string().contains("--postgres-base"));
        let mut info = sample().to_info();
        info.retain(|(k, _)| k != "stop-lsn");
        let e = BaseBackupInfo::from_snapshot(&snapshot(SOURCE, info)).unwrap_err();
        assert!(e.to_string().contains("stop-lsn is missing"), "{e}");
        let mut info = sample().to_info();
        info.iter_mut().find(|(k, _)| k == "start-lsn").unwrap().1 = "x".into();
        assert!(BaseBackupInfo::from_snapshot(&snapshot(SOURCE, info)).is_err());
    }
}
