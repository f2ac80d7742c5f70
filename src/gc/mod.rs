//! Garbage collection alongside backups (format-spec §12): `prune` deletes what no
//! snapshot reaches, in every region, while backups keep running.
//!
//! One prune run:
//! 1. checks that every region answers (a region that missed a deletion would get the
//!    objects back from the others at the next sync), and takes the prune lock;
//! 2. **sweeps** the plans of earlier runs whose waited-for operations have all ended
//!    (`sweep.rs`);
//! 3. if no plan is left waiting, **marks** and **plans** afresh (`plan.rs`): unused packs
//!    to delete, mostly unused packs to repack, index files to rewrite; stores the plan and
//!    the set of operations running just after, and sweeps it at once if that set is empty;
//! 4. deletes the archived WAL that no kept base backup needs (`wal.rs`).
//!
//! Nothing is deleted that a plan did not name, and nothing a plan names is deleted while an
//! operation that might rely on it is running.

mod alone;
pub mod leftovers;
mod mark;
mod plan;
mod stale;
mod sweep;
mod wal;

pub use alone::{lock_alone, Alone};
pub use mark::{mark, Marks};
pub use stale::Sightings;
pub use wal::{preview_wal, WalPrune};

use crate::backend::ObjectName;
use crate::error::{Error, ErrorKind, Result};
use crate::format::gc::{Lock, OperationId};
use crate::progress::Progress;
use crate::repo::{Repository, LOCK_REFRESH};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Report what would be freed; write and delete nothing.
    pub dry_run: bool,
    /// A pack whose unreachable bytes are at least this percentage of its contents is
    /// repacked (its reachable blobs copied into new packs). 100 repacks only packs that are
    /// wholly unused, which are deleted anyway; 0 repacks every pack with any unused blob.
    pub repack_threshold: f64,
    /// A lock object this observer saw unchanged this long ago belongs to a dead process.
    pub stale_after: Duration,
    /// This machine's name, for the prune lock.
    pub host: String,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            repack_threshold: 20.0,
            stale_after: LOCK_REFRESH * 6,
            host: String::new(),
        }
    }
}

/// A plan that is not swept yet, and why.
#[derive(Debug, Clone, Serialize)]
pub struct PendingPlan {
    pub plan: String,
    pub packs: u64,
    /// The running operations it waits for, as "backup on HOST (pid N)".
    pub waiting_for: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub snapshots: u64,
    pub packs_before: u64,
    /// Blobs reachable from the snapshots, and blobs nothing reaches.
    pub blobs_used: u64,
    pub blobs_unused: u64,
    /// Packs holding nothing reachable: deleted (or, dry run, would be).
    pub packs_unused: u64,
    /// Packs that no index file lists (left by a failed or killed backup or prune): deleted
    /// like unused ones, unless a snapshot stored meanwhile needs them. Counted in
    /// `bytes_to_free`, not in `packs_unused`.
    pub packs_unindexed: u64,
    /// Packs mostly unused: their reachable blobs copied to new packs, then deleted.
    pub packs_repacked: u64,
    pub packs_written: u64,
    pub bytes_written: u64,
    /// Index files rewritten without the deleted packs.
    pub index_files_superseded: u64,
    /// What was deleted in this run (by sweeps), in every region.
    pub packs_deleted: u64,
    pub index_files_deleted: u64,
    pub bytes_freed: u64,
    /// With `dry_run`: the stored bytes a prune would free.
    pub bytes_to_free: u64,
    /// Planned packs a snapshot written meanwhile needed: kept and indexed again.
    pub packs_rescued: u64,
    pub plans_completed: u64,
    pub plans_pending: Vec<PendingPlan>,
    pub stale_locks_removed: Vec<String>,
    /// Temporary files of failed or killed writes removed from `tmp/` (with `dry_run`: found
    /// there), and their bytes.
    pub scratch_files: u64,
    pub scratch_bytes: u64,
    /// The WAL archive: what no kept base backup needs is deleted (format-spec §12.8).
    pub wal: WalPrune,
}

fn describe(lock: &Lock) -> String {
    format!("{} on {} (pid {})", lock.kind.name(), lock.host, lock.pid)
}

/// Stop at the next safe point if `cancel` is set (Ctrl-C): every point is safe (§12.4),
/// this only lets the prune release its lock and say so.
pub(crate) fn check_cancel(cancel: &AtomicBool) -> Result<()> {
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::new(
            ErrorKind::Interrupted,
            "interrupted: what was deleted so far is consistent, and the next prune finishes the job",
        ));
    }
    Ok(())
}

pub fn prune(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<PruneReport> {
    repo.backend().reachable().map_err(|e| {
        Error::new(
            e.kind(),
            format!(
                "{e}. prune changes nothing unless every region answers: a region that missed a deletion would get the objects back at the next sync. Run `coffer sync` once it is back, then prune"
            ),
        )
    })?;
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    if opts.dry_run {
        for (name, plan) in repo.plans()? {
            report.plans_pending.push(PendingPlan {
                plan: name.path(),
                packs: plan.packs.len() as u64,
                waiting_for: vec![],
            });
        }
        plan::make(repo, opts, &mut report, progress, cancel)?;
        leftovers::count(repo, &mut report.scratch_files, &mut report.scratch_bytes)?;
        wal::prune_wal(repo, None, true, &HashSet::new(), &mut report.wal)?;
        return Ok(report);
    }
    let mut alone = lock_alone(
        repo,
        &opts.host,
        opts.stale_after,
        &mut report.stale_locks_removed,
        false,
    )?;
    let own = alone.lock.operation();
    let result = (|| {
        // L1 before the sweep and the plan, L2 after them.
        let (files, bytes) = leftovers::removed_around(repo, own, || {
            plan_and_sweep(
                repo,
                opts,
                &alone.live,
                &mut alone.sightings,
                &mut report,
                own,
                progress,
                cancel,
            )?;
            check_cancel(cancel)?;
            wal::prune_wal(repo, Some(own), false, &HashSet::new(), &mut report.wal)
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

/// M2–M7 of §12.1: sweep the plans that are ready; if none is left waiting, mark and store
/// a new plan, and sweep it at once if no backup is running.
#[allow(clippy::too_many_arguments)]
fn plan_and_sweep(
    repo: &Repository,
    opts: &PruneOptions,
    live: &[(ObjectName, Lock)],
    sightings: &mut Sightings,
    report: &mut PruneReport,
    own: OperationId,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<()> {
    sweep::sweep_ready(repo, live, report, progress, cancel)?;
    if !report.plans_pending.is_empty() {
        return Ok(());
    }
    let Some(plan::Made { plan, marked }) = plan::make(repo, opts, report, progress, cancel)?
    else {
        return Ok(());
    };
    // §12 M4: the operations running now that the plan is stored.
    let list = || repo.locks();
    let live = alone::live_locks(
        repo,
        sightings,
        opts.stale_after,
        &mut report.stale_locks_removed,
        own,
        &list,
    )?;
    let waiting: Vec<_> = live
        .into_iter()
        .filter(|(_, l)| l.operation != own)
        .collect();
    let wait = sweep::store_wait(repo, &plan, &waiting)?;
    if waiting.is_empty() {
        sweep::sweep(repo, &plan, &wait, Some(&marked), report, progress, cancel)?;
    } else {
        report.plans_pending.push(PendingPlan {
            plan: plan.0.path(),
            packs: plan.1.packs.len() as u64,
            waiting_for: waiting.iter().map(|(_, l)| describe(l)).collect(),
        });
    }
    Ok(())
}
