//! `backup --postgres URL`: stream `pg_dump`'s plain SQL into the store.
//!
//! Plain, uncompressed SQL dedups night to night (the stream chunker cuts it at content-
//! defined points, so unchanged rows give unchanged chunks); the custom format compresses
//! and would not. The dump goes from `pg_dump`'s standard output straight into the chunker:
//! no temporary file. Rows are counted from the COPY blocks on the way (`counts.rs`).
//! Whatever goes wrong (`pg_dump` exits non-zero or is killed, the dump ends early, Ctrl-C),
//! the custom source returns an error, so no snapshot is written.

use super::conn::Conn;
use super::counts::{DumpScanner, ScanReader};
use super::tools::{self, Tool};
use super::url::PgUrl;
use super::{kill_on_cancel, PgBackupOptions, SOURCE};
use crate::backup::synthetic_file;
use crate::backup::{backup, BackupOptions, BackupOutcome, BuiltSource, Source, SourceContext};
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{Content, Node, Tree};
use crate::id::SnapshotId;
use crate::progress::Progress;
use crate::repo::Repository;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// What `pg_dump` is asked for: plain SQL on standard output. Everything else is its
/// default (ownership, privileges, all schemas, large objects).
/// `--lock-wait-timeout`: a table that another session holds exclusively (a long migration,
/// a session idle in a transaction after `ALTER TABLE`) fails the dump after this long
/// instead of stalling it, and every later scheduled run behind it, forever.
const DUMP_OPTIONS: &[&str] = &["--format=plain", "--lock-wait-timeout=10min"];
const DUMP_COMPLETE: &str = "-- PostgreSQL database dump complete";
const GLOBALS_COMPLETE: &str = "-- PostgreSQL database cluster dump complete";
pub const GLOBALS_FILE: &str = "globals.sql";
/// More tables than this are not recorded one by one in the snapshot (its record would
/// grow past what `snapshots` should read every time); their total still is.
const MAX_RECORDED_TABLES: usize = 10_000;

#[derive(serde::Deserialize)]
struct ServerInfo {
    version: String,
    version_num: u32,
    database: String,
    encoding: String,
}

