//! Check a bucket against a bucket snapshot (after a restore, e.g. in a drill): every key
//! present with the recorded size, content (BLAKE3 of the bytes read back), content type
//! and user metadata, and no other key.

use super::manifest::{self, ObjectRecord};
use super::{interrupted, pool};
use crate::backend::{Location, ObjectInfo, ObjectStore, ServiceOptions};
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::progress::{NoProgress, Progress};
use crate::repo::Repository;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default, Serialize)]
pub struct BucketVerifyReport {
    /// Objects of the snapshot found intact, and their bytes.
    pub objects: u64,
    pub bytes: u64,
    /// Keys of the snapshot that the target lacks.
    pub missing: Vec<String>,
    /// Keys the target holds that the snapshot does not.
    pub extra: Vec<String>,
    /// Keys whose size, content or metadata differ, with what differs.
    pub mismatched: Vec<String>,
}

impl BucketVerifyReport {
    pub fn ok(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.mismatched.is_empty()
    }
}

/// [`verify_bucket_with`] with default service options (credentials from the environment).
pub fn verify_bucket(
    repo: &Repository,
    snapshot: &Snapshot,
    location: &Location,
) -> Result<BucketVerifyReport> {
    let cancel = AtomicBool::new(false);
    verify_bucket_with(
        repo,
        snapshot,
        location,
        &ServiceOptions::default(),
        &NoProgress,
        &cancel,
    )
}

/// Compare the objects at `location` with `snapshot`. Differences are reported, not
/// errors; an error means the comparison could not be made (target unreachable...).
pub fn verify_bucket_with(
    repo: &Repository,
    snapshot: &Snapshot,
    location: &Location,
    service: &ServiceOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<BucketVerifyReport> {
    let objects = manifest::load(repo, snapshot)?;
    let store = ObjectStore::open(location, service)?;
    let mut listed: HashMap<String, ObjectInfo> = store
        .list()?
        .into_iter()
        .map(|o| (o.key.clone(), o))
        .collect();
    let total: u64 = objects.records.iter().map(|r| r.size).sum();
    progress.start("verify", Some(total));
    let checks: Vec<Result<Option<String>>> = pool()?.install(|| {
        objects
            .records
            .par_iter()
            .map(|rec| {
                if cancel.load(Ordering::Relaxed) {
                    return Err(interrupted());
                }
                match listed.get(&rec.key) {
                    None => Ok(None),
                    Some(info) => compare(&store, rec, info, progress).map(Some),
                }
            })
            .collect()
    });
    progress.finish();
    let mut report = BucketVerifyReport::default();
    for (rec, check) in objects.records.iter().zip(checks) {
        match check? {
            None => report.missing.push(rec.key.clone()),
            Some(diff) if !diff.is_empty() => {
                report.mismatched.push(format!("{:?}: {diff}", rec.key))
            }
            Some(_) => {
                report.objects += 1;
                report.bytes += rec.size;
            }
        }
        listed.remove(&rec.key);
    }
    report.extra = listed.into_keys().collect();
    report.extra.sort();
    Ok(report)
}

/// What differs between the target's object and the record ("" if nothing).
fn compare(
    store: &ObjectStore,
    rec: &ObjectRecord,
    info: &ObjectInfo,
    progress: &dyn Progress,
) -> Result<String> {
    let mut diffs = Vec::new();
    if info.size != rec.size {
        diffs.push(format!("size {} instead of {}", info.size, rec.size));
        return Ok(diffs.join("; "));
    }
    if rec.is_marker() {
        return Ok(String::new());
    }
    let head = store
        .stat(&rec.key)?
        .ok_or_else(|| Error::not_found(format!("{:?} vanished while it was verified", rec.key)))?;
    if rec.content_type.is_some() && head.content_type != rec.content_type {
        diffs.push(format!(
            "content type {:?} instead of {:?}",
            head.content_type, rec.content_type
        ));
    }
    if head.user_metadata != rec.user_metadata {
        diffs.push(format!(
            "user metadata {:?} instead of {:?}",
            head.user_metadata, rec.user_metadata
        ));
    }
    let mut reader = store.reader(&rec.key, head.size, head.etag.as_deref())?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| Error::backend(e.to_string(), false))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        progress.advance(n as u64);
    }
    if hasher.finalize().to_hex().as_str() != rec.blake3 {
        diffs.push("content differs".to_string());
    }
    Ok(diffs.join("; "))
}
