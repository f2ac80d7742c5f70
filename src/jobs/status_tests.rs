use super::*;
use crate::config::ConfigFile;
use crate::format::snapshot::Summary;
use crate::id::BlobId;
use crate::jobs::state::Attempt;
use std::path::Path;

const MIN: i64 = 60_000_000_000;
const HOUR: i64 = 60 * MIN;

fn t(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>().unwrap().as_nanosecond() as i64
}

/// Job "app": its files and one database, daily at 02:30, with `extra` lines.
fn job(extra: &str) -> Job {
    let text = format!(
        "[[job]]\nname = \"app\"\npaths = [\"/srv\"]\npostgres = [\"postgresql://u:pw@db/app\"]\n\
         schedule = \"daily 02:30\"\n{extra}"
    );
    ConfigFile::parse(Path::new("t.toml"), &text)
        .unwrap()
        .jobs
        .remove(0)
}

const TARGETS: &str = "rpo = \"26h\"\nrto = \"15m\"\ncheck = { schedule = \"weekly\" }\n\
    drill = { schedule = \"weekly\", target = \"/tmp/d\", postgres = \"postgresql://scratch/d\" }\n";

fn snap(n: u8, tags: &[&str], time_ns: i64) -> (SnapshotId, Snapshot) {
    let s = Snapshot {
        time_ns,
        host: "h".into(),
        user: "u".into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        paths: vec![],
        root: BlobId([n; 32]),
        parent: None,
        source: "files".into(),
        info: vec![],
        summary: Summary {
            duration_ns: 90_000_000_000,
            bytes_added_stored: 1000 + n as u64,
            ..Default::default()
        },
    };
    (SnapshotId([n; 32]), s)
}

const FILES: &[&str] = &["job:app", "source:files"];
const DB: &[&str] = &["job:app", "source:postgres:db/app"];

fn report(kind: ReportKind, job: &str, time_ns: i64, duration_ns: u64, ok: bool) -> Report {
    Report {
        kind,
        job: job.into(),
        time_ns,
        duration_ns,
        ok,
        snapshots: vec![],
        target_ns: None,
        message: if ok {
            "fine".into()
        } else {
            "pack 1234 is damaged".into()
        },
        info: vec![],
    }
}

fn status(snaps: &[(SnapshotId, Snapshot)], reports: &[Report], job: &Job, now: i64) -> JobStatus {
    job_status(
        snaps,
        reports,
        job,
        &JobState::default(),
        now,
        &TimeZone::UTC,
    )
}

#[test]
fn fresh_backups_a_passed_check_and_a_fast_drill_are_healthy() {
    let now = t("2026-11-27T09:00:00Z");
    let snaps = [
        snap(1, FILES, t("2026-11-26T02:30:00Z")),
        snap(2, FILES, t("2026-11-27T02:30:00Z")),
        snap(3, DB, t("2026-11-27T02:31:00Z")),
        // Another job's and an untagged snapshot are not this job's.
        snap(4, &["job:other", "source:files"], now),
        snap(5, &[], now),
    ];
    let reports = [
        report(
            ReportKind::Check,
            "app",
            t("2026-11-27T03:00:00Z"),
            MIN as u64,
            true,
        ),
        report(
            ReportKind::Drill,
            "app",
            t("2026-11-27T03:10:00Z"),
            10 * MIN as u64,
            true,
        ),
    ];
    let s = status(&snaps, &reports, &job(TARGETS), now);
    assert!(s.healthy, "{:?}", s.problems);
    assert_eq!(s.sources.len(), 2);
    assert_eq!(s.sources[0].source, "files");
    let files = s.sources[0].last.as_ref().unwrap();
    assert_eq!(files.id, SnapshotId([2; 32]).to_hex());
    assert_eq!(
        (files.duration_ns, files.bytes_added),
        (90_000_000_000, 1002)
    );
    // The job is as fresh as its stalest source.
    assert_eq!(s.last_backup_ns, Some(t("2026-11-27T02:30:00Z")));
    assert_eq!(s.age_ns, Some((6 * HOUR + 30 * MIN) as u64));
    assert_eq!((s.rpo_ok, s.rto_ok), (Some(true), Some(true)));
    assert!(s.last_check.as_ref().unwrap().ok);
    assert_eq!(s.last_drill.as_ref().unwrap().duration_ns, 10 * MIN as u64);
    assert_eq!(s.next_due[0].step, Step::Backup);
    assert_eq!(s.next_due[0].time_ns, Some(t("2026-11-28T02:30:00Z")));
    assert_eq!(s.next_due.len(), 3);
}

