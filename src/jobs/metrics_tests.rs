use super::*;
use crate::config::ConfigFile;
use crate::format::report::{Report, ReportKind};
use crate::format::snapshot::{Snapshot, Summary};
use crate::id::{BlobId, SnapshotId};
use crate::jobs::state::{Attempt, JobState};
use crate::jobs::status::job_status;
use crate::jobs::Step;
use std::collections::{BTreeMap, HashSet};

const NOW: i64 = 1_800_000_000_000_000_000;
const HOUR: i64 = 3_600_000_000_000;

/// A job whose files are fresh and whose database is 30 h old (RPO 26 h), checked and drilled.
fn status() -> JobStatus {
    let text =
        "[[job]]\nname = \"app\"\npaths = [\"/srv\"]\npostgres = [\"postgresql://db/app\"]\n\
        schedule = \"daily 02:30\"\nrpo = \"26h\"\nrto = \"15m\"\n";
    let job = ConfigFile::parse(Path::new("t.toml"), text)
        .unwrap()
        .jobs
        .remove(0);
    let snap = |n: u8, source: &str, time_ns: i64| {
        let s = Snapshot {
            time_ns,
            host: "h".into(),
            user: "u".into(),
            tags: vec!["job:app".into(), format!("source:{source}")],
            paths: vec![],
            root: BlobId([n; 32]),
            parent: None,
            source: "files".into(),
            info: vec![],
            summary: Summary {
                duration_ns: 2_500_000_000,
                bytes_added_stored: 4096,
                ..Default::default()
            },
        };
        (SnapshotId([n; 32]), s)
    };
    let snaps = [
        snap(1, "files", NOW - HOUR),
        snap(2, "postgres:db/app", NOW - 30 * HOUR),
    ];
    let report = |kind, ok, duration_ns| Report {
        kind,
        job: "app".into(),
        time_ns: NOW - 2 * HOUR,
        duration_ns,
        ok,
        snapshots: vec![],
        target_ns: Some(900_000_000_000),
        message: String::new(),
        info: vec![],
    };
    let reports = [
        report(ReportKind::Check, false, 1),
        report(ReportKind::Drill, true, 600_000_000_000),
    ];
    let mut local = JobState::default();
    local.record(
        Step::Backup,
        Attempt {
            time_ns: NOW - HOUR,
            duration_ns: 3_000_000_000,
            ok: true,
            message: "2 snapshots".into(),
        },
    );
    job_status(
        &snaps,
        &reports,
        &job,
        &local,
        NOW,
        &jiff::tz::TimeZone::UTC,
    )
}

/// Parse the text format back: every sample's family was introduced by `# HELP` and
/// `# TYPE ... gauge`, names and labels are well formed, values are numbers. Returns
/// `name{labels}` (labels sorted) → value.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut helped = HashSet::new();
    let mut typed = HashSet::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.is_empty());
            assert!(helped.insert(name.to_string()), "HELP twice for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert_eq!(kind, "gauge");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            typed.insert(name.to_string());
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').unwrap()),
            None => (series, ""),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        assert!(typed.contains(name), "sample before its TYPE: {line}");
        let mut pairs: Vec<String> = Vec::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (k, v) = rest.split_once("=\"").unwrap();
            // The value ends at the first quote not escaped.
            let mut end = 0;
            let bytes = v.as_bytes();
            while bytes[end] != b'"' {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            pairs.push(format!("{k}={}", &v[..end]));
            rest = v[end + 1..].trim_start_matches(',');
        }
        pairs.sort();
        let key = format!("{name}{{{}}}", pairs.join(","));
        assert!(out.insert(key, value).is_none(), "sample twice: {line}");
    }
    out
}

