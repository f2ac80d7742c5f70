//! Point-in-time recovery: `coffer restore @TIME|latest --to-postgres-data DIR` writes a
//! base backup into DIR, fetches the WAL recovery needs into a spool there, and sets
//! PostgreSQL up to replay it to the target (`plan.rs`, `recovery.rs`); with `--start` it
//! starts the server and waits until recovery ends (`start.rs`).
//!
//! Nothing is written before the plan holds: a target the archive cannot reach is refused
//! with DIR untouched.

pub mod plan;
pub mod recovery;
pub mod start;

pub use plan::{plan, BaseCandidate, Plan, Target};
pub use recovery::TargetAction;
pub use start::Recovered;

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::wal::WalKind;
use crate::id::SnapshotId;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::restore::{restore, RestoreOptions};
use crate::wal::fetch::{read_archived, write_atomically};
use crate::wal::Catalog;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct PitrOptions {
    pub data_dir: PathBuf,
    pub target: Target,
    /// Restore this base backup (by default the newest that ends before the target).
    pub base: Option<SnapshotId>,
    pub action: TargetAction,
    /// Start the server and wait for recovery.
    pub start: bool,
    pub port: Option<u16>,
    pub pg_bin: Option<PathBuf>,
    pub timeout: Duration,
    /// The coffer program PostgreSQL's restore_command runs.
    pub coffer_exe: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct PitrReport {
    pub data_dir: String,
    pub base_snapshot: String,
    pub base_consistent_at: String,
    pub target: String,
    pub timeline: u32,
    pub note: Option<String>,
    pub files: u64,
    pub bytes: u64,
    pub wal_files: u64,
    pub wal_bytes: u64,
    /// Seconds to write the data directory and the WAL spool.
    pub restore_seconds: f64,
    /// Seconds from the start of the command until recovery ended (with `--start`).
    pub recovered_seconds: Option<f64>,
    pub last_replayed_commit: Option<String>,
    #[serde(skip)]
    pub last_replayed_commit_ns: Option<i64>,
    pub stopped: Option<String>,
    pub state: Option<String>,
    pub port: Option<u16>,
}

/// A base backup's record as the planner needs it; `None` for other snapshots.
pub fn candidate(id: SnapshotId, s: &Snapshot) -> Option<BaseCandidate> {
    let info = super::base::BaseBackupInfo::from_snapshot(s).ok()?;
    Some(BaseCandidate {
        snapshot: id,
        system_id: info.system_identifier,
        timeline: info.timeline,
        start_lsn: info.start_lsn.0,
        stop_lsn: info.stop_lsn.0,
        stop_time_ns: info.stop_time_ns,
        segment_size: u32::try_from(info.wal_segment_size).ok()?,
    })
}

fn describe(t: &Target) -> String {
    let time = crate::browse::format_time_rfc3339;
    match t {
        Target::End => "the end of the archive".into(),
        Target::Time(ns) => time(*ns),
        Target::Lsn(l) => format!("LSN {}", crate::wal::names::lsn_text(*l)),
        Target::Name(n) => format!("restore point {n:?}"),
        Target::Immediate => "the base backup's consistent point".into(),
    }
}

/// Plan, then write DIR, then (with `start`) recover.
pub fn restore_to_data_dir(
    repo: &Repository,
    opts: &PitrOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<PitrReport> {
    let t0 = Instant::now();
    let catalog = Catalog::load(repo)?;
    let snaps = repo.snapshots()?;
    let bases: Vec<(BaseCandidate, &Snapshot)> = snaps
        .iter()
        .filter(|(id, _)| opts.base.map_or(true, |b| b == *id))
        .filter_map(|(id, s)| candidate(*id, s).map(|c| (c, s)))
        .collect();
    if let (Some(b), true) = (opts.base, bases.is_empty()) {
        return Err(Error::invalid(format!(
            "snapshot {} is not a base backup (take one with `coffer backup --postgres-base URL`)",
            b.short()
        )));
    }
    let mut histories = BTreeMap::new();
    for e in catalog
        .entries
        .iter()
        .filter(|e| e.header.kind == WalKind::History)
    {
        if let Some(bytes) = read_archived(repo, &catalog, &e.header.name)? {
            histories.insert(
                e.header.timeline,
                String::from_utf8_lossy(&bytes).into_owned(),
            );
        }
    }
    let candidates: Vec<BaseCandidate> = bases.iter().map(|(c, _)| c.clone()).collect();
    let plan = plan::plan(&catalog, &candidates, &histories, opts.target.clone())?;
    let snapshot = bases
        .iter()
        .find(|(c, _)| c.snapshot == plan.base.snapshot)
        .map(|(_, s)| *s)
        .expect("the plan chose one of them");

    // Only now is anything written.
    let data = &opts.data_dir;
    prepare_empty_dir(data)?;
    let restored = restore(
        repo,
        snapshot,
        &RestoreOptions {
            target: data.clone(),
            ..Default::default()
        },
        progress,
        cancel,
    )?;
    if let Some(e) = restored.errors.first() {
        return Err(Error::new(
            crate::error::ErrorKind::Io,
            format!(
                "the base backup did not restore completely ({} errors), first: {e}",
                restored.errors.len()
            ),
        ));
    }
    let spool = start::spool_dir(data);
    for d in [
        data.join("pg_wal"),
        data.join("pg_wal/archive_status"),
        spool.clone(),
    ] {
        crate::hostfile::create_dir(&d).map_err(|e| Error::io(d.display(), e))?;
    }
    let fetched: Vec<Result<u64>> = plan
        .files
        .par_iter()
        .map(|e| {
            let bytes = read_archived(repo, &catalog, &e.header.name)?.ok_or_else(|| {
                Error::not_found(format!("{} vanished from the archive", e.header.name))
            })?;
            write_atomically(&spool.join(&e.header.name), &bytes)?;
            Ok(bytes.len() as u64)
        })
        .collect();
    let mut wal_bytes = 0;
    for f in fetched {
        wal_bytes += f?;
    }
    let restore_command = format!(
        "{} -q wal-fetch --spool-only --spool {} %f %p",
        recovery::shell_quote(&opts.coffer_exe.to_string_lossy()),
        recovery::shell_quote(&spool.to_string_lossy())
    );
    let port = match (opts.port, opts.start) {
        (Some(p), _) => Some(p),
        (None, true) => Some(start::free_port()?),
        (None, false) => None,
    };
    let settings = recovery::settings(&restore_command, &plan.target, opts.action, port);
    recovery::write(
        data,
        &settings,
        &crate::browse::format_time_rfc3339(repo.clock().now()),
    )?;
    give_to_data_owner(data, &spool)?;
    let mut report = PitrReport {
        data_dir: data.display().to_string(),
        base_snapshot: plan.base.snapshot.to_hex(),
        base_consistent_at: crate::browse::format_time_rfc3339(plan.base.stop_time_ns),
        target: describe(&plan.target),
        timeline: plan.timeline,
        note: plan.note.clone(),
        files: restored.files,
        bytes: restored.bytes,
        wal_files: plan.files.len() as u64,
        wal_bytes,
        restore_seconds: t0.elapsed().as_secs_f64(),
        recovered_seconds: None,
        last_replayed_commit: None,
        last_replayed_commit_ns: None,
        stopped: None,
        state: None,
        port,
    };
    if opts.start {
        let pause = opts.action == TargetAction::Pause && plan.target != Target::End;
        let r = start::start_and_wait(
            data,
            port.expect("set with start"),
            opts.pg_bin.as_deref(),
            pause,
            opts.timeout,
        )?;
        report.recovered_seconds = Some(t0.elapsed().as_secs_f64());
        report.last_replayed_commit = r.last_commit_ns.map(crate::browse::format_time_rfc3339);
        report.last_replayed_commit_ns = r.last_commit_ns;
        report.stopped = r.stopped;
        report.state = Some(r.state.clone());
        if r.state == "in production" {
            // Recovery is over: the server will not ask for these again.
            let _ = std::fs::remove_dir_all(&spool);
        }
    }
    Ok(report)
}

/// DIR must be new or empty: a restore never writes into a data directory in use.
fn prepare_empty_dir(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::invalid(format!(
                    "{} is not empty: restore a data directory into a new or empty folder",
                    dir.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::hostfile::create_dir(dir).map_err(|e| Error::io(dir.display(), e))?
        }
        Err(e) => return Err(Error::io(dir.display(), e)),
    }
    // PostgreSQL refuses a data directory that others can read.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(dir.display(), e))
}

/// When root restores, the base backup's files keep their recorded owner, but what this
/// restore added (the folder itself, the spool, the recovery settings) is root's: hand it
/// to the owner of `PG_VERSION`, who will run the server.
fn give_to_data_owner(data: &Path, spool: &Path) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let owner = std::fs::metadata(data.join("PG_VERSION"))
        .map_err(|e| Error::io(data.join("PG_VERSION").display(), e))?;
    let (uid, gid) = (owner.uid(), owner.gid());
    let mut paths = vec![
        data.to_path_buf(),
        data.join("pg_wal"),
        data.join("pg_wal/archive_status"),
        data.join("recovery.signal"),
        data.join("postgresql.auto.conf"),
        spool.to_path_buf(),
    ];
    if let Ok(entries) = std::fs::read_dir(spool) {
        paths.extend(entries.flatten().map(|e| e.path()));
    }
    for p in paths {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid))
            .map_err(|e| Error::io(p.display(), e))?;
    }
    Ok(())
}
