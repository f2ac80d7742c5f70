//! The prune lock, held alone (format-spec §12.1 M1): one prune, or one repair, at a time.
//! Taking it lists the locks of running operations and deletes the stale ones (§12.3).

use super::{describe, Sightings};
use crate::backend::ObjectName;
use crate::error::{Error, ErrorKind, Result};
use crate::format::gc::{Lock, LockKind, OperationId};
use crate::repo::{LockGuard, Repository, LOCK_REFRESH};
use std::collections::HashSet;
use std::time::Duration;

/// A prune lock (kind 2) held by the only prune or repair that runs, with the locks of the
/// operations that were live when it was taken (its own included).
pub struct Alone {
    pub lock: LockGuard,
    pub sightings: Sightings,
    pub live: Vec<(ObjectName, Lock)>,
}

impl Alone {
    /// Keep the lock sightings for the next run, and delete the lock.
    pub fn release(self) -> Result<()> {
        let saved = self.sightings.save();
        let released = self.lock.release();
        saved?;
        released
    }
}

/// §12.1 M1: store a prune lock, then list the locks; if another live prune lock exists,
/// delete this one and stop. `coffer repair` takes the same lock, so a prune and a repair
/// never run at once either. Stale locks are deleted on the way, and described in
/// `stale_removed`. With `tolerate_damaged`, damaged lock objects are left out of the
/// listing (repair removes them) instead of stopping everything.
pub fn lock_alone(
    repo: &Repository,
    host: &str,
    stale_after: Duration,
    stale_removed: &mut Vec<String>,
    tolerate_damaged: bool,
) -> Result<Alone> {
    let lock = repo.lock(LockKind::Prune, host, LOCK_REFRESH)?;
    let mut sightings = Sightings::load(repo.state_dir());
    let list = || -> Result<Vec<(ObjectName, Lock)>> {
        if tolerate_damaged {
            Ok(repo.lock_objects()?.objects)
        } else {
            repo.locks()
        }
    };
    let live = live_locks(
        repo,
        &mut sightings,
        stale_after,
        stale_removed,
        lock.operation(),
        &list,
    );
    let refused = match live {
        Ok(live) => match live
            .iter()
            .find(|(_, l)| l.kind == LockKind::Prune && l.operation != lock.operation())
        {
            None => {
                return Ok(Alone {
                    lock,
                    sightings,
                    live,
                })
            }
            Some((_, other)) => Error::new(
                ErrorKind::Locked,
                format!(
                    "another prune is running ({}; a repair holds the same lock); try again when it has finished",
                    describe(other)
                ),
            ),
        },
        Err(e) => e,
    };
    let _ = sightings.save();
    let _ = lock.release();
    Err(refused)
}

/// The locks of running operations. Stale ones are deleted (so their owner, if it is in
/// fact alive, finds its lock gone and commits nothing) and reported. This prune's own lock
/// is never judged. An operation whose stale lock object was replaced by a refresh just
/// before the deletion is alive after all: it stays among the running ones (§12.3).
pub(super) fn live_locks(
    repo: &Repository,
    sightings: &mut Sightings,
    stale_after: Duration,
    stale_removed: &mut Vec<String>,
    own: OperationId,
    list: &dyn Fn() -> Result<Vec<(ObjectName, Lock)>>,
) -> Result<Vec<(ObjectName, Lock)>> {
    let (mine, others): (Vec<_>, Vec<_>) =
        list()?.into_iter().partition(|(_, l)| l.operation == own);
    let (mut live, stale) = sightings.judge(others, stale_after);
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
    for (name, lock) in list()? {
        let was_stale = stale.iter().any(|(_, l)| l.operation == lock.operation);
        if was_stale && !deleted.contains(&name) && !known.contains(&name) {
            revived.insert(lock.operation);
            live.push((name, lock));
        }
    }
    for (_, lock) in stale {
        if !revived.contains(&lock.operation) {
            stale_removed.push(describe(&lock));
        }
    }
    Ok(live)
}
