//! Retention: which snapshots a policy keeps. [`apply`] is a pure function of the snapshots,
//! the policy, "now" and a time zone, so every rule can be tested without a clock or a
//! repository; `coffer forget` deletes what it says to remove.
//!
//! The rules are restic's (`restic forget --keep-*`, `internal/restic/snapshot_policy.go`):
//! - Snapshots are grouped by host and paths (restic's default `--group-by host,paths`; the
//!   order of the paths does not matter) and each group is evaluated on its own.
//! - Within a group, snapshots are visited newest first. `last` keeps the N newest. The
//!   bucket rules (`hourly daily weekly monthly yearly`) keep a snapshot when it is the newest
//!   one of a bucket (hour, day, ISO week, month, year of its civil time in the given zone)
//!   not seen before, until N buckets have been kept. Every rule counts on its own: a
//!   snapshot kept by `last` still takes its day for `daily`.
//! - When a rule still has counts left at the group's oldest snapshot, that snapshot is kept
//!   too (restic 0.15 and later), so a short history is kept whole rather than cut short.
//! - `within D` keeps every snapshot newer than D before the group's newest snapshot (not
//!   before "now", as restic does: backups that stopped do not age out while nobody looks).
//!   As in restic, "newest" ignores snapshots dated in the future of `now`, which is the only
//!   use of `now`. D is years, months, days and hours (`1y2m3d4h`); years, months and days
//!   move the civil date the way Go's `AddDate` does (31 March minus one month is 3 March,
//!   not 28 February), hours are exact.
//! - `tag T` keeps every snapshot carrying T (any of the given tags; restic's comma-joined
//!   "all of these tags" form is not supported).
//! - A count of [`UNLIMITED`] (`unlimited` or `-1` on the command line) never runs out.
//!
//! A snapshot no rule keeps is removed, so an empty policy removes everything. [`plan`]
//! therefore refuses an empty policy, and a policy that would remove every snapshot of a
//! group (e.g. `--keep-tag` with a misspelt tag), unless forced: restic 0.17 refuses both
//! unless given `--unsafe-allow-remove-all`.

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt;

/// A count that never runs out: `--keep-daily unlimited` keeps the newest snapshot of every day.
pub const UNLIMITED: u32 = u32::MAX;

/// A `keep-within` duration: `1y2m3d4h` (each part optional, at least one given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Within {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl Within {
    /// Parse restic's duration syntax: numbers each followed by `y`, `m`, `d` or `h`.
    pub fn parse(s: &str) -> Result<Within> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "cannot read {s:?} as a duration ({why}); use e.g. 30d, 12h, 1y6m or 2y5m7d3h"
            ))
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        let mut w = Within::default();
        let mut seen = String::new();
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return Err(bad("expected a number"));
            }
            let n: u32 = rest[..digits]
                .parse()
                .map_err(|_| bad("a number is too large"))?;
            let Some(unit) = rest[digits..].chars().next() else {
                return Err(bad("a number has no unit"));
            };
            let field = match unit {
                'y' => &mut w.years,
                'm' => &mut w.months,
                'd' => &mut w.days,
                'h' => &mut w.hours,
                _ => return Err(bad("units are y, m, d and h")),
            };
            if seen.contains(unit) {
                return Err(bad("a unit is given twice"));
            }
            seen.push(unit);
            *field = n;
            rest = &rest[digits + unit.len_utf8()..];
        }
        Ok(w)
    }

    pub fn is_zero(&self) -> bool {
        *self == Within::default()
    }
}

impl fmt::Display for Within {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0h");
        }
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// What to keep. A count of 0 (or `None`) and a zero duration mean "no such rule".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_within: Option<Within>,
    pub keep_tags: Vec<String>,
}

/// The counted rules, in the order their reasons are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Rule {
    const ALL: [Rule; 6] = [
        Rule::Last,
        Rule::Hourly,
        Rule::Daily,
        Rule::Weekly,
        Rule::Monthly,
        Rule::Yearly,
    ];

    fn name(self) -> &'static str {
        match self {
            Rule::Last => "last",
            Rule::Hourly => "hourly",
            Rule::Daily => "daily",
            Rule::Weekly => "weekly",
            Rule::Monthly => "monthly",
            Rule::Yearly => "yearly",
        }
    }

    /// The bucket a snapshot falls in; `nr` (its place, newest first) makes `last` unique.
    fn bucket(self, nr: usize, t: DateTime) -> i64 {
        let (y, m, d, h) = (
            t.year() as i64,
            t.month() as i64,
            t.day() as i64,
            t.hour() as i64,
        );
        match self {
            Rule::Last => nr as i64,
            Rule::Hourly => ((y * 100 + m) * 100 + d) * 100 + h,
            Rule::Daily => (y * 100 + m) * 100 + d,
            Rule::Weekly => {
                let w = t.date().iso_week_date();
                w.year() as i64 * 100 + w.week() as i64
            }
            Rule::Monthly => y * 100 + m,
            Rule::Yearly => y,
        }
    }
}

