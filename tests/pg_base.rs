//! `backup --postgres-base URL` against real PostgreSQL 15 clusters (tests/common/postgres.rs)
//! that archive their WAL with `cp` into a folder (the stand-in for `coffer wal-push`): a
//! backup taken under a pgbench load restores into a cluster that reaches consistency with
//! every row committed before it began; a second backup stores little more than the pages
//! that changed; a damaged page is reported and fails the command; a server that does not
//! archive is refused.

mod common;

use common::postgres::{PgCluster, PgOptions};
use common::{error_lines, expect_code, Env};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A folder the server's OS user can write WAL into.
fn archive_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// A cluster that archives its WAL into `archive` with `cp`.
fn archiving_cluster(archive: &Path, data_checksums: bool) -> PgCluster {
    let a = archive.display();
    PgCluster::start_with(PgOptions {
        data_checksums,
        settings: vec![
            ("wal_level".into(), "replica".into()),
            ("archive_mode".into(), "on".into()),
            ("archive_command".into(), format!("cp %p {a}/%f")),
        ],
    })
}

/// `coffer --json backup --postgres-base URL`, required to exit `code`; its JSON report.
fn base_backup(env: &Env, cluster: &PgCluster, code: i32) -> (Value, String) {
    let url = cluster.url("postgres");
    let out = env.run(&["--json", "backup", "--postgres-base", &url]);
    expect_code(&out, code, "backup --postgres-base");
    let report: Value = serde_json::from_slice(&out.stdout).expect("backup JSON");
    (report, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn pgbench(cluster: &PgCluster, args: &[&str]) -> Command {
    let mut c = Command::new(PgCluster::bin("pgbench"));
    c.args([
        "-h",
        "127.0.0.1",
        "-p",
        &cluster.port.to_string(),
        "-U",
        "postgres",
    ])
    .args(args)
    .arg("postgres")
    .stdin(Stdio::null());
    c
}

fn pgbench_init(cluster: &PgCluster, scale: u32, fillfactor: u32) {
    let out = pgbench(
        cluster,
        &[
            "-i",
            "-q",
            "-s",
            &scale.to_string(),
            "-F",
            &fillfactor.to_string(),
        ],
    )
    .output()
    .expect("run pgbench");
    assert!(
        out.status.success(),
        "pgbench -i failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The three balances pgbench keeps equal in every committed state.
fn balances(cluster: &PgCluster) -> String {
    cluster.psql(
        "postgres",
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts) || ' ' || \
         (SELECT sum(tbalance) FROM pgbench_tellers) || ' ' || \
         (SELECT sum(bbalance) FROM pgbench_branches)",
    )
}

/// Restore snapshot `id` into a new folder and start PostgreSQL on it, recovering from
/// `archive` to the end of the backup (`recovery_target = 'immediate'`), without archiving.
fn restore_and_start(env: &Env, id: &str, archive: &Path) -> PgCluster {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    env.ok(&["restore", id, "--target", &data.to_string_lossy()]);
    std::fs::write(data.join("recovery.signal"), "").unwrap();
    let a = archive.display();
    PgCluster::start_existing(
        dir,
        vec![
            ("restore_command".into(), format!("cp {a}/%f %p")),
            ("recovery_target".into(), "immediate".into()),
            ("archive_mode".into(), "off".into()),
            // Tablespaces come back as folders in pg_tblspc/, which recovery accepts only
            // with this on (PostgreSQL 15 refuses anything but symlinks there otherwise).
            ("allow_in_place_tablespaces".into(), "on".into()),
        ],
    )
}

struct Load(Child);

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_base_backup_taken_under_load_restores_to_a_consistent_cluster() {
    let env = Env::new();
    env.init();
    let archive = archive_dir();
    let cluster = archiving_cluster(archive.path(), true);
    // A tablespace outside the data directory, owned by the server's user.
    let space = tempfile::tempdir().expect("temp dir");
    if let Some((uid, gid)) = cluster.owner() {
        std::os::unix::fs::chown(space.path(), Some(uid), Some(gid)).unwrap();
    }
    let space_path = space.path().display().to_string();
    cluster.psql(
        "postgres",
        &format!(
            "CREATE TABLESPACE extra LOCATION '{space_path}';
             CREATE TABLE marks (id int PRIMARY KEY, note text) TABLESPACE extra;
             INSERT INTO marks SELECT g, 'before ' || g FROM generate_series(1, 5000) g;
             CREATE UNLOGGED TABLE scratch AS SELECT g FROM generate_series(1, 1000) g;"
        ),
    );
    let space_oid = cluster.psql(
        "postgres",
        "SELECT oid FROM pg_tablespace WHERE spcname = 'extra'",
    );
    let scratch = cluster.psql("postgres", "SELECT pg_relation_filepath('scratch')");
    pgbench_init(&cluster, 2, 100);
    let load = Load(
        pgbench(&cluster, &["-c", "2", "-j", "1", "-T", "600"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pgbench"),
    );
    std::thread::sleep(Duration::from_secs(2));
    cluster.psql(
        "postgres",
        "INSERT INTO marks SELECT g, 'just before' FROM generate_series(5001, 5100) g",
    );

    let (report, _) = base_backup(&env, &cluster, 0);
    // Committed after the backup ended: not part of what recovery to its end restores.
    cluster.psql(
        "postgres",
        "INSERT INTO marks SELECT g, 'after' FROM generate_series(5101, 5200) g",
    );
    drop(load);

    let base = &report["postgres_base"];
    let lsn = |k: &str| {
        let (hi, lo) = base[k].as_str().unwrap().split_once('/').unwrap();
        (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
    };
    assert!(lsn("start_lsn") < lsn("stop_lsn"), "{base}");
    assert_eq!(base["data_checksums"], true);
    assert!(base["pages_checked"].as_u64().unwrap() > 1000, "{base}");
    assert_eq!(base["checksum_failures"], 0);
    assert_eq!(base["tablespaces"][0]["oid"].to_string(), space_oid);
    assert_eq!(base["tablespaces"][0]["location"], space_path.as_str());
    let system_id = cluster.psql(
        "postgres",
        "SELECT system_identifier FROM pg_control_system()",
    );
    assert_eq!(base["system_identifier"], system_id.as_str());
    assert!(base["start_wal_file"]
        .as_str()
        .unwrap()
        .starts_with("00000001"));
    let id = report["snapshot"].as_str().unwrap().to_string();

    let restored = restore_and_start(&env, &id, archive.path());
    let data = restored.data_dir();
    // The tablespace came back as a folder inside the data directory, the label as a file.
    let spc = data.join("pg_tblspc").join(&space_oid);
    assert!(std::fs::symlink_metadata(&spc).unwrap().is_dir());
    let label = std::fs::read_to_string(data.join("backup_label.old"))
        .or_else(|_| std::fs::read_to_string(data.join("backup_label")))
        .expect("the backup label (renamed .old once recovery used it)");
    assert!(label.contains("coffer base backup"), "{label}");
    assert!(
        restored.log().contains("consistent recovery state reached"),
        "{}",
        restored.log()
    );
    assert_eq!(restored.psql("postgres", "SELECT pg_is_in_recovery()"), "t");
    assert_eq!(
        restored.psql("postgres", "SELECT count(*) || ' ' || max(id) FROM marks"),
        "5100 5100"
    );
    let b = balances(&restored);
    let parts: Vec<&str> = b.split(' ').collect();
    assert!(
        parts.len() == 3 && parts[0] == parts[1] && parts[1] == parts[2],
        "{b}"
    );
    // Of an unlogged table only the init fork is stored: it comes back empty, as after a
    // crash, once the restored cluster is promoted.
    assert!(data.join(format!("{scratch}_init")).is_file());
    assert!(!data.join(&scratch).exists());
    restored.psql("postgres", "SELECT pg_wal_replay_resume()");
    let t0 = std::time::Instant::now();
    while restored.psql("postgres", "SELECT pg_is_in_recovery()") == "t" {
        assert!(t0.elapsed() < Duration::from_secs(60), "{}", restored.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        restored.psql("postgres", "SELECT count(*) FROM scratch"),
        "0"
    );
    assert_eq!(
        restored.psql("postgres", "SELECT count(*) FROM marks"),
        "5100"
    );
}

#[test]
fn a_second_base_backup_stores_little_more_than_the_changed_pages() {
    let env = Env::new();
    env.init();
    let archive = archive_dir();
    let cluster = archiving_cluster(archive.path(), true);
    // 1,000,000 accounts (a 114 MiB table), with room on each page for an updated row, as
    // most tables have.
    pgbench_init(&cluster, 10, 90);
    let (first, _) = base_backup(&env, &cluster, 0);
    // Change 1,000 rows (0.1%) spread over the whole table.
    cluster.psql(
        "postgres",
        "UPDATE pgbench_accounts SET abalance = abalance + 1 \
         WHERE aid IN (SELECT (g * 997) % 1000000 + 1 FROM generate_series(1, 1000) g)",
    );
    let (second, _) = base_backup(&env, &cluster, 0);
    let raw = |r: &Value| r["summary"]["bytes_added_raw"].as_u64().unwrap();
    let stored = |r: &Value| r["summary"]["bytes_added_stored"].as_u64().unwrap();
    let total = second["summary"]["total_bytes"].as_u64().unwrap();
    eprintln!(
        "first: {} raw, {} stored of {total}; second: {} raw, {} stored",
        raw(&first),
        stored(&first),
        raw(&second),
        stored(&second)
    );
    assert!(
        raw(&first) > 100 << 20,
        "the first backup stores the cluster"
    );
    // A cluster this small is cut page by page: each changed row dirties one 8 KiB page
    // (updated in place, with room to spare), at most 7.8 MiB. The rest of the bound is
    // what changes in any case: the transaction status, the free space and visibility
    // maps, the catalogs and statistics the server rewrote (0.4 MB when measured).
    assert_eq!(second["postgres_base"]["relation_block"], 8192);
    assert!(
        raw(&second) < 12 << 20,
        "second backup added {} raw bytes",
        raw(&second)
    );
    // Stored, the changed pages compress about half as well as the first backup's freshly
    // loaded ones (0.97 MB against 10.3 MB when measured).
    assert!(stored(&second) * 5 < stored(&first), "{second}");
    assert_eq!(second["parent"], first["snapshot"]);
}

#[test]
fn a_damaged_page_is_reported_and_fails_the_command() {
    let env = Env::new();
    env.init();
    let archive = archive_dir();
    let mut cluster = archiving_cluster(archive.path(), true);
    let file = cluster.psql(
        "postgres",
        "CREATE TABLE victim (id int, pad text);
         INSERT INTO victim SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g;
         CHECKPOINT;
         SELECT pg_relation_filepath('victim');",
    );
    cluster.stop();
    // One bit of block 3's tuple data, as a disk or a stray write would flip it.
    let path: PathBuf = cluster.data_dir().join(&file);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 4 * 8192, "the table has at least 4 pages");
    bytes[3 * 8192 + 6000] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    // PostgreSQL's own checker agrees that the page is bad (exit 1: one bad checksum).
    let mut check = Command::new(PgCluster::bin("pg_checksums"));
    check.arg("--check").arg("-D").arg(cluster.data_dir());
    if let Some((uid, gid)) = cluster.owner() {
        use std::os::unix::process::CommandExt;
        check.uid(uid).gid(gid).current_dir("/");
    }
    let out = check.output().expect("run pg_checksums");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    cluster.restart();

    let (report, stderr) = base_backup(&env, &cluster, 1);
    assert_eq!(report["postgres_base"]["checksum_failures"], 1, "{report}");
    assert_eq!(report["exit_code"], 1);
    assert!(
        stderr.contains(&format!(
            "{file}: block 3: page checksum verification failed"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 page(s) failed checksum verification"),
        "{stderr}"
    );
    // The snapshot was saved all the same: it is the best copy there is.
    let snaps = env.json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
}

#[test]
fn a_server_that_does_not_archive_is_refused() {
    let env = Env::new();
    env.init();
    let cluster = PgCluster::start();
    let out = env.run(&["backup", "--postgres-base", &cluster.url("postgres")]);
    expect_code(&out, 1, "backup --postgres-base without archive_mode");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(error_lines(&stderr), 1, "{stderr}");
    assert!(stderr.contains("archive_mode = off"), "{stderr}");
    assert!(stderr.contains("coffer setup-archiving"), "{stderr}");
    let snaps = env.json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 0, "{snaps}");
}

#[test]
fn a_wait_for_archiving_that_never_ends_is_cut_short() {
    let env = Env::new();
    env.init();
    // An archive that refuses every segment: pg_backup_stop would wait forever.
    let cluster = PgCluster::start_with(PgOptions {
        data_checksums: false,
        settings: vec![
            ("archive_mode".into(), "on".into()),
            ("archive_command".into(), "false".into()),
        ],
    });
    let t0 = std::time::Instant::now();
    let url = cluster.url("postgres");
    let out = env.run(&[
        "backup",
        "--postgres-base",
        &url,
        "--wait-for-archive",
        "5s",
    ]);
    expect_code(&out, 1, "backup --postgres-base with a failing archive");
    assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(error_lines(&stderr), 1, "{stderr}");
    assert!(stderr.contains("was not archived within 5s"), "{stderr}");
    assert!(stderr.contains("the archiver failed"), "{stderr}");
    assert!(stderr.contains("no snapshot was saved"), "{stderr}");
    let snaps = env.json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 0, "{snaps}");
    // The abandoned backup's session ends on the server too, instead of waiting in
    // pg_backup_stop for as long as archiving fails.
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
                   AND query LIKE '%pg_backup_stop%' AND pid <> pg_backend_pid()";
    let t0 = std::time::Instant::now();
    while cluster.psql("postgres", waiting) != "0" {
        assert!(t0.elapsed() < Duration::from_secs(15), "{}", cluster.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_data_directory_that_is_not_the_servers_is_refused() {
    let env = Env::new();
    env.init();
    let archive = archive_dir();
    let cluster = archiving_cluster(archive.path(), false);
    let other = PgCluster::start();
    // coffer runs where another cluster sits at the server's path, as on a machine that is
    // not the database host: in a mount namespace of its own, the other cluster's data
    // directory is mounted over this one's (PostgreSQL reads its pg_control from disk, so
    // the file cannot simply be swapped under the server).
    let base = env.cmd();
    let mut c = Command::new("unshare");
    c.args([
        "-m",
        "sh",
        "-c",
        "mount --bind \"$1\" \"$2\" && shift 2 && exec \"$@\"",
        "sh",
    ])
    .arg(other.data_dir())
    .arg(cluster.data_dir())
    .arg(base.get_program())
    .args(base.get_args())
    .args(["backup", "--postgres-base", &cluster.url("postgres")])
    .env_clear()
    .envs(base.get_envs().filter_map(|(k, v)| Some((k, v?))))
    .stdin(Stdio::null());
    let out = c.output().expect("run unshare (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("unshare failed") && !stderr.contains("mount:"),
        "this test runs coffer in a mount namespace of its own and needs root: {stderr}"
    );
    expect_code(
        &out,
        1,
        "backup --postgres-base of a foreign data directory",
    );
    assert_eq!(error_lines(&stderr), 1, "{stderr}");
    assert!(stderr.contains("belongs to another cluster"), "{stderr}");
    assert!(
        stderr.contains("run coffer on the database host"),
        "{stderr}"
    );
    let snaps = env.json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 0, "{snaps}");
}