#[test]
fn every_job_source_and_region_figure_is_in_the_file() {
    let regions = [
        RegionHealth {
            name: "eu".into(),
            reachable: true,
            behind: false,
        },
        RegionHealth {
            name: "us".into(),
            reachable: false,
            behind: true,
        },
    ];
    let m = parse(&render(&[status()], &regions, NOW));
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in {m:#?}"));
    assert_eq!(get("coffer_metrics_written_timestamp_seconds{}"), 1.8e9);
    assert_eq!(get("coffer_job_healthy{job=app}"), 0.0);
    assert_eq!(
        get("coffer_job_last_success_timestamp_seconds{job=app}"),
        1.8e9 - 30.0 * 3600.0
    );
    assert_eq!(get("coffer_job_age_seconds{job=app}"), 30.0 * 3600.0);
    assert_eq!(get("coffer_job_rpo_seconds{job=app}"), 26.0 * 3600.0);
    assert_eq!(get("coffer_job_rpo_ok{job=app}"), 0.0);
    assert_eq!(get("coffer_source_rpo_ok{job=app,source=files}"), 1.0);
    assert_eq!(
        get("coffer_source_rpo_ok{job=app,source=postgres:db/app}"),
        0.0
    );
    assert_eq!(
        get("coffer_source_age_seconds{job=app,source=files}"),
        3600.0
    );
    assert_eq!(
        get("coffer_source_last_duration_seconds{job=app,source=files}"),
        2.5
    );
    assert_eq!(
        get("coffer_source_last_bytes_added{job=app,source=files}"),
        4096.0
    );
    assert_eq!(get("coffer_job_last_check_ok{job=app}"), 0.0);
    assert_eq!(
        get("coffer_job_last_check_timestamp_seconds{job=app}"),
        1.8e9 - 7200.0
    );
    assert_eq!(get("coffer_job_last_drill_rto_seconds{job=app}"), 600.0);
    assert_eq!(get("coffer_job_rto_target_seconds{job=app}"), 900.0);
    assert_eq!(get("coffer_job_rto_ok{job=app}"), 1.0);
    assert_eq!(get("coffer_job_step_last_ok{job=app,step=backup}"), 1.0);
    assert_eq!(
        get("coffer_job_step_last_duration_seconds{job=app,step=backup}"),
        3.0
    );
    assert_eq!(get("coffer_region_up{region=eu}"), 1.0);
    assert_eq!(get("coffer_region_up{region=us}"), 0.0);
    assert_eq!(get("coffer_region_behind{region=us}"), 1.0);
}

#[test]
fn label_values_are_escaped() {
    let regions = [RegionHealth {
        name: "a\"b\\c\nd".into(),
        reachable: true,
        behind: false,
    }];
    let text = render(&[], &regions, NOW);
    assert!(
        text.contains(r#"coffer_region_up{region="a\"b\\c\nd"} 1"#),
        "{text}"
    );
    assert!(parse(&text).contains_key(r#"coffer_region_up{region=a\"b\\c\nd}"#));
}

#[test]
fn the_file_is_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coffer.prom");
    write_textfile(&path, "old 1\n").unwrap();
    write_textfile(&path, &render(&[status()], &[], NOW)).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(parse(&text).contains_key("coffer_job_rpo_ok{job=app}"));
    // No temp file is left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("coffer.prom")]);
    assert!(write_textfile(&dir.path().join("missing/coffer.prom"), "x 1\n").is_err());
}

/// The temporary file used to be `.coffer.prom.PID.tmp`, written with `std::fs::write`: a
/// symlink planted there in a shared textfile folder made coffer overwrite its target.
#[test]
fn a_symlink_at_the_old_temporary_name_is_not_followed_and_the_file_is_0644() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let old_tmp = dir
        .path()
        .join(format!(".coffer.prom.{}.tmp", std::process::id()));
    std::os::unix::fs::symlink(&victim, &old_tmp).unwrap();
    let path = dir.path().join("coffer.prom");
    write_textfile(&path, "x 1\n").unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(std::fs::read(&path).unwrap(), b"x 1\n");
    // Readable by node_exporter whatever the umask of the writer.
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
}

#[test]
fn the_wal_archive_and_a_pitr_jobs_wal_rpo_are_exported() {
    let mut s = status();
    s.wal_age_ns = Some(120_000_000_000);
    s.wal_rpo_ok = Some(true);
    let archive = crate::wal::status::ArchiveStatus {
        files: 12,
        bytes: 5 << 20,
        segments: 11,
        newest_segment: Some("00000001000000000000000B".into()),
        newest_ns: Some(NOW - 120_000_000_000),
        age_ns: Some(120_000_000_000),
        base_backups: 2,
        window_start_ns: Some(NOW - 2 * HOUR),
        window_end_ns: Some(NOW - 120_000_000_000),
    };
    let m = parse(&render_with_archive(&[s], &[], Some(&archive), NOW));
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in {m:#?}"));
    assert_eq!(get("coffer_job_wal_age_seconds{job=app}"), 120.0);
    assert_eq!(get("coffer_job_wal_rpo_ok{job=app}"), 1.0);
    assert_eq!(get("coffer_wal_archive_files{}"), 12.0);
    assert_eq!(get("coffer_wal_archive_bytes{}"), (5 << 20) as f64);
    assert_eq!(get("coffer_wal_newest_segment_age_seconds{}"), 120.0);
    assert_eq!(
        get("coffer_wal_newest_segment_timestamp_seconds{}"),
        1.8e9 - 120.0
    );
    assert_eq!(
        get("coffer_wal_recovery_window_start_timestamp_seconds{}"),
        1.8e9 - 7200.0
    );
    // Without an archive nothing of it is written.
    let text = render(&[status()], &[], NOW);
    assert!(!text.contains("coffer_wal_"), "{text}");
}
