//! Which base backup and which archived WAL files a point-in-time restore needs, decided
//! before anything is written: a target the archive cannot reach (before the oldest base
//! backup, after the archive's end, beyond a missing segment) is refused here, naming why.

use crate::browse::format_time_rfc3339 as time_text;
use crate::error::{Error, Result};
use crate::format::wal::WalKind;
use crate::id::SnapshotId;
use crate::wal::names::{lsn_text, segment_name};
use crate::wal::{Catalog, WalEntry};
use std::collections::BTreeMap;

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Replay everything the archive holds.
    End,
    /// Stop before the first transaction that ended after this time (ns since the epoch).
    Time(i64),
    /// Stop at this WAL position.
    Lsn(u64),
    /// Stop at a restore point made with `pg_create_restore_point(name)`.
    Name(String),
    /// Stop as soon as the base backup is consistent.
    Immediate,
}

/// What the planner needs to know of a base backup.
#[derive(Debug, Clone)]
pub struct BaseCandidate {
    pub snapshot: SnapshotId,
    pub system_id: u64,
    pub timeline: u32,
    pub start_lsn: u64,
    pub stop_lsn: u64,
    pub stop_time_ns: i64,
    pub segment_size: u32,
}

/// The plan: one base backup, the WAL files to fetch, and how recovery ends.
#[derive(Debug, Clone)]
pub struct Plan {
    pub base: BaseCandidate,
    pub target: Target,
    /// The archived files recovery will ask for, in replay order (history files first).
    pub files: Vec<WalEntry>,
    /// The timeline recovery follows (the newest descendant of the base's).
    pub timeline: u32,
    /// A note for the user when the plan differs from what was asked literally.
    pub note: Option<String>,
}

/// A timeline's ancestry from its history file: (timeline, LSN where it ends) for each
/// ancestor, oldest first.
pub fn parse_history(text: &str) -> Vec<(u32, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let tli = f.next()?.parse().ok()?;
            let lsn = crate::wal::names::parse_lsn(f.next()?)?;
            Some((tli, lsn))
        })
        .collect()
}

/// Pick the base backup and the files for `target`. `histories` holds the text of every
/// archived history file, by timeline.
pub fn plan(
    catalog: &Catalog,
    bases: &[BaseCandidate],
    histories: &BTreeMap<u32, String>,
    target: Target,
) -> Result<Plan> {
    let base = choose_base(bases, &target)?;
    let size = base.segment_size;
    // The newest timeline descending from the base's; each step's start LSN.
    let (timeline, switches) = newest_descendant(base.timeline, histories);
    let tli_at = |n: u64| -> u32 {
        let end = (n + 1) * u64::from(size);
        switches
            .iter()
            .rev()
            .find(|(_, begins)| *begins < end)
            .map_or(base.timeline, |(t, _)| *t)
    };
    let first = base.start_lsn / u64::from(size);
    let consistent = base.stop_lsn.saturating_sub(1) / u64::from(size);
    let mut files = vec![];
    let mut n = first;
    let mut note = None;
    loop {
        let t = tli_at(n);
        let name = segment_name(t, n, size);
        let found = catalog
            .find(&name)
            .into_iter()
            .find(|e| e.header.kind == WalKind::Segment)
            .cloned();
        let Some(entry) = found else {
            break;
        };
        let reached = match &target {
            Target::Time(t) => entry.header.commits.is_some_and(|(_, last)| last > *t),
            Target::Lsn(lsn) => entry.header.start_lsn + u64::from(size) > *lsn,
            Target::Immediate => n >= consistent,
            Target::End | Target::Name(_) => false,
        };
        files.push(entry);
        n += 1;
        if reached && n > consistent {
            // One more: the stopping record may continue into the next segment.
            if let Some(next) = catalog.find(&segment_name(tli_at(n), n, size)).first() {
                files.push((*next).clone());
            }
            return finish(catalog, base, target, files, timeline, note);
        }
    }
    // The chain ended at segment n, which is missing.
    let missing = segment_name(tli_at(n), n, size);
    let later = catalog.segments().any(|e| {
        let m = e.header.start_lsn / u64::from(size);
        m > n && e.header.timeline == tli_at(m) && e.header.system_id == base.system_id
    });
    let last_time = files.last().map(|e| e.header.mtime_ns);
    if n <= consistent {
        return Err(Error::not_found(format!(
            "the archive lacks {missing}, which base backup {} needs to become consistent (up to {}); \
             without it this backup cannot be restored: check archive_command, or choose another base backup",
            base.snapshot.short(),
            lsn_text(base.stop_lsn)
        )));
    }
    if later {
        return Err(Error::not_found(format!(
            "the archive has a gap: {missing} is missing, so recovery cannot go past {}{}; \
             choose a target before that (run `coffer check` to see every gap)",
            lsn_text(n * u64::from(size)),
            last_time.map_or(String::new(), |t| format!(
                " (WAL written until about {})",
                time_text(t)
            ))
        )));
    }
    match &target {
        Target::Time(t) => {
            let end = last_time.unwrap_or(base.stop_time_ns);
            if *t > end {
                return Err(Error::not_found(format!(
                    "{} is after the end of the archive: its newest segment was written at {}; \
                     restore `latest` to recover everything archived",
                    time_text(*t),
                    time_text(end)
                )));
            }
            // No transaction ended after the target: everything archived is before it.
            note = Some(format!(
                "no transaction in the archive ended after {}: recovering to the end of the archive",
                time_text(*t)
            ));
            finish(catalog, base, Target::End, files, timeline, note)
        }
        Target::Lsn(lsn) => Err(Error::not_found(format!(
            "{} is beyond the archive, which ends at {}",
            lsn_text(*lsn),
            lsn_text(n * u64::from(size))
        ))),
        _ => finish(catalog, base, target, files, timeline, note),
    }
}

