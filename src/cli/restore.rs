//! `coffer restore SNAPSHOT --target DIR [--include PATH]...`

use super::common::{self, print_json};
use super::progress::Bar;
use super::{Global, EXIT_FAILURE, EXIT_OK};
use coffer::browse::{find_snapshot_tagged, normalise};
use coffer::restore::overwrite::Overwrite;
use coffer::restore::{restore, RestoreOptions};
use coffer::Result;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// ID, ID prefix, `latest` or `@TIME`.
    pub snapshot: String,
    /// Choose `latest` or `@TIME` among the snapshots with this tag only (repeatable: every
    /// tag must be there), e.g. `--tag job:app --tag source:files`.
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
    /// What to do with a file already where one is restored (restic's meanings): always
    /// replace it; if-changed: leave it when size and modification time match the
    /// snapshot's; if-newer: leave it when modified at or after the snapshot's time for it;
    /// never: leave it.
    #[arg(long, value_enum, value_name = "WHEN", default_value = "always")]
    pub overwrite: OverwriteArg,
    /// Folder to restore into; snapshot path /srv/data comes back as DIR/srv/data.
    #[arg(
        long,
        short = 't',
        value_name = "DIR",
        required_unless_present_any = ["to_postgres", "to_bucket", "to_postgres_data"]
    )]
    pub target: Option<PathBuf>,
    /// Restore only this path of the snapshot and what is below it (repeatable).
    #[arg(long = "include", value_name = "PATH")]
    pub includes: Vec<std::ffi::OsString>,
    /// Restore a --postgres snapshot into this database instead: it is created if missing,
    /// must hold no tables, sequences or views (else exit 1, see --force), and every table's
    /// row count is checked against the snapshot's record afterwards.
    #[arg(long, value_name = "URL", conflicts_with_all = ["target", "includes"])]
    pub to_postgres: Option<String>,
    /// With --to-postgres: drop a non-empty target database and create it again.
    /// With --to-bucket: write into a bucket or prefix that already holds objects.
    #[arg(long)]
    pub force: bool,
    /// With --to-postgres: restore the snapshot's roles and tablespaces first (roles that
    /// exist keep existing and get the recorded attributes).
    #[arg(long, requires = "to_postgres")]
    pub globals: bool,
    /// With --to-postgres: folder holding psql (default: the newest one found); with
    /// --to-postgres-data: folder holding pg_ctl and pg_controldata.
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
    #[command(flatten)]
    pub pitr: super::pitr::PitrArgs,
    /// Restore a --bucket snapshot into this bucket URL instead: every object with its
    /// content type and user metadata; the bucket or prefix must be empty (see --force).
    #[arg(long, value_name = "URL", conflicts_with_all = ["target", "includes", "to_postgres"])]
    pub to_bucket: Option<String>,
}

pub fn run(g: &Global, a: &Args) -> Result<i32> {
    if let Some(dir) = &a.pitr.to_postgres_data {
        return super::pitr::restore(g, a, dir);
    }
    if let Some(url) = &a.to_postgres {
        return super::pg::restore(g, a, url);
    }
    if let Some(url) = &a.to_bucket {
        return super::bucket::restore(g, a, url);
    }
    if a.force {
        return Err(coffer::Error::invalid(
            "--force goes with --to-postgres or --to-bucket",
        ));
    }
    let target = a
        .target
        .clone()
        .ok_or_else(|| coffer::Error::invalid("give --target DIR or --to-postgres URL"))?;
    let repo = common::open(g)?;
    let (id, snap) = find_snapshot_tagged(&repo, &a.snapshot, &a.tags)?;
    let opts = RestoreOptions {
        target: target.clone(),
        includes: a.includes.iter().map(|p| normalise(p.as_bytes())).collect(),
        overwrite: a.overwrite.into(),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let bar = Bar::new(g.quiet, g.json);
    let out = restore(&repo, &snap, &opts, &bar, common::cancel_flag())?;
    let code = if out.errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILURE
    };
    if g.json {
        print_json(&serde_json::json!({
            "snapshot": id.to_hex(),
            "target": target,
            "outcome": out,
            "seconds": started.elapsed().as_secs_f64(),
            "exit_code": code,
        }));
    } else {
        for e in &out.errors {
            super::term::error(e);
        }
        if !g.quiet {
            if out.skipped > 0 {
                println!(
                    "left {} existing file(s) as they were (--overwrite {})",
                    out.skipped,
                    a.overwrite.name()
                );
            }
            println!(
                "restored {} files, {} directories, {} links/special ({}) from {} into {} in {:.1}s",
                out.files,
                out.dirs,
                out.links,
                common::human_bytes(out.bytes),
                id.short(),
                target.display(),
                started.elapsed().as_secs_f64()
            );
        }
        if !out.errors.is_empty() {
            eprintln!("coffer: {} path(s) could not be restored", out.errors.len());
        }
    }
    Ok(code)
}

/// `--overwrite`: restic's names.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum OverwriteArg {
    /// Replace whatever is there (the default).
    #[default]
    Always,
    /// Leave a file whose size and modification time match the snapshot's.
    IfChanged,
    /// Leave a file modified at or after the snapshot's time for it.
    IfNewer,
    /// Leave anything that is there.
    Never,
}

impl OverwriteArg {
    fn name(self) -> &'static str {
        match self {
            OverwriteArg::Always => "always",
            OverwriteArg::IfChanged => "if-changed",
            OverwriteArg::IfNewer => "if-newer",
            OverwriteArg::Never => "never",
        }
    }
}

impl From<OverwriteArg> for Overwrite {
    fn from(a: OverwriteArg) -> Overwrite {
        match a {
            OverwriteArg::Always => Overwrite::Always,
            OverwriteArg::IfChanged => Overwrite::IfChanged,
            OverwriteArg::IfNewer => Overwrite::IfNewer,
            OverwriteArg::Never => Overwrite::Never,
        }
    }
}
