//! Buckets as a backup source and a restore target: every object below an `s3://` (or
//! `azblob://`, folder...) location, with its key, content, content type and user
//! metadata, stored as an ordinary snapshot, so the on-disk format is unchanged.
//!
//! A bucket snapshot (source kind `bucket`, path = the location's URL without its query)
//! has two entries at its root:
//!
//! - `objects/`: one file per object, keys split on `/` into folders; names that cannot be
//!   tree names (empty segments, `.`, `..`, a key that is also a folder) are escaped
//!   reversibly (`names.rs`);
//! - `metadata.jsonl`: one JSON line per object, sorted by key: key, path in the snapshot,
//!   size, ETag, last-modified, content type, user metadata and BLAKE3 of the content
//!   (`manifest.rs`).
//!
//! So `coffer restore --target DIR` gives plain files plus the manifest, and
//! [`restore_bucket`] writes every object back with its metadata.
//!
//! Backups compare with the newest bucket snapshot of the same host and path: an object
//! with the same key, ETag and size is not downloaded; its content and metadata come from
//! that snapshot (a HEAD refreshes the metadata if its last-modified time moved).

mod backup;
mod manifest;
mod names;
mod restore;
mod verify;

pub use backup::{backup_bucket, bucket_source};
pub use manifest::{load as load_objects, ObjectRecord, SnapshotObjects};
pub use names::{decode_name, encode_segment};
pub use restore::{restore_bucket, BucketRestoreOptions, BucketRestoreReport};
pub use verify::{verify_bucket, verify_bucket_with, BucketVerifyReport};

use crate::backend::Location;
use crate::error::{Error, Result};

/// The snapshots' source kind.
pub const SOURCE_KIND: &str = "bucket";
/// The folder at the snapshot's root that holds the objects.
pub const OBJECTS_DIR: &str = "objects";
/// The manifest file at the snapshot's root.
pub const MANIFEST_NAME: &str = "metadata.jsonl";

/// Objects transferred at once. Each holds at most one chunker buffer and one read piece
/// (about 12 MiB), and requests overlap their latency.
const OBJECT_WORKERS: usize = 6;

/// What a bucket snapshot records as its path: the location without its query (endpoint
/// and region may change without the bucket changing). Never holds a secret: locations
/// have none.
pub fn bucket_path(location: &Location) -> String {
    let url = location.to_string();
    match url.split_once('?') {
        Some((path, _)) => path.to_string(),
        None => url,
    }
}

/// The worker pool for object transfers (I/O-bound, so more threads than cores).
fn pool() -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(OBJECT_WORKERS)
        .thread_name(|i| format!("coffer-bucket-{i}"))
        .build()
        .map_err(|e| Error::new(crate::error::ErrorKind::Io, format!("worker threads: {e}")))
}

fn interrupted() -> Error {
    Error::new(crate::error::ErrorKind::Interrupted, "interrupted")
}

#[cfg(test)]
mod tests;
