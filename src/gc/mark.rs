//! Marking: which blobs the snapshots reach. One bit per blob of the index (in its ID
//! order), so marking a repository of ten million blobs costs 1.2 MB besides the index.
//! Trees and chunk lists are read once each however many snapshots share them, so the
//! walk costs what the snapshots' distinct metadata costs, not snapshots × tree size.

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{ChunkList, Content};
use crate::format::BlobType;
use crate::id::{BlobId, SnapshotId};
use crate::index::Index;
use crate::progress::Progress;
use crate::repo::Repository;
use std::sync::atomic::AtomicBool;

/// The blobs found reachable, as bits over `index`'s positions, and the reachable blobs
/// the index lacks.
pub struct Marks {
    bits: Vec<u64>,
    pub missing: Vec<BlobId>,
}

impl Marks {
    pub fn new(index: &Index) -> Self {
        Marks {
            bits: vec![0; index.blob_count().div_ceil(64)],
            missing: Vec::new(),
        }
    }

    pub fn is_set(&self, pos: usize) -> bool {
        self.bits[pos / 64] & (1 << (pos % 64)) != 0
    }

    /// Set the bit; false if it was set already.
    fn set(&mut self, pos: usize) -> bool {
        let (word, bit) = (pos / 64, 1u64 << (pos % 64));
        let fresh = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        fresh
    }

    /// Mark `id`; true if it is newly marked (so its children still need a visit).
    fn mark(&mut self, index: &Index, id: &BlobId) -> bool {
        match index.position(id) {
            Some(pos) => self.set(pos),
            None => {
                self.missing.push(*id);
                false
            }
        }
    }
}

/// Mark everything `snapshots` reach, reading trees and chunk lists through `repo` (whose
/// loaded index must be `index`). A blob the index lacks is recorded in `missing` and not
/// descended into. Any other failure (a damaged tree) is an error: nothing may be deleted
/// while what is reachable is uncertain.
pub fn mark(
    repo: &Repository,
    index: &Index,
    snapshots: &[(SnapshotId, Snapshot)],
    marks: &mut Marks,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<()> {
    progress.start_items("marking", Some(snapshots.len() as u64));
    let mut stack = Vec::new();
    for (id, snap) in snapshots {
        super::check_cancel(cancel)?;
        if marks.mark(index, &snap.root) {
            stack.push(snap.root);
        }
        while let Some(tree_id) = stack.pop() {
            let tree = repo
                .read_tree(&tree_id)
                .map_err(|e| e.context(format!("snapshot {}", id.short())))?;
            for node in &tree.nodes {
                match &node.content {
                    Content::None => {}
                    Content::Chunks(ids) => {
                        for c in ids {
                            marks.mark(index, c);
                        }
                    }
                    Content::ChunkList { level, id } => {
                        if marks.mark(index, id) {
                            mark_list(repo, index, *level, id, marks)?;
                        }
                    }
                    Content::Subtree(sub) => {
                        if marks.mark(index, sub) {
                            stack.push(*sub);
                        }
                    }
                }
            }
        }
        progress.advance(1);
    }
    progress.finish();
    Ok(())
}

fn mark_list(
    repo: &Repository,
    index: &Index,
    level: u8,
    id: &BlobId,
    marks: &mut Marks,
) -> Result<()> {
    let list = ChunkList::decode(&repo.read_blob(BlobType::ChunkList, id)?)?;
    if list.level != level {
        return Err(Error::corrupt(format!(
            "chunk list {} has the wrong level",
            id.short()
        )));
    }
    for child in &list.ids {
        if marks.mark(index, child) && level > 0 {
            mark_list(repo, index, level - 1, child, marks)?;
        }
    }
    Ok(())
}
