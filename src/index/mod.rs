//! The blob index: for every blob, the pack that holds it and where. Built from the index
//! files on the backend, kept between runs in the disposable SQLite cache (`cache.rs`).

pub mod cache;

use crate::format::index::{IndexFile, IndexPack};
use crate::format::BlobType;
use crate::id::{BlobId, PackId};
use std::collections::HashMap;

/// Where one blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    pub blob_type: BlobType,
    pub pack: PackId,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
}

/// Compact in-memory entry: the pack is an index into `Index::packs`.
#[derive(Clone, Copy)]
struct Entry {
    pack: u32,
    offset: u32,
    length: u32,
    raw_length: u32,
    blob_type: BlobType,
}

/// All known blobs and packs.
#[derive(Default)]
pub struct Index {
    packs: Vec<(PackId, u64)>,
    pack_pos: HashMap<PackId, u32>,
    blobs: HashMap<BlobId, Entry>,
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a pack's blobs. A blob already known keeps its first location.
    pub fn add_pack(&mut self, pack: &IndexPack) {
        let pos = *self.pack_pos.entry(pack.id).or_insert_with(|| {
            self.packs.push((pack.id, pack.size));
            (self.packs.len() - 1) as u32
        });
        for b in &pack.blobs {
            self.blobs.entry(b.id).or_insert(Entry {
                pack: pos,
                offset: b.offset,
                length: b.length,
                raw_length: b.raw_length,
                blob_type: b.blob_type,
            });
        }
    }

    pub fn add_file(&mut self, file: &IndexFile) {
        for p in &file.packs {
            self.add_pack(p);
        }
    }

    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
    }

    pub fn get(&self, id: &BlobId) -> Option<BlobLocation> {
        self.blobs.get(id).map(|e| BlobLocation {
            blob_type: e.blob_type,
            pack: self.packs[e.pack as usize].0,
            offset: e.offset,
            length: e.length,
            raw_length: e.raw_length,
        })
    }

    pub fn has_pack(&self, id: &PackId) -> bool {
        self.pack_pos.contains_key(id)
    }

    /// Every pack with the size recorded for it.
    pub fn packs(&self) -> &[(PackId, u64)] {
        &self.packs
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    /// Every blob with its location.
    pub fn iter(&self) -> impl Iterator<Item = (BlobId, BlobLocation)> + '_ {
        self.blobs
            .keys()
            .map(|id| (*id, self.get(id).expect("key exists")))
    }
}

/// Blobs this close together in one pack are fetched with one request: reading a small gap
/// costs less than another round trip.
pub const FETCH_GAP: u64 = 1 << 20;

/// Split `items`, sorted by pack then offset, into runs of blobs in the same pack with gaps of
/// at most `FETCH_GAP` between them: each run can be fetched with one ranged read.
pub fn fetch_runs<T>(items: &[T], loc: impl Fn(&T) -> &BlobLocation) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut start = 0;
    for k in 1..=items.len() {
        let split = k == items.len() || {
            let (a, b) = (loc(&items[k - 1]), loc(&items[k]));
            a.pack != b.pack || b.offset as u64 > a.offset as u64 + a.length as u64 + FETCH_GAP
        };
        if split {
            out.push(&items[start..k]);
            start = k;
        }
    }
    out
}
