//! The steps of a job, each a thin call into its use case: back up one source, forget by
//! the job's retention, prune, check. Each returns a one-line summary for the run report.

use crate::backend::{ObjectKind, ObjectName};
use crate::backup::{BackupOptions, BackupOutcome};
use crate::check::{self, CheckOptions};
use crate::config::Job;
use crate::error::Result;
use crate::gc::{self, PruneOptions};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::retention::{self, Candidate};
use crate::sources::{BackupContext, SourceKind};
use std::sync::atomic::AtomicBool;

/// Back up one source of `job` as a snapshot tagged with the job and the source.
pub fn backup_source(
    repo: &Repository,
    job: &Job,
    source: &dyn SourceKind,
    base: &BackupOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<BackupOutcome> {
    let mut options = BackupOptions {
        tags: source.tags(&job.name),
        host: base.host.clone(),
        user: base.user.clone(),
        lock_refresh: base.lock_refresh,
        ..Default::default()
    };
    options.tags.extend(job.tags.iter().cloned());
    source.backup(&BackupContext {
        repo,
        job,
        options,
        progress,
        cancel,
    })
}

/// Apply the job's retention to the job's snapshots only; returns (kept, removed).
pub fn forget(
    repo: &Repository,
    job: &Job,
    now_ns: i64,
    tz: &jiff::tz::TimeZone,
) -> Result<(usize, usize)> {
    let Some(section) = &job.retention else {
        return Ok((0, 0));
    };
    let tag = super::job_tag(&job.name);
    let (snaps, _damaged) = repo.readable_snapshots()?;
    let candidates: Vec<Candidate> = snaps
        .iter()
        .filter(|(_, s)| s.tags.contains(&tag))
        .map(|(id, s)| Candidate::new(*id, s))
        .collect();
    let plan = retention::plan(&candidates, &section.policy(), now_ns, tz, false)?;
    let removed: Vec<ObjectName> = plan
        .removed()
        .map(|d| ObjectName::new(ObjectKind::Snapshot, d.id.0))
        .collect();
    if !removed.is_empty() {
        // A tombstone first, so `sync` never brings them back (format-spec §5.12).
        for (_, deleted) in repo.bury(&removed)? {
            deleted?;
        }
    }
    Ok((plan.kept().count(), removed.len()))
}

/// Delete what no snapshot uses (with prune's defaults).
pub fn prune(
    repo: &Repository,
    host: &str,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<gc::PruneReport> {
    let opts = PruneOptions {
        host: host.to_string(),
        ..Default::default()
    };
    gc::prune(repo, &opts, progress, cancel)
}

/// Check the repository as the job's check section asks.
pub fn check(repo: &Repository, job: &Job, progress: &dyn Progress) -> Result<check::CheckReport> {
    let section = job.check.as_ref();
    let opts = CheckOptions {
        read_data: section.is_some_and(|c| c.read_data),
        read_data_subset: section.and_then(|c| c.read_data_subset).map(|p| p.0),
    };
    check::check(repo, &opts, progress)
}

/// Restore the job's newest snapshots into its scratch places and verify them; the drill
/// stores its own report in the repository. Ok only if it passed, met the RTO and was
/// recorded.
pub fn drill(
    repo: &Repository,
    job: &Job,
    host: &str,
    protected: &crate::sources::Protected,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<StepDone> {
    let opts = super::drill::DrillOptions {
        host: host.to_string(),
        protected: protected.clone(),
        ..Default::default()
    };
    let outcome = super::drill::drill(repo, job, &opts, progress, cancel)?;
    let done = StepDone {
        message: outcome.message.clone(),
        snapshots: outcome
            .sources
            .iter()
            .filter_map(|s| s.snapshot.clone())
            .collect(),
    };
    if outcome.passed() {
        Ok(done)
    } else {
        Err(crate::error::Error::corrupt(done.message))
    }
}

/// A step's summary for the run report.
pub struct StepDone {
    pub message: String,
    pub snapshots: Vec<String>,
}
