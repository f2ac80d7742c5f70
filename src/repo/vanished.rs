//! Snapshots and index files that the local cache knew and that have gone from the backend.
//!
//! Some deletions are expected: `forget` leaves a tombstone naming each snapshot it deletes
//! (§5.12), and a prune deletes index files only after their entries are carried by other
//! index files, and packs only when a plan named them (§12). Anything else, a file deleted
//! by hand, by an older coffer or by someone with access to the storage, is otherwise
//! invisible (format-spec §13: no signed list of snapshots exists), so it is worth a warning.
//! Each vanished object is reported once: the cache forgets it afterwards.

use super::Repository;
use crate::backend::{ObjectKind, ObjectName};
use crate::error::Result;
use crate::format::snapshot::Snapshot;
use crate::id::{IndexId, PackId, SnapshotId};
use crate::index::cache::Cache;
use std::collections::{BTreeMap, HashMap, HashSet};

impl Repository {
    /// Drop vanished snapshots from the cache, warning about each that no tombstone names.
    /// If the tombstones cannot be read, they stay cached, so the next listing asks again.
    pub(super) fn forget_vanished_snapshots(
        &self,
        vanished: &[(&SnapshotId, &Vec<u8>)],
    ) -> Result<()> {
        let Some(cache) = &self.cache else {
            return Ok(());
        };
        let buried = match self.buried() {
            Ok(b) => b,
            Err(e) => {
                (self.warn)(&format!(
                    "{} snapshot(s) have vanished from the repository, and the tombstones that \
                     would say whether `forget` deleted them cannot be read: {e}",
                    vanished.len()
                ));
                return Ok(());
            }
        };
        for (id, bytes) in vanished {
            if !buried.contains(&ObjectName::new(ObjectKind::Snapshot, id.0)) {
                (self.warn)(&format!(
                    "snapshot {}{} has vanished from the repository, and no tombstone says \
                     that `forget` deleted it: it was deleted by hand, by an older coffer, or \
                     by someone with access to the storage (look for it in another region or \
                     backup, and run `coffer check`)",
                    id.short(),
                    self.describe_snapshot(bytes)
                ));
            }
            cache.lock().expect("cache lock").remove_snapshot(id)?;
        }
        Ok(())
    }

    /// " (TIME, HOST:PATHS)" for a cached snapshot object, or nothing if it does not open.
    fn describe_snapshot(&self, bytes: &[u8]) -> String {
        let Ok(s) = Snapshot::decode(&self.keys, bytes) else {
            return String::new();
        };
        let time = jiff::Timestamp::from_nanosecond(s.time_ns as i128)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|_| format!("{}ns", s.time_ns));
        let paths: Vec<String> = s
            .paths
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        format!(" ({time}, {}:{})", s.host, paths.join(","))
    }

    /// For index files that vanished from the backend while the cache knew them: the packs
    /// they listed that no other cached index file lists, by index file. Call it after new
    /// index files are in the cache and before the vanished ones leave it.
    pub(super) fn packs_only_in(
        cache: &Cache,
        gone: &HashSet<IndexId>,
    ) -> Result<BTreeMap<IndexId, Vec<PackId>>> {
        let mut only: HashMap<PackId, IndexId> = HashMap::new();
        let mut elsewhere: HashSet<PackId> = HashSet::new();
        cache.for_each_file(|id, file| {
            for p in &file.packs {
                if gone.contains(&id) {
                    only.insert(p.id, id);
                } else {
                    elsewhere.insert(p.id);
                }
            }
            Ok(())
        })?;
        let mut out: BTreeMap<IndexId, Vec<PackId>> = BTreeMap::new();
        for (pack, file) in only {
            if !elsewhere.contains(&pack) {
                out.entry(file).or_default().push(pack);
            }
        }
        Ok(out)
    }

    /// Warn about vanished index files whose packs are still stored, unindexed, with no
    /// deletion plan naming them: a prune never leaves that state (it deletes an index file
    /// only once its other entries are carried elsewhere, and its packs are then planned or
    /// already gone), so someone else deleted the index file.
    pub(super) fn warn_unexplained_index_loss(&self, unindexed: BTreeMap<IndexId, Vec<PackId>>) {
        if unindexed.is_empty() {
            return;
        }
        let explained = self.plans().and_then(|plans| {
            let planned: HashSet<PackId> = plans.into_iter().flat_map(|(_, p)| p.packs).collect();
            let stored: HashSet<PackId> = self
                .backend
                .list(ObjectKind::Pack)?
                .into_iter()
                .map(|(n, _)| PackId(n.hash))
                .collect();
            Ok((planned, stored))
        });
        let (planned, stored) = match explained {
            Ok(x) => x,
            Err(e) => {
                (self.warn)(&format!(
                    "{} index file(s) have vanished and their packs are no longer indexed; \
                     whether a prune deleted them cannot be told: {e}",
                    unindexed.len()
                ));
                return;
            }
        };
        for (file, packs) in unindexed {
            let left = packs
                .iter()
                .filter(|p| stored.contains(p) && !planned.contains(p))
                .count();
            if left > 0 {
                (self.warn)(&format!(
                    "index file {} has vanished from the repository, and no prune explains it: \
                     {left} pack(s) it listed are still stored but no longer indexed (it was \
                     deleted by hand or by someone with access to the storage). `coffer repair` \
                     indexes them again; run `coffer check`",
                    file.short()
                ));
            }
        }
    }
}
