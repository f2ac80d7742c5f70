//! The restore use case: recreate a snapshot's files under a target folder, exactly: contents,
//! empty files and directories, symlinks (dangling ones too), hard links, special files,
//! permissions, ownership (when run as root) and mtimes to the nanosecond.
//!
//! Algorithm: walk the snapshot's trees once into a flat list; open the target once; create
//! directories top down; write regular files pack by pack (`files.rs`: each pack fetched
//! once, each blob decrypted once, written at its offsets into every file that uses it);
//! create symlinks and special files; link the other names of hard-linked files; then set
//! directory metadata, deepest first, so that creating children does not disturb a
//! parent's mtime.
//!
//! Safety on the host (DESIGN.md, "State, cache and secrets on the host"):
//! - below the target, every name is resolved relative to an opened directory with
//!   `O_NOFOLLOW` (`at.rs`, `dirs.rs`): an existing symlink where the snapshot has a file
//!   is replaced, never followed; one where the snapshot has a folder is left alone and
//!   that folder fails with one error; a folder swapped during the restore is noticed, not
//!   written into. No path longer than one name is used, so trees deeper
//!   than PATH_MAX restore;
//! - what is written stays private until it is complete: files are created 0600 and
//!   folders 0700; owner, mode and times come last, on the descriptor (`meta.rs`);
//! - a full, over-quota or read-only target stops the whole restore with one error
//!   (`stop.rs`).
//!
//! A file whose data is damaged is reported and skipped (it stays 0600); everything else
//! still restores.

pub(crate) mod at;
pub(crate) mod dirs;
mod fdcache;
mod files;
mod meta;
pub mod overwrite;
mod stop;

use crate::browse::walk_snapshot;
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::progress::Progress;
use crate::repo::Repository;
use at::FileId;
use dirs::{Dir, DirTree, Layout};
use files::{FileTask, Place};
use meta::Owners;
use rayon::prelude::*;
use rustix::fs::{AtFlags, FileType, Mode};
use rustix::io::Errno;
use serde::Serialize;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use stop::Stop;

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The folder to restore into (created if missing); named in messages.
    pub target: PathBuf,
    /// Absolute paths inside the snapshot; empty means everything.
    pub includes: Vec<Vec<u8>>,
    /// Leave out character and block devices (drills: a device node in scratch space is
    /// raw access to a disk for whoever can reach it).
    pub skip_devices: bool,
    /// Clear setuid and setgid on everything restored (drills: scratch space must not
    /// hold setuid binaries; the verifier compares the other bits).
    pub strip_setid: bool,
    /// What to do with a file already where one is to be restored.
    pub overwrite: overwrite::Overwrite,
}

#[derive(Debug, Default, Serialize)]
pub struct RestoreOutcome {
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub bytes: u64,
    /// Files left as they were by `--overwrite`.
    pub skipped: u64,
    /// Paths that could not be restored, with the reason.
    pub errors: Vec<String>,
}

/// Is `path` (absolute, in the snapshot) selected by `includes`, or an ancestor of a
/// selected path (needed to reach it)?
fn selected(path: &[u8], includes: &[Vec<u8>]) -> bool {
    if includes.is_empty() {
        return true;
    }
    includes
        .iter()
        .any(|inc| is_within(path, inc) || is_within(inc, path))
}

/// `a` equals `b` or lies below it.
fn is_within(a: &[u8], b: &[u8]) -> bool {
    let b = b.strip_suffix(b"/").unwrap_or(b);
    a == b || (a.starts_with(b) && (b.is_empty() || a.get(b.len()) == Some(&b'/')))
}

/// Where a snapshot path lands, for messages only: nothing is opened by this path.
fn target_path(target: &Path, abs: &[u8]) -> PathBuf {
    target.join(OsStr::from_bytes(abs.strip_prefix(b"/").unwrap_or(abs)))
}

