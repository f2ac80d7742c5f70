//! The blob index: for every blob, the pack and frame that hold it. Built from the index
//! files on the backend, kept between runs in the disposable SQLite cache (`cache.rs`).
//!
//! Memory is the constraint: a repository of dumps cut into 4 KiB chunks has millions of
//! blobs. Each blob costs one 44-byte entry in an array sorted by ID (no hash-table slack, no
//! per-entry allocation), found by binary search inside a bucket picked by the ID's first two
//! bytes. Frames and packs live in side tables that blobs point into by number.

pub mod cache;

use crate::format::index::{IndexFile, IndexPack};
use crate::format::pack::frame_offsets;
use crate::format::BlobType;
use crate::id::{BlobId, PackId};
use std::collections::{HashMap, HashSet};

/// Where one blob is stored: its frame (a sealed, compressed range of a pack) and its place
/// in the frame's plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    pub blob_type: BlobType,
    pub pack: PackId,
    /// The frame's offset and stored length in the pack.
    pub frame_offset: u32,
    pub frame_length: u32,
    /// The frame's plaintext length (all its blobs).
    pub frame_raw_length: u32,
    /// The blob's offset in the frame's plaintext, and its length.
    pub offset: u32,
    pub raw_length: u32,
}

/// Identifies an opened frame: where it lies and what it was opened as. Only locations with
/// the same key may share an opened frame (two index files may describe a pack differently).
pub type FrameKey = (PackId, u32, u32, u32, BlobType);

impl BlobLocation {
    /// Identifies the frame: blobs with the same key are opened together.
    pub fn frame_key(&self) -> FrameKey {
        (
            self.pack,
            self.frame_offset,
            self.frame_length,
            self.frame_raw_length,
            self.blob_type,
        )
    }
}

#[derive(Clone, Copy)]
struct FrameRecord {
    pack: u32,
    offset: u32,
    length: u32,
    raw_length: u32,
    blob_type: BlobType,
}

/// One blob: 44 bytes.
#[derive(Clone, Copy)]
struct Entry {
    id: [u8; 32],
    frame: u32,
    offset: u32,
    raw_length: u32,
}

/// Number of buckets: one per value of an ID's first two bytes.
const BUCKETS: usize = 1 << 16;

/// All known blobs, frames and packs. Built with `IndexBuilder`; immutable afterwards.
pub struct Index {
    packs: Vec<(PackId, u64)>,
    pack_pos: HashMap<PackId, u32>,
    frames: Vec<FrameRecord>,
    /// Sorted by ID, one entry per ID.
    blobs: Vec<Entry>,
    /// Further copies of blobs that are listed more than once, sorted by ID. They are rare
    /// (two backups that raced, a repack whose sweep is pending, a blob stored again because
    /// the pack of its indexed copy went missing), so only they cost a second entry.
    copies: Vec<Entry>,
    /// `blobs[bucket_start[b]..bucket_start[b + 1]]` holds the IDs starting with bucket `b`.
    bucket_start: Vec<u32>,
}

/// Collects packs, then sorts once.
#[derive(Default)]
pub struct IndexBuilder {
    /// Packs to leave out: those a deletion plan will delete (format-spec §12).
    excluded: HashSet<PackId>,
    packs: Vec<(PackId, u64)>,
    pack_pos: HashMap<PackId, u32>,
    frames: Vec<FrameRecord>,
    blobs: Vec<Entry>,
}

impl IndexBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reserve room for `blobs` more blobs, so a large index is not built by doubling.
    pub fn reserve(&mut self, blobs: usize) {
        self.blobs.reserve_exact(blobs);
    }

    /// Leave these packs out of the index: a backup must not deduplicate against a pack
    /// that a deletion plan names, and a prune must not count on one.
    pub fn excluding(mut self, packs: &HashSet<PackId>) -> Self {
        self.excluded = packs.clone();
        self
    }

    /// Add a pack's frames and blobs. A pack already added, or excluded, is ignored.
    pub fn add_pack(&mut self, pack: &IndexPack) {
        if self.pack_pos.contains_key(&pack.id) || self.excluded.contains(&pack.id) {
            return;
        }
        let pos = self.packs.len() as u32;
        self.packs.push((pack.id, pack.size));
        self.pack_pos.insert(pack.id, pos);
        for (frame_offset, f) in frame_offsets(&pack.frames) {
            let frame = self.frames.len() as u32;
            let mut offset = 0u32;
            for b in &f.blobs {
                self.blobs.push(Entry {
                    id: b.id.0,
                    frame,
                    offset,
                    raw_length: b.raw_length,
                });
                offset = offset.saturating_add(b.raw_length);
            }
            self.frames.push(FrameRecord {
                pack: pos,
                offset: frame_offset,
                length: f.length,
                raw_length: offset,
                blob_type: f.blob_type,
            });
        }
    }

    pub fn add_file(&mut self, file: &IndexFile) {
        for p in &file.packs {
            self.add_pack(p);
        }
    }

    /// Sort and freeze. A blob stored twice is served from one location; the others are
    /// kept aside (`prefer_copies` can switch to one of them).
    pub fn build(mut self) -> Index {
        self.blobs.sort_unstable_by_key(|e| e.id);
        let mut copies = Vec::new();
        self.blobs.dedup_by(|later, kept| {
            let same = later.id == kept.id;
            if same {
                copies.push(*later);
            }
            same
        });
        self.blobs.shrink_to_fit();
        copies.shrink_to_fit();
        let mut bucket_start = vec![0u32; BUCKETS + 1];
        for e in &self.blobs {
            bucket_start[bucket_of(&e.id) + 1] += 1;
        }
        for b in 0..BUCKETS {
            bucket_start[b + 1] += bucket_start[b];
        }
        Index {
            packs: self.packs,
            pack_pos: self.pack_pos,
            frames: self.frames,
            blobs: self.blobs,
            copies,
            bucket_start,
        }
    }
}

