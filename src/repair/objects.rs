//! Damaged locks, plans and wait records: objects whose bytes do not match their name, or
//! that do not open with the repository's key. Why removing each is safe (format-spec
//! §12.7):
//! - a lock only tells a prune what to wait for. A damaged one cannot say which operation
//!   it stood for, so a prune stops at it. Removing it is what §12.3 allows an operator to
//!   do by hand: if its operation is in fact alive, it finds its lock gone at its next
//!   refresh or before it stores its snapshot (B4), and stores none;
//! - a wait record only says which operations a plan outlives. Without one, the next sweep
//!   gives the plan a new one with the operations live then, a superset of those of the
//!   old one that still run (as after a prune that died between M5 and M6);
//! - a plan only allows deletions. Removing it withdraws what was not yet done: its packs
//!   and index files stay, backups may use the indexed ones again, and a later prune
//!   decides afresh. What a sweep already deleted, it deleted after its own S2 found no
//!   snapshot that needs it, and every backup since treated the plan's packs as absent.
//!   Packs whose index files that sweep deleted stay unindexed: step 3 indexes them again
//!   and the next prune deletes those that nothing uses. Its wait record goes with it.

use super::RepairReport;
use crate::backend::ObjectName;
use crate::error::Result;
use crate::repo::{reason, Repository};

pub(super) fn remove_damaged(
    repo: &Repository,
    dry_run: bool,
    report: &mut RepairReport,
) -> Result<()> {
    let remove = |name: &ObjectName| {
        if dry_run {
            Ok(())
        } else {
            repo.backend().delete(name)
        }
    };
    for (name, e) in repo.lock_objects()?.unusable() {
        remove(name)?;
        report
            .locks_removed
            .push(format!("{name}: {}", reason(name, e)));
    }
    let waits = repo.wait_objects()?;
    for (name, e) in waits.unusable() {
        remove(name)?;
        report
            .waits_removed
            .push(format!("{name}: {}", reason(name, e)));
    }
    // The plan first, then its wait record, as a sweep deletes them (§12.1 S3).
    for (name, e) in repo.plan_objects()?.unusable() {
        remove(name)?;
        report
            .plans_removed
            .push(format!("{name}: {}", reason(name, e)));
        for (wait, w) in &waits.objects {
            if w.plan == name.hash {
                remove(wait)?;
                report
                    .waits_removed
                    .push(format!("{wait}: the wait record of that plan"));
            }
        }
    }
    Ok(())
}
