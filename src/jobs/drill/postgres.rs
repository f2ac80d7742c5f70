//! The PostgreSQL drill: load the snapshot's dump into the scratch database (dropped and
//! created again when it holds anything), in one transaction, then compare every table's
//! row count with the count the backup recorded. The scratch database is left as restored
//! and replaced by the next drill.

use super::{DrillOptions, Restored};
use crate::config::Job;
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::postgres::{restore_database, PgRestoreOptions, PgUrl};
use crate::progress::Progress;
use crate::repo::Repository;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[allow(clippy::too_many_arguments)]
pub(super) fn drill(
    repo: &Repository,
    job: &Job,
    source_url: &str,
    snap: &Snapshot,
    scratch: &str,
    opts: &DrillOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<Restored> {
    refuse_a_source(job, scratch)?;
    let restore_opts = PgRestoreOptions {
        // A scratch database: whatever an earlier drill left there goes.
        force: true,
        // Roles are the server's, shared by every database on it: a drill does not touch them.
        globals: false,
        pg_bin: opts.pg_bin.clone(),
    };
    let report = restore_database(repo, snap, scratch, &restore_opts, progress, cancel)?;
    let problems: Vec<String> = report
        .mismatches
        .iter()
        .map(|t| match (t.expected, t.actual) {
            (Some(e), Some(a)) => format!("table {}: {a} rows, the snapshot recorded {e}", t.table),
            (Some(e), None) => format!(
                "table {}: missing (the snapshot recorded {e} rows)",
                t.table
            ),
            _ => format!("table {}: differs from the snapshot's record", t.table),
        })
        .collect();
    if !report.counts_recorded {
        progress.warn(&format!(
            "{}: the snapshot recorded no row counts; only the restore itself was checked",
            crate::jobs::without_secrets(source_url)
        ));
    }
    let scratch_label = PgUrl::parse(scratch).map(|u| u.to_string())?;
    Ok(Restored {
        restored_to: scratch_label,
        bytes: report.bytes,
        items: report.tables.len() as u64,
        item_kind: "tables",
        problems,
        cleanup: Duration::ZERO,
    })
}

/// A drill drops its scratch database: it must not be one the job backs up. The same
/// server can be written many ways (`localhost`, `127.0.0.1`, a socket folder, a DNS alias),
/// so a scratch database with the name of a source database is refused whatever its host.
fn refuse_a_source(job: &Job, scratch: &str) -> Result<()> {
    let s = PgUrl::parse(scratch).map_err(|e| e.context("the drill's scratch database"))?;
    if s.database().is_none() {
        return Err(Error::invalid(format!(
            "the drill's scratch database {s} names no database"
        )));
    }
    for source in &job.postgres {
        let Ok(u) = PgUrl::parse(source) else {
            continue;
        };
        if u.database() == s.database() {
            return Err(Error::invalid(format!(
                "the drill's scratch database {s} has the name of a database the job backs up \
                 ({u}); a drill drops and replaces its scratch database, so give it a name of \
                 its own (even on another server)"
            )));
        }
    }
    Ok(())
}
