//! What a base backup checks before it starts: that the server can be restored from what
//! it archives, and that the data directory coffer is about to read is that server's.

use super::page::Lsn;
use super::session::Session;
use crate::error::{Error, ErrorKind, Result};
use crate::postgres::conn::Conn;
use rustix::fs::{Mode, OFlags, CWD};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;

/// The first version with `pg_backup_start` / `pg_backup_stop` (named
/// `pg_start_backup` / `pg_stop_backup`, with other arguments, before).
const MIN_VERSION_NUM: u32 = 150_000;

/// The server's settings a base backup depends on.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Server {
    pub version: String,
    pub version_num: u32,
    pub data_directory: String,
    pub archive_mode: String,
    pub archive_command: String,
    /// NULL before PostgreSQL 15.
    pub archive_library: Option<String>,
    pub wal_level: String,
    pub data_checksums: String,
    /// Bytes per page (`block_size`, 8,192 unless built otherwise).
    pub block_size: u32,
    /// Pages per relation segment file (`segment_size`: 131,072 pages, 1 GiB).
    pub segment_pages: u32,
    pub wal_segment_size: u64,
    /// `pg_control_system()`'s, as text: it is a bigint that JSON numbers cannot carry.
    pub system_identifier: String,
    pub in_recovery: bool,
}

const SETTINGS_SQL: &str = "SELECT json_build_object(\
 'version', current_setting('server_version'),\
 'version_num', current_setting('server_version_num')::int,\
 'data_directory', current_setting('data_directory'),\
 'archive_mode', current_setting('archive_mode'),\
 'archive_command', current_setting('archive_command'),\
 'archive_library', current_setting('archive_library', true),\
 'wal_level', current_setting('wal_level'),\
 'data_checksums', current_setting('data_checksums'),\
 'block_size', current_setting('block_size')::int,\
 'segment_pages', (SELECT setting::int FROM pg_settings WHERE name = 'segment_size'),\
 'wal_segment_size', (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'),\
 'system_identifier', (SELECT system_identifier::text FROM pg_control_system()),\
 'in_recovery', pg_is_in_recovery());";

impl Server {
    /// Read the settings, and refuse a server whose base backup could not be restored.
    pub fn check(session: &mut Session, conn: &Conn, cancel: &AtomicBool) -> Result<Server> {
        let s: Server = session.json(SETTINGS_SQL, cancel)?;
        s.refusal(conn).map_or(Ok(s), Err)
    }

    pub fn system_identifier(&self) -> Result<u64> {
        self.system_identifier.parse().map_err(|_| {
            Error::new(
                ErrorKind::Io,
                format!(
                    "the server reported system identifier {:?}, which is not a number",
                    self.system_identifier
                ),
            )
        })
    }

    pub fn data_checksums(&self) -> bool {
        self.data_checksums == "on"
    }

    /// Why a base backup of this server must not be taken, if it must not.
    fn refusal(&self, conn: &Conn) -> Option<Error> {
        let setup = "run `coffer setup-archiving URL --apply` (it sets wal_level, archive_mode \
                     and archive_command), restart PostgreSQL, then take the base backup";
        let why = if self.version_num < MIN_VERSION_NUM {
            format!(
                "{conn} runs PostgreSQL {}: base backups need PostgreSQL 15 or newer \
                 (pg_backup_start); use `coffer backup --postgres URL` for a dump",
                self.version
            )
        } else if self.in_recovery {
            format!("{conn} is a standby (in recovery): take the base backup from the primary")
        } else if self.wal_level == "minimal" {
            format!(
                "{conn} has wal_level = minimal, so it archives no WAL and a base backup of it \
                 could never be restored: {setup}"
            )
        } else if self.archive_mode == "off" {
            format!(
                "{conn} has archive_mode = off, and a base backup without archived WAL cannot be \
                 restored: {setup}"
            )
        } else if self.archive_command.trim().is_empty()
            && self.archive_library.as_deref().unwrap_or("").is_empty()
        {
            format!(
                "{conn} has archive_mode = {} but no archive_command, so nothing is archived \
                 and the backup would wait for its WAL forever: {setup}",
                self.archive_mode
            )
        } else if self.block_size % 128 != 0 || self.block_size == 0 || self.segment_pages == 0 {
            format!(
                "{conn} reports block_size {} and segment_size {} pages, which coffer cannot \
                 read pages with",
                self.block_size, self.segment_pages
            )
        } else {
            return None;
        };
        Some(Error::new(ErrorKind::Unsupported, why))
    }
}

