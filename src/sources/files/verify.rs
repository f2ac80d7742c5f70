//! Verify a restored folder against its snapshot, independently of the restore that wrote it:
//! every node is there with its kind, permission bits (and owner, as root), symlink target
//! and size, and every regular file is read back and cut at the lengths of the snapshot's
//! chunks, each piece hashed with the repository's keyed blob ID and compared with the
//! chunk ID the tree records. So a byte out of place anywhere fails the drill, and the check
//! does not depend on how the backup cut the file.
//!
//! Files the snapshot does not have are not looked for: the folder is fresh. Device nodes
//! are not looked for either: drills do not restore them. Setuid and setgid are not
//! compared: drills clear them.
//!
//! The folder is examined like the restore wrote it, through directory descriptors with
//! `O_NOFOLLOW` (`restore::dirs`): a symlink planted in the folder is reported, never
//! followed, and a tree deeper than PATH_MAX is verified too. Where the snapshot has a
//! folder or file its owner cannot read, it is opened up for a moment through its own
//! descriptor (the folder is the drill's own), never by path.

use crate::browse::walk_snapshot;
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{Node, NodeKind};
use crate::format::BlobType;
use crate::id::BlobId;
use crate::index::Index;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::restore::at;
use crate::restore::dirs::DirTree;
use rayon::prelude::*;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// The permission bits compared: all but setuid and setgid, which drills clear.
const COMPARED: u32 = 0o1777;

#[derive(Debug, Default)]
pub(super) struct Verified {
    /// Regular files whose contents matched, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// Every difference found, one line each.
    pub problems: Vec<String>,
}

pub(super) fn verify_restore(
    repo: &Repository,
    root: &BlobId,
    folder: BorrowedFd,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<Verified> {
    let mut entries: Vec<(Vec<u8>, Node)> = Vec::new();
    let mut out = Verified::default();
    walk_snapshot(
        repo,
        root,
        &mut |path, node| {
            let device = matches!(node.kind, NodeKind::CharDevice | NodeKind::BlockDevice);
            if !device {
                entries.push((path.to_vec(), node.clone()));
            }
            !device
        },
        &mut |path, e| {
            out.problems.push(format!(
                "{}: the snapshot's tree cannot be read: {e}",
                String::from_utf8_lossy(path)
            ))
        },
    )?;
    let top = folder
        .try_clone_to_owned()
        .map_err(|e| Error::io("the drill folder", e))?;
    let (dirs, layout) = DirTree::new(top, &entries)?;
    // Directories first, top down: check each, then let its owner in, so that what is
    // below a directory restored without read or search permission can be checked too.
    for (i, (path, node)) in entries.iter().enumerate() {
        let Some(slot) = layout.slot[i] else { continue };
        let shown = String::from_utf8_lossy(path);
        let parent = match dirs.get(layout.parent[i]) {
            Ok(p) => p,
            Err(e) => {
                out.problems.push(missing(&shown, &e));
                continue;
            }
        };
        match rustix::fs::statat(&*parent, node.name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                out.problems
                    .extend(differences(parent.as_fd(), &shown, node, &st));
                if at::kind_of(&st) == FileType::Directory {
                    let opened = at::open_dir_opened_up(parent.as_fd(), &node.name)
                        .and_then(|fd| dirs.opened(slot, fd));
                    if let Err(e) = opened {
                        out.problems
                            .push(format!("{shown}: cannot be examined: {e}"));
                    }
                }
            }
            Err(e) => out.problems.push(missing(&shown, &e.into())),
        }
    }
    let index = repo.index()?;
    let others: Vec<usize> = (0..entries.len())
        .filter(|&i| layout.slot[i].is_none())
        .collect();
    let total: u64 = others
        .iter()
        .map(|&i| &entries[i].1)
        .filter(|n| n.kind == NodeKind::File)
        .map(|n| n.size)
        .sum();
    progress.start("verify", Some(total));
    let results: Vec<(bool, Vec<String>)> = others
        .par_iter()
        .map(|&i| {
            if cancel.load(Ordering::Relaxed) {
                return (false, vec![]);
            }
            let (path, node) = &entries[i];
            let shown = String::from_utf8_lossy(path);
            let parent = match dirs.get(layout.parent[i]) {
                Ok(p) => p,
                Err(e) => return (false, vec![missing(&shown, &e)]),
            };
            let st =
                match rustix::fs::statat(&*parent, node.name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                {
                    Ok(st) => st,
                    Err(e) => return (false, vec![missing(&shown, &e.into())]),
                };
            let mut problems = differences(parent.as_fd(), &shown, node, &st);
            // A file of the wrong size is reported as such; its bytes need no reading.
            let is_file = at::kind_of(&st) == FileType::RegularFile;
            if node.kind == NodeKind::File && is_file && st.st_size as u64 == node.size {
                let read = open_for_reading(parent.as_fd(), &node.name)
                    .and_then(|f| same_content(repo, &index, node, f, progress, cancel));
                if let Err(e) = read {
                    problems.push(format!("{shown}: {}", e.message()));
                }
            }
            (problems.is_empty(), problems)
        })
        .collect();
    progress.finish();
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
    }
    for (&i, (ok, problems)) in others.iter().zip(results) {
        let node = &entries[i].1;
        if ok && node.kind == NodeKind::File {
            out.files += 1;
            out.bytes += node.size;
        }
        out.problems.extend(problems);
    }
    Ok(out)
}

