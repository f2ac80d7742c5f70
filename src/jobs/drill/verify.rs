//! Verify a restored folder against its snapshot, independently of the restore that wrote it:
//! every node is there with its kind, permission bits (and owner, as root), symlink target
//! and size, and every regular file is read back and cut at the lengths of the snapshot's
//! chunks, each piece hashed with the repository's keyed blob ID and compared with the
//! chunk ID the tree records. So a byte out of place anywhere fails the drill, and the check
//! does not depend on how the backup cut the file.
//!
//! Files the snapshot does not have are not looked for: the folder is fresh.

use crate::browse::walk_snapshot;
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{Node, NodeKind};
use crate::format::BlobType;
use crate::id::BlobId;
use crate::index::Index;
use crate::progress::Progress;
use crate::repo::Repository;
use rayon::prelude::*;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

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
    folder: &Path,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<Verified> {
    let mut entries: Vec<(Vec<u8>, Node)> = Vec::new();
    let mut out = Verified::default();
    walk_snapshot(
        repo,
        root,
        &mut |path, node| {
            entries.push((path.to_vec(), node.clone()));
            true
        },
        &mut |path, e| {
            out.problems.push(format!(
                "{}: the snapshot's tree cannot be read: {e}",
                String::from_utf8_lossy(path)
            ))
        },
    )?;
    let at = |path: &[u8]| folder.join(OsStr::from_bytes(path.strip_prefix(b"/").unwrap_or(path)));
    // Directories first, top down: check each, then let its owner in, so that what is
    // below a directory restored without read or search permission can be checked too.
    for (path, node) in entries.iter().filter(|(_, n)| n.kind == NodeKind::Dir) {
        let (p, shown) = (at(path), String::from_utf8_lossy(path));
        match std::fs::symlink_metadata(&p) {
            Ok(meta) => {
                out.problems.extend(differences(&p, &shown, node, &meta));
                let mode = meta.permissions().mode();
                if meta.is_dir() && mode & 0o700 != 0o700 {
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode | 0o700))
                        .map_err(|e| Error::io(p.display(), e))?;
                }
            }
            Err(e) => out.problems.push(missing(&shown, &e)),
        }
    }
    let index = repo.index()?;
    let others: Vec<&(Vec<u8>, Node)> = entries
        .iter()
        .filter(|(_, n)| n.kind != NodeKind::Dir)
        .collect();
    let total: u64 = others
        .iter()
        .filter(|(_, n)| n.kind == NodeKind::File)
        .map(|(_, n)| n.size)
        .sum();
    progress.start("verify", Some(total));
    let results: Vec<(bool, Vec<String>)> = others
        .par_iter()
        .map(|(path, node)| {
            if cancel.load(Ordering::Relaxed) {
                return (false, vec![]);
            }
            let (p, shown) = (at(path), String::from_utf8_lossy(path));
            let meta = match std::fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) => return (false, vec![missing(&shown, &e)]),
            };
            let mut problems = differences(&p, &shown, node, &meta);
            // A file of the wrong size is reported as such; its bytes need no reading.
            if node.kind == NodeKind::File && meta.is_file() && meta.len() == node.size {
                if let Err(e) = same_content(repo, &index, node, &p, progress, cancel) {
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
    for ((_, node), (ok, problems)) in others.iter().zip(results) {
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

/// Kind, permission bits, owner (as root), symlink target and size.
fn differences(p: &Path, shown: &str, node: &Node, meta: &std::fs::Metadata) -> Vec<String> {
    let mut out = Vec::new();
    let t = meta.file_type();
    let kind_ok = match node.kind {
        NodeKind::File => t.is_file(),
        NodeKind::Dir => t.is_dir(),
        NodeKind::Symlink => t.is_symlink(),
        NodeKind::Fifo => t.is_fifo(),
        NodeKind::CharDevice => t.is_char_device(),
        NodeKind::BlockDevice => t.is_block_device(),
        NodeKind::Socket => t.is_socket(),
    };
    if !kind_ok {
        out.push(format!(
            "{}: should be a {}, is not",
            shown,
            node.kind.name()
        ));
        return out;
    }
    // Permission bits only: setuid and setgid may be dropped for a user who cannot own the
    // file, which is a property of the machine, not of the backup.
    if node.kind != NodeKind::Symlink && meta.mode() & 0o777 != node.mode & 0o777 {
        out.push(format!(
            "{}: permissions {:o}, the snapshot has {:o}",
            shown,
            meta.mode() & 0o777,
            node.mode & 0o777
        ));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 && (meta.uid(), meta.gid()) != (node.uid, node.gid) {
        out.push(format!(
            "{}: owner {}:{}, the snapshot has {}:{}",
            shown,
            meta.uid(),
            meta.gid(),
            node.uid,
            node.gid
        ));
    }
    match node.kind {
        NodeKind::Symlink => match std::fs::read_link(p) {
            Ok(t) if t.as_os_str().as_bytes() == node.link_target.as_slice() => {}
            Ok(t) => out.push(format!(
                "{}: points to {}, the snapshot has {}",
                shown,
                t.display(),
                String::from_utf8_lossy(&node.link_target)
            )),
            Err(e) => out.push(format!("{shown}: cannot be read: {e}")),
        },
        NodeKind::File if meta.len() != node.size => out.push(format!(
            "{}: {} bytes, the snapshot has {}",
            shown,
            meta.len(),
            node.size
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
    p: &Path,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<()> {
    let chunks = repo
        .file_chunks(&node.content)
        .map_err(|e| e.context("the snapshot's chunk list cannot be read"))?;
    let mut file = open_for_reading(p)?;
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

/// Open a restored file; one restored without read permission for its owner is opened by
/// granting it for a moment (the folder is the drill's own).
fn open_for_reading(p: &Path) -> Result<File> {
    match File::open(p) {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let io = |e| Error::io(p.display(), e);
            let mode = std::fs::metadata(p).map_err(io)?.permissions().mode();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode | 0o400))
                .map_err(io)?;
            let f = File::open(p);
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io)?;
            f.map_err(io)
        }
        Err(e) => Err(Error::io(p.display(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let problems = |dir: &Path| {
            verify_restore(&repo, &snap.root, dir, &NoProgress, &cancel)
                .unwrap()
                .problems
        };
        let (dir, _) = restore_into("intact");
        let v = verify_restore(&repo, &snap.root, &dir, &NoProgress, &cancel).unwrap();
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
