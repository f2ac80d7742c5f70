//! Jobs: what `coffer.toml` asks for, run unattended. A job backs up its sources on a
//! schedule, applies its retention, checks the repository and drills a restore, and every
//! outcome is reported to monitoring.
//!
//! The repository is the record: a job's snapshots carry the tags `job:NAME` and
//! `source:LABEL` (one label per source, see [`crate::sources::SourceKind::label`]), and check and drill results
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
pub mod state_dir;
pub mod status;
pub mod steps;
pub mod units;

use serde::Serialize;

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

pub use crate::sources::{job_tag, without_secrets};
