//! The check use case: prove the repository is whole, or say exactly what is not.
//!
//! Structure (always): every object's bytes match its name (small objects are read in full),
//! index files, snapshots, locks, plans, wait records, reports and tombstones authenticate, every pack the index names exists with the
//! recorded size, and every tree, chunk list and chunk a snapshot needs is indexed.
//! Data (`--read-data`): every pack is read in full, its hash checked, and every blob
//! decrypted and verified against its ID. Then each snapshot is walked once more to name
//! every file and directory that depends on a damaged or missing blob.
//! The WAL archive (`wal::verify`): headers, with `--read-data` every byte, and the chain
//! of segments every kept base backup replays.

use crate::backend::{ObjectKind, ObjectName};
use crate::error::{ErrorKind, Result};
use crate::format::gc::{Lock, Plan, Wait};
use crate::format::keyfile::KeyFile;
use crate::format::pack;
use crate::format::report::Report;
use crate::format::snapshot::Snapshot;
use crate::format::tombstone::Tombstone;
use crate::format::tree::{ChunkList, Content, Tree};
use crate::format::BlobType;
use crate::id::{BlobId, IndexId, PackId, SnapshotId};
use crate::index::{BlobLocation, Index, IndexBuilder};
use crate::progress::Progress;
use crate::repo::tombstones::buried_names;
use crate::repo::Repository;
use crate::wal::verify::WalCheck;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub read_data: bool,
    /// Read only this percentage of packs (chosen by pack ID, so repeated runs with a
    /// rotating threshold are not needed for coverage: each run picks afresh at random).
    pub read_data_subset: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The damaged or missing object, e.g. `data/3f/3fa1...` or `blob 1a2b3c4d`.
    pub object: String,
    pub problem: String,
    /// `coffer repair` fixes it (or, for a snapshot that needs lost data, removes the
    /// snapshot with `--forget-broken`).
    pub repairable: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Affected {
    pub snapshot: String,
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub snapshots: u64,
    pub packs: u64,
    pub packs_read: u64,
    pub blobs: u64,
    pub problems: Vec<Problem>,
    pub affected: Vec<Affected>,
    /// Things worth knowing that are not damage (e.g. packs left by an interrupted backup).
    pub notes: Vec<String>,
    /// The PostgreSQL WAL archive, when the repository has one.
    pub wal: Option<WalCheck>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Would `coffer repair` fix some of the problems found?
    pub fn repairable(&self) -> bool {
        self.problems.iter().any(|p| p.repairable)
    }
}

/// What repair does about a tree or chunk list that cannot be read.
const FORGET_HINT: &str = "`coffer repair --forget-broken` removes the snapshots that need it";

/// What repair does about a damaged object of each kind (`None`: nothing).
fn repair_hint(kind: ObjectKind) -> Option<&'static str> {
    match kind {
        ObjectKind::Index => {
            Some("`coffer repair` indexes its packs again from their headers, then removes it")
        }
        ObjectKind::Lock | ObjectKind::Plan | ObjectKind::Wait => {
            Some("`coffer repair` removes it")
        }
        ObjectKind::Snapshot => Some("`coffer repair --forget-broken` removes it"),
        _ => None,
    }
}

/// A pack to read in full, with the blobs the index places in it (sorted by frame, offset).
struct PackToRead {
    id: PackId,
    size: u64,
    blobs: Vec<(BlobId, BlobLocation)>,
}

struct Checker<'a> {
    repo: &'a Repository,
    index: Index,
    /// Blobs known to be missing or damaged, with the reason.
    bad: HashMap<BlobId, String>,
    /// Trees whose whole subtree is known to be sound: shared by every snapshot, so each
    /// unchanged subtree is walked once per check, not once per snapshot.
    clean: HashSet<BlobId>,
    /// Deletion plans found, and the packs they name (format-spec §12).
    plans: usize,
    planned: HashSet<PackId>,
    /// Objects that authenticated tombstones name (format-spec §5.12).
    buried: HashSet<ObjectName>,
    report: CheckReport,
}

