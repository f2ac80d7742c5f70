//! Sources: the kinds of data a job backs up. Each kind lives in one folder here and
//! provides, through [`SourceKind`], everything the jobs need of it: its name and tags, when
//! it is backed up, the backup itself, the drill that proves it can be restored, what it
//! protects from drills, and its part of the runbook. The jobs (`crate::jobs`) only ever see
//! `dyn SourceKind`; [`of`] is the one list of kinds, so a new kind (MySQL, say) is a new
//! folder, a field in the job file and a line in that list.
//!
//! | folder | job field | snapshot kind |
//! |---|---|---|
//! | `files` | `paths` | `files` |
//! | `pg_dump` | `postgres` | `postgres` (a `pg_dump` per database) |
//! | `bucket` | `buckets` | `bucket` |
//! | `pg_pitr` | `postgres_pitr` | `postgres-base` (base backups; the WAL is archived by `wal-push`) |

pub mod bucket;
pub mod files;
pub mod pg_dump;
pub mod pg_pitr;
pub mod scratch;
pub mod shown;

use crate::backend::{Location, ServiceOptions};
use crate::backup::{BackupOptions, BackupOutcome};
use crate::config::{DrillSection, Job};
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;
use crate::jobs::schedule::Schedule;
use crate::progress::Progress;
use crate::repo::Repository;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// What every kind of source provides.
pub trait SourceKind {
    /// The kind of snapshot it makes (`Snapshot::source`).
    fn kind(&self) -> &'static str;
    /// A stable name, without credentials (`files`, `postgres:HOST:PORT/DB`, ...). It is
    /// stored as the tag `source:LABEL` on every snapshot of the source.
    fn label(&self) -> String;
    /// A heading for people (the runbook's).
    fn title(&self) -> String;
    /// What its drill counts: files, tables, objects, WAL files.
    fn item_kind(&self) -> &'static str;
    /// When it is backed up: the job's schedule unless the kind has its own.
    fn schedule(&self, job: &Job) -> Schedule {
        job.schedule.clone().unwrap_or(Schedule::Never)
    }
    /// Is its newest snapshot the newest moment it can be recovered to, so that the job's
    /// RPO holds its age? Not for a cluster whose WAL is archived between base backups.
    fn recovers_to_snapshot(&self) -> bool {
        true
    }
    /// Add the production places it reads to `p`: no drill may restore into them.
    fn protect(&self, _job: &str, _p: &mut Protected) {}
    /// Take one backup, as one snapshot.
    fn backup(&self, ctx: &BackupContext) -> Result<BackupOutcome>;
    /// Restore into the scratch place of the job's drill section and verify.
    fn drill(&self, ctx: &DrillContext) -> Result<Restored>;
    /// The runbook's commands that restore it (shell lines, indented by three spaces, after
    /// `coffer snapshots TAGS`). `tags` selects the source's snapshots.
    fn runbook(&self, job: &Job, tags: &str) -> String;

    /// The tags every snapshot of this source in `job` carries.
    fn tags(&self, job: &str) -> Vec<String> {
        vec![job_tag(job), format!("source:{}", self.label())]
    }
    /// Was `snap` taken of this source by `job`?
    fn made(&self, job: &str, snap: &Snapshot) -> bool {
        self.tags(job).iter().all(|t| snap.tags.contains(t))
    }
}

/// The job's sources, in the order they are backed up and restored: its paths (together, as
/// one snapshot), each database dump, each bucket, the cluster under point-in-time recovery.
pub fn of(job: &Job) -> Vec<Box<dyn SourceKind>> {
    let mut out: Vec<Box<dyn SourceKind>> = Vec::new();
    out.extend(files::of(job));
    out.extend(pg_dump::of(job));
    out.extend(bucket::of(job));
    out.extend(pg_pitr::of(job));
    out
}

/// Does the job name anything to back up?
pub fn any(job: &Job) -> bool {
    !of(job).is_empty()
}

/// The tag on every snapshot a job takes.
pub fn job_tag(job: &str) -> String {
    format!("job:{job}")
}

/// What a backup of one source gets.
pub struct BackupContext<'a> {
    pub repo: &'a Repository,
    pub job: &'a Job,
    /// Host, user, lock refresh and the tags of the job and the source.
    pub options: BackupOptions,
    pub progress: &'a dyn Progress,
    pub cancel: &'a AtomicBool,
}

