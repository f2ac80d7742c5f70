//! An open repository: its backend, keys, config and index. Reads verify everything: object
//! names against their bytes, blobs against their IDs, all structure through authentication.

mod frames;
mod index_files;
mod locks;
mod open;
mod packer;
mod plans;
mod reports;
pub mod tombstones;
mod unlock;
mod unreadable;
mod uploader;
mod vanished;
mod writer;

use frames::FrameCache;
pub use index_files::IndexFilter;
pub use locks::{LockGuard, REFRESH as LOCK_REFRESH};
#[cfg(test)]
pub(crate) use open::memory_repository;
pub use open::{default_cache_dir, KeyListing, OpenOptions};
pub use packer::{FinishedPack, PackWriter};
pub use plans::{reason, Readable};
pub use reports::KEEP_REPORTS;
pub use unlock::describe_cost;
pub use writer::{BlobSaver, SaverStats};

use crate::backend::{too_large, Backend, Bytes, ObjectKind, ObjectName};
use crate::clock::Clock;
use crate::crypto::Keys;
use crate::error::{Error, ErrorKind, Result};
use crate::format::config::Config;
use crate::format::index::IndexFile;
use crate::format::pack;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{ChunkList, Content, Tree};
use crate::format::BlobType;
use crate::id::PackId;
use crate::id::{BlobId, KeyId, SnapshotId};
use crate::index::cache::Cache;
use crate::index::{BlobLocation, FrameKey, Index};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};

/// Bytes of opened frames kept by `Repository::frame`.
const RECENT_FRAMES_BYTES: usize = 4 << 20;

/// The index must place a blob in a frame of the type the reader asks for.
fn expect_type(loc: &BlobLocation, blob_type: BlobType, id: &BlobId) -> Result<()> {
    if loc.blob_type != blob_type {
        return Err(Error::corrupt(format!(
            "blob {} is a {} blob, expected {}",
            id.short(),
            loc.blob_type.name(),
            blob_type.name()
        )));
    }
    Ok(())
}

/// A blob that no readable index file lists: its index file is damaged or lost (repair
/// indexes its pack again from the pack's header), or its pack is gone.
pub fn not_in_index(blob_type: BlobType, id: &BlobId) -> Error {
    Error::not_found(format!(
        "{} blob {} is not in the index (run `coffer repair`: it indexes again every pack that no readable index file lists)",
        blob_type.name(),
        id.short()
    ))
}

pub struct Repository {
    backend: Arc<dyn Backend>,
    keys: Keys,
    config: Config,
    key_id: KeyId,
    cache: Option<Mutex<Cache>>,
    index: RwLock<Option<Arc<Index>>>,
    index_filter: RwLock<IndexFilter>,
    recent_frames: FrameCache,
    /// Packs that failed to read in this process (a backup stops deduplicating against them).
    unreadable: unreadable::UnreadablePacks,
    clock: Arc<dyn Clock>,
    warn: Arc<dyn Fn(&str) + Send + Sync>,
}

