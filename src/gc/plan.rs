//! The mark-and-plan half of a prune (format-spec §12, M2–M3): find what the snapshots
//! reach, copy the reachable blobs out of mostly unused packs, rewrite the index files that
//! name packs to delete, and store the deletion plan. Nothing is deleted here.

use super::mark::{mark, Marks};
use super::PruneOptions;
use super::PruneReport;
use crate::backend::{ObjectKind, ObjectName};
use crate::crypto::random_bytes;
use crate::error::{Error, Result};
use crate::format::gc::Plan;
use crate::format::index::{IndexFile, IndexPack};
use crate::id::{BlobId, IndexId, PackId, SnapshotId};
use crate::index::{fetch_runs, BlobLocation};
use crate::progress::Progress;
use crate::repo::{BlobSaver, IndexFilter, Repository};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;

/// Packs per rewritten index file: the index files backups write hold 16 packs; a larger
/// batch keeps the number of files down without making one file huge.
const PACKS_PER_INDEX: usize = 256;

/// A stored plan, and the snapshots its marking read: every blob those reach is outside
/// the plan by construction, so a sweep in the same run only has to read newer snapshots.
pub(super) struct Made {
    pub plan: (ObjectName, Plan),
    pub marked: HashSet<SnapshotId>,
}

/// Mark, classify every pack, and (unless a dry run) repack and store the plan. Returns
/// the stored plan, or `None` when there is nothing to delete (or on a dry run).
pub(super) fn make(
    repo: &Repository,
    opts: &PruneOptions,
    report: &mut PruneReport,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<Option<Made>> {
    // Snapshots first, then the index: every snapshot's blobs were indexed before it was
    // stored (§8), so an index read afterwards lists them all. Snapshots stored after this
    // listing are the sweep's concern (S2).
    let snapshots = repo.snapshots()?;
    // The packs, listed before the index is read: a pack indexed by then is classified by
    // what it holds; one still unindexed is a leftover (below).
    let listed = repo.backend().list(ObjectKind::Pack)?;
    repo.set_index_filter(IndexFilter::default());
    let index = repo.index()?;
    report.snapshots = snapshots.len() as u64;
    report.packs_before = index.packs().len() as u64;
    let mut marks = Marks::new(&index);
    mark(repo, &index, &snapshots, &mut marks, progress, cancel)?;
    if !marks.missing.is_empty() {
        return Err(Error::corrupt(format!(
            "snapshots need {} blob(s) that no index file lists (first: {}); prune deletes nothing in a damaged repository: run `coffer repair`, which indexes again what it can and lists the snapshots that need lost data",
            marks.missing.len(),
            marks.missing[0].short()
        )));
    }

    let mut used: HashMap<PackId, u64> = HashMap::new();
    for (pos, (_, loc)) in index.iter().enumerate() {
        if marks.is_set(pos) {
            report.blobs_used += 1;
            *used.entry(loc.pack).or_default() += loc.raw_length as u64;
        } else {
            report.blobs_unused += 1;
        }
    }
    let totals = index.pack_raw_bytes();
    let mut delete = Vec::new();
    let mut repack = HashSet::new();
    for (pack, size) in index.packs() {
        let used = used.get(pack).copied().unwrap_or(0);
        let total = totals.get(pack).copied().unwrap_or(0).max(used);
        if used == 0 {
            delete.push(*pack);
            report.bytes_to_free += size;
            continue;
        }
        let unused_percent = 100.0 * (total - used) as f64 / total as f64;
        if total > used && unused_percent >= opts.repack_threshold {
            repack.insert(*pack);
            // The pack goes; its reachable share comes back in new packs.
            report.bytes_to_free += (*size as f64 * unused_percent / 100.0) as u64;
        }
    }
    report.packs_unused = delete.len() as u64;
    report.packs_repacked = repack.len() as u64;
    // Packs that no index file lists: left by a backup or prune that failed or was killed
    // before its index file, or uploaded by a running backup whose index file is not stored
    // yet. The plan names them like unused packs: it waits for every backup running once it
    // is stored, and its sweep keeps (rescues) any that a snapshot stored meanwhile needs
    // (format-spec §12.1 M3). Packs an older plan names are that plan's.
    let pending: HashSet<PackId> = if opts.dry_run {
        repo.plans()?
            .into_iter()
            .flat_map(|(_, p)| p.packs)
            .collect()
    } else {
        HashSet::new()
    };
    for (name, size) in &listed {
        let id = PackId(name.hash);
        if !index.has_pack(&id) && !pending.contains(&id) {
            delete.push(id);
            report.packs_unindexed += 1;
            report.bytes_to_free += size;
        }
    }
    if opts.dry_run || (delete.is_empty() && repack.is_empty()) {
        return Ok(None);
    }

    let planned: HashSet<PackId> = delete.iter().chain(&repack).copied().collect();
    let mut to_copy: Vec<(BlobId, BlobLocation)> = index
        .iter()
        .enumerate()
        .filter(|(pos, (_, loc))| marks.is_set(*pos) && repack.contains(&loc.pack))
        .map(|(_, e)| e)
        .collect();
    drop(marks);
    drop(index);
    to_copy.sort_by_key(|(_, l)| (l.pack, l.frame_offset, l.offset));
    // The saver deduplicates against the packs that stay only: a blob with a copy there is
    // not copied again.
    repo.set_index_filter(IndexFilter {
        packs: planned.clone(),
        files: HashSet::new(),
    });
    copy_blobs(repo, &to_copy, report, progress, cancel)?;
    super::check_cancel(cancel)?;
    let (superseded, written) = rewrite_index(repo, &planned, &HashSet::new())?;
    report.bytes_written += written;
    report.index_files_superseded = superseded.len() as u64;

    let mut packs: Vec<PackId> = planned.into_iter().collect();
    packs.sort();
    let plan = Plan {
        operation: random_bytes(),
        packs,
        indexes: superseded,
    };
    let name = repo.write_object(ObjectKind::Plan, plan.encode(repo.keys(), None))?;
    Ok(Some(Made {
        plan: (name, plan),
        marked: snapshots.iter().map(|(id, _)| *id).collect(),
    }))
}

/// Copy reachable blobs into new packs, with their index files.
fn copy_blobs(
    repo: &Repository,
    blobs: &[(BlobId, BlobLocation)],
    report: &mut PruneReport,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<()> {
    if blobs.is_empty() {
        return Ok(());
    }
    let saver = BlobSaver::new(repo)?;
    progress.start(
        "repacking",
        Some(blobs.iter().map(|(_, l)| l.raw_length as u64).sum()),
    );
    let mut failed: Option<Error> = None;
    for run in fetch_runs(blobs, |(_, l)| l) {
        if let Err(e) = super::check_cancel(cancel) {
            failed = Some(e);
            break;
        }
        repo.open_run(
            run,
            |(id, l)| (l.blob_type, id, l),
            |(_, l), r| {
                if failed.is_some() {
                    return;
                }
                match r
                    .map_err(Error::clone)
                    .and_then(|b| saver.save(l.blob_type, b))
                {
                    Ok(_) => progress.advance(l.raw_length as u64),
                    Err(e) => failed = Some(e),
                }
            },
        );
        if failed.is_some() {
            break;
        }
    }
    // Whatever was copied is durable and indexed before anything refers to it.
    let flushed = saver.flush();
    progress.finish();
    if let Some(e) = failed {
        return Err(e.context("repacking (nothing was deleted)"));
    }
    flushed?;
    let st = saver.stats();
    report.packs_written += st.packs_added;
    report.bytes_written += st.bytes_added_stored;
    Ok(())
}

/// Write new index files holding every other pack of the index files that name a pack in
/// `doomed` (leaving out those in `skip`); returns those files, to be deleted, and the
/// bytes written. Used when planning (M4) and again when sweeping (S3).
pub(super) fn rewrite_index(
    repo: &Repository,
    doomed: &HashSet<PackId>,
    skip: &HashSet<IndexId>,
) -> Result<(Vec<IndexId>, u64)> {
    let mut superseded = Vec::new();
    let mut carry: Vec<IndexPack> = Vec::new();
    let mut carried = HashSet::new();
    repo.visit_index_files(|id, file| {
        if !skip.contains(&id) && file.packs.iter().any(|p| doomed.contains(&p.id)) {
            superseded.push(id);
            for p in file.packs {
                if !doomed.contains(&p.id) && carried.insert(p.id) {
                    carry.push(p);
                }
            }
        }
        Ok(())
    })?;
    let written = write_index_files(repo, carry)?;
    superseded.sort();
    Ok((superseded, written))
}

/// Store `packs` in index files of at most `PACKS_PER_INDEX` packs; returns bytes written.
pub(super) fn write_index_files(repo: &Repository, packs: Vec<IndexPack>) -> Result<u64> {
    let mut written = 0;
    for chunk in packs.chunks(PACKS_PER_INDEX) {
        written += repo
            .write_index(&IndexFile {
                supersedes: vec![],
                packs: chunk.to_vec(),
            })?
            .1;
    }
    Ok(written)
}