impl Policy {
    fn count(&self, rule: Rule) -> u32 {
        let c = match rule {
            Rule::Last => self.keep_last,
            Rule::Hourly => self.keep_hourly,
            Rule::Daily => self.keep_daily,
            Rule::Weekly => self.keep_weekly,
            Rule::Monthly => self.keep_monthly,
            Rule::Yearly => self.keep_yearly,
        };
        c.unwrap_or(0)
    }

    fn within(&self) -> Option<Within> {
        self.keep_within.filter(|w| !w.is_zero())
    }

    /// No rule keeps anything: applied, it would remove every snapshot.
    pub fn is_empty(&self) -> bool {
        Rule::ALL.iter().all(|r| self.count(*r) == 0)
            && self.within().is_none()
            && self.keep_tags.is_empty()
    }

    /// For people: "keep 7 daily, 4 weekly, all monthly snapshots, those within 30d of the
    /// newest, those tagged prod".
    pub fn describe(&self) -> String {
        let counts: Vec<String> = Rule::ALL
            .iter()
            .filter(|r| self.count(**r) > 0)
            .map(|r| match self.count(*r) {
                UNLIMITED => format!("all {}", r.name()),
                n => format!("{n} {}", r.name()),
            })
            .collect();
        let mut parts = Vec::new();
        if !counts.is_empty() {
            parts.push(format!("{} snapshots", counts.join(", ")));
        }
        if let Some(w) = self.within() {
            parts.push(format!("all within {w} of the newest"));
        }
        if !self.keep_tags.is_empty() {
            parts.push(format!("all tagged {}", self.keep_tags.join(" or ")));
        }
        if parts.is_empty() {
            return "keep nothing".to_string();
        }
        format!("keep {}", parts.join("; "))
    }
}

/// What retention needs to know of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: SnapshotId,
    pub time_ns: i64,
    pub host: String,
    pub paths: Vec<Vec<u8>>,
    pub tags: Vec<String>,
}

impl Candidate {
    pub fn new(id: SnapshotId, s: &Snapshot) -> Candidate {
        Candidate {
            id,
            time_ns: s.time_ns,
            host: s.host.clone(),
            paths: s.paths.clone(),
            tags: s.tags.clone(),
        }
    }
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub id: SnapshotId,
    pub time_ns: i64,
    pub keep: bool,
    /// The rules that keep it ("last", "daily", "within 30d", "tag prod"...); empty if removed.
    pub reasons: Vec<String>,
}

/// One host-and-paths group, its snapshots newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub host: String,
    /// Sorted.
    pub paths: Vec<Vec<u8>>,
    pub snapshots: Vec<Decision>,
}

/// Every group, ordered by host then paths.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub groups: Vec<Group>,
}

impl Plan {
    pub fn kept(&self) -> impl Iterator<Item = &Decision> {
        self.decisions().filter(|d| d.keep)
    }
    pub fn removed(&self) -> impl Iterator<Item = &Decision> {
        self.decisions().filter(|d| !d.keep)
    }
    pub fn decisions(&self) -> impl Iterator<Item = &Decision> {
        self.groups.iter().flat_map(|g| &g.snapshots)
    }
}

/// Apply `policy` to `snapshots`: keep or remove each one, with the rules that keep it.
/// `now_ns` only hides future-dated snapshots from `within`'s "newest"; `tz` is where the
/// hour, day, week, month and year of a snapshot are counted (the system zone in the CLI).
pub fn apply(snapshots: &[Candidate], policy: &Policy, now_ns: i64, tz: &TimeZone) -> Plan {
    // Keyed by host and sorted paths: the groups come out ordered.
    let mut groups: BTreeMap<(&str, Vec<&[u8]>), Vec<&Candidate>> = BTreeMap::new();
    for c in snapshots {
        let mut paths: Vec<&[u8]> = c.paths.iter().map(|p| p.as_slice()).collect();
        paths.sort();
        groups.entry((&c.host, paths)).or_default().push(c);
    }
    let groups = groups
        .into_iter()
        .map(|((host, paths), mut members)| {
            // Newest first; equal times by ID, the reverse of `Repository::snapshots`, so
            // the snapshot `latest` names is the first one here.
            members.sort_by_key(|c| Reverse((c.time_ns, c.id)));
            Group {
                host: host.to_string(),
                paths: paths.into_iter().map(|p| p.to_vec()).collect(),
                snapshots: apply_group(&members, policy, now_ns, tz),
            }
        })
        .collect();
    Plan { groups }
}

