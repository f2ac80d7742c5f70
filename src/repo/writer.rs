//! Saving blobs during a backup: deduplicate against the index and against blobs saved in
//! this session, seal, pack, upload, and write index files for the uploaded packs.
//! Safe to call from many threads at once; CPU work happens outside the lock.

use super::{FinishedPack, PackWriter, Repository};
use crate::backend::{ObjectKind, ObjectName};
use crate::error::{Error, Result};
use crate::format::index::{IndexFile, IndexPack};
use crate::format::pack::{self, PackEntry};
use crate::format::tree::{ChunkList, Content, MAX_LIST_LEVEL};
use crate::format::BlobType;
use crate::id::BlobId;
use crate::index::Index;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// A file with at most this many chunks lists them in its tree node; longer lists go into
/// chunk-list blobs, so an unchanged part of a huge file's list is stored only once.
const INLINE_CHUNKS: usize = 64;
/// Write an index file after this many packs, so an interrupted backup loses little.
const PACKS_PER_INDEX: usize = 16;

#[derive(Debug, Clone, Copy, Default)]
pub struct SaverStats {
    pub blobs_added: u64,
    pub bytes_added_raw: u64,
    pub bytes_added_stored: u64,
    pub packs_added: u64,
}

struct State {
    packer: PackWriter,
    /// Blobs sealed in this session (packed or uploaded, not yet in `known`).
    pending: HashSet<BlobId>,
    /// Uploaded packs not yet described by an index file.
    unindexed: Vec<IndexPack>,
    stats: SaverStats,
}

pub struct BlobSaver<'r> {
    repo: &'r Repository,
    known: Arc<Index>,
    state: Mutex<State>,
}

impl<'r> BlobSaver<'r> {
    pub fn new(repo: &'r Repository) -> Result<Self> {
        Ok(BlobSaver {
            repo,
            known: repo.index()?,
            state: Mutex::new(State {
                packer: PackWriter::new(repo.config().pack_target),
                pending: HashSet::new(),
                unindexed: Vec::new(),
                stats: SaverStats::default(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("saver lock poisoned")
    }

    /// Is this blob already stored or being stored?
    pub fn is_known(&self, id: &BlobId) -> bool {
        self.known.contains(id) || self.lock().pending.contains(id)
    }

    /// Store a blob unless it exists; returns its ID.
    pub fn save(&self, blob_type: BlobType, plaintext: &[u8]) -> Result<BlobId> {
        if plaintext.len() > crate::compress::MAX_BLOB_SIZE {
            return Err(Error::invalid(format!(
                "a {} blob of {} bytes exceeds the format's limit (a directory with too many entries?)",
                blob_type.name(),
                plaintext.len()
            )));
        }
        let keys = self.repo.keys();
        let id = keys.blob_id(blob_type as u8, plaintext);
        if self.is_known(&id) {
            return Ok(id);
        }
        let sealed = pack::seal_blob(
            keys,
            blob_type,
            plaintext,
            self.repo.config().zstd_level as i32,
        );
        let entry = PackEntry {
            blob_type,
            id,
            length: sealed.len() as u32,
            raw_length: plaintext.len() as u32,
        };
        let finished = {
            let mut st = self.lock();
            if !st.pending.insert(id) {
                return Ok(id); // another thread stored it meanwhile
            }
            st.stats.blobs_added += 1;
            st.stats.bytes_added_raw += plaintext.len() as u64;
            st.packer.add(keys, entry, &sealed)?
        };
        if let Some(p) = finished {
            self.upload(p)?;
        }
        Ok(id)
    }

    fn upload(&self, pack: FinishedPack) -> Result<()> {
        let name = ObjectName::new(ObjectKind::Pack, pack.id.0);
        let size = pack.bytes.len() as u64;
        self.repo.backend().put(&name, pack.bytes.into())?;
        let checkpoint = {
            let mut st = self.lock();
            st.stats.packs_added += 1;
            st.stats.bytes_added_stored += size;
            st.unindexed.push(pack.index);
            if st.unindexed.len() >= PACKS_PER_INDEX {
                std::mem::take(&mut st.unindexed)
            } else {
                vec![]
            }
        };
        if !checkpoint.is_empty() {
            self.write_index(checkpoint)?;
        }
        Ok(())
    }

    fn write_index(&self, packs: Vec<IndexPack>) -> Result<()> {
        let file = IndexFile {
            supersedes: vec![],
            packs,
        };
        let (_, size) = self.repo.write_index(&file)?;
        self.lock().stats.bytes_added_stored += size;
        Ok(())
    }

    /// Upload the last partial pack and index everything uploaded. After this returns, every
    /// blob saved so far is durable and findable: a snapshot may refer to it.
    pub fn flush(&self) -> Result<()> {
        let last = {
            let mut st = self.lock();
            if st.packer.is_empty() {
                None
            } else {
                Some(st.packer.finish(self.repo.keys())?)
            }
        };
        if let Some(p) = last {
            self.upload(p)?;
        }
        let rest = std::mem::take(&mut self.lock().unindexed);
        if !rest.is_empty() {
            self.write_index(rest)?;
        }
        self.repo.invalidate_index();
        Ok(())
    }

    pub fn stats(&self) -> SaverStats {
        self.lock().stats
    }

    /// Describe a file's content by its chunk IDs: inline when short, otherwise through
    /// chunk-list blobs grouped at content-defined points (an ID whose last byte has its six
    /// low bits zero ends a group), so a change in a huge file rewrites only nearby lists.
    pub fn save_content(&self, ids: Vec<BlobId>) -> Result<Content> {
        if ids.len() <= INLINE_CHUNKS {
            return Ok(Content::Chunks(ids));
        }
        let mut level = 0u8;
        let mut current = ids;
        loop {
            if current.len() <= INLINE_CHUNKS {
                let list = ChunkList {
                    level,
                    ids: current,
                };
                let id = self.save(BlobType::ChunkList, &list.encode())?;
                return Ok(Content::ChunkList { level, id });
            }
            if level >= MAX_LIST_LEVEL {
                return Err(Error::invalid("file has too many chunks to list"));
            }
            let mut next = Vec::new();
            let mut group = Vec::new();
            for id in current {
                group.push(id);
                if id.0[31] & 0x3f == 0 || group.len() >= 1024 {
                    let list = ChunkList {
                        level,
                        ids: std::mem::take(&mut group),
                    };
                    next.push(self.save(BlobType::ChunkList, &list.encode())?);
                }
            }
            if !group.is_empty() {
                next.push(self.save(
                    BlobType::ChunkList,
                    &ChunkList { level, ids: group }.encode(),
                )?);
            }
            current = next;
            level += 1;
        }
    }
}
