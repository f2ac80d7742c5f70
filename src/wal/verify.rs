//! `check`'s look at the WAL archive: every object's header opens (read from the storage,
//! not the cache); with `--read-data` every object is read whole, checked against its name
//! without the key, and its body opened and checked against the header's hash; the history
//! files are read; and the chain of every kept base backup is followed (`chain.rs`).

use super::catalog::{Catalog, WalEntry};
use super::chain::{self, ChainReport, Switch};
use super::fetch::read_archived;
use super::retention;
use crate::error::Result;
use crate::format::snapshot::Snapshot;
use crate::format::wal::{WalHeader, WalKind};
use crate::id::SnapshotId;
use crate::repo::Repository;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;

/// What `check` found in the WAL archive.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WalCheck {
    /// Objects whose header opened, and their stored bytes.
    pub files: u64,
    pub bytes: u64,
    /// Objects read whole and verified (`--read-data`).
    pub read: u64,
    pub chain: ChainReport,
    /// Damage and gaps: (object, what is wrong). Reported by `check` as its problems.
    #[serde(skip)]
    pub problems: Vec<(String, String)>,
}

/// Check the archive, with `snapshots` the repository's (kept) snapshots. `read_share`:
/// with `--read-data`, the share of objects to read whole (1.0 for all). `None` when the
/// repository holds no WAL.
pub fn check_archive(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    read_share: Option<f64>,
) -> Result<Option<WalCheck>> {
    let catalog = Catalog::load_from_storage(repo)?;
    let (bases, unknown) = retention::base_backups(snapshots);
    if catalog.entries.is_empty() && catalog.unreadable.is_empty() && bases.is_empty() {
        return Ok(None);
    }
    let mut out = WalCheck {
        files: catalog.entries.len() as u64,
        bytes: catalog.entries.iter().map(|e| e.stored).sum(),
        ..Default::default()
    };
    for (name, e) in &catalog.unreadable {
        out.problems.push((
            name.to_string(),
            format!("WAL file header does not open: {e}"),
        ));
    }
    for id in &unknown {
        out.problems.push((
            format!("snapshot {}", id.short()),
            "base backup records no timeline and start LSN: its WAL chain cannot be checked"
                .to_string(),
        ));
    }
    if let Some(share) = read_share {
        read_all(repo, &catalog, share, &mut out);
    }
    let mut histories: BTreeMap<u32, Vec<Switch>> = BTreeMap::new();
    for e in catalog
        .entries
        .iter()
        .filter(|e| e.header.kind == WalKind::History)
    {
        let parsed = read_archived(repo, &catalog, &e.header.name).and_then(|bytes| {
            let bytes = bytes.unwrap_or_default();
            chain::parse_history(&String::from_utf8_lossy(&bytes))
        });
        match parsed {
            Ok(h) => {
                histories.insert(e.header.timeline, h);
            }
            Err(err) => out.problems.push((
                e.object.to_string(),
                format!("history file {} cannot be read: {err}", e.header.name),
            )),
        }
    }
    out.chain = chain::verify(&catalog, &bases, &histories);
    for g in &out.chain.gaps {
        out.problems
            .push((format!("WAL {}", g.first), g.describe()));
    }
    for tl in &out.chain.missing_history {
        out.problems.push((
            format!("WAL {tl:08X}.history"),
            format!(
                "timeline {tl} is in the archive without its history file: recovery cannot \
                 follow it (PostgreSQL archives it when a server is promoted)"
            ),
        ));
    }
    Ok(Some(out))
}

/// Read `share` of the objects whole (chosen at random, as for packs: `sample.rs`): the bytes against
/// the name, then the body against the header.
fn read_all(repo: &Repository, catalog: &Catalog, share: f64, out: &mut WalCheck) {
    let chosen: Vec<&WalEntry> =
        crate::sample::random_share(catalog.entries.iter().collect(), share, |e| {
            e.object.hash[..4].try_into().expect("4 bytes")
        });
    let found: Vec<(String, String)> = chosen
        .par_iter()
        .filter_map(|e| {
            let checked = repo.read_object(&e.object).and_then(|bytes| {
                let (header, _) = WalHeader::decode_file(repo.keys(), &bytes)?;
                if header != e.header {
                    return Err(crate::error::Error::corrupt(
                        "its header differs from the one listed",
                    ));
                }
                Ok(())
            });
            checked.err().map(|err| {
                (
                    e.object.to_string(),
                    format!("WAL file {}: {err}", e.header.name),
                )
            })
        })
        .collect();
    out.read = chosen.len() as u64;
    out.problems.extend(found);
}
