//! Archive a directory tree: one tree blob per directory, bottom up. Entries of a directory
//! are processed in parallel. A file whose size, mtime, ctime and inode match the parent
//! snapshot's node is not read at all: its content is taken from the parent.

use super::stream::{store_bytes, store_stream};
use super::Counters;
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{Content, Node, NodeKind, Tree};
use crate::format::BlobType;
use crate::id::BlobId;
use crate::progress::Progress;
use crate::repo::{BlobSaver, Repository};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The paths to back up as a trie from `/`; a marked node is backed up whole.
#[derive(Default)]
pub struct PathTrie {
    pub target: bool,
    pub children: BTreeMap<Vec<u8>, PathTrie>,
}

impl PathTrie {
    pub fn insert(&mut self, path: &Path) {
        let mut node = self;
        for c in path.components().skip(1) {
            node = node
                .children
                .entry(c.as_os_str().as_bytes().to_vec())
                .or_default();
        }
        node.target = true;
    }
}

pub struct Walker<'a, 'r> {
    pub repo: &'r Repository,
    pub saver: &'a BlobSaver<'r>,
    pub excludes: &'a [glob::Pattern],
    pub cancel: &'a AtomicBool,
    pub progress: &'a dyn Progress,
    pub counters: &'a Counters,
}

fn interrupted() -> Error {
    Error::new(ErrorKind::Interrupted, "interrupted")
}

/// Nanoseconds since the epoch. i64 spans the years 1677..2262: a time outside is clamped,
/// not wrapped (and does not panic).
fn time_ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// Tree-node metadata from `lstat`, without content.
pub fn node_from_metadata(name: &[u8], meta: &Metadata) -> Node {
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        NodeKind::File
    } else if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::CharDevice
    } else if ft.is_block_device() {
        NodeKind::BlockDevice
    } else {
        NodeKind::Socket
    };
    Node {
        name: name.to_vec(),
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_ns: time_ns(meta.mtime(), meta.mtime_nsec()),
        ctime_ns: time_ns(meta.ctime(), meta.ctime_nsec()),
        size: if kind == NodeKind::File {
            meta.size()
        } else {
            0
        },
        dev: meta.dev(),
        inode: meta.ino(),
        nlink: meta.nlink().min(u32::MAX as u64) as u32,
        rdev: meta.rdev(),
        link_target: vec![],
        content: Content::None,
    }
}

impl Walker<'_, '_> {
    fn warn(&self, path: &Path, what: &str, err: impl std::fmt::Display) {
        self.counters.read_errors.fetch_add(1, Ordering::Relaxed);
        self.progress
            .warn(&format!("{}: {what}: {err}", path.display()));
    }

    fn is_excluded(&self, path: &Path) -> bool {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let opts = glob::MatchOptions::new();
        self.excludes.iter().any(|p| {
            if p.as_str().contains('/') {
                p.matches_path_with(path, opts)
            } else {
                p.matches_with(&name, opts)
            }
        })
    }

    fn parent_subtree(&self, parent: Option<&Node>) -> Option<Tree> {
        match parent {
            Some(Node {
                kind: NodeKind::Dir,
                content: Content::Subtree(id),
                ..
            }) => self.repo.read_tree(id).ok(),
            _ => None,
        }
    }

    /// Save the virtual directories leading to the targets, then the targets themselves.
    pub fn save_trie(&self, dir: &Path, trie: &PathTrie, parent: Option<&Tree>) -> Result<BlobId> {
        let nodes: Vec<Result<Option<Node>>> = trie
            .children
            .par_iter()
            .map(|(name, child)| {
                let path = dir.join(OsStr::from_bytes(name));
                let parent_node = parent.and_then(|t| t.get(name));
                if child.target {
                    return self.save_entry(&path, name, parent_node);
                }
                let meta = match std::fs::symlink_metadata(&path) {
                    Ok(m) => m,
                    Err(e) => {
                        self.warn(&path, "cannot read", e);
                        return Ok(None);
                    }
                };
                let sub_parent = self.parent_subtree(parent_node);
                let id = self.save_trie(&path, child, sub_parent.as_ref())?;
                let mut node = node_from_metadata(name, &meta);
                node.kind = NodeKind::Dir;
                node.content = Content::Subtree(id);
                Ok(Some(node))
            })
            .collect();
        self.save_tree(nodes)
    }

    fn save_tree(&self, nodes: Vec<Result<Option<Node>>>) -> Result<BlobId> {
        let mut kept = Vec::with_capacity(nodes.len());
        for n in nodes {
            if let Some(n) = n? {
                kept.push(n);
            }
        }
        let tree = Tree::new(kept)?;
        self.saver.save(BlobType::Tree, &tree.encode())
    }

