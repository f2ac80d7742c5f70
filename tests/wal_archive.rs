//! `coffer wal-push` as PostgreSQL's archive_command and `coffer wal-fetch` as its
//! restore_command, against a real PostgreSQL 15 cluster: every archived file comes back
//! byte for byte, a repeated push of the same bytes succeeds, other bytes under the same name
//! and a segment of another cluster are refused.

mod common;

use common::archiving::Archiving;
use common::expect_code;
use common::postgres::PgCluster;
use std::path::Path;

/// The complete segments PostgreSQL has marked archived (`.done`) in `data`'s pg_wal.
fn archived_segments(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("pg_wal/archive_status"))
        .expect("archive_status")
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let seg = n.strip_suffix(".done")?;
            (seg.len() == 24).then(|| seg.to_string())
        })
        .collect();
    names.sort();
    names
}

/// Fetch each of `segments` with `wal-fetch` (it must succeed) and compare it with the file
/// in pg_wal where a checkpoint has not recycled it yet.
fn fetch_each_back(a: &Archiving, segments: &[String], what: &str) {
    let data = a.pg.data_dir();
    let out_dir = a.env.path("fetched");
    std::fs::create_dir_all(&out_dir).unwrap();
    for seg in segments {
        let dest = out_dir.join(seg);
        let out = a
            .env
            .cmd()
            .args(["wal-fetch", seg])
            .arg(&dest)
            .output()
            .unwrap();
        expect_code(&out, 0, what);
        if let Ok(want) = std::fs::read(data.join("pg_wal").join(seg)) {
            assert!(std::fs::read(&dest).unwrap() == want, "{seg} differs");
        }
    }
}

#[test]
fn archived_segments_come_back_byte_for_byte() {
    let a = Archiving::start(&[], false);
    a.pg.psql(
        "postgres",
        "CREATE TABLE t (id int, t timestamptz); \
         INSERT INTO t SELECT g, clock_timestamp() FROM generate_series(1, 50000) g;",
    );
    for _ in 0..3 {
        a.switch_and_wait();
    }
    let data = a.pg.data_dir();
    let segments = archived_segments(&data);
    assert!(segments.len() >= 3, "archived: {segments:?}");
    fetch_each_back(&a, &segments, "wal-fetch of an archived segment");

    // A second push of the same bytes is a success; other bytes under that name are not.
    let seg = segments.last().unwrap();
    let copy = a.env.path(seg);
    std::fs::copy(data.join("pg_wal").join(seg), &copy).unwrap();
    let out = a.env.cmd().arg("wal-push").arg(&copy).output().unwrap();
    expect_code(&out, 0, "pushing an archived segment again");
    assert!(String::from_utf8_lossy(&out.stdout).contains("already archived"));
    let mut bytes = std::fs::read(&copy).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 0xff;
    std::fs::write(&copy, &bytes).unwrap();
    let out = a.env.cmd().arg("wal-push").arg(&copy).output().unwrap();
    expect_code(&out, 1, "pushing other bytes under an archived name");
    assert!(String::from_utf8_lossy(&out.stderr).contains("different contents"));

    // A name the archive lacks: exit 1, nothing written.
    let dest = a.env.path("fetched").join("missing");
    let out = a
        .env
        .cmd()
        .args(["wal-fetch", "0000000100000099000000FF"])
        .arg(&dest)
        .output()
        .unwrap();
    expect_code(&out, 1, "fetching a segment that was never archived");
    assert!(!dest.exists());
}

#[test]
fn read_ahead_serves_the_next_segments_from_the_spool() {
    let a = Archiving::start(&[], false);
    for _ in 0..4 {
        a.switch_and_wait();
    }
    let segments = archived_segments(&a.pg.data_dir());
    let dir = a.env.path("restore-wal");
    std::fs::create_dir(&dir).unwrap();
    let first = &segments[0];
    let out = a
        .env
        .cmd()
        .args(["--json", "wal-fetch", first])
        .arg(dir.join("RECOVERYXLOG"))
        .output()
        .unwrap();
    expect_code(&out, 0, "first fetch");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["from_spool"], false);
    assert!(v["read_ahead"].as_u64().unwrap() >= 3, "{v}");
    // The next one comes from the spool: no repository needed (a wrong one is given).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args([
            "--repo",
            "/nonexistent",
            "--json",
            "wal-fetch",
            &segments[1],
        ])
        .arg(dir.join("RECOVERYXLOG"))
        .env_clear()
        .output()
        .unwrap();
    expect_code(&out, 0, "fetch from the spool");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["from_spool"], true);
    let original = a.pg.data_dir().join("pg_wal").join(&segments[1]);
    if let Ok(want) = std::fs::read(original) {
        assert!(std::fs::read(dir.join("RECOVERYXLOG")).unwrap() == want);
    }
}

