//! The folders of a snapshot laid out below an opened target, each reached through a
//! directory descriptor. Descriptors live in a bounded cache; a folder that fell out of it is
//! reopened component by component from the target, each step with `O_NOFOLLOW` and checked
//! against the device and inode recorded when the folder was first created or opened. So a
//! folder that someone renames, or replaces with a symlink, while a restore or a drill's
//! verification runs is never written into or examined in its place, and no path longer
//! than one name is ever handed to the kernel.

use super::at::{self, FileId};
use super::fdcache::FdCache;
use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock};

/// Open folders kept at most: far below the usual limit of 1,024 descriptors per process,
/// which the file cache, the repository and the thread pool share.
const CAPACITY: usize = 128;

/// A folder: `None` is the target itself, `Some(i)` the i-th folder of the layout.
pub(crate) type Dir = Option<usize>;

struct Slot {
    parent: Dir,
    name: Vec<u8>,
    /// Device and inode, set when the folder is first created or opened.
    id: OnceLock<FileId>,
}

pub(crate) struct DirTree {
    root: Arc<OwnedFd>,
    slots: Vec<Slot>,
    cache: Mutex<FdCache>,
}

/// Where each entry of a snapshot walk goes: the folder that holds it, and (for folders)
/// its own slot.
pub(crate) struct Layout {
    pub parent: Vec<Dir>,
    pub slot: Vec<Dir>,
}

impl DirTree {
    /// The folders of `entries` (a walk in pre-order: every folder before what it holds)
    /// below `root`.
    pub(crate) fn new(root: OwnedFd, entries: &[(Vec<u8>, Node)]) -> Result<(DirTree, Layout)> {
        Self::with_capacity(root, entries, CAPACITY)
    }

    fn with_capacity(
        root: OwnedFd,
        entries: &[(Vec<u8>, Node)],
        capacity: usize,
    ) -> Result<(DirTree, Layout)> {
        let mut slots = Vec::new();
        let mut by_path: HashMap<&[u8], usize> = HashMap::new();
        let mut layout = Layout {
            parent: Vec::with_capacity(entries.len()),
            slot: Vec::with_capacity(entries.len()),
        };
        for (path, node) in entries {
            let cut = path.iter().rposition(|b| *b == b'/').unwrap_or(0);
            let parent = match &path[..cut] {
                b"" => None,
                p => Some(*by_path.get(p).ok_or_else(|| {
                    Error::corrupt(format!(
                        "{}: the snapshot walk gave it before its folder",
                        String::from_utf8_lossy(path)
                    ))
                })?),
            };
            layout.parent.push(parent);
            if node.kind == NodeKind::Dir {
                by_path.insert(path, slots.len());
                layout.slot.push(Some(slots.len()));
                slots.push(Slot {
                    parent,
                    name: node.name.clone(),
                    id: OnceLock::new(),
                });
            } else {
                layout.slot.push(None);
            }
        }
        let tree = DirTree {
            root: Arc::new(root),
            slots,
            cache: Mutex::new(FdCache::new(capacity)),
        };
        Ok((tree, layout))
    }

    /// A descriptor of `dir`, from the cache or reopened from the nearest cached ancestor.
    pub(crate) fn get(&self, dir: Dir) -> std::io::Result<Arc<OwnedFd>> {
        let Some(i) = dir else {
            return Ok(self.root.clone());
        };
        if let Some(fd) = self.cached(i) {
            return Ok(fd);
        }
        let mut chain = vec![i];
        let mut base = self.root.clone();
        let mut up = self.slots[i].parent;
        while let Some(p) = up {
            if let Some(fd) = self.cached(p) {
                base = fd;
                break;
            }
            chain.push(p);
            up = self.slots[p].parent;
        }
        // Cache every folder opened on the way: the next miss nearby starts close by, so
        // walking a tree deeper than the cache costs a fraction of its depth per folder.
        for &s in chain.iter().rev() {
            let fd = at::open_dir(base.as_fd(), &self.slots[s].name)?;
            base = self.opened(s, fd)?;
        }
        Ok(base)
    }

    /// Record that `dir` was created or found and opened as `fd` (or check it against what
    /// was recorded before), and cache it.
    pub(crate) fn opened(&self, dir: usize, fd: OwnedFd) -> std::io::Result<Arc<OwnedFd>> {
        let id = at::file_id(fd.as_fd())?;
        if *self.slots[dir].id.get_or_init(|| id) != id {
            return Err(at::replaced());
        }
        let fd = Arc::new(fd);
        self.lock().insert(dir, fd.clone());
        Ok(fd)
    }

    /// The folder's device and inode, once it has been opened.
    pub(crate) fn id(&self, dir: usize) -> Option<FileId> {
        self.slots[dir].id.get().copied()
    }

    /// The folder will not be used again: close its descriptor.
    pub(crate) fn forget(&self, dir: usize) {
        self.lock().remove(dir);
    }

    fn cached(&self, dir: usize) -> Option<Arc<OwnedFd>> {
        self.lock().get(dir)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FdCache> {
        // A panic elsewhere cannot leave the cache inconsistent: recover it.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tree::Content;

    fn dir(name: &str) -> Node {
        Node {
            name: name.as_bytes().to_vec(),
            kind: NodeKind::Dir,
            mode: 0o700,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            size: 0,
            dev: 0,
            inode: 0,
            nlink: 1,
            rdev: 0,
            link_target: vec![],
            content: Content::Subtree(crate::id::BlobId([0; 32])),
        }
    }

    /// A folder that fell out of the cache is reopened from the target, one name at a
    /// time; if it was replaced meanwhile (here by a symlink to a copy, and then by another
    /// folder), it is refused rather than used.
    #[test]
    fn a_folder_replaced_after_it_was_opened_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let entries: Vec<(Vec<u8>, Node)> = ["/a", "/a/b", "/c"]
            .iter()
            .map(|p| (p.as_bytes().to_vec(), dir(p.rsplit('/').next().unwrap())))
            .collect();
        let root: OwnedFd = std::fs::File::open(tmp.path()).unwrap().into();
        let (tree, layout) = DirTree::with_capacity(root, &entries, 1).unwrap();
        assert_eq!(layout.parent, vec![None, Some(0), None]);
        for (i, (path, _)) in entries.iter().enumerate() {
            let p = tmp.path().join(std::str::from_utf8(&path[1..]).unwrap());
            std::fs::create_dir(&p).unwrap();
            let parent = tree.get(layout.parent[i]).unwrap();
            let name = path.rsplit(|b| *b == b'/').next().unwrap();
            tree.opened(i, at::open_dir(parent.as_fd(), name).unwrap())
                .unwrap();
        }
        // Only /c is cached now; /a/b is reopened through /a and is the same folder.
        let b = tree.get(Some(1)).unwrap();
        assert_eq!(at::file_id(b.as_fd()).unwrap(), tree.id(1).unwrap());
        drop(b);
        tree.get(Some(2)).unwrap(); // evicts /a/b
        std::fs::rename(tmp.path().join("a"), tmp.path().join("a-moved")).unwrap();
        std::fs::create_dir_all(tmp.path().join("elsewhere/b")).unwrap();
        std::os::unix::fs::symlink("elsewhere", tmp.path().join("a")).unwrap();
        assert!(tree.get(Some(1)).is_err(), "followed a symlink");
        std::fs::remove_file(tmp.path().join("a")).unwrap();
        std::fs::rename(tmp.path().join("elsewhere"), tmp.path().join("a")).unwrap();
        let e = tree.get(Some(1)).unwrap_err();
        assert!(e.to_string().contains("moved or replaced"), "{e}");
    }
}
