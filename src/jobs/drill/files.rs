//! The files drill: restore a snapshot into a fresh folder below the drill target, verify
//! it, and remove it when it matched (it stays for inspection when it did not).
//!
//! The folder is `TARGET/JOB-<snapshot short id>`, marked as a drill's own by a
//! `.coffer-drill` file at its top (holding the process ID and host of the drill that made
//! it). A folder without the marker is never touched: it is someone else's. One with the
//! marker was left by an earlier drill that failed, and is replaced, unless the drill that
//! made it is still running on this machine.

use super::verify::verify_restore;
use super::{DrillOptions, Restored};
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::restore::{restore, RestoreOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// The marker file at the top of a drill's scratch folder.
pub const MARKER: &str = ".coffer-drill";

#[allow(clippy::too_many_arguments)]
pub(super) fn drill(
    repo: &Repository,
    job: &str,
    id: &SnapshotId,
    snap: &Snapshot,
    target: &Path,
    opts: &DrillOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<Restored> {
    let folder = scratch_folder(target, &format!("{job}-{}", id.short()), &opts.host)?;
    let restore_opts = RestoreOptions {
        target: folder.clone(),
        ..Default::default()
    };
    let restored = restore(repo, snap, &restore_opts, progress, cancel)?;
    // Restore names the paths it wrote; the snapshot's own paths are shorter and say more.
    let inside = folder.display().to_string();
    let mut problems: Vec<String> = restored
        .errors
        .into_iter()
        .map(|e| e.strip_prefix(&inside).map_or(e.clone(), str::to_string))
        .collect();
    let verified = verify_restore(repo, &snap.root, &folder, progress, cancel)?;
    problems.extend(verified.problems);
    let cleanup = Instant::now();
    if problems.is_empty() && !opts.keep {
        if let Err(e) = remove_folder(&folder) {
            progress.warn(&format!(
                "the drill passed but its folder {} could not be removed: {e}",
                folder.display()
            ));
        }
    }
    Ok(Restored {
        restored_to: folder.display().to_string(),
        bytes: verified.bytes,
        items: verified.files,
        item_kind: "files",
        problems,
        cleanup: cleanup.elapsed(),
    })
}

/// Make `TARGET/NAME` a new, empty folder of this drill (with its marker), replacing one left
/// by an earlier drill; refuse anything else.
pub(super) fn scratch_folder(target: &Path, name: &str, host: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(target)
        .map_err(|e| Error::io(format!("drill target {}", target.display()), e))?;
    let folder = target.join(name);
    match std::fs::symlink_metadata(&folder) {
        Ok(meta) => {
            let marker = folder.join(MARKER);
            if !meta.is_dir() || !marker.is_file() {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and was not made by a coffer drill (it has no {MARKER} \
                         file); move it away or give the drill another target",
                        folder.display()
                    ),
                ));
            }
            if let Some(pid) = running_owner(&marker, host) {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "{} is in use by another drill (process {pid}); try again when it ends",
                        folder.display()
                    ),
                ));
            }
            remove_folder(&folder)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(folder.display(), e)),
    }
    // `create_dir`, not `create_dir_all`: of two drills racing here, one fails.
    std::fs::create_dir(&folder).map_err(|e| Error::io(folder.display(), e))?;
    std::fs::write(
        folder.join(MARKER),
        format!("{}\n{host}\n", std::process::id()),
    )
    .map_err(|e| Error::io(folder.display(), e))?;
    Ok(folder)
}

/// The process ID in a marker, if that process still runs on this host (and is not us).
fn running_owner(marker: &Path, host: &str) -> Option<u32> {
    let text = std::fs::read_to_string(marker).ok()?;
    let mut lines = text.lines();
    let pid: u32 = lines.next()?.trim().parse().ok()?;
    if lines.next()?.trim() != host || pid == std::process::id() {
        return None;
    }
    // SAFETY: signal 0 only asks whether the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    let alive = rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    alive.then_some(pid)
}

/// Remove a drill folder. A snapshot may hold directories without write or search
/// permission for their owner; those are opened up first, since the folder is ours.
pub(super) fn remove_folder(folder: &Path) -> Result<()> {
    if std::fs::remove_dir_all(folder).is_ok() {
        return Ok(());
    }
    open_up(folder);
    std::fs::remove_dir_all(folder).map_err(|e| Error::io(folder.display(), e))
}

fn open_up(dir: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            open_up(&e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_that_is_not_ours_is_refused_and_ours_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("drills");
        let f = scratch_folder(&target, "app-1", "h").unwrap();
        assert!(f.join(MARKER).is_file());
        // Left by an earlier (dead) drill: replaced, contents gone.
        std::fs::write(f.join("left"), b"x").unwrap();
        std::fs::write(f.join(MARKER), "999999999\nh\n").unwrap();
        let f = scratch_folder(&target, "app-1", "h").unwrap();
        assert!(!f.join("left").exists());
        // A live drill's folder (a running process on this host) is not taken over.
        let child = std::process::Command::new("sleep").arg("30").spawn();
        if let Ok(mut child) = child {
            std::fs::write(f.join(MARKER), format!("{}\nh\n", child.id())).unwrap();
            let e = scratch_folder(&target, "app-1", "h").unwrap_err();
            assert!(e.to_string().contains("in use"), "{e}");
            child.kill().unwrap();
            child.wait().unwrap();
        }
        // Someone else's folder is never touched.
        let theirs = target.join("app-2");
        std::fs::create_dir_all(&theirs).unwrap();
        std::fs::write(theirs.join("data"), b"keep").unwrap();
        let e = scratch_folder(&target, "app-2", "h").unwrap_err();
        assert!(e.to_string().contains("not made by a coffer drill"), "{e}");
        assert!(theirs.join("data").is_file());
    }

    #[test]
    fn folders_without_permissions_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("x");
        std::fs::create_dir_all(d.join("locked/inner")).unwrap();
        std::fs::write(d.join("locked/inner/f"), b"x").unwrap();
        std::fs::set_permissions(d.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
        remove_folder(&d).unwrap();
        assert!(!d.exists());
    }
}
