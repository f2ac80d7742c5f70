//! The bucket drill: write the snapshot's objects into the scratch bucket or prefix, then
//! read every object back and compare its key, size, content and metadata with the
//! snapshot's record, and look for keys the snapshot does not have.

use super::{DrillOptions, Restored};
use crate::backend::{Location, ObjectStore};
use crate::bucket::{bucket_path, restore_bucket, verify_bucket_with, BucketRestoreOptions};
use crate::config::Job;
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::progress::Progress;
use crate::repo::Repository;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[allow(clippy::too_many_arguments)]
pub(super) fn drill(
    repo: &Repository,
    job: &Job,
    _source_url: &str,
    snap: &Snapshot,
    scratch: &str,
    opts: &DrillOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<Restored> {
    let location = Location::parse(scratch).map_err(|e| e.context("the drill's scratch bucket"))?;
    refuse_a_source(job, &location)?;
    empty(&location, opts)?;
    // The prefix now holds only this drill's marker.
    let restore_opts = BucketRestoreOptions {
        force: true,
        service: opts.bucket_service.clone(),
    };
    let restored = restore_bucket(repo, snap, &location, &restore_opts, progress, cancel)?;
    let verified = verify_bucket_with(
        repo,
        snap,
        &location,
        &opts.bucket_service,
        progress,
        cancel,
    )?;
    let mut problems = restored.errors;
    problems.extend(verified.missing.iter().map(|k| format!("{k:?}: missing")));
    problems.extend(verified.mismatched.iter().cloned());
    problems.extend(
        verified
            .extra
            .iter()
            .filter(|k| *k != MARKER)
            .map(|k| format!("{k:?}: in the scratch bucket but not in the snapshot")),
    );
    Ok(Restored {
        restored_to: bucket_path(&location),
        bytes: verified.bytes,
        items: verified.objects,
        item_kind: "objects",
        problems,
        cleanup: Duration::ZERO,
    })
}

/// The scratch place must not overlap a bucket the job backs up: restoring into a source
/// would change what the next backup sees.
fn refuse_a_source(job: &Job, scratch: &Location) -> Result<()> {
    let within = |a: &str, b: &str| {
        let (a, b) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
        a == b || a.starts_with(&format!("{b}/"))
    };
    let s = bucket_path(scratch);
    for source in &job.buckets {
        let Ok(loc) = Location::parse(source) else {
            continue;
        };
        let b = bucket_path(&loc);
        if within(&s, &b) || within(&b, &s) {
            return Err(Error::invalid(format!(
                "the drill's scratch bucket {s} overlaps {b}, which the job backs up; give \
                 a scratch bucket or prefix of its own"
            )));
        }
    }
    Ok(())
}

/// The object that marks a scratch prefix as a drill's own: a prefix with objects but
/// without it is refused, so a mistyped `drill.bucket` never empties real data.
const MARKER: &str = ".coffer-drill";

/// Empty the scratch prefix (all but the marker), so that the comparison after the restore
/// sees only what the restore wrote. An empty prefix is claimed by writing the marker.
fn empty(location: &Location, opts: &DrillOptions) -> Result<()> {
    let store = ObjectStore::open(location, &opts.bucket_service)?;
    let existing = store.list()?;
    if !existing.is_empty() && !existing.iter().any(|o| o.key == MARKER) {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "the scratch bucket {} holds {} object(s) (e.g. {:?}) but no {MARKER} marker:                  it is not a drill's scratch space; give an empty bucket or prefix",
                store.describe(),
                existing.len(),
                existing[0].key
            ),
        ));
    }
    for object in existing.iter().filter(|o| o.key != MARKER) {
        store
            .delete(&object.key)
            .map_err(|e| e.context("emptying the scratch bucket"))?;
    }
    if existing.is_empty() {
        store
            .writer(MARKER, Some("text/plain"), &Default::default())?
            .finish()
            .map_err(|e| e.context("marking the scratch bucket"))?;
    }
    match store.list()?.iter().find(|o| o.key != MARKER) {
        None => Ok(()),
        Some(left) => Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "the scratch bucket {} still holds {:?} after it was emptied",
                store.describe(),
                left.key
            ),
        )),
    }
}
