//! `setup-archiving URL [--apply]`: what a server needs for coffer to archive its WAL
//! (`wal_level`, `archive_mode`, `archive_command`, `archive_timeout`), read from the server,
//! compared with what is wanted, and set through `ALTER SYSTEM`.
//!
//! Two things in PostgreSQL make this less simple than four `SET`s:
//! - while `archive_mode` is off, `pg_settings` shows `archive_command` as `(disabled)`, so its
//!   real value is read from the configuration files (`pg_file_settings`, superusers only);
//! - `ALTER SYSTEM` writes `postgresql.auto.conf`, which the server's command line (`-c`,
//!   `pg_ctl -o`) overrides: a setting fixed there cannot be changed from here, and saying
//!   so beats reporting success for a change that never takes effect.
//!
//! Another tool's archiver (an `archive_command` that is not a coffer `wal-push`, or any
//! `archive_library`) is replaced only when the caller says so (`force`): two tools cannot
//! both archive, and silently cutting off the other one's archive would break its restores.

use super::archive_command::conf_value;
use super::conn::Conn;
use super::tools::{self, Tool};
use super::url::PgUrl;
use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long `apply` waits for the server to reload its configuration.
const RELOAD_WAIT: Duration = Duration::from_secs(10);

/// What the server should get.
#[derive(Debug, Clone)]
pub struct ArchivingWanted {
    /// The whole `archive_command`, already quoted (`archive_command::shell_command`).
    pub command: String,
    /// `archive_timeout`: the longest a finished transaction waits before its segment is
    /// switched and archived, when the server is quiet (the RPO bound).
    pub timeout_secs: u64,
}

/// One setting: as the server has it, and as it should be.
#[derive(Debug, Clone, Serialize)]
pub struct SettingPlan {
    pub name: &'static str,
    /// `None` when it cannot be read: `archive_command` while archiving is off, set somewhere
    /// other than the configuration files, or by a role that may not read those.
    pub current: Option<String>,
    pub wanted: String,
    pub change: bool,
    /// A change takes effect only when the server restarts (`wal_level`, `archive_mode`).
    pub restart: bool,
    /// Where the current value comes from (`pg_settings.source`): `default`,
    /// `configuration file`, `command line`...
    pub source: String,
    /// Set where `ALTER SYSTEM` cannot override it (the server's command line).
    pub fixed_elsewhere: bool,
    /// The configuration files already hold another value, which waits for a restart.
    pub pending_restart: bool,
}

/// An archiver that is not coffer's, found on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Foreign {
    /// Another program's `archive_command`.
    Command(String),
    /// An `archive_library` (PostgreSQL 15+), which runs instead of any `archive_command`.
    Library(String),
    /// `archive_command` is set but cannot be read (see [`SettingPlan::current`]).
    Unreadable,
}

impl std::fmt::Display for Foreign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Foreign::Command(c) => write!(f, "archive_command is already set to {c:?}"),
            Foreign::Library(l) => write!(f, "archive_library is set to {l:?}"),
            Foreign::Unreadable => write!(
                f,
                "archive_command is set where it cannot be read while archive_mode is off"
            ),
        }
    }
}

/// The server's archiving settings against what is wanted.
#[derive(Debug, Clone, Serialize)]
pub struct ArchivingPlan {
    /// The URL, without its secrets.
    pub server: String,
    pub server_version: String,
    /// `wal_level`, `archive_mode`, `archive_command`, `archive_timeout`, in that order.
    pub settings: Vec<SettingPlan>,
    /// Another tool's archiver, if any.
    pub foreign: Option<Foreign>,
    /// The current `archive_command` is a coffer `wal-push` with other options (an earlier
    /// setup): replaced without `force`.
    pub replaces_coffer: Option<String>,
}

impl ArchivingPlan {
    /// The `postgresql.conf` lines that give the wanted settings.
    pub fn conf_lines(&self) -> Vec<String> {
        self.settings
            .iter()
            .map(|s| match s.name {
                "archive_command" => format!("{} = {}", s.name, conf_value(&s.wanted)),
                _ => format!("{} = {}", s.name, s.wanted),
            })
            .collect()
    }

