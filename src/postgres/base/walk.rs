//! Read a data directory into trees: what `layout.rs` says to store, tablespaces followed
//! into `pg_tblspc/<oid>/` as plain folders, relation files through `relfile.rs`, every
//! other file as a directory backup stores it.
//!
//! Everything is opened relative to the data directory's descriptor without following a
//! symlink (`backup::dirfd`), except the tablespace links in `pg_tblspc/`, which are read
//! and followed once each, as the server itself follows them.
//!
//! The server keeps running meanwhile, so entries vanish (a table dropped, a temporary file
//! deleted): a vanished entry is left out without a word, since WAL replay recreates what
//! the restored cluster needs. Any other error reading an entry fails the backup: a base
//! backup that lacks a file the server needs is not one.

use super::layout::{self, Entry, Place, WAL_STATUS_DIR};
use super::relfile::Relations;
use crate::backup::dirfd::{self, OpenError};
use crate::backup::SourceContext;
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{Content, Node, NodeKind, Tree};
use crate::id::BlobId;
use rayon::prelude::*;
use rustix::fs::{AtFlags, Mode, OFlags, Stat};
use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// Data directories are a few levels deep; anything much deeper is not PostgreSQL's.
const MAX_DEPTH: usize = 32;

pub struct DataWalk<'a, 'r> {
    pub ctx: &'a SourceContext<'r>,
    pub relations: Relations<'a, 'r>,
    /// The data directory's path, for messages.
    pub data_dir: &'a str,
    /// `PG_<major>_`: in a tablespace's folder, only the folder of this server's version is
    /// stored (another version's belongs to another cluster sharing the location), as
    /// `pg_basebackup` does.
    pub version_dir: String,
    /// Tablespaces followed: (oid, the symlink's target).
    pub tablespaces: Mutex<Vec<(u32, Vec<u8>)>>,
}

/// What became of one entry.
enum Saved {
    Node(Node),
    /// It vanished: normal while the server runs.
    Vanished,
    /// It was replaced between its stat and its open (a file renamed over it, as
    /// `ALTER SYSTEM` does): worth one more try.
    Replaced,
}

impl DataWalk<'_, '_> {
    /// The entries of the data directory `root` as nodes: the snapshot's root tree, to
    /// which the caller adds `backup_label`.
    pub fn root_nodes(&self, root: BorrowedFd<'_>) -> Result<Vec<Node>> {
        self.nodes(root, "", Place::Root, 0)
    }

    /// The nodes to store for the open folder `dir` at `path` (relative to the data
    /// directory; "" for itself), which is at `place`.
    fn nodes(
        &self,
        dir: BorrowedFd<'_>,
        path: &str,
        place: Place,
        depth: usize,
    ) -> Result<Vec<Node>> {
        if depth > MAX_DEPTH {
            return Err(self.fail(
                path,
                format!("folders are nested more than {MAX_DEPTH} levels deep here"),
            ));
        }
        let (names, err) = dirfd::list(dir);
        if let Some(e) = err {
            return Err(self.fail(path, e));
        }
        // Unlogged relations are known by their init forks, in the same folder.
        let unlogged: HashSet<&[u8]> = names
            .iter()
            .filter_map(|n| layout::init_fork_name(n))
            .collect();
        let nodes: Vec<Option<Node>> = names
            .par_iter()
            .map(|name| {
                let entry = layout::classify(place, name, |node| unlogged.contains(node));
                let other_version =
                    place == Place::Tablespace && !name.starts_with(self.version_dir.as_bytes());
                if entry == Entry::Skip || other_version {
                    return Ok(None);
                }
                let child = join(path, name);
                for _ in 0..2 {
                    match self.save_entry(dir, name, &child, place, entry, depth)? {
                        Saved::Node(n) => return Ok(Some(n)),
                        Saved::Vanished => return Ok(None),
                        Saved::Replaced => continue,
                    }
                }
                Err(self.fail(&child, "it was replaced twice while it was being read"))
            })
            .collect::<Result<_>>()?;
        Ok(nodes.into_iter().flatten().collect())
    }

    /// Store the folder `dir` (at `path`, at `place`) as a tree; returns its ID.
    fn save_dir(
        &self,
        dir: BorrowedFd<'_>,
        path: &str,
        place: Place,
        depth: usize,
    ) -> Result<BlobId> {
        let nodes = self.nodes(dir, path, place, depth)?;
        self.ctx.counters.dirs.fetch_add(1, Ordering::Relaxed);
        self.ctx.store_tree(&Tree::new(nodes)?)
    }