impl Repository {
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
    pub fn keys(&self) -> &Keys {
        &self.keys
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The key file that opened this repository.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
    /// This machine's local state folder for the repository (beside the cache), if any.
    pub fn state_dir(&self) -> Option<std::path::PathBuf> {
        let cache = self.cache.as_ref()?.lock().expect("cache lock");
        cache.path().parent().map(|p| p.to_path_buf())
    }

    /// Run `f` on the local cache, if this repository has one (`None` otherwise).
    pub(crate) fn with_cache<T>(
        &self,
        f: impl FnOnce(&mut Cache) -> Result<T>,
    ) -> Result<Option<T>> {
        match &self.cache {
            Some(c) => f(&mut c.lock().expect("cache lock")).map(Some),
            None => Ok(None),
        }
    }

    /// Read an object and check that its bytes match its name.
    pub fn read_object(&self, name: &ObjectName) -> Result<Vec<u8>> {
        let bytes = self.backend.get(name)?;
        if !name.verify(&bytes) {
            return Err(Error::corrupt(format!(
                "{name}: stored bytes do not match their name (damaged or tampered)"
            )));
        }
        Ok(bytes)
    }

    /// Store bytes under their hash; returns the name. An object larger than its kind's
    /// limit is refused: readers would refuse it (format-spec §3, "Sizes").
    pub fn write_object(&self, kind: ObjectKind, bytes: impl Into<Bytes>) -> Result<ObjectName> {
        let bytes = bytes.into();
        if bytes.len() as u64 > kind.max_len() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "refusing to store a {} of {} bytes: readers accept at most {}",
                    kind.noun(),
                    bytes.len(),
                    kind.max_len()
                ),
            ));
        }
        let name = ObjectName::for_bytes(kind, &bytes);
        self.backend.put(&name, bytes)?;
        Ok(name)
    }

    /// The index, loaded (and the cache refreshed) on first use.
    pub fn index(&self) -> Result<Arc<Index>> {
        if let Some(i) = self.index.read().expect("index lock").as_ref() {
            return Ok(i.clone());
        }
        let loaded = Arc::new(self.load_index()?);
        *self.index.write().expect("index lock") = Some(loaded.clone());
        Ok(loaded)
    }

    /// Forget the loaded index so the next `index()` reads the backend again.
    pub fn invalidate_index(&self) {
        *self.index.write().expect("index lock") = None;
    }

    /// Every snapshot, oldest first. Uses the cache for ones seen before. Fails if any
    /// snapshot object is damaged (`readable_snapshots` lists the others).
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let (snaps, mut damaged) = self.readable_snapshots()?;
        if damaged.is_empty() {
            Ok(snaps)
        } else {
            Err(damaged.swap_remove(0).1)
        }
    }

    /// Every snapshot that can be read, oldest first, and the error for each snapshot object
    /// that is damaged: one bad object must not hide the others.
    #[allow(clippy::type_complexity)]
    pub fn readable_snapshots(
        &self,
    ) -> Result<(Vec<(SnapshotId, Snapshot)>, Vec<(SnapshotId, Error)>)> {
        let listed = self.backend.list(ObjectKind::Snapshot)?;
        let cached = match &self.cache {
            Some(c) => c.lock().expect("cache lock").snapshots()?,
            None => Default::default(),
        };
        let mut out = Vec::with_capacity(listed.len());
        let mut damaged = Vec::new();
        for (name, size) in &listed {
            let id = SnapshotId(name.hash);
            // A listing that shows a giant "snapshot" is enough to refuse it unread.
            if *size > ObjectKind::Snapshot.max_len() {
                let place = self.backend.describe();
                damaged.push((id, too_large(&place, name, *size, name.kind.max_len())));
                continue;
            }
            let bytes = match cached.get(&id) {
                Some(b) if name.verify(b) => b.clone(),
                _ => match self.read_object(name) {
                    Ok(b) => {
                        if let Some(c) = &self.cache {
                            c.lock().expect("cache lock").put_snapshot(&id, &b)?;
                        }
                        b
                    }
                    Err(e) if e.kind() == ErrorKind::Corrupt => {
                        damaged.push((id, e));
                        continue;
                    }
                    // Deleted by a concurrent `forget` since the listing: not a snapshot any more.
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                },
            };
            match Snapshot::decode(&self.keys, &bytes) {
                Ok(snap) => out.push((id, snap)),
                Err(e) => damaged.push((id, e.context(format!("snapshot {}", id.short())))),
            }
        }
        let listed: HashSet<[u8; 32]> = listed.iter().map(|(n, _)| n.hash).collect();
        let vanished: Vec<(&SnapshotId, &Vec<u8>)> = cached
            .iter()
            .filter(|(id, _)| !listed.contains(&id.0))
            .collect();
        if !vanished.is_empty() {
            self.forget_vanished_snapshots(&vanished)?;
        }
        out.sort_by_key(|(id, s)| (s.time_ns, *id));
        Ok((out, damaged))
    }

    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId> {
        snap.validate_lengths()?;
        let bytes = snap.encode(&self.keys, None);
        let name = self.write_object(ObjectKind::Snapshot, bytes.clone())?;
        let id = SnapshotId(name.hash);
        if let Some(c) = &self.cache {
            c.lock().expect("cache lock").put_snapshot(&id, &bytes)?;
        }
        Ok(id)
    }

    /// Read, decrypt and verify one blob.
    pub fn read_blob(&self, blob_type: BlobType, id: &BlobId) -> Result<Vec<u8>> {
        let index = self.index()?;
        self.read_blob_with(&index, blob_type, id)
    }

    /// `read_blob` through a given index (`check` uses one built from the backend alone).
    pub fn read_blob_with(
        &self,
        index: &Index,
        blob_type: BlobType,
        id: &BlobId,
    ) -> Result<Vec<u8>> {
        let loc = index.get(id).ok_or_else(|| not_in_index(blob_type, id))?;
        // Checked before any I/O: a blob of the wrong type is not worth a read.
        expect_type(&loc, blob_type, id)?;
        let read = self
            .with_repair(&loc, || self.frame(&loc))
            .map_err(|e| e.context(format!("pack {}", loc.pack.short())))
            .and_then(|frame| Ok(self.blob_in_frame(&frame, blob_type, id, &loc)?.to_vec()));
        if read.is_err() {
            self.unreadable.record(loc.pack);
        }
        read
    }

    /// Did a read from this pack fail in this process?
    pub fn pack_unreadable(&self, pack: &crate::id::PackId) -> bool {
        self.unreadable.contains(pack)
    }

    /// Did any read from a pack fail in this process?
    pub fn any_pack_unreadable(&self) -> bool {
        self.unreadable.any()
    }

    /// A blob's plaintext inside its opened frame: of the type asked for, bounds-checked (the
    /// index may be forged), and hashing to its ID.
    fn blob_in_frame<'f>(
        &self,
        frame: &'f [u8],
        blob_type: BlobType,
        id: &BlobId,
        loc: &BlobLocation,
    ) -> Result<&'f [u8]> {
        expect_type(loc, blob_type, id)?;
        let plain = frame
            .get(loc.offset as usize..loc.offset as usize + loc.raw_length as usize)
            .ok_or_else(|| Error::corrupt("blob lies beyond the end of its frame"))?;
        pack::verify_blob(&self.keys, blob_type, id, plain)?;
        Ok(plain)
    }

    /// Run a read of `loc`'s pack; if it finds damaged bytes and the backend holds other
    /// copies (regions), have it repair the pack from a verified copy and read once more.
    fn with_repair<T>(&self, loc: &BlobLocation, read: impl Fn() -> Result<T>) -> Result<T> {
        match read() {
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                let name = ObjectName::new(ObjectKind::Pack, loc.pack.0);
                match self.backend.repair(&name) {
                    Ok(n) if n > 0 => read(),
                    _ => Err(e),
                }
            }
            other => other,
        }
    }

    /// The opened plaintext of a blob's frame, from the small cache of recent frames: walking
    /// a snapshot reads many trees from the same few frames.
    fn frame(&self, loc: &BlobLocation) -> Result<Arc<Vec<u8>>> {
        let key = loc.frame_key();
        if let Some(plain) = self.recent_frames.get(&key) {
            return Ok(plain);
        }
        let name = ObjectName::new(ObjectKind::Pack, loc.pack.0);
        let sealed =
            self.backend
                .get_range(&name, loc.frame_offset as u64, loc.frame_length as u64)?;
        let plain = Arc::new(pack::open_frame(
            &self.keys,
            loc.blob_type,
            &sealed,
            loc.frame_raw_length as u64,
        )?);
        self.recent_frames.insert(key, plain.clone());
        Ok(plain)
    }

    /// Read a run of blobs in one pack (see `index::fetch_runs`: sorted by frame and offset)
    /// with one ranged read, open each frame once, and call `each` with every item and its
    /// verified plaintext, or the error that made it unreadable.
    /// A run whose bytes fail authentication is repaired from another region where there
    /// is one, and read again.
    pub fn open_run<T>(
        &self,
        run: &[T],
        blob: impl Fn(&T) -> (BlobType, &BlobId, &BlobLocation),
        mut each: impl FnMut(&T, std::result::Result<&[u8], &Error>),
    ) {
        // Items are handed over as soon as they verify; failures wait, in case a repair
        // from another region lets a second read serve them.
        let mut failed: Vec<(usize, Error)> = Vec::new();
        self.open_run_once(run, &blob, |k, t, r| match r {
            Ok(p) => each(t, Ok(p)),
            Err(e) => failed.push((k, e.clone())),
        });
        if failed.is_empty() {
            return;
        }
        let damaged = failed.iter().any(|(_, e)| e.kind() == ErrorKind::Corrupt);
        let repaired = damaged && {
            let name = ObjectName::new(ObjectKind::Pack, blob(&run[0]).2.pack.0);
            matches!(self.backend.repair(&name), Ok(n) if n > 0)
        };
        if repaired {
            let retry: std::collections::HashSet<usize> = failed.iter().map(|(k, _)| *k).collect();
            failed.clear();
            self.open_run_once(run, &blob, |k, t, r| {
                if retry.contains(&k) {
                    match r {
                        Ok(p) => each(t, Ok(p)),
                        Err(e) => failed.push((k, e.clone())),
                    }
                }
            });
        }
        for (k, e) in failed {
            each(&run[k], Err(&e));
        }
    }

    /// One pass of `open_run`: `each` gets every item's position in `run`, the item, and
    /// its verified plaintext or the error that made it unreadable.
    fn open_run_once<T>(
        &self,
        run: &[T],
        blob: &impl Fn(&T) -> (BlobType, &BlobId, &BlobLocation),
        mut each: impl FnMut(usize, &T, std::result::Result<&[u8], &Error>),
    ) {
        let Some(first) = run.first() else { return };
        let pack_id = blob(first).2.pack;
        // The smallest offset, not the first: a run out of order must not underflow below.
        let start = run
            .iter()
            .map(|t| blob(t).2.frame_offset as u64)
            .min()
            .unwrap_or(0);
        let end = run
            .iter()
            .map(|t| {
                let l = blob(t).2;
                l.frame_offset as u64 + l.frame_length as u64
            })
            .max()
            .unwrap_or(start);
        let name = ObjectName::new(ObjectKind::Pack, pack_id.0);
        let bytes = match self.backend.get_range(&name, start, end - start) {
            Ok(b) => b,
            Err(e) => {
                let e = e.context(format!("pack {}", pack_id.short()));
                for (k, t) in run.iter().enumerate() {
                    each(k, t, Err(&e));
                }
                return;
            }
        };
        self.open_blobs(&bytes, start, run, blob, each);
    }

    /// Open the blobs of `items` (sorted by frame) from `bytes`, which hold their pack from
    /// offset `base` on: each frame is opened once, each blob checked (type, bounds, hash).
    /// `each` gets every item's position, the item, and its plaintext or the error.
    pub fn open_blobs<T>(
        &self,
        bytes: &[u8],
        base: u64,
        items: &[T],
        blob: &impl Fn(&T) -> (BlobType, &BlobId, &BlobLocation),
        mut each: impl FnMut(usize, &T, std::result::Result<&[u8], &Error>),
    ) {
        let mut opened: Option<(FrameKey, Result<Vec<u8>>)> = None;
        for (k, t) in items.iter().enumerate() {
            let (blob_type, id, loc) = blob(t);
            if opened.as_ref().map(|(key, _)| *key) != Some(loc.frame_key()) {
                let at = (loc.frame_offset as u64).checked_sub(base);
                let plain = at
                    .and_then(|at| bytes.get(at as usize..at as usize + loc.frame_length as usize))
                    .ok_or_else(|| Error::corrupt("frame lies beyond the bytes read"))
                    .and_then(|sealed| {
                        pack::open_frame(
                            &self.keys,
                            loc.blob_type,
                            sealed,
                            loc.frame_raw_length as u64,
                        )
                    })
                    .map_err(|e| e.context(format!("pack {}", loc.pack.short())));
                opened = Some((loc.frame_key(), plain));
            }
            let frame = &opened.as_ref().expect("opened above").1;
            let result = frame
                .as_ref()
                .map_err(Error::clone)
                .and_then(|f| self.blob_in_frame(f, blob_type, id, loc));
            match result {
                Ok(p) => each(k, t, Ok(p)),
                Err(e) => each(k, t, Err(&e)),
            }
        }
    }

    pub fn read_tree(&self, id: &BlobId) -> Result<Tree> {
        Tree::decode(&self.read_blob(BlobType::Tree, id)?)
            .map_err(|e| e.context(format!("tree {}", id.short())))
    }

    /// A file's chunk IDs in order, following chunk lists.
    pub fn file_chunks(&self, content: &Content) -> Result<Vec<BlobId>> {
        match content {
            Content::Chunks(ids) => Ok(ids.clone()),
            Content::ChunkList { level, id } => {
                let mut out = Vec::new();
                self.expand_list(*level, id, &mut out)?;
                Ok(out)
            }
            _ => Ok(vec![]),
        }
    }

    /// Every blob a file's content names: its chunk lists and its chunks.
    pub fn content_blobs(&self, content: &Content) -> Result<Vec<BlobId>> {
        let mut out = Vec::new();
        if let Content::ChunkList { level, id } = content {
            out.push(*id);
            self.expand_list_with(*level, id, &mut out, true)?;
        } else {
            out = self.file_chunks(content)?;
        }
        Ok(out)
    }

    fn expand_list(&self, level: u8, id: &BlobId, out: &mut Vec<BlobId>) -> Result<()> {
        self.expand_list_with(level, id, out, false)
    }

    /// Expand a chunk list into `out`; with `lists`, the inner lists' IDs too.
    fn expand_list_with(
        &self,
        level: u8,
        id: &BlobId,
        out: &mut Vec<BlobId>,
        lists: bool,
    ) -> Result<()> {
        let list = ChunkList::decode(&self.read_blob(BlobType::ChunkList, id)?)?;
        if list.level != level {
            return Err(Error::corrupt(format!(
                "chunk list {} has the wrong level",
                id.short()
            )));
        }
        if level == 0 {
            out.extend(list.ids);
        } else {
            for child in &list.ids {
                if lists {
                    out.push(*child);
                }
                self.expand_list_with(level - 1, child, out, lists)?;
            }
        }
        Ok(())
    }
}