    /// The settings that take effect only after a restart: those that change, and those
    /// already set in the files that wait for one.
    pub fn restart_needed(&self) -> Vec<&'static str> {
        self.settings
            .iter()
            .filter(|s| (s.change && s.restart) || s.pending_restart)
            .map(|s| s.name)
            .collect()
    }

    pub fn changes(&self) -> impl Iterator<Item = &SettingPlan> {
        self.settings.iter().filter(|s| s.change)
    }
}

/// What `apply` did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// The settings it set through `ALTER SYSTEM`.
    pub changed: Vec<String>,
    /// Whether the server had reloaded its configuration when `apply` returned.
    pub reloaded: bool,
    /// The archiving settings the server flags `pending_restart` after the reload (including
    /// any changed earlier by someone else): the server must restart for them. Other settings
    /// are not this command's business (PostgreSQL also flags one that the files change but
    /// the command line overrides).
    pub pending_restart: Vec<String>,
}

/// A server, reached with `psql`.
pub struct ArchivingServer {
    psql: Tool,
    conn: Conn,
}

/// A row of `pg_settings`.
#[derive(Deserialize)]
struct Row {
    setting: String,
    source: String,
    context: String,
    pending_restart: bool,
}

#[derive(Deserialize)]
struct Current {
    version: String,
    settings: BTreeMap<String, Row>,
    can_read_files: bool,
    load_time: String,
}

const READ: &str = "\
SELECT json_build_object(
  'version', current_setting('server_version'),
  'load_time', pg_conf_load_time()::text,
  'settings', (SELECT json_object_agg(name, json_build_object(
                 'setting', setting, 'source', source, 'context', context,
                 'pending_restart', pending_restart))
               FROM pg_settings
               WHERE name IN ('wal_level', 'archive_mode', 'archive_command',
                              'archive_library', 'archive_timeout')),
  'can_read_files', has_table_privilege('pg_catalog.pg_file_settings', 'SELECT')
                    AND has_function_privilege('pg_catalog.pg_show_all_file_settings()',
                                               'EXECUTE'));";

/// The values the configuration files give (the last one read wins): what the server runs
/// once it reloads or restarts. Rows with an `error` count too: one that waits for a restart
/// has "setting could not be applied", and an invalid value simply differs from the wanted.
const FILE_VALUES: &str = "\
SELECT coalesce(json_object_agg(name, setting), '{}'::json) FROM (
  SELECT DISTINCT ON (name) name, setting FROM pg_file_settings
  WHERE name IN ('wal_level', 'archive_mode', 'archive_command', 'archive_timeout')
    AND setting IS NOT NULL
  ORDER BY name, seqno DESC) f;";

impl ArchivingServer {
    pub fn connect(url: &str, pg_bin: Option<&Path>) -> Result<ArchivingServer> {
        let conn = Conn::new(PgUrl::parse(url)?)?;
        let psql = tools::find("psql", pg_bin, None)?;
        Ok(ArchivingServer { psql, conn })
    }

    /// Read the server's settings and compare them with `wanted`.
    pub fn plan(&self, wanted: &ArchivingWanted) -> Result<ArchivingPlan> {
        Ok(self.read_plan(wanted)?.0)
    }

