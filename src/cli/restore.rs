//! `coffer restore SNAPSHOT --target DIR [--include PATH]...`

use super::common::{self, print_json};
use super::progress::Bar;
use super::{Global, EXIT_FAILURE, EXIT_OK};
use coffer::browse::{find_snapshot, normalise};
use coffer::restore::{restore, RestoreOptions};
use coffer::Result;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// ID, ID prefix, `latest` or `@TIME`.
    pub snapshot: String,
    /// Folder to restore into; snapshot path /srv/data comes back as DIR/srv/data.
    #[arg(long, short = 't', value_name = "DIR")]
    pub target: PathBuf,
    /// Restore only this path of the snapshot and what is below it (repeatable).
    #[arg(long = "include", value_name = "PATH")]
    pub includes: Vec<std::ffi::OsString>,
}

pub fn run(g: &Global, a: &Args) -> Result<i32> {
    let repo = common::open(g)?;
    let (id, snap) = find_snapshot(&repo, &a.snapshot)?;
    let opts = RestoreOptions {
        target: a.target.clone(),
        includes: a.includes.iter().map(|p| normalise(p.as_bytes())).collect(),
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
            "target": a.target,
            "outcome": out,
            "seconds": started.elapsed().as_secs_f64(),
            "exit_code": code,
        }));
    } else {
        for e in &out.errors {
            eprintln!("coffer: error: {e}");
        }
        if !g.quiet {
            println!(
                "restored {} files, {} directories, {} links/special ({}) from {} into {} in {:.1}s",
                out.files,
                out.dirs,
                out.links,
                common::human_bytes(out.bytes),
                id.short(),
                a.target.display(),
                started.elapsed().as_secs_f64()
            );
        }
        if !out.errors.is_empty() {
            eprintln!("coffer: {} path(s) could not be restored", out.errors.len());
        }
    }
    Ok(code)
}
