//! Files and folders (`paths` in a job): all of a job's paths together make one snapshot,
//! restored where they were or into a folder of the user's choice.

mod drill;
mod verify;

use super::{BackupContext, DrillContext, Restored, SourceKind};
use crate::backup::{self, BackupOptions, BackupOutcome, Source};
use crate::config::Job;
use crate::error::Result;
use std::path::PathBuf;

/// A job's paths.
pub struct Files(pub Vec<PathBuf>);

/// The job's files source, if it names paths.
pub fn of(job: &Job) -> Option<Box<dyn SourceKind>> {
    (!job.paths.is_empty()).then(|| Box::new(Files(job.paths.clone())) as Box<dyn SourceKind>)
}

impl SourceKind for Files {
    fn kind(&self) -> &'static str {
        "files"
    }
    fn label(&self) -> String {
        "files".to_string()
    }
    fn title(&self) -> String {
        let p: Vec<String> = self
            .0
            .iter()
            .map(|p| format!("`{}`", p.display()))
            .collect();
        format!("Files: {}", p.join(", "))
    }
    fn item_kind(&self) -> &'static str {
        "files"
    }
    fn backup(&self, ctx: &BackupContext) -> Result<BackupOutcome> {
        let opts = BackupOptions {
            excludes: ctx.job.exclude.clone(),
            ..ctx.options.clone()
        };
        backup::backup(
            ctx.repo,
            Source::Paths(self.0.clone()),
            &opts,
            ctx.progress,
            ctx.cancel,
        )
    }
    fn drill(&self, ctx: &DrillContext) -> Result<Restored> {
        let target = ctx.scratch_folder("paths")?;
        let (id, snap) = ctx.newest_or_missing(self)?;
        drill::drill(ctx, id, snap, target)
    }
    fn runbook(&self, _job: &Job, tags: &str) -> String {
        format!(
            "   coffer restore latest {tags} --target /    # paths come back where they were; or --target DIR to look first\n"
        )
    }
}
