//! Bring every region of a repository up to date, or compare them, without the key: every
//! object is named by the hash of its bytes, so any process can tell a good copy from a bad
//! one and copy it (format-spec §11).
//!
//! Tombstones come first (`graves.rs`): the objects they name are never copied, and with the
//! key they are deleted where a region still holds them. Then the other objects are copied in
//! the order of format-spec §11 (deletion plans and their wait records, packs, index files,
//! keys and config, WAL files, snapshots, then check and drill reports), so a region being
//! caught up never holds a snapshot whose data it lacks (nor a base backup whose WAL it
//! lacks), and never an index entry for a pack that a plan deletes without the plan. Locks
//! are not copied: they belong to running processes.

mod graves;

use crate::backend::{Backend, Bytes, ObjectKind, ObjectName};
use crate::crypto::Keys;
use crate::error::{ErrorKind, Result};
use crate::progress::Progress;
use graves::Graves;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// The order in which objects are copied after the tombstones (format-spec §11).
const ORDER: [ObjectKind; 9] = [
    ObjectKind::Plan,
    ObjectKind::Wait,
    ObjectKind::Pack,
    ObjectKind::Index,
    ObjectKind::Key,
    ObjectKind::Config,
    // Before snapshots: a base backup is restorable only with the WAL from its start on.
    ObjectKind::Wal,
    ObjectKind::Snapshot,
    // Reports name snapshots but nothing depends on them: last.
    ObjectKind::Report,
];

