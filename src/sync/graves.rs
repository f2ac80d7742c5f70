//! Tombstones in `sync` (format-spec §5.12, §11): deletions that a region missed are carried
//! out there, instead of being undone by copying the object back everywhere.
//!
//! - Tombstones are synced first, like any object, except that one that is not valid is
//!   reported and not copied: without the key "valid" means well-formed; with the key, it
//!   means authenticated.
//! - No object that a valid tombstone names is copied. Without the key that is the whole
//!   effect: it is safe to trust an unauthenticated tombstone this far, since not copying
//!   an object loses nothing that the region holding it does not still hold.
//! - With the key, such objects are also deleted where they remain, in each region that
//!   holds an authenticated tombstone naming them (so the deletion is recorded there
//!   first), and never a region's last key file that no tombstone names.

use super::{sync_kind, KindSync, SyncOptions, SyncReport};
use crate::backend::{Backend, ObjectKind, ObjectName};
use crate::crypto::Keys;
use crate::format::tombstone::Tombstone;
use crate::progress::Progress;
use crate::repo::tombstones::{buried_kind, buried_name};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub(super) struct Graves {
    /// Objects never to copy: named by a valid tombstone.
    honored: HashSet<ObjectName>,
    /// With the key, each named object and the authenticated tombstones that name it.
    proven: HashMap<ObjectName, Vec<ObjectName>>,
    /// The tombstones each region holds after this run's copies.
    held: Vec<HashSet<ObjectName>>,
    keyed: bool,
}

impl Graves {
    /// Sync the tombstones themselves and collect what they name.
    pub(super) fn gather(
        regions: &[(String, Arc<dyn Backend>)],
        opts: SyncOptions,
        keys: Option<&Keys>,
        report: &mut SyncReport,
        progress: &dyn Progress,
    ) -> Graves {
        let vet = |bytes: &[u8]| {
            match keys {
                Some(k) => Tombstone::decode(k, bytes).map(|_| ()),
                None => Tombstone::peek(bytes).map(|_| ()),
            }
            .map_err(|e| e.to_string())
        };
        let done: KindSync = sync_kind(
            ObjectKind::Tombstone,
            regions,
            opts,
            &HashSet::new(),
            Some(&vet),
            report,
            progress,
        );
        let mut graves = Graves {
            honored: HashSet::new(),
            proven: HashMap::new(),
            held: done.present,
            keyed: keys.is_some(),
        };
        let refused: HashSet<ObjectName> = done.refused.iter().map(|(n, _)| *n).collect();
        for (name, why) in done.refused {
            report.bad_tombstones.push(format!("{name}: {why}"));
        }
        for (name, bytes) in done.good {
            if refused.contains(&name) {
                continue;
            }
            // Vetted above: it parses (and, with the key, authenticates).
            let Ok((names, _)) = Tombstone::peek(&bytes) else {
                continue;
            };
            report.tombstones += 1;
            for (kind, hash) in names {
                let buried = buried_name(kind, hash);
                graves.honored.insert(buried);
                if graves.keyed {
                    graves.proven.entry(buried).or_default().push(name);
                }
            }
        }
        graves
    }

    /// Objects that must not be copied.
    pub(super) fn honored(&self) -> &HashSet<ObjectName> {
        &self.honored
    }

    /// After `kind` was synced: count, per region, the objects of that kind that tombstones
    /// name, and (with the key, not in a dry run) delete them.
    pub(super) fn settle(
        &self,
        kind: ObjectKind,
        regions: &[(String, Arc<dyn Backend>)],
        done: &KindSync,
        opts: SyncOptions,
        report: &mut SyncReport,
    ) {
        if buried_kind(kind).is_none() || self.honored.is_empty() {
            return;
        }
        for (i, listing) in done.listings.iter().enumerate() {
            let Some(listing) = listing else { continue };
            let mut here: Vec<ObjectName> = listing
                .keys()
                .filter(|n| self.honored.contains(n))
                .copied()
                .collect();
            here.sort();
            let r = &mut report.regions[i];
            r.buried += here.len() as u64;
            if !self.keyed || opts.dry_run {
                continue;
            }
            // Key files this region keeps whatever happens: it must stay openable.
            let kept_keys = done.present[i]
                .iter()
                .filter(|n| !self.proven.contains_key(n))
                .count();
            for name in here {
                let Some(tombstones) = self.proven.get(&name) else {
                    continue;
                };
                if !tombstones.iter().any(|t| self.held[i].contains(t)) {
                    r.failed.push(format!(
                        "{name}: left in place: its tombstone could not be stored in this region"
                    ));
                    continue;
                }
                if kind == ObjectKind::Key && kept_keys == 0 {
                    r.failed.push(format!(
                        "{name}: left in place: no other key file opens this region (copy a \
                         current key file here first)"
                    ));
                    continue;
                }
                match regions[i].1.delete(&name) {
                    Ok(()) => {
                        r.buried_deleted += 1;
                        r.objects = r.objects.saturating_sub(1);
                    }
                    Err(e) => r.failed.push(format!("{name}: cannot be deleted: {e}")),
                }
            }
        }
    }
}
