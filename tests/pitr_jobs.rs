//! Point-in-time recovery as a job, against a real PostgreSQL 15 cluster archiving into the
//! repository: `coffer run` takes the base backups on the job's `base_backup` schedule, and
//! `coffer drill` restores the cluster to a random moment of the recovery window, starts it
//! and proves recovery stopped there; a drill whose WAL is gone fails and says why.

mod common;

use common::archiving::{chown_tree, Archiving};
use common::postgres::PgCluster;
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `coffer --config JOBFILE ARGS` as the cluster's owner, who owns the repository the
/// archiver writes (as on a database server, where coffer runs as `postgres`).
fn as_pg(a: &Archiving, config: &Path, args: &[&str]) -> Output {
    let mut c = a.env.cmd_with_cache(&a.env.path("archiver-cache"));
    c.arg("--config").arg(config).args(args);
    if let Some((uid, gid)) = a.pg.owner() {
        c.uid(uid).gid(gid);
    }
    c.output().expect("run coffer")
}

fn json(out: &Output, what: &str) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: invalid JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A job whose only source is the cluster, with base backups daily and no `schedule`.
fn job_file(a: &Archiving, name: &str, scratch: &Path) -> PathBuf {
    let f = a.env.path(name);
    std::fs::write(
        &f,
        format!(
            "[[job]]\nname = \"db\"\n\
             postgres_pitr = {{ url = {:?}, base_backup = \"daily 01:00\" }}\n\
             rpo = \"5m\"\nrto = \"10m\"\n\
             drill = {{ schedule = \"weekly\", target = {:?} }}\n",
            a.pg.url("postgres"),
            scratch
        ),
    )
    .unwrap();
    f
}

