//! Final metadata of restored entries: owner, then permission bits, then times, set on the
//! entry's own descriptor (or with the `*at` calls that do not follow symlinks). Until
//! then a restored file is 0600 and a folder 0700, so nobody else can read what is being
//! written. Chown comes first because it clears setuid and setgid.
//!
//! Which owner and which bits:
//! - as root, the snapshot's owner and mode, exactly;
//! - as another user, files stay ours; the group is set when it is one of ours. When the
//!   recorded owner is not us (or the group not one of ours), setuid and setgid are
//!   cleared: a setuid file of someone else must not become a setuid file of ours;
//! - `strip_setid` (drills) clears them always.

use super::at;
use crate::format::tree::{Node, NodeKind};
use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps};
use rustix::process::{Gid, Uid};
use std::os::fd::{AsFd, BorrowedFd};

const SETID: u32 = 0o6000;

/// Who is restoring, and what they may keep.
pub(crate) struct Owners {
    root: bool,
    euid: u32,
    /// The effective group and the supplementary groups.
    groups: Vec<u32>,
    strip_setid: bool,
}

impl Owners {
    pub(crate) fn current(strip_setid: bool) -> Self {
        let mut groups: Vec<u32> = rustix::process::getgroups()
            .unwrap_or_default()
            .into_iter()
            .map(Gid::as_raw)
            .collect();
        groups.push(rustix::process::getegid().as_raw());
        let euid = rustix::process::geteuid();
        Owners {
            root: euid.is_root(),
            euid: euid.as_raw(),
            groups,
            strip_setid,
        }
    }

    /// The owner to set: both ids as root; only the group, when it is one of ours and the
    /// user is the recorded owner, otherwise.
    fn owner(&self, node: &Node) -> Option<(Option<Uid>, Option<Gid>)> {
        if self.root {
            return Some((Some(Uid::from_raw(node.uid)), Some(Gid::from_raw(node.gid))));
        }
        self.is_ours(node)
            .then(|| (None, Some(Gid::from_raw(node.gid))))
    }

    fn is_ours(&self, node: &Node) -> bool {
        node.uid == self.euid && self.groups.contains(&node.gid)
    }

    /// The permission bits to set.
    pub(crate) fn mode(&self, node: &Node) -> u32 {
        let mode = node.mode & 0o7777;
        if self.strip_setid || !(self.root || self.is_ours(node)) {
            mode & !SETID
        } else {
            mode
        }
    }
}

fn times(node: &Node) -> Timestamps {
    let t = Timespec {
        tv_sec: node.mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: node.mtime_ns.rem_euclid(1_000_000_000) as _,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Owner, mode and mtime of a regular file or a folder, on its open descriptor.
pub(crate) fn apply_fd(fd: BorrowedFd, node: &Node, owners: &Owners) -> std::io::Result<()> {
    if let Some((uid, gid)) = owners.owner(node) {
        rustix::fs::fchown(fd, uid, gid)?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(owners.mode(node)))?;
    Ok(rustix::fs::futimens(fd, &times(node))?)
}

/// Owner, mode (not for symlinks, which have none) and mtime of the symlink or special
/// file `name` just created in `dir`; returns its device and inode. The entry is pinned
/// with an `O_PATH` descriptor first and must be of the kind the snapshot records.
pub(crate) fn apply_at(
    dir: BorrowedFd,
    name: &[u8],
    node: &Node,
    owners: &Owners,
) -> std::io::Result<at::FileId> {
    let handle = at::open_path(dir, name)?;
    let st = rustix::fs::fstat(&handle)?;
    let expected = match node.kind {
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::Fifo,
        NodeKind::Socket => FileType::Socket,
        NodeKind::CharDevice => FileType::CharacterDevice,
        NodeKind::BlockDevice => FileType::BlockDevice,
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
    };
    if at::kind_of(&st) != expected {
        return Err(at::replaced());
    }
    if let Some((uid, gid)) = owners.owner(node) {
        // The pinned inode itself, not whatever the name points to by now.
        rustix::fs::chownat(&handle, "", uid, gid, AtFlags::EMPTY_PATH)?;
    }
    if node.kind != NodeKind::Symlink {
        at::chmod_path_fd(handle.as_fd(), owners.mode(node))?;
    }
    rustix::fs::utimensat(dir, name, &times(node), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(at::id_of(&st))
}
