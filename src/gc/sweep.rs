//! The sweep half of a prune (format-spec §12, S1–S3): once every operation a plan waits
//! for has ended, read all snapshots again, keep (and index again) any planned pack that a
//! snapshot written meanwhile needs, then delete: superseded index files, then packs, then
//! the wait record, then the plan. A crash anywhere leaves a state the next sweep finishes.

use super::mark::{mark, Marks};
use super::plan::{rewrite_index, write_index_files};
use super::{PendingPlan, PruneReport};
use crate::backend::{ObjectKind, ObjectName};
use crate::error::{Error, Result};
use crate::format::gc::{Lock, LockKind, OperationId, Plan, Wait};
use crate::format::index::IndexPack;
use crate::id::{IndexId, PackId, SnapshotId};
use crate::progress::Progress;
use crate::repo::{IndexFilter, Repository};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;

/// §12 M4: store which of the running operations (backups) the plan must outlive.
pub(super) fn store_wait(
    repo: &Repository,
    plan: &(ObjectName, Plan),
    running: &[(ObjectName, Lock)],
) -> Result<(ObjectName, Wait)> {
    let wait = Wait {
        plan: plan.0.hash,
        operations: running
            .iter()
            .filter(|(_, l)| l.kind == LockKind::Backup)
            .map(|(_, l)| l.operation)
            .collect(),
    };
    let name = repo.write_object(ObjectKind::Wait, wait.encode(repo.keys(), None))?;
    Ok((name, wait))
}

