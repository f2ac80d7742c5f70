//! Finding and running the PostgreSQL client programs (`pg_dump`, `pg_dumpall`, `psql`).
//!
//! They run through `std::process::Command` with arguments, never a shell; the connection
//! string is passed with `--dbname` and the secrets through private files (`conn.rs`).

use super::conn::Conn;
use crate::error::{Error, ErrorKind, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A client program and its version.
#[derive(Debug, Clone)]
pub struct Tool {
    pub path: PathBuf,
    /// The version as printed, e.g. "15.18 (Debian 15.18-0+deb12u1)".
    pub version: String,
    pub major: u32,
}

/// Folders to look in, in order: version folders of Debian (`/usr/lib/postgresql/N/bin`)
/// and of the PGDG RPMs (`/usr/pgsql-N/bin`), then `PATH`. On Debian `/usr/bin/pg_dump` is
/// a wrapper that picks a version by itself, so the versioned folders come first.
fn candidate_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for (parent, prefix, suffix) in [
        ("/usr/lib/postgresql", "", "bin"),
        ("/usr", "pgsql-", "bin"),
    ] {
        if let Ok(rd) = std::fs::read_dir(parent) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(v) = name.strip_prefix(prefix) {
                    if v.split('.')
                        .next()
                        .is_some_and(|m| m.parse::<u32>().is_ok())
                    {
                        dirs.push(e.path().join(suffix));
                    }
                }
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(path_dirs(&path));
    }
    dirs
}

/// The absolute folders of a `PATH`. An empty entry means the current folder to a shell, and
/// a relative one depends on it too: every program found is run (`--version`), so a
/// `pg_dump` planted in whatever folder coffer was started from must not be.
fn path_dirs(path: &std::ffi::OsStr) -> impl Iterator<Item = PathBuf> + '_ {
    std::env::split_paths(path).filter(|d| d.is_absolute())
}

/// Ask a program for its version: `pg_dump (PostgreSQL) 15.18 (Debian ...)`.
fn version_of(path: &Path) -> Option<(String, u32)> {
    let mut c = Command::new(path);
    crate::child_env::restrict(&mut c, |_| false);
    let out = c
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.lines().next()?.split_once(") ")?.1.trim().to_string();
    let major = version
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some((version, major))
}

/// Find `name`: only in `pg_bin` if given, else in the usual places. With `min_major` (the
/// server's major version), the oldest program at least that new is chosen: an older
/// `pg_dump` refuses a newer server, and a newer one may write settings an older server
/// rejects on restore. Without it, the newest is chosen.
pub fn find(name: &str, pg_bin: Option<&Path>, min_major: Option<u32>) -> Result<Tool> {
    let dirs = match pg_bin {
        Some(d) => vec![d.to_path_buf()],
        None => candidate_dirs(),
    };
    let mut found: Vec<Tool> = Vec::new();
    for d in dirs {
        let path = d.join(name);
        if found.iter().any(|t| t.path == path) || !path.is_file() {
            continue;
        }
        if let Some((version, major)) = version_of(&path) {
            found.push(Tool {
                path,
                version,
                major,
            });
        }
    }
    let where_ = match pg_bin {
        Some(d) => format!("in {}", d.display()),
        None => "in /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin or PATH".to_string(),
    };
    if found.is_empty() {
        return Err(Error::not_found(format!(
            "{name} was not found {where_}: install the PostgreSQL client programs \
             (e.g. apt-get install postgresql-client) or give --pg-bin DIR"
        )));
    }
    // Stable sorts keep the search order among equal versions.
    let chosen = match min_major {
        Some(min) => {
            found.sort_by_key(|t| t.major);
            let newest = found.last().map(|t| (t.major, t.path.clone()));
            found.into_iter().find(|t| t.major >= min).ok_or_else(|| {
                let (major, path) = newest.expect("not empty");
                Error::not_found(format!(
                    "the server runs PostgreSQL {min}, but the newest {name} found is version \
                     {major} ({}), which cannot handle a newer server: install the version {min} \
                     client programs or give --pg-bin DIR",
                    path.display()
                ))
            })?
        }
        None => {
            found.sort_by_key(|t| std::cmp::Reverse(t.major));
            found.into_iter().next().expect("not empty")
        }
    };
    Ok(chosen)
}

/// Run `psql` with `sql` on its standard input and return what it prints (unaligned,
/// tuples only). `vars` become psql variables, so values reach SQL through psql's own
/// quoting (`:'name'` for a literal, `:"name"` for an identifier).
pub fn psql(psql: &Tool, conn: &Conn, sql: &str, vars: &[(&str, &str)]) -> Result<String> {
    let mut c = conn.command(psql);
    c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"]);
    for (k, v) in vars {
        c.arg("-v").arg(format!("{k}={v}"));
    }
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| spawn_error(psql, e))?;
    let mut stdin = child.stdin.take().expect("piped");
    // The SQL is small: it fits the pipe, so writing it before reading cannot block.
    let wrote = stdin.write_all(sql.as_bytes());
    drop(stdin);
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("waiting for psql", e))?;
    if !out.status.success() {
        let err = conn.clean_stderr(&out.stderr);
        return Err(Error::new(
            ErrorKind::Io,
            format!("psql on {conn} failed ({}): {err}", out.status),
        ));
    }
    wrote.map_err(|e| Error::io("writing to psql", e))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Run psql for one JSON value (a query that prints `json_build_object(...)`).
pub fn psql_json<T: serde::de::DeserializeOwned>(
    tool: &Tool,
    conn: &Conn,
    sql: &str,
    vars: &[(&str, &str)],
) -> Result<T> {
    let text = psql(tool, conn, sql, vars)?;
    serde_json::from_str(&text).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("psql printed something unexpected ({e}): {text:.200}"),
        )
    })
}

pub fn spawn_error(tool: &Tool, e: std::io::Error) -> Error {
    Error::io(format!("cannot run {}", tool.path.display()), e)
}

/// Collect a child's standard error on a thread (so a full pipe never stalls it).
pub fn drain(mut stderr: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_path_entries_are_searched() {
        let path = std::ffi::OsString::from("/usr/bin::bin:./x:/opt/pg/bin:");
        let dirs: Vec<PathBuf> = path_dirs(&path).collect();
        assert_eq!(
            dirs,
            [PathBuf::from("/usr/bin"), PathBuf::from("/opt/pg/bin")]
        );
    }
}