    fn read_plan(&self, wanted: &ArchivingWanted) -> Result<(ArchivingPlan, String)> {
        let now: Current = tools::psql_json(&self.psql, &self.conn, READ, &[])?;
        let row = |name: &str| {
            now.settings.get(name).ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "{} does not show {name} in pg_settings: connect as a superuser or a \
                         member of pg_read_all_settings",
                        self.conn
                    ),
                )
            })
        };
        let files: BTreeMap<String, String> = if now.can_read_files {
            tools::psql_json(&self.psql, &self.conn, FILE_VALUES, &[])?
        } else {
            BTreeMap::new()
        };
        let cmd_row = row("archive_command")?;
        let archive_command = match (cmd_row.setting.as_str(), cmd_row.source.as_str()) {
            ("(disabled)", "default") => Some(String::new()),
            ("(disabled)", "configuration file") => files.get("archive_command").cloned(),
            ("(disabled)", _) => None,
            (c, _) => Some(c.to_string()),
        };
        let keep = |v: &str, ok: &[&str], default: &str| {
            if ok.contains(&v) { v } else { default }.to_string()
        };
        // What a restart would give: the files' value if one waits, else the running one.
        let after_restart = |r: &Row, name: &str| match (r.pending_restart, files.get(name)) {
            (true, Some(v)) => normal_enum(v),
            _ => r.setting.clone(),
        };
        let wal_level = row("wal_level")?;
        let mode = row("archive_mode")?;
        let timeout = row("archive_timeout")?;
        let settings = vec![
            setting(
                "wal_level",
                wal_level,
                Some(wal_level.setting.clone()),
                keep(
                    &after_restart(wal_level, "wal_level"),
                    &["replica", "logical"],
                    "replica",
                ),
                files.get("wal_level").map(|v| normal_enum(v)),
            ),
            setting(
                "archive_mode",
                mode,
                Some(mode.setting.clone()),
                keep(
                    &after_restart(mode, "archive_mode"),
                    &["on", "always"],
                    "on",
                ),
                files.get("archive_mode").map(|v| normal_enum(v)),
            ),
            setting(
                "archive_command",
                cmd_row,
                archive_command.clone(),
                wanted.command.clone(),
                None,
            ),
            SettingPlan {
                change: timeout.setting.parse::<u64>().ok() != Some(wanted.timeout_secs),
                ..setting(
                    "archive_timeout",
                    timeout,
                    Some(format!("{}s", timeout.setting)),
                    format!("{}s", wanted.timeout_secs),
                    None,
                )
            },
        ];

        let library = now
            .settings
            .get("archive_library")
            .map(|r| r.setting.clone())
            .filter(|l| !l.is_empty());
        let mut replaces_coffer = None;
        let foreign = match (library, archive_command) {
            (Some(lib), _) => Some(Foreign::Library(lib)),
            (None, None) => Some(Foreign::Unreadable),
            (None, Some(c)) if c.is_empty() || c == wanted.command => None,
            (None, Some(c)) if is_coffer_wal_push(&c) => {
                replaces_coffer = Some(c);
                None
            }
            (None, Some(c)) => Some(Foreign::Command(c)),
        };
        let plan = ArchivingPlan {
            server: self.conn.to_string(),
            server_version: now.version,
            settings,
            foreign,
            replaces_coffer,
        };
        Ok((plan, now.load_time))
    }

    /// Set what `plan` says through `ALTER SYSTEM`, reload the configuration, and report
    /// what needs a restart. The plan is read again first, so a change made since it was
    /// shown is not overwritten unseen. Refused, with nothing changed, when another tool's
    /// archiver is set and `force` is not, or when a setting to change is fixed on the
    /// server's command line.
    pub fn apply(
        &self,
        wanted: &ArchivingWanted,
        force: bool,
    ) -> Result<(ArchivingPlan, ApplyReport)> {
        let (plan, load_time) = self.read_plan(wanted)?;
        if let (Some(f), false) = (&plan.foreign, force) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "{f} on {}, which is not coffer's; nothing was changed: run again with \
                     --force to replace it (and stop that tool's archiving)",
                    plan.server
                ),
            ));
        }
        if let Some(s) = plan.changes().find(|s| s.fixed_elsewhere) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "{} is set on the server's {} (-c, pg_ctl -o or the service unit), which \
                     ALTER SYSTEM cannot override; nothing was changed: remove it there and \
                     run again",
                    s.name, s.source
                ),
            ));
        }
        let mut sql = String::new();
        let mut vars: Vec<(String, String)> = Vec::new();
        if matches!(plan.foreign, Some(Foreign::Library(_))) {
            sql.push_str("ALTER SYSTEM SET archive_library = '';\n");
        }
        for s in plan.changes() {
            // Names are this module's constants; values go through psql's quoting.
            sql.push_str(&format!("ALTER SYSTEM SET {} = :'{}';\n", s.name, s.name));
            vars.push((s.name.to_string(), s.wanted.clone()));
        }
        let mut changed: Vec<String> = plan.changes().map(|s| s.name.to_string()).collect();
        if matches!(plan.foreign, Some(Foreign::Library(_))) {
            changed.insert(0, "archive_library".to_string());
        }
        if sql.is_empty() {
            let pending = self.pending_restart(&load_time)?.1;
            return Ok((
                plan,
                ApplyReport {
                    changed,
                    reloaded: true,
                    pending_restart: pending,
                },
            ));
        }
        sql.push_str("SELECT pg_reload_conf();\n");
        let vars_ref: Vec<(&str, &str)> =
            vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        tools::psql(&self.psql, &self.conn, &sql, &vars_ref).map_err(|e| {
            e.context(
                "setting the archiving parameters through ALTER SYSTEM (it needs a superuser, \
                 or GRANT ALTER SYSTEM ON PARAMETER)",
            )
        })?;
        // The postmaster reloads on its own time; a session started after it did sees the
        // new values and `pending_restart`.
        let t0 = Instant::now();
        let (reloaded, pending) = loop {
            let (reloaded, pending) = self.pending_restart(&load_time)?;
            if reloaded || t0.elapsed() > RELOAD_WAIT {
                break (reloaded, pending);
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        Ok((
            plan,
            ApplyReport {
                changed,
                reloaded,
                pending_restart: pending,
            },
        ))
    }

    /// Has the configuration been loaded since `before`, and which settings wait for a
    /// restart?
    fn pending_restart(&self, before: &str) -> Result<(bool, Vec<String>)> {
        #[derive(Deserialize)]
        struct Pending {
            reloaded: bool,
            pending: Vec<String>,
        }
        let p: Pending = tools::psql_json(
            &self.psql,
            &self.conn,
            "SELECT json_build_object(
               'reloaded', pg_conf_load_time() > :'before'::timestamptz,
               'pending', (SELECT coalesce(json_agg(name ORDER BY name), '[]'::json)
                           FROM pg_settings WHERE pending_restart AND name IN
                             ('wal_level', 'archive_mode', 'archive_command',
                              'archive_library', 'archive_timeout')));",
            &[("before", before)],
        )?;
        Ok((p.reloaded, p.pending))
    }
}

