//! Is the archive an unbroken chain? For every kept base backup, recovery replays every
//! segment from the one its start lies in up to the newest archived segment, following
//! timeline switches: PostgreSQL reads a segment number from the newest timeline of the
//! target's history whose switch point lies at or before that segment (the segment holding
//! a switch point is read from the new timeline, which holds a copy of the old one's part).
//! A segment missing on that path is a gap: recovery stops before it, and every target
//! after it is out of reach until a base backup that starts after the gap.

use super::catalog::Catalog;
use super::names::{parse_lsn, segment_name};
use super::retention::BaseBackup;
use crate::error::{Error, Result};
use crate::format::wal::WalKind;
use crate::id::SnapshotId;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One line of a timeline history file: timeline `parent` ran until `switch` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    pub parent: u32,
    pub switch: u64,
}

/// Parse a timeline history file (`TTTTTTTT.history`): one line per ancestor, oldest
/// first, `parentTLI <tab> switchpoint <tab> reason`, with `#` comments and blank lines.
pub fn parse_history(text: &str) -> Result<Vec<Switch>> {
    let mut out: Vec<Switch> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let parsed = (|| {
            let parent = fields.next()?.parse::<u32>().ok()?;
            let switch = parse_lsn(fields.next()?)?;
            Some(Switch { parent, switch })
        })();
        let Some(s) = parsed else {
            return Err(Error::corrupt(format!(
                "timeline history line {line:?} is not `timeline switch-point reason`"
            )));
        };
        if out
            .last()
            .is_some_and(|p| p.parent >= s.parent || p.switch > s.switch)
        {
            return Err(Error::corrupt(
                "timeline history lines are not in order".to_string(),
            ));
        }
        out.push(s);
    }
    Ok(out)
}

/// Segments that recovery needs and the archive lacks: one run of consecutive numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Gap {
    /// The first and last missing file, and how many.
    pub first: String,
    pub last: String,
    pub count: u64,
    /// The recovery targets it puts out of reach: from the last commit (or file time) before
    /// it to the stop of the first kept base backup after it, or the archive's newest
    /// segment when there is none. `None` where the archive does not say.
    #[serde(serialize_with = "rfc3339_opt")]
    pub lost_from: Option<i64>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub lost_to: Option<i64>,
    /// The kept base backups whose recovery stops at it.
    pub base_backups: Vec<String>,
}

impl Gap {
    /// One line for people.
    pub fn describe(&self) -> String {
        let files = if self.count == 1 {
            format!("{} is missing", self.first)
        } else {
            format!(
                "{} … {} ({} segments) are missing",
                self.first, self.last, self.count
            )
        };
        // To the second: a person reads this, and the JSON keeps the nanoseconds.
        let when = |t: Option<i64>| {
            t.and_then(|ns| jiff::Timestamp::from_nanosecond(i128::from(ns)).ok())
                .and_then(|ts| ts.round(jiff::Unit::Second).ok())
                .map_or("?".to_string(), |ts| ts.to_string())
        };
        format!(
            "WAL gap: {files}; recovery from {} base backup(s) stops before it, so the recovery \
             window loses {} to {}",
            self.base_backups.len(),
            when(self.lost_from),
            when(self.lost_to)
        )
    }
}

/// The chain's state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChainReport {
    /// Complete segments archived, on every timeline.
    pub segments: u64,
    pub timelines: Vec<u32>,
    /// The newest segment on the newest timeline, if any.
    pub newest: Option<String>,
    /// Kept base backups the chain was checked from.
    pub base_backups: u64,
    pub gaps: Vec<Gap>,
    /// Timelines above 1 that the archive uses without their history file.
    pub missing_history: Vec<u32>,
    /// Things worth knowing that are not damage.
    pub notes: Vec<String>,
}

impl ChainReport {
    pub fn complete(&self) -> bool {
        self.gaps.is_empty() && self.missing_history.is_empty()
    }
}