    fn save_entry(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        path: &str,
        place: Place,
        entry: Entry,
        depth: usize,
    ) -> Result<Saved> {
        if self.ctx.cancel.load(Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
        }
        let st = match dirfd::stat(dir, name) {
            Ok(st) => st,
            Err(e) if vanished(&e) => return Ok(Saved::Vanished),
            Err(e) => return Err(self.fail(path, e)),
        };
        let mut node = dirfd::node_from_stat(name, &st);
        self.ctx.progress.item(path);
        match (node.kind, entry) {
            (NodeKind::Symlink, _) if place == Place::Tablespaces => {
                if let Some(oid) = tablespace_oid(name) {
                    return self.save_tablespace(dir, name, oid, path, depth);
                }
                // Not a tablespace (the server ignores it too): kept as the link it is.
                match dirfd::read_link(dir, name) {
                    Ok(t) => node.link_target = t,
                    Err(e) if vanished(&e) => return Ok(Saved::Vanished),
                    Err(e) => return Err(self.fail(path, e)),
                }
            }
            (NodeKind::Symlink, Entry::EmptyDir) => {
                // pg_wal kept elsewhere (initdb --waldir): an empty folder in its place.
                let st = match rustix::fs::statat(dir, name, AtFlags::empty()) {
                    Ok(st) => st,
                    Err(e) => return Err(self.fail(path, std::io::Error::from(e))),
                };
                node = dirfd::node_from_stat(name, &st);
                node.content = Content::Subtree(self.empty_dir(&node)?);
            }
            (NodeKind::Dir, Entry::EmptyDir) => {
                node.content = Content::Subtree(self.empty_dir(&node)?);
            }
            (NodeKind::Dir, _) => {
                let (fd, st) = match dirfd::open_dir(dir, name, Some(&st)) {
                    Ok(d) => d,
                    Err(e) => return self.missed(path, e),
                };
                node = dirfd::node_from_stat(name, &st);
                let id = self.save_dir(fd.as_fd(), path, place.child(name), depth + 1)?;
                node.content = Content::Subtree(id);
            }
            (NodeKind::File, _) => return self.save_file(dir, name, path, &st, entry),
            (NodeKind::Symlink, _) => match dirfd::read_link(dir, name) {
                Ok(t) => node.link_target = t,
                Err(e) if vanished(&e) => return Ok(Saved::Vanished),
                Err(e) => return Err(self.fail(path, e)),
            },
            // A socket or FIFO: its node says what it was; it has no content.
            _ => {}
        }
        Ok(Saved::Node(node))
    }

    /// A folder whose contents are not stored: an empty tree, except that `pg_wal` keeps
    /// an empty `archive_status` folder, as `pg_basebackup` leaves it.
    fn empty_dir(&self, node: &Node) -> Result<BlobId> {
        self.ctx.counters.dirs.fetch_add(1, Ordering::Relaxed);
        let empty = self.ctx.store_tree(&Tree::new(vec![])?)?;
        if node.name != b"pg_wal" {
            return Ok(empty);
        }
        let mut status = node.clone();
        status.name = WAL_STATUS_DIR.as_bytes().to_vec();
        status.content = Content::Subtree(empty);
        self.ctx.store_tree(&Tree::new(vec![status])?)
    }

