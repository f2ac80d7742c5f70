//! `restore SNAPSHOT --to-postgres URL`: load a PostgreSQL snapshot into a new or empty
//! database, then compare every table's row count with the snapshot's record.
//!
//! The dump streams from the repository into `psql --single-transaction` with
//! `ON_ERROR_STOP`: no temporary file, and a restore that fails part-way commits nothing.
//! psql runs in restricted mode (`restrict.rs`), so the snapshot's text cannot make it run
//! a meta-command.

use super::conn::Conn;
use super::restrict::{self, Restricted};
use super::tools::{self, Tool};
use super::url::PgUrl;
use super::verify::{compare, TableCheck};
use super::{info, kill_on_cancel, PgRestoreOptions, SOURCE};
use crate::browse::{dump_file, find_node};
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::Node;
use crate::progress::Progress;
use crate::repo::Repository;
use serde::Serialize;
use std::io::Write;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct PgRestoreReport {
    pub database: String,
    /// The database did not exist and was created.
    pub created: bool,
    /// The database held tables, sequences or views and was dropped and created again
    /// (`force`).
    pub replaced: bool,
    /// Roles and tablespaces were restored first.
    pub globals: bool,
    /// Bytes of SQL loaded.
    pub bytes: u64,
    /// Every table with the recorded and the restored row count, sorted by name.
    pub tables: Vec<TableCheck>,
    /// Rows in the restored tables.
    pub rows: u64,
    /// The snapshot recorded per-table row counts (false for very large schemas).
    pub counts_recorded: bool,
    /// Tables whose restored row count differs from the record, or that are missing.
    pub mismatches: Vec<TableCheck>,
    pub seconds: f64,
}

#[derive(serde::Deserialize)]
struct ServerState {
    version_num: u32,
    exists: bool,
    /// `COMMENT ON DATABASE`, if the database exists and has one.
    comment: Option<String>,
}

/// The comment a drill puts on the scratch database it creates. A drill drops and replaces
/// only a database that carries it, as it empties only a bucket prefix with its marker.
pub const DRILL_MARKER: &str = "coffer drill scratch";

#[derive(serde::Deserialize)]
struct Occupants {
    count: u64,
    names: Vec<String>,
}

/// Relations that make a database "not empty": tables, partitioned tables, views,
/// materialized views, sequences and foreign tables outside the system schemas, except
/// those an extension created.
const OCCUPANTS: &str = "\
SELECT json_build_object('count', count(*), 'names',
         coalesce((array_agg(name ORDER BY name))[1:5], '{}'))
FROM (
  SELECT quote_ident(ns.nspname) || '.' || quote_ident(c.relname) AS name
  FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
    AND ns.nspname NOT IN ('pg_catalog', 'information_schema')
    AND ns.nspname !~ '^pg_(toast|temp_|toast_temp_)'
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                    AND d.objid = c.oid AND d.deptype = 'e')
) t;";

