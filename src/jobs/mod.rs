//! Jobs: what `coffer.toml` asks for, run unattended. A job backs up its sources on a
//! schedule, applies its retention, checks the repository and drills a restore, and every
//! outcome is reported to monitoring.
//!
//! The repository is the record: a job's snapshots carry the tags `job:NAME` and
//! `source:LABEL` (one label per source, see [`JobSource::label`]), and check and drill results
//! are stored as reports, so any machine with the password sees the same status. Only failed
//! attempts, which may have failed because the repository was unreachable, are kept locally
//! ([`state`]).

pub mod drill;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod run;
pub mod runbook;
pub mod schedule;
pub mod state;
pub mod status;
pub mod steps;
pub mod units;

use crate::config::Job;
use crate::format::snapshot::Snapshot;
use serde::Serialize;
use std::path::PathBuf;

/// The steps of a job run, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Backup,
    Forget,
    Prune,
    Check,
    Drill,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Step::Backup,
        Step::Forget,
        Step::Prune,
        Step::Check,
        Step::Drill,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Step::Backup => "backup",
            Step::Forget => "forget",
            Step::Prune => "prune",
            Step::Check => "check",
            Step::Drill => "drill",
        }
    }
}

/// What one step of one job did in a run.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub job: String,
    pub step: Step,
    pub ok: bool,
    pub started_ns: i64,
    pub duration_ns: u64,
    /// One line: what was done, or what went wrong.
    pub message: String,
    /// Snapshots the step wrote (backup) or restored (drill), as hex IDs.
    pub snapshots: Vec<String>,
    /// Bytes the step added to the repository as stored (backup).
    pub bytes_added: u64,
}

/// What one `coffer run` (or one daemon wake-up) did: the document webhooks receive.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub host: String,
    pub started_ns: i64,
    pub finished_ns: i64,
    /// Every step that ran succeeded, and nothing is in `alerts`.
    pub ok: bool,
    pub steps: Vec<StepResult>,
    /// Problems found besides the steps: a job with `postgres_pitr` whose WAL archive has
    /// no segment, or whose newest segment is older than its RPO.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub alerts: Vec<String>,
    /// The WAL archive after the run, when a job of the run names `postgres_pitr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_archive: Option<crate::wal::status::ArchiveStatus>,
}

/// One source of a job: each becomes its own snapshot at every backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSource {
    /// All of the job's paths together, in one snapshot.
    Paths(Vec<PathBuf>),
    /// One database, by connection URL.
    Postgres(String),
    /// One bucket or prefix, by URL.
    Bucket(String),
}

impl JobSource {
    /// The job's sources: its paths (together), then each database, then each bucket.
    pub fn of(job: &Job) -> Vec<JobSource> {
        let mut out = Vec::new();
        if !job.paths.is_empty() {
            out.push(JobSource::Paths(job.paths.clone()));
        }
        out.extend(job.postgres.iter().cloned().map(JobSource::Postgres));
        out.extend(job.buckets.iter().cloned().map(JobSource::Bucket));
        out
    }

    /// A stable name for the source, without credentials: `files`, `postgres:HOST:PORT/DB`,
    /// `bucket:SCHEME://BUCKET/PREFIX`. It is stored as the tag `source:LABEL`.
    pub fn label(&self) -> String {
        match self {
            JobSource::Paths(_) => "files".to_string(),
            JobSource::Postgres(url) => format!("postgres:{}", without_secrets(url)),
            JobSource::Bucket(url) => format!("bucket:{}", without_secrets(url)),
        }
    }

    /// The kind of snapshot the source makes (`Snapshot::source`).
    pub fn kind(&self) -> &'static str {
        match self {
            JobSource::Paths(_) => "files",
            JobSource::Postgres(_) => "postgres",
            JobSource::Bucket(_) => "bucket",
        }
    }

    /// The tags every snapshot of this source in `job` carries.
    pub fn tags(&self, job: &str) -> Vec<String> {
        vec![job_tag(job), format!("source:{}", self.label())]
    }

    /// Was `snap` taken of this source by `job`?
    pub fn made(&self, job: &str, snap: &Snapshot) -> bool {
        self.tags(job).iter().all(|t| snap.tags.contains(t))
    }
}

/// The tag on every snapshot a job takes.
pub fn job_tag(job: &str) -> String {
    format!("job:{job}")
}

/// A URL as it may be shown and stored: no `user:password@`, no query (which may carry keys),
/// no scheme prefix noise. `postgresql://u:p@db:5432/app?sslmode=require` → `db:5432/app`.
pub fn without_secrets(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    // Split as `PgUrl::parse` does: the query first, then the authority at the first '/',
    // then the user information at the last '@' (a password may hold a raw '#').
    let rest = rest.split('?').next().unwrap_or("");
    let rest = match rest.split_once('/') {
        Some((auth, path)) => format!("{}/{path}", host_part(auth)),
        None => host_part(rest).to_string(),
    };
    match scheme {
        Some("postgres") | Some("postgresql") | None => rest,
        Some(s) => format!("{s}://{rest}"),
    }
}

fn host_part(authority: &str) -> &str {
    authority.rsplit_once('@').map_or(authority, |(_, h)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_never_carry_credentials() {
        assert_eq!(
            without_secrets("postgresql://backup:s3cret@db.internal:5432/app?sslmode=require"),
            "db.internal:5432/app"
        );
        assert_eq!(
            without_secrets("s3://storage/public?endpoint=http://x&secret=y"),
            "s3://storage/public"
        );
        assert_eq!(
            JobSource::Postgres("postgres://u:p@h/db".into()).label(),
            "postgres:h/db"
        );
        assert_eq!(
            without_secrets("postgresql://u:p#ss@h:5433/db"),
            "h:5433/db"
        );
    }
}
