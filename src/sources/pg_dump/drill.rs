//! The PostgreSQL drill: load the snapshot's dump into the scratch database (dropped and
//! created again when it holds anything), in one transaction, then compare every table's
//! row count with the count the backup recorded. The scratch database is left as restored
//! and replaced by the next drill.
//!
//! A drill drops its scratch database, so it refuses one that is any job's source, one of
//! the server's own databases, and one that exists without the comment a drill gives the
//! database it creates (`DRILL_MARKER`).

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::postgres::{restore_database, PgRestoreOptions, PgUrl};
use crate::sources::{without_secrets, DrillContext, Protected, Restored};
use std::time::Duration;

pub(super) fn drill(
    ctx: &DrillContext,
    source_url: &str,
    snap: &Snapshot,
    scratch: &str,
) -> Result<Restored> {
    let (repo, opts, progress, cancel) = (ctx.repo, ctx.options, ctx.progress, ctx.cancel);
    refuse_protected(ctx.protected, scratch)?;
    let restore_opts = PgRestoreOptions {
        // A scratch database: whatever an earlier drill left there goes.
        force: true,
        // Roles are the server's, shared by every database on it: a drill does not touch them.
        globals: false,
        pg_bin: opts.pg_bin.clone(),
        // ... but only from a database that a drill created.
        drill_scratch: true,
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
            without_secrets(source_url)
        ));
    }
    let scratch_label = PgUrl::parse(scratch).map(|u| u.to_string())?;
    Ok(Restored {
        restored_to: scratch_label,
        bytes: report.bytes,
        items: report.tables.len() as u64,
        problems,
        details: vec![],
        cleanup: Duration::ZERO,
    })
}

/// The server's own databases: `postgres` is where clients and tools connect first, and
/// the templates are what every new database is copied from.
const SERVER_DATABASES: &[&str] = &["postgres", "template0", "template1"];

/// A drill drops its scratch database: it must not be one any job backs up, nor one of the
/// server's own. The same server can be written many ways (`localhost`, `127.0.0.1`, a
/// socket folder, a DNS alias), so a scratch database with the name of a source database is
/// refused whatever its host.
fn refuse_protected(protected: &Protected, scratch: &str) -> Result<()> {
    let s = PgUrl::parse(scratch).map_err(|e| e.context("the drill's scratch database"))?;
    let Some(name) = s.database() else {
        return Err(Error::invalid(format!(
            "the drill's scratch database {s} names no database"
        )));
    };
    if SERVER_DATABASES.contains(&name) {
        return Err(Error::invalid(format!(
            "the drill's scratch database {s} is the server's own {name:?} database; a drill \
             drops and replaces its scratch database, so give it a database of its own"
        )));
    }
    for (job, source) in &protected.postgres {
        let Ok(u) = PgUrl::parse(source) else {
            continue;
        };
        if source_database(&u).as_deref() == Some(name) {
            return Err(Error::invalid(format!(
                "the drill's scratch database {s} has the name of a database that job {job:?} \
                 backs up ({u}); a drill drops and replaces its scratch database, so give it \
                 a name of its own (even on another server)"
            )));
        }
    }
    Ok(())
}

/// The database a source URL dumps: its own, or libpq's default, the user's name.
fn source_database(u: &PgUrl) -> Option<String> {
    u.database()
        .map(str::to_string)
        .or_else(|| u.param("user"))
        .or_else(|| u.user())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protected(sources: &[&str]) -> Protected {
        Protected {
            postgres: sources
                .iter()
                .map(|s| ("j".to_string(), s.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn sources_of_any_job_and_server_databases_are_refused() {
        let p = protected(&["postgresql://u@db1/app", "postgresql://orders@127.0.0.1"]);
        for bad in [
            "postgresql://u@localhost/app",
            "postgresql://u@scratch/orders",
            "postgresql://u@db1/postgres",
            "postgresql://u@db1/template0",
            "postgresql://u@db1/template1",
            "postgresql://u@db1",
        ] {
            let e = refuse_protected(&p, bad).unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::InvalidInput, "{bad}");
        }
        refuse_protected(&p, "postgresql://u@db1/drill").unwrap();
        refuse_protected(&p, "postgresql://u@db1/Postgres").unwrap();
    }
}
