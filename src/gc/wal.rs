//! WAL files in a prune (format-spec §12.8): delete, in every region, the archived WAL that
//! no kept base backup needs (`wal::retention`), recording each in a tombstone first, so a
//! region that missed the deletion never brings it back through `sync`.
//!
//! A base backup that runs meanwhile relies on the WAL from its start on, and no listing
//! shows its start before its snapshot is stored. So the deletions are decided from one
//! listing of the snapshots and the archive, and carried out only if, after that, no backup
//! lock is live and no base backup snapshot appeared: a base backup that started later
//! starts after every segment that was complete at the listing. No clock is read.

use crate::error::Result;
use crate::format::gc::{LockKind, OperationId};
use crate::id::SnapshotId;
use crate::repo::Repository;
use crate::wal::retention::{self, BaseBackup};
use crate::wal::{Catalog, WalEntry};
use serde::Serialize;
use std::collections::{BTreeSet, HashSet};

/// What a prune did (or, in a dry run, would do) with the WAL archive.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WalPrune {
    /// Archived files whose header opened, and their stored bytes.
    pub files: u64,
    pub bytes: u64,
    /// Files kept: a kept base backup needs them, or nothing may be deleted (`held`).
    pub kept: u64,
    pub kept_bytes: u64,
    /// Files deleted in every region (dry run: that would be).
    pub deleted: u64,
    pub deleted_bytes: u64,
    /// The names of those files, in archive order.
    pub deleted_names: Vec<String>,
    /// Why nothing was deleted this time although some files are not needed, or why the
    /// archive is kept whole.
    pub held: Option<String>,
    /// WAL objects whose header does not open: never deleted (`check` reports them).
    pub unreadable: u64,
    /// Deletions that failed in some region (their tombstone is stored: `sync` finishes).
    pub failed: Vec<String>,
}

/// What a prune would do with the WAL archive once the snapshots `forgotten` are gone
/// (`forget --prune --dry-run`). Changes nothing.
pub fn preview_wal(repo: &Repository, forgotten: &HashSet<SnapshotId>) -> Result<WalPrune> {
    let mut out = WalPrune::default();
    prune_wal(repo, None, true, forgotten, &mut out)?;
    Ok(out)
}

/// Decide and (unless `dry_run`) delete, as if the snapshots `forgotten` were gone (a dry
/// run only). `own` is this prune's operation.
pub(super) fn prune_wal(
    repo: &Repository,
    own: Option<OperationId>,
    dry_run: bool,
    forgotten: &HashSet<SnapshotId>,
    out: &mut WalPrune,
) -> Result<()> {
    // Snapshots, then the archive: a base backup stored in between is caught below.
    let (mut snapshots, damaged) = repo.readable_snapshots()?;
    snapshots.retain(|(id, _)| !forgotten.contains(id));
    let catalog = Catalog::load(repo)?;
    out.unreadable = catalog.unreadable.len() as u64;
    if catalog.entries.is_empty() {
        return Ok(());
    }
    let (bases, unknown) = retention::base_backups(&snapshots);
    let selection = retention::select(&catalog, &bases, unknown.len(), damaged.len());
    (out.files, out.bytes) = tally(&catalog.entries.iter().collect::<Vec<_>>());
    (out.kept, out.kept_bytes) = tally(&selection.keep);
    out.held = selection.hold.clone();
    let doomed = selection.delete;
    if doomed.is_empty() {
        return Ok(());
    }
    let mut keep_all = |why: String| {
        (out.kept, out.kept_bytes) = (out.files, out.bytes);
        out.held = Some(why);
    };
    if !dry_run {
        // A backup running now may be a base backup whose start no listing shows yet.
        let running: Vec<String> = repo
            .locks()?
            .into_iter()
            .filter(|(_, l)| l.kind == LockKind::Backup && Some(l.operation) != own)
            .map(|(_, l)| format!("backup on {} (pid {})", l.host, l.pid))
            .collect();
        if !running.is_empty() {
            keep_all(format!(
                "{} WAL file(s) that no kept base backup needs wait for {}: it may be a base \
                 backup that needs them; the next prune deletes them",
                doomed.len(),
                running.join(", ")
            ));
            return Ok(());
        }
        // A base backup that ended (or was forgotten) since the listing: decide again later.
        let (again, _) = repo.readable_snapshots()?;
        if base_ids(&retention::base_backups(&again).0) != base_ids(&bases) {
            keep_all(format!(
                "a base backup was stored or forgotten during this prune: the {} WAL file(s) \
                 it found unneeded wait for the next prune",
                doomed.len()
            ));
            return Ok(());
        }
    }
    out.deleted_names = doomed.iter().map(|e| e.header.name.clone()).collect();
    if dry_run {
        (out.deleted, out.deleted_bytes) = tally(&doomed);
        return Ok(());
    }
    let names: Vec<_> = doomed.iter().map(|e| e.object).collect();
    for ((_, result), e) in repo.bury(&names)?.into_iter().zip(&doomed) {
        match result {
            Ok(()) => {
                out.deleted += 1;
                out.deleted_bytes += e.stored;
            }
            Err(err) => out
                .failed
                .push(format!("{} ({}): {err}", e.header.name, e.object)),
        }
    }
    Ok(())
}

/// How many files, and their stored bytes.
fn tally(files: &[&WalEntry]) -> (u64, u64) {
    (files.len() as u64, files.iter().map(|e| e.stored).sum())
}

fn base_ids(bases: &[BaseBackup]) -> BTreeSet<[u8; 32]> {
    bases.iter().map(|b| b.id.0).collect()
}