fn missing(shown: &str, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        format!("{shown}: missing from the restore")
    } else {
        format!("{shown}: cannot be examined: {e}")
    }
}

/// Kind, permission bits, owner (as root), symlink target and size of `node`, found as
/// `st` in folder `dir`.
fn differences(dir: BorrowedFd, shown: &str, node: &Node, st: &Stat) -> Vec<String> {
    let mut out = Vec::new();
    let kind_ok = at::kind_of(st)
        == match node.kind {
            NodeKind::File => FileType::RegularFile,
            NodeKind::Dir => FileType::Directory,
            NodeKind::Symlink => FileType::Symlink,
            NodeKind::Fifo => FileType::Fifo,
            NodeKind::CharDevice => FileType::CharacterDevice,
            NodeKind::BlockDevice => FileType::BlockDevice,
            NodeKind::Socket => FileType::Socket,
        };
    if !kind_ok {
        out.push(format!(
            "{}: should be a {}, is not",
            shown,
            node.kind.name()
        ));
        return out;
    }
    if node.kind != NodeKind::Symlink && st.st_mode & COMPARED != node.mode & COMPARED {
        out.push(format!(
            "{}: permissions {:o}, the snapshot has {:o}",
            shown,
            st.st_mode & COMPARED,
            node.mode & COMPARED
        ));
    }
    if rustix::process::geteuid().is_root() && (st.st_uid, st.st_gid) != (node.uid, node.gid) {
        out.push(format!(
            "{}: owner {}:{}, the snapshot has {}:{}",
            shown, st.st_uid, st.st_gid, node.uid, node.gid
        ));
    }
    match node.kind {
        NodeKind::Symlink => match rustix::fs::readlinkat(dir, node.name.as_slice(), Vec::new()) {
            Ok(t) if t.as_bytes() == node.link_target.as_slice() => {}
            Ok(t) => out.push(format!(
                "{}: points to {}, the snapshot has {}",
                shown,
                t.to_string_lossy(),
                String::from_utf8_lossy(&node.link_target)
            )),
            Err(e) => out.push(format!("{shown}: cannot be read: {e}")),
        },
        NodeKind::File if st.st_size as u64 != node.size => out.push(format!(
            "{}: {} bytes, the snapshot has {}",
            shown, st.st_size, node.size
        )),
        _ => {}
    }
    out
}

/// Read the file back and compare it, piece by piece, with the snapshot's chunks.
fn same_content(
    repo: &Repository,
    index: &Index,
    node: &Node,
    mut file: File,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<()> {
    let chunks = repo
        .file_chunks(&node.content)
        .map_err(|e| e.context("the snapshot's chunk list cannot be read"))?;
    let mut buf = Vec::new();
    let mut offset: u64 = 0;
    for id in &chunks {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
        }
        let loc = index
            .get(id)
            .ok_or_else(|| Error::not_found(format!("chunk {} is not in the index", id.short())))?;
        buf.resize(loc.raw_length as usize, 0);
        file.read_exact(&mut buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Error::corrupt(format!(
                "shorter than the snapshot's content (which goes on after byte {offset})"
            )),
            _ => Error::io("reading it back", e),
        })?;
        if repo.keys().blob_id(BlobType::Data as u8, &buf) != *id {
            return Err(Error::corrupt(format!(
                "content differs from the snapshot in bytes {offset}..{}",
                offset + buf.len() as u64
            )));
        }
        offset += buf.len() as u64;
        progress.advance(buf.len() as u64);
    }
    let mut extra = [0u8; 1];
    if file
        .read(&mut extra)
        .map_err(|e| Error::io("reading it back", e))?
        != 0
    {
        return Err(Error::corrupt(format!(
            "longer than the snapshot's content ({offset} bytes)"
        )));
    }
    if offset != node.size {
        return Err(Error::corrupt(format!(
            "the snapshot records {} bytes but its chunks hold {offset}",
            node.size
        )));
    }
    Ok(())
}

