//! Loading the index from the index files on the backend (through the local cache when
//! there is one), and writing new index files.
//!
//! Garbage collection deletes index files while other processes read them (format-spec
//! §12): an index file that vanishes between the listing and the read was superseded by one
//! stored before it was deleted, so the load starts over from a fresh listing.

use super::Repository;
use crate::backend::{ObjectKind, ObjectName};
use crate::error::{Error, ErrorKind, Result};
use crate::format::index::IndexFile;
use crate::id::{IndexId, PackId};
use crate::index::{Index, IndexBuilder};
use std::collections::{HashMap, HashSet};

/// How often a load starts over because index files vanished under it.
const LOAD_ATTEMPTS: usize = 5;
/// Up to this many packs with copies of the same blob are checked one by one (`stat`);
/// more are checked with one listing of every pack.
const STAT_COPIES: usize = 32;

/// What the loaded index leaves out.
#[derive(Debug, Clone, Default)]
pub struct IndexFilter {
    /// Packs a deletion plan names: never deduplicate against them.
    pub packs: HashSet<PackId>,
    /// Index files to ignore (a prune checking what survives their deletion).
    pub files: HashSet<IndexId>,
}

/// An index file listed but gone when read: another process's prune deleted it.
fn vanished(e: &Error) -> bool {
    e.kind() == ErrorKind::NotFound
}

impl Repository {
    /// Load the index with `filter` from now on (the next `index()` reads it afresh).
    pub fn set_index_filter(&self, filter: IndexFilter) {
        *self.index_filter.write().expect("filter lock") = filter;
        self.invalidate_index();
    }

    pub fn index_filter(&self) -> IndexFilter {
        self.index_filter.read().expect("filter lock").clone()
    }

    pub(super) fn load_index(&self) -> Result<Index> {
        let filter = self.index_filter();
        for _ in 0..LOAD_ATTEMPTS {
            match self.try_load_index(&filter) {
                Err(e) if vanished(&e) => continue,
                other => return other,
            }
        }
        Err(Error::backend(
            "index files kept vanishing while being read (is a prune deleting them?); try again",
            true,
        ))
    }

    fn try_load_index(&self, filter: &IndexFilter) -> Result<Index> {
        let listed = self.list_index_files()?;
        let mut index = match &self.cache {
            None => {
                let mut index = IndexBuilder::new().excluding(&filter.packs);
                for id in listed.iter().filter(|id| !filter.files.contains(id)) {
                    if let Some(file) = self.read_index_file_or_warn(id)? {
                        index.add_file(&file);
                    }
                }
                index.build()
            }
            Some(cache) => {
                self.refresh_cache(&listed)?;
                cache
                    .lock()
                    .expect("cache lock")
                    .load_index(&filter.packs, &filter.files)?
            }
        };
        self.prefer_present_copies(&mut index)?;
        Ok(index)
    }

    /// A blob listed more than once (§5.5) is read from a copy whose pack exists with its
    /// recorded size. A backup stores a blob again when the pack of its indexed copy is gone
    /// (§12.1 B2), and the old index entry stays until `coffer repair` rewrites it: without
    /// this, a reader could pick the lost copy of a blob that is safely stored.
    fn prefer_present_copies(&self, index: &mut Index) -> Result<()> {
        let packs = index.packs_with_copies();
        if packs.is_empty() {
            return Ok(());
        }
        let found: HashMap<PackId, u64> = if packs.len() <= STAT_COPIES {
            let mut found = HashMap::new();
            for id in packs.keys() {
                if let Some(size) = self
                    .backend
                    .stat(&ObjectName::new(ObjectKind::Pack, id.0))?
                {
                    found.insert(*id, size);
                }
            }
            found
        } else {
            self.backend
                .list(ObjectKind::Pack)?
                .into_iter()
                .map(|(n, size)| (PackId(n.hash), size))
                .collect()
        };
        index.prefer_copies(|p| found.get(p).is_some_and(|s| packs.get(p) == Some(s)));
        Ok(())
    }

    fn list_index_files(&self) -> Result<Vec<IndexId>> {
        Ok(self
            .backend
            .list(ObjectKind::Index)?
            .into_iter()
            .map(|(n, _)| IndexId(n.hash))
            .collect())
    }

