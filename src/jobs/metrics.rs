//! Prometheus metrics for node_exporter's textfile collector: one file in the text exposition
//! format, replaced atomically after every run so the collector never reads half of it.
//! Alert on `coffer_job_rpo_ok == 0`, `coffer_job_last_check_ok == 0`, `coffer_job_rto_ok == 0`,
//! `coffer_job_wal_rpo_ok == 0`, `coffer_region_up == 0`, or on `time() -
//! coffer_metrics_written_timestamp_seconds` when runs stop altogether.

use super::status::JobStatus;
use crate::backend::{Backend, ObjectKind};
use crate::error::{Error, Result};
use crate::hostfile;
use crate::progress::NoProgress;
use crate::sync::{sync, SyncOptions};
use crate::wal::status::ArchiveStatus;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

/// One region as monitoring sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RegionHealth {
    pub name: String,
    /// Its objects could be listed.
    pub reachable: bool,
    /// It lacks objects another region holds (`coffer sync` catches it up).
    pub behind: bool,
}

/// Compare the regions' listings (no data is read): which can be reached, which are behind.
/// One region alone is never behind.
pub fn region_health(regions: &[(String, Arc<dyn Backend>)]) -> Result<Vec<RegionHealth>> {
    if let [(name, backend)] = regions {
        // Nothing to compare with: listing one small kind says whether it answers.
        return Ok(vec![RegionHealth {
            name: name.clone(),
            reachable: backend.list(ObjectKind::Config).is_ok(),
            behind: false,
        }]);
    }
    let opts = SyncOptions {
        verify: false,
        dry_run: true,
    };
    let report = sync(regions, opts, &NoProgress)?;
    Ok(report
        .regions
        .into_iter()
        .map(|r| RegionHealth {
            name: r.region,
            reachable: r.unreachable.is_none(),
            behind: r.unreachable.is_some() || r.missing > 0 || r.damaged > 0,
        })
        .collect())
}

/// One metric family: its samples, each with its labels.
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

struct Families(Vec<Family>);