/// What a drill of one source gets.
pub struct DrillContext<'a> {
    pub repo: &'a Repository,
    pub job: &'a Job,
    pub section: &'a DrillSection,
    /// The newest snapshot this source made for the job, if any.
    pub newest: Option<(&'a SnapshotId, &'a Snapshot)>,
    pub options: &'a DrillOptions,
    /// Every job's sources and the repository's regions, the drilled job's included.
    pub protected: &'a Protected,
    pub progress: &'a dyn Progress,
    pub cancel: &'a AtomicBool,
}

impl DrillContext<'_> {
    /// The newest snapshot of `source`, or why there is nothing to drill.
    pub fn newest_or_missing(&self, source: &dyn SourceKind) -> Result<(&SnapshotId, &Snapshot)> {
        self.newest.ok_or_else(|| {
            Error::not_found(format!(
                "no snapshot of {} by job {} to restore; run a backup first",
                source.label(),
                self.job.name
            ))
        })
    }

    /// The drill section lacks the scratch place this source needs.
    pub fn missing(&self, what: &str, key: &str) -> Error {
        Error::invalid(format!(
            "job {:?} backs up {what}, so its drill section needs {key}",
            self.job.name
        ))
    }

    /// The drill section's scratch folder.
    pub fn scratch_folder(&self, what: &str) -> Result<&std::path::Path> {
        self.section
            .target
            .as_deref()
            .ok_or_else(|| self.missing(what, "a scratch folder (target = \"DIR\")"))
    }
}

#[derive(Debug, Clone, Default)]
pub struct DrillOptions {
    /// This machine's name, written into the scratch folder's marker so that a folder in use
    /// by a running drill here is not taken over.
    pub host: String,
    /// Keep what was restored after a successful verification (it is kept after a failure
    /// anyway, for inspection).
    pub keep: bool,
    /// Folder holding the PostgreSQL programs; default: searched for.
    pub pg_bin: Option<PathBuf>,
    /// Limits and credentials for the scratch bucket.
    pub bucket_service: ServiceOptions,
    /// What no drill may restore into, beyond the drilled job's own sources.
    pub protected: Protected,
}

/// Places no drill may restore into, whatever job it drills: the sources of every job in
/// the job file and the repository's regions. A drill drops its scratch database and
/// empties its scratch prefix, so a scratch place that is one of these (another job's
/// database, say, written into the wrong job's drill section) would lose data.
#[derive(Debug, Clone, Default)]
pub struct Protected {
    /// Every job's PostgreSQL URLs, as (job, URL).
    pub postgres: Vec<(String, String)>,
    /// Every job's bucket URLs, as (job, URL).
    pub buckets: Vec<(String, String)>,
    /// The repository's regions.
    pub regions: Vec<Location>,
}

impl Protected {
    /// The sources of `jobs` (all the jobs of the job file) and the repository's `regions`.
    pub fn new(jobs: &[Job], regions: Vec<Location>) -> Protected {
        let mut p = Protected {
            regions,
            ..Default::default()
        };
        for job in jobs {
            p.add_sources(job);
        }
        p
    }

    pub fn add_sources(&mut self, job: &Job) {
        for source in of(job) {
            source.protect(&job.name, self);
        }
    }
}

/// The result of one source's restore and verification, before timing is attached.
pub struct Restored {
    /// Where it was restored to (no credentials).
    pub restored_to: String,
    pub bytes: u64,
    pub items: u64,
    /// What failed to match; empty when the drill passed.
    pub problems: Vec<String>,
    /// Facts of this kind of drill worth keeping in the report (the recovery target of a
    /// point-in-time drill, say), as (key, value).
    pub details: Vec<(String, String)>,
    /// Work after the verification (removing the scratch copy), not part of the RTO.
    pub cleanup: Duration,
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
            pg_dump::PgDump("postgres://u:p@h/db".into()).label(),
            "postgres:h/db"
        );
        assert_eq!(
            pg_pitr::PgPitr {
                url: "postgres://u:p@h/db".into(),
                base_backup: None
            }
            .label(),
            "postgres-pitr:h/db"
        );
        assert_eq!(
            without_secrets("postgresql://u:p#ss@h:5433/db"),
            "h:5433/db"
        );
    }
}
