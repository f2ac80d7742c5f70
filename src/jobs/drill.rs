//! Restore drills: prove that a job can be recovered, and how fast. Each source of the job
//! drills itself (`SourceKind::drill`): its newest snapshot restored into scratch space (a
//! folder, a scratch database, a scratch bucket prefix, a scratch PostgreSQL cluster) and
//! verified; the wall time of all of it is the recovery time achieved, compared with the
//! job's RTO. The result is stored in the repository as a report (format-spec §5.11), so
//! every machine's `status` sees it.

use crate::browse::format_time_rfc3339;
use crate::config::Job;
use crate::error::{Error, ErrorKind, Result};
use crate::format::report::{Report, ReportKind};
use crate::id::SnapshotId;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::sources::{self, DrillContext};
pub use crate::sources::{DrillOptions, Protected};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Problems listed per source in outcomes and reports; the count says how many there were.
const PROBLEMS_SHOWN: usize = 20;
/// A report's message stays one readable line.
const MESSAGE_MAX: usize = 1000;

/// What the drill of one source did.
#[derive(Debug, Clone, Serialize)]
pub struct SourceDrill {
    /// The source's label (`files`, `postgres:HOST:PORT/DB`, `bucket:URL`).
    pub source: String,
    pub kind: &'static str,
    /// The snapshot restored (hex ID), if the source has one.
    pub snapshot: Option<String>,
    #[serde(skip)]
    pub snapshot_id: Option<SnapshotId>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub snapshot_time: Option<i64>,
    /// Where it was restored to (no credentials).
    pub restored_to: Option<String>,
    /// Bytes restored: file contents, SQL loaded, object contents.
    pub bytes: u64,
    /// Files, tables or objects restored (see `item_kind`).
    pub items: u64,
    pub item_kind: &'static str,
    /// Wall time of this source's restore and verification.
    pub seconds: f64,
    /// Facts of this kind of drill: for a point-in-time drill, the recovery window, the
    /// target time and the last commit replayed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// Restored, and the result matched the snapshot.
    pub ok: bool,
    /// What went wrong (at most `PROBLEMS_SHOWN`; `problem_count` says how many in all).
    pub problems: Vec<String>,
    pub problem_count: usize,
}

/// What one drill of one job did.
#[derive(Debug, Clone, Serialize)]
pub struct DrillOutcome {
    pub job: String,
    #[serde(rename = "time", serialize_with = "rfc3339")]
    pub time_ns: i64,
    /// Every source restored and verified.
    pub ok: bool,
    /// Wall time of the restore and verification of every source: the RTO achieved.
    #[serde(rename = "rto_achieved_seconds", serialize_with = "seconds")]
    pub duration_ns: u64,
    /// The job's RTO, if it sets one.
    #[serde(rename = "rto_target_seconds", serialize_with = "seconds_opt")]
    pub target_ns: Option<u64>,
    /// `None` when the job sets no RTO.
    pub rto_met: Option<bool>,
    pub sources: Vec<SourceDrill>,
    /// One line: what was done or what went wrong (the report's message).
    pub message: String,
    /// The stored report's object name (`reports/<hash>`).
    pub report: Option<String>,
    /// Why the report could not be stored, if it could not.
    pub report_error: Option<String>,
}

impl DrillOutcome {
    /// Restored, verified, within the RTO, and recorded.
    pub fn passed(&self) -> bool {
        self.ok && self.rto_met != Some(false) && self.report_error.is_none()
    }
}