/// What a backup learnt from the pack listing before deduplicating (format-spec §12.1 B2).
#[derive(Debug, Clone, Copy, Default)]
pub struct PackListing {
    /// Indexed packs that the listing lacks or lists with another size than the index
    /// records: left out of the index, so their blobs are stored again.
    pub missing: usize,
    /// Listed packs that no index file listed, now indexed (§8).
    pub adopted: usize,
}

impl Repository {
    /// Compare the index with one listing of every pack before a backup deduplicates: leave
    /// out every indexed pack that is missing or has the wrong size (a backup that
    /// deduplicated against it would write a snapshot that can never be restored), and
    /// adopt the listed packs that no index file lists (`adopt_orphan_packs`).
    pub fn reconcile_packs(&self) -> Result<PackListing> {
        let listed: std::collections::HashMap<PackId, u64> = self
            .backend
            .list(ObjectKind::Pack)?
            .into_iter()
            .map(|(n, size)| (PackId(n.hash), size))
            .collect();
        let index = self.index()?;
        let missing: Vec<PackId> = index
            .packs()
            .iter()
            .filter(|(id, size)| listed.get(id) != Some(size))
            .map(|(id, _)| *id)
            .collect();
        let adopted = self.adopt_orphan_packs(&index, &listed)?;
        if !missing.is_empty() {
            let mut filter = self.index_filter();
            filter.packs.extend(missing.iter().copied());
            self.set_index_filter(filter);
        }
        Ok(PackListing {
            missing: missing.len(),
            adopted,
        })
    }

