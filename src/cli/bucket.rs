//! The bucket parts of `backup --bucket URL` and `restore SNAPSHOT --to-bucket URL`.

use super::common::{self, human_bytes, print_json};
use super::progress::Bar;
use super::{backup, restore, Global, EXIT_FAILURE, EXIT_OK};
use coffer::backend::{Location, ServiceOptions};
use coffer::backup::{BackupOptions, BackupOutcome};
use coffer::browse::find_snapshot_tagged;
use coffer::bucket::{backup_bucket, restore_bucket, BucketRestoreOptions};
use coffer::repo::Repository;
use coffer::Result;

pub fn backup(
    repo: &Repository,
    a: &backup::Args,
    opts: &BackupOptions,
    bar: &Bar,
) -> Result<BackupOutcome> {
    let url = a.bucket.as_deref().unwrap_or_default();
    backup_bucket(repo, url, opts, bar, common::cancel_flag())
}

pub fn restore(g: &Global, a: &restore::Args, url: &str) -> Result<i32> {
    let location = Location::parse(url).map_err(|e| e.context("--to-bucket"))?;
    let repo = common::open(g)?;
    let (id, snap) = find_snapshot_tagged(&repo, &a.snapshot, &a.tags)?;
    let opts = BucketRestoreOptions {
        force: a.force,
        service: ServiceOptions::default(),
    };
    let started = std::time::Instant::now();
    let bar = Bar::new(g.quiet, g.json);
    let out = restore_bucket(&repo, &snap, &location, &opts, &bar, common::cancel_flag())?;
    let code = if out.errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILURE
    };
    if g.json {
        print_json(&serde_json::json!({
            "snapshot": id.to_hex(),
            "bucket": location.to_string(),
            "objects": out.objects,
            "bytes": out.bytes,
            "errors": out.errors,
            "seconds": started.elapsed().as_secs_f64(),
            "exit_code": code,
        }));
    } else {
        for e in &out.errors {
            super::term::error(e);
        }
        if !g.quiet {
            println!(
                "restored {} objects ({}) from {} into {} in {:.1}s",
                out.objects,
                human_bytes(out.bytes),
                id.short(),
                location,
                started.elapsed().as_secs_f64()
            );
        }
        if !out.errors.is_empty() {
            eprintln!(
                "coffer: {} object(s) could not be restored",
                out.errors.len()
            );
        }
    }
    Ok(code)
}
