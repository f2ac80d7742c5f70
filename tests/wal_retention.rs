//! Retention of the WAL archive (format-spec §12.8) through the real binary, with a real
//! PostgreSQL 15 cluster archiving through `wal-push` and real base backup starts and stops
//! (`pg_backup_start`/`pg_backup_stop`, which also archive backup history files). The base
//! backups' snapshots are written through the library, as the base-backup code records
//! them: what the archive reads of a base backup is its timeline and start LSN.
//! - prune keeps every file from the oldest kept base backup's start and deletes the rest,
//!   in every region, behind a tombstone; with no base backup it deletes nothing and says
//!   why; `--dry-run` lists what would go and changes nothing;
//! - `forget --prune` of the older base backup frees the WAL only it needed;
//! - a running backup defers the deletions; a region the prune did not reach loses the same
//!   files at the next `sync`, which never copies them back.

mod common;

use common::archiving::{lsn, open_repo, store_base_snapshot, wal_names, Archiving, BaseStart};
use common::expect_code;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

const SEGMENT: u64 = 16 << 20;

fn json(out: &Output, what: &str) -> serde_json::Value {
    expect_code(out, 0, what);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn names_of(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// The files a kept base backup starting at `start` (on timeline 1, the only one here) does
/// not need: segments that end before its start segment, backup history files that begin
/// before it. Worked out from the names alone, independently of coffer's rule.
fn older_than(names: &[String], start: &BaseStart) -> BTreeSet<String> {
    let first = lsn(&start.start_lsn) / SEGMENT;
    names
        .iter()
        .filter(|n| {
            let number = |s: &str| {
                u64::from_str_radix(&s[8..16], 16).unwrap() * 256
                    + u64::from_str_radix(&s[16..24], 16).unwrap()
            };
            if n.ends_with(".history") {
                return false;
            }
            if let Some(b) = n.strip_suffix(".backup") {
                let (seg, off) = b.split_once('.').unwrap();
                let at = number(seg) * SEGMENT + u64::from_str_radix(off, 16).unwrap();
                return at < lsn(&start.start_lsn);
            }
            number(n) < first
        })
        .cloned()
        .collect()
}

fn tombstones(region: &Path) -> usize {
    std::fs::read_dir(region.join("tombstones")).map_or(0, |d| d.count())
}

#[test]
fn prune_keeps_what_kept_base_backups_need_and_deletes_the_rest() {
    let a = Archiving::start(&[], false);
    a.switch_and_wait();
    a.switch_and_wait();

    // WAL but no base backup: nothing goes, and prune says why.
    let out = a.env.cmd().args(["prune"]).output().unwrap();
    expect_code(&out, 0, "prune without a base backup");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no base backup"), "{err}");
    let before = wal_names(&a.env.repo());
    assert!(before.len() >= 2, "{before:?}");

    let first = a.base_backup();
    a.switch_and_wait();
    a.switch_and_wait();
    let second = a.base_backup();
    a.switch_and_wait();
    store_base_snapshot(&a.env, &first);
    store_base_snapshot(&a.env, &second);
    let all = wal_names(&a.env.repo());
    assert!(
        all.iter().filter(|n| n.ends_with(".backup")).count() == 2,
        "two backup history files: {all:?}"
    );
    let doomed = older_than(&all, &first);
    assert!(doomed.len() >= 2, "{doomed:?} of {all:?}");

    // A dry run lists exactly those, and changes nothing.
    let dry = json(
        &a.env
            .cmd()
            .args(["--json", "prune", "--dry-run"])
            .output()
            .unwrap(),
        "prune --dry-run",
    );
    let w = &dry["report"]["wal"];
    assert_eq!(names_of(&w["deleted_names"]), doomed, "{w}");
    assert_eq!(w["deleted"], doomed.len() as u64, "{w}");
    assert_eq!(w["kept"], (all.len() - doomed.len()) as u64, "{w}");
    assert_eq!(wal_names(&a.env.repo()), all);
    let human = a.env.ok(&["prune", "--dry-run"]);
    assert!(human.contains("would delete"), "{human}");

    // The prune deletes them, behind a tombstone.
    let graves = tombstones(&a.env.repo());
    let pruned = json(
        &a.env.cmd().args(["--json", "prune"]).output().unwrap(),
        "prune",
    );
    let w = &pruned["report"]["wal"];
    assert_eq!(w["deleted"], doomed.len() as u64, "{w}");
    assert!(w["deleted_bytes"].as_u64().unwrap() > 0, "{w}");
    assert!(w["held"].is_null(), "{w}");
    let left: BTreeSet<String> = wal_names(&a.env.repo()).into_iter().collect();
    let expected: BTreeSet<String> = all
        .iter()
        .filter(|n| !doomed.contains(*n))
        .cloned()
        .collect();
    assert_eq!(left, expected);
    assert_eq!(tombstones(&a.env.repo()), graves + 1);
    let repo = open_repo(&a.env.repo());
    let (good, bad) = repo.tombstones().unwrap();
    assert!(bad.is_empty());
    let buried: usize = good
        .iter()
        .map(|(_, t)| {
            t.names
                .iter()
                .filter(|(k, _)| *k == coffer::format::tombstone::BuriedKind::Wal)
                .count()
        })
        .sum();
    assert_eq!(buried, doomed.len());

    // restore_command gets what recovery from the first base backup needs, not what went.
    let start_segment = coffer::wal::names::segment_name(
        first.timeline,
        lsn(&first.start_lsn) / SEGMENT,
        SEGMENT as u32,
    );
    let dest = a.env.path("fetched");
    let out = a
        .env
        .cmd()
        .args(["wal-fetch", &start_segment])
        .arg(&dest)
        .output()
        .unwrap();
    expect_code(&out, 0, "fetching the first base backup's start segment");
    let gone = doomed.iter().find(|n| n.len() == 24).unwrap();
    let out = a
        .env
        .cmd()
        .args(["wal-fetch", gone])
        .arg(&dest)
        .output()
        .unwrap();
    expect_code(&out, 1, "fetching a pruned segment");

    // The chain of both base backups is complete.
    let check = json(
        &a.env.cmd().args(["--json", "check"]).output().unwrap(),
        "check",
    );
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(
        check["report"]["wal"]["chain"]["base_backups"], 2,
        "{check}"
    );
    assert_eq!(
        check["report"]["wal"]["chain"]["gaps"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // Forgetting the first base backup frees what only it needed: its segments before the
    // second's start, and its backup history file. A dry run of forget says so first.
    let second_doomed: BTreeSet<String> = older_than(&wal_names(&a.env.repo()), &second);
    assert!(
        second_doomed.iter().any(|n| n.ends_with(".backup")),
        "{second_doomed:?}"
    );
    let preview = json(
        &a.env
            .cmd()
            .args([
                "--json",
                "forget",
                "--keep-last",
                "1",
                "--prune",
                "--dry-run",
            ])
            .output()
            .unwrap(),
        "forget --dry-run --prune",
    );
    assert_eq!(
        names_of(&preview["wal_preview"]["deleted_names"]),
        second_doomed,
        "{preview}"
    );
    let forgot = json(
        &a.env
            .cmd()
            .args(["--json", "forget", "--keep-last", "1", "--prune"])
            .output()
            .unwrap(),
        "forget --prune",
    );
    assert_eq!(
        forgot["prune"]["wal"]["deleted"],
        second_doomed.len() as u64,
        "{forgot}"
    );
    let left = wal_names(&a.env.repo());
    assert!(left.iter().all(|n| !second_doomed.contains(n)));
    let first_kept = left.iter().find(|n| n.len() == 24).unwrap();
    assert_eq!(
        u64::from_str_radix(&first_kept[16..], 16).unwrap(),
        lsn(&second.start_lsn) / SEGMENT,
        "the oldest segment kept is the one the second base backup starts in"
    );
    let check = json(
        &a.env.cmd().args(["--json", "check"]).output().unwrap(),
        "check",
    );
    assert_eq!(check["ok"], true, "{check}");
}

#[test]
fn a_running_backup_defers_and_sync_finishes_in_a_region_the_prune_missed() {
    let a = Archiving::start(&[], false);
    a.switch_and_wait();
    a.switch_and_wait();
    let base = a.base_backup();
    a.switch_and_wait();
    store_base_snapshot(&a.env, &base);
    let all = wal_names(&a.env.repo());
    let doomed = older_than(&all, &base);
    assert!(!doomed.is_empty(), "{all:?}");

    // A second region, b: a copy of the first, which the prune below is not given.
    let b = a.env.path("region-b");
    common::copy_dir(&a.env.repo(), &b);

    // A backup that runs (its lock is live) may be a base backup that needs the old WAL:
    // nothing goes until it ends.
    let repo = open_repo(&a.env.repo());
    let lock = repo
        .lock(
            coffer::format::gc::LockKind::Backup,
            "elsewhere",
            std::time::Duration::from_secs(300),
        )
        .unwrap();
    let held = json(
        &a.env.cmd().args(["--json", "prune"]).output().unwrap(),
        "prune",
    );
    let w = &held["report"]["wal"];
    assert_eq!(w["deleted"], 0, "{w}");
    assert!(
        w["held"].as_str().unwrap().contains("backup on elsewhere"),
        "{w}"
    );
    assert_eq!(wal_names(&a.env.repo()), all);
    lock.release().unwrap();
    let pruned = json(
        &a.env.cmd().args(["--json", "prune"]).output().unwrap(),
        "prune",
    );
    assert_eq!(pruned["report"]["wal"]["deleted"], doomed.len() as u64);

    // Region b still holds them. A sync with the password deletes them there (the
    // tombstone goes first) and copies nothing back to the first region.
    assert_eq!(wal_names(&b), all);
    let region_b = format!("b={}", b.display());
    let sync = json(
        &a.env
            .cmd()
            .args(["--repo", &region_b, "--json", "sync"])
            .output()
            .unwrap(),
        "sync",
    );
    let b_report = sync["report"]["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "b")
        .unwrap()
        .clone();
    assert_eq!(b_report["buried_deleted"], doomed.len() as u64, "{sync}");
    let kept: Vec<String> = all
        .iter()
        .filter(|n| !doomed.contains(*n))
        .cloned()
        .collect();
    assert_eq!(wal_names(&b), kept);
    assert_eq!(wal_names(&a.env.repo()), kept);
}
