//! A job's standing against its targets, as a pure function of what the repository records
//! (snapshots, check and drill reports), what this machine remembers (failed attempts) and
//! "now": is the newest backup of every source younger than the RPO, did the last check pass,
//! did the last drill restore within the RTO, and when is each step next due.
//! `coffer status`, the Prometheus metrics and the runbook all read it.

use super::schedule::Schedule;
use super::state::{self, JobState};
use super::Step;
use crate::config::Job;
use crate::error::Result;
use crate::format::report::{Report, ReportKind};
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;
use crate::repo::Repository;
use crate::sources;
use crate::wal::status::ArchiveStatus;
use jiff::tz::TimeZone;
use serde::{Serialize, Serializer};
use std::path::Path;
use std::time::Duration;

/// The newest snapshot one source made.
#[derive(Debug, Clone, Serialize)]
pub struct LastSnapshot {
    pub id: String,
    #[serde(rename = "time", serialize_with = "rfc3339")]
    pub time_ns: i64,
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration_ns: u64,
    /// Bytes its backup added to the repository, as stored.
    pub bytes_added: u64,
    /// Files or objects its backup could not read (the snapshot lacks them).
    pub read_errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    /// The source's label (`files`, `postgres:HOST/DB`, `bucket:...`), its `source:` tag.
    pub source: String,
    pub kind: String,
    pub last: Option<LastSnapshot>,
    #[serde(rename = "age_seconds", serialize_with = "seconds_opt")]
    pub age_ns: Option<u64>,
}

/// The last check or drill recorded in the repository for the job.
#[derive(Debug, Clone, Serialize)]
pub struct ReportSummary {
    #[serde(rename = "time", serialize_with = "rfc3339")]
    pub time_ns: i64,
    /// For a drill: the RTO achieved (wall time of the restore).
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration_ns: u64,
    pub ok: bool,
    pub message: String,
    /// The RTO the drill was measured against when it ran.
    #[serde(rename = "target_seconds", serialize_with = "seconds_opt")]
    pub target_ns: Option<u64>,
}

