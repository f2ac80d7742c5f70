//! `coffer run` and `coffer daemon`: the jobs of `coffer.toml`, unattended.

use super::common::{self, print_json};
use super::progress::Bar;
use super::{Global, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL};
use coffer::browse::format_time;
use coffer::jobs::run::{next_wake, run_due, RunOptions};
use coffer::jobs::units::{format_duration, parse_duration};
use coffer::jobs::{RunReport, Step};
use coffer::progress::Progress;
use coffer::Result;
use std::sync::atomic::Ordering;
use std::time::Duration;

const JOB_FILE_HELP: &str = "The jobs come from the job file (--config FILE, default ./coffer.toml); see docs/jobs.md \
for its keys. For each job, in order: back up every source (paths, PostgreSQL \
databases, buckets) if its schedule says so; then forget and prune by its retention; then check \
the repository if its check schedule is due; then run a restore drill if its drill schedule is due. \
Whether a step is due is read from the repository (the job's newest snapshots, the stored check and \
drill reports), so any machine sees the same; a step that failed on this machine is retried after \
--retry-after. Monitoring (Prometheus textfile, webhook, ping URL) is told after every run. \
A job with postgres_pitr also has its WAL archive judged after the run: no segment archived, or \
a newest segment older than its rpo, is an alert in the report (`alerts`; `ok` is false and the \
ping URL hears of a failure), without changing the exit status. A metrics file that cannot be \
written is an alert too, makes the exit status 1, and is reported by `coffer status` until a \
write succeeds.\n\n\
Failed attempts and the run lock are kept in the state folder (--state-dir), not in the cache: \
runs that share a state folder never overlap, and deleting the cache forgets nothing.\n\n\
Exit status: 0 every step that ran succeeded (or nothing was due); 1 a step failed, or the \
metrics file could not be written; 3 a backup was saved but could not read some files; \
130 interrupted.";

#[derive(clap::Args)]
#[command(after_help = JOB_FILE_HELP)]
pub struct RunArgs {
    /// Jobs to consider (default: every job in the job file).
    #[arg(value_name = "JOB")]
    pub jobs: Vec<String>,
    /// Run every step of these jobs now, whatever their schedules say.
    #[arg(long)]
    pub force: bool,
    /// Do not retry a step that failed on this machine sooner than this (e.g. 15m).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    pub retry_after: Duration,
}

#[derive(clap::Args)]
#[command(
    after_help = "The daemon runs `coffer run` whenever a job's step falls due, sleeping \
in between; it re-reads the job file before every run, so edits take effect without a restart. \
Stop it with Ctrl-C or SIGTERM: a run in progress stops at its next safe point, nothing is lost, \
and an interrupted backup's uploads are reused by the next one.\n\n\
Exit status: 0 stopped while idle; 1 the job file or repository could not be used at start; \
130 stopped in the middle of a run."
)]
pub struct DaemonArgs {
    /// Jobs to run (default: every job in the job file).
    #[arg(value_name = "JOB")]
    pub jobs: Vec<String>,
    /// Wake at least this often to re-read the job file and the repository.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub max_sleep: Duration,
    /// Do not retry a failed step sooner than this.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    pub retry_after: Duration,
}

fn options(g: &Global, jobs: &[String], force: bool, retry_after: Duration) -> Result<RunOptions> {
    Ok(RunOptions {
        jobs: jobs.to_vec(),
        force,
        host: common::hostname(),
        user: common::username(),
        state_dir: common::jobs_state_dir(g)?,
        tz: jiff::tz::TimeZone::system(),
        retry_after,
        upload_limit: Some(common::upload_limit()),
        regions: common::region_locations(g)?
            .into_iter()
            .map(|(_, l)| l)
            .collect(),
    })
}

pub fn run(g: &Global, a: &RunArgs) -> Result<i32> {
    let (_, cfg) = common::job_file(g)?;
    for name in &a.jobs {
        cfg.job(name)?;
    }
    let opts = options(g, &a.jobs, a.force, a.retry_after)?;
    let (repo, store) = common::open_store(g)?;
    let bar = Bar::new(g.quiet, g.json);
    let cancel = common::cancel_flag();
    super::monitor::before_run(&cfg);
    let report = run_due(&repo, &cfg, &opts, &bar, cancel);
    let report = match report {
        Ok(Some(r)) => r,
        Ok(None) => {
            if g.json {
                print_json(
                    &serde_json::json!({"skipped": "another coffer run is in progress on this machine", "steps": []}),
                );
            } else if !g.quiet {
                println!("another coffer run is in progress on this machine; nothing done");
            }
            return Ok(EXIT_OK);
        }
        Err(e) => return Err(e),
    };
    let mut report = report;
    let metrics_written = super::monitor::after_run(g, &cfg, &repo, &store, &mut report);
    print_report(g, &report, false);
    // Monitoring that cannot see the jobs is a failure of the run even when every step
    // worked: a timer unit then shows as failed, where someone looks.
    Ok(match exit_code(&report) {
        EXIT_OK if !metrics_written => EXIT_FAILURE,
        code => code,
    })
}