/// One setting's plan. `configured`: the value in the configuration files, when they hold
/// one that waits for a restart (`pending_restart`): if that is the wanted one, only the
/// restart is missing.
fn setting(
    name: &'static str,
    row: &Row,
    current: Option<String>,
    wanted: String,
    configured: Option<String>,
) -> SettingPlan {
    let pending = row.pending_restart;
    let target = match (pending, configured) {
        (true, Some(c)) => Some(c),
        _ => current.clone(),
    };
    SettingPlan {
        name,
        change: target.as_deref() != Some(wanted.as_str()),
        current,
        wanted,
        restart: row.context == "postmaster",
        // Sources above the configuration files in PostgreSQL's order of precedence that a
        // server-wide setting can have.
        fixed_elsewhere: matches!(row.source.as_str(), "command line" | "override"),
        source: row.source.clone(),
        pending_restart: pending,
    }
}

/// An enum setting as `pg_settings` shows it: `archive_mode = 'True'` in a file is `on`,
/// and `wal_level`'s old names are `replica`.
fn normal_enum(v: &str) -> String {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => "on".to_string(),
        "false" | "no" | "0" => "off".to_string(),
        "archive" | "hot_standby" => "replica".to_string(),
        other => other.to_string(),
    }
}

/// Is `command` one that `setup-archiving` wrote: a program named `coffer...` running
/// `wal-push %p`? Another coffer repository is still coffer's archive, so moving it needs
/// no `--force`.
pub fn is_coffer_wal_push(command: &str) -> bool {
    let t = command.trim_start();
    let first = match t.strip_prefix('\'') {
        Some(quoted) => quoted.split('\'').next(),
        None => t.split(' ').next(),
    }
    .unwrap_or("");
    let program = first.rsplit('/').next().unwrap_or("");
    program.starts_with("coffer") && command.trim_end().ends_with(" wal-push %p")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coffer_commands_are_told_from_other_tools() {
        assert!(is_coffer_wal_push(
            "/usr/bin/coffer --repo=/srv/r wal-push %p"
        ));
        assert!(is_coffer_wal_push(
            "'/opt/my tools/coffer' '--repo=/srv/a b' wal-push %p"
        ));
        assert!(!is_coffer_wal_push(
            "pgbackrest --stanza=main archive-push %p"
        ));
        assert!(!is_coffer_wal_push("wal-g wal-push %p"));
        assert!(!is_coffer_wal_push("cp %p /mnt/coffer/%f"));
        assert!(!is_coffer_wal_push(
            "/usr/bin/coffer --repo=/r wal-push %p; rm x"
        ));
    }
}