/// [`apply`], refusing (unless `force`) an empty policy and a policy that would remove every
/// snapshot of a group. The errors are `InvalidInput`.
pub fn plan(
    snapshots: &[Candidate],
    policy: &Policy,
    now_ns: i64,
    tz: &TimeZone,
    force: bool,
) -> Result<Plan> {
    if policy.is_empty() && !force {
        return Err(Error::invalid(
            "the retention policy is empty: it would remove every snapshot; \
             give at least one keep rule, or force it",
        ));
    }
    let plan = apply(snapshots, policy, now_ns, tz);
    if !force {
        if let Some(g) = plan
            .groups
            .iter()
            .find(|g| g.snapshots.iter().all(|d| !d.keep))
        {
            let paths: Vec<_> = g.paths.iter().map(|p| String::from_utf8_lossy(p)).collect();
            return Err(Error::invalid(format!(
                "the policy ({}) would remove all {} snapshot(s) of host {}, paths {}; \
                 refusing unless forced",
                policy.describe(),
                g.snapshots.len(),
                g.host,
                paths.join(" ")
            )));
        }
    }
    Ok(plan)
}

/// One group, newest first.
fn apply_group(
    members: &[&Candidate],
    policy: &Policy,
    now_ns: i64,
    tz: &TimeZone,
) -> Vec<Decision> {
    let civil = |ns: i64| {
        tz.to_datetime(Timestamp::from_nanosecond(ns as i128).unwrap_or(Timestamp::UNIX_EPOCH))
    };
    // `None` inside: every snapshot is within (no newest in the past, or a cutoff before
    // the representable range).
    let cutoff: Option<(Within, Option<i128>)> = policy.within().map(|w| {
        let newest = members
            .iter()
            .map(|c| c.time_ns)
            .filter(|t| *t < now_ns)
            .max();
        (w, newest.and_then(|n| within_cutoff(n, w, tz)))
    });
    let mut left: Vec<(Rule, u32, Option<i64>)> = Rule::ALL
        .iter()
        .map(|r| (*r, policy.count(*r), None))
        .filter(|(_, n, _)| *n > 0)
        .collect();
    let oldest = members.len().saturating_sub(1);
    let mut out = Vec::with_capacity(members.len());
    for (nr, c) in members.iter().enumerate() {
        let mut reasons = Vec::new();
        for t in &policy.keep_tags {
            if c.tags.contains(t) {
                reasons.push(format!("tag {t}"));
            }
        }
        if let Some((w, cut)) = &cutoff {
            if cut.map_or(true, |cut| c.time_ns as i128 > cut) {
                reasons.push(format!("within {w}"));
            }
        }
        let t = civil(c.time_ns);
        for (rule, count, last) in left.iter_mut() {
            if *count == 0 {
                continue;
            }
            let b = rule.bucket(nr, t);
            if *last != Some(b) || nr == oldest {
                *last = Some(b);
                if *count != UNLIMITED {
                    *count -= 1;
                }
                reasons.push(rule.name().to_string());
            }
        }
        out.push(Decision {
            id: c.id,
            time_ns: c.time_ns,
            keep: !reasons.is_empty(),
            reasons,
        });
    }
    out
}

/// The instant `w` before `newest_ns`, as restic computes it: Go's
/// `newest.AddDate(-years, -months, -days).Add(-hours)` in the zone `tz`. Go normalises an
/// out-of-range day rather than clamping it (31 March minus one month is "31 February", that
/// is 3 March). `None` if the result lies before anything representable.
fn within_cutoff(newest_ns: i64, w: Within, tz: &TimeZone) -> Option<i128> {
    let newest = Timestamp::from_nanosecond(newest_ns as i128).ok()?;
    let t = tz.to_datetime(newest);
    let month0 = t.month() as i64 - 1 - w.months as i64;
    let year = t.year() as i64 - w.years as i64 + month0.div_euclid(12);
    let month = month0.rem_euclid(12) + 1;
    let first = Date::new(i16::try_from(year).ok()?, month as i8, 1).ok()?;
    let day_offset = t.day() as i64 - 1 - w.days as i64;
    let date = first
        .checked_add(Span::new().try_days(day_offset).ok()?)
        .ok()?;
    let zoned = date.to_datetime(t.time()).to_zoned(tz.clone()).ok()?;
    Some(zoned.timestamp().as_nanosecond() - w.hours as i128 * 3_600_000_000_000)
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
