//! Trees (directory listings) and chunk lists (the content of large files), both stored as
//! blobs. Names are raw bytes, so any Unix file name survives.
//!
//! Tree: `version:u8 count:u32 node*`, nodes sorted by name, names unique. A node is
//! `name:bytes16 kind:u8 mode:u32 uid:u32 gid:u32 mtime_ns:i64 ctime_ns:i64 size:u64
//! dev:u64 inode:u64 nlink:u32 rdev:u64 link_target:bytes32 content`, and content is
//! `tag:u8` then: 0 nothing; 1 `count:u32 chunk_id*`; 2 `level:u8 list_id`; 3 `subtree_id`.
//!
//! Chunk list: `version:u8 level:u8 count:u32 id*`. Level 0 lists data chunks; level n lists
//! chunk lists of level n-1.

use super::wire::{checked_len16, Reader, Writer};
use crate::error::{Error, Result};
use crate::id::BlobId;

pub const TREE_VERSION: u8 = 1;
pub const CHUNK_LIST_VERSION: u8 = 1;
/// Deepest chunk-list nesting a reader follows (fan-out >= 2 makes 2^16 levels absurd; 8 is
/// enough for any file below 2^64 bytes with the writer's fan-out).
pub const MAX_LIST_LEVEL: u8 = 8;
/// Longest symlink target accepted (Linux PATH_MAX is 4096).
pub const MAX_LINK_TARGET: usize = 64 * 1024;
const NODE_MIN_LEN: usize = 2 + 1 + 4 * 3 + 8 * 5 + 4 + 8 + 4 + 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum NodeKind {
    File = 1,
    Dir = 2,
    Symlink = 3,
    Fifo = 4,
    CharDevice = 5,
    BlockDevice = 6,
    Socket = 7,
}

