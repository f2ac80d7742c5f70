//! `coffer runbook`: print the disaster-recovery runbook for this job file, in Markdown.

use super::common::{self, print_json};
use super::{Global, EXIT_OK};
use coffer::jobs::runbook::{render, RunbookInput};
use coffer::jobs::status::{read_statuses, JobStatus};
use coffer::Result;
use jiff::tz::TimeZone;

#[derive(clap::Args)]
#[command(
    after_help = "The runbook names the regions (URLs without secrets), where the password is \
kept, and for each job of the job file the exact commands, in order, that recover it on a new \
machine, with its RPO and the RTO its last drill achieved. It is made from the job file alone when \
the repository cannot be read (then the drill figures are unknown), so it can be written anywhere.\n\n\
Keep it outside the systems it recovers: `coffer runbook > runbook.md`, after every change to the \
job file (and after drills, for fresh figures).\n\n\
Exit status: 0 written; 2 no job file or a bad one."
)]
pub struct Args {}

pub fn run(g: &Global, _a: &Args) -> Result<i32> {
    let (path, cfg) = common::job_file(g)?;
    let regions = common::region_locations(g)
        .map(|l| {
            l.into_iter()
                .map(|(name, loc)| (name, loc.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let tz = TimeZone::system();
    let (statuses, now) = match read(g, &cfg, &tz) {
        Ok((s, now)) => (Ok(s), now),
        Err(e) => {
            eprintln!("coffer: warning: the repository could not be read, so the drill figures are unknown: {e}");
            (Err(e.to_string()), common::clock().now())
        }
    };
    let password_file = cfg
        .repository
        .as_ref()
        .and_then(|r| r.password_file.clone())
        .or_else(|| g.password_file.clone());
    let input = RunbookInput {
        config_path: &path,
        config: &cfg,
        regions,
        password_file,
        statuses,
        now_ns: now,
        tz,
        host: common::hostname(),
    };
    let text = render(&input);
    if g.json {
        print_json(&serde_json::json!({
            "markdown": text,
            "drill_figures_known": input.statuses.is_ok(),
            "exit_code": EXIT_OK,
        }));
    } else {
        println!("{}", text.trim_end());
    }
    Ok(EXIT_OK)
}

/// The jobs' status from the repository, and its "now".
fn read(
    g: &Global,
    cfg: &coffer::config::ConfigFile,
    tz: &TimeZone,
) -> Result<(Vec<JobStatus>, i64)> {
    let repo = common::open(g)?;
    let now = repo.clock().now();
    let jobs: Vec<_> = cfg.jobs.iter().collect();
    Ok((
        read_statuses(&repo, &jobs, &common::jobs_state_dir(g)?, now, tz)?,
        now,
    ))
}