/// Sweep every stored plan whose operations have ended; report the others as pending.
pub(super) fn sweep_ready(
    repo: &Repository,
    live: &[(ObjectName, Lock)],
    report: &mut PruneReport,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<()> {
    let plans = repo.plans()?;
    let mut waits: HashMap<[u8; 32], (ObjectName, Wait)> = HashMap::new();
    for (name, wait) in repo.waits()? {
        if plans.iter().any(|(p, _)| p.hash == wait.plan) {
            waits.insert(wait.plan, (name, wait));
        } else {
            // Its plan was completed by a sweep that died before deleting the wait... or
            // after: a wait outlives its plan only if that sweep crashed in between.
            repo.backend().delete(&name)?;
        }
    }
    let running: HashMap<OperationId, &Lock> = live.iter().map(|(_, l)| (l.operation, l)).collect();
    for plan in plans {
        // A plan stored by a prune that died before step M4: the operations running now
        // are a superset of what it would have recorded for anything still running.
        let wait = match waits.remove(&plan.0.hash) {
            Some(w) => w,
            None => store_wait(repo, &plan, live)?,
        };
        let blocking: Vec<&Lock> = wait
            .1
            .operations
            .iter()
            .filter_map(|o| running.get(o).copied())
            .collect();
        if blocking.is_empty() {
            sweep(repo, &plan, &wait, None, report, progress, cancel)?;
        } else {
            report.plans_pending.push(PendingPlan {
                plan: plan.0.path(),
                packs: plan.1.packs.len() as u64,
                waiting_for: blocking.into_iter().map(super::describe).collect(),
            });
        }
    }
    Ok(())
}

/// Carry out one plan whose waited-for operations have all ended. `marked`: snapshots the
/// plan's own marking read (same run), which need no second look.
#[allow(clippy::too_many_arguments)]
pub(super) fn sweep(
    repo: &Repository,
    plan: &(ObjectName, Plan),
    wait: &(ObjectName, Wait),
    marked: Option<&HashSet<SnapshotId>>,
    report: &mut PruneReport,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<()> {
    let (plan_name, plan) = plan;
    let planned: HashSet<PackId> = plan.packs.iter().copied().collect();
    let rescued = rescue(repo, plan, &planned, marked, progress, cancel)?;
    super::check_cancel(cancel)?;
    report.packs_rescued += rescued.len() as u64;

    let sizes: HashMap<PackId, u64> = repo
        .backend()
        .list(ObjectKind::Pack)?
        .into_iter()
        .map(|(n, s)| (PackId(n.hash), s))
        .collect();
    let doomed: Vec<PackId> = plan
        .packs
        .iter()
        .filter(|p| !rescued.contains(*p))
        .copied()
        .collect();
    let mut indexes = plan.indexes.clone();
    // An index file the plan does not name may list a pack about to go: a backup in S
    // adopted it after the plan was made (§12.1 S3). Rewrite those too.
    let named: HashSet<IndexId> = plan.indexes.iter().copied().collect();
    let doomed_set: HashSet<PackId> = doomed.iter().copied().collect();
    indexes.extend(rewrite_index(repo, &doomed_set, &named)?.0);
    for id in &indexes {
        repo.delete_index(id)?;
        report.index_files_deleted += 1;
    }
    progress.start_items("deleting packs", Some(doomed.len() as u64));
    let failures: Vec<Error> = doomed
        .par_iter()
        .filter_map(|p| {
            let r = repo
                .backend()
                .delete(&ObjectName::new(ObjectKind::Pack, p.0));
            progress.advance(1);
            r.err()
        })
        .collect();
    progress.finish();
    if let Some(e) = failures.into_iter().next() {
        return Err(e.context("deleting packs (the plan stays; the next prune finishes it)"));
    }
    report.packs_deleted += doomed.len() as u64;
    report.bytes_freed += doomed.iter().filter_map(|p| sizes.get(p)).sum::<u64>();
    repo.backend().delete(&wait.0)?;
    repo.backend().delete(plan_name)?;
    report.plans_completed += 1;
    repo.set_index_filter(IndexFilter::default());
    Ok(())
}

/// §12 S2: read every snapshot again against the index as it will be after the plan. A
/// reachable blob found only in planned packs or superseded index files means a snapshot
/// written meanwhile (by an operation the plan waited for) needs it: its pack is kept and
/// listed in a new index file. Returns the packs kept that way.
fn rescue(
    repo: &Repository,
    plan: &Plan,
    planned: &HashSet<PackId>,
    marked: Option<&HashSet<SnapshotId>>,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<HashSet<PackId>> {
    let superseded: HashSet<IndexId> = plan.indexes.iter().copied().collect();
    repo.set_index_filter(IndexFilter {
        packs: planned.clone(),
        files: superseded,
    });
    let surviving = repo.index()?;
    let mut snapshots = repo.snapshots()?;
    if let Some(marked) = marked {
        snapshots.retain(|(id, _)| !marked.contains(id));
    }
    let mut marks = Marks::new(&surviving);
    let walked = mark(repo, &surviving, &snapshots, &mut marks, progress, cancel);
    super::check_cancel(cancel)?;
    if walked.is_ok() && marks.missing.is_empty() {
        return Ok(HashSet::new());
    }
    // Something reachable lies only where the plan deletes: walk with the whole index to
    // find every such blob. Now any failure is fatal.
    repo.set_index_filter(IndexFilter::default());
    let full = repo.index()?;
    let mut all = Marks::new(&full);
    mark(repo, &full, &snapshots, &mut all, progress, cancel)?;
    if !all.missing.is_empty() {
        return Err(Error::corrupt(format!(
            "snapshots need {} blob(s) that no index file lists (first: {}); nothing was deleted: run `coffer repair`, which indexes again what it can and lists the snapshots that need lost data",
            all.missing.len(),
            all.missing[0].short()
        )));
    }
    let mut rescued = HashSet::new();
    for (pos, (id, loc)) in full.iter().enumerate() {
        if all.is_set(pos) && !surviving.contains(&id) {
            rescued.insert(loc.pack);
        }
    }
    let mut packs: Vec<IndexPack> = Vec::new();
    let mut seen = HashSet::new();
    repo.visit_index_files(|_, file| {
        for p in file.packs {
            if rescued.contains(&p.id) && seen.insert(p.id) {
                packs.push(p);
            }
        }
        Ok(())
    })?;
    write_index_files(repo, packs)?;
    Ok(rescued)
}