pub fn check(
    repo: &Repository,
    opts: &CheckOptions,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    let mut c = Checker {
        repo,
        index: Index::new(),
        bad: HashMap::new(),
        clean: HashSet::new(),
        plans: 0,
        planned: HashSet::new(),
        buried: HashSet::new(),
        report: CheckReport::default(),
    };
    // Tombstones first: a snapshot that one names was forgotten on purpose, and its data
    // may be pruned already.
    c.check_small_objects(&[ObjectKind::Tombstone])?;
    // Snapshots before the index: every blob of a snapshot was indexed before the snapshot
    // was stored (format-spec §8), so a backup that finishes meanwhile is not reported as
    // needing blobs that no index lists.
    let snapshots = c.load_snapshots()?;
    c.check_small_objects(&[
        ObjectKind::Config,
        ObjectKind::Key,
        ObjectKind::Index,
        ObjectKind::Lock,
        ObjectKind::Plan,
        ObjectKind::Wait,
        ObjectKind::Report,
    ])?;
    c.note_buried_objects()?;
    c.check_packs_exist()?;
    if opts.read_data {
        c.read_data(opts.read_data_subset, progress)?;
    }
    for (id, snap) in &snapshots {
        c.walk_snapshot(id, snap);
    }
    let share = opts
        .read_data
        .then(|| opts.read_data_subset.map_or(1.0, |p| p / 100.0));
    if let Some(wal) = crate::wal::verify::check_archive(repo, &snapshots, share)? {
        for (object, problem) in &wal.problems {
            c.problem(object, problem);
        }
        c.report.notes.extend(wal.chain.notes.iter().cloned());
        c.report.wal = Some(wal);
    }
    c.report.snapshots = snapshots.len() as u64;
    c.report.blobs = c.index.blob_count() as u64;
    Ok(c.report)
}

