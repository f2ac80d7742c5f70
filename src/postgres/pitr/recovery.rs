//! Setting a restored data directory up for recovery: `recovery.signal`, and in
//! `postgresql.auto.conf` (read last, so these win over the restored settings) the
//! `restore_command` that reads the spool this restore filled, the target, and
//! `archive_mode = off`.
//!
//! Why archiving is off: a restored copy is most often a drill or a check next to the live
//! server, and with the live server's `archive_command` it would push its own new timeline
//! into the production archive. After a real disaster, turn archiving back on once the
//! restored server is the one to keep (`coffer setup-archiving`): it archives on the new
//! timeline that promotion created, next to the old one, and coffer accepts it (same
//! cluster, new names).

use super::plan::Target;
use crate::error::{Error, Result};
use crate::wal::names::lsn_text;
use std::io::Write;
use std::path::Path;

/// What recovery does once it reaches the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetAction {
    /// End recovery and open for writes on a new timeline.
    #[default]
    Promote,
    /// Stay in recovery, read-only, so the result can be inspected (and recovery resumed).
    Pause,
    /// Stop the server.
    Shutdown,
}

impl TargetAction {
    pub fn setting(self) -> &'static str {
        match self {
            TargetAction::Promote => "promote",
            TargetAction::Pause => "pause",
            TargetAction::Shutdown => "shutdown",
        }
    }
}

/// A value quoted for postgresql.conf: in single quotes, a quote doubled.
pub fn conf_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// A word quoted for the shell that runs `restore_command`.
pub fn shell_quote(v: &str) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:=,".contains(&b))
    {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

/// PostgreSQL's timestamp input for `ns`, truncated to its microseconds and in UTC.
pub fn pg_time(ns: i64) -> String {
    let us = ns.div_euclid(1000) * 1000;
    let t = jiff::Timestamp::from_nanosecond(us as i128).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    t.strftime("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

/// The settings for `target`, in postgresql.conf syntax.
pub fn settings(
    restore_command: &str,
    target: &Target,
    action: TargetAction,
    port: Option<u16>,
) -> String {
    let mut s = String::new();
    let mut set = |k: &str, v: &str| s.push_str(&format!("{k} = {}\n", conf_quote(v)));
    set("restore_command", restore_command);
    set("recovery_target_timeline", "latest");
    match target {
        Target::End => {}
        Target::Time(ns) => set("recovery_target_time", &pg_time(*ns)),
        Target::Lsn(lsn) => set("recovery_target_lsn", &lsn_text(*lsn)),
        Target::Name(n) => set("recovery_target_name", n),
        Target::Immediate => set("recovery_target", "immediate"),
    }
    if *target != Target::End {
        set("recovery_target_action", action.setting());
    }
    set("archive_mode", "off");
    // A base backup stores tablespaces as folders in pg_tblspc, which PostgreSQL 15
    // recovers only with this on.
    set("allow_in_place_tablespaces", "on");
    if let Some(p) = port {
        s.push_str(&format!("port = {p}\n"));
    }
    s
}

/// Write `recovery.signal` and append `settings` to `postgresql.auto.conf` in `data`.
pub fn write(data: &Path, settings: &str, when: &str) -> Result<()> {
    let signal = data.join("recovery.signal");
    std::fs::write(&signal, b"").map_err(|e| Error::io(signal.display(), e))?;
    for stale in ["standby.signal", "postmaster.pid"] {
        let _ = std::fs::remove_file(data.join(stale));
    }
    let auto = data.join("postgresql.auto.conf");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&auto)
        .map_err(|e| Error::io(auto.display(), e))?;
    write!(
        f,
        "\n# Added by `coffer restore --to-postgres-data` at {when}. Remove these lines\n\
         # (and recovery.signal) only after recovery has ended.\n{settings}"
    )
    .and_then(|_| f.sync_all())
    .map_err(|e| Error::io(auto.display(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_quote_and_name_the_target() {
        let s = settings(
            "/usr/bin/coffer wal-fetch %f %p",
            &Target::Time(1_764_000_000_123_456_789),
            TargetAction::Promote,
            Some(5499),
        );
        assert!(
            s.contains("recovery_target_time = '2025-11-24 16:00:00.123456+00'"),
            "{s}"
        );
        assert!(s.contains("recovery_target_action = 'promote'"));
        assert!(s.contains("archive_mode = 'off'"));
        assert!(s.contains("port = 5499"));
        let s = settings("x", &Target::Name("it's".into()), TargetAction::Pause, None);
        assert!(s.contains("recovery_target_name = 'it''s'"), "{s}");
        let s = settings("x", &Target::End, TargetAction::Pause, None);
        assert!(!s.contains("recovery_target_action"), "{s}");
        assert_eq!(shell_quote("/a b/c'd"), r"'/a b/c'\''d'");
        assert_eq!(shell_quote("/usr/bin/coffer"), "/usr/bin/coffer");
    }
}
