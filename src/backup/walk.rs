//! Archive a directory tree: one tree blob per directory, bottom up. Entries of a directory
//! are processed in parallel. A file whose size, mtime, ctime and inode match the parent
//! snapshot's node is not read at all: its content is taken from the parent.
//!
//! Every entry is reached through its directory's descriptor (see `dirfd`): a symlink or a
//! FIFO swapped in while the walk runs is never followed or read, and paths, kept only for
//! messages and `--exclude`, may be of any length.

use super::dirfd::{self, OpenError};
use super::stream::store_file;
use super::Counters;
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{Content, Node, NodeKind, Tree};
use crate::format::BlobType;
use crate::id::BlobId;
use crate::progress::Progress;
use crate::repo::{BlobSaver, Repository};
use rayon::prelude::*;
use rustix::fs::Stat;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
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
    pub excludes: &'a super::exclude::ExcludeRules,
    pub cancel: &'a AtomicBool,
    pub progress: &'a dyn Progress,
    pub counters: &'a Counters,
}

/// Folders nested deeper below `/` than this are left out with a warning: the walk recurses
/// per level (as do restore and `ls`), and an unprivileged user can make a tree of any depth.
/// Paths may still be far longer than PATH_MAX (4,096 bytes).
const MAX_DEPTH: usize = 1024;

/// Stack size of the walk's threads: about 2 KiB per level, for MAX_DEPTH levels on each of
/// the nested jobs a waiting worker may take on.
const WALK_STACK: usize = 64 << 20;

fn interrupted() -> Error {
    Error::new(ErrorKind::Interrupted, "interrupted")
}

impl Walker<'_, '_> {
    fn warn(&self, path: &Path, what: &str, err: impl std::fmt::Display) {
        self.counters.read_errors.fetch_add(1, Ordering::Relaxed);
        self.progress
            .warn(&format!("{}: {what}: {err}", path.display()));
    }

    fn warn_open(&self, path: &Path, err: OpenError) {
        self.counters.read_errors.fetch_add(1, Ordering::Relaxed);
        self.progress.warn(&format!("{}: {err}", path.display()));
    }

