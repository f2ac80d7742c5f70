//! The PostgreSQL source: `backup --postgres URL` stores a `pg_dump` of one database (and,
//! if asked, `pg_dumpall --globals-only`) as a snapshot; `restore --to-postgres URL` loads
//! it into a new or empty database and checks every table's row count against the count
//! recorded at backup time.
//!
//! `setup-archiving URL` reads and sets the server's WAL archiving settings (`archiving.rs`,
//! with the quoting of `archive_command` in `archive_command.rs`).
//!
//! The client programs (`pg_dump`, `pg_dumpall`, `psql`) do the talking to the server; see
//! `tools.rs` for how they are found and run, `conn.rs` for how they get the credentials,
//! and `restrict.rs` for why nothing in a snapshot can make psql run a command.
//!
//! Snapshot record (`Snapshot::info`): `database`,
//! `server` (host:port), `url` (without its secrets), `server-version`, `encoding`,
//! `pg-dump-version`, `pg-dump-options`, `dump-file`, `globals-file` (if included),
//! `tables`, `rows`, and `rows:<schema>.<table>` for each table.

mod archive_command;
mod archiving;
pub mod base;
mod conn;
mod counts;
mod dump;
pub mod pitr;
mod restore;
mod restrict;
mod tools;
mod url;
mod verify;

pub use archive_command::{conf_value, shell_command};
pub use archiving::{
    is_coffer_wal_push, ApplyReport, ArchivingPlan, ArchivingServer, ArchivingWanted, Foreign,
    SettingPlan,
};
pub use base::{backup_base, BaseBackupInfo, PgBaseOptions};
pub use dump::backup_database;
pub use restore::{restore_database, PgRestoreReport, DRILL_MARKER};
pub use url::PgUrl;
pub use verify::{verify_row_counts, TableCheck};

use crate::format::snapshot::Snapshot;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// `Snapshot::source` of a PostgreSQL snapshot.
pub const SOURCE: &str = "postgres";
/// Info keys holding a table's row count start with this.
pub const ROWS_PREFIX: &str = "rows:";

#[derive(Debug, Clone, Default)]
pub struct PgBackupOptions {
    /// Also store roles and tablespaces (`pg_dumpall --globals-only`) as `globals.sql`.
    pub globals: bool,
    /// Folder holding `pg_dump`, `pg_dumpall` and `psql`; default: searched for.
    pub pg_bin: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct PgRestoreOptions {
    /// Drop and create again a target database that already holds tables, sequences or views.
    pub force: bool,
    /// Restore the snapshot's roles and tablespaces first (roles that exist are kept).
    pub globals: bool,
    /// Folder holding `psql`; default: searched for.
    pub pg_bin: Option<PathBuf>,
    /// The target is a drill's scratch database: one that exists is dropped (with `force`)
    /// only if it carries the drill's marker comment (`DRILL_MARKER`), and one that is
    /// created gets it.
    pub drill_scratch: bool,
}

/// A snapshot's recorded value for `key`.
pub fn info<'a>(snapshot: &'a Snapshot, key: &str) -> Option<&'a str> {
    snapshot
        .info
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The row counts a PostgreSQL snapshot recorded, per table, in dump order.
pub fn recorded_row_counts(snapshot: &Snapshot) -> Vec<(String, u64)> {
    snapshot
        .info
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(ROWS_PREFIX)?.to_string(), v.parse().ok()?)))
        .collect()
}

/// Run `work` while a watcher stops process `pid` (SIGTERM) as soon as `cancel` is set:
/// a dump or restore blocked on the server (a lock wait) must not keep Ctrl-C waiting.
fn kill_on_cancel<T>(pid: u32, cancel: &AtomicBool, work: impl FnOnce() -> T) -> T {
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if cancel.load(Ordering::Relaxed) {
                    // SAFETY: a plain syscall; the child is not reaped before `work` returns,
                    // so the pid still names it.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        let out = work();
        done.store(true, Ordering::Relaxed);
        out
    })
}