fn bucket_of(id: &[u8; 32]) -> usize {
    u16::from_be_bytes([id[0], id[1]]) as usize
}

impl Default for Index {
    fn default() -> Self {
        IndexBuilder::new().build()
    }
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// The blob's position in `blobs`.
    fn find_position(&self, id: &BlobId) -> Option<usize> {
        let b = bucket_of(&id.0);
        let start = self.bucket_start[b] as usize;
        let bucket = &self.blobs[start..self.bucket_start[b + 1] as usize];
        bucket
            .binary_search_by(|e| e.id.cmp(&id.0))
            .ok()
            .map(|k| start + k)
    }

    fn find(&self, id: &BlobId) -> Option<&Entry> {
        self.find_position(id).map(|k| &self.blobs[k])
    }

    pub fn contains(&self, id: &BlobId) -> bool {
        self.find(id).is_some()
    }

    /// The blob's position in ID order (`0..blob_count()`), as `iter` yields it: lets a
    /// caller keep one bit per blob instead of a set of IDs.
    pub fn position(&self, id: &BlobId) -> Option<usize> {
        self.find_position(id)
    }

    pub fn get(&self, id: &BlobId) -> Option<BlobLocation> {
        self.find(id).map(|e| self.locate(e))
    }

    fn locate(&self, e: &Entry) -> BlobLocation {
        let f = &self.frames[e.frame as usize];
        BlobLocation {
            blob_type: f.blob_type,
            pack: self.packs[f.pack as usize].0,
            frame_offset: f.offset,
            frame_length: f.length,
            frame_raw_length: f.raw_length,
            offset: e.offset,
            raw_length: e.raw_length,
        }
    }

    pub fn has_pack(&self, id: &PackId) -> bool {
        self.pack_pos.contains_key(id)
    }

    fn pack_of(&self, e: &Entry) -> (PackId, u64) {
        self.packs[self.frames[e.frame as usize].pack as usize]
    }

    /// The packs (with their recorded sizes) that hold a blob listed more than once: the
    /// places where `prefer_copies` may choose.
    pub fn packs_with_copies(&self) -> HashMap<PackId, u64> {
        let mut out = HashMap::new();
        for e in &self.copies {
            out.extend([self.pack_of(e)]);
            if let Some(kept) = self.find(&BlobId(e.id)) {
                out.extend([self.pack_of(kept)]);
            }
        }
        out
    }

    /// Serve every blob listed more than once from a copy in a pack that `usable` accepts,
    /// if the copy chosen so far is in one it does not. Returns how many blobs switched.
    pub fn prefer_copies(&mut self, usable: impl Fn(&PackId) -> bool) -> usize {
        let mut switched = 0;
        for j in 0..self.copies.len() {
            let Some(k) = self.find_position(&BlobId(self.copies[j].id)) else {
                continue;
            };
            if !usable(&self.pack_of(&self.blobs[k]).0) && usable(&self.pack_of(&self.copies[j]).0)
            {
                // Same ID: the sort order of both tables stays as it is.
                std::mem::swap(&mut self.blobs[k], &mut self.copies[j]);
                switched += 1;
            }
        }
        switched
    }

    /// The size recorded for a pack, if the index lists it.
    pub fn pack_size(&self, id: &PackId) -> Option<u64> {
        self.pack_pos.get(id).map(|&k| self.packs[k as usize].1)
    }

    /// Every pack with the size recorded for it.
    pub fn packs(&self) -> &[(PackId, u64)] {
        &self.packs
    }

    /// Each pack's plaintext bytes over all its frames, duplicates included: what a prune
    /// weighs the reachable bytes against.
    pub fn pack_raw_bytes(&self) -> HashMap<PackId, u64> {
        let mut out: HashMap<PackId, u64> = HashMap::with_capacity(self.packs.len());
        for f in &self.frames {
            *out.entry(self.packs[f.pack as usize].0).or_default() += f.raw_length as u64;
        }
        out
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    /// Every blob with its location, in ID order.
    pub fn iter(&self) -> impl Iterator<Item = (BlobId, BlobLocation)> + '_ {
        self.blobs.iter().map(|e| (BlobId(e.id), self.locate(e)))
    }

