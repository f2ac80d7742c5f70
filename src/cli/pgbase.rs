//! The CLI side of `backup --postgres-base URL`: options, and what the base backup prints.

use super::backup;
use super::common::{self, human_bytes};
use super::progress::Bar;
use coffer::backup::{BackupOptions, BackupOutcome};
use coffer::format::snapshot::Snapshot;
use coffer::postgres::base::{DEFAULT_ARCHIVE_WAIT, SOURCE};
use coffer::postgres::{backup_base, BaseBackupInfo, PgBaseOptions};
use coffer::repo::Repository;
use coffer::Result;

pub fn backup(
    repo: &Repository,
    url: &str,
    a: &backup::Args,
    opts: &BackupOptions,
    bar: &Bar,
) -> Result<BackupOutcome> {
    let pg = PgBaseOptions {
        pg_bin: a.pg_bin.clone(),
        archive_wait: a.wait_for_archive.unwrap_or(DEFAULT_ARCHIVE_WAIT),
    };
    backup_base(repo, url, &pg, opts, bar, common::cancel_flag())
}

/// The record of a base backup, or `None` for other snapshots.
fn record(s: &Snapshot) -> Option<BaseBackupInfo> {
    if s.source != SOURCE {
        return None;
    }
    BaseBackupInfo::from_snapshot(s).ok()
}

/// What a base backup recorded, for `backup --json`; null for other snapshots.
pub fn summary_json(s: &Snapshot) -> serde_json::Value {
    let Some(b) = record(s) else {
        return serde_json::Value::Null;
    };
    let time = coffer::browse::format_time_rfc3339;
    serde_json::json!({
        "system_identifier": b.system_identifier.to_string(),
        "timeline": b.timeline,
        "start_lsn": b.start_lsn.to_string(),
        "stop_lsn": b.stop_lsn.to_string(),
        "start_wal_file": b.start_wal_file,
        "stop_wal_file": b.stop_wal_file,
        "start_time": time(b.start_time_ns),
        "stop_time": time(b.stop_time_ns),
        "server": b.server,
        "server_version": b.server_version,
        "wal_segment_size": b.wal_segment_size,
        "data_directory": b.data_directory,
        "data_checksums": b.data_checksums,
        "pages_checked": b.pages_checked,
        "checksum_failures": b.checksum_failures,
        "relation_block": b.relation_block,
        "tablespaces": b.tablespaces.iter().map(|t| serde_json::json!({
            "oid": t.oid, "location": t.location,
        })).collect::<Vec<_>>(),
        "bytes_added": s.summary.bytes_added_stored,
    })
}

/// The base backup's lines, after the usual backup summary.
pub fn print_summary(s: &Snapshot) {
    let Some(b) = record(s) else { return };
    println!(
        "base backup of cluster {} (PostgreSQL {}) at {}: timeline {}, WAL {} to {} ({} to {})",
        b.system_identifier,
        b.server_version,
        b.server,
        b.timeline,
        b.start_lsn,
        b.stop_lsn,
        b.start_wal_file,
        b.stop_wal_file
    );
    let checks = if b.data_checksums {
        format!(
            "{} pages checked, {} checksum failures",
            b.pages_checked, b.checksum_failures
        )
    } else {
        "pages not checked (the cluster has no data checksums)".to_string()
    };
    println!(
        "{} of data directory {}{}; {checks}; {} added",
        human_bytes(s.summary.total_bytes),
        b.data_directory,
        match b.tablespaces.len() {
            0 => String::new(),
            n => format!(" with {n} tablespace(s)"),
        },
        human_bytes(s.summary.bytes_added_stored)
    );
}

/// Pages that failed their checksum: the snapshot is saved, but the command fails.
pub fn checksum_failures(s: &Snapshot) -> u64 {
    record(s).map_or(0, |b| b.checksum_failures)
}