fn finish(
    catalog: &Catalog,
    base: &BaseCandidate,
    target: Target,
    mut files: Vec<WalEntry>,
    timeline: u32,
    note: Option<String>,
) -> Result<Plan> {
    // History files are small, and recovery reads them to follow timelines.
    let mut histories: Vec<WalEntry> = catalog
        .entries
        .iter()
        .filter(|e| e.header.kind == WalKind::History)
        .cloned()
        .collect();
    histories.append(&mut files);
    Ok(Plan {
        base: base.clone(),
        target,
        files: histories,
        timeline,
        note,
    })
}

/// The newest base backup that is consistent before the target.
fn choose_base<'b>(bases: &'b [BaseCandidate], target: &Target) -> Result<&'b BaseCandidate> {
    let fits = |b: &&BaseCandidate| match target {
        Target::Time(t) => b.stop_time_ns <= *t,
        Target::Lsn(l) => b.stop_lsn <= *l,
        _ => true,
    };
    let newest = bases
        .iter()
        .filter(fits)
        .max_by_key(|b| (b.stop_lsn, b.stop_time_ns));
    newest.ok_or_else(|| match (target, bases.iter().min_by_key(|b| b.stop_time_ns)) {
        (_, None) => Error::not_found(
            "the repository holds no base backup: take one with `coffer backup --postgres-base URL`",
        ),
        (Target::Time(t), Some(oldest)) => Error::not_found(format!(
            "{} is before the end of the oldest base backup ({}, consistent from {}): nothing can be restored to it",
            time_text(*t),
            oldest.snapshot.short(),
            time_text(oldest.stop_time_ns)
        )),
        (_, Some(oldest)) => Error::not_found(format!(
            "the target is before the end of the oldest base backup ({}, consistent from {})",
            oldest.snapshot.short(),
            lsn_text(oldest.stop_lsn)
        )),
    })
}

/// The newest timeline whose history includes `base` (or `base` itself), with the LSN where
/// each timeline after `base` on that path begins.
fn newest_descendant(base: u32, histories: &BTreeMap<u32, String>) -> (u32, Vec<(u32, u64)>) {
    for (tli, text) in histories.iter().rev() {
        if *tli <= base {
            break;
        }
        let ancestry = parse_history(text);
        if let Some(i) = ancestry.iter().position(|(t, _)| *t == base) {
            // Timeline ancestry[k+1] (or `tli` after the last) begins where ancestry[k] ends.
            let mut switches = vec![];
            for k in i..ancestry.len() {
                let next = ancestry.get(k + 1).map_or(*tli, |(t, _)| *t);
                switches.push((next, ancestry[k].1));
            }
            return (*tli, switches);
        }
    }
    (base, vec![])
}

#[cfg(test)]
mod tests;