impl Checker<'_> {
    fn problem(&mut self, object: impl ToString, problem: impl ToString) {
        self.report.problems.push(Problem {
            object: object.to_string(),
            problem: problem.to_string(),
            repairable: false,
        });
    }

    /// A problem that `coffer repair` fixes; `hint` says how.
    fn repairable(&mut self, object: impl ToString, problem: impl ToString, hint: &str) {
        self.report.problems.push(Problem {
            object: object.to_string(),
            problem: format!("{} ({hint})", problem.to_string()),
            repairable: true,
        });
    }

    /// A damaged object: repairable or not, by its kind.
    fn damaged(&mut self, name: ObjectName, problem: impl ToString) {
        match repair_hint(name.kind) {
            Some(hint) => self.repairable(name, problem, hint),
            None => self.problem(name, problem),
        }
    }

    /// Every object of the small `kinds` (all but packs and snapshots): read in full, hash
    /// checked, decoded. Index files read make up `self.index`.
    fn check_small_objects(&mut self, kinds: &[ObjectKind]) -> Result<()> {
        let backend = self.repo.backend().clone();
        let mut builder = IndexBuilder::new();
        for &kind in kinds {
            for (name, _) in backend.list(kind)? {
                let bytes = match self.repo.read_object(&name) {
                    Ok(b) => b,
                    // A lock is replaced on every refresh and deleted at the end, and old
                    // reports are trimmed as new ones are saved: one that vanished between
                    // the listing and the read is not damage.
                    Err(e)
                        if matches!(kind, ObjectKind::Lock | ObjectKind::Report)
                            && e.kind() == ErrorKind::NotFound =>
                    {
                        continue
                    }
                    Err(e) => {
                        self.damaged(name, e);
                        continue;
                    }
                };
                let keys = self.repo.keys();
                let decoded = match kind {
                    ObjectKind::Key => KeyFile::decode(&bytes).map(|_| ()),
                    ObjectKind::Index => self
                        .repo
                        .read_index_file(&IndexId(name.hash))
                        .map(|f| builder.add_file(&f)),
                    ObjectKind::Lock => Lock::decode(keys, &bytes).map(|_| ()),
                    ObjectKind::Plan => Plan::decode(keys, &bytes).map(|p| {
                        self.plans += 1;
                        self.planned.extend(p.packs);
                    }),
                    ObjectKind::Wait => Wait::decode(keys, &bytes).map(|_| ()),
                    ObjectKind::Report => Report::decode(keys, &bytes).map(|_| ()),
                    ObjectKind::Tombstone => Tombstone::decode(keys, &bytes).map(|t| {
                        self.buried.extend(buried_names(&t));
                    }),
                    _ => Ok(()),
                };
                if let Err(e) = decoded {
                    self.damaged(name, e);
                }
            }
        }
        if kinds.contains(&ObjectKind::Index) {
            self.index = builder.build();
        }
        Ok(())
    }

    /// Objects that a tombstone names but that are still stored (somewhere, with regions):
    /// a deletion that some region missed. Not damage: `sync` with the password finishes it.
    fn note_buried_objects(&mut self) -> Result<()> {
        if self.buried.is_empty() {
            return Ok(());
        }
        let mut left = 0;
        for kind in [ObjectKind::Key, ObjectKind::Snapshot, ObjectKind::Wal] {
            left += self
                .repo
                .backend()
                .list(kind)?
                .iter()
                .filter(|(n, _)| self.buried.contains(n))
                .count();
        }
        if left > 0 {
            self.report.notes.push(format!(
                "{left} object(s) that tombstones name are still stored: a deletion that a \
                 region missed (run `coffer sync` with the password to finish it)"
            ));
        }
        Ok(())
    }

    fn load_snapshots(&mut self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let mut out = Vec::new();
        for (name, _) in self.repo.backend().list(ObjectKind::Snapshot)? {
            // Forgotten on purpose: its data may be pruned already (see `note_buried_objects`).
            if self.buried.contains(&name) {
                continue;
            }
            match self
                .repo
                .read_object(&name)
                .and_then(|b| Snapshot::decode(self.repo.keys(), &b))
            {
                Ok(s) => out.push((SnapshotId(name.hash), s)),
                Err(e) => self.damaged(name, e),
            }
        }
        out.sort_by_key(|(id, s)| (s.time_ns, *id));
        Ok(out)
    }

    fn mark_pack_bad(&mut self, pack: &PackId, reason: &str) {
        let ids: Vec<BlobId> = self
            .index
            .iter()
            .filter(|(_, loc)| loc.pack == *pack)
            .map(|(id, _)| id)
            .collect();
        for id in ids {
            self.bad.entry(id).or_insert_with(|| reason.to_string());
        }
    }

    /// Every indexed pack must be on the backend with the recorded size.
    fn check_packs_exist(&mut self) -> Result<()> {
        let listed: HashMap<PackId, u64> = self
            .repo
            .backend()
            .list(ObjectKind::Pack)?
            .into_iter()
            .map(|(n, size)| (PackId(n.hash), size))
            .collect();
        // A blob listed twice (stored again by a backup that found its pack gone) is
        // judged by the copy that is there.
        let recorded = self.index.packs_with_copies();
        self.index
            .prefer_copies(|p| listed.get(p).is_some_and(|s| recorded.get(p) == Some(s)));
        self.report.packs = self.index.packs().len() as u64;
        for (id, size) in self.index.packs().to_vec() {
            let name = ObjectName::new(ObjectKind::Pack, id.0);
            match listed.get(&id) {
                // A prune deleted it after this check read the index files. Only a snapshot
                // that needs one of its blobs makes that a problem (the walk reports it).
                None if self.planned.contains(&id) => {
                    self.mark_pack_bad(
                        &id,
                        &format!("its pack {} was deleted by a prune", id.short()),
                    );
                }
                None => {
                    self.repairable(
                        name,
                        "pack is missing",
                        "`coffer repair` rewrites the index without it and lists the snapshots that need it",
                    );
                    self.mark_pack_bad(&id, &format!("its pack {} is missing", id.short()));
                }
                Some(&found) if found != size => {
                    self.problem(name, format!("pack has {found} bytes, the index records {size} (truncated or damaged)"));
                    self.mark_pack_bad(&id, &format!("its pack {} is truncated", id.short()));
                }
                Some(_) => {}
            }
        }
        let (planned, unindexed): (Vec<&PackId>, Vec<&PackId>) = listed
            .keys()
            .filter(|id| !self.index.has_pack(id))
            .partition(|id| self.planned.contains(*id));
        let unindexed = unindexed.len();
        if self.plans > 0 {
            self.report.notes.push(format!(
                "{} prune plan(s) pending: {} pack(s) to delete, {} of them no longer indexed (the next `coffer prune` finishes the job)",
                self.plans,
                self.planned.len(),
                planned.len()
            ));
        }
        if unindexed > 0 {
            self.report.notes.push(format!(
                "{unindexed} pack(s) are not in any index (left by a backup or prune that failed or was interrupted): `coffer prune` deletes them, or the next backup indexes them again"
            ));
        }
        Ok(())
    }

    /// Read packs in full, in parallel; verify every byte.
    fn read_data(&mut self, subset: Option<f64>, progress: &dyn Progress) -> Result<()> {
        let mut packs: Vec<PackToRead> = {
            let mut by_pack: HashMap<PackId, Vec<(BlobId, BlobLocation)>> = HashMap::new();
            for (id, loc) in self.index.iter() {
                by_pack.entry(loc.pack).or_default().push((id, loc));
            }
            self.index
                .packs()
                .iter()
                .map(|(id, size)| {
                    let mut blobs = by_pack.remove(id).unwrap_or_default();
                    blobs.sort_by_key(|(_, l)| (l.frame_offset, l.offset));
                    PackToRead {
                        id: *id,
                        size: *size,
                        blobs,
                    }
                })
                .collect()
        };
        if let Some(pct) = subset {
            packs = crate::sample::random_share(packs, pct / 100.0, |p| {
                p.id.0[..4].try_into().expect("4 bytes")
            });
        }
        let total: u64 = packs.iter().map(|p| p.size).fold(0, u64::saturating_add);
        progress.start("read data", Some(total));
        let found = Mutex::new(Vec::<(String, String, Vec<(BlobId, String)>)>::new());
        packs.par_iter().for_each(|p| {
            let (problems, bad) = self.read_pack(p);
            progress.advance(p.size);
            if !problems.is_empty() || !bad.is_empty() {
                let name = ObjectName::new(ObjectKind::Pack, p.id.0).to_string();
                found
                    .lock()
                    .expect("lock")
                    .push((name, problems.join("; "), bad));
            }
        });
        progress.finish();
        self.report.packs_read = packs.len() as u64;
        for (name, problem, bad) in found.into_inner().expect("lock") {
            if !problem.is_empty() {
                self.problem(&name, problem);
            }
            for (id, why) in bad {
                self.problem(format!("blob {}", id), format!("in {name}: {why}"));
                self.bad.entry(id).or_insert(why);
            }
        }
        Ok(())
    }

    /// Problems with the pack as a whole, and the blobs in it that fail verification. Frames
    /// are opened where the index places them, so a damaged header does not hide them.
    fn read_pack(&self, p: &PackToRead) -> (Vec<String>, Vec<(BlobId, String)>) {
        let name = ObjectName::new(ObjectKind::Pack, p.id.0);
        let bytes = match self.repo.backend().get(&name) {
            Ok(b) => b,
            Err(e) => {
                let why = format!("pack cannot be read: {e}");
                return (
                    vec![why.clone()],
                    p.blobs.iter().map(|(id, _)| (*id, why.clone())).collect(),
                );
            }
        };
        let mut problems = Vec::new();
        if !name.verify(&bytes) {
            problems.push(
                "stored bytes do not match the pack's name (damaged or tampered)".to_string(),
            );
        }
        let keys = self.repo.keys();
        match pack::decode_pack(keys, &bytes) {
            Ok(frames) => {
                let listed: HashSet<(BlobId, u32, u32)> = pack::frame_offsets(&frames)
                    .flat_map(|(at, f)| {
                        f.blobs.iter().scan(0u32, move |o, b| {
                            let here = *o;
                            *o = o.wrapping_add(b.raw_length);
                            Some((b.id, at, here))
                        })
                    })
                    .collect();
                if p.blobs
                    .iter()
                    .any(|(id, l)| !listed.contains(&(*id, l.frame_offset, l.offset)))
                {
                    problems.push("pack header disagrees with the index".to_string());
                }
            }
            Err(e) => problems.push(format!("pack header: {e}")),
        }
        let mut bad = Vec::new();
        self.repo.open_blobs(
            &bytes,
            0,
            &p.blobs,
            &|(id, l)| (l.blob_type, id, l),
            |_, (id, l), result| {
                if let Err(e) = result {
                    bad.push((*id, format!("{} blob is damaged: {e}", l.blob_type.name())));
                }
            },
        );
        (problems, bad)
    }

    /// Walk one snapshot: report missing index entries and every path depending on a bad blob.
    fn walk_snapshot(&mut self, id: &SnapshotId, snap: &Snapshot) {
        self.walk_tree(id, &snap.root, b"");
    }

    fn blob_problem(&mut self, blob_type: BlobType, id: &BlobId) -> Option<String> {
        if let Some(why) = self.bad.get(id) {
            return Some(why.clone());
        }
        match self.index.get(id) {
            None => {
                let why = format!(
                    "{} blob {} is not in the index",
                    blob_type.name(),
                    id.short()
                );
                self.repairable(
                    format!("blob {id}"),
                    "referenced by a snapshot but not in any index (missing)",
                    "`coffer repair` indexes again the packs that no readable index file lists, and lists the snapshots still broken",
                );
                self.bad.insert(*id, why.clone());
                Some(why)
            }
            Some(loc) if loc.blob_type != blob_type => {
                Some(format!("blob {} has the wrong type", id.short()))
            }
            Some(_) => None,
        }
    }

    fn affected(&mut self, snap: &SnapshotId, path: &[u8], reason: String) {
        self.report.affected.push(Affected {
            snapshot: snap.to_hex(),
            path: String::from_utf8_lossy(if path.is_empty() { b"/" } else { path }).into_owned(),
            reason,
        });
    }

    /// Returns whether the subtree is free of problems.
    fn walk_tree(&mut self, snap: &SnapshotId, id: &BlobId, path: &[u8]) -> bool {
        if self.clean.contains(id) {
            return true;
        }
        let tree = match self
            .blob_problem(BlobType::Tree, id)
            .map(Err)
            .unwrap_or_else(|| {
                self.repo
                    .read_blob_with(&self.index, BlobType::Tree, id)
                    .and_then(|b| Tree::decode(&b))
                    .map_err(|e| e.to_string())
            }) {
            Ok(t) => t,
            Err(why) => {
                if !self.bad.contains_key(id) {
                    self.repairable(
                        format!("blob {id}"),
                        format!("tree cannot be read: {why}"),
                        FORGET_HINT,
                    );
                    self.bad.insert(*id, why.clone());
                }
                self.affected(snap, path, format!("directory listing lost: {why}"));
                return false;
            }
        };
        let mut ok = true;
        for node in &tree.nodes {
            let mut p = path.to_vec();
            p.push(b'/');
            p.extend_from_slice(&node.name);
            match &node.content {
                Content::Subtree(sub) => ok &= self.walk_tree(snap, sub, &p),
                Content::Chunks(_) | Content::ChunkList { .. } => {
                    if let Some(why) = self.file_problem(&node.content) {
                        self.affected(snap, &p, why);
                        ok = false;
                    }
                }
                Content::None => {}
            }
        }
        if ok {
            self.clean.insert(*id);
        }
        ok
    }

    fn file_problem(&mut self, content: &Content) -> Option<String> {
        match content {
            Content::Chunks(ids) => ids
                .iter()
                .find_map(|id| self.blob_problem(BlobType::Data, id)),
            Content::ChunkList { level, id } => self.list_problem(*level, id),
            _ => None,
        }
    }

    fn list_problem(&mut self, level: u8, id: &BlobId) -> Option<String> {
        if let Some(why) = self.blob_problem(BlobType::ChunkList, id) {
            return Some(why);
        }
        let list = match self
            .repo
            .read_blob_with(&self.index, BlobType::ChunkList, id)
            .and_then(|b| ChunkList::decode(&b))
        {
            Ok(l) if l.level == level => l,
            Ok(_) => return Some(format!("chunk list {} has the wrong level", id.short())),
            Err(e) => {
                let why = format!("chunk list {} cannot be read: {e}", id.short());
                self.repairable(format!("blob {id}"), &why, FORGET_HINT);
                self.bad.insert(*id, why.clone());
                return Some(why);
            }
        };
        if level == 0 {
            list.ids
                .iter()
                .find_map(|c| self.blob_problem(BlobType::Data, c))
        } else {
            list.ids
                .iter()
                .find_map(|c| self.list_problem(level - 1, c))
        }
    }
}