pub fn restore_database(
    repo: &Repository,
    snapshot: &Snapshot,
    url: &str,
    opts: &PgRestoreOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<PgRestoreReport> {
    let started = Instant::now();
    if snapshot.source != SOURCE {
        return Err(Error::invalid(format!(
            "this snapshot is not a PostgreSQL backup (its source is {:?}); \
             restore it with --target DIR",
            snapshot.source
        )));
    }
    let dump = snapshot_file(repo, snapshot, "dump-file")?;
    let globals = match opts.globals {
        true => Some(snapshot_file(repo, snapshot, "globals-file").map_err(|_| {
            Error::invalid("this snapshot has no globals: it was taken without --postgres-globals")
        })?),
        false => None,
    };
    let url = PgUrl::parse(url)?;
    let database = url
        .database()
        .ok_or_else(|| {
            Error::invalid(format!(
                "{url} names no database: give it as postgresql://USER@HOST:PORT/DATABASE"
            ))
        })?
        .to_string();
    let psql = tools::find("psql", opts.pg_bin.as_deref(), None)?;
    restrict::require(&psql)?;
    let conn = Conn::new(url)?;
    // CREATE and DROP DATABASE run from the server's maintenance database.
    let maintenance = conn.with_database(if database == "postgres" {
        "template1"
    } else {
        "postgres"
    });
    let state: ServerState = tools::psql_json(
        &psql,
        &maintenance,
        "SELECT json_build_object('version_num', current_setting('server_version_num')::int, \
         'exists', EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db'), \
         'comment', (SELECT shobj_description(oid, 'pg_database') FROM pg_database \
                     WHERE datname = :'db'));",
        &[("db", &database)],
    )?;
    if opts.drill_scratch && state.exists && state.comment.as_deref() != Some(DRILL_MARKER) {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "database {database:?} exists but is not a drill's scratch database (it \
                 lacks the comment {DRILL_MARKER:?} that a drill gives the database it \
                 creates), so the drill does not drop it; give a database name that does not \
                 exist yet, or, if this one really is scratch space, run COMMENT ON DATABASE \
                 ... IS '{DRILL_MARKER}'"
            ),
        ));
    }
    let mut report = PgRestoreReport {
        database: database.clone(),
        created: false,
        replaced: false,
        globals: globals.is_some(),
        bytes: 0,
        tables: vec![],
        rows: 0,
        counts_recorded: snapshot
            .info
            .iter()
            .any(|(k, _)| k.starts_with(super::ROWS_PREFIX)),
        mismatches: vec![],
        seconds: 0.0,
    };
    if state.exists {
        let occupants: Occupants = tools::psql_json(&psql, &conn, OCCUPANTS, &[])?;
        if occupants.count > 0 {
            if !opts.force {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "database {database:?} is not empty: it holds {} tables, sequences or \
                         views ({}{}); restore into a new or empty database, or add --force \
                         to drop it and create it again",
                        occupants.count,
                        occupants.names.join(", "),
                        if occupants.count > 5 { ", ..." } else { "" }
                    ),
                ));
            }
            report.replaced = true;
        }
    }
    // Roles first: the dump's ALTER ... OWNER TO and GRANT statements name them.
    if let Some(node) = &globals {
        restore_globals(repo, node, &psql, &maintenance)?;
    }
    if report.replaced {
        drop_database(&psql, &maintenance, &database, state.version_num)?;
    }
    if !state.exists || report.replaced {
        // template0: a plain dump expects a database without anything added to template1.
        // A drill's database is marked at once, so that even a failed drill leaves one
        // that the next drill may replace.
        let mark = match opts.drill_scratch {
            true => format!("\nCOMMENT ON DATABASE :\"db\" IS '{DRILL_MARKER}';"),
            false => String::new(),
        };
        tools::psql(
            &psql,
            &maintenance,
            &format!("CREATE DATABASE :\"db\" TEMPLATE template0;{mark}"),
            &[("db", &database)],
        )?;
        report.created = !state.exists;
    }
    report.bytes = load(repo, &dump, &psql, &conn, progress, cancel)?;
    report.tables = compare(snapshot, &psql, &conn)?;
    report.rows = report.tables.iter().filter_map(|t| t.actual).sum();
    report.mismatches = report.tables.iter().filter(|t| !t.ok()).cloned().collect();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn drop_database(psql: &Tool, maintenance: &Conn, database: &str, version_num: u32) -> Result<()> {
    // WITH (FORCE) (PostgreSQL 13+) ends the sessions still connected to it.
    let force = if version_num >= 130_000 {
        " WITH (FORCE)"
    } else {
        ""
    };
    tools::psql(
        psql,
        maintenance,
        &format!("DROP DATABASE :\"db\"{force};"),
        &[("db", database)],
    )?;
    Ok(())
}

/// The file a snapshot's info names under `key`.
fn snapshot_file(repo: &Repository, snapshot: &Snapshot, key: &str) -> Result<Node> {
    let name = info(snapshot, key)
        .ok_or_else(|| Error::corrupt(format!("the snapshot does not record its {key}")))?;
    find_node(repo, &snapshot.root, format!("/{name}").as_bytes())
}

