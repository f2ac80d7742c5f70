//! `coffer dump SNAPSHOT PATH`: one file's contents to stdout.

use super::common;
use super::{Global, EXIT_OK};
use coffer::browse::{dump_file, find_node, find_snapshot_tagged, normalise};
use coffer::Result;
use std::os::unix::ffi::OsStrExt;

#[derive(clap::Args)]
pub struct Args {
    /// ID, ID prefix, `latest` or `@TIME`.
    pub snapshot: String,
    /// Choose `latest` or `@TIME` among the snapshots with this tag only (repeatable: every
    /// tag must be there), e.g. `--tag job:app --tag source:files`.
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
    /// The file's path in the snapshot (for a stdin backup, its --stdin-name).
    pub path: std::ffi::OsString,
}

pub fn run(g: &Global, a: &Args) -> Result<i32> {
    let repo = common::open(g)?;
    let (_, snap) = find_snapshot_tagged(&repo, &a.snapshot, &a.tags)?;
    let node = find_node(&repo, &snap.root, &normalise(a.path.as_bytes()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    dump_file(&repo, &node, &mut out)?;
    use std::io::Write;
    out.flush()
        .map_err(|e| coffer::Error::io("writing output", e))?;
    Ok(EXIT_OK)
}
