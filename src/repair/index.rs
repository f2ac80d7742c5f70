//! Step 3 of repair: mend the index against the packs that exist (format-spec §12.7).
//! Index files are read from the storage, not from the cache: the cache may still hold the
//! body of a file that is damaged now, and only the storage says what every machine sees.

use super::RepairReport;
use crate::backend::{ObjectKind, ObjectName};
use crate::error::{ErrorKind, Result};
use crate::format::index::{IndexFile, IndexPack};
use crate::id::{IndexId, PackId};
use crate::index::{Index, IndexBuilder};
use crate::progress::Progress;
use crate::repo::Repository;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;

/// Packs per index file that repair writes (as prune writes them).
const PACKS_PER_INDEX: usize = 256;

/// What the snapshots are checked against in step 4.
pub(super) struct Mended {
    /// The index as repair leaves it (with a dry run: as it would): the readable index
    /// files without the packs the listing lacks, and the packs indexed again.
    pub index: Index,
    /// Every pack with its listed size.
    pub packs: HashMap<PackId, u64>,
}

pub(super) fn mend(
    repo: &Repository,
    dry_run: bool,
    report: &mut RepairReport,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<Mended> {
    // Step 1 left only readable plans (a dry run leaves out the ones it would remove). Their
    // packs are unindexed on purpose once a sweep deleted their index files (§8).
    let planned: HashSet<PackId> = repo
        .plan_objects()?
        .objects
        .into_iter()
        .flat_map(|(_, p)| p.packs)
        .collect();
    let (files, damaged) = read_index_files(repo)?;
    // Listed after the index files are read: a pack that an index file names was stored
    // before that file (§8), so one that this listing lacks is gone, not on its way.
    let packs: HashMap<PackId, u64> = repo
        .backend()
        .list(ObjectKind::Pack)?
        .into_iter()
        .map(|(n, size)| (PackId(n.hash), size))
        .collect();

    let found = index_unlisted(repo, &files, &packs, &planned, report, progress, cancel)?;
    if !dry_run {
        write_index_files(repo, &found)?;
    }
    // A damaged index file cannot say which packs it listed: it goes once every pack is
    // listed by a readable one (or is planned), so nothing it could have listed is lost.
    for (id, e) in damaged {
        let name = ObjectName::new(ObjectKind::Index, id.0);
        let line = format!("{name}: {}", crate::repo::reason(&name, &e));
        if report.packs_unreadable.is_empty() {
            if !dry_run {
                repo.delete_index(&id)?;
            }
            report.index_files_removed.push(line);
        } else {
            report.index_files_kept.push(line);
        }
    }
    drop_missing_packs(repo, &files, &packs, dry_run, report)?;

    let mut builder = IndexBuilder::new();
    for p in files.iter().flat_map(|(_, f)| &f.packs).chain(&found) {
        if packs.contains_key(&p.id) {
            builder.add_pack(p);
        }
    }
    let mut index = builder.build();
    let recorded = index.packs_with_copies();
    index.prefer_copies(|p| packs.get(p).is_some_and(|s| recorded.get(p) == Some(s)));
    repo.invalidate_index();
    Ok(Mended { index, packs })
}

/// Every index file on the storage: the readable ones, and the damaged ones with why.
#[allow(clippy::type_complexity)]
fn read_index_files(
    repo: &Repository,
) -> Result<(Vec<(IndexId, IndexFile)>, Vec<(IndexId, crate::Error)>)> {
    let (mut files, mut damaged) = (Vec::new(), Vec::new());
    for (name, _) in repo.backend().list(ObjectKind::Index)? {
        let id = IndexId(name.hash);
        match repo.read_index_file(&id) {
            Ok(f) => files.push((id, f)),
            // Only a prune deletes index files, and none runs beside repair.
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Unsupported) => {
                damaged.push((id, e))
            }
            Err(e) => return Err(e),
        }
    }
    Ok((files, damaged))
}

/// Index entries, from their own headers, for the listed packs that no readable index file
/// lists and no plan names. Packs that cannot be read are reported, not indexed.
fn index_unlisted(
    repo: &Repository,
    files: &[(IndexId, IndexFile)],
    packs: &HashMap<PackId, u64>,
    planned: &HashSet<PackId>,
    report: &mut RepairReport,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<Vec<IndexPack>> {
    let covered: HashSet<PackId> = files
        .iter()
        .flat_map(|(_, f)| f.packs.iter().map(|p| p.id))
        .collect();
    let mut unlisted: Vec<(&PackId, &u64)> = packs
        .iter()
        .filter(|(id, _)| !covered.contains(*id) && !planned.contains(*id))
        .collect();
    unlisted.sort();
    progress.start_items("indexing packs", Some(unlisted.len() as u64));
    let mut found = Vec::new();
    for (id, size) in unlisted {
        crate::gc::check_cancel(cancel)?;
        let name = ObjectName::new(ObjectKind::Pack, id.0);
        match repo.index_entry_from_pack(id, *size) {
            Ok(entry) => {
                report.packs_indexed.push(name.path());
                found.push(entry);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Unsupported) => {
                report.packs_unreadable.push(e.to_string())
            }
            Err(e) => return Err(e),
        }
        progress.advance(1);
    }
    progress.finish();
    Ok(found)
}

/// Write index files again without the packs the listing lacks, then delete the old ones
/// (§8: the new file is stored before the old one goes), so that no backup relies on a pack
/// that is gone, and `check` no longer reports it.
fn drop_missing_packs(
    repo: &Repository,
    files: &[(IndexId, IndexFile)],
    packs: &HashMap<PackId, u64>,
    dry_run: bool,
    report: &mut RepairReport,
) -> Result<()> {
    let mut missing = HashSet::new();
    for (id, file) in files {
        let (keep, gone): (Vec<&IndexPack>, Vec<&IndexPack>) =
            file.packs.iter().partition(|p| packs.contains_key(&p.id));
        if gone.is_empty() {
            continue;
        }
        for p in gone {
            if missing.insert(p.id) {
                report
                    .packs_missing
                    .push(ObjectName::new(ObjectKind::Pack, p.id.0).path());
            }
        }
        if !dry_run {
            let keep: Vec<IndexPack> = keep.into_iter().cloned().collect();
            write_index_files(repo, &keep)?;
            repo.delete_index(id)?;
        }
        report
            .index_files_rewritten
            .push(ObjectName::new(ObjectKind::Index, id.0).path());
    }
    Ok(())
}

fn write_index_files(repo: &Repository, packs: &[IndexPack]) -> Result<()> {
    for chunk in packs.chunks(PACKS_PER_INDEX) {
        repo.write_index(&IndexFile {
            supersedes: vec![],
            packs: chunk.to_vec(),
        })?;
    }
    Ok(())
}
