//! The restore use case: recreate a snapshot's files under a target folder, exactly: contents,
//! empty files and directories, symlinks (dangling ones too), hard links, special files,
//! permissions, ownership (when run as root) and mtimes to the nanosecond.
//!
//! Algorithm: walk the snapshot's trees once into a flat list; create directories; write
//! regular files pack by pack (`files.rs`: each pack fetched once, each blob decrypted once,
//! written at its offsets into every file that uses it); create symlinks and special files;
//! link the other names of hard-linked files; then set directory metadata, deepest first,
//! so that creating children does not disturb a parent's mtime.
//! A file whose data is damaged is reported and skipped; everything else still restores.

mod files;

use crate::browse::walk_snapshot;
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::progress::Progress;
use crate::repo::Repository;
use files::FileTask;
use filetime::FileTime;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub struct RestoreOptions {
    pub target: PathBuf,
    /// Absolute paths inside the snapshot; empty means everything.
    pub includes: Vec<Vec<u8>>,
}

#[derive(Debug, Default, Serialize)]
pub struct RestoreOutcome {
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub bytes: u64,
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

fn target_path(target: &Path, abs: &[u8]) -> PathBuf {
    target.join(OsStr::from_bytes(abs.strip_prefix(b"/").unwrap_or(abs)))
}

pub fn restore(
    repo: &Repository,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<RestoreOutcome> {
    let mut entries: Vec<(Vec<u8>, Node)> = Vec::new();
    let mut errors = Vec::new();
    walk_snapshot(
        repo,
        &snapshot.root,
        &mut |path, node| {
            let keep = selected(path, &opts.includes);
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
    std::fs::create_dir_all(&opts.target).map_err(|e| Error::io(opts.target.display(), e))?;
    let mut out = RestoreOutcome::default();
    for (path, _) in entries.iter().filter(|(_, n)| n.kind == NodeKind::Dir) {
        let p = target_path(&opts.target, path);
        if let Err(e) = std::fs::create_dir_all(&p) {
            errors.push(format!("{}: {e}", p.display()));
        }
        out.dirs += 1;
    }

    // Hard links: the first name of an inode is restored, the others link to it.
    let mut first_name: HashMap<(u64, u64), usize> = HashMap::new();
    let mut link_to: Vec<(usize, usize)> = Vec::new();
    let mut primaries = Vec::new();
    for (i, (_, n)) in entries.iter().enumerate() {
        if n.kind == NodeKind::Dir {
            continue;
        }
        if n.nlink > 1 && n.inode != 0 {
            if let Some(&first) = first_name.get(&(n.dev, n.inode)) {
                link_to.push((i, first));
                continue;
            }
            first_name.insert((n.dev, n.inode), i);
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
            path: target_path(&opts.target, &entries[i].0),
            node: &entries[i].1,
        })
        .collect();
    let file_errors = files::restore_files(repo, &tasks, progress, cancel)?;
    let other_errors: Vec<Option<String>> = others
        .par_iter()
        .map(|&i| {
            let p = target_path(&opts.target, &entries[i].0);
            restore_entry(&p, &entries[i].1)
                .err()
                .map(|e| e.to_string())
        })
        .collect();
    let mut ok: HashMap<usize, bool> = HashMap::new();
    for (&i, err) in files.iter().zip(&file_errors) {
        ok.insert(i, err.is_none());
        match err {
            None => {
                out.files += 1;
                out.bytes += entries[i].1.size;
            }
            Some(e) => errors.push(format!(
                "{}: {e}",
                target_path(&opts.target, &entries[i].0).display()
            )),
        }
    }
    for (&i, err) in others.iter().zip(&other_errors) {
        ok.insert(i, err.is_none());
        match err {
            None => out.links += 1,
            Some(e) => errors.push(format!(
                "{}: {e}",
                target_path(&opts.target, &entries[i].0).display()
            )),
        }
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
    }
    for (i, first) in link_to {
        let src = target_path(&opts.target, &entries[first].0);
        let dst = target_path(&opts.target, &entries[i].0);
        if !ok.get(&first).copied().unwrap_or(false) {
            errors.push(format!(
                "{}: not restored, its hard-link source failed",
                dst.display()
            ));
            continue;
        }
        let _ = std::fs::remove_file(&dst);
        match std::fs::hard_link(&src, &dst) {
            Ok(()) => out.files += 1,
            Err(e) => errors.push(format!("{}: {e}", dst.display())),
        }
    }
    // Directories last, deepest first.
    for (path, node) in entries
        .iter()
        .rev()
        .filter(|(_, n)| n.kind == NodeKind::Dir)
    {
        let p = target_path(&opts.target, path);
        if let Err(e) = apply_metadata(&p, node) {
            errors.push(format!("{}: {e}", p.display()));
        }
    }
    progress.finish();
    out.errors = errors;
    Ok(out)
}

/// Create a symlink or special file and set its metadata.
fn restore_entry(path: &Path, node: &Node) -> Result<()> {
    let io = |e| Error::io(path.display(), e);
    let _ = std::fs::remove_file(path);
    match node.kind {
        NodeKind::Symlink => {
            std::os::unix::fs::symlink(OsStr::from_bytes(&node.link_target), path).map_err(io)?
        }
        NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice | NodeKind::Socket => {
            make_special(path, node).map_err(io)?
        }
        NodeKind::File | NodeKind::Dir => {
            unreachable!("files and directories are restored elsewhere")
        }
    }
    apply_metadata(path, node)
}

fn make_special(path: &Path, node: &Node) -> std::io::Result<()> {
    let kind = match node.kind {
        NodeKind::Fifo => libc::S_IFIFO,
        NodeKind::CharDevice => libc::S_IFCHR,
        NodeKind::BlockDevice => libc::S_IFBLK,
        _ => libc::S_IFSOCK,
    };
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `c` is a valid NUL-terminated path; mknod has no other memory effects.
    let rc = unsafe {
        libc::mknod(
            c.as_ptr(),
            kind | (node.mode & 0o7777),
            node.rdev as libc::dev_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Ownership (only as root), permissions (not on symlinks) and mtime, in that order: chown
/// clears setuid bits, so mode comes after it.
pub(crate) fn apply_metadata(path: &Path, node: &Node) -> Result<()> {
    let io = |e| Error::io(path.display(), e);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid)).map_err(io)?;
    }
    if node.kind != NodeKind::Symlink {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(node.mode)).map_err(io)?;
    }
    let secs = node.mtime_ns.div_euclid(1_000_000_000);
    let nanos = node.mtime_ns.rem_euclid(1_000_000_000) as u32;
    let t = FileTime::from_unix_time(secs, nanos);
    filetime::set_symlink_file_times(path, t, t).map_err(io)
}