/// The path recovery takes to reach `timeline`: each ancestor and where it ends, then the
/// timeline itself (ending nowhere).
fn lineage(timeline: u32, histories: &BTreeMap<u32, Vec<Switch>>) -> Vec<(u32, Option<u64>)> {
    let mut path: Vec<(u32, Option<u64>)> = histories
        .get(&timeline)
        .map(|h| h.iter().map(|s| (s.parent, Some(s.switch))).collect())
        .unwrap_or_default();
    path.push((timeline, None));
    path
}

/// Which timeline recovery along `path` reads segment `n` from: the newest one whose
/// begin (its parent's switch point) lies in segment `n` or before.
fn owner(path: &[(u32, Option<u64>)], n: u64, size: u64) -> u32 {
    let mut begin = 0u64;
    let mut found = path[0].0;
    for (tl, end) in path {
        if begin / size <= n {
            found = *tl;
        }
        match end {
            Some(e) => begin = *e,
            None => break,
        }
    }
    found
}

/// Check the chain of every kept base backup in `bases` against `catalog`, with the parsed
/// history files `histories` (by timeline).
pub fn verify(
    catalog: &Catalog,
    bases: &[BaseBackup],
    histories: &BTreeMap<u32, Vec<Switch>>,
) -> ChainReport {
    let mut report = ChainReport::default();
    let segments: BTreeMap<(u32, u64), &super::WalEntry> = catalog
        .segments()
        .filter(|e| e.header.kind == WalKind::Segment && e.header.segment_size > 0)
        .map(|e| {
            let n = e.header.start_lsn / u64::from(e.header.segment_size);
            ((e.header.timeline, n), e)
        })
        .collect();
    report.segments = segments.len() as u64;
    let mut timelines: BTreeSet<u32> = catalog.timelines();
    timelines.extend(bases.iter().map(|b| b.timeline));
    report.timelines = timelines.iter().copied().collect();
    report.base_backups = bases.len() as u64;
    let Some(size) = segments
        .values()
        .next()
        .map(|e| u64::from(e.header.segment_size))
    else {
        if !bases.is_empty() {
            report.notes.push(format!(
                "{} base backup(s) but no archived WAL segment: none of them can be restored \
                 until PostgreSQL archives into this repository (`wal-push`)",
                bases.len()
            ));
        }
        return report;
    };
    let newest_on = |tl: u32| segments.range((tl, 0)..=(tl, u64::MAX)).next_back();
    report.newest = timelines
        .iter()
        .rev()
        .find_map(|&tl| newest_on(tl))
        .map(|(_, e)| e.header.name.clone());
    for &tl in &timelines {
        if tl > 1 && !histories.contains_key(&tl) {
            report.missing_history.push(tl);
        }
    }
    if bases.is_empty() {
        report.notes.push(format!(
            "the WAL archive holds {} segment(s) but the repository no base backup: there is \
             no recovery window yet (take one with `coffer backup --postgres-base URL`)",
            segments.len()
        ));
        return report;
    }

    // Missing segments, each with the base backups whose recovery needs it, found by
    // following every timeline that recovery could aim at.
    let mut missing: BTreeMap<(u32, u64), BTreeSet<SnapshotId>> = BTreeMap::new();
    // Where each timeline path ends, to judge what a gap costs.
    let mut path_end: BTreeMap<(u32, u64), u64> = BTreeMap::new();
    for &target in &timelines {
        let path = lineage(target, histories);
        let newest = newest_on(target).map(|((_, n), _)| *n);
        for b in bases {
            // Recovery towards `target` starts from `b` if `b`'s timeline is on the path and
            // `b` starts before that timeline ends.
            let on_path = path
                .iter()
                .any(|(tl, end)| *tl == b.timeline && end.map_or(true, |e| b.start_lsn < e));
            if !on_path {
                continue;
            }
            let first = b.start_lsn / size;
            let stop = b.stop_lsn.map_or(first, |s| s / size);
            let last = newest.unwrap_or(first).max(stop);
            for n in first..=last {
                let tl = owner(&path, n, size);
                if !segments.contains_key(&(tl, n)) {
                    missing.entry((tl, n)).or_default().insert(b.id);
                    let end = path_end.entry((tl, n)).or_insert(last);
                    *end = (*end).max(last);
                }
            }
        }
    }

    // Runs of consecutive missing segments on one timeline are one gap.
    let mut runs: Vec<Vec<(u32, u64)>> = Vec::new();
    for &(tl, n) in missing.keys() {
        match runs.last_mut() {
            Some(run) if run.last().is_some_and(|&(t, m)| t == tl && m + 1 == n) => {
                run.push((tl, n))
            }
            _ => runs.push(vec![(tl, n)]),
        }
    }
    let time_of = |e: &super::WalEntry| e.header.commits.map_or(e.header.mtime_ns, |c| c.1);
    for run in runs {
        let (tl, first) = run[0];
        let (_, last) = run[run.len() - 1];
        let mut ids: BTreeSet<SnapshotId> = BTreeSet::new();
        for k in &run {
            ids.extend(missing[k].iter().copied());
        }
        // Before the gap: the newest segment of any timeline just below it, else the
        // oldest affected base backup's stop (the gap starts at its first segment).
        let lost_from = first
            .checked_sub(1)
            .and_then(|p| segments.iter().find(|((_, n), _)| *n == p))
            .map(|(_, e)| time_of(e))
            .or_else(|| {
                bases
                    .iter()
                    .filter(|b| ids.contains(&b.id))
                    .map(|b| b.stop_ns)
                    .min()
            });
        let end = run.iter().filter_map(|k| path_end.get(k)).max().copied();
        // After it: the first kept base backup that starts past it, else the newest
        // segment at the end of the path.
        let lost_to = bases
            .iter()
            .filter(|b| b.start_lsn / size > last)
            .map(|b| b.stop_ns)
            .min()
            .or_else(|| {
                let end = end?;
                segments
                    .iter()
                    .filter(|((_, n), _)| *n == end)
                    .map(|(_, e)| e.header.mtime_ns)
                    .max()
            });
        report.gaps.push(Gap {
            first: segment_name(tl, first, size as u32),
            last: segment_name(tl, last, size as u32),
            count: run.len() as u64,
            lost_from,
            lost_to,
            base_backups: ids.iter().map(|id| id.to_hex()).collect(),
        });
    }
    report
}