    /// Save one file-system entry (recursively for directories). `Ok(None)` means it could
    /// not be read: a warning was reported and the entry is left out.
    pub fn save_entry(
        &self,
        path: &Path,
        name: &[u8],
        parent: Option<&Node>,
    ) -> Result<Option<Node>> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(interrupted());
        }
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.warn(path, "cannot read", e);
                return Ok(None);
            }
        };
        let mut node = node_from_metadata(name, &meta);
        self.progress.item(&path.to_string_lossy());
        match node.kind {
            NodeKind::Dir => {
                let entries = match std::fs::read_dir(path) {
                    Ok(rd) => rd,
                    Err(e) => {
                        self.warn(path, "cannot list directory", e);
                        return Ok(None);
                    }
                };
                let mut children: Vec<(Vec<u8>, PathBuf)> = Vec::new();
                for entry in entries {
                    match entry {
                        Ok(e) => {
                            let p = e.path();
                            if !self.is_excluded(&p) {
                                children.push((e.file_name().as_bytes().to_vec(), p));
                            }
                        }
                        Err(e) => self.warn(path, "cannot list directory", e),
                    }
                }
                let parent_tree = self.parent_subtree(parent);
                let nodes: Vec<Result<Option<Node>>> = children
                    .par_iter()
                    .map(|(n, p)| {
                        self.save_entry(p, n, parent_tree.as_ref().and_then(|t| t.get(n)))
                    })
                    .collect();
                node.content = Content::Subtree(self.save_tree(nodes)?);
                self.counters.dirs.fetch_add(1, Ordering::Relaxed);
            }
            NodeKind::File => {
                if let Some(content) =
                    unchanged_content(&node, parent).filter(|c| self.still_stored(c))
                {
                    node.content = content;
                    self.counters
                        .files_unmodified
                        .fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .total_bytes
                        .fetch_add(node.size, Ordering::Relaxed);
                    self.progress.advance(node.size);
                    return Ok(Some(node));
                }
                let file = match std::fs::File::open(path) {
                    Ok(f) => f,
                    Err(e) => {
                        self.warn(path, "cannot open", e);
                        return Ok(None);
                    }
                };
                let params = self.repo.config().files_chunker;
                let gear = self.repo.keys().chunker_gear();
                let stored = if node.size <= params.max as u64 {
                    read_small(file, node.size).and_then(|data| {
                        let ids = store_bytes(self.saver, &data, params, gear, self.progress)?;
                        Ok((ids, data.len() as u64))
                    })
                } else {
                    store_stream(self.saver, file, params, gear, self.cancel, self.progress)
                };
                let (ids, size) = match stored {
                    Ok(r) => r,
                    Err(e) if e.kind() == ErrorKind::Io => {
                        self.warn(path, "cannot read", e);
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                };
                // The file may have grown or shrunk while read: record what was stored.
                node.size = size;
                node.content = self.saver.save_content(ids)?;
                let counter = if parent.is_some() {
                    &self.counters.files_changed
                } else {
                    &self.counters.files_new
                };
                counter.fetch_add(1, Ordering::Relaxed);
                self.counters.total_bytes.fetch_add(size, Ordering::Relaxed);
                self.counters.bytes_read.fetch_add(size, Ordering::Relaxed);
            }
            NodeKind::Symlink => match std::fs::read_link(path) {
                Ok(t) => node.link_target = t.as_os_str().as_bytes().to_vec(),
                Err(e) => {
                    self.warn(path, "cannot read link", e);
                    return Ok(None);
                }
            },
            _ => {}
        }
        Ok(Some(node))
    }
}

impl Walker<'_, '_> {
    /// May an unchanged file's content be taken from the parent? Only if every blob it
    /// names is in this backup's index, which leaves out the packs that deletion plans name
    /// (format-spec §12, B2): otherwise a prune may delete them, and the file is read again.
    fn still_stored(&self, content: &Content) -> bool {
        match content {
            Content::Chunks(ids) => ids.iter().all(|id| self.saver.is_known(id)),
            Content::ChunkList { .. } => self
                .repo
                .content_blobs(content)
                .is_ok_and(|ids| ids.iter().all(|id| self.saver.is_known(id))),
            _ => true,
        }
    }
}

/// The parent's content, if the file is evidently the same one, unchanged.
fn unchanged_content(node: &Node, parent: Option<&Node>) -> Option<Content> {
    let p = parent?;
    let same = p.kind == NodeKind::File
        && p.size == node.size
        && p.mtime_ns == node.mtime_ns
        && p.ctime_ns == node.ctime_ns
        && p.inode == node.inode
        && p.dev == node.dev;
    same.then(|| p.content.clone())
}

/// Read a file expected to be `size` bytes. A file that grew meanwhile is read to its end;
/// the result is what the snapshot records.
fn read_small(mut file: std::fs::File, size: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut data = Vec::with_capacity(size as usize);
    file.read_to_end(&mut data)
        .map_err(|e| Error::io("reading", e))?;
    Ok(data)
}
