//! `coffer run`: do what is due now, for every job or the named ones. For each job: back up
//! each source, then forget and prune by its retention, then check, then drill. Safe to start
//! every few minutes from cron or a systemd timer: a run that finds another one still going
//! on this machine does nothing, and one on another machine is kept apart by the
//! repository's own locks.

use super::state::{self, Attempt, JobState};
use super::{steps, RunReport, Step, StepResult};
use crate::backend::Location;
use crate::backup::BackupOptions;
use crate::config::{ConfigFile, Job};
use crate::error::{Error, ErrorKind, Result};
use crate::format::report::{Report, ReportKind};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::sources::Protected;
use crate::sources::{self, SourceKind};
use jiff::tz::TimeZone;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub struct RunOptions {
    /// Jobs to consider; empty means every job in the file.
    pub jobs: Vec<String>,
    /// Run every step of the selected jobs now, whatever their schedules say.
    pub force: bool,
    pub host: String,
    pub user: String,
    /// Where this machine keeps its attempts (see `state`) and the run lock.
    pub state_dir: PathBuf,
    pub tz: TimeZone,
    /// A step that failed is not tried again sooner than this (unless forced).
    pub retry_after: Duration,
    /// Set to the job's `upload_limit` while the job runs; a job without one keeps the rate
    /// it had (`--limit-upload`).
    pub upload_limit: Option<std::sync::Arc<crate::backend::throttle::UploadLimit>>,
    /// The repository's regions: no drill restores into one.
    pub regions: Vec<Location>,
}

/// Holds the machine-wide run lock while alive: `run.lock` in the state folder, which every
/// run of the machine's jobs shares whatever cache it uses (an advisory `flock`, released by the kernel
/// when the process dies, so a killed run never blocks the next one).
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Take the lock, or `None` when another run holds it.
    pub fn try_take(state_dir: &std::path::Path) -> Result<Option<RunLock>> {
        crate::hostfile::private_dir(state_dir).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!(
                    "state folder {}: {e}; give --state-dir DIR for one this user can write",
                    state_dir.display()
                ),
            )
        })?;
        let path = state_dir.join("run.lock");
        // Private, and O_NOFOLLOW: a symlink left there while the folder was still open to
        // others must not make coffer create or lock another file.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(crate::hostfile::PRIVATE_FILE)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .map_err(|e| Error::io(path.display(), e))?;
        crate::hostfile::narrow(&path, crate::hostfile::PRIVATE_FILE)
            .map_err(|e| Error::io(path.display(), e))?;
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(RunLock { _file: file }));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Ok(None);
        }
        Err(Error::io(path.display(), err))
    }
}

/// Run what is due. `None` when another run on this machine holds the lock.
pub fn run_due(
    repo: &Repository,
    cfg: &ConfigFile,
    opts: &RunOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<Option<RunReport>> {
    let Some(_lock) = RunLock::try_take(&opts.state_dir)? else {
        return Ok(None);
    };
    let jobs: Vec<&Job> = if opts.jobs.is_empty() {
        cfg.jobs.iter().collect()
    } else {
        opts.jobs
            .iter()
            .map(|n| cfg.job(n))
            .collect::<Result<_>>()?
    };
    let started_ns = repo.clock().now();
    // Every job of the file, not only those run now: a drill must not touch any source.
    let protected = Protected::new(&cfg.jobs, opts.regions.clone());
    let mut steps = Vec::new();
    for &job in &jobs {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let base_limit = opts.upload_limit.as_ref().and_then(|l| l.get());
        if let Some(limit) = &opts.upload_limit {
            limit.set(job.upload_limit.map(|r| r.0).or(base_limit));
        }
        let results = super::limits::with_limits(job, || {
            JobRun::new(repo, job, opts, &protected, progress, cancel).run()
        })?;
        if let Some(limit) = &opts.upload_limit {
            limit.set(base_limit);
        }
        steps.extend(results);
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
    }
    let (wal_archive, alerts) = wal_alerts(repo, &jobs);
    Ok(Some(RunReport {
        host: opts.host.clone(),
        started_ns,
        finished_ns: repo.clock().now(),
        ok: steps.iter().all(|s| s.ok) && alerts.is_empty(),
        steps,
        alerts,
        wal_archive,
    }))
}

/// For the jobs of a run that name `postgres_pitr`: the WAL archive's status, and one alert
/// per job whose archive is empty or older than its RPO (archiving stopped or lags).
fn wal_alerts(
    repo: &Repository,
    jobs: &[&Job],
) -> (Option<crate::wal::status::ArchiveStatus>, Vec<String>) {
    let pitr: Vec<&&Job> = jobs.iter().filter(|j| j.postgres_pitr.is_some()).collect();
    if pitr.is_empty() {
        return (None, vec![]);
    }
    let now = repo.clock().now();
    let archive = repo
        .readable_snapshots()
        .and_then(|(snaps, _)| crate::wal::status::read_archive_status(repo, &snaps, now));
    match archive {
        Ok(archive) => {
            let alerts = pitr
                .iter()
                .filter_map(|j| {
                    let rpo = j.rpo.map(|d| d.0.as_nanos().min(u64::MAX as u128) as u64);
                    super::status::wal_problem(rpo, archive.as_ref())
                        .map(|p| format!("{}: {p}", j.name))
                })
                .collect();
            (archive, alerts)
        }
        Err(e) => (
            None,
            vec![format!(
                "the WAL archive could not be read, its age is unknown: {e}"
            )],
        ),
    }
}

/// One job's share of a run.
struct JobRun<'a> {
    repo: &'a Repository,
    job: &'a Job,
    opts: &'a RunOptions,
    protected: &'a Protected,
    progress: &'a dyn Progress,
    cancel: &'a AtomicBool,
    state: JobState,
    results: Vec<StepResult>,
}

