//! `coffer wal-push PATH` (PostgreSQL's `archive_command`) and `coffer wal-fetch NAME DEST`
//! (its `restore_command`).

use super::common;
use super::{Global, EXIT_FAILURE, EXIT_OK};
use coffer::wal::{self, Fetched, Pushed};
use coffer::Result;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(after_help = "Use it as PostgreSQL's archive_command, e.g.\n  \
archive_command = '/usr/local/bin/coffer --repo /srv/backup --password-file /etc/coffer/password wal-push %p'\n\
(`coffer setup-archiving URL` prints the settings for your repository).\n\
Exit 0 only once the file is stored in the repository (in --min-regions regions);\n\
pushing a file the archive already holds with the same bytes is a success, with other bytes a failure.")]
pub struct PushArgs {
    /// The file PostgreSQL archives (`%p`): a WAL segment, a .partial segment, a .history or
    /// .backup file.
    pub path: PathBuf,
}

#[derive(clap::Args)]
#[command(after_help = "Use it as PostgreSQL's restore_command, e.g.\n  \
restore_command = '/usr/local/bin/coffer --repo /srv/backup --password-file /etc/coffer/password wal-fetch %f %p'\n\
Exit 0 when DEST was written; 1 when the archive does not hold NAME (normal at the end of\n\
recovery) or it could not be read.")]
pub struct FetchArgs {
    /// The archived file's name (`%f`).
    pub name: String,
    /// Where to write it (`%p`).
    pub dest: PathBuf,
    /// Folder for files fetched ahead (default: `coffer-readahead` beside DEST, in pg_wal).
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Only look in the spool; never open the repository (a restore that filled the spool
    /// with every file recovery needs uses this).
    #[arg(long)]
    pub spool_only: bool,
    /// How many following segments to fetch into the spool with each fetch from the repository.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub read_ahead: usize,
}

pub fn push(g: &Global, a: &PushArgs) -> Result<i32> {
    let repo = common::open(g)?;
    let report = wal::push_file(&repo, &a.path)?;
    let h = &report.header;
    if g.json {
        let (stored, object) = match &report.pushed {
            Pushed::Stored { object, stored } => (Some(*stored), Some(object.to_string())),
            Pushed::AlreadyArchived => (None, None),
        };
        common::print_json(&serde_json::json!({
            "file": h.name,
            "size": h.size,
            "already_archived": stored.is_none(),
            "stored_bytes": stored,
            "object": object,
            "timeline": h.timeline,
            "system_identifier": h.system_id.to_string(),
        }));
    } else if !g.quiet {
        match &report.pushed {
            Pushed::Stored { stored, .. } => common::print_out(format_args!(
                "archived {} ({} stored as {})\n",
                h.name,
                common::human_bytes(h.size),
                common::human_bytes(*stored)
            )),
            Pushed::AlreadyArchived => common::print_out(format_args!(
                "{} was already archived with the same contents\n",
                h.name
            )),
        }
    }
    Ok(EXIT_OK)
}

pub fn fetch(g: &Global, a: &FetchArgs) -> Result<i32> {
    let spool = a
        .spool
        .clone()
        .unwrap_or_else(|| wal::fetch::default_spool(&a.dest));
    // The spool first: no repository to open, no key to derive.
    let fetched = if wal::from_spool(&spool, &a.name, &a.dest)? {
        Fetched::FromSpool
    } else if a.spool_only {
        Fetched::NotArchived
    } else {
        let repo = common::open(g)?;
        let catalog = wal::Catalog::load(&repo)?;
        wal::fetch(&repo, &catalog, &a.name, &a.dest, &spool, a.read_ahead)?
    };
    if g.json {
        common::print_json(&serde_json::json!({
            "file": a.name,
            "found": fetched != Fetched::NotArchived,
            "from_spool": fetched == Fetched::FromSpool,
            "read_ahead": match fetched { Fetched::FromRepository { read_ahead } => read_ahead, _ => 0 },
        }));
    }
    if fetched == Fetched::NotArchived {
        // Normal at the end of recovery: PostgreSQL asks until a file is missing.
        if !g.quiet && !g.json {
            eprintln!("{} is not in the archive", a.name);
        }
        return Ok(EXIT_FAILURE);
    }
    Ok(EXIT_OK)
}