#[test]
fn a_missed_night_is_past_the_rpo() {
    let snaps = [
        snap(1, FILES, t("2026-11-26T03:00:00Z")),
        snap(2, DB, t("2026-11-27T02:30:00Z")),
    ];
    let s = status(
        &snaps,
        &[],
        &job("rpo = \"26h\"\n"),
        t("2026-11-27T09:00:00Z"),
    );
    assert_eq!(s.rpo_ok, Some(false));
    assert!(!s.healthy);
    assert_eq!(
        s.problems,
        vec!["past its RPO: the newest snapshot of files is 30h old, RPO 26h"]
    );
    // Overdue: the next backup was due at the slot it missed.
    assert!(s.next_due[0].time_ns.unwrap() <= s.now_ns);
}

#[test]
fn a_source_never_backed_up_fails_the_rpo_and_is_named() {
    let snaps = [snap(1, FILES, t("2026-11-27T02:30:00Z"))];
    let s = status(
        &snaps,
        &[],
        &job("rpo = \"26h\"\n"),
        t("2026-11-27T03:00:00Z"),
    );
    assert_eq!(s.last_backup_ns, None);
    assert_eq!(s.rpo_ok, Some(false));
    assert!(
        s.problems[0].contains("postgres:db/app has no snapshot"),
        "{:?}",
        s.problems
    );
    assert!(s.sources[1].last.is_none());
}

#[test]
fn without_rpo_or_rto_nothing_is_checked_and_the_notes_say_so() {
    let snaps = [snap(1, FILES, 0), snap(2, DB, 0)];
    let s = status(&snaps, &[], &job(""), t("2026-11-27T03:00:00Z"));
    assert!(s.healthy, "{:?}", s.problems);
    assert_eq!((s.rpo_ok, s.rto_ok), (None, None));
    assert!(s.notes.iter().any(|n| n.contains("no RPO set")));
    assert!(s.notes.iter().any(|n| n.contains("no RTO set")));
}

#[test]
fn the_last_check_decides_and_a_repository_wide_check_counts() {
    let now = t("2026-11-27T09:00:00Z");
    let snaps = [snap(1, FILES, now - HOUR), snap(2, DB, now - HOUR)];
    let failed = report(ReportKind::Check, "", now - 2 * HOUR, 5, false);
    let passed = report(ReportKind::Check, "app", now - 3 * HOUR, 5, true);
    let other = report(ReportKind::Check, "other", now - MIN, 5, true);
    let s = status(
        &snaps,
        &[passed.clone(), failed.clone(), other],
        &job(""),
        now,
    );
    assert!(!s.last_check.as_ref().unwrap().ok);
    assert_eq!(
        s.problems,
        vec!["last check failed at 2026-11-27 07:00: pack 1234 is damaged"]
    );
    let later = report(ReportKind::Check, "app", now - MIN, 5, true);
    assert!(status(&snaps, &[failed, later], &job(""), now).healthy);
}

#[test]
fn a_slow_failed_or_missing_drill_misses_the_rto() {
    let now = t("2026-11-27T09:00:00Z");
    let snaps = [snap(1, FILES, now - HOUR), snap(2, DB, now - HOUR)];
    let j = job(TARGETS);
    let slow = report(
        ReportKind::Drill,
        "app",
        t("2026-11-27T04:00:00Z"),
        20 * MIN as u64,
        true,
    );
    let s = status(&snaps, &[slow], &j, now);
    assert_eq!(s.rto_ok, Some(false));
    assert_eq!(
        s.problems,
        vec!["last drill took 20m, RTO 15m (at 2026-11-27 04:00)"]
    );
    let failed = report(ReportKind::Drill, "app", now - HOUR, MIN as u64, false);
    let s = status(&snaps, &[failed], &j, now);
    assert_eq!(s.rto_ok, Some(false));
    assert!(
        s.problems[0].starts_with("last drill failed at"),
        "{:?}",
        s.problems
    );
    let s = status(&snaps, &[], &j, now);
    assert_eq!(s.rto_ok, Some(false));
    assert_eq!(s.problems, vec!["RTO 15m not proven: no drill has run"]);
    // Another job's drill proves nothing for this one.
    let theirs = report(ReportKind::Drill, "other", now - HOUR, MIN as u64, true);
    assert!(status(&snaps, &[theirs], &j, now).last_drill.is_none());
}

