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
//!    the set of operations running just after, and sweeps it at once if that set is empty.
//!
//! Nothing is deleted that a plan did not name, and nothing a plan names is deleted while an
//! operation that might rely on it is running.

mod mark;
mod plan;
mod stale;
mod sweep;

pub use mark::{mark, Marks};
pub use stale::Sightings;

use crate::backend::ObjectName;
use crate::error::{Error, ErrorKind, Result};
use crate::format::gc::{Lock, LockKind, OperationId};
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
        return Ok(report);
    }
    let lock = repo.lock(LockKind::Prune, &opts.host, LOCK_REFRESH)?;
    let mut sightings = Sightings::load(repo.state_dir());
    let result = (|| {
        let live = live_locks(repo, &mut sightings, opts, &mut report, lock.operation())?;
        if let Some((_, other)) = live
            .iter()
            .find(|(_, l)| l.kind == LockKind::Prune && l.operation != lock.operation())
        {
            return Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "another prune is running ({}); try again when it has finished",
                    describe(other)
                ),
            ));
        }
        sweep::sweep_ready(repo, &live, &mut report, progress, cancel)?;
        if !report.plans_pending.is_empty() {
            return Ok(());
        }
        let Some(plan::Made { plan, marked }) =
            plan::make(repo, opts, &mut report, progress, cancel)?
        else {
            return Ok(());
        };
        // §12 M4: the operations running now that the plan is stored.
        let live = live_locks(repo, &mut sightings, opts, &mut report, lock.operation())?;
        let waiting: Vec<_> = live
            .into_iter()
            .filter(|(_, l)| l.operation != lock.operation())
            .collect();
        let wait = sweep::store_wait(repo, &plan, &waiting)?;
        if waiting.is_empty() {
            sweep::sweep(
                repo,
                &plan,
                &wait,
                Some(&marked),
                &mut report,
                progress,
                cancel,
            )?;
        } else {
            report.plans_pending.push(PendingPlan {
                plan: plan.0.path(),
                packs: plan.1.packs.len() as u64,
                waiting_for: waiting.iter().map(|(_, l)| describe(l)).collect(),
            });
        }
        Ok(())
    })();
    sightings.save()?;
    let released = lock.release();
    result?;
    released?;
    Ok(report)
}

/// The locks of running operations. Stale ones are deleted (so their owner, if it is in
/// fact alive, finds its lock gone and commits nothing) and reported. This prune's own lock
/// is never judged. An operation whose stale lock object was replaced by a refresh just
/// before the deletion is alive after all: it stays among the running ones (§12.3).
fn live_locks(
    repo: &Repository,
    sightings: &mut Sightings,
    opts: &PruneOptions,
    report: &mut PruneReport,
    own: OperationId,
) -> Result<Vec<(ObjectName, Lock)>> {
    let (mine, others): (Vec<_>, Vec<_>) = repo
        .locks()?
        .into_iter()
        .partition(|(_, l)| l.operation == own);
    let (mut live, stale) = sightings.judge(others, opts.stale_after);
    live.extend(mine);
    if stale.is_empty() {
        return Ok(live);
    }
    for (name, _) in &stale {
        repo.backend().delete(name)?;
    }
    let deleted: HashSet<ObjectName> = stale.iter().map(|(n, _)| *n).collect();
    let known: HashSet<ObjectName> = live.iter().map(|(n, _)| *n).collect();
    let mut revived = HashSet::new();
    for (name, lock) in repo.locks()? {
        let was_stale = stale.iter().any(|(_, l)| l.operation == lock.operation);
        if was_stale && !deleted.contains(&name) && !known.contains(&name) {
            revived.insert(lock.operation);
            live.push((name, lock));
        }
    }
    for (_, lock) in stale {
        if !revived.contains(&lock.operation) {
            report.stale_locks_removed.push(describe(&lock));
        }
    }
    Ok(live)
}