/// The last attempt of a step on this machine (from the local job state).
#[derive(Debug, Clone, Serialize)]
pub struct StepAttempt {
    pub step: Step,
    #[serde(rename = "time", serialize_with = "rfc3339")]
    pub time_ns: i64,
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration_ns: u64,
    pub ok: bool,
    pub message: String,
    /// A failure that a later success recorded in the repository (maybe by another machine)
    /// has made moot.
    pub superseded: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NextDue {
    pub step: Step,
    pub schedule: String,
    /// `None` for a `never` schedule. At or before now when the step is overdue.
    #[serde(rename = "time", serialize_with = "rfc3339_opt")]
    pub time_ns: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub job: String,
    #[serde(rename = "now", serialize_with = "rfc3339")]
    pub now_ns: i64,
    pub sources: Vec<SourceStatus>,
    /// The oldest of the sources' newest snapshots: every source is at least this fresh.
    /// `None` while any source has no snapshot.
    #[serde(rename = "last_backup", serialize_with = "rfc3339_opt")]
    pub last_backup_ns: Option<i64>,
    #[serde(rename = "age_seconds", serialize_with = "seconds_opt")]
    pub age_ns: Option<u64>,
    #[serde(rename = "rpo_seconds", serialize_with = "seconds_opt")]
    pub rpo_ns: Option<u64>,
    /// `None` when the job sets no RPO.
    pub rpo_ok: Option<bool>,
    pub last_check: Option<ReportSummary>,
    pub last_drill: Option<ReportSummary>,
    #[serde(rename = "rto_seconds", serialize_with = "seconds_opt")]
    pub rto_ns: Option<u64>,
    /// `None` when the job sets no RTO.
    pub rto_ok: Option<bool>,
    /// For a job with `postgres_pitr`: the age of the WAL archive's newest segment (the
    /// database's live RPO), and whether it is within the job's RPO (`None` without one).
    #[serde(rename = "wal_age_seconds", serialize_with = "seconds_opt")]
    pub wal_age_ns: Option<u64>,
    pub wal_rpo_ok: Option<bool>,
    /// This machine's last attempt of each step that it ran.
    pub attempts: Vec<StepAttempt>,
    pub next_due: Vec<NextDue>,
    /// No problems.
    pub healthy: bool,
    /// What is wrong, one sentence each.
    pub problems: Vec<String>,
    /// What is not checked or not known yet (not problems).
    pub notes: Vec<String>,
}

/// The status of `job` at `now_ns`. `snapshots` and `reports` are the repository's (any
/// order); `local` is this machine's job state; `tz` places calendar schedules and the times
/// quoted in problems.
pub fn job_status(
    snapshots: &[(SnapshotId, Snapshot)],
    reports: &[Report],
    job: &Job,
    local: &JobState,
    now_ns: i64,
    tz: &TimeZone,
) -> JobStatus {
    let age_of = |t: i64| now_ns.saturating_sub(t).max(0) as u64;
    let kinds = sources::of(job);
    let sources: Vec<SourceStatus> = kinds
        .iter()
        .map(|src| {
            let newest = snapshots
                .iter()
                .filter(|(_, s)| src.made(&job.name, s))
                .max_by_key(|(_, s)| s.time_ns);
            SourceStatus {
                source: src.label(),
                kind: src.kind().to_string(),
                last: newest.map(|(id, s)| LastSnapshot {
                    id: id.to_hex(),
                    time_ns: s.time_ns,
                    duration_ns: s.summary.duration_ns,
                    bytes_added: s.summary.bytes_added_stored,
                    read_errors: s.summary.read_errors,
                }),
                age_ns: newest.map(|(_, s)| age_of(s.time_ns)),
            }
        })
        .collect();
    let last_backup_ns = sources
        .iter()
        .map(|s| s.last.as_ref().map(|l| l.time_ns))
        .collect::<Option<Vec<i64>>>()
        .and_then(|times| times.into_iter().min());
    // The RPO is judged on the sources whose snapshots are the recovery points. A cluster
    // under point-in-time recovery recovers to its newest archived WAL, not to its base
    // backup: `judge_wal` holds it to the RPO.
    let held: Vec<&SourceStatus> = sources
        .iter()
        .zip(&kinds)
        .filter(|(_, k)| k.recovers_to_snapshot())
        .map(|(s, _)| s)
        .collect();
    let stalest_held = held
        .iter()
        .copied()
        .filter(|s| s.last.is_some())
        .max_by_key(|s| s.age_ns);
    let age_ns = match stalest_held {
        Some(s) => s.age_ns,
        None => last_backup_ns.map(age_of),
    };
    let newest_report = |check: bool| {
        reports
            .iter()
            // A check with no job name checked the whole repository, so it counts for every job.
            .filter(|r| match r.kind {
                ReportKind::Check => check && (r.job == job.name || r.job.is_empty()),
                ReportKind::Drill => !check && r.job == job.name,
            })
            .max_by_key(|r| r.time_ns)
            .map(|r| ReportSummary {
                time_ns: r.time_ns,
                duration_ns: r.duration_ns,
                ok: r.ok,
                message: r.message.clone(),
                target_ns: r.target_ns,
            })
    };
    let last_check = newest_report(true);
    let last_drill = newest_report(false);
    let when = |ns: i64| local_time(ns, tz);
    let mut problems = Vec::new();
    let mut notes = Vec::new();

    let rpo_ns = job.rpo.map(|d| nanos(d.0));
    let never: Vec<&str> = sources
        .iter()
        .filter(|s| s.last.is_none())
        .map(|s| s.source.as_str())
        .collect();
    let held_age = stalest_held.and_then(|s| s.age_ns);
    let rpo_ok = rpo_ns.map(|rpo| never.is_empty() && held_age.map_or(true, |a| a <= rpo));
    // A snapshot that lacks files it could not read is not a whole backup, whatever its age.
    for src in &sources {
        match &src.last {
            Some(l) if l.read_errors > 0 => problems.push(format!(
                "the newest snapshot of {} ({}) lacks {} file(s) or object(s) it could not read",
                src.source, l.id, l.read_errors
            )),
            None if rpo_ns.is_none() => {
                problems.push(format!("{} has never been backed up", src.source))
            }
            _ => {}
        }
    }
    match (rpo_ns, held_age) {
        (None, _) => notes.push("no RPO set: the age of backups is not checked".to_string()),
        (Some(rpo), _) if !never.is_empty() => {
            problems.push(format!(
                "past its RPO: never backed up ({} has no snapshot), RPO {}",
                never.join(", "),
                human(rpo)
            ));
        }
        (Some(rpo), Some(age)) if age > rpo => {
            let which = match stalest_held {
                Some(s) if sources.len() > 1 => format!("the newest snapshot of {}", s.source),
                _ => "newest snapshot".to_string(),
            };
            problems.push(format!(
                "past its RPO: {which} is {} old, RPO {}",
                human(age),
                human(rpo)
            ));
        }
        _ => {}
    }

    match &last_check {
        Some(c) if !c.ok => problems.push(format!(
            "last check failed at {}: {}",
            when(c.time_ns),
            c.message
        )),
        None if job.check.is_some() => notes.push("no check has run yet".to_string()),
        _ => {}
    }

    let rto_ns = job.rto.map(|d| nanos(d.0));
    let rto_ok = rto_ns.map(|rto| {
        last_drill
            .as_ref()
            .is_some_and(|d| d.ok && d.duration_ns <= rto)
    });
    match &last_drill {
        Some(d) if !d.ok => problems.push(format!(
            "last drill failed at {}: {}",
            when(d.time_ns),
            d.message
        )),
        Some(d) if rto_ns.is_some_and(|rto| d.duration_ns > rto) => problems.push(format!(
            "last drill took {}, RTO {} (at {})",
            human(d.duration_ns),
            human(rto_ns.unwrap_or_default()),
            when(d.time_ns)
        )),
        None if rto_ns.is_some() => problems.push(format!(
            "RTO {} not proven: no drill has run{}",
            human(rto_ns.unwrap_or_default()),
            if job.drill.is_none() {
                " (the job has no drill schedule)"
            } else {
                ""
            }
        )),
        None if job.drill.is_some() => notes.push("no drill has run yet".to_string()),
        _ => {}
    }
    if rto_ns.is_none() {
        notes.push("no RTO set: the time a restore takes is not checked".to_string());
    }

    // A local failure counts until the repository records a later success of the same step.
    let succeeded_since = |step: Step, t: i64| match step {
        Step::Backup => last_backup_ns.is_some_and(|b| b > t),
        Step::Check => last_check.as_ref().is_some_and(|c| c.ok && c.time_ns > t),
        Step::Drill => last_drill.as_ref().is_some_and(|d| d.ok && d.time_ns > t),
        Step::Forget | Step::Prune => false,
    };
    let attempts: Vec<StepAttempt> = Step::ALL
        .iter()
        .filter_map(|&step| {
            let a = local.get(step)?;
            Some(StepAttempt {
                step,
                time_ns: a.time_ns,
                duration_ns: a.duration_ns,
                ok: a.ok,
                message: a.message.clone(),
                superseded: !a.ok && succeeded_since(step, a.time_ns),
            })
        })
        .collect();
    for a in attempts.iter().filter(|a| !a.ok && !a.superseded) {
        problems.push(format!(
            "last {} attempt failed at {}: {}",
            a.step.name(),
            when(a.time_ns),
            a.message
        ));
    }

    let due = |step: Step, schedule: &Schedule, last: Option<i64>| NextDue {
        step,
        schedule: schedule.to_string(),
        time_ns: schedule.next_due(last, now_ns, tz),
    };
    // Sources may have schedules of their own (base backups): one entry per schedule, due
    // when its least recently backed-up source is.
    let mut next_due: Vec<NextDue> = Vec::new();
    for (kind, status) in kinds.iter().zip(&sources) {
        let d = due(
            Step::Backup,
            &kind.schedule(job),
            status.last.as_ref().map(|l| l.time_ns),
        );
        match next_due.iter_mut().find(|n| n.schedule == d.schedule) {
            Some(n) => n.time_ns = earliest(n.time_ns, d.time_ns),
            None => next_due.push(d),
        }
    }
    if let Some(c) = &job.check {
        next_due.push(due(
            Step::Check,
            &c.schedule,
            last_check.as_ref().map(|r| r.time_ns),
        ));
    }
    if let Some(d) = &job.drill {
        next_due.push(due(
            Step::Drill,
            &d.schedule,
            last_drill.as_ref().map(|r| r.time_ns),
        ));
    }

    // A check or drill that stopped running (a broken timer, a moved daemon) would leave an
    // old passing result standing: more than two periods since it last ran (it missed a whole
    // period after it fell due) is a problem. Backups are held to the RPO instead.
    let stale = [
        (
            Step::Check,
            job.check.as_ref().map(|c| &c.schedule),
            &last_check,
        ),
        (
            Step::Drill,
            job.drill.as_ref().map(|d| &d.schedule),
            &last_drill,
        ),
    ];
    for (step, schedule, last) in stale {
        let (Some(period), Some(last)) = (schedule.and_then(|s| s.period()), last) else {
            continue;
        };
        if now_ns.saturating_sub(last.time_ns).max(0) as u128 > 2 * period.as_nanos() {
            problems.push(format!(
                "the {} is overdue: it last ran at {} ({})",
                step.name(),
                when(last.time_ns),
                schedule.map(|s| s.to_string()).unwrap_or_default()
            ));
        }
    }

    JobStatus {
        job: job.name.clone(),
        now_ns,
        sources,
        last_backup_ns,
        age_ns,
        rpo_ns,
        rpo_ok,
        last_check,
        last_drill,
        rto_ns,
        rto_ok,
        wal_age_ns: None,
        wal_rpo_ok: None,
        attempts,
        next_due,
        healthy: problems.is_empty(),
        problems,
        notes,
    }
}

/// What is wrong with the WAL archive of a job with `postgres_pitr` and this RPO: no
/// segment archived at all, or the newest older than the RPO (archiving has stopped, fails
/// or falls behind). `None` when all is well.
pub fn wal_problem(rpo_ns: Option<u64>, archive: Option<&ArchiveStatus>) -> Option<String> {
    let newest = archive.and_then(|a| a.newest_segment.as_ref().zip(a.age_ns));
    match (rpo_ns, newest) {
        (_, None) => Some(
            "no WAL segment is archived: point-in-time recovery is not possible (check the \
             server's archive_command, `coffer setup-archiving`)"
                .to_string(),
        ),
        (Some(rpo), Some((name, age))) if age > rpo => Some(format!(
            "past its RPO: the WAL archive's newest segment ({name}) is {} old, RPO {}: \
             archiving has stopped or falls behind (see pg_stat_archiver)",
            human(age),
            human(rpo)
        )),
        _ => None,
    }
}

/// Hold a job that names `postgres_pitr` to its RPO with the WAL archive too: the newest
/// archived segment is what a crash now falls back to. A job without `postgres_pitr` is
/// left as it is.
pub fn judge_wal(status: &mut JobStatus, job: &Job, archive: Option<&ArchiveStatus>) {
    if job.postgres_pitr.is_none() {
        return;
    }
    let age = archive.and_then(|a| a.age_ns);
    status.wal_age_ns = age;
    status.wal_rpo_ok = status.rpo_ns.map(|rpo| age.is_some_and(|a| a <= rpo));
    if status.rpo_ns.is_none() {
        status
            .notes
            .push("no RPO set: the age of the WAL archive is not checked".to_string());
    }
    if let Some(p) = wal_problem(status.rpo_ns, archive) {
        status.problems.push(p);
        status.healthy = false;
    }
}

/// Every job's status, and the WAL archive's (when the repository holds WAL).
#[derive(Debug, Clone, Serialize)]
pub struct Statuses {
    pub jobs: Vec<JobStatus>,
    pub wal_archive: Option<ArchiveStatus>,
}

/// The status of each of `jobs`, from the repository (snapshots, reports, the WAL archive)
/// and this machine's job state in `state_dir`. A damaged snapshot is left out (so its
/// source looks older, which errs towards an RPO alert); `coffer check` reports the damage.
pub fn read_all(
    repo: &Repository,
    jobs: &[&Job],
    state_dir: &Path,
    now_ns: i64,
    tz: &TimeZone,
) -> Result<Statuses> {
    let (snapshots, _damaged) = repo.readable_snapshots()?;
    let reports: Vec<Report> = repo.reports()?.into_iter().map(|(_, r)| r).collect();
    let archive = crate::wal::status::read_archive_status(repo, &snapshots, now_ns)?;
    let jobs = jobs
        .iter()
        .map(|job| {
            let local = state::load(state_dir, &job.name);
            let mut status = job_status(&snapshots, &reports, job, &local, now_ns, tz);
            judge_wal(&mut status, job, archive.as_ref());
            status
        })
        .collect();
    Ok(Statuses {
        jobs,
        wal_archive: archive,
    })
}

/// The jobs' part of [`read_all`].
pub fn read_statuses(
    repo: &Repository,
    jobs: &[&Job],
    state_dir: &Path,
    now_ns: i64,
    tz: &TimeZone,
) -> Result<Vec<JobStatus>> {
    Ok(read_all(repo, jobs, state_dir, now_ns, tz)?.jobs)
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// A duration for people, in the units an RPO is written in: `42s`, `20m`, `12m30s`, `30h`,
/// `26h15m`, and days past three days (`9d4h`).
pub fn human(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    let pair = |a: u64, ua: &str, b: u64, ub: &str| {
        if b == 0 {
            format!("{a}{ua}")
        } else {
            format!("{a}{ua}{b}{ub}")
        }
    };
    match s {
        0 => format!("{:.1}s", ns as f64 / 1e9),
        1..=59 => format!("{s}s"),
        60..=3599 => pair(s / 60, "m", s % 60, "s"),
        3600..=259_199 => pair(s / 3600, "h", s % 3600 / 60, "m"),
        _ => pair(s / 86400, "d", s % 86400 / 3600, "h"),
    }
}

/// `2026-11-27 02:30` in `tz`.
pub fn local_time(ns: i64, tz: &TimeZone) -> String {
    jiff::Timestamp::from_nanosecond(ns as i128)
        .map(|t| {
            t.to_zoned(tz.clone())
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|_| format!("{ns}ns"))
}

/// The earlier of two due times; `None` is "never".
fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

fn rfc3339<S: Serializer>(ns: &i64, s: S) -> Result<S::Ok, S::Error> {
    match jiff::Timestamp::from_nanosecond(*ns as i128) {
        Ok(t) => s.serialize_str(&t.to_string()),
        Err(_) => s.serialize_i64(*ns),
    }
}

fn rfc3339_opt<S: Serializer>(ns: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ns {
        Some(ns) => rfc3339(ns, s),
        None => s.serialize_none(),
    }
}

fn seconds<S: Serializer>(ns: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(*ns as f64 / 1e9)
}

fn seconds_opt<S: Serializer>(ns: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match ns {
        Some(ns) => seconds(ns, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
