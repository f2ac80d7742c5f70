//! Buckets and prefixes of any supported object store (`buckets` in a job): one snapshot
//! per bucket, every object with its metadata, restored into a bucket or prefix.

mod drill;

use super::shown::{redact_url, sh};
use super::{without_secrets, BackupContext, DrillContext, Protected, Restored, SourceKind};
use crate::backup::BackupOutcome;
use crate::bucket::backup_bucket;
use crate::config::Job;
use crate::error::Result;

/// One bucket or prefix, by URL.
pub struct Bucket(pub String);

/// The job's buckets.
pub fn of(job: &Job) -> Vec<Box<dyn SourceKind>> {
    job.buckets
        .iter()
        .map(|url| Box::new(Bucket(url.clone())) as Box<dyn SourceKind>)
        .collect()
}

impl SourceKind for Bucket {
    fn kind(&self) -> &'static str {
        "bucket"
    }
    fn label(&self) -> String {
        format!("bucket:{}", without_secrets(&self.0))
    }
    fn title(&self) -> String {
        format!("Bucket `{}`", redact_url(&self.0))
    }
    fn item_kind(&self) -> &'static str {
        "objects"
    }
    fn protect(&self, job: &str, p: &mut Protected) {
        p.buckets.push((job.to_string(), self.0.clone()));
    }
    fn backup(&self, ctx: &BackupContext) -> Result<BackupOutcome> {
        backup_bucket(ctx.repo, &self.0, &ctx.options, ctx.progress, ctx.cancel)
    }
    fn drill(&self, ctx: &DrillContext) -> Result<Restored> {
        let scratch = ctx
            .section
            .bucket
            .as_deref()
            .ok_or_else(|| ctx.missing("buckets", "a scratch bucket (bucket = \"URL\")"))?;
        let (_, snap) = ctx.newest_or_missing(self)?;
        drill::drill(ctx, snap, scratch)
    }
    fn runbook(&self, _job: &Job, tags: &str) -> String {
        format!(
            "   coffer restore latest {tags} --to-bucket {}\n",
            sh(&redact_url(&self.0))
        )
    }
}
