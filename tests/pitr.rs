//! Point-in-time recovery end to end, against real PostgreSQL 15 clusters: WAL archived by
//! `coffer wal-push` under a pgbench load with a row stamped every 100 ms, two base
//! backups, the server killed with SIGKILL, then `coffer restore @T --to-postgres-data DIR
//! --start` to a time in the middle and `latest` to the end, checked row by row.

mod common;

use common::archiving::{chown_tree, Archiving};
use common::expect_code;
use common::postgres::PgCluster;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `coffer ARGS` as the cluster's owner (who owns the repository the archiver writes).
fn as_pg(a: &Archiving, args: &[&str]) -> Output {
    // The archiver's cache: the cluster owner's, like the repository.
    let mut c = a.env.cmd_with_cache(&a.env.path("archiver-cache"));
    c.args(args);
    if let Some((uid, gid)) = a.pg.owner() {
        c.uid(uid).gid(gid);
    }
    c.output().expect("run coffer")
}

fn base_backup(a: &Archiving) -> String {
    let out = as_pg(
        a,
        &["--json", "backup", "--postgres-base", &a.pg.url("postgres")],
    );
    expect_code(&out, 0, "base backup");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v["snapshot"].as_str().expect("snapshot").to_string()
}

fn psql_bg(pg: &PgCluster, sql: &str) -> Child {
    Command::new(PgCluster::bin("psql"))
        .args(["-X", "-q", "--no-password", "-c", sql])
        .arg(format!("--dbname={}", pg.url("postgres")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("psql")
}

/// Epoch seconds (with fraction) as PostgreSQL computes them, from `url`.
fn query(url: &str, sql: &str) -> String {
    let out = Command::new(PgCluster::bin("psql"))
        .args(["-X", "-q", "-A", "-t", "--no-password", "-c", sql])
        .arg(format!("--dbname={url}"))
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Stop a restored server (it runs on after coffer exits).
struct Restored<'a> {
    dir: &'a Path,
    owner: Option<(u32, u32)>,
}

impl Drop for Restored<'_> {
    fn drop(&mut self) {
        let mut c = Command::new(PgCluster::bin("pg_ctl"));
        c.args(["stop", "-m", "immediate", "-D"]).arg(self.dir);
        if let Some((uid, gid)) = self.owner {
            c.uid(uid).gid(gid);
        }
        let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

fn restore(a: &Archiving, spec: &str, dir: &Path) -> serde_json::Value {
    let out = a
        .env
        .cmd()
        .args(["--json", "restore", spec, "--to-postgres-data"])
        .arg(dir)
        .arg("--start")
        .output()
        .unwrap();
    let log = std::fs::read_to_string(dir.join("coffer-recovery.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "restore {spec}: {}\nrecovery log:\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn recovers_to_a_time_in_the_middle_and_to_the_end_after_a_crash() {
    let mut a = Archiving::start(&[("archive_timeout", "2s")], true);
    let pgbench = |args: &[&str]| {
        Command::new(PgCluster::bin("pgbench"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &a.pg.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(args)
            .arg("postgres")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbench")
    };
    assert!(pgbench(&["-i", "-s", "3", "-q"]).wait().unwrap().success());
    a.pg.psql(
        "postgres",
        "CREATE TABLE tick (id int PRIMARY KEY, at timestamptz NOT NULL)",
    );
    let first = base_backup(&a);

    let mut load = pgbench(&["-c", "2", "-j", "2", "-T", "40"]);
    let mut ticker = psql_bg(
        &a.pg,
        "DO $$ BEGIN FOR i IN 1..100000 LOOP \
         INSERT INTO tick VALUES (i, clock_timestamp()); COMMIT; PERFORM pg_sleep(0.1); \
         END LOOP; END $$;",
    );
    std::thread::sleep(Duration::from_secs(6));
    let second = base_backup(&a);
    assert_ne!(first, second);
    std::thread::sleep(Duration::from_secs(6));
    let middle = now_s();
    std::thread::sleep(Duration::from_secs(8));
    let killed_at = now_s();
    a.pg.kill();
    let _ = (load.kill(), ticker.kill(), load.wait(), ticker.wait());

    // To a time in the middle: every row up to it, none after.
    let scratch = tempfile::tempdir().unwrap();
    let owner = a.pg.owner();
    chown_tree(scratch.path(), owner);
    let dir = scratch.path().join("middle");
    let stamp = jiff::Timestamp::from_nanosecond((middle * 1e9) as i128).unwrap();
    let t0 = Instant::now();
    let report = restore(&a, &format!("@{stamp}"), &dir);
    let _guard = Restored { dir: &dir, owner };
    eprintln!("restore to the middle took {:.1?}: {report}", t0.elapsed());
    assert_eq!(
        report["base_snapshot"].as_str().unwrap(),
        second,
        "the newest base before T"
    );
    let port = report["port"].as_u64().unwrap();
    let restored = format!("postgresql://postgres@127.0.0.1:{port}/postgres");
    let newest: f64 = query(&restored, "SELECT extract(epoch FROM max(at)) FROM tick")
        .parse()
        .unwrap();
    assert!(
        newest <= middle,
        "a row from after the target: {newest} > {middle}"
    );
    assert!(
        middle - newest <= 1.0,
        "the newest row is {:.2} s before the target",
        middle - newest
    );
    let (count, max) = (
        query(&restored, "SELECT count(*) FROM tick"),
        query(&restored, "SELECT max(id) FROM tick"),
    );
    assert_eq!(count, max, "rows missing before the target");

    // To the end: nothing committed before the last archived segment is lost.
    let dir2 = scratch.path().join("end");
    let report = restore(&a, "latest", &dir2);
    let _guard2 = Restored { dir: &dir2, owner };
    let port = report["port"].as_u64().unwrap();
    let restored = format!("postgresql://postgres@127.0.0.1:{port}/postgres");
    let newest: f64 = query(&restored, "SELECT extract(epoch FROM max(at)) FROM tick")
        .parse()
        .unwrap();
    let rpo = killed_at - newest;
    eprintln!("RPO at the crash: {rpo:.2} s (archive_timeout 2s)");
    assert!(
        rpo < 6.0,
        "the newest recovered row is {rpo:.1} s before the crash"
    );
    assert_eq!(
        query(&restored, "SELECT count(*) FROM tick"),
        query(&restored, "SELECT max(id) FROM tick")
    );
    // The restored server is open for writes and does not archive.
    query(&restored, "INSERT INTO tick VALUES (-1, now())");
    assert_eq!(query(&restored, "SHOW archive_mode"), "off");
}

/// `restore SPEC --to-postgres-data DIR`, which must fail with exit 1 and leave DIR
/// unwritten; returns its error output.
fn refused(a: &Archiving, spec: &str, dir: &Path, what: &str) -> String {
    let out = a
        .env
        .cmd()
        .args(["restore", spec, "--to-postgres-data"])
        .arg(dir)
        .output()
        .unwrap();
    expect_code(&out, 1, what);
    assert!(
        !dir.exists(),
        "{what}: nothing may be written for a refused target"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_target_the_archive_cannot_reach_is_refused_before_anything_is_written() {
    let a = Archiving::start(&[], false);
    a.pg.psql(
        "postgres",
        "CREATE TABLE t (a int); INSERT INTO t VALUES (1);",
    );
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    // No base backup yet.
    let err = refused(&a, "latest", &dir, "restore without a base backup");
    assert!(err.contains("no base backup"), "{err}");
    let _ = base_backup(&a);
    a.switch_and_wait();
    // Before the base backup: refused, DIR untouched.
    let err = refused(
        &a,
        "@2020-01-01T00:00:00Z",
        &dir,
        "restore to a time before every base backup",
    );
    assert!(
        err.contains("before the end of the oldest base backup"),
        "{err}"
    );

    // A gap: delete an archived segment from the middle (the objects in wal/ in the order
    // they were written; the newest few stay).
    for _ in 0..3 {
        a.switch_and_wait();
    }
    let mut objects: Vec<(std::time::SystemTime, std::path::PathBuf)> =
        std::fs::read_dir(a.env.repo().join("wal"))
            .unwrap()
            .flatten()
            .map(|e| (e.metadata().unwrap().modified().unwrap(), e.path()))
            .collect();
    objects.sort();
    let victim = &objects[objects.len() - 2].1;
    std::fs::remove_file(victim).unwrap();
    let err = refused(&a, "latest", &dir, "restore across a gap");
    assert!(err.contains("gap") && err.contains("is missing"), "{err}");
}
