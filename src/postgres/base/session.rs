//! One psql session held open for the whole base backup.
//!
//! PostgreSQL's non-exclusive backup API ties a backup to the session that started it:
//! `pg_backup_start` and `pg_backup_stop` must run in the same connection, and a session
//! that ends in between aborts the backup. So coffer keeps one `psql` child running and
//! talks to it through its standard input and output, instead of one psql per query as
//! `tools::psql` does. After each script it sends `\echo MARKER`: everything psql prints
//! before the marker is the script's result. psql flushes its output after every command,
//! so the marker arrives as soon as the queries before it are done.
//!
//! psql runs with `ON_ERROR_STOP`: an SQL error ends it, which ends the session (and so the
//! backup) on the server too, and its standard error says why. Dropping a [`Session`]
//! kills psql, which is how an abandoned backup is given back to the server.

use crate::error::{Error, ErrorKind, Result};
use crate::postgres::conn::Conn;
use crate::postgres::tools::{self, Tool};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a wait looks at the cancel flag.
const POLL: Duration = Duration::from_millis(100);

pub struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    /// psql's standard output, line by line; closed when psql exits.
    lines: Receiver<String>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    conn: Conn,
    /// Unique to this session, so no query result can be mistaken for it.
    marker: String,
    seq: u64,
}

impl Session {
    /// Start psql on `conn`, with `vars` as psql variables (quoted into SQL by psql itself
    /// with `:'name'`). The session is set up so that nothing the server is configured
    /// with ends it while the data directory is read (no statement or idle timeouts), that
    /// the server ends it soon after psql goes away, and with only warnings and errors on
    /// standard error.
    pub fn open(psql: &Tool, conn: &Conn, vars: &[(&str, &str)]) -> Result<Session> {
        let mut c = conn.command(psql);
        c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"]);
        for (k, v) in vars {
            c.arg("-v").arg(format!("{k}={v}"));
        }
        // The data directory's path and labels come back as UTF-8 whatever the locale.
        c.env("PGCLIENTENCODING", "UTF8");
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|e| tools::spawn_error(psql, e))?;
        let stdin = child.stdin.take();
        let stderr = Some(tools::drain(child.stderr.take().expect("piped")));
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line).trim_end().to_string();
                        if tx.send(text).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut session = Session {
            child,
            stdin,
            lines,
            stderr,
            conn: conn.clone(),
            marker: format!("coffer-end-of-result-{}-{nanos:x}", std::process::id()),
            seq: 0,
        };
        // A backup abandoned by coffer (the archive wait timed out, Ctrl-C, a crash) must not
        // leave its backend waiting in pg_backup_stop for an archive that may never come:
        // with client_connection_check_interval the server notices within a second that
        // psql is gone and ends the session. It and idle_session_timeout are new in
        // PostgreSQL 14: set only where they exist, so that an older server gets to the
        // clear refusal of `server.rs` instead of an SQL error.
        session.run(
            "SET client_min_messages = warning; SET statement_timeout = 0; \
             SET idle_in_transaction_session_timeout = 0; \
             SELECT set_config(name, value, false) \
             FROM (VALUES ('idle_session_timeout', '0'), \
                          ('client_connection_check_interval', '1s')) AS s(name, value) \
             WHERE current_setting(name, true) IS NOT NULL;",
            &AtomicBool::new(false),
        )?;
        Ok(session)
    }

    /// Run `sql` and return the lines it printed. Waits as long as it takes unless `limit`
    /// is given: then, after that long, psql is stopped and `Ok(None)` returned. Stops psql
    /// and fails if `cancel` is set meanwhile.
    pub fn run_within(
        &mut self,
        sql: &str,
        limit: Option<Duration>,
        cancel: &AtomicBool,
    ) -> Result<Option<Vec<String>>> {
        self.seq += 1;
        let marker = format!("{}-{}", self.marker, self.seq);
        let script = format!("{sql}\n\\echo {marker}\n");
        let wrote = match self.stdin.as_mut() {
            Some(stdin) => stdin
                .write_all(script.as_bytes())
                .and_then(|_| stdin.flush()),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        };
        if wrote.is_err() {
            // psql is gone; its standard error says why.
            return Err(self.failed());
        }
        let started = Instant::now();
        let mut out = Vec::new();
        loop {
            if cancel.load(Ordering::Relaxed) {
                self.kill();
                return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
            }
            if limit.is_some_and(|l| started.elapsed() >= l) {
                self.kill();
                return Ok(None);
            }
            match self.lines.recv_timeout(POLL) {
                Ok(line) if line == marker => return Ok(Some(out)),
                Ok(line) => out.push(line),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Err(self.failed()),
            }
        }
    }

    /// [`Session::run_within`] without a time limit.
    pub fn run(&mut self, sql: &str, cancel: &AtomicBool) -> Result<Vec<String>> {
        let out = self.run_within(sql, None, cancel)?;
        // Without a limit there is no timeout: `None` cannot come back.
        Ok(out.unwrap_or_default())
    }

    /// Run a query that prints one JSON value (`SELECT json_build_object(...)`).
    pub fn json<T: serde::de::DeserializeOwned>(
        &mut self,
        sql: &str,
        cancel: &AtomicBool,
    ) -> Result<T> {
        let lines = self.run(sql, cancel)?;
        parse_json(&lines)
    }

    /// End the session: psql quits, and the server closes the connection.
    pub fn close(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Drop kills it.
    }

    /// psql has exited: the error it printed.
    fn failed(&mut self) -> Error {
        drop(self.stdin.take());
        let status = self.child.wait();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let stderr = self.conn.clean_stderr(&stderr);
        let status = match status {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        Error::new(
            ErrorKind::Io,
            format!("psql on {} failed ({status}): {stderr}", self.conn),
        )
    }

    fn kill(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// The one JSON value among psql's output lines.
pub fn parse_json<T: serde::de::DeserializeOwned>(lines: &[String]) -> Result<T> {
    let text = lines.join("\n");
    serde_json::from_str(text.trim()).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("psql printed something unexpected ({e}): {text:.200}"),
        )
    })
}