/// Restore `snapshot` into `opts.target`, creating it (mode 0700) if it is missing.
pub fn restore(
    repo: &Repository,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<RestoreOutcome> {
    let (entries, errors) = select_entries(repo, snapshot, opts)?;
    let root = at::open_target(&opts.target).map_err(|e| match e.raw_os_error() {
        Some(n) if matches!(n, libc::ENOSPC | libc::EDQUOT | libc::EROFS) => {
            stop::stopped(&opts.target, Errno::from_raw_os_error(n))
        }
        _ => Error::io(format!("restore target {}", opts.target.display()), e),
    })?;
    restore_entries(repo, entries, errors, root, opts, progress, cancel)
}

/// Restore `snapshot` into `target`, a folder the caller has opened (and checked);
/// `opts.target` only names it in messages.
pub fn restore_at(
    repo: &Repository,
    snapshot: &Snapshot,
    target: OwnedFd,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<RestoreOutcome> {
    let (entries, errors) = select_entries(repo, snapshot, opts)?;
    restore_entries(repo, entries, errors, target, opts, progress, cancel)
}

type Entries = Vec<(Vec<u8>, Node)>;

/// The snapshot's entries that `opts` selects, in pre-order, and the trees that could not
/// be read.
fn select_entries(
    repo: &Repository,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
) -> Result<(Entries, Vec<String>)> {
    let mut entries: Entries = Vec::new();
    let mut errors = Vec::new();
    walk_snapshot(
        repo,
        &snapshot.root,
        &mut |path, node| {
            let keep = selected(path, &opts.includes)
                && !(opts.skip_devices
                    && matches!(node.kind, NodeKind::CharDevice | NodeKind::BlockDevice));
            if keep {
                entries.push((path.to_vec(), node.clone()));
            }
            keep
        },
        &mut |path, err| errors.push(format!("{}: {err}", String::from_utf8_lossy(path))),
    )?;
    // A mistyped --include must not look like a successful, empty restore.
    for inc in &opts.includes {
        if !entries.iter().any(|(p, _)| is_within(p, inc)) {
            return Err(Error::not_found(format!(
                "--include {} matches nothing in the snapshot",
                String::from_utf8_lossy(inc)
            )));
        }
    }
    Ok((entries, errors))
}

#[allow(clippy::too_many_arguments)]
fn restore_entries(
    repo: &Repository,
    entries: Entries,
    mut errors: Vec<String>,
    root: OwnedFd,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<RestoreOutcome> {
    let shown = |i: usize| target_path(&opts.target, &entries[i].0);
    let owners = Owners::current(opts.strip_setid);
    let stop = Stop::default();
    let (dirs, layout) = DirTree::new(root, &entries)?;
    let stopped = |stop: &Stop| stop.error(&opts.target).map_or(Ok(()), Err);
    let mut out = RestoreOutcome::default();

    // Folders, top down. A folder that cannot be made is reported once; what it would have
    // held is skipped without a line each.
    let mut blocked = vec![false; entries.len()];
    let mut slot_failed: HashMap<usize, usize> = HashMap::new();
    for (i, (_, node)) in entries.iter().enumerate() {
        if let Some(&failed_at) = layout.parent[i].and_then(|p| slot_failed.get(&p)) {
            blocked[i] = true;
            if let Some(slot) = layout.slot[i] {
                slot_failed.insert(slot, failed_at);
            }
            continue;
        }
        let Some(slot) = layout.slot[i] else { continue };
        if stop.stopped() || cancel.load(Ordering::Relaxed) {
            break;
        }
        match make_dir(&dirs, layout.parent[i], slot, &node.name) {
            Ok(()) => out.dirs += 1,
            Err(e) => {
                stop.fatal(&e);
                slot_failed.insert(slot, i);
                errors.push(format!(
                    "{}: {e} (nothing below it was restored)",
                    shown(i).display()
                ));
            }
        }
    }
    stopped(&stop)?;

    // Hard links: the first name of an inode is restored, the others link to it.
    let mut first_name: HashMap<(u64, u64), usize> = HashMap::new();
    let mut link_to: Vec<(usize, usize)> = Vec::new();
    let mut primaries = Vec::new();
    let mut kept_existing = std::collections::HashSet::new();
    for (i, (_, n)) in entries.iter().enumerate() {
        if n.kind == NodeKind::Dir || blocked[i] {
            continue;
        }
        if n.nlink > 1 && n.inode != 0 {
            if let Some(&first) = first_name.get(&(n.dev, n.inode)) {
                link_to.push((i, first));
                continue;
            }
            first_name.insert((n.dev, n.inode), i);
        }
        let keeps = dirs
            .get(layout.parent[i])
            .is_ok_and(|d| opts.overwrite.keeps(d.as_fd(), &n.name, n));
        if keeps {
            kept_existing.insert(i);
            out.skipped += 1;
            continue;
        }
        primaries.push(i);
    }

    let total: u64 = primaries.iter().map(|&i| entries[i].1.size).sum();
    progress.start("restore", Some(total));
    // Regular files pack by pack; symlinks and special files one by one.
    let (files, others): (Vec<usize>, Vec<usize>) = primaries
        .iter()
        .partition(|&&i| entries[i].1.kind == NodeKind::File);
    let tasks: Vec<FileTask> = files
        .iter()
        .map(|&i| FileTask {
            dir: layout.parent[i],
            node: &entries[i].1,
        })
        .collect();
    let place = Place {
        dirs: &dirs,
        owners: &owners,
        stop: &stop,
    };
    let file_results = files::restore_files(repo, &tasks, &place, progress, cancel)?;
    stopped(&stop)?;
    let other_results: Vec<std::io::Result<FileId>> = others
        .par_iter()
        .map(|&i| {
            if stop.stopped() {
                return Err(std::io::Error::other("not restored: the restore stopped"));
            }
            let r = restore_other(&dirs, layout.parent[i], &entries[i].1, &owners);
            if let Err(e) = &r {
                stop.fatal(e);
            }
            r
        })
        .collect();
    stopped(&stop)?;
    let mut restored: HashMap<usize, FileId> = HashMap::new();
    for (&i, r) in files.iter().zip(file_results) {
        match r {
            Ok(id) => {
                restored.insert(i, id);
                out.files += 1;
                out.bytes += entries[i].1.size;
            }
            Err(e) => errors.push(format!("{}: {e}", shown(i).display())),
        }
    }
    for (&i, r) in others.iter().zip(other_results) {
        match r {
            Ok(id) => {
                restored.insert(i, id);
                out.links += 1;
            }
            Err(e) => errors.push(format!("{}: {e}", shown(i).display())),
        }
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
    }
    for (i, first) in link_to {
        // Its first name was left as it was: so is this one.
        if kept_existing.contains(&first) {
            out.skipped += 1;
            continue;
        }
        let Some(&id) = restored.get(&first) else {
            errors.push(format!(
                "{}: not restored, its hard-link source failed",
                shown(i).display()
            ));
            continue;
        };
        let from = (layout.parent[first], entries[first].1.name.as_slice());
        match link(&dirs, from, id, layout.parent[i], &entries[i].1.name) {
            Ok(()) => out.files += 1,
            Err(e) => {
                stop.fatal(&e);
                errors.push(format!("{}: {e}", shown(i).display()));
            }
        }
        stopped(&stop)?;
    }
    finish_dirs(&dirs, &layout, &entries, &owners, &stop, &mut |i, e| {
        errors.push(format!("{}: {e}", shown(i).display()))
    });
    stopped(&stop)?;
    progress.finish();
    out.errors = errors;
    Ok(out)
}

/// Create folder `slot` (`name` in `parent`) with mode 0700, or reuse the folder that is
/// there. Anything else in the way is neither followed nor removed: a symlink where the
/// snapshot has a folder may be the host's own (`/lib -> usr/lib` under `--target /`), and
/// removing it could break the system, while following it could write anywhere (security
/// review H1). The folder fails with a message that says what to do.
fn make_dir(dirs: &DirTree, parent: Dir, slot: usize, name: &[u8]) -> std::io::Result<()> {
    let p = dirs.get(parent)?;
    let private = Mode::from_raw_mode(0o700);
    match rustix::fs::mkdirat(&*p, name, private) {
        Ok(()) => {}
        Err(Errno::EXIST) => {
            let st = rustix::fs::statat(&*p, name, AtFlags::SYMLINK_NOFOLLOW)?;
            match at::kind_of(&st) {
                FileType::Directory => {}
                FileType::Symlink => {
                    return Err(std::io::Error::other(
                        "a symlink is in the way where the snapshot has a folder; it was not \
                         followed or removed: move it away, or restore into an empty folder",
                    ))
                }
                _ => {
                    return Err(std::io::Error::other(
                        "a file is in the way where the snapshot has a folder; it was not \
                         removed: move it away, or restore into an empty folder",
                    ))
                }
            }
        }
        Err(e) => return Err(e.into()),
    }
    dirs.opened(slot, at::open_dir(p.as_fd(), name)?)?;
    Ok(())
}

/// Create a symlink or special file (mode 0600 until its metadata is set) and set its
/// metadata; returns its device and inode.
fn restore_other(
    dirs: &DirTree,
    parent: Dir,
    node: &Node,
    owners: &Owners,
) -> std::io::Result<FileId> {
    let p = dirs.get(parent)?;
    let name = node.name.as_slice();
    let create = |dir: BorrowedFd| -> rustix::io::Result<()> {
        let kind = match node.kind {
            NodeKind::Symlink => {
                return rustix::fs::symlinkat(node.link_target.as_slice(), dir, name)
            }
            NodeKind::Fifo => FileType::Fifo,
            NodeKind::CharDevice => FileType::CharacterDevice,
            NodeKind::BlockDevice => FileType::BlockDevice,
            NodeKind::Socket => FileType::Socket,
            NodeKind::File | NodeKind::Dir => return Err(Errno::INVAL),
        };
        rustix::fs::mknodat(dir, name, kind, Mode::from_raw_mode(0o600), node.rdev)
    };
    match create(p.as_fd()) {
        Err(Errno::EXIST) => {
            files::remove_non_folder(p.as_fd(), name)?;
            create(p.as_fd())?;
        }
        r => r?,
    }
    meta::apply_at(p.as_fd(), name, node, owners)
}

/// Link `name` in `parent` to the restored entry `from` (folder and name), which must
/// still be inode `id`: a name swapped meanwhile is unlinked again.
fn link(
    dirs: &DirTree,
    from: (Dir, &[u8]),
    id: FileId,
    parent: Dir,
    name: &[u8],
) -> std::io::Result<()> {
    let src = dirs.get(from.0)?;
    let dst = dirs.get(parent)?;
    files::remove_non_folder(dst.as_fd(), name)?;
    rustix::fs::linkat(&*src, from.1, &*dst, name, AtFlags::empty())?;
    let st = rustix::fs::statat(&*dst, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if at::id_of(&st) != id {
        rustix::fs::unlinkat(&*dst, name, AtFlags::empty())?;
        return Err(at::replaced());
    }
    Ok(())
}

/// Owner, mode and mtime of every folder, deepest first: a folder's children are done
/// before it, and until then it stays 0700.
fn finish_dirs(
    dirs: &DirTree,
    layout: &Layout,
    entries: &Entries,
    owners: &Owners,
    stop: &Stop,
    error: &mut dyn FnMut(usize, std::io::Error),
) {
    for (i, (_, node)) in entries.iter().enumerate().rev() {
        let Some(slot) = layout.slot[i] else { continue };
        if dirs.id(slot).is_none() {
            continue; // never created; already reported
        }
        let done = dirs
            .get(Some(slot))
            .and_then(|fd| meta::apply_fd(fd.as_fd(), node, owners));
        dirs.forget(slot);
        if let Err(e) = done {
            if stop.fatal(&e) {
                return;
            }
            error(i, e);
        }
    }
}