    /// Follow the tablespace link `name` of `pg_tblspc` and store what it points to as the
    /// folder `pg_tblspc/<oid>`.
    fn save_tablespace(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        oid: u32,
        path: &str,
        depth: usize,
    ) -> Result<Saved> {
        let target = match dirfd::read_link(dir, name) {
            Ok(t) => t,
            Err(e) if vanished(&e) => return Ok(Saved::Vanished),
            Err(e) => return Err(self.fail(path, e)),
        };
        // An absolute target (as PostgreSQL writes them) is opened as it is; a relative one
        // from pg_tblspc, as the kernel would resolve the link.
        let fd = match rustix::fs::openat(dir, target.as_slice(), FOLLOW_DIR, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                let target = String::from_utf8_lossy(&target);
                return Err(self.fail(path, format!("tablespace folder {target}: {e}")));
            }
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| self.fail(path, std::io::Error::from(e)))?;
        let mut node = dirfd::node_from_stat(name, &st);
        let id = self.save_dir(fd.as_fd(), path, Place::Tablespace, depth + 1)?;
        node.content = Content::Subtree(id);
        self.tablespaces
            .lock()
            .expect("tablespace list lock")
            .push((oid, target));
        Ok(Saved::Node(node))
    }

    fn save_file(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        path: &str,
        st: &Stat,
        entry: Entry,
    ) -> Result<Saved> {
        let (file, st) = match dirfd::open_file(dir, name, st) {
            Ok(f) => f,
            Err(e) => return self.missed(path, e),
        };
        let mut node = dirfd::node_from_stat(name, &st);
        let stored = match entry {
            Entry::Relation { segment } => self
                .relations
                .store(&file, segment, path)
                .and_then(|(ids, size)| Ok((self.ctx.saver.save_content(ids)?, size))),
            _ => self.ctx.store_file(file, node.size),
        };
        let (content, size) = match stored {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::Io => return Err(self.fail(path, e)),
            Err(e) => return Err(e),
        };
        node.size = size;
        node.content = content;
        let c = self.ctx.counters;
        c.files_new.fetch_add(1, Ordering::Relaxed);
        c.total_bytes.fetch_add(size, Ordering::Relaxed);
        c.bytes_read.fetch_add(size, Ordering::Relaxed);
        Ok(Saved::Node(node))
    }

    /// An entry that could not be opened: vanished, replaced, or an error.
    fn missed(&self, path: &str, e: OpenError) -> Result<Saved> {
        match e {
            OpenError::Io(e) if vanished(&e) => Ok(Saved::Vanished),
            OpenError::Replaced("gone") => Ok(Saved::Vanished),
            OpenError::Replaced(_) => Ok(Saved::Replaced),
            OpenError::Io(e) => Err(self.fail(path, e)),
        }
    }

    /// The error that ends the backup because `path` could not be read.
    fn fail(&self, path: &str, why: impl std::fmt::Display) -> Error {
        Error::new(
            ErrorKind::Io,
            format!(
                "cannot read {}/{path}: {why}; a base backup needs every file, so none was saved",
                self.data_dir.trim_end_matches('/')
            ),
        )
    }
}

/// What a backup of the data directory `root` will read, measured before it starts: the
/// bytes of relation files (they decide the block size, `layout::choose_block`) and of all
/// files (for the progress bar). An estimate: entries that cannot be read are not counted,
/// and the walk proper reports them.
pub fn measure(root: BorrowedFd<'_>) -> (u64, u64) {
    fn folder(dir: BorrowedFd<'_>, place: Place, depth: usize, sums: &mut (u64, u64)) {
        if depth > MAX_DEPTH {
            return;
        }
        let (names, _) = dirfd::list(dir);
        for name in names {
            let entry = layout::classify(place, &name, |_| false);
            if matches!(entry, Entry::Skip | Entry::EmptyDir) {
                continue;
            }
            let Ok(st) = dirfd::stat(dir, &name) else {
                continue;
            };
            let kind = dirfd::node_from_stat(&name, &st).kind;
            let opened = match kind {
                NodeKind::File => {
                    sums.1 += st.st_size.max(0) as u64;
                    if matches!(entry, Entry::Relation { .. }) {
                        sums.0 += st.st_size.max(0) as u64;
                    }
                    continue;
                }
                NodeKind::Dir => dirfd::open_dir(dir, &name, Some(&st))
                    .ok()
                    .map(|(fd, _)| fd),
                // A tablespace: followed, as the walk does.
                NodeKind::Symlink if place == Place::Tablespaces => {
                    dirfd::read_link(dir, &name).ok().and_then(|t| {
                        rustix::fs::openat(dir, t.as_slice(), FOLLOW_DIR, Mode::empty()).ok()
                    })
                }
                _ => None,
            };
            if let Some(fd) = opened {
                folder(fd.as_fd(), place.child(&name), depth + 1, sums);
            }
        }
    }
    let mut sums = (0, 0);
    folder(root, Place::Root, 0, &mut sums);
    sums
}

/// Opening a tablespace's folder through its link.
const FOLLOW_DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

/// A tablespace's link is named by its OID.
fn tablespace_oid(name: &[u8]) -> Option<u32> {
    std::str::from_utf8(name).ok()?.parse().ok()
}

fn vanished(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

/// `path/name`, as text for messages (names that are not UTF-8 are shown lossily).
fn join(path: &str, name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    if path.is_empty() {
        name.into_owned()
    } else {
        format!("{path}/{name}")
    }
}
