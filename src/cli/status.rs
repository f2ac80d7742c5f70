//! `coffer status [JOB]...`: each job against its targets (RPO, last check, last drill's RTO),
//! with its sources' newest snapshots and when it is next due; exit 1 when any job has a
//! problem, so a monitoring probe can run it as is.

use super::common::{self, print_json};
use super::{Global, EXIT_FAILURE, EXIT_OK};
use coffer::config::Job;
use coffer::jobs::status::{human, local_time, read_all, JobStatus};
use coffer::jobs::Step;
use coffer::wal::status::ArchiveStatus;
use coffer::Result;
use jiff::tz::TimeZone;

#[derive(clap::Args)]
#[command(
    after_help = "Reads the job file (--config FILE, default ./coffer.toml) and the repository: \
the newest snapshot of each job's sources, the check and drill reports that `coffer run` and \
`coffer drill` store there (so every machine sees the same), and this machine's failed attempts.\n\n\
A job is healthy when its stalest source's newest snapshot is younger than its rpo, its last check \
passed, its last drill succeeded within its rto, and its last attempt of every step here succeeded. \
A job without rpo (or rto) is not held to one, and the output says so. The failed attempts are \
read from the state folder (--state-dir), which deleting the cache does not touch.\n\n\
The metrics file ([monitoring] prometheus_textfile) whose last write failed is a problem too \
(`problems` in the JSON), until a run writes it again.\n\n\
With a PostgreSQL WAL archive (`wal-push`), a line gives its newest segment's time and age (the \
database's live RPO), its size and the recovery window (from the oldest base backup's stop to the \
newest segment). A job with `postgres_pitr` is also unhealthy when no segment is archived or the \
newest one is older than its rpo: archiving has stopped or falls behind.\n\n\
Exit status: 0 every job is healthy; 1 a job has a problem, the metrics file was not written, or \
the repository cannot be opened; \
2 usage error (no job file, unknown job)."
)]
pub struct Args {
    /// Jobs to show (default: every job in the job file).
    #[arg(value_name = "JOB")]
    pub jobs: Vec<String>,
}

pub fn run(g: &Global, a: &Args) -> Result<i32> {
    let (_, cfg) = common::job_file(g)?;
    let jobs: Vec<&Job> = if a.jobs.is_empty() {
        cfg.jobs.iter().collect()
    } else {
        a.jobs.iter().map(|n| cfg.job(n)).collect::<Result<_>>()?
    };
    let (repo, store) = match common::open_store(g) {
        Ok(opened) => opened,
        Err(e) => return Ok(unknown(g, &e)),
    };
    let now = repo.clock().now();
    let tz = TimeZone::system();
    let state_dir = common::jobs_state_dir(g)?;
    let all = read_all(&repo, &jobs, &state_dir, now, &tz)?;
    let statuses = all.jobs;
    let regions = super::monitor::regions(&store);
    let problems = machine_problems(&cfg, &state_dir);
    let healthy = statuses.iter().all(|s| s.healthy) && problems.is_empty();
    let code = if healthy { EXIT_OK } else { EXIT_FAILURE };
    if g.json {
        print_json(&serde_json::json!({
            "healthy": healthy,
            "now": coffer::browse::format_time_rfc3339(now),
            "jobs": statuses,
            "wal_archive": all.wal_archive,
            "regions": regions,
            "problems": problems,
            "exit_code": code,
        }));
        return Ok(code);
    }
    print_table(&statuses, &tz);
    for p in &problems {
        println!("monitoring: {p}");
    }
    if let Some(a) = &all.wal_archive {
        print_archive(a, &tz);
    }
    for r in &regions {
        if !r.reachable {
            println!("region {}: UNREACHABLE", r.name);
        } else if r.behind {
            println!("region {}: behind (run `coffer sync`)", r.name);
        }
    }
    Ok(code)
}

/// Problems of this machine rather than of a job: the metrics file's last write failed (while
/// the job file still names that file), so alerting fed by it sees nothing new.
fn machine_problems(cfg: &coffer::config::ConfigFile, state_dir: &std::path::Path) -> Vec<String> {
    let configured = cfg.monitoring.prometheus_textfile.as_deref();
    coffer::jobs::state::metrics_failure(state_dir)
        .filter(|f| configured == Some(f.path.as_path()))
        .map(|f| super::monitor::metrics_problem(&f))
        .into_iter()
        .collect()
}