    /// Make the cache hold exactly the listed index files.
    fn refresh_cache(&self, listed: &[IndexId]) -> Result<()> {
        let Some(cache) = &self.cache else {
            return Ok(());
        };
        let mut guard = cache.lock().expect("cache lock");
        let known = guard.index_ids()?;
        let listed_set: HashSet<&IndexId> = listed.iter().collect();
        let mut fresh = Vec::new();
        for id in listed.iter().filter(|id| !known.contains(id)) {
            if let Some(file) = self.read_index_file_or_warn(id)? {
                fresh.push((*id, file));
            }
        }
        if !fresh.is_empty() {
            let refs: Vec<(IndexId, &IndexFile)> = fresh.iter().map(|(id, f)| (*id, f)).collect();
            guard.add_indexes(&refs)?;
        }
        // An index file the cache knows has gone: normally a prune rewrote the index. Which
        // packs only it listed is worked out before it leaves the cache, with the new files
        // (which carry a prune's surviving entries) already in.
        let gone: HashSet<IndexId> = known
            .into_iter()
            .filter(|id| !listed_set.contains(id))
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        let unindexed = Self::packs_only_in(&guard, &gone)?;
        for id in &gone {
            guard.remove_index(id)?;
        }
        drop(guard);
        self.warn_unexplained_index_loss(unindexed);
        Ok(())
    }

    /// Call `f` with every index file on the backend, one at a time, so a prune can see
    /// which file lists which pack without holding them all decoded.
    pub fn visit_index_files(
        &self,
        mut f: impl FnMut(IndexId, IndexFile) -> Result<()>,
    ) -> Result<()> {
        for _ in 0..LOAD_ATTEMPTS {
            let listed = self.list_index_files()?;
            let result = match &self.cache {
                Some(cache) => self.refresh_cache(&listed).and_then(|()| {
                    let cache = cache.lock().expect("cache lock");
                    let mut visit = |id, file| f(id, file);
                    cache.for_each_file(&mut visit)
                }),
                None => (|| {
                    for id in &listed {
                        if let Some(file) = self.read_index_file_or_warn(id)? {
                            f(*id, file)?;
                        }
                    }
                    Ok(())
                })(),
            };
            match result {
                Err(e) if vanished(&e) => continue,
                other => return other,
            }
        }
        Err(Error::backend(
            "index files kept vanishing while being read; try again",
            true,
        ))
    }

    /// A damaged index file must not make the whole repository unusable: its packs are
    /// still on the backend, the next backup indexes them again (see `adopt_orphan_packs`),
    /// and `check` reports the damage. Until then, blobs only it describes are unreachable.
    /// A file that vanished is an error of its own (the caller lists again).
    fn read_index_file_or_warn(&self, id: &IndexId) -> Result<Option<IndexFile>> {
        match self.read_index_file(id) {
            Ok(f) => Ok(Some(f)),
            Err(e) if vanished(&e) => Err(e),
            Err(e) => {
                (self.warn)(&format!(
                    "skipping a damaged index file: {e} (`coffer repair` indexes its packs again)"
                ));
                Ok(None)
            }
        }
    }

    pub fn read_index_file(&self, id: &IndexId) -> Result<IndexFile> {
        let bytes = self.read_object(&ObjectName::new(ObjectKind::Index, id.0))?;
        IndexFile::decode(&self.keys, &bytes)
            .map_err(|e| e.context(format!("index {}", id.short())))
    }

    /// Write an index file describing freshly uploaded packs; tell the cache. Returns its
    /// ID and its stored size.
    pub fn write_index(&self, file: &IndexFile) -> Result<(IndexId, u64)> {
        let bytes = file.encode(&self.keys, None);
        let name = self.write_object(ObjectKind::Index, bytes.clone())?;
        let id = IndexId(name.hash);
        if let Some(cache) = &self.cache {
            cache
                .lock()
                .expect("cache lock")
                .add_indexes(&[(id, file)])?;
        }
        Ok((id, bytes.len() as u64))
    }

    /// Delete an index file in every region and forget it in the cache.
    pub fn delete_index(&self, id: &IndexId) -> Result<()> {
        self.backend
            .delete(&ObjectName::new(ObjectKind::Index, id.0))?;
        if let Some(cache) = &self.cache {
            cache.lock().expect("cache lock").remove_index(id)?;
        }
        Ok(())
    }
}
