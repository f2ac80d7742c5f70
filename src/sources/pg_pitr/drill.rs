//! The point-in-time drill: pick a random moment of the recovery window (from the oldest
//! base backup's end to the newest commit the archive holds), restore the cluster to it into
//! the drill's scratch folder (`TARGET/JOB-pitr/data`), start it on a free loopback port
//! with archiving off, and check that recovery stopped at the target: PostgreSQL says it
//! stopped before the first commit after the target, and the last commit it replayed is not
//! later than the target. The server is then stopped and the folder removed (kept, stopped,
//! after a failure).
//!
//! A random moment, not always the newest: a restore to the end of the archive proves only
//! the newest base backup and the last stretch of WAL, while drills at random moments prove,
//! over time, every base backup and every segment a recovery may need.

use super::super::scratch::Scratch;
use super::super::{DrillContext, Restored};
use crate::browse::format_time_rfc3339;
use crate::error::{Error, ErrorKind, Result};
use crate::postgres::pitr::{self, start, PitrOptions, Target, TargetAction};
use crate::wal::retention::base_backups;
use crate::wal::Catalog;
use rand_core::RngCore;
use std::time::{Duration, Instant};

/// How long recovery may take before the drill gives up on it.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(3600);

pub(super) fn drill(ctx: &DrillContext, target_dir: &std::path::Path) -> Result<Restored> {
    let (repo, opts) = (ctx.repo, ctx.options);
    let (snaps, _) = repo.readable_snapshots()?;
    let catalog = Catalog::load(repo)?;
    let (bases, _) = base_backups(&snaps);
    let window_start = bases.iter().map(|b| b.stop_ns).min().ok_or_else(|| {
        Error::not_found(format!(
            "no base backup to restore; job {:?} takes them on its base_backup schedule, or run \
             `coffer backup --postgres-base URL`",
            ctx.job.name
        ))
    })?;
    let last_commit = catalog
        .segments()
        .filter_map(|e| e.header.commits.map(|(_, last)| last))
        .max();
    let mut details = vec![];
    let target = match last_commit {
        Some(last) if last > window_start => {
            let span = (last - window_start) as u64;
            let t = window_start + (rand_core::OsRng.next_u64() % span) as i64;
            details.push(("window_start".into(), format_time_rfc3339(window_start)));
            details.push(("window_end".into(), format_time_rfc3339(last)));
            details.push(("target_time".into(), format_time_rfc3339(t)));
            Target::Time(t)
        }
        // No commit after the oldest base backup: no moment in between can be a target
        // (PostgreSQL refuses a time it never reaches), so recover everything there is.
        _ => {
            details.push(("target_time".into(), "end of the archive".into()));
            Target::End
        }
    };
    let scratch = Scratch::make(target_dir, &format!("{}-pitr", ctx.job.name), &opts.host)?;
    scratch.let_owner_pass()?;
    let data = scratch.path.join("data");
    let coffer_exe =
        std::env::current_exe().map_err(|e| Error::io("the path of the coffer program", e))?;
    let restored = pitr::restore_to_data_dir(
        repo,
        &PitrOptions {
            data_dir: data.clone(),
            target: target.clone(),
            base: None,
            action: TargetAction::Promote,
            start: true,
            port: None,
            pg_bin: opts.pg_bin.clone(),
            timeout: RECOVERY_TIMEOUT,
            coffer_exe,
        },
        ctx.progress,
        ctx.cancel,
    );
    // Whatever happened, no restored server is left running.
    let stopped = match data.join("postmaster.pid").exists() {
        true => start::stop(&data, opts.pg_bin.as_deref()),
        false => Ok(()),
    };
    let report = match restored {
        Err(e) if e.kind() == ErrorKind::Interrupted => return Err(e),
        Err(e) => {
            return Ok(failed(&scratch, e.to_string(), details));
        }
        Ok(r) => r,
    };
    details.push(("base_snapshot".into(), report.base_snapshot.clone()));
    details.push(("wal_files".into(), report.wal_files.to_string()));
    if let Some(c) = &report.last_replayed_commit {
        details.push(("last_replayed_commit".into(), c.clone()));
    }
    if let Some(s) = &report.stopped {
        details.push(("stopped".into(), s.clone()));
    }
    let mut problems = reached(&target, &report);
    if let Err(e) = stopped {
        problems.push(e.to_string());
    }
    let cleanup = Instant::now();
    if problems.is_empty() && !opts.keep {
        if let Err(e) = scratch.remove() {
            ctx.progress.warn(&format!(
                "the drill passed but its folder {} could not be removed: {e}",
                scratch.path.display()
            ));
        }
    } else if !problems.is_empty() {
        problems.push(kept(&scratch));
    }
    Ok(Restored {
        restored_to: data.display().to_string(),
        bytes: report.bytes + report.wal_bytes,
        items: report.files + report.wal_files,
        problems,
        details,
        cleanup: cleanup.elapsed(),
    })
}

/// Did recovery stop where it was asked to? For a time: PostgreSQL logged that it stopped
/// before a later commit, and replayed no commit after the target.
fn reached(target: &Target, report: &pitr::PitrReport) -> Vec<String> {
    let mut problems = vec![];
    if report.state.as_deref() != Some("in production") {
        problems.push(format!(
            "the restored server did not finish recovery (state: {})",
            report.state.as_deref().unwrap_or("unknown")
        ));
    }
    if let Target::Time(t) = target {
        let stopped_at_target = report
            .stopped
            .as_deref()
            .is_some_and(|s| s.contains("recovery stopping before"));
        if !stopped_at_target {
            problems.push(format!(
                "recovery did not stop at the target {}: PostgreSQL did not say it stopped \
                 before a later commit",
                format_time_rfc3339(*t)
            ));
        }
        match report.last_replayed_commit_ns {
            Some(last) if last > *t => problems.push(format!(
                "the last replayed commit, at {}, is after the target {}",
                format_time_rfc3339(last),
                format_time_rfc3339(*t)
            )),
            _ => {}
        }
    }
    problems
}

fn failed(scratch: &Scratch, problem: String, details: Vec<(String, String)>) -> Restored {
    Restored {
        restored_to: scratch.path.join("data").display().to_string(),
        bytes: 0,
        items: 0,
        problems: vec![problem, kept(scratch)],
        details,
        cleanup: Duration::ZERO,
    }
}

fn kept(scratch: &Scratch) -> String {
    format!(
        "the restored data directory is kept for inspection in {} (stopped); remove it when done",
        scratch.path.join("data").display()
    )
}