impl Families {
    fn add(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        v: f64,
    ) {
        match self.0.iter_mut().find(|f| f.name == name) {
            Some(f) => f.samples.push((labels, v)),
            None => self.0.push(Family {
                name,
                help,
                samples: vec![(labels, v)],
            }),
        }
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn unix(ns: i64) -> f64 {
    ns as f64 / 1e9
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The metrics text for `jobs` and `regions`, written at `now_ns`.
pub fn render(jobs: &[JobStatus], regions: &[RegionHealth], now_ns: i64) -> String {
    render_with_archive(jobs, regions, None, now_ns)
}

/// The metrics text for `jobs`, `regions` and the WAL archive, written at `now_ns`.
pub fn render_with_archive(
    jobs: &[JobStatus],
    regions: &[RegionHealth],
    archive: Option<&ArchiveStatus>,
    now_ns: i64,
) -> String {
    let mut m = Families(Vec::new());
    m.add(
        "coffer_metrics_written_timestamp_seconds",
        "When coffer last wrote this file (unix seconds).",
        vec![],
        unix(now_ns),
    );
    for j in jobs {
        let job = || vec![("job", j.job.clone())];
        m.add(
            "coffer_job_healthy",
            "1 when the job has no problem (RPO, check, drill, failed steps).",
            job(),
            flag(j.healthy),
        );
        if let Some(t) = j.last_backup_ns {
            m.add(
                "coffer_job_last_success_timestamp_seconds",
                "Oldest of the newest snapshots of the job's sources (unix seconds).",
                job(),
                unix(t),
            );
        }
        if let Some(a) = j.age_ns {
            m.add(
                "coffer_job_age_seconds",
                "Age of the job's stalest source's newest snapshot.",
                job(),
                secs(a),
            );
        }
        if let Some(rpo) = j.rpo_ns {
            m.add(
                "coffer_job_rpo_seconds",
                "The job's recovery point objective.",
                job(),
                secs(rpo),
            );
        }
        if let Some(ok) = j.rpo_ok {
            m.add(
                "coffer_job_rpo_ok",
                "1 when every source has a snapshot younger than the RPO.",
                job(),
                flag(ok),
            );
        }
        for s in &j.sources {
            let src = || vec![("job", j.job.clone()), ("source", s.source.clone())];
            let Some(last) = &s.last else { continue };
            m.add(
                "coffer_source_last_success_timestamp_seconds",
                "Time of the source's newest snapshot (unix seconds).",
                src(),
                unix(last.time_ns),
            );
            m.add(
                "coffer_source_last_duration_seconds",
                "How long the source's newest backup took.",
                src(),
                secs(last.duration_ns),
            );
            m.add(
                "coffer_source_last_bytes_added",
                "Bytes the source's newest backup added to the repository, as stored.",
                src(),
                last.bytes_added as f64,
            );
            if let Some(a) = s.age_ns {
                m.add(
                    "coffer_source_age_seconds",
                    "Age of the source's newest snapshot.",
                    src(),
                    secs(a),
                );
            }
            if let Some(rpo) = j.rpo_ns {
                m.add(
                    "coffer_source_rpo_seconds",
                    "The RPO the source is held to (its job's).",
                    src(),
                    secs(rpo),
                );
                let ok = s.age_ns.is_some_and(|a| a <= rpo);
                m.add(
                    "coffer_source_rpo_ok",
                    "1 when the source's newest snapshot is younger than the RPO.",
                    src(),
                    flag(ok),
                );
            }
        }
        if let Some(c) = &j.last_check {
            m.add(
                "coffer_job_last_check_ok",
                "1 when the last check recorded in the repository passed.",
                job(),
                flag(c.ok),
            );
            m.add(
                "coffer_job_last_check_timestamp_seconds",
                "When the last check ran (unix seconds).",
                job(),
                unix(c.time_ns),
            );
        }
        if let Some(d) = &j.last_drill {
            m.add(
                "coffer_job_last_drill_ok",
                "1 when the last restore drill succeeded and verified.",
                job(),
                flag(d.ok),
            );
            m.add(
                "coffer_job_last_drill_timestamp_seconds",
                "When the last restore drill ran (unix seconds).",
                job(),
                unix(d.time_ns),
            );
            m.add(
                "coffer_job_last_drill_rto_seconds",
                "RTO achieved by the last drill: its restore's wall time.",
                job(),
                secs(d.duration_ns),
            );
        }
        if let Some(rto) = j.rto_ns {
            m.add(
                "coffer_job_rto_target_seconds",
                "The job's recovery time objective.",
                job(),
                secs(rto),
            );
        }
        if let Some(ok) = j.rto_ok {
            m.add(
                "coffer_job_rto_ok",
                "1 when the last drill succeeded within the RTO.",
                job(),
                flag(ok),
            );
        }
        if let Some(a) = j.wal_age_ns {
            m.add(
                "coffer_job_wal_age_seconds",
                "Age of the WAL archive's newest segment, for a job with postgres_pitr.",
                job(),
                secs(a),
            );
        }
        if let Some(ok) = j.wal_rpo_ok {
            m.add(
                "coffer_job_wal_rpo_ok",
                "1 when the WAL archive's newest segment is younger than the job's RPO.",
                job(),
                flag(ok),
            );
        }
        for a in &j.attempts {
            let step = || vec![("job", j.job.clone()), ("step", a.step.name().to_string())];
            m.add(
                "coffer_job_step_last_ok",
                "1 when this machine's last attempt of the step succeeded.",
                step(),
                flag(a.ok),
            );
            m.add(
                "coffer_job_step_last_timestamp_seconds",
                "When this machine last attempted the step (unix seconds).",
                step(),
                unix(a.time_ns),
            );
            m.add(
                "coffer_job_step_last_duration_seconds",
                "How long this machine's last attempt of the step took.",
                step(),
                secs(a.duration_ns),
            );
        }
    }
    if let Some(a) = archive {
        add_archive(&mut m, a);
    }
    for r in regions {
        let region = || vec![("region", r.name.clone())];
        m.add(
            "coffer_region_up",
            "1 when the region could be listed.",
            region(),
            flag(r.reachable),
        );
        m.add(
            "coffer_region_behind",
            "1 when the region lacks objects (coffer sync catches it up).",
            region(),
            flag(r.behind),
        );
    }
    let mut out = String::new();
    for f in &m.0 {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} gauge", f.name);
        for (labels, v) in &f.samples {
            out.push_str(f.name);
            if !labels.is_empty() {
                let parts: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                let _ = write!(out, "{{{}}}", parts.join(","));
            }
            let _ = writeln!(out, " {v}");
        }
    }
    out
}

/// The repository's WAL archive: size, newest segment, recovery window.
fn add_archive(m: &mut Families, a: &ArchiveStatus) {
    m.add(
        "coffer_wal_archive_files",
        "Files in the PostgreSQL WAL archive.",
        vec![],
        a.files as f64,
    );
    m.add(
        "coffer_wal_archive_bytes",
        "Stored bytes of the PostgreSQL WAL archive.",
        vec![],
        a.bytes as f64,
    );
    m.add(
        "coffer_wal_base_backups",
        "Base backups the WAL archive serves.",
        vec![],
        a.base_backups as f64,
    );
    if let (Some(t), Some(age)) = (a.newest_ns, a.age_ns) {
        m.add(
            "coffer_wal_newest_segment_timestamp_seconds",
            "When PostgreSQL finished the newest archived WAL segment (unix seconds).",
            vec![],
            unix(t),
        );
        m.add(
            "coffer_wal_newest_segment_age_seconds",
            "Age of the newest archived WAL segment: the database's live RPO.",
            vec![],
            secs(age),
        );
    }
    if let (Some(s), Some(e)) = (a.window_start_ns, a.window_end_ns) {
        m.add(
            "coffer_wal_recovery_window_start_timestamp_seconds",
            "The earliest point in time the archive restores to (unix seconds).",
            vec![],
            unix(s),
        );
        m.add(
            "coffer_wal_recovery_window_end_timestamp_seconds",
            "The latest point in time the archive restores to (unix seconds).",
            vec![],
            unix(e),
        );
    }
}

/// A label value as the text format requires: `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Replace `path` with `text` atomically: a temporary file with a random name in the same
/// folder, then a rename, so node_exporter reads the old file or the new one, never a part,
/// and a symlink planted in a shared textfile folder is never written through.
pub fn write_textfile(path: &Path, text: &str) -> Result<()> {
    if path.file_name().is_none() {
        return Err(Error::invalid(format!(
            "{} is not a file name",
            path.display()
        )));
    }
    // 0644 on purpose, unlike every other file coffer keeps: node_exporter runs as its own
    // user and must read it, and it holds only ages, sizes and job names.
    hostfile::replace(path, text.as_bytes(), 0o644)
        .map_err(|e| Error::io(format!("metrics file {}", path.display()), e))
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
