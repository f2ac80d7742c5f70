//! `coffer drill [JOB]...`: restore each job's newest snapshots into its scratch places,
//! verify them, measure the recovery time against the job's RTO, and record the result in
//! the repository.

use super::common::{self, print_json};
use super::progress::Bar;
use super::{Global, EXIT_FAILURE, EXIT_OK};
use coffer::config::{DurationValue, Job};
use coffer::jobs::drill::{drill, DrillOptions, DrillOutcome, Protected};
use coffer::jobs::units::format_duration;
use coffer::{Error, Result};
use std::time::Duration;

/// Test hook: measure every drill against this RTO (nanoseconds) instead of the job's, so
/// the "RTO missed" path can be tested without depending on how fast the machine is.
const TEST_RTO_NS: &str = "COFFER_TEST_DRILL_RTO_NS";

#[derive(clap::Args)]
#[command(
    after_help = "Each source of the job is restored from its newest snapshot: paths \
into a new folder TARGET/JOB-<snapshot> (removed again when it matched; kept for inspection \
when it did not), PostgreSQL databases into the scratch database (dropped and created again), \
buckets into the scratch bucket or prefix (emptied first; it must not overlap a source). Every restored file is read \
back and compared with the snapshot; every table's row count with the count the backup \
recorded; every object's content and metadata with the snapshot's record. The wall time of \
all of it is the RTO achieved. The result is stored in the repository, where `coffer status` \
on any machine finds it.\n\n\
Exit status: 0 every drill restored, verified and met its RTO; 1 a drill failed, missed its \
RTO, or could not be recorded; 2 usage error (no such job, no drill section); 130 interrupted."
)]
pub struct Args {
    /// Jobs to drill (default: every job with a drill section).
    #[arg(value_name = "JOB")]
    pub jobs: Vec<String>,
    /// Keep the restored files even when they matched.
    #[arg(long)]
    pub keep: bool,
}

pub fn run(g: &Global, a: &Args) -> Result<i32> {
    let (_, cfg) = common::job_file(g)?;
    let mut jobs: Vec<Job> = Vec::new();
    for name in &a.jobs {
        let job = cfg.job(name)?;
        if job.drill.is_none() {
            return Err(Error::invalid(format!(
                "job {name:?} has no drill section; add drill = {{ schedule = \"weekly\", \
                 target = \"DIR\" }} (and postgres/bucket scratch places for those sources)"
            )));
        }
        jobs.push(job.clone());
    }
    if a.jobs.is_empty() {
        jobs = cfg
            .jobs
            .iter()
            .filter(|j| j.drill.is_some())
            .cloned()
            .collect();
        if jobs.is_empty() {
            return Err(Error::invalid(
                "no job in the job file has a drill section (drill = { schedule = ..., target = ... })",
            ));
        }
    }
    if let Some(ns) = std::env::var(TEST_RTO_NS).ok().and_then(|v| v.parse().ok()) {
        for job in &mut jobs {
            job.rto = Some(DurationValue(Duration::from_nanos(ns)));
        }
    }
    let repo = common::open(g)?;
    let regions = common::region_locations(g)?;
    let opts = DrillOptions {
        host: common::hostname(),
        keep: a.keep,
        // Every job of the file and every region, whichever jobs are drilled now.
        protected: Protected::new(&cfg.jobs, regions.into_iter().map(|(_, l)| l).collect()),
        ..Default::default()
    };
    let cancel = common::cancel_flag();
    let mut outcomes = Vec::new();
    for job in &jobs {
        let bar = Bar::new(g.quiet, g.json);
        // The job's CPU and disk priority and threads hold for its drill as for its backups.
        let outcome =
            coffer::jobs::limits::with_limits(job, || drill(&repo, job, &opts, &bar, cancel))??;
        if !g.json {
            for s in outcome.sources.iter().filter(|s| !s.ok) {
                for p in &s.problems {
                    let problem = super::term::text(p);
                    eprintln!("coffer: drill {}: {}: {problem}", job.name, s.source);
                }
                if s.problem_count > s.problems.len() {
                    eprintln!(
                        "coffer: drill {}: {}: ... and {} more",
                        job.name,
                        s.source,
                        s.problem_count - s.problems.len()
                    );
                }
            }
            if let Some(e) = &outcome.report_error {
                eprintln!(
                    "coffer: drill {}: its report could not be stored: {e}",
                    job.name
                );
            }
        }
        outcomes.push(outcome);
    }
    let code = if outcomes.iter().all(DrillOutcome::passed) {
        EXIT_OK
    } else {
        EXIT_FAILURE
    };
    if g.json {
        print_json(&serde_json::json!({
            "drills": outcomes,
            "ok": code == EXIT_OK,
            "exit_code": code,
        }));
    } else {
        print_table(&outcomes, g.quiet);
        for o in outcomes.iter().filter(|o| !o.passed()) {
            eprintln!("coffer: drill {}: {}", o.job, why(o));
        }
    }
    Ok(code)
}

/// Why a drill did not pass, in one phrase.
fn why(o: &DrillOutcome) -> String {
    if !o.ok {
        let failed: Vec<&str> = o
            .sources
            .iter()
            .filter(|s| !s.ok)
            .map(|s| s.source.as_str())
            .collect();
        return format!("FAILED: {} did not restore and verify", failed.join(", "));
    }
    if o.rto_met == Some(false) {
        return format!(
            "MISSED ITS RTO: the restore took {}, the RTO is {}",
            secs(o.duration_ns),
            o.target_ns.map(secs).unwrap_or_default()
        );
    }
    "its result could not be recorded in the repository".to_string()
}

fn secs(ns: u64) -> String {
    let d = Duration::from_nanos(ns);
    if d < Duration::from_secs(60) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format_duration(d)
    }
}

fn print_table(outcomes: &[DrillOutcome], quiet: bool) {
    if quiet {
        return;
    }
    let mut rows: Vec<[String; 7]> = vec![[
        "JOB", "SOURCE", "SNAPSHOT", "RESTORED", "TIME", "RTO", "VERDICT",
    ]
    .map(String::from)];
    for o in outcomes {
        for s in &o.sources {
            rows.push([
                o.job.clone(),
                s.source.clone(),
                s.snapshot.as_deref().map_or("-", |h| &h[..8]).to_string(),
                format!(
                    "{}, {} {}",
                    common::human_bytes(s.bytes),
                    s.items,
                    s.item_kind
                ),
                format!("{:.1}s", s.seconds),
                String::new(),
                if s.ok { "ok" } else { "FAILED" }.to_string(),
            ]);
        }
        let verdict = if !o.ok {
            "FAILED"
        } else if o.rto_met == Some(false) {
            "MISSED RTO"
        } else if o.report_error.is_some() {
            "NOT RECORDED"
        } else {
            "passed"
        };
        rows.push([
            o.job.clone(),
            "(whole job)".to_string(),
            String::new(),
            String::new(),
            secs(o.duration_ns),
            o.target_ns
                .map_or("no target".to_string(), |t| format!("target {}", secs(t))),
            verdict.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}
