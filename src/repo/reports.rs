//! Check and drill reports (format-spec §5.11): stored in the repository so that every machine
//! with the password sees the same last results, whichever machine ran them.
//!
//! Growth is bounded: saving a report deletes all but the newest `KEEP_REPORTS` of its job and
//! kind. Deleting old reports is housekeeping, so a deletion that fails (a region that is down)
//! is a warning and the next save tries again.

use super::Repository;
use crate::backend::{ObjectKind, ObjectName};
use crate::error::{ErrorKind, Result};
use crate::format::report::Report;
use std::collections::HashMap;

/// Reports kept per (job, kind).
pub const KEEP_REPORTS: usize = 20;

impl Repository {
    /// Store `report`, then delete the older reports of its job and kind beyond the newest
    /// `KEEP_REPORTS` (never the one just stored).
    pub fn save_report(&self, report: &Report) -> Result<ObjectName> {
        report.validate()?;
        let name = self.write_object(ObjectKind::Report, report.encode(&self.keys, None))?;
        if let Err(e) = self.trim_reports(report, &name) {
            (self.warn)(&format!("old reports were not trimmed: {e}"));
        }
        Ok(name)
    }

    /// Every readable report, oldest first. A report that cannot be read or opened is left
    /// out with a warning (`check` reports it as damage): one bad object must not hide the
    /// others' results.
    pub fn reports(&self) -> Result<Vec<(ObjectName, Report)>> {
        let mut out = Vec::new();
        for (name, _) in self.backend.list(ObjectKind::Report)? {
            let decoded = self
                .read_object(&name)
                .and_then(|bytes| Report::decode(&self.keys, &bytes));
            match decoded {
                Ok(r) => out.push((name, r)),
                // Trimmed by another machine's save since the listing.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) if e.kind() == ErrorKind::Corrupt || e.kind() == ErrorKind::Unsupported => {
                    (self.warn)(&format!("{name} skipped: {e}"))
                }
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|(name, r)| (r.time_ns, *name));
        Ok(out)
    }

    fn trim_reports(&self, saved: &Report, saved_name: &ObjectName) -> Result<()> {
        let mut same: Vec<(ObjectName, Report)> = self
            .reports()?
            .into_iter()
            .filter(|(n, r)| r.kind == saved.kind && r.job == saved.job && n != saved_name)
            .collect();
        // Newest first; the saved report takes one of the places.
        same.sort_by_key(|(name, r)| std::cmp::Reverse((r.time_ns, *name)));
        let mut failed: HashMap<String, usize> = HashMap::new();
        for (name, _) in same.iter().skip(KEEP_REPORTS.saturating_sub(1)) {
            if let Err(e) = self.backend.delete(name) {
                *failed.entry(e.to_string()).or_default() += 1;
            }
        }
        if let Some((e, n)) = failed.into_iter().next() {
            (self.warn)(&format!("{n} old report(s) could not be deleted: {e}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::format::report::ReportKind;

    fn memory_repo() -> Repository {
        crate::repo::memory_repository()
    }

    fn report(job: &str, kind: ReportKind, time_ns: i64) -> Report {
        Report {
            kind,
            job: job.into(),
            time_ns,
            duration_ns: 1,
            ok: true,
            snapshots: vec![],
            target_ns: None,
            message: String::new(),
            info: vec![],
        }
    }

    #[test]
    fn keeps_the_newest_per_job_and_kind() {
        let repo = memory_repo();
        for t in 0..25 {
            repo.save_report(&report("app", ReportKind::Drill, 100 + t))
                .unwrap();
        }
        repo.save_report(&report("app", ReportKind::Check, 1))
            .unwrap();
        repo.save_report(&report("db", ReportKind::Drill, 1))
            .unwrap();
        // An old report saved last (a slow clock) is kept, and takes a place.
        let late = repo
            .save_report(&report("app", ReportKind::Drill, 5))
            .unwrap();
        let all = repo.reports().unwrap();
        let drills: Vec<i64> = all
            .iter()
            .filter(|(_, r)| r.job == "app" && r.kind == ReportKind::Drill)
            .map(|(_, r)| r.time_ns)
            .collect();
        assert_eq!(drills.len(), KEEP_REPORTS);
        assert_eq!(drills[0], 5);
        assert_eq!(drills[1..], (106..125).collect::<Vec<_>>()[..]);
        assert!(all.iter().any(|(n, _)| *n == late));
        assert_eq!(all.len(), KEEP_REPORTS + 2);
        // Oldest first.
        assert!(all.windows(2).all(|w| w[0].1.time_ns <= w[1].1.time_ns));
    }

    #[test]
    fn a_damaged_report_is_skipped() {
        let repo = memory_repo();
        repo.save_report(&report("app", ReportKind::Check, 1))
            .unwrap();
        let junk = b"CFFR\x03 not a sealed report".to_vec();
        repo.write_object(ObjectKind::Report, junk).unwrap();
        let all = repo.reports().unwrap();
        assert_eq!(all.len(), 1);
    }
}