fn wal_objects(repo: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(repo.join("wal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect()
}

/// Commits spread over a few seconds (a row stamped every 100 ms), then archived.
fn commit_for_a_while(a: &Archiving) {
    a.pg.psql(
        "postgres",
        "CREATE TABLE IF NOT EXISTS tick (at timestamptz NOT NULL); \
         DO $$ BEGIN FOR i IN 1..30 LOOP \
         INSERT INTO tick VALUES (clock_timestamp()); COMMIT; PERFORM pg_sleep(0.1); \
         END LOOP; END $$;",
    );
    a.switch_and_wait();
}

fn time(v: &Value, key: &str) -> jiff::Timestamp {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("{key} in {v}: {e}"))
}

#[test]
fn a_job_takes_base_backups_on_schedule_and_drills_a_random_moment() {
    let a = Archiving::start(&[("archive_timeout", "1s")], true);
    let scratch = a.env.path("drills");
    std::fs::create_dir(&scratch).unwrap();
    chown_tree(&scratch, a.pg.owner());
    let config = job_file(&a, "coffer.toml", &scratch);
    commit_for_a_while(&a);
    let before_base = wal_objects(&a.env.repo());

    // The first run takes the base backup: the job's only source, due since never taken.
    let out = as_pg(&a, &config, &["--json", "run"]);
    let report = json(&out, "run");
    assert!(out.status.success(), "run: {report}");
    let backups: Vec<&Value> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"] == "backup")
        .collect();
    assert_eq!(backups.len(), 1, "{report}");
    assert_eq!(backups[0]["ok"], true, "{report}");
    let base = backups[0]["snapshots"][0].as_str().unwrap().to_string();
    let snaps = json(
        &as_pg(&a, &config, &["--json", "snapshots", "--tag", "job:db"]),
        "snapshots",
    );
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0]["source"], "postgres-base", "{snaps:?}");
    assert!(base.starts_with(snaps[0]["id"].as_str().unwrap()) || snaps[0]["id"] == base);

    // Not due again until tomorrow's 01:00: a second run takes none.
    let out = as_pg(&a, &config, &["--json", "run"]);
    let report = json(&out, "second run");
    assert!(out.status.success(), "second run: {report}");
    assert!(
        !report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["step"] == "backup"),
        "{report}"
    );

    // Commits after the base backup make the recovery window; the drill picks a moment in it.
    commit_for_a_while(&a);
    let out = as_pg(&a, &config, &["--json", "drill", "db"]);
    let all = json(&out, "drill");
    assert!(out.status.success(), "drill: {all}");
    let drill = &all["drills"][0];
    assert_eq!(drill["ok"], true, "{drill}");
    assert_eq!(drill["rto_met"], true, "{drill}");
    let source = &drill["sources"][0];
    assert_eq!(source["kind"], "postgres-base", "{drill}");
    assert!(source["source"]
        .as_str()
        .unwrap()
        .starts_with("postgres-pitr:127.0.0.1:"));
    let d = &source["details"];
    let (start, end, target) = (
        time(d, "window_start"),
        time(d, "window_end"),
        time(d, "target_time"),
    );
    assert!(start <= target && target <= end, "{d}");
    // Nothing after the target was replayed (when the target falls before the first commit
    // after the base backup, nothing was, and PostgreSQL names no last commit) ...
    if d.get("last_replayed_commit").is_some() {
        let last = time(d, "last_replayed_commit");
        assert!(last <= target, "replayed a commit after the target: {d}");
    }
    // ... and recovery stopped before the first commit after it.
    let stopped = d["stopped"].as_str().unwrap();
    let (_, at) = stopped
        .split_once("recovery stopping before commit of transaction ")
        .and_then(|(_, rest)| rest.split_once(", time "))
        .unwrap_or_else(|| panic!("{stopped}"));
    let at: jiff::Timestamp = format!("{}:00", at.trim().replacen(' ', "T", 1))
        .parse()
        .unwrap_or_else(|e| panic!("{at}: {e}"));
    assert!(
        at > target,
        "stopped before a commit at or before the target: {d}"
    );
    assert!(drill["rto_achieved_seconds"].as_f64().unwrap() > 0.0);
    // Passed: the restored server is stopped and its folder gone.
    assert!(
        !scratch.join("db-pitr").exists(),
        "the scratch folder stayed after a passing drill"
    );
    // The stored report carries the same facts (what `status` shows on any machine).
    let status = json(&as_pg(&a, &config, &["--json", "status"]), "status");
    let job = &status["jobs"][0];
    assert_eq!(job["last_drill"]["ok"], true, "{status}");

    // As root, into a target the drill creates (0700, root's) below a folder others may pass
    // through (as /var/lib is): the restored server runs as the cluster's owner, who must be
    // let through to its data directory.
    std::fs::create_dir(a.env.path("root-drills")).unwrap();
    let root_scratch = a.env.path("root-drills/pitr");
    let root_config = job_file(&a, "root.toml", &root_scratch);
    let mut c = a.env.cmd_with_cache(&a.env.path("root-cache"));
    let out = c
        .arg("--config")
        .arg(&root_config)
        .args(["--json", "drill", "db"])
        .output()
        .unwrap();
    let all = json(&out, "drill as root");
    assert!(out.status.success(), "drill as root: {all}");
    assert_eq!(all["drills"][0]["ok"], true, "{all}");

    // The WAL written since the base backup began is lost: no moment after it can be
    // reached, and the drill fails, naming what is missing, with the server not running.
    for gone in wal_objects(&a.env.repo()).difference(&before_base) {
        std::fs::remove_file(gone).unwrap();
    }
    let out = as_pg(&a, &config, &["--json", "drill", "db"]);
    let all = json(&out, "drill after the WAL was lost");
    assert!(!out.status.success(), "{all}");
    let failed = &all["drills"][0];
    assert_eq!(failed["ok"], false, "{failed}");
    let problem = failed["sources"][0]["problems"][0].as_str().unwrap();
    assert!(problem.contains("the archive lacks"), "{problem}");
    let pid = scratch.join("db-pitr/data/postmaster.pid");
    assert!(!pid.exists(), "a restored server was left running");
    // No server of the drill answers on any port it may have used: pg_ctl agrees.
    if scratch.join("db-pitr/data/PG_VERSION").exists() {
        let st = Command::new(PgCluster::bin("pg_ctl"))
            .args(["status", "-D"])
            .arg(scratch.join("db-pitr/data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(!st.success(), "pg_ctl says the drill's server runs");
    }
}