/// Open restored file `name` in `dir` for reading, never through a symlink. One restored
/// without read permission for its owner is opened by granting it for a moment, through
/// an `O_PATH` descriptor of that very file (the folder is the drill's own).
fn open_for_reading(dir: BorrowedFd, name: &[u8]) -> Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let io = |e: std::io::Error| Error::io("opening it", e);
    match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => Ok(File::from(fd)),
        Err(Errno::ACCESS) => {
            let handle = at::open_path(dir, name).map_err(io)?;
            let st = rustix::fs::fstat(&handle).map_err(|e| io(e.into()))?;
            if at::kind_of(&st) != FileType::RegularFile {
                return Err(io(at::replaced()));
            }
            let mode = st.st_mode & 0o7777;
            at::chmod_path_fd(handle.as_fd(), mode | 0o400).map_err(io)?;
            let f = rustix::fs::openat(dir, name, flags, Mode::empty());
            at::chmod_path_fd(handle.as_fd(), mode).map_err(io)?;
            let f = f.map_err(|e| io(e.into()))?;
            if at::file_id(f.as_fd()).map_err(io)? != at::id_of(&st) {
                return Err(io(at::replaced()));
            }
            Ok(File::from(f))
        }
        Err(e) => Err(io(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use crate::backup::{backup, BackupOptions, Source};

    use crate::progress::NoProgress;

    use crate::restore::{restore, RestoreOptions};

    fn memory_repo() -> Repository {
        crate::repo::memory_repository()
    }

    /// Every kind of difference between a restored folder and its snapshot is found, one
    /// at a time, and an intact restore has none.
    #[test]
    fn finds_every_difference() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("d")).unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(src.join("big"), &big).unwrap();
        std::fs::write(src.join("d/small"), b"hello").unwrap();
        std::os::unix::fs::symlink("small", src.join("d/link")).unwrap();
        let repo = memory_repo();
        let cancel = AtomicBool::new(false);
        let opts = BackupOptions {
            host: "test".into(),
            ..Default::default()
        };
        let snap = backup(
            &repo,
            Source::Paths(vec![src.clone()]),
            &opts,
            &NoProgress,
            &cancel,
        )
        .unwrap()
        .snapshot;
        let restore_into = |name: &str| {
            let dir = tmp.path().join(name);
            let o = RestoreOptions {
                target: dir.clone(),
                ..Default::default()
            };
            assert!(restore(&repo, &snap, &o, &NoProgress, &cancel)
                .unwrap()
                .errors
                .is_empty());
            let inner = dir.join(src.strip_prefix("/").unwrap());
            (dir, inner)
        };
        let verify = |dir: &Path| {
            let fd = std::fs::File::open(dir).unwrap();
            verify_restore(&repo, &snap.root, fd.as_fd(), &NoProgress, &cancel).unwrap()
        };
        let problems = |dir: &Path| verify(dir).problems;
        let (dir, _) = restore_into("intact");
        let v = verify(&dir);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!((v.files, v.bytes), (2, big.len() as u64 + 5));

        type Damage = Box<dyn Fn(&Path)>;
        let cases: Vec<(&str, Damage, &str)> = vec![
            (
                "a flipped byte",
                Box::new(|p| {
                    let mut b = std::fs::read(p.join("big")).unwrap();
                    b[2_000_000] ^= 1;
                    std::fs::write(p.join("big"), b).unwrap();
                }),
                "content differs",
            ),
            (
                "a longer file",
                Box::new(|p| std::fs::write(p.join("d/small"), b"hello!").unwrap()),
                "6 bytes, the snapshot has 5",
            ),
            (
                "a missing file",
                Box::new(|p| std::fs::remove_file(p.join("d/small")).unwrap()),
                "missing from the restore",
            ),
            (
                "another link target",
                Box::new(|p| {
                    std::fs::remove_file(p.join("d/link")).unwrap();
                    std::os::unix::fs::symlink("big", p.join("d/link")).unwrap();
                }),
                "points to big",
            ),
            (
                "a file instead of a link",
                Box::new(|p| {
                    std::fs::remove_file(p.join("d/link")).unwrap();
                    std::fs::write(p.join("d/link"), b"small").unwrap();
                }),
                "should be a symlink",
            ),
            (
                "other permissions",
                Box::new(|p| {
                    std::fs::set_permissions(p.join("d"), std::fs::Permissions::from_mode(0o700))
                        .unwrap()
                }),
                "permissions 700",
            ),
        ];
        for (i, (what, damage, says)) in cases.into_iter().enumerate() {
            let (dir, inner) = restore_into(&format!("case{i}"));
            damage(&inner);
            let p = problems(&dir);
            assert!(
                p.len() == 1 && p[0].contains(says),
                "{what}: expected one problem saying {says:?}, got {p:?}"
            );
        }
    }
}