/// Drill `job`: restore each source's newest snapshot into the scratch places of its
/// `drill` section, verify, time it and store a report. A source that cannot be restored or
/// verified fails the drill (the others are still drilled); only an interruption, or a
/// repository that cannot be read at all, is an error.
pub fn drill(
    repo: &Repository,
    job: &Job,
    opts: &DrillOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<DrillOutcome> {
    let section = job.drill.as_ref().ok_or_else(|| {
        Error::invalid(format!(
            "job {:?} has no drill section (drill = {{ schedule = ..., target = ... }})",
            job.name
        ))
    })?;
    // The drilled job's own sources are protected even when the caller named no others.
    let mut protected = opts.protected.clone();
    protected.add_sources(job);
    let time_ns = repo.clock().now();
    let started = Instant::now();
    let mut cleanup = Duration::ZERO;
    let (snapshots, damaged) = repo.readable_snapshots()?;
    for (id, e) in &damaged {
        progress.warn(&format!("snapshot {} cannot be read: {e}", id.short()));
    }
    let mut sources = Vec::new();
    for source in sources::of(job) {
        if cancel.load(Ordering::Relaxed) {
            return Err(interrupted());
        }
        let newest = snapshots
            .iter()
            .rev()
            .find(|(_, s)| source.made(&job.name, s));
        let source_started = Instant::now();
        let result = source.drill(&DrillContext {
            repo,
            job,
            section,
            newest: newest.map(|(id, s)| (id, s)),
            options: opts,
            protected: &protected,
            progress,
            cancel,
        });
        let cleanup_here = result.as_ref().map_or(Duration::ZERO, |r| r.cleanup);
        cleanup += cleanup_here;
        let mut drilled = SourceDrill {
            source: source.label(),
            kind: source.kind(),
            snapshot: newest.map(|(id, _)| id.to_hex()),
            snapshot_id: newest.map(|(id, _)| *id),
            snapshot_time: newest.map(|(_, s)| s.time_ns),
            restored_to: None,
            bytes: 0,
            items: 0,
            item_kind: source.item_kind(),
            seconds: source_started
                .elapsed()
                .saturating_sub(cleanup_here)
                .as_secs_f64(),
            ok: false,
            details: BTreeMap::new(),
            problems: vec![],
            problem_count: 0,
        };
        let problems = match result {
            Err(e) if e.kind() == ErrorKind::Interrupted || cancel.load(Ordering::Relaxed) => {
                return Err(interrupted())
            }
            Err(e) => vec![e.to_string()],
            Ok(r) => {
                drilled.restored_to = Some(r.restored_to);
                drilled.bytes = r.bytes;
                drilled.items = r.items;
                drilled.details = r.details.into_iter().collect();
                r.problems
            }
        };
        drilled.ok = problems.is_empty();
        drilled.problem_count = problems.len();
        drilled.problems = problems.into_iter().take(PROBLEMS_SHOWN).collect();
        sources.push(drilled);
    }
    let duration_ns = started.elapsed().saturating_sub(cleanup).as_nanos() as u64;
    let target_ns = job.rto.map(|r| r.0.as_nanos() as u64);
    let ok = sources.iter().all(|s| s.ok);
    let mut outcome = DrillOutcome {
        job: job.name.clone(),
        time_ns,
        ok,
        duration_ns,
        target_ns,
        rto_met: target_ns.map(|t| ok && duration_ns <= t),
        message: String::new(),
        sources,
        report: None,
        report_error: None,
    };
    outcome.message = message(&outcome);
    match repo.save_report(&report_of(&outcome)) {
        Ok(name) => outcome.report = Some(name.path()),
        Err(e) => outcome.report_error = Some(e.to_string()),
    }
    Ok(outcome)
}

fn interrupted() -> Error {
    Error::new(
        ErrorKind::Interrupted,
        "interrupted; the drill was not recorded",
    )
}

/// The report's one line: what was restored, or the first problem of each failed source.
fn message(o: &DrillOutcome) -> String {
    let secs = o.duration_ns as f64 / 1e9;
    let target = match (o.target_ns, o.rto_met) {
        (Some(t), Some(true)) => format!(", within the RTO of {}", human(t)),
        (Some(t), _) if o.ok => format!(", over the RTO of {}", human(t)),
        _ => String::new(),
    };
    let mut m = if o.ok {
        format!(
            "restored and verified {} source(s) in {secs:.1}s{target}",
            o.sources.len()
        )
    } else {
        let failed: Vec<String> = o
            .sources
            .iter()
            .filter(|s| !s.ok)
            .map(|s| {
                let more = match s.problem_count {
                    0 | 1 => String::new(),
                    n => format!(" (and {} more problem(s))", n - 1),
                };
                format!(
                    "{}: {}{more}",
                    s.source,
                    s.problems.first().map_or("failed", |p| p.as_str())
                )
            })
            .collect();
        format!("drill failed after {secs:.1}s: {}", failed.join("; "))
    };
    if m.len() > MESSAGE_MAX {
        let mut cut = MESSAGE_MAX;
        while !m.is_char_boundary(cut) {
            cut -= 1;
        }
        m.truncate(cut);
        m.push('…');
    }
    m
}

fn human(ns: u64) -> String {
    super::units::format_duration(Duration::from_nanos(ns))
}

/// The report stored for `o`: per source its snapshot, bytes, items, seconds and first
/// problem, under keys prefixed with the source's label.
fn report_of(o: &DrillOutcome) -> Report {
    let mut info = Vec::new();
    for s in &o.sources {
        let key = |k: &str| format!("{}.{k}", s.source);
        if let Some(id) = &s.snapshot {
            info.push((key("snapshot"), id.clone()));
        }
        info.push((key("bytes"), s.bytes.to_string()));
        info.push((key(s.item_kind), s.items.to_string()));
        info.push((key("seconds"), format!("{:.3}", s.seconds)));
        info.extend(s.details.iter().map(|(k, v)| (key(k), v.clone())));
        if let Some(p) = s.problems.first() {
            let mut p = p.clone();
            if p.len() > MESSAGE_MAX {
                let mut cut = MESSAGE_MAX;
                while !p.is_char_boundary(cut) {
                    cut -= 1;
                }
                p.truncate(cut);
            }
            info.push((key("error"), p));
        }
    }
    Report {
        kind: ReportKind::Drill,
        job: o.job.clone(),
        time_ns: o.time_ns,
        duration_ns: o.duration_ns,
        ok: o.ok,
        snapshots: o.sources.iter().filter_map(|s| s.snapshot_id).collect(),
        target_ns: o.target_ns,
        message: o.message.clone(),
        info,
    }
}

fn rfc3339<S: serde::Serializer>(ns: &i64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format_time_rfc3339(*ns))
}

fn rfc3339_opt<S: serde::Serializer>(
    ns: &Option<i64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match ns {
        Some(ns) => rfc3339(ns, s),
        None => s.serialize_none(),
    }
}

fn seconds<S: serde::Serializer>(ns: &u64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(*ns as f64 / 1e9)
}

fn seconds_opt<S: serde::Serializer>(
    ns: &Option<u64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match ns {
        Some(ns) => seconds(ns, s),
        None => s.serialize_none(),
    }
}
