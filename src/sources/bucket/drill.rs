//! The bucket drill: write the snapshot's objects into the scratch bucket or prefix, then
//! read every object back and compare its key, size, content and metadata with the
//! snapshot's record, and look for keys the snapshot does not have.

use crate::backend::{Location, ObjectStore};
use crate::bucket::{bucket_path, restore_bucket, verify_bucket_with, BucketRestoreOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::sources::{DrillContext, DrillOptions, Protected, Restored};
use std::time::Duration;

pub(super) fn drill(ctx: &DrillContext, snap: &Snapshot, scratch: &str) -> Result<Restored> {
    let (repo, opts, progress, cancel) = (ctx.repo, ctx.options, ctx.progress, ctx.cancel);
    let location = Location::parse(scratch).map_err(|e| e.context("the drill's scratch bucket"))?;
    refuse_protected(ctx.protected, &location)?;
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
        problems,
        details: vec![],
        cleanup: Duration::ZERO,
    })
}

/// The scratch place must not overlap a bucket that any job backs up (restoring into a
/// source would change what its next backup sees), nor a region of the repository (whose
/// objects the drill would mix with its own, or delete).
fn refuse_protected(protected: &Protected, scratch: &Location) -> Result<()> {
    let within = |a: &str, b: &str| {
        let (a, b) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
        a == b || a.starts_with(&format!("{b}/"))
    };
    let s = place(scratch);
    let overlaps = |b: &str| within(&s, b) || within(b, &s);
    for (job, source) in &protected.buckets {
        let Ok(loc) = Location::parse(source) else {
            continue;
        };
        let b = place(&loc);
        if overlaps(&b) {
            return Err(Error::invalid(format!(
                "the drill's scratch bucket {s} overlaps {b}, which job {job:?} backs up; give \
                 a scratch bucket or prefix of its own"
            )));
        }
    }
    for region in &protected.regions {
        let r = place(region);
        if overlaps(&r) {
            return Err(Error::invalid(format!(
                "the drill's scratch bucket {s} overlaps {r}, a region of the repository; give \
                 a scratch bucket or prefix of its own"
            )));
        }
    }
    Ok(())
}

/// A location without its query (endpoints and keys differ, the place may not), and a local
/// folder as an absolute path.
fn place(location: &Location) -> String {
    match location {
        Location::Local(p) => std::path::absolute(p)
            .unwrap_or_else(|_| p.clone())
            .to_string_lossy()
            .into_owned(),
        _ => bucket_path(location),
    }
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
                "the scratch bucket {} holds {} object(s) (e.g. {:?}) but no {MARKER} \
                 marker: it is not a drill's scratch space; give an empty bucket or prefix",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_of_any_job_and_regions_are_refused() {
        let p = Protected {
            buckets: vec![("b".into(), "s3://media/uploads?endpoint=http://h:1".into())],
            regions: vec![
                Location::parse("s3://backups/repo").unwrap(),
                Location::parse("/srv/repo").unwrap(),
            ],
            ..Default::default()
        };
        for bad in [
            "s3://media/uploads/drill",
            "s3://media",
            "s3://backups/repo/scratch?endpoint=http://other:2",
            "s3://backups",
            "/srv/repo/drill",
        ] {
            let e = refuse_protected(&p, &Location::parse(bad).unwrap()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}: {e}");
        }
        for ok in ["s3://media/uploads-drill", "s3://scratch/x", "/srv/repo2"] {
            refuse_protected(&p, &Location::parse(ok).unwrap()).unwrap();
        }
    }
}
