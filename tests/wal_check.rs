//! `coffer check` follows the WAL chain of a real PostgreSQL 15 cluster across a real
//! timeline switch: the cluster recovers from its own archive through `wal-fetch` and
//! promotes itself to timeline 2, archiving `00000002.history`. The chain from a base backup
//! on timeline 1 is complete; without the history file, or without a segment, check fails
//! (exit 1) and names what is missing and the span of time it cuts out.

mod common;

use common::archiving::{lsn, open_repo, password_file, store_base_snapshot, wal_names, Archiving};
use common::expect_code;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SEGMENT: u64 = 16 << 20;

/// The stored file of the archived WAL file `name`.
fn object_path(a: &Archiving, name: &str) -> PathBuf {
    let repo = open_repo(&a.env.repo());
    let catalog = coffer::wal::Catalog::load(&repo).unwrap();
    let entry = catalog.find(name)[0];
    a.env.repo().join(entry.object.path())
}

fn check(a: &Archiving, code: i32) -> (serde_json::Value, String) {
    let out = a.env.cmd().args(["--json", "check"]).output().unwrap();
    expect_code(&out, code, "check --json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let human = a.env.cmd().arg("check").output().unwrap();
    expect_code(&human, code, "check");
    (v, String::from_utf8_lossy(&human.stdout).into_owned())
}

#[test]
fn check_follows_a_timeline_switch_and_names_what_is_missing() {
    let mut a = Archiving::start(&[], false);
    a.switch_and_wait();
    let base = a.base_backup();
    store_base_snapshot(&a.env, &base);
    a.switch_and_wait();
    a.switch_and_wait();

    // Archive recovery from the repository, then promotion to timeline 2.
    a.pg.stop();
    let data = a.pg.data_dir();
    std::fs::write(data.join("recovery.signal"), "").unwrap();
    let restore =
        common::archiving::archive_command(&a.env, "").replace("wal-push %p", "wal-fetch %f %p");
    assert!(restore.contains(&password_file(&a.env).display().to_string()));
    let mut conf = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
    conf.push_str(&format!("restore_command = '{restore}'\n"));
    std::fs::write(data.join("postgresql.auto.conf"), conf).unwrap();
    common::archiving::chown_tree(&data, a.pg.owner());
    a.pg.restart();
    let t0 = Instant::now();
    loop {
        let tl = a.pg.try_psql(
            "postgres",
            "SELECT pg_is_in_recovery()::text || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)",
        );
        if tl.as_deref() == Ok("false00000002") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "no promotion to timeline 2: {tl:?}\n{}",
            a.pg.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    a.switch_and_wait();
    a.switch_and_wait();
    let t0 = Instant::now();
    while !wal_names(&a.env.repo()).contains(&"00000002.history".to_string()) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "00000002.history not archived"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let (v, human) = check(&a, 0);
    let chain = &v["report"]["wal"]["chain"];
    assert_eq!(chain["timelines"], serde_json::json!([1, 2]), "{chain}");
    assert_eq!(chain["gaps"].as_array().unwrap().len(), 0, "{chain}");
    assert!(
        chain["newest"].as_str().unwrap().starts_with("00000002"),
        "{chain}"
    );
    assert!(
        human.contains("chain complete from 1 base backup(s)"),
        "{human}"
    );

    // Without timeline 2's history file, recovery cannot follow the switch.
    let history = object_path(&a, "00000002.history");
    let aside = a.env.path("history-aside");
    std::fs::rename(&history, &aside).unwrap();
    let (v, human) = check(&a, 1);
    let problems = v["report"]["problems"].to_string();
    assert!(
        problems.contains("timeline 2 is in the archive without its history file"),
        "{problems}"
    );
    assert!(human.contains("WAL 00000002.history"), "{human}");
    std::fs::rename(&aside, &history).unwrap();
    check(&a, 0);

    // A segment of timeline 1 after the base backup's start, before the switch: a gap.
    let missing =
        coffer::wal::names::segment_name(1, lsn(&base.start_lsn) / SEGMENT + 1, SEGMENT as u32);
    std::fs::remove_file(object_path(&a, &missing)).unwrap();
    let (v, human) = check(&a, 1);
    let gaps = &v["report"]["wal"]["chain"]["gaps"];
    assert_eq!(gaps.as_array().unwrap().len(), 1, "{gaps}");
    assert_eq!(gaps[0]["first"], missing.as_str(), "{gaps}");
    assert_eq!(gaps[0]["count"], 1, "{gaps}");
    let (from, to) = (gaps[0]["lost_from"].as_str(), gaps[0]["lost_to"].as_str());
    assert!(from.is_some() && to.is_some() && from <= to, "{gaps}");
    assert!(
        human.contains(&format!("WAL gap: {missing} is missing")),
        "{human}"
    );
    assert!(human.contains("the recovery window loses"), "{human}");
}