fn rfc3339_opt<S: serde::Serializer>(
    ns: &Option<i64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match ns {
        Some(ns) => s.serialize_str(&crate::browse::format_time_rfc3339(*ns)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{ObjectKind, ObjectName};
    use crate::format::wal::{WalCodec, WalHeader};
    use crate::wal::WalEntry;

    const SEG: u64 = 16 << 20;

    fn seg(timeline: u32, n: u64) -> WalEntry {
        WalEntry {
            object: ObjectName::new(ObjectKind::Wal, [(n as u8) ^ (timeline as u8); 32]),
            stored: 100,
            header: WalHeader {
                kind: WalKind::Segment,
                name: segment_name(timeline, n, SEG as u32),
                system_id: 1,
                timeline,
                start_lsn: n * SEG,
                segment_size: SEG as u32,
                size: SEG,
                hash: [0; 32],
                mtime_ns: n as i64 * 1000,
                pushed_ns: 0,
                commits: Some((n as i64 * 1000 - 500, n as i64 * 1000 - 100)),
                codec: WalCodec::Raw,
            },
        }
    }

    fn base(id: u8, timeline: u32, n: u64, stop_ns: i64) -> BaseBackup {
        BaseBackup {
            id: SnapshotId([id; 32]),
            timeline,
            start_lsn: n * SEG + 0x28,
            stop_lsn: Some(n * SEG + 0x138),
            stop_ns,
        }
    }

    fn catalog(entries: Vec<WalEntry>) -> Catalog {
        Catalog::new(entries, vec![])
    }

    #[test]
    fn history_files_parse_as_postgresql_writes_them() {
        let h = parse_history(
            "1\t0/3000158\tno recovery target specified\n\n2\t0/5000000\tat restore point \"x\"\n",
        )
        .unwrap();
        assert_eq!(
            h,
            [
                Switch {
                    parent: 1,
                    switch: 0x300_0158
                },
                Switch {
                    parent: 2,
                    switch: 0x500_0000
                }
            ]
        );
        assert!(parse_history("# comment\n").unwrap().is_empty());
        for bad in ["x\t0/1\tr", "1\tzz\tr", "2\t0/5\tr\n1\t0/6\tr", "1"] {
            assert!(parse_history(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_complete_chain_has_no_gap() {
        let c = catalog((3..=9).map(|n| seg(1, n)).collect());
        let r = verify(&c, &[base(1, 1, 4, 4500)], &BTreeMap::new());
        assert!(r.complete(), "{r:?}");
        assert_eq!(r.segments, 7);
        assert_eq!(r.newest.as_deref(), Some("000000010000000000000009"));
    }

    #[test]
    fn a_missing_segment_is_named_with_the_time_it_cuts() {
        let mut entries: Vec<WalEntry> = (3..=12).map(|n| seg(1, n)).collect();
        entries.retain(|e| {
            !["000000010000000000000006", "000000010000000000000007"]
                .contains(&e.header.name.as_str())
        });
        let c = catalog(entries);
        // One base backup before the gap: everything after the gap is lost.
        let r = verify(&c, &[base(1, 1, 4, 4500)], &BTreeMap::new());
        assert_eq!(r.gaps.len(), 1, "{r:?}");
        let g = &r.gaps[0];
        assert_eq!(
            (g.first.as_str(), g.last.as_str(), g.count),
            ("000000010000000000000006", "000000010000000000000007", 2)
        );
        // From the last commit in segment 5 to the newest segment's time.
        assert_eq!((g.lost_from, g.lost_to), (Some(4900), Some(12_000)));
        assert!(
            g.describe().contains("(2 segments) are missing"),
            "{}",
            g.describe()
        );
        // A second base backup after the gap brings the window back from its stop on.
        let r = verify(
            &c,
            &[base(1, 1, 4, 4500), base(2, 1, 9, 9500)],
            &BTreeMap::new(),
        );
        assert_eq!(r.gaps.len(), 1);
        assert_eq!(r.gaps[0].lost_to, Some(9500));
        assert_eq!(r.gaps[0].base_backups.len(), 1);
        // Only the base backup after the gap is kept: no gap matters any more.
        let r = verify(&c, &[base(2, 1, 9, 9500)], &BTreeMap::new());
        assert!(r.complete(), "{r:?}");
    }

    #[test]
    fn a_switch_reads_earlier_segments_from_the_parent_timeline() {
        // Timeline 2 branched off 1 inside segment 6: 6 onwards are timeline 2's files.
        let mut entries: Vec<WalEntry> = (3..=6).map(|n| seg(1, n)).collect();
        entries.extend((6..=9).map(|n| seg(2, n)));
        let mut histories = BTreeMap::new();
        histories.insert(
            2,
            vec![Switch {
                parent: 1,
                switch: 6 * SEG + 0x100,
            }],
        );
        let c = catalog(entries);
        let r = verify(&c, &[base(1, 1, 3, 3500)], &histories);
        assert!(r.complete(), "{r:?}");
        // Without timeline 2's segment 6 (the one holding the switch), recovery breaks
        // there even though timeline 1 has a segment 6.
        let c2 = catalog(
            c.entries
                .iter()
                .filter(|e| e.header.name != "000000020000000000000006")
                .cloned()
                .collect(),
        );
        let r = verify(&c2, &[base(1, 1, 3, 3500)], &histories);
        assert_eq!(r.gaps.len(), 1, "{r:?}");
        assert_eq!(r.gaps[0].first, "000000020000000000000006");
        // Without the history file, timeline 2 is a problem of its own.
        let r = verify(&c, &[base(1, 1, 3, 3500)], &BTreeMap::new());
        assert_eq!(r.missing_history, [2]);
    }

    #[test]
    fn no_base_backup_is_a_note() {
        let c = catalog((1..=3).map(|n| seg(1, n)).collect());
        let r = verify(&c, &[], &BTreeMap::new());
        assert!(r.complete());
        assert!(r.notes[0].contains("no base backup"), "{:?}", r.notes);
    }
}