/// 1 if a step failed outright, else 3 if a backup could not read some files, else 0.
fn exit_code(r: &RunReport) -> i32 {
    let failed: Vec<_> = r.steps.iter().filter(|s| !s.ok).collect();
    if failed.is_empty() {
        EXIT_OK
    } else if failed
        .iter()
        .all(|s| s.step == Step::Backup && !s.snapshots.is_empty())
    {
        EXIT_PARTIAL
    } else {
        EXIT_FAILURE
    }
}

fn print_report(g: &Global, r: &RunReport, json_lines: bool) {
    if g.json && json_lines {
        // The daemon prints one report per run: JSON lines, one compact document each.
        println!("{}", serde_json::to_string(r).unwrap_or_default());
        return;
    }
    if g.json {
        print_json(r);
        return;
    }
    if g.quiet {
        return;
    }
    for a in &r.alerts {
        println!("ALERT {a}");
    }
    if r.steps.is_empty() {
        println!("nothing was due");
        return;
    }
    for s in &r.steps {
        println!(
            "{:<12} {:<7} {:<6} {:>8}  {}",
            s.job,
            s.step.name(),
            if s.ok { "ok" } else { "FAILED" },
            format_duration(Duration::from_nanos(s.duration_ns)),
            s.message
        );
    }
}

pub fn daemon(g: &Global, a: &DaemonArgs) -> Result<i32> {
    let (path, mut cfg) = common::job_file(g)?;
    for name in &a.jobs {
        cfg.job(name)?;
    }
    let opts = options(g, &a.jobs, false, a.retry_after)?;
    let (repo, store) = common::open_store(g)?;
    let bar = Bar::new(g.quiet, g.json);
    let cancel = common::cancel_flag();
    if !g.quiet && !g.json {
        eprintln!(
            "coffer daemon: {} job(s) from {}",
            cfg.jobs.len(),
            path.display()
        );
    }
    loop {
        // Edits to the job file take effect at the next wake-up; a broken edit keeps the
        // last good one running and says so.
        match common::reload_job_file(g) {
            Ok(c) => cfg = c,
            Err(e) => bar.warn(&format!(
                "job file not reloaded, keeping the last good one: {e}"
            )),
        }
        // The ping URL hears of a start only when something is due, not at every wake-up.
        if next_wake(&repo, &cfg, &opts).is_ok_and(|w| w.is_some_and(|t| t <= repo.clock().now())) {
            super::monitor::before_run(&cfg);
        }
        match run_due(&repo, &cfg, &opts, &bar, cancel) {
            Ok(Some(mut report)) if !report.steps.is_empty() => {
                super::monitor::after_run(g, &cfg, &repo, &store, &mut report);
                print_report(g, &report, true);
            }
            Ok(_) => {}
            Err(e) if cancel.load(Ordering::Relaxed) => {
                eprintln!("coffer daemon: stopped during a run: {e}");
                return Ok(EXIT_INTERRUPTED);
            }
            Err(e) => bar.warn(&format!("run failed: {e}")),
        }
        if cancel.load(Ordering::Relaxed) {
            return Ok(EXIT_INTERRUPTED);
        }
        let now = repo.clock().now();
        let wake = match next_wake(&repo, &cfg, &opts) {
            Ok(w) => w,
            Err(e) => {
                bar.warn(&format!("cannot read the schedule state: {e}"));
                None
            }
        };
        let max = now.saturating_add(a.max_sleep.as_nanos() as i64);
        // Never spin: wait at least a second, even for a step that is already overdue
        // (it failed and waits for its retry time, or it just ran).
        let until = wake.unwrap_or(max).clamp(now + 1_000_000_000, max);
        if !g.quiet && !g.json {
            eprintln!("coffer daemon: next wake-up at {}", format_time(until));
        }
        while repo.clock().now() < until {
            if cancel.load(Ordering::Relaxed) {
                if !g.quiet && !g.json {
                    eprintln!("coffer daemon: stopped");
                }
                return Ok(EXIT_OK);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
