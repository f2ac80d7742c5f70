//! Descriptor-relative file-system calls for restore and drills. Below an opened folder,
//! every name is resolved relative to a directory descriptor with `O_NOFOLLOW`, so a symlink
//! or a folder swapped in by someone else never redirects a write, a chmod or a chown
//! (DESIGN.md, "State, cache and secrets on the host"). No call here takes a path longer
//! than one name, so trees deeper than PATH_MAX work too.

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// Device and inode: what a name pointed to when it was opened, to check later that it
/// still does.
pub(crate) type FileId = (u64, u64);

pub(crate) fn id_of(st: &Stat) -> FileId {
    (st.st_dev, st.st_ino)
}

pub(crate) fn file_id(fd: BorrowedFd) -> std::io::Result<FileId> {
    Ok(id_of(&rustix::fs::fstat(fd)?))
}

/// What kind of entry a stat describes.
pub(crate) fn kind_of(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Open the folder `name` in `parent`: never through a symlink.
pub(crate) fn open_dir(parent: BorrowedFd, name: &[u8]) -> std::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(parent, name, flags, Mode::empty())?)
}

/// A descriptor that names `name` in `parent` (a symlink itself, not its target) without
/// opening it for reading or writing: for entries that cannot be opened (sockets, devices,
/// folders without read permission) and must be chmod-ed.
pub(crate) fn open_path(parent: BorrowedFd, name: &[u8]) -> std::io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(parent, name, flags, Mode::empty())?)
}

/// Set the permission bits of what an `O_PATH` descriptor names. `fchmod` refuses such
/// descriptors and `fchmodat(AT_SYMLINK_NOFOLLOW)` is not implemented on Linux, so go
/// through the descriptor's own entry in /proc, which names exactly its inode (what glibc
/// does for `lchmod`). Never called on a symlink (Linux symlinks have no mode of their own).
pub(crate) fn chmod_path_fd(fd: BorrowedFd, mode: u32) -> std::io::Result<()> {
    let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
    Ok(rustix::fs::chmodat(
        rustix::fs::CWD,
        proc.as_str(),
        Mode::from_raw_mode(mode),
        AtFlags::empty(),
    )?)
}

/// Open the target the user named (symlinks in it are followed: the user chose them),
/// creating the missing folders of it with mode 0700.
pub(crate) fn open_target(path: &Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
    {
        Ok(()) => {}
        // A folder that exists is fine, whatever DirBuilder thinks of its parents.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(
        rustix::fs::CWD,
        path,
        flags,
        Mode::empty(),
    )?)
}

/// Remove `name` from `parent` and everything below it, never following a symlink. A
/// folder without write or search permission for its owner is opened up first (the tree
/// is the caller's own scratch space: a snapshot may hold such folders).
pub(crate) fn remove_tree(parent: BorrowedFd, name: &[u8]) -> std::io::Result<()> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        // Linux says EISDIR for a folder; POSIX allows EPERM.
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let dir = open_dir_opened_up(parent, name)?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir)? {
        let entry = entry?;
        let child = entry.file_name().to_bytes();
        if child != b"." && child != b".." {
            names.push(child.to_vec());
        }
    }
    for child in names {
        remove_tree(dir.as_fd(), &child)?;
    }
    drop(dir);
    Ok(rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?)
}

/// Open the folder `name` in `parent` for reading, first giving its owner read, write and
/// search permission if it lacks any of them. The chmod goes through an `O_PATH`
/// descriptor of the folder itself, and the folder opened afterwards must be the same one.
pub(crate) fn open_dir_opened_up(parent: BorrowedFd, name: &[u8]) -> std::io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let handle = rustix::fs::openat(parent, name, flags, Mode::empty())?;
    let st = rustix::fs::fstat(&handle)?;
    if st.st_mode & 0o700 != 0o700 {
        chmod_path_fd(handle.as_fd(), (st.st_mode & 0o7777) | 0o700)?;
    }
    let dir = open_dir(parent, name)?;
    if file_id(dir.as_fd())? != id_of(&st) {
        return Err(replaced());
    }
    Ok(dir)
}

/// The error for a name that no longer points to what was created or opened there.
pub(crate) fn replaced() -> std::io::Error {
    std::io::Error::other("it was moved or replaced by someone else while coffer worked on it")
}
