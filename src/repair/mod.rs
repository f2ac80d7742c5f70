//! `coffer repair`: fix what can be fixed without losing anything, while backups run
//! (format-spec §12.7). In this order:
//! 1. damaged locks, plans and wait records are removed (`objects.rs`): one damaged plan
//!    blocks every backup and prune, one damaged lock or wait record every prune;
//! 2. the snapshots are listed, then the index files are read (so a snapshot stored by a
//!    backup meanwhile finds its blobs indexed, §8), then the packs are listed;
//! 3. the index is mended (`index.rs`): every listed pack that no readable index file lists
//!    is indexed again from its own header, damaged index files go once every pack is
//!    covered, and index files that name packs the listing lacks are written again without
//!    them, so backups do not rely on those packs;
//! 4. snapshots that need data that is gone are listed, and with `forget_broken` removed
//!    (`snapshots.rs`);
//! 5. temporary files of failed writes are removed as prune removes them (§12.1 L1–L2).
//!
//! Repair holds the prune lock: it never runs beside a prune (a damaged plan may be one a
//! prune is sweeping), and backups go on meanwhile, as they do beside a prune.

mod index;
mod objects;
mod snapshots;

use crate::error::{Error, Result};
use crate::gc::{self, leftovers};
use crate::progress::Progress;
use crate::repo::Repository;
use serde::Serialize;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RepairOptions {
    /// Report what would be done; write and delete nothing.
    pub dry_run: bool,
    /// Remove the snapshots that need data that is gone (after listing them).
    pub forget_broken: bool,
    /// A lock object this observer saw unchanged this long ago belongs to a dead process
    /// (as for prune).
    pub stale_after: Duration,
    /// This machine's name, for repair's lock.
    pub host: String,
}

/// A snapshot that needs data the repository no longer has.
#[derive(Debug, Clone, Serialize)]
pub struct BrokenSnapshot {
    pub snapshot: String,
    pub time_ns: i64,
    pub host: String,
    pub paths: Vec<String>,
    /// Files and directories that cannot be restored (a lost directory counts once).
    pub lost: u64,
    /// The first reason found.
    pub reason: String,
}

#[derive(Debug, Default, Serialize)]
pub struct RepairReport {
    pub dry_run: bool,
    /// Locks of dead operations (judged as prune judges them).
    pub stale_locks_removed: Vec<String>,
    /// Damaged lock objects, plans and wait records removed (with a dry run: found).
    pub locks_removed: Vec<String>,
    pub plans_removed: Vec<String>,
    pub waits_removed: Vec<String>,
    /// Packs that no readable index file listed, indexed again from their headers.
    pub packs_indexed: Vec<String>,
    /// Packs that no readable index file lists and whose header cannot be read: their
    /// blobs stay unindexed (`check --read-data` says more).
    pub packs_unreadable: Vec<String>,
    /// Damaged index files removed: every pack they could have listed is indexed elsewhere.
    pub index_files_removed: Vec<String>,
    /// Damaged index files kept, because some pack is still not indexed.
    pub index_files_kept: Vec<String>,
    /// Index files written again without the packs the listing lacks.
    pub index_files_rewritten: Vec<String>,
    /// The packs named by index files that the listing lacks.
    pub packs_missing: Vec<String>,
    /// Snapshots that need data that is gone, and whether they were removed.
    pub broken_snapshots: Vec<BrokenSnapshot>,
    pub snapshots_forgotten: u64,
    /// Temporary files of failed writes removed from `tmp/` (dry run: found), and bytes.
    pub scratch_files: u64,
    pub scratch_bytes: u64,
}

impl RepairReport {
    /// Is something left that repair could not fix (or, with a dry run, would not)?
    pub fn left_broken(&self) -> bool {
        !self.packs_unreadable.is_empty()
            || !self.index_files_kept.is_empty()
            || self.broken_snapshots.len() as u64 > self.snapshots_forgotten
    }

    /// Did (would) this run change anything?
    pub fn changed(&self) -> bool {
        !(self.stale_locks_removed.is_empty()
            && self.locks_removed.is_empty()
            && self.plans_removed.is_empty()
            && self.waits_removed.is_empty()
            && self.packs_indexed.is_empty()
            && self.index_files_removed.is_empty()
            && self.index_files_rewritten.is_empty()
            && self.snapshots_forgotten == 0
            && self.scratch_files == 0)
    }
}

pub fn repair(
    repo: &Repository,
    opts: &RepairOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<RepairReport> {
    // Repair deletes: a region that missed a deletion would get the object back at the
    // next sync (§11), and a region that does not answer may hold the good copy.
    repo.backend().reachable().map_err(|e| {
        Error::new(
            e.kind(),
            format!("{e}. repair changes nothing unless every region answers: run `coffer sync` once it is back, then repair"),
        )
    })?;
    let mut report = RepairReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    if opts.dry_run {
        steps(repo, opts, &mut report, progress, cancel)?;
        leftovers::count(repo, &mut report.scratch_files, &mut report.scratch_bytes)?;
        return Ok(report);
    }
    let alone = gc::lock_alone(
        repo,
        &opts.host,
        opts.stale_after,
        &mut report.stale_locks_removed,
        true,
    )?;
    let own = alone.lock.operation();
    let result = (|| {
        let (files, bytes) = leftovers::removed_around(repo, own, || {
            steps(repo, opts, &mut report, progress, cancel)
        })?;
        report.scratch_files += files;
        report.scratch_bytes += bytes;
        Ok(())
    })();
    let released = alone.release();
    result?;
    released?;
    Ok(report)
}

/// Steps 1 to 4 (see the top of this file).
fn steps(
    repo: &Repository,
    opts: &RepairOptions,
    report: &mut RepairReport,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<()> {
    objects::remove_damaged(repo, opts.dry_run, report)?;
    gc::check_cancel(cancel)?;
    let (snapshots, damaged) = repo.readable_snapshots()?;
    let mended = index::mend(repo, opts.dry_run, report, progress, cancel)?;
    gc::check_cancel(cancel)?;
    snapshots::find_broken(
        repo, &mended, &snapshots, &damaged, report, progress, cancel,
    )?;
    if opts.forget_broken {
        snapshots::forget(repo, opts.dry_run, report)?;
    }
    Ok(())
}