#[derive(Debug, Clone, Copy, Default)]
pub struct SyncOptions {
    /// Read every copy in every region and check it against its name (else only copies
    /// whose listed size disagrees with another region's are read).
    pub verify: bool,
    /// Only report: copy nothing.
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RegionReport {
    pub region: String,
    /// Objects this region holds after the run (or held, with `dry_run`).
    pub objects: u64,
    /// Objects other regions have and this one lacked.
    pub missing: u64,
    /// Copies that failed their name check (or had the wrong size).
    pub damaged: u64,
    /// Copies written to this region (missing ones and replacements).
    pub copied: u64,
    pub bytes_copied: u64,
    /// Listed size of the missing and damaged copies: what the run copies (or, with
    /// `dry_run`, would copy).
    pub bytes_to_copy: u64,
    /// Objects this region held that a tombstone names: deleted elsewhere on purpose, and
    /// missed here (the region was down, or not given to the deleting command).
    pub buried: u64,
    /// Of those, deleted here by this run (only with the key, never in a dry run).
    pub buried_deleted: u64,
    /// Why this region could not be listed, if it could not.
    pub unreachable: Option<String>,
    /// Objects that could not be written (or deleted) here, with the error.
    pub failed: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SyncReport {
    pub regions: Vec<RegionReport>,
    /// Objects listed somewhere but with no good copy in any region.
    pub lost: Vec<String>,
    /// Objects compared (the union over regions).
    pub objects: u64,
    /// Copies read and checked against their names.
    pub copies_verified: u64,
    /// Whether tombstones were authenticated with the key (then what they name is deleted);
    /// without it, what they name is only left uncopied.
    pub keyed: bool,
    /// Tombstones that are valid (authenticated with the key, or readable without it).
    pub tombstones: u64,
    /// Tombstones that are not (damaged, or planted by someone without the key), with why:
    /// they delete nothing and are not copied.
    pub bad_tombstones: Vec<String>,
}

impl SyncReport {
    /// Every region reachable, holding every object, with no bad copy left and nothing lost,
    /// no bad tombstone, and (with the key) nothing left that a tombstone names.
    pub fn in_sync(&self, dry_run: bool) -> bool {
        self.lost.is_empty()
            && self.bad_tombstones.is_empty()
            && self.regions.iter().all(|r| {
                r.unreachable.is_none()
                    && r.failed.is_empty()
                    && (!dry_run || (r.missing == 0 && r.damaged == 0))
                    && (!self.keyed || r.buried == r.buried_deleted)
            })
    }

    /// Objects that tombstones name and that are still stored somewhere after the run.
    pub fn buried_left(&self) -> u64 {
        self.regions
            .iter()
            .map(|r| r.buried - r.buried_deleted)
            .sum()
    }
}

/// What happened to one object, per region.
#[derive(Default)]
struct Outcome {
    missing: Vec<usize>,
    damaged: Vec<usize>,
    copied: Vec<(usize, u64)>,
    failed: Vec<(usize, String)>,
    verified: u64,
    lost: bool,
    /// A good copy that `Vet` refused, with why: it was not copied anywhere.
    refused: Option<String>,
}

/// Decides from its bytes whether a verified object may be copied (tombstones must be valid).
type Vet<'a> = dyn Fn(&[u8]) -> std::result::Result<(), String> + Sync + 'a;

/// One kind of object after it was compared and copied.
struct KindSync {
    /// Each reachable region's listing (`None`: unreachable).
    listings: Vec<Option<HashMap<ObjectName, u64>>>,
    /// Per region, the objects it holds after the copies (listed or copied in).
    present: Vec<HashSet<ObjectName>>,
    /// With a `Vet`: every object's verified bytes, and the objects it refused.
    good: Vec<(ObjectName, Vec<u8>)>,
    refused: Vec<(ObjectName, String)>,
}

/// Compare `regions` object by object and (unless `dry_run`) copy what is missing or bad.
/// Without the key, objects that tombstones name are left where they are and not copied.
pub fn sync(
    regions: &[(String, Arc<dyn Backend>)],
    opts: SyncOptions,
    progress: &dyn Progress,
) -> Result<SyncReport> {
    sync_with_keys(regions, opts, None, progress)
}

/// `sync`, and with `keys` also delete, where they remain, the objects that authenticated
/// tombstones name (format-spec §11, §5.12).
pub fn sync_with_keys(
    regions: &[(String, Arc<dyn Backend>)],
    opts: SyncOptions,
    keys: Option<&Keys>,
    progress: &dyn Progress,
) -> Result<SyncReport> {
    let mut report = SyncReport {
        regions: regions
            .iter()
            .map(|(name, _)| RegionReport {
                region: name.clone(),
                ..Default::default()
            })
            .collect(),
        keyed: keys.is_some(),
        ..Default::default()
    };
    let graves = Graves::gather(regions, opts, keys, &mut report, progress);
    for kind in ORDER {
        let done = sync_kind(
            kind,
            regions,
            opts,
            graves.honored(),
            None,
            &mut report,
            progress,
        );
        graves.settle(kind, regions, &done, opts, &mut report);
    }
    Ok(report)
}

/// Compare and copy every object of `kind`, except those in `skip`. With `vet`, every
/// object's good bytes are read and kept, and only those `vet` accepts are copied.
#[allow(clippy::too_many_arguments)]
fn sync_kind(
    kind: ObjectKind,
    regions: &[(String, Arc<dyn Backend>)],
    opts: SyncOptions,
    skip: &HashSet<ObjectName>,
    vet: Option<&Vet<'_>>,
    report: &mut SyncReport,
    progress: &dyn Progress,
) -> KindSync {
    let mut listings: Vec<Option<HashMap<ObjectName, u64>>> = Vec::new();
    for (i, (_, b)) in regions.iter().enumerate() {
        if report.regions[i].unreachable.is_some() {
            listings.push(None);
            continue;
        }
        match b.list(kind) {
            Ok(l) => listings.push(Some(l.into_iter().collect())),
            Err(e) => {
                report.regions[i].unreachable = Some(e.to_string());
                listings.push(None);
            }
        }
    }
    let mut union: BTreeMap<ObjectName, u64> = BTreeMap::new();
    for l in listings.iter().flatten() {
        for (n, size) in l {
            if skip.contains(n) {
                continue;
            }
            let s = union.entry(*n).or_insert(*size);
            *s = (*s).max(*size);
        }
    }
    let total: u64 = union.values().sum();
    progress.start(&format!("sync {}", kind.dir()), Some(total));
    type Done = (ObjectName, Outcome, Option<Vec<u8>>);
    let outcomes: Mutex<Vec<Done>> = Mutex::new(Vec::new());
    union.par_iter().for_each(|(name, size)| {
        let (outcome, good) = sync_object(regions, &listings, name, opts, vet);
        progress.advance(*size);
        outcomes
            .lock()
            .expect("outcomes")
            .push((*name, outcome, good));
    });
    progress.finish();
    report.objects += union.len() as u64;
    let mut present: Vec<HashSet<ObjectName>> = listings
        .iter()
        .map(|l| l.iter().flatten().map(|(n, _)| *n).collect())
        .collect();
    let mut done = KindSync {
        listings: Vec::new(),
        present: Vec::new(),
        good: Vec::new(),
        refused: Vec::new(),
    };
    for (name, o, good) in outcomes.into_inner().expect("outcomes") {
        report.copies_verified += o.verified;
        if o.lost {
            report.lost.push(name.to_string());
        }
        let size = union.get(&name).copied().unwrap_or(0);
        for &i in &o.missing {
            report.regions[i].missing += 1;
            report.regions[i].bytes_to_copy += size;
        }
        for i in o.damaged {
            report.regions[i].damaged += 1;
            report.regions[i].bytes_to_copy += size;
        }
        for (i, bytes) in o.copied {
            let r = &mut report.regions[i];
            r.copied += 1;
            r.bytes_copied += bytes;
            if o.missing.contains(&i) {
                r.objects += 1;
            }
            present[i].insert(name);
        }
        for (i, why) in o.failed {
            report.regions[i].failed.push(format!("{name}: {why}"));
        }
        if let Some(why) = o.refused {
            done.refused.push((name, why));
        }
        if let Some(bytes) = good {
            done.good.push((name, bytes));
        }
    }
    for (i, l) in listings.iter().enumerate() {
        if let Some(l) = l {
            report.regions[i].objects += l.len() as u64;
        }
    }
    done.listings = listings;
    done.present = present;
    done
}

/// Bring one object into every reachable region. With `vet`, a good copy is always read,
/// returned, and copied only if `vet` accepts it.
fn sync_object(
    regions: &[(String, Arc<dyn Backend>)],
    listings: &[Option<HashMap<ObjectName, u64>>],
    name: &ObjectName,
    opts: SyncOptions,
    vet: Option<&Vet<'_>>,
) -> (Outcome, Option<Vec<u8>>) {
    let mut o = Outcome::default();
    let holders: Vec<(usize, u64)> = listings
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.as_ref()?.get(name).map(|s| (i, *s)))
        .collect();
    o.missing = listings
        .iter()
        .enumerate()
        .filter(|(_, l)| l.as_ref().is_some_and(|l| !l.contains_key(name)))
        .map(|(i, _)| i)
        .collect();
    let sizes_agree = holders.windows(2).all(|w| w[0].1 == w[1].1);
    // Which copies to read: all of them when verifying or when sizes disagree; otherwise
    // only one, and only if some region needs a copy and this is not a dry run (a dry run
    // compares listings: it must not download everything a region lacks), or its bytes are
    // needed.
    let read_all = opts.verify || !sizes_agree;
    let must_read = vet.is_some();
    let mut good: Option<Vec<u8>> = None;
    let mut read = 0;
    for &(i, _) in &holders {
        if !read_all && (good.is_some() || (!must_read && (o.missing.is_empty() || opts.dry_run))) {
            break;
        }
        read += 1;
        match regions[i].1.get(name) {
            Ok(bytes) if name.verify(&bytes) => {
                o.verified += 1;
                good.get_or_insert(bytes);
            }
            Ok(_) => {
                o.verified += 1;
                o.damaged.push(i);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => o.missing.push(i),
            Err(e) => o.failed.push((i, format!("cannot be read: {e}"))),
        }
    }
    // The bytes go back to the caller only when it vets them (small objects): a verifying
    // sync reads every pack, and must not hold them.
    let keep = |good: &Option<Vec<u8>>| if vet.is_some() { good.clone() } else { None };
    if let (Some(vet), Some(bytes)) = (vet, &good) {
        if let Err(why) = vet(bytes) {
            o.refused = Some(why);
            return (o, keep(&good));
        }
    }
    let targets: Vec<usize> = o.missing.iter().chain(&o.damaged).copied().collect();
    if targets.is_empty() || opts.dry_run {
        // Lost: copies were read and none was good (unknown when nothing was read).
        o.lost = good.is_none() && read > 0;
        return (o, keep(&good));
    }
    let Some(good) = good else {
        o.lost = true;
        return (o, None);
    };
    let kept = vet.map(|_| good.clone());
    let bytes = Bytes::from(good);
    for i in targets {
        match regions[i].1.put(name, bytes.clone()) {
            Ok(()) => o.copied.push((i, bytes.len() as u64)),
            Err(e) => o.failed.push((i, format!("cannot be written: {e}"))),
        }
    }
    (o, kept)
}