/// The repository cannot be opened: the status is unknown, which is a failure.
fn unknown(g: &Global, e: &coffer::Error) -> i32 {
    let message = format!("cannot open the repository, so the jobs' status is unknown: {e}");
    if g.json {
        print_json(&serde_json::json!({
            "healthy": false,
            "error": message,
            "exit_code": EXIT_FAILURE,
        }));
    }
    eprintln!("coffer: error: {message}");
    EXIT_FAILURE
}

fn print_table(statuses: &[JobStatus], tz: &TimeZone) {
    let mut rows: Vec<[String; 8]> = vec![[
        "job",
        "source",
        "last backup",
        "age/RPO",
        "check",
        "drill RTO/target",
        "next due",
        "verdict",
    ]
    .map(String::from)];
    let mut notes: Vec<String> = Vec::new();
    for s in statuses {
        let scheduled = |step: Step| s.next_due.iter().any(|n| n.step == step);
        let rpo = s.rpo_ns.map_or("-".to_string(), human);
        let check = match &s.last_check {
            Some(c) => format!(
                "{} {}",
                if c.ok { "ok" } else { "FAILED" },
                local_time(c.time_ns, tz)
            ),
            None if scheduled(Step::Check) => "never".to_string(),
            None => "-".to_string(),
        };
        let rto = s.rto_ns.map_or("-".to_string(), human);
        let drill = match &s.last_drill {
            Some(d) if !d.ok => "FAILED".to_string(),
            Some(d) => format!("{}/{rto}", human(d.duration_ns)),
            None if scheduled(Step::Drill) || s.rto_ns.is_some() => format!("never/{rto}"),
            None => "-".to_string(),
        };
        let next = s
            .next_due
            .iter()
            .find(|n| n.step == Step::Backup)
            .and_then(|n| n.time_ns)
            .map_or("-".to_string(), |t| {
                if t <= s.now_ns {
                    "now (overdue)".to_string()
                } else {
                    local_time(t, tz)
                }
            });
        let verdict = if s.healthy { "ok" } else { "FAIL" }.to_string();
        let mut job_columns = Some([check, drill, next, verdict]);
        for src in &s.sources {
            let last = src
                .last
                .as_ref()
                .map_or("never".to_string(), |l| local_time(l.time_ns, tz));
            let age = format!("{}/{rpo}", src.age_ns.map_or("-".to_string(), human));
            // The job's own figures go on its first line only.
            let (job, [c, d, n, v]) = match job_columns.take() {
                Some(cols) => (s.job.clone(), cols),
                None => (String::new(), Default::default()),
            };
            rows.push([job, src.source.clone(), last, age, c, d, n, v]);
        }
        notes.extend(s.problems.iter().map(|p| format!("{}: {p}", s.job)));
        notes.extend(s.notes.iter().map(|n| format!("{}: note: {n}", s.job)));
    }
    let mut widths = [0usize; 8];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    for n in notes {
        println!("{n}");
    }
}

/// The repository's WAL archive: newest segment and its age, size, recovery window.
fn print_archive(a: &ArchiveStatus, tz: &TimeZone) {
    let newest = match (&a.newest_segment, a.newest_ns, a.age_ns) {
        (Some(name), Some(t), Some(age)) => format!(
            "newest segment {name} at {} ({} ago)",
            local_time(t, tz),
            human(age)
        ),
        _ => "no segment yet".to_string(),
    };
    let window = match (a.window_start_ns, a.window_end_ns) {
        (Some(s), Some(e)) => format!(
            "recovery window {} to {}",
            local_time(s, tz),
            local_time(e, tz)
        ),
        _ => "no recovery window (no base backup)".to_string(),
    };
    println!(
        "WAL archive: {newest}; {} file(s), {}; {} base backup(s); {window}",
        a.files,
        common::human_bytes(a.bytes),
        a.base_backups
    );
}
