//! `--start`: start the restored server, wait until recovery has reached its target, and
//! read what it replayed last. The server is started with `pg_ctl` and keeps running after
//! coffer exits; its log goes to `coffer-recovery.log` in the data directory.
//!
//! coffer learns the outcome without logging in (the restored `pg_hba.conf` is production's,
//! and its passwords are not coffer's): from `pg_controldata` (the cluster state) and from
//! the server's log, written in English and UTC because coffer starts it with
//! `lc_messages=C` and `log_timezone=UTC`.

use super::super::tools::{self, Tool};
use crate::error::{Error, ErrorKind, Result};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const LOG_FILE: &str = "coffer-recovery.log";

/// How recovery ended.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// The time of the last transaction replayed (from "last completed transaction was at
    /// log time ..."), ns since the epoch.
    pub last_commit_ns: Option<i64>,
    /// The server's state in pg_controldata: "in production" after promotion, "in archive
    /// recovery" when paused.
    pub state: String,
    /// The log line that says where recovery stopped, if it stopped at a target.
    pub stopped: Option<String>,
    pub port: u16,
}

/// Start PostgreSQL on `data` at `port` (loopback only) and wait until recovery ends or
/// pauses, at most `timeout`.
pub fn start_and_wait(
    data: &Path,
    port: u16,
    pg_bin: Option<&Path>,
    pause: bool,
    timeout: Duration,
) -> Result<Recovered> {
    let major = std::fs::read_to_string(data.join("PG_VERSION"))
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok());
    let pg_ctl = tools::find("pg_ctl", pg_bin, major)?;
    let controldata = tools::find("pg_controldata", pg_bin, major)?;
    let log = data.join(LOG_FILE);
    let options = format!(
        "-c port={port} -c listen_addresses=127.0.0.1 -c archive_mode=off -c lc_messages=C \
         -c log_timezone=UTC -c unix_socket_directories='' -c logging_collector=off"
    );
    let out = as_data_owner(Command::new(&pg_ctl.path), data)
        .arg("start")
        .arg("-D")
        .arg(data)
        .arg("-l")
        .arg(&log)
        .arg("-o")
        .arg(&options)
        .arg("-W")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| owner_spawn_error(&pg_ctl, data, e))?;
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "pg_ctl could not start the restored server: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("FATAL:") || l.contains("PANIC:"))
        {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "the restored server stopped: {} (its log: {})",
                    line.trim(),
                    log.display()
                ),
            ));
        }
        let state = cluster_state(&controldata, data);
        let done = if pause {
            text.contains("pausing at the end of recovery") || text.contains("recovery has paused")
        } else {
            state == "in production" && text.contains("ready to accept connections")
        };
        if done {
            return Ok(Recovered {
                last_commit_ns: last_commit(&text),
                state,
                stopped: text
                    .lines()
                    .find(|l| l.contains("recovery stopping"))
                    .map(|l| l.split("LOG:").last().unwrap_or(l).trim().to_string()),
                port,
            });
        }
        if t0.elapsed() > timeout {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "recovery had not ended after {:?} (state: {state}); it goes on in the background, see {}",
                    timeout,
                    log.display()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stop the server running on `data` (fast shutdown: sessions are ended, nothing is lost),
/// waiting until it is down.
pub fn stop(data: &Path, pg_bin: Option<&Path>) -> Result<()> {
    let major = std::fs::read_to_string(data.join("PG_VERSION"))
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok());
    let pg_ctl = tools::find("pg_ctl", pg_bin, major)?;
    let out = as_data_owner(Command::new(&pg_ctl.path), data)
        .args(["stop", "-m", "fast", "-w", "-D"])
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| owner_spawn_error(&pg_ctl, data, e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Io,
        format!(
            "pg_ctl could not stop the restored server in {}: {}",
            data.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    ))
}

/// "Database cluster state" from pg_controldata.
fn cluster_state(controldata: &Tool, data: &Path) -> String {
    let out = Command::new(&controldata.path)
        .arg("-D")
        .arg(data)
        .env_clear()
        .env("LC_ALL", "C")
        .output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    text.unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Database cluster state:"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The time in "last completed transaction was at log time 2026-12-02 15:00:00.123456+00".
fn last_commit(log: &str) -> Option<i64> {
    let at = log
        .lines()
        .rev()
        .find_map(|l| l.split_once("last completed transaction was at log time "))?
        .1
        .trim();
    let civil = at.strip_suffix("+00")?;
    let dt: jiff::civil::DateTime = civil.replace(' ', "T").parse().ok()?;
    let ts = dt.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    i64::try_from(ts.as_nanosecond()).ok()
}

/// PostgreSQL refuses to run as root: when coffer is root, the server runs as the data
/// directory's owner, with a clean environment.
fn as_data_owner(mut cmd: Command, data: &Path) -> Command {
    crate::child_env::restrict(&mut cmd, |_| false);
    cmd.env("LC_ALL", "C");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        if let Ok(m) = std::fs::metadata(data) {
            cmd.uid(m.uid()).gid(m.gid());
        }
    }
    cmd.current_dir(data);
    cmd
}

/// pg_ctl runs as the data directory's owner, in that directory: "permission denied" there
/// almost always means the owner cannot pass through a folder above it.
fn owner_spawn_error(pg_ctl: &Tool, data: &Path, e: std::io::Error) -> Error {
    if e.kind() != std::io::ErrorKind::PermissionDenied {
        return tools::spawn_error(pg_ctl, e);
    }
    let owner = std::fs::metadata(data).map(|m| m.uid()).ok();
    Error::io(
        format!(
            "cannot run {} as the data directory's owner (uid {}) in {}: every folder above it \
             must let that user pass through (mode o+x)",
            pg_ctl.path.display(),
            owner.map_or("?".to_string(), |u| u.to_string()),
            data.display()
        ),
        e,
    )
}

/// A free TCP port on loopback, for a restored server that is given none.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("a free port", e))?;
    Ok(l.local_addr()
        .map_err(|e| Error::io("a free port", e))?
        .port())
}

/// The spool folder of a restore into `data`.
pub fn spool_dir(data: &Path) -> PathBuf {
    data.join("pg_wal").join(crate::wal::fetch::SPOOL_DIR)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_last_commit_time_from_the_log() {
        let log = "2026-12-02 15:00:01.000 UTC [1] LOG:  redo done at 0/3000148\n\
                   2026-12-02 15:00:01.000 UTC [1] LOG:  last completed transaction was at log time 2026-12-02 14:59:58.123456+00\n";
        assert_eq!(super::last_commit(log), Some(1_796_223_598_123_456_000));
        assert_eq!(super::last_commit("nothing"), None);
    }
}