impl<'a> JobRun<'a> {
    fn new(
        repo: &'a Repository,
        job: &'a Job,
        opts: &'a RunOptions,
        protected: &'a Protected,
        progress: &'a dyn Progress,
        cancel: &'a AtomicBool,
    ) -> Self {
        JobRun {
            repo,
            job,
            opts,
            protected,
            progress,
            cancel,
            state: state::load(&opts.state_dir, &job.name),
            results: Vec::new(),
        }
    }

    fn run(mut self) -> Vec<StepResult> {
        let outcome = self.run_steps();
        if let Err(e) = outcome {
            // The repository could not be read at all: report it as the backup's failure,
            // since that is what the job is late on.
            let now = self.now();
            self.record(Step::Backup, now, Err(e));
        }
        if let Err(e) = state::save(&self.opts.state_dir, &self.job.name, &self.state) {
            self.progress.warn(&format!(
                "job {}: could not save its state: {e}",
                self.job.name
            ));
        }
        self.results
    }

    fn now(&self) -> i64 {
        self.repo.clock().now()
    }

    fn run_steps(&mut self) -> Result<()> {
        let (snaps, _) = self.repo.readable_snapshots()?;
        if self.not_held_back(Step::Backup) && !self.due_sources(&snaps).is_empty() {
            let all_ok = self.backup(&snaps);
            if all_ok && self.job.retention.is_some() && !self.cancelled() {
                self.forget_and_prune();
            }
        }
        if self.cancelled() {
            return Ok(());
        }
        let reports = self.repo.reports()?;
        let last_report = |kind: ReportKind| {
            reports
                .iter()
                .filter(|(_, r)| r.kind == kind && r.job == self.job.name)
                .map(|(_, r)| r.time_ns)
                .max()
        };
        if let Some(check) = &self.job.check {
            if self.due(Step::Check, &check.schedule, last_report(ReportKind::Check)) {
                self.check();
            }
        }
        if self.cancelled() {
            return Ok(());
        }
        if let Some(drill) = &self.job.drill {
            if self.due(Step::Drill, &drill.schedule, last_report(ReportKind::Drill)) {
                self.drill();
            }
        }
        Ok(())
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Is the step due by its schedule and its last success, and not held back by a recent
    /// failure on this machine?
    fn due(&self, step: Step, schedule: &super::schedule::Schedule, last_ok: Option<i64>) -> bool {
        self.not_held_back(step)
            && (self.opts.force || schedule.is_due(last_ok, self.now(), &self.opts.tz))
    }

    /// Not failed on this machine more recently than the retry interval (or forced).
    fn not_held_back(&self, step: Step) -> bool {
        if self.opts.force {
            return true;
        }
        match self.state.get(step) {
            Some(a) if !a.ok => {
                let since = self.now().saturating_sub(a.time_ns);
                !(since >= 0 && (since as u128) < self.opts.retry_after.as_nanos())
            }
            _ => true,
        }
    }

    /// The sources due for a backup by their own schedules (all of them when forced): a
    /// source that failed does not make the others run again at every retry.
    fn due_sources(
        &self,
        snaps: &[(crate::id::SnapshotId, crate::format::snapshot::Snapshot)],
    ) -> Vec<Box<dyn SourceKind>> {
        sources::of(self.job)
            .into_iter()
            .filter(|source| {
                self.opts.force
                    || source.schedule(self.job).is_due(
                        newest_of(self.job, source.as_ref(), snaps),
                        self.now(),
                        &self.opts.tz,
                    )
            })
            .collect()
    }

    /// Back up every source that is due. True if all succeeded.
    fn backup(
        &mut self,
        snaps: &[(crate::id::SnapshotId, crate::format::snapshot::Snapshot)],
    ) -> bool {
        let base = BackupOptions {
            host: self.opts.host.clone(),
            user: self.opts.user.clone(),
            ..Default::default()
        };
        let mut all_ok = true;
        for source in self.due_sources(snaps) {
            if self.cancelled() {
                return false;
            }
            let started = self.now();
            let clock = Instant::now();
            let outcome = steps::backup_source(
                self.repo,
                self.job,
                source.as_ref(),
                &base,
                self.progress,
                self.cancel,
            );
            let label = source.label();
            let result = outcome.map(|o| {
                let s = &o.snapshot.summary;
                let mut message = format!(
                    "{label}: snapshot {} ({} added)",
                    o.id.short(),
                    super::units::human_bytes(s.bytes_added_stored)
                );
                if s.read_errors > 0 {
                    message.push_str(&format!(", {} unreadable", s.read_errors));
                }
                Done {
                    message,
                    snapshots: vec![o.id.to_hex()],
                    bytes_added: s.bytes_added_stored,
                    ok: s.read_errors == 0,
                }
            });
            let result = result.map_err(|e| e.context(label.clone()));
            all_ok &= matches!(&result, Ok(d) if d.ok);
            self.record_timed(Step::Backup, started, clock, result);
        }
        all_ok
    }

    fn forget_and_prune(&mut self) {
        let started = self.now();
        let clock = Instant::now();
        let forgot = steps::forget(self.repo, self.job, started, &self.opts.tz)
            .map(|(kept, removed)| Done::ok(format!("kept {kept}, removed {removed} snapshot(s)")));
        let forgot_ok = forgot.is_ok();
        self.record_timed(Step::Forget, started, clock, forgot);
        let prune = self.job.retention.as_ref().is_some_and(|r| r.prune);
        if !(forgot_ok && prune) || self.cancelled() {
            return;
        }
        let started = self.now();
        let clock = Instant::now();
        let pruned =
            steps::prune(self.repo, &self.opts.host, self.progress, self.cancel).map(|r| {
                let pending = if r.plans_pending.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", {} plan(s) waiting for running backups",
                        r.plans_pending.len()
                    )
                };
                Done::ok(format!(
                    "freed {}, {} pack(s) deleted{pending}",
                    super::units::human_bytes(r.bytes_freed),
                    r.packs_deleted
                ))
            });
        // Another prune holding the repository is not this job's failure.
        let pruned = match pruned {
            Err(e) if e.kind() == ErrorKind::Locked => {
                Ok(Done::ok(format!("skipped: {}", e.message())))
            }
            other => other,
        };
        self.record_timed(Step::Prune, started, clock, pruned);
    }

    fn check(&mut self) {
        let started = self.now();
        let clock = Instant::now();
        let checked = steps::check(self.repo, self.job, self.progress);
        let duration_ns = clock.elapsed().as_nanos() as u64;
        let (ok, message) = match &checked {
            Ok(r) if r.ok() => (
                true,
                format!(
                    "{} snapshot(s), {} pack(s) read: no problems",
                    r.snapshots, r.packs_read
                ),
            ),
            Ok(r) => (
                false,
                format!(
                    "{} problem(s), {} snapshot path(s) affected",
                    r.problems.len(),
                    r.affected.len()
                ),
            ),
            Err(e) => (false, e.to_string()),
        };
        // The result goes into the repository so every machine's `status` sees it; a check
        // that could not even run leaves only the local record.
        let stored = if checked.is_ok() {
            self.repo
                .save_report(&Report {
                    kind: ReportKind::Check,
                    job: self.job.name.clone(),
                    time_ns: started,
                    duration_ns,
                    ok,
                    snapshots: vec![],
                    target_ns: None,
                    message: message.clone(),
                    info: vec![],
                })
                .map(|_| ())
        } else {
            Ok(())
        };
        let result = match (ok, stored) {
            (true, Ok(())) => Ok(Done::ok(message)),
            (true, Err(e)) => Err(e.context("storing the check's report")),
            (false, _) => Err(Error::corrupt(message)),
        };
        self.record_timed(Step::Check, started, clock, result);
    }

    fn drill(&mut self) {
        let started = self.now();
        let clock = Instant::now();
        let drilled = steps::drill(
            self.repo,
            self.job,
            &self.opts.host,
            self.protected,
            self.progress,
            self.cancel,
        )
        .map(|d| Done {
            message: d.message,
            snapshots: d.snapshots,
            bytes_added: 0,
            ok: true,
        });
        self.record_timed(Step::Drill, started, clock, drilled);
    }

    fn record_timed(&mut self, step: Step, started: i64, clock: Instant, result: Result<Done>) {
        let duration_ns = clock.elapsed().as_nanos() as u64;
        self.push(step, started, duration_ns, result);
    }

    fn record(&mut self, step: Step, started: i64, result: Result<Done>) {
        self.push(step, started, 0, result);
    }

    fn push(&mut self, step: Step, started_ns: i64, duration_ns: u64, result: Result<Done>) {
        // Stopped by the user (Ctrl-C, SIGTERM): not a failure to wait out before retrying.
        let interrupted = matches!(&result, Err(e) if e.kind() == ErrorKind::Interrupted);
        let r = match result {
            Ok(d) => StepResult {
                job: self.job.name.clone(),
                step,
                ok: d.ok,
                started_ns,
                duration_ns,
                message: d.message,
                snapshots: d.snapshots,
                bytes_added: d.bytes_added,
            },
            Err(e) => StepResult {
                job: self.job.name.clone(),
                step,
                ok: false,
                started_ns,
                duration_ns,
                message: e.to_string(),
                snapshots: vec![],
                bytes_added: 0,
            },
        };
        if !r.ok {
            self.progress.warn(&format!(
                "job {}: {} failed: {}",
                r.job,
                step.name(),
                r.message
            ));
        }
        // A failure of any source marks the step failed; a later success of another source
        // in the same run must not hide it.
        let failed_before = self.results.iter().any(|p| p.step == step && !p.ok);
        if interrupted {
            self.results.push(r);
            return;
        }
        // Keep the first failure's words: a later source's success would hide what broke.
        let first_failure = self
            .results
            .iter()
            .find(|p| p.step == step && !p.ok)
            .map(|p| p.message.clone());
        self.state.record(
            step,
            Attempt {
                time_ns: started_ns,
                duration_ns,
                ok: r.ok && !failed_before,
                message: match first_failure {
                    Some(m) if r.ok => m,
                    _ => r.message.clone(),
                },
            },
        );
        self.results.push(r);
    }
}