#[test]
fn local_failures_count_until_the_repository_records_a_later_success() {
    let now = t("2026-11-27T09:00:00Z");
    let snaps = [snap(1, FILES, now - 2 * HOUR), snap(2, DB, now - 2 * HOUR)];
    let failed = |time_ns| Attempt {
        time_ns,
        duration_ns: 5,
        ok: false,
        message: "pg_dump: connection refused".into(),
    };
    let mut local = JobState::default();
    local.record(Step::Backup, failed(now - HOUR));
    local.record(Step::Prune, failed(now - 3 * HOUR));
    let j = job("");
    let s = job_status(&snaps, &[], &j, &local, now, &TimeZone::UTC);
    assert_eq!(
        s.problems,
        vec![
            "last backup attempt failed at 2026-11-27 08:00: pg_dump: connection refused",
            "last prune attempt failed at 2026-11-27 06:00: pg_dump: connection refused",
        ]
    );
    // A backup that failed before the newest snapshots were taken (here or elsewhere) is moot.
    local.record(Step::Backup, failed(now - 3 * HOUR));
    let s = job_status(&snaps, &[], &j, &local, now, &TimeZone::UTC);
    assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
    assert!(s
        .attempts
        .iter()
        .any(|a| a.step == Step::Backup && a.superseded));
}

#[test]
fn durations_read_like_the_job_file() {
    let s = |secs: u64| human(secs * 1_000_000_000);
    assert_eq!(s(42), "42s");
    assert_eq!(s(20 * 60), "20m");
    assert_eq!(s(12 * 60 + 30), "12m30s");
    assert_eq!(s(30 * 3600 + 20), "30h");
    assert_eq!(s(26 * 3600 + 15 * 60), "26h15m");
    assert_eq!(s(9 * 86400 + 4 * 3600), "9d4h");
}

#[test]
fn the_json_form_has_readable_times_and_seconds() {
    let now = t("2026-11-27T09:00:00Z");
    let snaps = [snap(1, FILES, now - HOUR), snap(2, DB, now - HOUR)];
    let v = serde_json::to_value(status(&snaps, &[], &job("rpo = \"26h\"\n"), now)).unwrap();
    assert_eq!(v["last_backup"], "2026-11-27T08:00:00Z");
    assert_eq!(v["age_seconds"], 3600.0);
    assert_eq!(v["rpo_seconds"], 93600.0);
    assert_eq!(v["rpo_ok"], true);
    assert_eq!(v["rto_ok"], serde_json::Value::Null);
    assert_eq!(v["sources"][1]["source"], "postgres:db/app");
    assert_eq!(v["next_due"][0]["step"], "backup");
}

#[test]
fn a_snapshot_that_lacks_unreadable_files_or_a_source_never_backed_up_is_a_problem() {
    let j = job("");
    let mut files = snap(1, FILES, t("2026-11-27T02:31:00Z"));
    files.1.summary.read_errors = 2;
    let db = snap(2, DB, t("2026-11-27T02:32:00Z"));
    let st = status(
        &[files.clone(), db.clone()],
        &[],
        &j,
        t("2026-11-27T08:00:00Z"),
    );
    assert!(!st.healthy);
    assert!(
        st.problems
            .iter()
            .any(|p| p.contains("files") && p.contains("could not read")),
        "{:?}",
        st.problems
    );
    // Without an RPO, a source with no snapshot at all is still reported.
    let st = status(&[db], &[], &j, t("2026-11-27T08:00:00Z"));
    assert!(!st.healthy);
    assert!(
        st.problems
            .iter()
            .any(|p| p.contains("files has never been backed up")),
        "{:?}",
        st.problems
    );
    files.1.summary.read_errors = 0;
    let st = status(
        &[files, snap(2, DB, t("2026-11-27T02:32:00Z"))],
        &[],
        &j,
        t("2026-11-27T08:00:00Z"),
    );
    assert!(st.healthy, "{:?}", st.problems);
}

