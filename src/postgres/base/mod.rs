//! `backup --postgres-base URL`: a physical base backup of a PostgreSQL cluster, stored as
//! a snapshot whose root is the data directory, ready to be restored and started with
//! recovery from the archived WAL.
//!
//! How (PostgreSQL's "low level" non-exclusive backup API):
//! 1. One psql session (`session.rs`) reads the server's settings and refuses a server
//!    whose backup could not be restored: no WAL archiving, a standby, PostgreSQL before
//!    15 (`server.rs`). coffer reads the data directory itself, so it must run on the
//!    database host: the directory the server names is opened and its `pg_control` must
//!    carry the server's system identifier.
//! 2. Inside the backup (repository lock held, index loaded), the same session calls
//!    `pg_backup_start(label, fast => true)`: a checkpoint, and full-page writes forced on,
//!    so that any page torn by a concurrent write is rewritten by WAL replay.
//! 3. The data directory is read (`walk.rs`): what PostgreSQL's documentation says to
//!    leave out is left out (`layout.rs`), tablespaces are stored as folders under
//!    `pg_tblspc/<oid>/` (a restore gets them in place, which PostgreSQL 15 accepts during
//!    recovery only with `allow_in_place_tablespaces = on`; their original locations are in
//!    the record), relation files are cut at page-aligned fixed boundaries and their page
//!    checksums verified as they are read (`relfile.rs`, `page.rs`).
//! 4. `pg_backup_stop(wait_for_archive => true)` ends the backup and waits, at most
//!    `archive_wait`, until the WAL up to its end is archived; the label it returns is
//!    stored as the file `backup_label` at the snapshot's root, and everything the restore
//!    needs to know goes into the snapshot's record (`info.rs`).
//!
//! Whatever fails (an unreadable file, the archive wait, Ctrl-C), no snapshot is written,
//! and psql is stopped, which ends the backup on the server. Pages that fail their checksum
//! do not stop the backup: they are reported, counted in the record, and the caller decides
//! (the CLI exits 1).

mod info;
mod layout;
mod page;
mod relfile;
mod server;
mod session;
mod walk;

pub use info::{BaseBackupInfo, Tablespace};
pub use layout::{choose_block, relation_block};
pub use page::{checksum as page_checksum, verify as verify_page, Lsn, Verdict};

use super::conn::Conn;
use super::tools;
use super::url::PgUrl;
use crate::backup::{backup, synthetic_file, BackupOptions, BackupOutcome, BuiltSource};
use crate::backup::{Source, SourceContext};
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::Tree;
use crate::id::SnapshotId;
use crate::progress::Progress;
use crate::repo::Repository;
use relfile::{PageCounts, Relations};
use server::Server;
use session::Session;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use walk::DataWalk;

/// `Snapshot::source` of a base backup.
pub const SOURCE: &str = "postgres-base";
/// How long `pg_backup_stop` may wait for the WAL to be archived, unless told otherwise.
/// The server switches to a new WAL segment when the backup stops, so a working archive
/// needs seconds; minutes leave room for an archive that is catching up.
pub const DEFAULT_ARCHIVE_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct PgBaseOptions {
    /// Folder holding `psql`; default: searched for.
    pub pg_bin: Option<PathBuf>,
    /// How long to wait for the backup's WAL to be archived.
    pub archive_wait: Duration,
}

impl Default for PgBaseOptions {
    fn default() -> Self {
        PgBaseOptions {
            pg_bin: None,
            archive_wait: DEFAULT_ARCHIVE_WAIT,
        }
    }
}

#[derive(serde::Deserialize)]
struct Started {
    lsn: String,
    time_us: i64,
}

#[derive(serde::Deserialize)]
struct Stopped {
    lsn: String,
    label: String,
    map: Option<String>,
    wal_file: String,
    time_us: i64,
}