impl NodeKind {
    fn from_u8(v: u8) -> Result<Self> {
        Ok(match v {
            1 => NodeKind::File,
            2 => NodeKind::Dir,
            3 => NodeKind::Symlink,
            4 => NodeKind::Fifo,
            5 => NodeKind::CharDevice,
            6 => NodeKind::BlockDevice,
            7 => NodeKind::Socket,
            _ => return Err(Error::corrupt(format!("tree has unknown node kind {v}"))),
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            NodeKind::File => "file",
            NodeKind::Dir => "dir",
            NodeKind::Symlink => "symlink",
            NodeKind::Fifo => "fifo",
            NodeKind::CharDevice => "chardev",
            NodeKind::BlockDevice => "blockdev",
            NodeKind::Socket => "socket",
        }
    }
}

/// Where a node's content is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Directories' absent content is not allowed; this is for links and special files.
    None,
    /// A file's chunks, in order.
    Chunks(Vec<BlobId>),
    /// A file's chunks through a chunk-list blob of the given level.
    ChunkList { level: u8, id: BlobId },
    /// A directory's listing.
    Subtree(BlobId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Permission bits including setuid, setgid and sticky (st_mode & 0o7777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    /// Status-change time: used only to decide whether a file changed since the parent.
    pub ctime_ns: i64,
    pub size: u64,
    /// Device and inode: hard-link identity (with nlink > 1) and change detection.
    pub dev: u64,
    pub inode: u64,
    pub nlink: u32,
    /// Device number of character and block devices.
    pub rdev: u64,
    pub link_target: Vec<u8>,
    pub content: Content,
}

/// A name is one path component: not empty, not `.` or `..`, no `/` and no NUL. Decoding
/// enforces this so a hostile tree can never make restore write outside its target.
pub fn is_valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Sort nodes by name and check every invariant the decoder checks.
    pub fn new(mut nodes: Vec<Node>) -> Result<Self> {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        for n in &nodes {
            checked_len16("file name", &n.name)?;
            if n.link_target.len() > MAX_LINK_TARGET {
                return Err(Error::invalid("symlink target is too long"));
            }
        }
        let tree = Tree { nodes };
        tree.validate()?;
        Ok(tree)
    }

    fn validate(&self) -> Result<()> {
        for (i, n) in self.nodes.iter().enumerate() {
            if !is_valid_name(&n.name) {
                return Err(Error::corrupt(format!(
                    "tree holds an invalid name {:?}",
                    String::from_utf8_lossy(&n.name)
                )));
            }
            if i > 0 && self.nodes[i - 1].name >= n.name {
                return Err(Error::corrupt("tree names are not sorted and unique"));
            }
            let ok = match (n.kind, &n.content) {
                (NodeKind::Dir, Content::Subtree(_)) => true,
                (NodeKind::File, Content::Chunks(_) | Content::ChunkList { .. }) => true,
                (NodeKind::Dir | NodeKind::File, _) => false,
                (_, c) => *c == Content::None,
            };
            if !ok {
                return Err(Error::corrupt("tree node content does not match its kind"));
            }
            if n.kind != NodeKind::Symlink && !n.link_target.is_empty() {
                return Err(Error::corrupt(
                    "a node that is not a symlink has a link target",
                ));
            }
            if let Content::ChunkList { level, .. } = n.content {
                if level > MAX_LIST_LEVEL {
                    return Err(Error::corrupt("chunk list nesting is too deep"));
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(TREE_VERSION);
        w.u32(self.nodes.len() as u32);
        for n in &self.nodes {
            w.bytes16(&n.name);
            w.u8(n.kind as u8);
            w.u32(n.mode);
            w.u32(n.uid);
            w.u32(n.gid);
            w.i64(n.mtime_ns);
            w.i64(n.ctime_ns);
            w.u64(n.size);
            w.u64(n.dev);
            w.u64(n.inode);
            w.u32(n.nlink);
            w.u64(n.rdev);
            w.bytes32(&n.link_target);
            match &n.content {
                Content::None => w.u8(0),
                Content::Chunks(ids) => {
                    w.u8(1);
                    w.u32(ids.len() as u32);
                    for id in ids {
                        w.raw(&id.0);
                    }
                }
                Content::ChunkList { level, id } => {
                    w.u8(2);
                    w.u8(*level);
                    w.raw(&id.0);
                }
                Content::Subtree(id) => {
                    w.u8(3);
                    w.raw(&id.0);
                }
            }
        }
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "tree");
        let v = r.u8()?;
        if v != TREE_VERSION {
            return Err(Error::corrupt(format!("tree has unknown version {v}")));
        }
        let n = r.count(NODE_MIN_LEN)?;
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.bytes16()?.to_vec();
            let kind = NodeKind::from_u8(r.u8()?)?;
            let mode = r.u32()?;
            let uid = r.u32()?;
            let gid = r.u32()?;
            let mtime_ns = r.i64()?;
            let ctime_ns = r.i64()?;
            let size = r.u64()?;
            let dev = r.u64()?;
            let inode = r.u64()?;
            let nlink = r.u32()?;
            let rdev = r.u64()?;
            let link_target = r.bytes32()?;
            if link_target.len() > MAX_LINK_TARGET {
                return Err(Error::corrupt("tree holds an over-long symlink target"));
            }
            let content = match r.u8()? {
                0 => Content::None,
                1 => {
                    let m = r.count(32)?;
                    let mut ids = Vec::with_capacity(m);
                    for _ in 0..m {
                        ids.push(BlobId(r.array()?));
                    }
                    Content::Chunks(ids)
                }
                2 => Content::ChunkList {
                    level: r.u8()?,
                    id: BlobId(r.array()?),
                },
                3 => Content::Subtree(BlobId(r.array()?)),
                t => {
                    return Err(Error::corrupt(format!(
                        "tree node has unknown content tag {t}"
                    )))
                }
            };
            nodes.push(Node {
                name,
                kind,
                mode,
                uid,
                gid,
                mtime_ns,
                ctime_ns,
                size,
                dev,
                inode,
                nlink,
                rdev,
                link_target: link_target.to_vec(),
                content,
            });
        }
        r.end()?;
        let tree = Tree { nodes };
        tree.validate()?;
        Ok(tree)
    }
}

/// One level of a large file's chunk list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkList {
    pub level: u8,
    pub ids: Vec<BlobId>,
}

impl ChunkList {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(CHUNK_LIST_VERSION);
        w.u8(self.level);
        w.u32(self.ids.len() as u32);
        for id in &self.ids {
            w.raw(&id.0);
        }
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "chunk list");
        if r.u8()? != CHUNK_LIST_VERSION {
            return Err(Error::corrupt("chunk list has an unknown version"));
        }
        let level = r.u8()?;
        if level > MAX_LIST_LEVEL {
            return Err(Error::corrupt("chunk list nesting is too deep"));
        }
        let n = r.count(32)?;
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            ids.push(BlobId(r.array()?));
        }
        r.end()?;
        Ok(ChunkList { level, ids })
    }
}
