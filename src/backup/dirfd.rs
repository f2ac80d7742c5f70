//! The file-system calls of a backup, all relative to an open directory descriptor and none
//! following a symlink (security review H3).
//!
//! A path is resolved once: each directory is opened from its parent's descriptor with
//! `O_NOFOLLOW`, and every entry in it is stat'ed, opened or read relative to that descriptor.
//! A symlink swapped in for a file or a folder therefore never redirects a read, and paths
//! are never handed to the kernel whole, so they may be longer than `PATH_MAX`.
//!
//! What is opened is checked against what was stat'ed: the same device and inode, and the
//! same kind. An entry replaced in between is reported as [`OpenError::Replaced`] and left out
//! by the caller, never read.

use crate::format::tree::{Content, Node, NodeKind};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat, CWD};
use rustix::io::Errno;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Why an entry was not opened.
#[derive(Debug)]
pub enum OpenError {
    /// The system call failed (permission, vanished, too many open files...).
    Io(std::io::Error),
    /// The name now leads to something other than what was stat'ed: it was replaced (by a
    /// symlink, a FIFO, a device or another file) while the backup ran.
    Replaced(&'static str),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Io(e) => write!(f, "cannot open: {e}"),
            OpenError::Replaced(now) => write!(
                f,
                "skipped: it was replaced while the backup read it (it is now {now}); \
                 run the backup again to include it"
            ),
        }
    }
}

impl From<Errno> for OpenError {
    fn from(e: Errno) -> Self {
        OpenError::Io(e.into())
    }
}

/// The root directory, opened to start a walk.
pub fn open_root() -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        CWD,
        "/",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// `lstat` of `name` in `dir`.
pub fn stat(dir: BorrowedFd<'_>, name: &[u8]) -> std::io::Result<Stat> {
    Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
}

/// The target of the symlink `name` in `dir`, as raw bytes.
pub fn read_link(dir: BorrowedFd<'_>, name: &[u8]) -> std::io::Result<Vec<u8>> {
    Ok(rustix::fs::readlinkat(dir, name, Vec::new())?.into_bytes())
}

/// Open the directory `name` in `dir` without following a symlink. With `expect`, it must be
/// the directory that was stat'ed. Returns the descriptor and its `fstat`.
pub fn open_dir(
    dir: BorrowedFd<'_>,
    name: &[u8],
    expect: Option<&Stat>,
) -> Result<(OwnedFd, Stat), OpenError> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        // A symlink (ELOOP) or a non-directory (ENOTDIR) where a directory was stat'ed.
        Err(Errno::LOOP | Errno::NOTDIR) if expect.is_some() => {
            return Err(replaced_by(dir, name));
        }
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    if expect.is_some_and(|e| !same_file(e, &st)) {
        return Err(OpenError::Replaced("another folder"));
    }
    Ok((fd, st))
}

/// Open the regular file `name` in `dir` for reading, without following a symlink, blocking
/// (a FIFO) or updating its access time where that is permitted. It must be the file that
/// `expect` describes; the `fstat` of the descriptor is returned, for the node.
pub fn open_file(
    dir: BorrowedFd<'_>,
    name: &[u8],
    expect: &Stat,
) -> Result<(std::fs::File, Stat), OpenError> {
    // O_NONBLOCK: opening a FIFO swapped in for the file must not wait for a writer.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
        // O_NOATIME is refused (EPERM) on files the caller does not own, unless it is root.
        Err(Errno::PERM) => rustix::fs::openat(dir, name, flags, Mode::empty()),
        r => r,
    };
    let fd = match fd {
        Ok(fd) => fd,
        // A symlink (ELOOP), or a socket (ENXIO), where a file was stat'ed.
        Err(Errno::LOOP | Errno::NXIO) => return Err(replaced_by(dir, name)),
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(OpenError::Replaced(kind_name(&st)));
    }
    if !same_file(expect, &st) {
        return Err(OpenError::Replaced("another file"));
    }
    // Reads of a regular file never block; clear the flag so that no file system (FUSE, NFS)
    // can answer them with EAGAIN.
    let fl = rustix::fs::fcntl_getfl(&fd)?;
    rustix::fs::fcntl_setfl(&fd, fl - OFlags::NONBLOCK)?;
    Ok((std::fs::File::from(fd), st))
}

/// The names in the directory `fd` (without `.` and `..`), and the error that ended the
/// listing early, if one did. `fd` stays usable for the entries' `*at()` calls.
pub fn list(fd: BorrowedFd<'_>) -> (Vec<Vec<u8>>, Option<std::io::Error>) {
    let mut names = Vec::new();
    // `Dir::read_from` lists a second descriptor of the same directory, so the listing's file
    // position is not shared with `fd`.
    let dir = match Dir::read_from(fd.as_fd()) {
        Ok(d) => d,
        Err(e) => return (names, Some(e.into())),
    };
    for entry in dir {
        match entry {
            Ok(e) => {
                let name = e.file_name().to_bytes();
                if name != b"." && name != b".." {
                    names.push(name.to_vec());
                }
            }
            Err(e) => return (names, Some(e.into())),
        }
    }
    (names, None)
}

/// Let a walk of a deep tree keep a descriptor open per directory on its way down, on every
/// thread: raise the soft limit on open files to the hard limit. Failing to is not an error
/// (the walk then reports the directories it could not open).
pub fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
}

/// The same file: device and inode.
fn same_file(a: &Stat, b: &Stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

/// What `name` in `dir` is now, for the warning about an entry that was replaced.
fn replaced_by(dir: BorrowedFd<'_>, name: &[u8]) -> OpenError {
    match stat(dir, name) {
        Ok(st) => OpenError::Replaced(kind_name(&st)),
        Err(_) => OpenError::Replaced("gone"),
    }
}

fn kind_name(st: &Stat) -> &'static str {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => "a file",
        FileType::Directory => "a folder",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "of an unknown kind",
    }
}

/// Nanoseconds since the epoch. i64 spans the years 1677..2262: a time outside is clamped,
/// not wrapped (and does not panic).
fn time_ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// Tree-node metadata from a `stat`, without content.
// The field types of `Stat` differ between architectures (rustix mirrors each kernel's
// `struct stat`): the casts are no-ops only on some of them.
#[allow(clippy::unnecessary_cast)]
pub fn node_from_stat(name: &[u8], st: &Stat) -> Node {
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => NodeKind::File,
        FileType::Directory => NodeKind::Dir,
        FileType::Symlink => NodeKind::Symlink,
        FileType::Fifo => NodeKind::Fifo,
        FileType::CharacterDevice => NodeKind::CharDevice,
        FileType::BlockDevice => NodeKind::BlockDevice,
        FileType::Socket | FileType::Unknown => NodeKind::Socket,
    };
    Node {
        name: name.to_vec(),
        kind,
        mode: st.st_mode as u32 & 0o7777,
        uid: st.st_uid as u32,
        gid: st.st_gid as u32,
        mtime_ns: time_ns(st.st_mtime as i64, st.st_mtime_nsec as i64),
        ctime_ns: time_ns(st.st_ctime as i64, st.st_ctime_nsec as i64),
        size: if kind == NodeKind::File {
            st.st_size.max(0) as u64
        } else {
            0
        },
        dev: st.st_dev as u64,
        inode: st.st_ino as u64,
        nlink: (st.st_nlink as u64).min(u32::MAX as u64) as u32,
        rdev: st.st_rdev as u64,
        link_target: vec![],
        content: Content::None,
    }
}

#[cfg(test)]
#[path = "dirfd_tests.rs"]
mod tests;