/// What a step did when it did not fail outright.
struct Done {
    message: String,
    snapshots: Vec<String>,
    bytes_added: u64,
    /// False for a backup that saved a snapshot but could not read some files.
    ok: bool,
}

impl Done {
    fn ok(message: String) -> Done {
        Done {
            message,
            snapshots: vec![],
            bytes_added: 0,
            ok: true,
        }
    }
}

/// When `source` of `job` was last backed up.
fn newest_of(
    job: &Job,
    source: &dyn SourceKind,
    snaps: &[(crate::id::SnapshotId, crate::format::snapshot::Snapshot)],
) -> Option<i64> {
    snaps
        .iter()
        .filter(|(_, s)| source.made(&job.name, s))
        .map(|(_, s)| s.time_ns)
        .max()
}

/// When anything of `jobs` is next due, for the daemon's sleep: the earliest next-due time of
/// any scheduled step (a failed step counts from its retry time).
pub fn next_wake(repo: &Repository, cfg: &ConfigFile, opts: &RunOptions) -> Result<Option<i64>> {
    let now = repo.clock().now();
    let (snaps, _) = repo.readable_snapshots()?;
    let reports = repo.reports()?;
    let mut wake: Option<i64> = None;
    let mut consider = |t: Option<i64>| {
        if let Some(t) = t {
            wake = Some(wake.map_or(t, |w| w.min(t)));
        }
    };
    for job in &cfg.jobs {
        if !opts.jobs.is_empty() && !opts.jobs.contains(&job.name) {
            continue;
        }
        let local = state::load(&opts.state_dir, &job.name);
        let retry = |step: Step| {
            local
                .get(step)
                .filter(|a| !a.ok)
                .map(|a| a.time_ns.saturating_add(opts.retry_after.as_nanos() as i64))
        };
        let last_report = |kind: ReportKind| {
            reports
                .iter()
                .filter(|(_, r)| r.kind == kind && r.job == job.name)
                .map(|(_, r)| r.time_ns)
                .max()
        };
        for source in sources::of(job) {
            let newest = newest_of(job, source.as_ref(), &snaps);
            let t = source.schedule(job).next_due(newest, now, &opts.tz);
            consider(t.map(|t| t.max(retry(Step::Backup).unwrap_or(t))));
        }
        if let Some(c) = &job.check {
            let t = c
                .schedule
                .next_due(last_report(ReportKind::Check), now, &opts.tz);
            consider(t.map(|t| t.max(retry(Step::Check).unwrap_or(t))));
        }
        if let Some(d) = &job.drill {
            let t = d
                .schedule
                .next_due(last_report(ReportKind::Drill), now, &opts.tz);
            consider(t.map(|t| t.max(retry(Step::Drill).unwrap_or(t))));
        }
    }
    Ok(wake)
}