/// Back up one database as a new snapshot: `<database>.sql` (and `globals.sql` with
/// `globals`), with the server version, the dump options and each table's row count
/// recorded in the snapshot's info.
pub fn backup_database(
    repo: &Repository,
    url: &str,
    pg: &PgBackupOptions,
    opts: &BackupOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<BackupOutcome> {
    let url = PgUrl::parse(url)?;
    let conn = Conn::new(url.clone())?;
    let pg_bin = pg.pg_bin.as_deref();
    let psql = tools::find("psql", pg_bin, None)?;
    let server: ServerInfo = tools::psql_json(
        &psql,
        &conn,
        "SELECT json_build_object('version', current_setting('server_version'), \
         'version_num', current_setting('server_version_num')::int, \
         'database', current_database(), 'encoding', pg_encoding_to_char(encoding)) \
         FROM pg_database WHERE datname = current_database();",
        &[],
    )?;
    // 150018 is 15.18; 90624 (9.6.24) gives 9, which is what `--version` parsing gives too.
    let major = server.version_num / 10_000;
    let pg_dump = tools::find("pg_dump", pg_bin, Some(major))?;
    let pg_dumpall = match pg.globals {
        true => Some(tools::find("pg_dumpall", pg_bin, Some(major))?),
        false => None,
    };
    let path = format!("/postgres/{}/{}", url.server_label(), server.database);
    let parent = previous_snapshot(repo, &opts.host, path.as_bytes())?;
    let dump_file = dump_file_name(&server.database);

    let mut info = vec![
        ("database".to_string(), server.database.clone()),
        ("server".to_string(), url.server_label()),
        ("url".to_string(), url.to_string()),
        ("server-version".to_string(), server.version.clone()),
        ("encoding".to_string(), server.encoding.clone()),
        ("pg-dump-version".to_string(), pg_dump.version.clone()),
        ("pg-dump-options".to_string(), DUMP_OPTIONS.join(" ")),
        ("dump-file".to_string(), dump_file.clone()),
    ];
    if pg.globals {
        info.push(("globals-file".to_string(), GLOBALS_FILE.to_string()));
    }
    let build = move |ctx: &SourceContext| -> Result<BuiltSource> {
        let mut nodes = Vec::new();
        if let Some(dumpall) = &pg_dumpall {
            let mut c = conn.command(dumpall);
            // The database named in the URL is the one pg_dumpall first connects to (the
            // user may not be allowed into `postgres`); roles are cluster-wide anyway.
            c.args(["--globals-only", "-l", &server.database]);
            let mut scanner = DumpScanner::new(GLOBALS_COMPLETE);
            let node = stream_dump(ctx, c, dumpall, &conn, GLOBALS_FILE, &mut scanner)?;
            nodes.push(node);
        }
        let mut c = conn.command(&pg_dump);
        c.args(DUMP_OPTIONS);
        let mut scanner = DumpScanner::new(DUMP_COMPLETE);
        nodes.push(stream_dump(
            ctx,
            c,
            &pg_dump,
            &conn,
            &dump_file,
            &mut scanner,
        )?);
        info.extend(row_info(&scanner.counts));
        let root = ctx.store_tree(&Tree::new(nodes)?)?;
        Ok(BuiltSource {
            root,
            paths: vec![path.into_bytes()],
            source: SOURCE.to_string(),
            info,
            parent,
        })
    };
    backup(
        repo,
        Source::Custom(Box::new(build)),
        opts,
        progress,
        cancel,
    )
}

/// `<database>.sql`, made a valid file name; a database called "globals" does not take the
/// globals file's name.
fn dump_file_name(database: &str) -> String {
    let name = format!("{}.sql", database.replace(['/', '\0'], "_"));
    if name == GLOBALS_FILE {
        "database-globals.sql".to_string()
    } else {
        name
    }
}

/// The snapshot's record of row counts: totals, then `rows:<table>` per table.
fn row_info(counts: &[(String, u64)]) -> Vec<(String, String)> {
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let mut info = vec![
        ("tables".to_string(), counts.len().to_string()),
        ("rows".to_string(), total.to_string()),
    ];
    if counts.len() > MAX_RECORDED_TABLES {
        info.push((
            "row-counts".to_string(),
            format!("not recorded per table (more than {MAX_RECORDED_TABLES} tables)"),
        ));
    } else {
        info.extend(
            counts
                .iter()
                .map(|(t, n)| (format!("{}{t}", super::ROWS_PREFIX), n.to_string())),
        );
    }
    info
}

/// The newest snapshot of the same database from this host: recorded as the parent.
fn previous_snapshot(repo: &Repository, host: &str, path: &[u8]) -> Result<Option<SnapshotId>> {
    let (snaps, _damaged) = repo.readable_snapshots()?;
    Ok(snaps
        .into_iter()
        .rev()
        .find(|(_, s)| s.source == SOURCE && s.host == host && s.paths == [path.to_vec()])
        .map(|(id, _)| id))
}

/// Run a dump program and store its standard output as file `name`. Fails, after stopping
/// the program, if it exits non-zero, is killed, ends without its closing line, or the
/// backup is cancelled.
fn stream_dump(
    ctx: &SourceContext,
    mut cmd: Command,
    tool: &Tool,
    conn: &Conn,
    name: &str,
    scanner: &mut DumpScanner,
) -> Result<Node> {
    let program = tool
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    ctx.progress.item(name);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| tools::spawn_error(tool, e))?;
    let stderr = tools::drain(child.stderr.take().expect("piped"));
    let stdout = child.stdout.take().expect("piped");
    let stored = kill_on_cancel(child.id(), ctx.cancel, || {
        ctx.store_stream(ScanReader {
            inner: stdout,
            scanner: &mut *scanner,
        })
    });
    if stored.is_err() {
        // The store failed (or was cancelled): stop the dump rather than wait for it.
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| Error::io(format!("waiting for {program}"), e))?;
    let stderr = conn.clean_stderr(&stderr.join().unwrap_or_default());
    if ctx.cancel.load(Ordering::Relaxed) {
        return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
    }
    let (content, size): (Content, u64) = stored?;
    if !status.success() {
        let detail = if stderr.is_empty() {
            String::new()
        } else {
            format!(": {stderr}")
        };
        return Err(Error::new(
            ErrorKind::Io,
            format!("{program} of {conn} failed ({status}){detail}; no snapshot was saved"),
        ));
    }
    if !scanner.complete {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "{program} of {conn} exited successfully but its output lacks the closing \
                 line {:?}; the dump is incomplete and no snapshot was saved",
                scanner.marker()
            ),
        ));
    }
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        ctx.progress.warn(&format!("{program}: {line}"));
    }
    ctx.counters.files_new.fetch_add(1, Ordering::Relaxed);
    ctx.counters.total_bytes.fetch_add(size, Ordering::Relaxed);
    ctx.counters.bytes_read.fetch_add(size, Ordering::Relaxed);
    Ok(synthetic_file(
        name.as_bytes(),
        0o600,
        ctx.time_ns,
        size,
        content,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(dump_file_name("app"), "app.sql");
        assert_eq!(dump_file_name("a/b"), "a_b.sql");
        assert_eq!(dump_file_name("globals"), "database-globals.sql");
    }

    #[test]
    fn row_record() {
        let info = row_info(&[("public.a".into(), 3), ("public.b".into(), 0)]);
        assert_eq!(
            info,
            vec![
                ("tables".to_string(), "2".to_string()),
                ("rows".to_string(), "3".to_string()),
                ("rows:public.a".to_string(), "3".to_string()),
                ("rows:public.b".to_string(), "0".to_string()),
            ]
        );
    }
}
