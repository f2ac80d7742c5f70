//! Write a bucket snapshot back into a bucket (or prefix): every object with its content
//! type and user metadata, streamed from the repository. Each object is checked against
//! the BLAKE3 the backup recorded before its upload completes, so a wrong object never
//! appears.

use super::manifest::{self, ObjectRecord, SnapshotObjects};
use super::{interrupted, pool};
use crate::backend::{Location, ObjectStore, ServiceOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::format::BlobType;
use crate::progress::Progress;
use crate::repo::Repository;
use rayon::prelude::*;
use serde::Serialize;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Clone, Default)]
pub struct BucketRestoreOptions {
    /// Write into a target that already holds objects (same keys are replaced, others
    /// are left alone).
    pub force: bool,
    /// Limits and credentials for the target.
    pub service: ServiceOptions,
}

#[derive(Debug, Default, Serialize)]
pub struct BucketRestoreReport {
    /// Objects written, `dir/` markers included.
    pub objects: u64,
    pub bytes: u64,
    /// Objects that could not be restored (their data in the repository is damaged or
    /// missing), with the reason; everything else was restored.
    pub errors: Vec<String>,
}

/// Restore `snapshot` (of a bucket) into `location`. A target that holds objects is refused
/// unless `opts.force`. A failing target or repository ends the restore with an error;
/// damaged objects are reported in `errors` and the rest is restored.
pub fn restore_bucket(
    repo: &Repository,
    snapshot: &Snapshot,
    location: &Location,
    opts: &BucketRestoreOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<BucketRestoreReport> {
    let objects = manifest::load(repo, snapshot)?;
    let store = ObjectStore::open(location, &opts.service)?;
    let existing = store.list()?;
    if !existing.is_empty() && !opts.force {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} already holds {} object(s) (e.g. {:?}); restore into an empty bucket or \
                 prefix, or add --force to write over it",
                store.describe(),
                existing.len(),
                existing[0].key
            ),
        ));
    }
    let total: u64 = objects.records.iter().map(|r| r.size).sum();
    progress.start("restore", Some(total));
    // A fatal error stops the other workers at their next object.
    let stop = AtomicBool::new(false);
    let results: Vec<Result<u64>> = pool()?.install(|| {
        objects
            .records
            .par_iter()
            .map(|rec| {
                if cancel.load(Ordering::Relaxed) {
                    return Err(interrupted());
                }
                if stop.load(Ordering::Relaxed) {
                    return Ok(0);
                }
                progress.item(&rec.key);
                let r = restore_object(repo, &store, &objects, rec, progress, cancel);
                if r.as_ref().is_err_and(is_fatal) {
                    stop.store(true, Ordering::Relaxed);
                }
                r
            })
            .collect()
    });
    progress.finish();
    if cancel.load(Ordering::Relaxed) {
        return Err(interrupted());
    }
    let mut report = BucketRestoreReport::default();
    for (rec, r) in objects.records.iter().zip(results) {
        match r {
            Ok(n) => {
                report.objects += 1;
                report.bytes += n;
            }
            Err(e) if !is_fatal(&e) => report.errors.push(format!("{:?}: {e}", rec.key)),
            Err(e) => return Err(e.context(format!("restoring {:?}", rec.key))),
        }
    }
    Ok(report)
}

/// Damaged data spoils one object; anything else (the target or the repository failing,
/// an interruption) ends the restore.
fn is_fatal(e: &Error) -> bool {
    !matches!(
        e.kind(),
        ErrorKind::Corrupt | ErrorKind::NotFound | ErrorKind::InvalidInput
    )
}

fn restore_object(
    repo: &Repository,
    store: &ObjectStore,
    objects: &SnapshotObjects,
    rec: &ObjectRecord,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<u64> {
    if !ObjectStore::is_addressable(&rec.key) {
        return Err(Error::invalid(
            "coffer cannot write this key exactly (empty, `.` or `..` segment)",
        ));
    }
    if rec.is_marker() {
        store.create_marker(&rec.key)?;
        return Ok(0);
    }
    let node = objects.node(rec)?;
    let chunks = repo.file_chunks(&node.content)?;
    let mut out = store.writer(&rec.key, rec.content_type.as_deref(), &rec.user_metadata)?;
    let mut hasher = blake3::Hasher::new();
    let mut n = 0u64;
    for id in chunks {
        if cancel.load(Ordering::Relaxed) {
            return Err(interrupted());
        }
        let data = repo.read_blob(BlobType::Data, &id)?;
        hasher.update(&data);
        out.write_all(&data)
            .map_err(|e| Error::backend(e.to_string(), false))?;
        n += data.len() as u64;
        progress.advance(data.len() as u64);
    }
    let hash = hasher.finalize().to_hex().to_string();
    if n != rec.size || hash != rec.blake3 {
        // Dropping the writer aborts the upload: the object does not appear.
        return Err(Error::corrupt(format!(
            "its content in the snapshot ({n} bytes, BLAKE3 {}) is not what was backed up \
             ({} bytes, BLAKE3 {})",
            &hash[..16],
            rec.size,
            rec.blake3.get(..16).unwrap_or(&rec.blake3)
        )));
    }
    out.finish()?;
    Ok(n)
}
