//! The snapshot filters several commands share, with restic's names: `--tag`, `--host`,
//! `--path`.

use coffer::browse::{normalise, SnapshotFilter};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

#[derive(clap::Args, Clone, Default)]
pub struct Filter {
    /// Only snapshots with this tag (repeatable: every tag must be there).
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
    /// Only snapshots of this host (repeatable: any of them).
    #[arg(long = "host", value_name = "H")]
    pub hosts: Vec<String>,
    /// Only snapshots that include this absolute path (repeatable: every one of them).
    #[arg(long = "path", value_name = "P")]
    pub paths: Vec<PathBuf>,
}

impl Filter {
    pub fn snapshots(&self) -> SnapshotFilter {
        SnapshotFilter {
            tags: self.tags.clone(),
            hosts: self.hosts.clone(),
            paths: self
                .paths
                .iter()
                .map(|p| normalise(p.as_os_str().as_bytes()))
                .collect(),
        }
    }
}