    /// Bytes held by the index's tables (what it costs in memory).
    pub fn memory_bytes(&self) -> usize {
        (self.blobs.capacity() + self.copies.capacity()) * std::mem::size_of::<Entry>()
            + self.frames.capacity() * std::mem::size_of::<FrameRecord>()
            + self.packs.capacity() * std::mem::size_of::<(PackId, u64)>()
            + self.pack_pos.capacity() * (std::mem::size_of::<(PackId, u32)>() + 1)
            + self.bucket_start.capacity() * 4
    }
}

/// Frames this close together in one pack are fetched with one request: reading a small gap
/// costs less than another round trip.
pub const FETCH_GAP: u64 = 1 << 20;
/// A run stops growing at this many bytes: restore and dump hold one run per thread, and
/// whole 16 MiB packs per thread showed as the largest item of restore's peak memory.
pub const MAX_RUN: u64 = 4 << 20;

/// Split `items`, sorted by pack, frame and offset, into runs of blobs in the same pack whose
/// frames lie at most `FETCH_GAP` apart and span at most `MAX_RUN` bytes (or one frame):
/// each run can be fetched with one ranged read.
pub fn fetch_runs<T>(items: &[T], loc: impl Fn(&T) -> &BlobLocation) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut start = 0;
    for k in 1..=items.len() {
        let split = k == items.len() || {
            let (first, a, b) = (loc(&items[start]), loc(&items[k - 1]), loc(&items[k]));
            let end = b.frame_offset as u64 + b.frame_length as u64;
            a.pack != b.pack
                || b.frame_offset as u64 > a.frame_offset as u64 + a.frame_length as u64 + FETCH_GAP
                || (b.frame_key() != a.frame_key()
                    && end.saturating_sub(first.frame_offset as u64) > MAX_RUN)
        };
        if split {
            out.push(&items[start..k]);
            start = k;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::{Frame, FrameBlob};

    fn id(n: u32) -> BlobId {
        BlobId(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    #[test]
    fn finds_every_blob_and_nothing_else() {
        let mut b = IndexBuilder::new();
        for p in 0..20u32 {
            let frames = (0..5u32)
                .map(|f| Frame {
                    blob_type: BlobType::Data,
                    length: 100,
                    blobs: (0..7u32)
                        .map(|k| FrameBlob {
                            id: id(p * 1000 + f * 10 + k),
                            raw_length: 10 + k,
                        })
                        .collect(),
                })
                .collect();
            b.add_pack(&IndexPack {
                id: PackId(id(1_000_000 + p).0),
                size: 600,
                frames,
            });
        }
        let index = b.build();
        assert_eq!(index.blob_count(), 20 * 5 * 7);
        let loc = index.get(&id(3 * 1000 + 2 * 10 + 4)).unwrap();
        assert_eq!(loc.pack, PackId(id(1_000_003).0));
        assert_eq!(loc.frame_offset, 200);
        assert_eq!(loc.frame_length, 100);
        assert_eq!(loc.offset, 10 + 11 + 12 + 13);
        assert_eq!(loc.raw_length, 14);
        assert_eq!(loc.frame_raw_length, (10..17).sum::<u32>());
        assert!(!index.contains(&id(999_999)));
        assert_eq!(index.iter().count(), 700);
    }

    fn pack_of_blobs(n: u32, blobs: &[u32]) -> IndexPack {
        IndexPack {
            id: PackId(id(2_000_000 + n).0),
            size: 100,
            frames: vec![Frame {
                blob_type: BlobType::Data,
                length: 100,
                blobs: blobs
                    .iter()
                    .map(|b| FrameBlob {
                        id: id(*b),
                        raw_length: 10,
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn a_blob_listed_twice_is_served_from_a_usable_copy() {
        let (a, b) = (pack_of_blobs(1, &[1, 2, 3]), pack_of_blobs(2, &[2, 3, 4]));
        for order in [[&a, &b], [&b, &a]] {
            let mut builder = IndexBuilder::new();
            for p in order {
                builder.add_pack(p);
            }
            let mut index = builder.build();
            assert_eq!(index.blob_count(), 4);
            let both: HashMap<PackId, u64> = [(a.id, 100), (b.id, 100)].into();
            assert_eq!(index.packs_with_copies(), both);
            // Whichever copy was chosen, a usable one wins, and the others stay put.
            for gone in [a.id, b.id] {
                index.prefer_copies(|p| *p != gone);
                for n in [2, 3] {
                    assert_ne!(index.get(&id(n)).unwrap().pack, gone);
                    assert_eq!(
                        index.get(&id(n)).unwrap().offset,
                        (n - 2 + (gone == b.id) as u32) * 10
                    );
                }
                assert_eq!(index.get(&id(1)).unwrap().pack, a.id);
                assert_eq!(index.get(&id(4)).unwrap().pack, b.id);
            }
            // Neither usable: nothing to switch to.
            assert_eq!(index.prefer_copies(|_| false), 0);
        }
        let mut single = IndexBuilder::new();
        single.add_pack(&a);
        assert!(single.build().packs_with_copies().is_empty());
    }
}