/// Open the server's data directory on this machine, and make sure it is that server's:
/// the system identifier at the start of `global/pg_control` must be the server's. A
/// backup that read another cluster's files (coffer run on another machine that has a
/// cluster at the same path) would restore the wrong database.
pub fn open_data_directory(server: &Server, conn: &Conn) -> Result<OwnedFd> {
    let dir = &server.data_directory;
    let host = "run coffer on the database host, as the user that owns the data directory \
                (or root): it reads the data directory itself";
    let unreadable = |what: &str, e: std::io::Error| {
        Error::new(
            ErrorKind::NotFound,
            format!("cannot read {what} of {conn} here ({e}): {host}"),
        )
    };
    // The path the server reports is followed as it is (symlinks included); everything
    // below it is opened relative to this descriptor without following symlinks.
    let fd = rustix::fs::openat(
        CWD,
        dir.as_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| unreadable(&format!("the data directory {dir}"), e.into()))?;
    let control = rustix::fs::openat(
        &fd,
        "global/pg_control",
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| unreadable(&format!("{dir}/global/pg_control"), e.into()))?;
    let mut head = [0u8; 8];
    std::fs::File::from(control)
        .read_exact(&mut head)
        .map_err(|e| unreadable(&format!("{dir}/global/pg_control"), e))?;
    let here = control_system_identifier(head);
    let server_id = server.system_identifier()?;
    if here != server_id {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "{dir} on this machine belongs to another cluster (system identifier {here}) \
                 than the server at {conn} ({server_id}): {host}"
            ),
        ));
    }
    Ok(fd)
}

/// `pg_control` starts with the system identifier, a 64-bit integer in the byte order of
/// the machine that wrote it: the database host, which is this machine.
fn control_system_identifier(head: [u8; 8]) -> u64 {
    u64::from_ne_bytes(head)
}

/// `START WAL LOCATION: 0/2000028 (file 000000010000000000000002)` and `START TIMELINE: 1`
/// from a backup label.
pub fn label_start(label: &str) -> Option<(Lsn, String, u32)> {
    let field = |name: &str| {
        label
            .lines()
            .find_map(|l| l.strip_prefix(name).map(str::trim))
    };
    let location = field("START WAL LOCATION:")?;
    let (lsn, rest) = location.split_once(' ')?;
    let file = rest.trim().strip_prefix("(file ")?.strip_suffix(')')?;
    let timeline = field("START TIMELINE:")?.parse().ok()?;
    Some((lsn.parse().ok()?, file.to_string(), timeline))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_fields() {
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
                     CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\n\
                     BACKUP FROM: primary\nSTART TIME: 2026-12-02 14:12:11 UTC\nLABEL: x\n\
                     START TIMELINE: 1\n";
        assert_eq!(
            label_start(label),
            Some((Lsn(0x200_0028), "000000010000000000000002".into(), 1))
        );
        assert_eq!(label_start("LABEL: x\n"), None);
    }

    #[test]
    fn control_file_identifier() {
        let id: u64 = 7_714_709_260_116_162_097;
        assert_eq!(control_system_identifier(id.to_ne_bytes()), id);
    }

    fn server() -> Server {
        Server {
            version: "15.18".into(),
            version_num: 150_018,
            data_directory: "/d".into(),
            archive_mode: "on".into(),
            archive_command: "cp %p /a/%f".into(),
            archive_library: Some(String::new()),
            wal_level: "replica".into(),
            data_checksums: "on".into(),
            block_size: 8192,
            segment_pages: 131_072,
            wal_segment_size: 16 << 20,
            system_identifier: "1".into(),
            in_recovery: false,
        }
    }

    #[test]
    fn refusals() {
        let conn = Conn::new(crate::postgres::PgUrl::parse("postgresql://h/db").unwrap()).unwrap();
        assert!(server().refusal(&conn).is_none());
        type Change = fn(&mut Server);
        let cases: [(Change, &str); 5] = [
            (|s| s.archive_mode = "off".into(), "archive_mode = off"),
            (|s| s.wal_level = "minimal".into(), "wal_level = minimal"),
            (|s| s.archive_command = String::new(), "no archive_command"),
            (|s| s.in_recovery = true, "standby"),
            (|s| s.version_num = 140_000, "15 or newer"),
        ];
        for (change, says) in cases {
            let mut s = server();
            change(&mut s);
            let e = s.refusal(&conn).expect("refused");
            assert_eq!(e.kind(), ErrorKind::Unsupported);
            assert!(e.to_string().contains(says), "{e}");
            if !says.contains("standby") && !says.contains("15") {
                assert!(e.to_string().contains("coffer setup-archiving"), "{e}");
            }
        }
        // An archive library instead of a command is archiving too.
        let mut s = server();
        s.archive_command = String::new();
        s.archive_library = Some("basic_archive".into());
        assert!(s.refusal(&conn).is_none());
    }
}
