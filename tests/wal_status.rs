//! The WAL archive in monitoring, with a real PostgreSQL 15 cluster archiving through
//! `wal-push`: `coffer status` reports the newest segment, the archive's size and the
//! recovery window; a job with `postgres_pitr` is unhealthy (exit 1) once the newest segment
//! is older than its rpo, while the same job's snapshots are fresh; `coffer run` puts the
//! alert in the webhook's report and the metrics file. Time is moved on with
//! COFFER_TEST_NOW, as archiving that stopped would leave it.

mod common;

use common::archiving::{store_base_snapshot, wal_names, Archiving};
use common::http::HookServer;
use std::path::Path;
use std::process::Output;

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn rfc3339(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(ns as i128)
        .unwrap()
        .to_string()
}

#[test]
fn status_metrics_and_webhook_follow_the_newest_wal_segment() {
    let a = Archiving::start(&[], false);
    a.switch_and_wait();
    let base = a.base_backup();
    store_base_snapshot(&a.env, &base);
    a.switch_and_wait();

    let hook = HookServer::start();
    let data = a.env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("app.conf"), "x = 1\n").unwrap();
    let metrics = a.env.path("coffer.prom");
    let config = a.env.path("coffer.toml");
    std::fs::write(
        &config,
        format!(
            "[[job]]\nname = \"db\"\npaths = [\"{}\"]\nschedule = \"daily 02:30\"\nrpo = \"15m\"\n\
             postgres_pitr = {{ url = \"{}\" }}\n\n[monitoring]\nwebhook = \"{}\"\n\
             prometheus_textfile = \"{}\"\n",
            data.display(),
            a.pg.url("postgres"),
            hook.url(),
            metrics.display()
        ),
    )
    .unwrap();
    let at = |now: Option<&str>, args: &[&str]| {
        let mut c = a.env.cmd();
        if let Some(now) = now {
            c.env("COFFER_TEST_NOW", now);
        }
        c.arg("--config").arg(&config).args(args).output().unwrap()
    };

    // Now: the job's files are backed up, the archive is fresh.
    // The run also takes the cluster's base backup (a source of the job), which archives
    // the segments it needs: the archive is read after it.
    let out = at(None, &["--json", "run", "--force"]);
    common::expect_code(&out, 0, "run");
    let names = wal_names(&a.env.repo());
    let newest = names
        .iter()
        .filter(|n| n.len() == 24)
        .max()
        .unwrap()
        .clone();
    let v = json(&at(None, &["--json", "status"]));
    assert_eq!(v["healthy"], true, "{v}");
    let job = &v["jobs"][0];
    assert_eq!(job["wal_rpo_ok"], true, "{job}");
    assert!(job["wal_age_seconds"].as_f64().unwrap() < 900.0, "{job}");
    let w = &v["wal_archive"];
    assert_eq!(w["newest_segment"], newest.as_str(), "{w}");
    assert_eq!(w["files"], names.len() as u64, "{w}");
    assert_eq!(w["base_backups"], 2, "{w}");
    assert!(w["recovery_window_start"].is_string(), "{w}");
    assert_eq!(w["recovery_window_end"], w["newest_segment_time"], "{w}");
    let human = at(None, &["status"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains(&format!("WAL archive: newest segment {newest}")),
        "{text}"
    );

    // An hour later with no new segment (archiving stopped): the files, backed up for that
    // time, are fresh, the database is not.
    let newest_ns = w["newest_segment_time"]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_nanosecond() as i64;
    let later = rfc3339(newest_ns + 3_600_000_000_000);
    a.env.ok(&[
        "backup",
        data.to_str().unwrap(),
        "--tag",
        "job:db",
        "--tag",
        "source:files",
        "--time",
        &later,
    ]);
    let out = at(Some(&later), &["--json", "status"]);
    common::expect_code(&out, 1, "status an hour after the last segment");
    let v = json(&out);
    let job = &v["jobs"][0];
    assert_eq!(job["rpo_ok"], true, "the files are fresh: {job}");
    assert_eq!(job["wal_rpo_ok"], false, "{job}");
    let problems = job["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{job}");
    assert!(
        problems[0]
            .as_str()
            .unwrap()
            .contains(&format!("({newest}) is 1h")),
        "{job}"
    );

    // A run then tells the webhook (ok false, the alert) and the metrics file. Not forced:
    // nothing is due (a forced run would take a base backup, archiving a new segment).
    let out = at(Some(&later), &["--json", "run"]);
    common::expect_code(&out, 0, "run: nothing failed");
    let reports = hook.requests();
    let last = reports.last().expect("the webhook was called").json();
    assert_eq!(last["ok"], false, "{last}");
    let alerts = last["alerts"].as_array().expect("alerts");
    assert!(
        alerts[0].as_str().unwrap().starts_with("db: past its RPO"),
        "{last}"
    );
    assert_eq!(last["wal_archive"]["newest_segment"], newest.as_str());
    let text = std::fs::read_to_string(Path::new(&metrics)).unwrap();
    assert!(
        text.contains("coffer_job_wal_rpo_ok{job=\"db\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("coffer_wal_newest_segment_timestamp_seconds "),
        "{text}"
    );

    // Archiving goes on: healthy again.
    a.switch_and_wait();
    let v = json(&at(None, &["--json", "status"]));
    assert_eq!(v["jobs"][0]["wal_rpo_ok"], true, "{v}");
}