/// Take a base backup of the cluster at `url` as a new snapshot. Returns the outcome even
/// when pages failed their checksum: see [`BaseBackupInfo::checksum_failures`].
pub fn backup_base(
    repo: &Repository,
    url: &str,
    pg: &PgBaseOptions,
    opts: &BackupOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<BackupOutcome> {
    let url = PgUrl::parse(url)?;
    let conn = Conn::new(url.clone())?;
    let psql = tools::find("psql", pg.pg_bin.as_deref(), None)?;
    let label = format!(
        "coffer base backup {}",
        crate::browse::format_time_rfc3339(repo.clock().now())
    );
    let mut session = Session::open(&psql, &conn, &[("label", &label)])?;
    let server = Server::check(&mut session, &conn, cancel)?;
    let root = server::open_data_directory(&server, &conn)?;
    let system_identifier = server.system_identifier()?;
    let path = format!("/postgres-base/{system_identifier}");
    let parent = previous_base_backup(repo, &opts.host, &path)?;
    let parent_block = parent
        .as_ref()
        .and_then(|(_, s)| BaseBackupInfo::from_snapshot(s).ok())
        .map(|b| b.relation_block);
    let parent = parent.map(|(id, _)| id);
    let archive_wait = pg.archive_wait;
    let server_label = url.server_label();
    let build = move |ctx: &SourceContext| -> Result<BuiltSource> {
        let mut session = session;
        let started: Started = session.json(
            "SELECT json_build_object('lsn', pg_backup_start(:'label', fast => true), \
             'time_us', (extract(epoch FROM statement_timestamp()) * 1000000)::bigint);",
            ctx.cancel,
        )?;
        let start = parse_lsn(&started.lsn)?;
        let (relation_bytes, all_bytes) = walk::measure(root.as_fd());
        let block = layout::choose_block(relation_bytes, server.block_size, parent_block);
        ctx.progress.finish();
        ctx.progress.start("backup", Some(all_bytes));
        let counts = PageCounts::default();
        let walk = DataWalk {
            ctx,
            relations: Relations {
                saver: ctx.saver,
                page: server.block_size,
                block,
                segment_pages: server.segment_pages,
                verify: server.data_checksums(),
                start,
                counts: &counts,
                cancel: ctx.cancel,
                progress: ctx.progress,
            },
            data_dir: &server.data_directory,
            version_dir: format!("PG_{}_", server.version_num / 10_000),
            tablespaces: Mutex::new(Vec::new()),
        };
        let mut nodes = walk.root_nodes(root.as_fd())?;
        let stopped = stop_backup(&mut session, &psql, &conn, archive_wait, ctx.cancel)?;
        session.close();
        nodes.push(label_node(ctx, &root, &stopped.label)?);
        let (_, start_wal_file, timeline) =
            server::label_start(&stopped.label).ok_or_else(|| {
                Error::new(
                    ErrorKind::Io,
                    format!(
                        "pg_backup_stop returned a backup label coffer cannot read: {:.300}",
                        stopped.label
                    ),
                )
            })?;
        let mut tablespaces: Vec<Tablespace> = walk
            .tablespaces
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .map(|(oid, target)| Tablespace {
                oid,
                location: String::from_utf8_lossy(&target).into_owned(),
            })
            .collect();
        tablespaces.sort_by_key(|t| t.oid);
        let info = BaseBackupInfo {
            system_identifier,
            timeline,
            start_lsn: start,
            stop_lsn: parse_lsn(&stopped.lsn)?,
            start_wal_file,
            stop_wal_file: stopped.wal_file,
            start_time_ns: started.time_us.saturating_mul(1000),
            stop_time_ns: stopped.time_us.saturating_mul(1000),
            server_version: server.version.clone(),
            wal_segment_size: server.wal_segment_size,
            data_checksums: server.data_checksums(),
            pages_checked: counts.checked.load(Ordering::Relaxed),
            checksum_failures: counts.failures.load(Ordering::Relaxed),
            relation_block: block,
            data_directory: server.data_directory.clone(),
            server: server_label,
            tablespaces,
            tablespace_map: stopped.map.filter(|m| !m.is_empty()),
        };
        let root_id = ctx.store_tree(&Tree::new(nodes)?)?;
        Ok(BuiltSource {
            root: root_id,
            paths: vec![path.into_bytes()],
            source: SOURCE.to_string(),
            info: info.to_info(),
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

fn parse_lsn(text: &str) -> Result<Lsn> {
    text.parse()
        .map_err(|e: String| Error::new(ErrorKind::Io, e))
}

/// End the backup, waiting at most `limit` for its WAL to be archived.
fn stop_backup(
    session: &mut Session,
    psql: &tools::Tool,
    conn: &Conn,
    limit: Duration,
    cancel: &AtomicBool,
) -> Result<Stopped> {
    let sql = "SELECT json_build_object('lsn', s.lsn, 'label', s.labelfile, \
               'map', s.spcmapfile, 'wal_file', pg_walfile_name(s.lsn), \
               'time_us', (extract(epoch FROM clock_timestamp()) * 1000000)::bigint) \
               FROM pg_backup_stop(wait_for_archive => true) s;";
    match session.run_within(sql, Some(limit), cancel)? {
        Some(lines) => session::parse_json(&lines),
        None => Err(Error::new(
            ErrorKind::Io,
            format!(
                "the WAL this base backup needs was not archived within {} (pg_backup_stop \
                 waits for it){}: check archive_command and the server's log, or allow \
                 longer with --wait-for-archive; no snapshot was saved",
                duration_text(limit),
                archiver_state(psql, conn)
            ),
        )),
    }
}

/// `5m` or `90s`, as the option is written.
fn duration_text(d: Duration) -> String {
    match d.as_secs() {
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// What `pg_stat_archiver` says about failures, for the message of an archive wait that
/// timed out; empty if it says nothing useful or cannot be read.
fn archiver_state(psql: &tools::Tool, conn: &Conn) -> String {
    #[derive(serde::Deserialize)]
    struct Archiver {
        failed_count: u64,
        last_failed_wal: Option<String>,
    }
    let sql = "SELECT json_build_object('failed_count', failed_count, \
               'last_failed_wal', last_failed_wal) FROM pg_stat_archiver;";
    match tools::psql_json::<Archiver>(psql, conn, sql, &[]) {
        Ok(a) if a.failed_count > 0 => format!(
            " (the archiver failed {} times, last on {})",
            a.failed_count,
            a.last_failed_wal.as_deref().unwrap_or("?")
        ),
        _ => String::new(),
    }
}

/// The file `backup_label` at the snapshot's root: the label `pg_backup_stop` returned,
/// owned like the data directory, 0600 as the server writes it.
fn label_node(
    ctx: &SourceContext,
    root: &OwnedFd,
    label: &str,
) -> Result<crate::format::tree::Node> {
    let (content, size) = ctx.store_stream(label.as_bytes())?;
    let mut node = synthetic_file(b"backup_label", 0o600, ctx.time_ns, size, content);
    if let Ok(st) = rustix::fs::fstat(root) {
        node.uid = st.st_uid;
        node.gid = st.st_gid;
    }
    let c = ctx.counters;
    c.files_new.fetch_add(1, Ordering::Relaxed);
    c.total_bytes.fetch_add(size, Ordering::Relaxed);
    c.bytes_read.fetch_add(size, Ordering::Relaxed);
    Ok(node)
}

/// The newest base backup of the same cluster from this host: recorded as the parent, and
/// its block size kept if it still fits.
fn previous_base_backup(
    repo: &Repository,
    host: &str,
    path: &str,
) -> Result<Option<(SnapshotId, Snapshot)>> {
    let (snaps, _damaged) = repo.readable_snapshots()?;
    Ok(snaps
        .into_iter()
        .rev()
        .find(|(_, s)| s.source == SOURCE && s.host == host && s.paths == [path.as_bytes()]))
}