    /// A pack's index entry, from the pack itself: read in full, checked against its name
    /// and its listed size, its header opened (format-spec §9, "Rebuilding the index").
    pub fn index_entry_from_pack(
        &self,
        id: &PackId,
        size: u64,
    ) -> Result<crate::format::index::IndexPack> {
        let name = ObjectName::new(ObjectKind::Pack, id.0);
        let bytes = self.backend.get(&name)?;
        if bytes.len() as u64 != size {
            return Err(Error::corrupt(format!(
                "{name}: read {} bytes, listed with {size}",
                bytes.len()
            )));
        }
        if !name.verify(&bytes) {
            return Err(Error::corrupt(format!(
                "{name}: stored bytes do not match their name (damaged or tampered)"
            )));
        }
        let frames =
            pack::decode_pack(&self.keys, &bytes).map_err(|e| e.context(format!("{name}")))?;
        Ok(crate::format::index::IndexPack {
            id: *id,
            size,
            frames,
        })
    }

    /// Index listed packs that are in no index file: they were uploaded by a backup that
    /// was killed (or failed) before it wrote its index. Each is verified (hash and
    /// authenticated header) before it is trusted; packs that fail are left alone for
    /// `check` to report. Returns how many packs were adopted.
    fn adopt_orphan_packs(
        &self,
        index: &Index,
        listed: &std::collections::HashMap<PackId, u64>,
    ) -> Result<usize> {
        // A pack a deletion plan names is unindexed on purpose once its index files are
        // deleted: adopting it would index a pack that is about to go.
        let planned = self.index_filter().packs;
        let mut found = Vec::new();
        let mut orphans: Vec<(&PackId, &u64)> = listed
            .iter()
            .filter(|(id, _)| !index.has_pack(id) && !planned.contains(*id))
            .collect();
        orphans.sort();
        for (id, &size) in orphans {
            if let Ok(entry) = self.index_entry_from_pack(id, size) {
                found.push(entry);
            }
        }
        let n = found.len();
        if n > 0 {
            self.write_index(&IndexFile {
                supersedes: vec![],
                packs: found,
            })?;
            self.invalidate_index();
        }
        Ok(n)
    }
}
