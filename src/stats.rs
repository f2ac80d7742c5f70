//! The stats use case: how big the repository is, and how much deduplication and
//! compression save.

use crate::backend::ObjectKind;
use crate::error::Result;
use crate::format::BlobType;
use crate::repo::Repository;
use serde::Serialize;

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub snapshots: u64,
    /// Sum over snapshots of the file bytes each would restore.
    pub total_restore_bytes: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    pub chunk_list_blobs: u64,
    /// Plaintext bytes of all unique blobs.
    pub unique_raw_bytes: u64,
    /// Bytes of all unique blobs as stored (compressed and sealed).
    pub unique_stored_bytes: u64,
    pub packs: u64,
    /// Every object on the backend, as stored.
    pub repository_bytes: u64,
    /// total_restore_bytes / unique_raw_bytes.
    pub dedup_ratio: f64,
    /// unique_raw_bytes / unique_stored_bytes.
    pub compression_ratio: f64,
}

pub fn stats(repo: &Repository) -> Result<Stats> {
    let mut s = Stats::default();
    for (_, snap) in repo.snapshots()? {
        s.snapshots += 1;
        s.total_restore_bytes += snap.summary.total_bytes;
    }
    let index = repo.index()?;
    for (_, loc) in index.iter() {
        match loc.blob_type {
            BlobType::Data => s.data_blobs += 1,
            BlobType::Tree => s.tree_blobs += 1,
            BlobType::ChunkList => s.chunk_list_blobs += 1,
        }
        s.unique_raw_bytes += loc.raw_length as u64;
        // A blob's share of its frame's stored bytes (frames compress blobs together).
        s.unique_stored_bytes += (loc.frame_length as u64 * loc.raw_length as u64)
            .checked_div(loc.frame_raw_length as u64)
            .unwrap_or(0);
    }
    s.packs = index.packs().len() as u64;
    for kind in ObjectKind::ALL {
        s.repository_bytes += repo
            .backend()
            .list(kind)?
            .iter()
            .map(|(_, n)| n)
            .sum::<u64>();
    }
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    s.dedup_ratio = ratio(s.total_restore_bytes, s.unique_raw_bytes);
    s.compression_ratio = ratio(s.unique_raw_bytes, s.unique_stored_bytes);
    Ok(s)
}
