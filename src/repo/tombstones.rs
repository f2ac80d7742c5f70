//! Deleting on purpose (format-spec §5.12, §8): `forget`, `key remove` and `key passwd`
//! store a tombstone naming what they delete *before* deleting it. A region that misses the
//! deletion (down, or not given to the command) keeps the object, and `sync` then copies the
//! tombstone there and deletes the object instead of copying it back everywhere.

use super::Repository;
use crate::backend::{ObjectKind, ObjectName};
use crate::error::{Error, ErrorKind, Result};
use crate::format::tombstone::{BuriedKind, Tombstone, MAX_NAMES};
use crate::id::SnapshotId;
use std::collections::HashSet;

/// The tombstone kind of an object kind, for the kinds a tombstone can name.
pub fn buried_kind(kind: ObjectKind) -> Option<BuriedKind> {
    match kind {
        ObjectKind::Key => Some(BuriedKind::Key),
        ObjectKind::Snapshot => Some(BuriedKind::Snapshot),
        ObjectKind::Wal => Some(BuriedKind::Wal),
        _ => None,
    }
}

/// The object a tombstone entry names.
pub fn buried_name(kind: BuriedKind, hash: [u8; 32]) -> ObjectName {
    let kind = match kind {
        BuriedKind::Key => ObjectKind::Key,
        BuriedKind::Snapshot => ObjectKind::Snapshot,
        BuriedKind::Wal => ObjectKind::Wal,
    };
    ObjectName::new(kind, hash)
}

/// Every object `t` names.
pub fn buried_names(t: &Tombstone) -> impl Iterator<Item = ObjectName> + '_ {
    t.names.iter().map(|(k, h)| buried_name(*k, *h))
}

/// What `bury` did with each object: deleted, or the error that left it in place (in some
/// region). Its tombstone is stored either way, so `sync` finishes the job later.
pub type Burials = Vec<(ObjectName, Result<()>)>;

impl Repository {
    /// Delete `names` (key files, snapshots, WAL files) for good: store a tombstone naming
    /// them (several beyond `MAX_NAMES`), then delete each. Fails before deleting anything if
    /// a tombstone cannot be stored. Snapshots and WAL files deleted here leave the cache too,
    /// so this client never mistakes its own deletions for vanished snapshots.
    pub fn bury(&self, names: &[ObjectName]) -> Result<Burials> {
        let mut entries = Vec::with_capacity(names.len());
        for n in names {
            let kind = buried_kind(n.kind).ok_or_else(|| {
                Error::invalid(format!("{n}: a tombstone cannot name this kind of object"))
            })?;
            entries.push((kind, n.hash));
        }
        let now = self.clock.now();
        let mut tombstones = Vec::new();
        for part in entries.chunks(MAX_NAMES) {
            tombstones.push(Tombstone::new(part.to_vec(), now)?);
        }
        for t in &tombstones {
            self.write_object(ObjectKind::Tombstone, t.encode(&self.keys, None))
                .map_err(|e| e.context("storing the tombstone (nothing was deleted)"))?;
        }
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let deleted = self.backend.delete(name);
            if let (true, Some(c)) = (deleted.is_ok(), &self.cache) {
                let mut c = c.lock().expect("cache lock");
                let forgotten = match name.kind {
                    ObjectKind::Snapshot => c.remove_snapshot(&SnapshotId(name.hash)),
                    ObjectKind::Wal => c.update_wal_heads(&[], &[name.hash]),
                    _ => Ok(()),
                };
                if let Err(e) = forgotten {
                    (self.warn)(&format!("local cache: {e}"));
                }
            }
            out.push((*name, deleted));
        }
        Ok(out)
    }

    /// Every tombstone that opens with the key, and the error of each that does not (a
    /// damaged or planted object, which deletes nothing). A tombstone that vanished since
    /// the listing is skipped: nothing deletes tombstones but a person.
    #[allow(clippy::type_complexity)]
    pub fn tombstones(&self) -> Result<(Vec<(ObjectName, Tombstone)>, Vec<(ObjectName, Error)>)> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for (name, _) in self.backend.list(ObjectKind::Tombstone)? {
            let decoded = self
                .read_object(&name)
                .and_then(|bytes| Tombstone::decode(&self.keys, &bytes));
            match decoded {
                Ok(t) => good.push((name, t)),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) if e.kind() == ErrorKind::Corrupt || e.kind() == ErrorKind::Unsupported => {
                    bad.push((name, e))
                }
                Err(e) => return Err(e),
            }
        }
        Ok((good, bad))
    }

    /// The objects that valid tombstones name. Damaged tombstones are left out with a
    /// warning (`check` reports them).
    pub fn buried(&self) -> Result<HashSet<ObjectName>> {
        let (good, bad) = self.tombstones()?;
        for (name, e) in bad {
            (self.warn)(&format!("{name} is ignored: {e} (run `coffer check`)"));
        }
        Ok(good.iter().flat_map(|(_, t)| buried_names(t)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Bytes;

    #[test]
    fn bury_stores_the_tombstone_first_and_deletes() {
        let repo = crate::repo::memory_repository();
        let snap = repo
            .write_object(ObjectKind::Snapshot, Bytes::from_static(b"snapshot"))
            .unwrap();
        let done = repo.bury(&[snap]).unwrap();
        assert!(done[0].1.is_ok());
        assert!(repo
            .backend()
            .list(ObjectKind::Snapshot)
            .unwrap()
            .is_empty());
        let (good, bad) = repo.tombstones().unwrap();
        assert!(bad.is_empty());
        assert_eq!(good.len(), 1);
        assert_eq!(buried_names(&good[0].1).collect::<Vec<_>>(), [snap]);
        assert!(repo.buried().unwrap().contains(&snap));
        // Only keys, snapshots and WAL files can be buried; nothing is stored for anything else.
        let pack = ObjectName::new(ObjectKind::Pack, [1; 32]);
        assert!(repo.bury(&[pack]).is_err());
        assert_eq!(repo.backend().list(ObjectKind::Tombstone).unwrap().len(), 1);
    }

    #[test]
    fn a_planted_tombstone_is_reported_and_names_nothing() {
        let repo = crate::repo::memory_repository();
        repo.write_object(ObjectKind::Tombstone, Bytes::from_static(b"CFFT\x03junk"))
            .unwrap();
        let (good, bad) = repo.tombstones().unwrap();
        assert!(good.is_empty());
        assert_eq!(bad.len(), 1);
        assert!(repo.buried().unwrap().is_empty());
    }
}
