//! `coffer restore @TIME|latest|ID --to-postgres-data DIR [--start] [--port P]`: a
//! PostgreSQL data directory recovered to a point in time from a base backup and the WAL
//! archive.

use super::common::{self, print_json};
use super::progress::Bar;
use super::{Global, EXIT_OK};
use coffer::postgres::pitr::{self, PitrOptions, Target, TargetAction};
use coffer::wal::names::parse_lsn;
use coffer::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Args)]
pub struct PitrArgs {
    /// Recover a PostgreSQL data directory into DIR (new or empty) from the newest base
    /// backup before the target and the archived WAL. SNAPSHOT is `@TIME` (recover to exactly
    /// that time), `latest` (to the end of the archive) or a base backup's ID (to its
    /// consistent point, or to --target-lsn / --target-name).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["target", "includes", "to_postgres", "to_bucket"])]
    pub to_postgres_data: Option<PathBuf>,
    /// With --to-postgres-data: start the server (loopback only, archiving off), wait until
    /// recovery reaches the target, and report the last replayed commit.
    #[arg(long, requires = "to_postgres_data")]
    pub start: bool,
    /// With --to-postgres-data: the restored server's port (default with --start: a free one).
    #[arg(long, value_name = "P", requires = "to_postgres_data")]
    pub port: Option<u16>,
    /// Recover to this WAL position (as PostgreSQL prints it, e.g. 0/3A000028).
    #[arg(
        long,
        value_name = "LSN",
        requires = "to_postgres_data",
        conflicts_with = "target_name"
    )]
    pub target_lsn: Option<String>,
    /// Recover to this restore point (made with pg_create_restore_point); SNAPSHOT chooses the
    /// base backup (`latest` or `@TIME` at or after the restore point was made).
    #[arg(long, value_name = "NAME", requires = "to_postgres_data")]
    pub target_name: Option<String>,
    /// What the server does at the target: promote (open for writes on a new timeline),
    /// pause (stay read-only, to inspect) or shutdown.
    #[arg(long, value_name = "ACTION", default_value = "promote", value_parser = ["promote", "pause", "shutdown"], requires = "to_postgres_data")]
    pub target_action: String,
    /// With --start: how long to wait for recovery, e.g. 30m.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration, requires = "start")]
    pub recovery_timeout: Duration,
}

fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    coffer::jobs::units::parse_duration(s)
}

pub fn restore(g: &Global, a: &super::restore::Args, dir: &Path) -> Result<i32> {
    let p = &a.pitr;
    let repo = common::open(g)?;
    let lsn = match &p.target_lsn {
        Some(s) => Some(parse_lsn(s).ok_or_else(|| {
            Error::invalid(format!("{s:?} is not a WAL position like 0/3A000028"))
        })?),
        None => None,
    };
    let given = lsn
        .map(Target::Lsn)
        .or_else(|| p.target_name.clone().map(Target::Name));
    let (target, base) = match a.snapshot.as_str() {
        "latest" => (given.unwrap_or(Target::End), None),
        s if s.starts_with('@') => {
            if given.is_some() {
                return Err(Error::invalid(
                    "give either @TIME or --target-lsn/--target-name, not both",
                ));
            }
            (Target::Time(coffer::browse::parse_time(&s[1..])?), None)
        }
        s => {
            let (id, _) = coffer::browse::find_snapshot(&repo, s)?;
            (given.unwrap_or(Target::Immediate), Some(id))
        }
    };
    let action = match p.target_action.as_str() {
        "pause" => TargetAction::Pause,
        "shutdown" => TargetAction::Shutdown,
        _ => TargetAction::Promote,
    };
    if p.start && action == TargetAction::Shutdown {
        return Err(Error::invalid(
            "--start waits for a running server: use --target-action promote or pause",
        ));
    }
    let opts = PitrOptions {
        data_dir: std::path::absolute(dir).map_err(|e| Error::io(dir.display(), e))?,
        target,
        base,
        action,
        start: p.start,
        port: p.port,
        pg_bin: a.pg_bin.clone(),
        timeout: p.recovery_timeout,
        coffer_exe: std::env::current_exe().map_err(|e| Error::io("this program's path", e))?,
    };
    let bar = Bar::new(g.quiet, g.json);
    let report = pitr::restore_to_data_dir(&repo, &opts, &bar, common::cancel_flag())?;
    drop(bar);
    if g.json {
        print_json(&report);
        return Ok(EXIT_OK);
    }
    if g.quiet {
        return Ok(EXIT_OK);
    }
    let r = &report;
    common::print_out(format_args!(
        "restored base backup {} (consistent from {}) into {}: {} files, {}\n",
        &r.base_snapshot[..8],
        r.base_consistent_at,
        r.data_dir,
        r.files,
        common::human_bytes(r.bytes)
    ));
    common::print_out(format_args!(
        "fetched {} WAL files ({}) to recover to {} on timeline {}, in {:.1} s\n",
        r.wal_files,
        common::human_bytes(r.wal_bytes),
        r.target,
        r.timeline,
        r.restore_seconds
    ));
    if let Some(n) = &r.note {
        common::print_out(format_args!("note: {n}\n"));
    }
    match (&r.state, r.recovered_seconds) {
        (Some(state), Some(secs)) => {
            common::print_out(format_args!(
                "recovery ended after {secs:.1} s: server {state} on 127.0.0.1:{}, last replayed commit {}\n",
                r.port.unwrap_or(0),
                r.last_replayed_commit.as_deref().unwrap_or("(none)")
            ));
            if let Some(s) = &r.stopped {
                common::print_out(format_args!("{s}\n"));
            }
            common::print_out(format_args!(
                "archiving is off in the restored server; once it is the one to keep, turn it on with `coffer setup-archiving`\n"
            ));
        }
        _ => common::print_out(format_args!(
            "start it with: pg_ctl start -D {} (as the data directory's owner); recovery.signal and postgresql.auto.conf hold the recovery settings\n",
            r.data_dir
        )),
    }
    Ok(EXIT_OK)
}