    fn is_excluded(&self, path: &Path) -> bool {
        self.excludes.excludes_path(path)
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

    /// Save the paths of `trie`, walking from `/` through directory descriptors; returns the
    /// root tree. `parent` is the parent snapshot's root tree.
    pub fn save_paths(&self, trie: &PathTrie, parent: Option<&Tree>) -> Result<BlobId> {
        dirfd::raise_open_files_limit();
        // The walk recurses once per folder level, and rayon's threads have 2 MiB stacks by
        // default: a tree about 1,200 levels deep overflowed one, which aborts the process.
        // The walk's own pool, as large as the one it runs in (a job's `threads`), has room for
        // MAX_DEPTH levels many times over. Its threads inherit the caller's nice and I/O class.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .stack_size(WALK_STACK)
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!(
                        "cannot start the backup's worker threads ({e}); check the memory and \
                         process limits, then run the backup again"
                    ),
                )
            })?;
        pool.install(|| {
            let root = dirfd::open_root().map_err(|e| Error::io("cannot open /", e))?;
            let path = Path::new("/");
            if trie.target {
                // Backing up "/" itself: the root tree is the root directory's listing.
                return self.save_listing(root.as_fd(), path, 0, parent);
            }
            self.save_trie(root.as_fd(), path, 0, trie, parent)
        })
    }

    /// Whether the folder at `path`, `depth` levels below `/`, is too deep to enter; if so,
    /// a warning says that it was left out.
    fn too_deep(&self, path: &Path, depth: usize) -> bool {
        if depth < MAX_DEPTH {
            return false;
        }
        self.warn(
            path,
            "skipped",
            format!("folders nested more than {MAX_DEPTH} levels deep are not backed up"),
        );
        true
    }

    /// Save the virtual directories leading to the targets, then the targets themselves.
    /// `dir` is the open directory at `path`, `depth` levels below `/`.
    fn save_trie(
        &self,
        dir: BorrowedFd<'_>,
        path: &Path,
        depth: usize,
        trie: &PathTrie,
        parent: Option<&Tree>,
    ) -> Result<BlobId> {
        let nodes: Vec<Result<Option<Node>>> = trie
            .children
            .par_iter()
            .map(|(name, child)| {
                let path = path.join(OsStr::from_bytes(name));
                let parent_node = parent.and_then(|t| t.get(name));
                if child.target {
                    return self.save_entry(dir, name, &path, depth + 1, parent_node);
                }
                if self.too_deep(&path, depth + 1) {
                    return Ok(None);
                }
                // A folder on the way to a target. `absolute_path` resolved the symlinks the
                // user's path went through; one that appeared since is not followed.
                let (fd, st) = match dirfd::open_dir(dir, name, None) {
                    Ok(d) => d,
                    Err(e) => {
                        self.warn_open(&path, e);
                        return Ok(None);
                    }
                };
                let sub_parent = self.parent_subtree(parent_node);
                let id =
                    self.save_trie(fd.as_fd(), &path, depth + 1, child, sub_parent.as_ref())?;
                let mut node = dirfd::node_from_stat(name, &st);
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

    /// Save the entries of the open directory `dir` (at `path`, `depth` levels below `/`) as
    /// a tree; returns its ID. The entries are saved in parallel, each relative to `dir`.
    fn save_listing(
        &self,
        dir: BorrowedFd<'_>,
        path: &Path,
        depth: usize,
        parent: Option<&Tree>,
    ) -> Result<BlobId> {
        // A folder marked as excluded (`--exclude-if-present`, `--exclude-caches`) keeps
        // only itself.
        if self.excludes.marked(dir) {
            return self.save_tree(vec![]);
        }
        let (names, err) = dirfd::list(dir);
        if let Some(e) = err {
            self.warn(path, "cannot list directory", e);
        }
        // `--one-file-system`: a folder on another device below this one is a mount point,
        // kept as an empty folder.
        let device = self
            .excludes
            .one_file_system
            .then(|| rustix::fs::fstat(dir).ok().map(|st| st.st_dev))
            .flatten();
        let children: Vec<(Vec<u8>, PathBuf)> = names
            .into_iter()
            .map(|n| {
                let p = path.join(OsStr::from_bytes(&n));
                (n, p)
            })
            .filter(|(_, p)| !self.is_excluded(p))
            .collect();
        let nodes: Vec<Result<Option<Node>>> = children
            .par_iter()
            .map(|(n, p)| {
                let parent = parent.and_then(|t| t.get(n));
                match device {
                    Some(dev) => self.save_on_device(dir, n, p, depth + 1, parent, dev),
                    None => self.save_entry(dir, n, p, depth + 1, parent),
                }
            })
            .collect();
        self.save_tree(nodes)
    }

    /// Save the entry `name` of the open directory `dir` (recursively for a directory);
    /// `path` is where it is, for messages and excludes, `depth` levels below `/`. `Ok(None)`
    /// means it could not be read: a warning was reported and the entry is left out.
    fn save_entry(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        path: &Path,
        depth: usize,
        parent: Option<&Node>,
    ) -> Result<Option<Node>> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(interrupted());
        }
        let st = match dirfd::stat(dir, name) {
            Ok(st) => st,
            Err(e) => {
                self.warn(path, "cannot read", e);
                return Ok(None);
            }
        };
        let mut node = dirfd::node_from_stat(name, &st);
        self.progress.item(&path.to_string_lossy());
        match node.kind {
            NodeKind::Dir => {
                if self.too_deep(path, depth) {
                    return Ok(None);
                }
                let (fd, st) = match dirfd::open_dir(dir, name, Some(&st)) {
                    Ok(d) => d,
                    Err(e) => {
                        self.warn_open(path, e);
                        return Ok(None);
                    }
                };
                // The node describes the directory that is listed.
                node = dirfd::node_from_stat(name, &st);
                let parent_tree = self.parent_subtree(parent);
                let id = self.save_listing(fd.as_fd(), path, depth, parent_tree.as_ref())?;
                node.content = Content::Subtree(id);
                self.counters.dirs.fetch_add(1, Ordering::Relaxed);
            }
            NodeKind::File if self.excludes.larger_than.is_some_and(|max| node.size > max) => {
                return Ok(None)
            }
            NodeKind::File => return self.save_file(dir, name, path, &st, node, parent),
            NodeKind::Symlink => match dirfd::read_link(dir, name) {
                Ok(t) => node.link_target = t,
                Err(e) => {
                    self.warn(path, "cannot read link", e);
                    return Ok(None);
                }
            },
            _ => {}
        }
        Ok(Some(node))
    }

    /// `save_entry` under `--one-file-system`, for an entry of a folder on device `dev`: a
    /// folder on another device is kept as an empty folder (its node says what it was).
    fn save_on_device(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        path: &Path,
        depth: usize,
        parent: Option<&Node>,
        dev: u64,
    ) -> Result<Option<Node>> {
        match dirfd::stat(dir, name) {
            Ok(st) if at_mount_point(&st, dev) => {
                let mut node = dirfd::node_from_stat(name, &st);
                node.content = Content::Subtree(self.save_tree(vec![])?);
                Ok(Some(node))
            }
            _ => self.save_entry(dir, name, path, depth, parent),
        }
    }

    /// Save the regular file `name` of `dir`, which `st` describes: take its content from
    /// the parent snapshot if it is unchanged, else read it through a descriptor checked to
    /// be that same file.
    fn save_file(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        path: &Path,
        st: &Stat,
        mut node: Node,
        parent: Option<&Node>,
    ) -> Result<Option<Node>> {
        // The shortcut reads nothing, so the stat of the entry is enough to decide it (as in
        // restic: no open, which is costly on network file systems, for an unchanged file).
        if let Some(content) = unchanged_content(&node, parent).filter(|c| self.still_stored(c)) {
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
        let (file, st) = match dirfd::open_file(dir, name, st) {
            Ok(f) => f,
            Err(e) => {
                self.warn_open(path, e);
                return Ok(None);
            }
        };
        // The node describes the file that is read, not the name's earlier stat.
        node = dirfd::node_from_stat(name, &st);
        let stored = store_file(
            self.repo,
            self.saver,
            file,
            node.size,
            self.cancel,
            self.progress,
        );
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

fn at_mount_point(st: &Stat, dev: u64) -> bool {
    dirfd::node_from_stat(b"", st).kind == NodeKind::Dir && st.st_dev != dev
}
