//! Temporary files that failed or killed writes left in `tmp/` (format-spec §3): on a full
//! disk they hold the very space the next backup needs. No clock says how old one is, and a
//! running write's file looks the same as a dead one's, so a file is removed only if it was
//! listed twice, with the same size, at two moments when no operation but this one held a
//! lock: at the start of this run and at its end (format-spec §12.1, L1–L2).

use crate::error::Result;
use crate::format::gc::OperationId;
use crate::repo::Repository;
use std::collections::HashSet;

/// The first listing of `tmp/`, taken while no other operation held a lock (L1).
struct FirstSighting(HashSet<(String, u64)>);

/// Is this operation's lock the only lock object there is? A damaged or undecodable lock
/// object counts as another operation's: it may be a running backup's.
pub fn alone_now(repo: &Repository, own: OperationId) -> Result<bool> {
    let locks = repo.lock_objects()?;
    Ok(locks.unusable().next().is_none() && locks.objects.iter().all(|(_, l)| l.operation == own))
}

/// L1: list the temporary files if no lock but this operation's own exists.
fn first_sighting(repo: &Repository, own: OperationId) -> Result<Option<FirstSighting>> {
    if !alone_now(repo, own)? {
        return Ok(None);
    }
    Ok(Some(FirstSighting(
        repo.backend().scratch()?.into_iter().collect(),
    )))
}

/// L2: if no other lock exists now either, remove every temporary file listed at L1 that is
/// still there with the same size. Returns how many files and bytes were removed.
fn remove_unchanged(
    repo: &Repository,
    first: &FirstSighting,
    own: OperationId,
) -> Result<(u64, u64)> {
    if !alone_now(repo, own)? {
        return Ok((0, 0));
    }
    let (mut files, mut bytes) = (0, 0);
    for (path, size) in repo.backend().scratch()? {
        if first.0.contains(&(path.clone(), size)) {
            repo.backend().delete_scratch(&path)?;
            files += 1;
            bytes += size;
        }
    }
    Ok((files, bytes))
}

/// Run `work` between L1 and L2, and then remove the temporary files that were there
/// before it and are unchanged after it (a write running at the first listing has finished,
/// or shows another size, by the second). Returns how many files and bytes were removed.
pub fn removed_around(
    repo: &Repository,
    own: OperationId,
    work: impl FnOnce() -> Result<()>,
) -> Result<(u64, u64)> {
    let first = first_sighting(repo, own)?;
    work()?;
    match first {
        Some(first) => remove_unchanged(repo, &first, own),
        None => Ok((0, 0)),
    }
}

/// For a dry run: how many files (and bytes) are in `tmp/` now.
pub fn count(repo: &Repository, files: &mut u64, bytes: &mut u64) -> Result<()> {
    for (_, size) in repo.backend().scratch()? {
        *files += 1;
        *bytes += size;
    }
    Ok(())
}