#[test]
fn a_segment_of_another_cluster_is_refused() {
    let a = Archiving::start(&[], false);
    a.switch_and_wait();
    let other = PgCluster::start();
    other.psql(
        "postgres",
        "CREATE TABLE x (a int); INSERT INTO x VALUES (1);",
    );
    let wal = other.data_dir().join("pg_wal");
    let seg = std::fs::read_dir(&wal)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24)
        .min()
        .expect("a segment");
    let copy = a.env.path(&seg);
    std::fs::copy(wal.join(&seg), &copy).unwrap();
    // PostgreSQL writes a segment in place: pad it as an archived one would be.
    let out = a.env.cmd().arg("wal-push").arg(&copy).output().unwrap();
    expect_code(&out, 1, "pushing another cluster's segment");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("system identifier"), "{err}");

    // Not a WAL file name at all: a usage error.
    let junk = a.env.path("notwal");
    std::fs::write(&junk, b"x").unwrap();
    let out = a.env.cmd().arg("wal-push").arg(&junk).output().unwrap();
    expect_code(&out, 2, "pushing a file that is not WAL");
}

/// archive_command kills `coffer wal-push` at random moments (SIGKILL), so PostgreSQL sees
/// failures and retries. Whatever PostgreSQL marked archived must come back byte for byte.
#[test]
fn a_killed_push_never_leaves_a_segment_marked_archived_but_missing() {
    // The push in the background; one time in three, SIGKILL it after 0-80 ms.
    let a = Archiving::start_wrapped(
        &[],
        false,
        Some(
            r#"#!/bin/sh
"$@" &
pid=$!
r=$(od -An -N1 -tu1 /dev/urandom | tr -d ' ')
if [ $((r % 3)) -eq 0 ]; then sleep 0.0$((r % 9)); kill -9 $pid 2>/dev/null; fi
wait $pid || exit 1
"#,
        ),
    );
    for _ in 0..8 {
        a.pg.psql(
            "postgres",
            "CREATE TABLE IF NOT EXISTS k (a int); INSERT INTO k SELECT generate_series(1, 20000); SELECT pg_switch_wal();",
        );
    }
    // After three failures in a row PostgreSQL's archiver sleeps until a new segment wakes
    // it: keep making them.
    let t0 = std::time::Instant::now();
    while a
        .pg
        .psql("postgres", "SELECT archived_count FROM pg_stat_archiver")
        .parse::<u64>()
        .unwrap()
        < 8
    {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(120),
            "archiving stalled"
        );
        a.pg.psql(
            "postgres",
            "INSERT INTO k VALUES (1); SELECT pg_switch_wal();",
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let failed: u64 =
        a.pg.psql("postgres", "SELECT failed_count FROM pg_stat_archiver")
            .parse()
            .unwrap();
    eprintln!("{failed} pushes were killed along the way");
    let data = a.pg.data_dir();
    let done = archived_segments(&data);
    assert!(done.len() >= 8);
    fetch_each_back(
        &a,
        &done,
        "every segment PostgreSQL marked archived is in the repository",
    );
}

/// archive_command often runs with a HOME its user cannot write: the cache only saves time,
/// so wal-push works without it, and says so.
#[test]
fn a_cache_that_cannot_be_made_does_not_stop_archiving() {
    let a = Archiving::start(&[], false);
    a.switch_and_wait();
    let seg = archived_segments(&a.pg.data_dir()).pop().unwrap();
    let copy = a.env.path(&seg);
    std::fs::copy(a.pg.data_dir().join("pg_wal").join(&seg), &copy).unwrap();
    let out = a
        .env
        .cmd_with_cache(std::path::Path::new("/proc/no-cache-here"))
        .arg("wal-push")
        .arg(&copy)
        .output()
        .unwrap();
    expect_code(&out, 0, "wal-push without a usable cache");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without a local cache"), "{err}");
}
