//! The files drill: restore a snapshot into a fresh scratch folder below the drill target
//! (`TARGET/JOB-<snapshot short id>`, see `sources::scratch`), verify it, and remove it when
//! it matched (it stays for inspection, mode 0700, when it did not). The restore leaves
//! device nodes out and clears setuid and setgid bits: drills often run as root.

use super::verify::{verify_restore, Verified};
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;
use crate::restore::{restore_at, RestoreOptions};
use crate::sources::scratch::Scratch;
use crate::sources::{DrillContext, Restored};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Instant;

pub(super) fn drill(
    ctx: &DrillContext,
    id: &SnapshotId,
    snap: &Snapshot,
    target: &Path,
) -> Result<Restored> {
    let (repo, opts, progress, cancel) = (ctx.repo, ctx.options, ctx.progress, ctx.cancel);
    let job = &ctx.job.name;
    let scratch = Scratch::make(target, &format!("{job}-{}", id.short()), &opts.host)?;
    let restore_opts = RestoreOptions {
        target: scratch.path.clone(),
        includes: vec![],
        skip_devices: true,
        strip_setid: true,
        ..Default::default()
    };
    let folder = scratch
        .folder
        .try_clone()
        .map_err(|e| Error::io(scratch.path.display(), e))?;
    // Restore names the paths it wrote; the snapshot's own paths are shorter and say more.
    let inside = scratch.path.display().to_string();
    let mut problems: Vec<String> = Vec::new();
    let mut verified = Verified::default();
    match restore_at(repo, snap, folder, &restore_opts, progress, cancel) {
        Err(e) if e.kind() == ErrorKind::Interrupted => return Err(e),
        // The folder stays, and the problem list says where.
        Err(e) => problems.push(e.to_string()),
        Ok(restored) => {
            problems.extend(
                restored
                    .errors
                    .into_iter()
                    .map(|e| e.strip_prefix(&inside).map_or(e.clone(), str::to_string)),
            );
            match verify_restore(repo, &snap.root, scratch.folder.as_fd(), progress, cancel) {
                Err(e) if e.kind() == ErrorKind::Interrupted => return Err(e),
                Err(e) => problems.push(e.to_string()),
                Ok(v) => verified = v,
            }
            problems.append(&mut verified.problems);
        }
    }
    let in_place = scratch.in_place();
    let cleanup = Instant::now();
    match &in_place {
        Err(e) => problems.push(e.clone()),
        Ok(()) if problems.is_empty() => {
            if !opts.keep {
                if let Err(e) = scratch.remove() {
                    progress.warn(&format!(
                        "the drill passed but its folder {} could not be removed: {e}",
                        scratch.path.display()
                    ));
                }
            }
        }
        // Second, after the first problem, which is what a short report shows.
        Ok(()) => problems.insert(
            1,
            format!(
                "the restored files are kept for inspection in {} (mode 0700: only its \
                 owner can enter it); remove it when done",
                scratch.path.display()
            ),
        ),
    }
    Ok(Restored {
        restored_to: scratch.path.display().to_string(),
        bytes: verified.bytes,
        items: verified.files,
        problems,
        details: vec![],
        cleanup: cleanup.elapsed(),
    })
}