#[test]
fn a_drill_that_stopped_running_is_flagged_once_a_period_overdue() {
    let j = job("check = { schedule = \"weekly\" }\ndrill = { schedule = \"weekly\", target = \"/tmp/d\", postgres = \"postgresql://scratch/d\" }\n");
    let night = t("2026-11-27T02:31:00Z");
    let snaps = [snap(1, FILES, night), snap(2, DB, night)];
    // Sunday 2026-11-22 was the last weekly slot before the reports.
    let reports = [
        report(ReportKind::Check, "app", t("2026-11-22T01:00:00Z"), 1, true),
        report(ReportKind::Drill, "app", t("2026-11-22T01:00:00Z"), 1, true),
    ];
    let st = status(&snaps, &reports, &j, t("2026-11-27T08:00:00Z"));
    assert!(st.healthy, "{:?}", st.problems);
    // Due again on Sunday the 29th; on Monday 2026-12-07 it is over a week late.
    let later = [
        snap(3, FILES, t("2026-12-07T02:31:00Z")),
        snap(4, DB, t("2026-12-07T02:31:00Z")),
    ];
    let st = status(&later, &reports, &j, t("2026-12-07T08:00:00Z"));
    assert!(
        st.problems.iter().any(|p| p.contains("drill is overdue")),
        "{:?}",
        st.problems
    );
    assert!(st.problems.iter().any(|p| p.contains("check is overdue")));
}

/// The WAL archive at `now`, its newest segment written `age_ns` before.
fn archive(now: i64, age_ns: Option<i64>) -> ArchiveStatus {
    ArchiveStatus {
        files: 3,
        bytes: 3000,
        segments: 3,
        newest_segment: age_ns.map(|_| "000000010000000000000009".to_string()),
        newest_ns: age_ns.map(|a| now - a),
        age_ns: age_ns.map(|a| a as u64),
        base_backups: 1,
        window_start_ns: None,
        window_end_ns: None,
    }
}

#[test]
fn a_pitr_job_is_held_to_its_rpo_by_the_newest_wal_segment() {
    let now = t("2026-11-27T09:00:00Z");
    // The cluster's base backup is one of the job's sources: without it, nothing could be
    // recovered however fresh the WAL (see the end of this test).
    let snaps = [
        snap(1, FILES, t("2026-11-27T08:55:00Z")),
        snap(2, DB, t("2026-11-27T08:56:00Z")),
        snap(
            3,
            &["job:app", "source:postgres-pitr:db/app"],
            t("2026-11-27T08:57:00Z"),
        ),
    ];
    let pitr = job("rpo = \"15m\"\npostgres_pitr = { url = \"postgresql://db/app\" }\n");
    let judged = |a: Option<&ArchiveStatus>| {
        let mut s = status(&snaps, &[], &pitr, now);
        judge_wal(&mut s, &pitr, a);
        s
    };
    // Fresh: healthy, and the age is reported.
    let s = judged(Some(&archive(now, Some(2 * MIN))));
    assert!(s.healthy, "{:?}", s.problems);
    assert_eq!(
        (s.wal_age_ns, s.wal_rpo_ok),
        (Some(2 * MIN as u64), Some(true))
    );
    // Archiving stopped 40 minutes ago: the snapshots are fresh, the database is not.
    let s = judged(Some(&archive(now, Some(40 * MIN))));
    assert!(!s.healthy);
    assert_eq!(s.wal_rpo_ok, Some(false));
    assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
    assert!(
        s.problems[0].contains("(000000010000000000000009) is 40m old, RPO 15m"),
        "{}",
        s.problems[0]
    );
    // Nothing archived at all.
    for a in [None, Some(archive(now, None))] {
        let s = judged(a.as_ref());
        assert!(!s.healthy);
        assert!(
            s.problems[0].contains("no WAL segment is archived"),
            "{:?}",
            s.problems
        );
    }
    // A job that names no PITR keeps today's behaviour, whatever the archive.
    let plain = job("rpo = \"15m\"\n");
    let mut s = status(&snaps, &[], &plain, now);
    judge_wal(&mut s, &plain, Some(&archive(now, Some(40 * MIN))));
    assert!(s.healthy, "{:?}", s.problems);
    assert_eq!((s.wal_age_ns, s.wal_rpo_ok), (None, None));
    // Fresh WAL but no base backup: the cluster cannot be recovered, and status says so.
    let s = {
        let mut s = status(&snaps[..2], &[], &pitr, now);
        judge_wal(&mut s, &pitr, Some(&archive(now, Some(2 * MIN))));
        s
    };
    assert!(!s.healthy);
    assert!(
        s.problems
            .iter()
            .any(|p| p.contains("postgres-pitr:db/app has no snapshot")),
        "{:?}",
        s.problems
    );
}
