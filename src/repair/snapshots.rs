//! Step 4 of repair: the snapshots that need data that is gone, and (on request) their
//! removal. A snapshot is broken when a tree, chunk list or chunk it reaches is in no index
//! file, or in a pack the listing lacks or lists with another size, or when a tree or chunk
//! list it reaches cannot be read; also when the snapshot object itself is damaged.
//!
//! Broken snapshots are removed whole, not rewritten without their lost files (as restic's
//! `repair snapshots` does): what is left of one can still be restored first (`restore`
//! restores every file it can and names the others), a snapshot that silently lacks files is
//! worse than one that is plainly gone, and the next backup of the same source stores the
//! lost files again. Removing is only what `forget` does (format-spec §8.5).

use super::index::Mended;
use super::{BrokenSnapshot, RepairReport};
use crate::backend::{ObjectKind, ObjectName};
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{ChunkList, Content, Tree};
use crate::format::BlobType;
use crate::id::{BlobId, SnapshotId};
use crate::progress::Progress;
use crate::repo::Repository;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;

pub(super) fn find_broken(
    repo: &Repository,
    mended: &Mended,
    snapshots: &[(SnapshotId, Snapshot)],
    damaged: &[(SnapshotId, Error)],
    report: &mut RepairReport,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<()> {
    for (id, e) in damaged {
        report.broken_snapshots.push(BrokenSnapshot {
            snapshot: id.to_hex(),
            time_ns: 0,
            host: String::new(),
            paths: vec![],
            lost: 0,
            reason: format!("the snapshot object is damaged: {e}"),
        });
    }
    let mut walk = Walk {
        repo,
        mended,
        sound: HashSet::new(),
        bad: HashMap::new(),
    };
    progress.start_items("checking snapshots", Some(snapshots.len() as u64));
    for (id, snap) in snapshots {
        crate::gc::check_cancel(cancel)?;
        let mut lost = Lost::default();
        walk.tree(&snap.root, &mut lost);
        if let Some(reason) = lost.reason {
            report.broken_snapshots.push(BrokenSnapshot {
                snapshot: id.to_hex(),
                time_ns: snap.time_ns,
                host: snap.host.clone(),
                paths: snap
                    .paths
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect(),
                lost: lost.count,
                reason,
            });
        }
        progress.advance(1);
    }
    progress.finish();
    Ok(())
}

/// Delete the snapshot objects of the broken snapshots, after a tombstone that names them
/// (format-spec §5.12), so that `sync` does not copy them back from another region.
pub(super) fn forget(repo: &Repository, dry_run: bool, report: &mut RepairReport) -> Result<()> {
    let mut doomed = Vec::with_capacity(report.broken_snapshots.len());
    for b in &report.broken_snapshots {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&b.snapshot, &mut hash)
            .map_err(|e| Error::corrupt(format!("snapshot ID {}: {e}", b.snapshot)))?;
        doomed.push(ObjectName::new(ObjectKind::Snapshot, hash));
    }
    if dry_run || doomed.is_empty() {
        report.snapshots_forgotten += doomed.len() as u64;
        return Ok(());
    }
    for (name, deleted) in repo.bury(&doomed)? {
        deleted.map_err(|e| e.context(format!("deleting {name} (its tombstone is stored)")))?;
        report.snapshots_forgotten += 1;
    }
    Ok(())
}

/// What a walk found lost below a tree.
#[derive(Default)]
struct Lost {
    /// Files and directories that cannot be restored (a lost directory counts once).
    count: u64,
    reason: Option<String>,
}

impl Lost {
    fn add(&mut self, why: String) {
        self.count += 1;
        self.reason.get_or_insert(why);
    }
}

struct Walk<'a> {
    repo: &'a Repository,
    mended: &'a Mended,
    /// Trees and chunk lists whose whole content is there: shared by the snapshots, so an
    /// unchanged subtree is walked once per repair, not once per snapshot.
    sound: HashSet<BlobId>,
    /// Blobs known to be lost, with why.
    bad: HashMap<BlobId, String>,
}

impl Walk<'_> {
    /// Is the blob indexed, with the type expected, in a pack that is there with its
    /// recorded size?
    fn blob(&mut self, blob_type: BlobType, id: &BlobId) -> std::result::Result<(), String> {
        if let Some(why) = self.bad.get(id) {
            return Err(why.clone());
        }
        let index = &self.mended.index;
        let why = match index.get(id) {
            // Repair indexed every pack it could read: the blob is in none of them.
            None => format!(
                "{} blob {} is in no pack that is left and readable",
                blob_type.name(),
                id.short()
            ),
            Some(loc) if loc.blob_type != blob_type => format!(
                "blob {} is a {} blob, expected {}",
                id.short(),
                loc.blob_type.name(),
                blob_type.name()
            ),
            Some(loc) => match self.mended.packs.get(&loc.pack) {
                Some(size) if Some(*size) == index.pack_size(&loc.pack) => return Ok(()),
                Some(_) => format!(
                    "{} blob {}: its pack {} has another size than the index records",
                    blob_type.name(),
                    id.short(),
                    loc.pack.short()
                ),
                None => format!(
                    "{} blob {}: its pack {} is missing",
                    blob_type.name(),
                    id.short(),
                    loc.pack.short()
                ),
            },
        };
        self.bad.insert(*id, why.clone());
        Err(why)
    }

    /// A blob's plaintext, read through the mended index.
    fn read(&mut self, blob_type: BlobType, id: &BlobId) -> std::result::Result<Vec<u8>, String> {
        self.blob(blob_type, id)?;
        self.repo
            .read_blob_with(&self.mended.index, blob_type, id)
            .map_err(|e| {
                let why = e.to_string();
                self.bad.insert(*id, why.clone());
                why
            })
    }

    fn tree(&mut self, id: &BlobId, lost: &mut Lost) {
        if self.sound.contains(id) {
            return;
        }
        let tree = match self
            .read(BlobType::Tree, id)
            .and_then(|b| Tree::decode(&b).map_err(|e| e.to_string()))
        {
            Ok(t) => t,
            Err(why) => return lost.add(why),
        };
        let before = lost.count;
        for node in &tree.nodes {
            let found = match &node.content {
                Content::None => Ok(()),
                Content::Subtree(sub) => {
                    self.tree(sub, lost);
                    Ok(())
                }
                Content::Chunks(ids) => ids.iter().try_for_each(|c| self.blob(BlobType::Data, c)),
                Content::ChunkList { level, id } => self.list(*level, id),
            };
            if let Err(why) = found {
                lost.add(why);
            }
        }
        if lost.count == before {
            self.sound.insert(*id);
        }
    }

    fn list(&mut self, level: u8, id: &BlobId) -> std::result::Result<(), String> {
        if self.sound.contains(id) {
            return Ok(());
        }
        let list = self
            .read(BlobType::ChunkList, id)
            .and_then(|b| ChunkList::decode(&b).map_err(|e| e.to_string()))?;
        if list.level != level {
            return Err(format!("chunk list {} has the wrong level", id.short()));
        }
        for child in &list.ids {
            if level == 0 {
                self.blob(BlobType::Data, child)?;
            } else {
                self.list(level - 1, child)?;
            }
        }
        self.sound.insert(*id);
        Ok(())
    }
}