/// Stream the dump into `psql --single-transaction`, in restricted mode; returns the bytes
/// loaded.
fn load(
    repo: &Repository,
    dump: &Node,
    psql: &Tool,
    conn: &Conn,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<u64> {
    let mut c = conn.command(psql);
    c.args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "--single-transaction",
        "-f",
        "-",
    ]);
    // The dump's SELECTs (set_config, setval) print results nobody needs.
    c.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| tools::spawn_error(psql, e))?;
    let stderr = tools::drain(child.stderr.take().expect("piped"));
    let stdin = child.stdin.take().expect("piped");
    progress.start("restore", Some(dump.size));
    progress.item(&String::from_utf8_lossy(&dump.name));
    let mut out = ProgressWriter {
        inner: Restricted::new(stdin),
        progress,
        cancel,
    };
    let written = kill_on_cancel(child.id(), cancel, || {
        let n = dump_file(repo, dump, &mut out)?;
        // Only after the whole dump: `\unrestrict`.
        out.inner.finish().map_err(pipe_error)?;
        Ok::<_, Error>(n)
    });
    progress.finish();
    // A closed pipe means psql stopped (its error is in its output). On any other failure
    // (reading the repository, Ctrl-C) psql is killed while its input is still open: at the
    // end of its input, psql --single-transaction would commit what it got so far.
    let psql_stopped = matches!(&written, Err(e) if e.kind() == ErrorKind::Interrupted);
    if written.is_err() && !psql_stopped {
        let _ = child.kill();
    }
    // The end of the script.
    drop(out);
    let status = child.wait().map_err(|e| Error::io("waiting for psql", e))?;
    let stderr = conn.clean_stderr(&stderr.join().unwrap_or_default());
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::new(
            ErrorKind::Interrupted,
            "interrupted (the restore is one transaction: the database holds all of it or none)",
        ));
    }
    if let Err(e) = &written {
        if !psql_stopped {
            return Err(e.clone().context(format!(
                "reading the dump from the repository (the restore into {conn} was rolled back)"
            )));
        }
    }
    if !status.success() {
        let why = match restrict::explain(&stderr) {
            Some(why) => format!("{why} (psql said: {stderr})"),
            None => stderr,
        };
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "psql could not restore into {conn} ({status}): {why}; \
                 the restore ran in one transaction and was rolled back"
            ),
        ));
    }
    let n = written?;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        progress.warn(&format!("psql: {line}"));
    }
    Ok(n)
}

/// Restore `globals.sql` (roles, memberships, tablespaces). `pg_dumpall` writes
/// `CREATE ROLE x;` and then `ALTER ROLE x WITH ...` so that a role that already exists
/// still gets its attributes; the CREATE of an existing role is made a no-op here so the
/// script can stop at any real error. Not one transaction: CREATE TABLESPACE cannot run
/// inside one.
fn restore_globals(repo: &Repository, node: &Node, psql: &Tool, conn: &Conn) -> Result<()> {
    let mut sql = Vec::new();
    dump_file(repo, node, &mut sql)?;
    let sql = String::from_utf8_lossy(&sql);
    let script: String = sql
        .lines()
        .map(|line| match create_role(line) {
            Some(stmt) => format!(
                "DO $coffer$BEGIN {stmt} EXCEPTION WHEN duplicate_object THEN \
                 RAISE NOTICE 'role exists'; END$coffer$;\n"
            ),
            None => format!("{line}\n"),
        })
        .collect();
    let script = restrict::script(&script, "globals.sql")?;
    tools::psql(psql, conn, &script, &[]).map_err(|e| {
        let e = match restrict::explain(e.message()) {
            Some(why) => e.context(why),
            None => e,
        };
        e.context("restoring roles and tablespaces (globals.sql)")
    })?;
    Ok(())
}

/// `CREATE ROLE name;` as pg_dumpall writes it (one line, nothing else).
fn create_role(line: &str) -> Option<&str> {
    let line = line.trim_end();
    (line.starts_with("CREATE ROLE ") && line.ends_with(';') && !line.contains("$coffer$"))
        .then_some(line)
}

/// A failed write to psql: a closed pipe means psql stopped (its message says why).
fn pipe_error(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Error::new(ErrorKind::Interrupted, "psql closed its input")
    } else {
        Error::io("writing to psql", e)
    }
}

/// Passes the dump to psql, advancing the progress and stopping on cancel.
struct ProgressWriter<'a, W> {
    inner: W,
    progress: &'a dyn Progress,
    cancel: &'a AtomicBool,
}

impl<W: Write> Write for ProgressWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            // Not ErrorKind::Interrupted: write_all would retry it.
            return Err(std::io::Error::other("interrupted"));
        }
        let n = self.inner.write(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_role_lines() {
        assert_eq!(
            create_role("CREATE ROLE \"Odd \"\"name\";"),
            Some("CREATE ROLE \"Odd \"\"name\";")
        );
        assert_eq!(create_role("ALTER ROLE app WITH LOGIN;"), None);
        assert_eq!(create_role("CREATE ROLE app"), None);
    }
}
